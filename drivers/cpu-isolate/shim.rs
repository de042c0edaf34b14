// SPDX-License-Identifier: GPL-2.0

//! Rust side of the C shim (`shim.c`, `shim.h`): the declarations, which
//! must match `shim.h`, and safe wrappers that convert between the kernel's
//! `struct cpumask` and the shared [`CpuSet`].

use core::ffi::{c_char, c_int, c_uint, c_void};
use core::ptr::NonNull;

use kernel::bindings;
use kernel::cpu::CpuId;
use kernel::cpumask::{Cpumask, CpumaskVar};
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::task::Task;

use crate::shared::cpu_isolate::cpuset::{CpuSet, MAX_CPUS};
use crate::shared::cpu_isolate::ledger::Topology;

/// `struct cpu_isolate_sysfs_ops`.
#[repr(C)]
pub(crate) struct SysfsOps {
    pub(crate) show: unsafe extern "C" fn(ctx: *mut c_void, id: c_uint, buf: *mut c_char) -> isize,
    pub(crate) store:
        unsafe extern "C" fn(ctx: *mut c_void, id: c_uint, buf: *const c_char, len: usize) -> isize,
}

/// `CPU_ISOLATE_IRQ_*` flags.
pub(crate) mod irq_flags {
    pub(crate) const CAN_SET: u32 = 1 << 0;
    pub(crate) const MANAGED: u32 = 1 << 1;
    // 1 << 2 (per-CPU) and 1 << 3 (requested) are reported by the shim but
    // not needed: per-CPU interrupts never have CAN_SET.
    pub(crate) const PENDING: u32 = 1 << 4;
}

extern "C" {
    pub(crate) fn cpu_isolate_sysfs_create(
        ops: *const SysfsOps,
        ctx: *mut c_void,
    ) -> *mut bindings::kobject;
    pub(crate) fn cpu_isolate_sysfs_destroy(kobj: *mut bindings::kobject);
    fn cpu_isolate_topology(
        present: *mut bindings::cpumask,
        online: *mut bindings::cpumask,
        hotpluggable: *mut bindings::cpumask,
        housekeeping: *mut bindings::cpumask,
    );
    fn cpu_isolate_irq_query(
        irq: c_uint,
        affinity: *mut bindings::cpumask,
        effective: *mut bindings::cpumask,
        flags: *mut c_uint,
    ) -> c_int;
    // `struct task_struct *` is passed as `void *`: bindgen's task_struct
    // contains types rustc does not consider FFI-safe.
    fn cpu_isolate_kthreads_get(tasks: *mut *mut c_void, max: c_uint) -> c_uint;
    fn cpu_isolate_task_affinity(t: *mut c_void, out: *mut bindings::cpumask);
    fn cpu_isolate_task_flags(t: *mut c_void) -> c_uint;
    fn cpu_isolate_task_comm(t: *mut c_void, buf: *mut c_char, len: usize);
    fn cpu_isolate_cpu_irqs(cpu: c_uint) -> u64;
    fn cpu_isolate_cpu_softirqs(cpu: c_uint) -> u64;
    fn cpu_isolate_cpu_irqtime(cpu: c_uint) -> u64;
    fn cpu_isolate_current_runtime() -> u64;
}

/// Number of CPU ids the kernel uses (`nr_cpu_ids`).
pub(crate) fn nr_cpu_ids() -> u32 {
    kernel::cpu::nr_cpu_ids()
}

/// Copies a kernel cpumask into a [`CpuSet`].
///
/// The module refuses to load when `nr_cpu_ids > MAX_CPUS`, so no CPU is
/// dropped.
pub(crate) fn to_set(mask: &Cpumask) -> CpuSet {
    let mut set = CpuSet::new();
    for cpu in 0..nr_cpu_ids().min(MAX_CPUS) {
        // SAFETY: `cpu < nr_cpu_ids`.
        if mask.test(unsafe { CpuId::from_u32_unchecked(cpu) }) {
            set.insert(cpu);
        }
    }
    set
}

/// A kernel cpumask holding `set` (CPUs at or above `nr_cpu_ids` dropped).
pub(crate) fn to_mask(set: &CpuSet) -> Result<CpumaskVar> {
    let mut mask = CpumaskVar::new_zero(GFP_KERNEL)?;
    for cpu in set.iter().take_while(|c| *c < nr_cpu_ids()) {
        // SAFETY: `cpu < nr_cpu_ids`.
        mask.set(unsafe { CpuId::from_u32_unchecked(cpu) });
    }
    Ok(mask)
}

/// A consistent snapshot of the CPU topology (taken under `cpus_read_lock`).
pub(crate) fn topology() -> Result<Topology> {
    let present = CpumaskVar::new_zero(GFP_KERNEL)?;
    let online = CpumaskVar::new_zero(GFP_KERNEL)?;
    let hotpluggable = CpumaskVar::new_zero(GFP_KERNEL)?;
    let housekeeping = CpumaskVar::new_zero(GFP_KERNEL)?;
    // SAFETY: four valid, distinct, writable cpumasks.
    unsafe {
        cpu_isolate_topology(
            present.as_raw(),
            online.as_raw(),
            hotpluggable.as_raw(),
            housekeeping.as_raw(),
        )
    };
    Ok(Topology {
        present: to_set(&present),
        online: to_set(&online),
        hotpluggable: to_set(&hotpluggable),
        housekeeping: to_set(&housekeeping),
    })
}

/// What the kernel says about one interrupt.
pub(crate) struct IrqInfo {
    /// Requested affinity (the pending one if a move waits for the next
    /// interrupt), as `/proc/irq/N/smp_affinity_list` shows it.
    pub(crate) affinity: CpuSet,
    /// CPUs the interrupt is actually routed to.
    pub(crate) effective: CpuSet,
    /// `irq_flags::*`.
    pub(crate) flags: u32,
}

/// Reusable scratch masks for [`irq_query`], so a scan of every interrupt
/// allocates twice, not twice per interrupt.
pub(crate) struct IrqScratch {
    affinity: CpumaskVar,
    effective: CpumaskVar,
}

impl IrqScratch {
    pub(crate) fn new() -> Result<Self> {
        Ok(IrqScratch {
            affinity: CpumaskVar::new_zero(GFP_KERNEL)?,
            effective: CpumaskVar::new_zero(GFP_KERNEL)?,
        })
    }
}

/// Reads interrupt `irq`; `None` if no descriptor exists for it.
pub(crate) fn irq_query(irq: u32, scratch: &mut IrqScratch) -> Option<IrqInfo> {
    let mut flags: c_uint = 0;
    // SAFETY: both masks are valid and writable, `flags` is a valid pointer;
    // the shim looks the descriptor up under RCU and locks it.
    let ret = unsafe {
        cpu_isolate_irq_query(
            irq,
            scratch.affinity.as_raw(),
            scratch.effective.as_raw(),
            &mut flags,
        )
    };
    (ret == 0).then(|| IrqInfo {
        affinity: to_set(&scratch.affinity),
        effective: to_set(&scratch.effective),
        flags,
    })
}

/// Number of interrupt descriptors to scan (`irq_get_nr_irqs()`).
pub(crate) fn nr_irqs() -> u32 {
    // SAFETY: no preconditions.
    unsafe { bindings::irq_get_nr_irqs() }
}

/// Sets the affinity of interrupt `irq` (`irq_set_affinity()`).
pub(crate) fn irq_set_affinity(irq: u32, set: &CpuSet) -> Result {
    let mask = to_mask(set)?;
    // SAFETY: `mask` is a valid cpumask; the kernel validates `irq`.
    kernel::error::to_result(unsafe { bindings::irq_set_affinity(irq, mask.as_raw()) })
}

/// Every kernel thread, each with a reference held.
pub(crate) fn kthreads() -> Result<KVVec<ARef<Task>>> {
    let mut room: usize = 512;
    loop {
        let mut raw = KVVec::from_elem(core::ptr::null_mut::<c_void>(), room, GFP_KERNEL)?;
        let max = u32::try_from(room).map_err(|_| ENOMEM)?;
        // SAFETY: `raw` holds `max` pointers; the shim writes at most that
        // many, each with a task reference taken.
        let n = unsafe { cpu_isolate_kthreads_get(raw.as_mut_ptr(), max) };
        let got = usize::try_from(n).map_err(|_| ENOMEM)?;
        let mut tasks = KVVec::with_capacity(got.min(room), GFP_KERNEL)?;
        for p in raw.iter().take(got) {
            // SAFETY: `Task` is a transparent wrapper of `task_struct`, the
            // pointer is non-null, and the shim took the reference this
            // `ARef` now owns (it is put when the `ARef` drops).
            let t = unsafe { ARef::from_raw(NonNull::new_unchecked(p.cast::<Task>())) };
            // The capacity is reserved, so this cannot fail; if it did, the
            // error would drop `t` and put its reference, never leak it, and
            // every later pointer still gets wrapped (no early return).
            let _ = tasks.push_within_capacity(t);
        }
        if got <= room {
            return Ok(tasks);
        }
        // More threads than room: these references are put, retry larger.
        room = got.saturating_mul(2);
    }
}

/// A task's allowed CPUs.
pub(crate) fn task_affinity(t: &Task) -> Result<CpuSet> {
    let mask = CpumaskVar::new_zero(GFP_KERNEL)?;
    // SAFETY: `t` is a live task (we hold a reference), `mask` is writable.
    unsafe { cpu_isolate_task_affinity(t.as_ptr().cast(), mask.as_raw()) };
    Ok(to_set(&mask))
}

/// A task's `PF_*` flags.
pub(crate) fn task_flags(t: &Task) -> u32 {
    // SAFETY: `t` is a live task.
    unsafe { cpu_isolate_task_flags(t.as_ptr().cast()) }
}

/// A task's name (`comm`), NUL-padded.
pub(crate) fn task_comm(t: &Task) -> [u8; 16] {
    let mut buf = [0u8; 16];
    // SAFETY: `t` is a live task; `buf` has room for 16 bytes.
    unsafe { cpu_isolate_task_comm(t.as_ptr().cast(), buf.as_mut_ptr().cast(), buf.len()) };
    buf
}

/// Sets a task's allowed CPUs (`set_cpus_allowed_ptr()`).
pub(crate) fn task_set_affinity(t: &Task, set: &CpuSet) -> Result {
    let mask = to_mask(set)?;
    // SAFETY: `t` is a live task, `mask` a valid cpumask.
    kernel::error::to_result(unsafe { bindings::set_cpus_allowed_ptr(t.as_ptr(), mask.as_raw()) })
}

/// Hard interrupts handled by `cpu` so far (device IRQs plus, on x86, the
/// local APIC timer, IPIs and other system vectors).
pub(crate) fn cpu_irqs(cpu: u32) -> u64 {
    // SAFETY: the counters are per-CPU variables for every possible CPU;
    // callers pass an online CPU.
    unsafe { cpu_isolate_cpu_irqs(cpu) }
}

/// Softirqs handled by `cpu` so far.
pub(crate) fn cpu_softirqs(cpu: u32) -> u64 {
    // SAFETY: as for `cpu_irqs`.
    unsafe { cpu_isolate_cpu_softirqs(cpu) }
}

/// Time `cpu` spent in interrupt and softirq handlers so far, ns.
pub(crate) fn cpu_irqtime(cpu: u32) -> u64 {
    // SAFETY: as for `cpu_irqs`.
    unsafe { cpu_isolate_cpu_irqtime(cpu) }
}

/// CPU time of the calling thread so far, ns.
pub(crate) fn current_runtime() -> u64 {
    // SAFETY: `current` is always valid in process context.
    unsafe { cpu_isolate_current_runtime() }
}

/// Lets `pr_*!` print a [`CpuSet`] as a cpulist (the kernel's printing
/// macros use their own `Display` trait).
impl kernel::fmt::Display for CpuSet {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        core::fmt::Display::fmt(self, f)
    }
}
