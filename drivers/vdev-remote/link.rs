// SPDX-License-Identifier: GPL-2.0

//! One bound ivshmem device and the backend on the other side of it.
//!
//! The link outlives any one virtio device: a backend that dies, leaves
//! READY, writes garbage or stops answering gets its device *failed* —
//! every outstanding buffer completed with an error, new ones too — and
//! then *torn down* (unregistered). When a backend is READY again (a
//! restarted one, or a new instance), the link registers a fresh virtio
//! device on its own: recovery is automatic, no unbind/bind needed. A
//! backend that misbehaved while staying READY is not re-attached until its
//! state has left READY once (it restarted).
//!
//! A failed device that can report its link down (virtio-net with
//! `VIRTIO_NET_F_STATUS`) is not torn down at once: its driver is told of
//! a config change, reads the failed device's config (zeros: no link) and
//! turns the carrier off, and the device stays, link down, until a backend
//! is ready to replace it (or the driver unbinds). The interface then
//! stays while the backend is away, as with a cable pulled out.
//!
//! Register writes to the backend follow the Jailhouse handshake
//! ([`Link::reg_write`]): wait until the backend has consumed the previous
//! write (`write_transaction == 0`), store the field, publish its offset in
//! `write_transaction`, ring the backend's vector 0. A backend that is not
//! READY, failed, or does not consume a write within [`WRITE_TIMEOUT_MS`]
//! makes the write fail and the device fail.
//!
//! Context: the interrupt handlers run in hard-IRQ context and only move
//! completions and queue work; attaching and tearing down run in the
//! `reconcile` work item under `attach`; failing outstanding buffers runs in
//! the `fail` work item, which must not wait for `attach` (teardown waits
//! for those very buffers); a delayed `watchdog` work item notices a backend
//! that stopped answering.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use kernel::{
    bindings, impl_has_delayed_work, impl_has_work, new_delayed_work, new_mutex, new_spinlock_irq,
    new_work,
    pci::DevresBar,
    prelude::*,
    sync::{Arc, Mutex, SpinLockIrq},
    workqueue::{self, DelayedWork, Work, WorkItem},
};

use crate::bounce::BufferRef;
use crate::common::irq::VectorHandler;
use crate::common::mmio::{Regs, ShmemWindow};
use crate::common::sections::DeviceSections;
use crate::queue::Queue;
use crate::shared::ivshmem::doorbell::Doorbell;
use crate::shared::ivshmem::regs::{RegisterModel, BAR0_SIZE};
use crate::shared::shmem::{Fallback, RawRegion, SharedMemory};
use crate::shared::vdev::device_id;
// `HEADER_AREA` is re-exported for `transport.rs`.
pub(crate) use crate::shared::vdev::header::HEADER_AREA;
use crate::shared::vdev::header::{self, off, STATE_READY};
use crate::shared::vdev::pool::{words_for, Pool};
use crate::transport::{self, VirtioRemote};

/// Most virtqueues per device (virtio-net with one queue pair and a control
/// queue needs 3, virtio-console without multiport 2, virtio-blk 1).
pub(crate) const MAX_QUEUES: usize = 8;
/// Bounce-buffer granule.
const CHUNK_SHIFT: u32 = 10;
/// Largest buffer one mapping may bounce.
pub(crate) const MAX_MAPPING: usize = 256 << 10;
/// How long the backend may take to consume a register write (and any other
/// wait for the backend inside a driver callback).
pub(crate) const WRITE_TIMEOUT_MS: i64 = 2000;
/// Watchdog period.
const WATCHDOG_MS: u32 = 1000;
/// No backend attached.
const NO_BACKEND: u32 = u32::MAX;
/// The queue for all of this driver's work: the kernel's default unbound
/// queue, `system_dfl_wq`. Not `system_wq` or `system_unbound_wq`, which
/// 7.3 deprecates (with a warning on first use) and the kernel crate's
/// accessors still return; unbound work also stays off CPUs that cpusets
/// or `isolcpus=` isolate.
fn work_queue() -> &'static workqueue::Queue {
    // SAFETY: `system_dfl_wq` is allocated at boot, before any module
    // loads, and never freed.
    unsafe { workqueue::Queue::from_raw(bindings::system_dfl_wq) }
}

/// `VIRTIO_CONFIG_S_DRIVER_OK` in the device status.
pub(crate) const DRIVER_OK: u8 = 4;
/// Why a backend found republished is failed.
const RESTARTED: &str = "it published its header anew (restarted under the same peer id)";

/// Bounce pool: which chunks are taken, and for each taken chunk the
/// buffer its bytes come from / go back to.
pub(crate) struct Bounce {
    pub(crate) pool: Pool<KVec<u64>>,
    pub(crate) src: KVec<BufferRef>,
}

/// What is attached.
struct Attach {
    /// The registered virtio device, if any.
    current: Option<NonNull<VirtioRemote>>,
    /// A backend that failed while READY: not re-attached before it
    /// restarted.
    wait_restart: Option<WaitRestart>,
    /// The current device's failure was looked at (`wait_restart` set if
    /// due): [`Link::note_failure`] runs once per failed device.
    failure_noted: bool,
    /// The current, failed device was kept and its driver told the link is
    /// down.
    link_down: bool,
}

/// A failed backend waited for (see [`Link::restarted`]).
#[derive(Clone, Copy)]
struct WaitRestart {
    peer: u32,
    /// The header held DRIVER_OK when it failed: a header without it is
    /// the backend's own, published anew.
    had_driver_ok: bool,
}

// SAFETY: the pointer is only used under the `attach` mutex, from process
// context, through the C virtio API.
unsafe impl Send for Attach {}

/// One bound ivshmem device.
#[pin_data]
pub(crate) struct Link {
    /// The PCI device (valid while bound; everything using it is stopped in
    /// `shutdown` and `LinkOwner::drop`).
    pub(crate) pdev: *mut bindings::pci_dev,
    pub(crate) model: &'static dyn RegisterModel,
    /// BAR0, revoked on unbind.
    pub(crate) regs: DevresBar<BAR0_SIZE>,
    pub(crate) sections: DeviceSections,
    /// The R/W section, mapped.
    pub(crate) rw: ShmemWindow,
    /// The v1 layout header page, where a v1 backend announces its device id.
    pub(crate) v1_header: Option<ShmemWindow>,
    pub(crate) own_id: u32,
    /// Interrupt vectors of this device (doorbell targets on peers too).
    pub(crate) vectors: u32,
    /// virtio device id (v2: from the protocol; v1: read at attach).
    pub(crate) device_id: AtomicU32,
    pub(crate) vendor_id: u32,
    #[pin]
    pub(crate) bounce: SpinLockIrq<Bounce>,
    #[pin]
    pub(crate) queues: SpinLockIrq<KVec<Arc<Queue>>>,
    /// Serializes deleting queues against the fail work using them.
    #[pin]
    pub(crate) vq_lock: Mutex<()>,
    #[pin]
    attach: Mutex<Attach>,
    /// The registered device, for the config-change interrupt.
    vdev: AtomicPtr<VirtioRemote>,
    /// Peer id of the attached backend, or `NO_BACKEND`.
    pub(crate) backend: AtomicU32,
    /// The backend failed: outstanding and new buffers complete with errors.
    pub(crate) dead: AtomicBool,
    /// The failed backend was still READY when it was failed (a misbehaving
    /// one, which must restart before it is attached again), rather than
    /// failed for leaving READY (whose next READY is a restart already,
    /// even under the same peer id: ivshmem 2.0 with two peers reuses it).
    failed_ready: AtomicBool,
    /// The attached device's driver set DRIVER_OK (and has not reset it):
    /// the header's status must keep it, or the backend restarted.
    pub(crate) driver_ok: AtomicBool,
    /// The driver's queues may call it back: set once `find_vqs` set them
    /// up, cleared by a reset ([`Link::quiesce_callbacks`]). The virtio
    /// core promises a driver no callback once `virtio_reset_device`
    /// returned, and drivers free what the callbacks use on that promise
    /// (virtio_console's remove detaches its buffers without a lock).
    pub(crate) callbacks: AtomicBool,
    /// Fail passes that found the failed device's queues reset (and left
    /// them alone), reported at teardown.
    late_fail_passes: AtomicU32,
    /// The driver is unbinding: no new attach, no more work.
    removing: AtomicBool,
    /// Bytes of device config the backend declared.
    pub(crate) config_len: AtomicUsize,
    /// `ktime_get()` of the last completion (or of a kick on an idle queue).
    last_progress: AtomicI64,
    #[pin]
    reconcile_work: Work<Link, 0>,
    #[pin]
    fail_work: Work<Link, 1>,
    #[pin]
    watchdog: DelayedWork<Link, 2>,
}

// SAFETY: `pdev` is used only through C calls that are thread safe while
// the device is bound; everything else is `Sync` or locked.
unsafe impl Send for Link {}
// SAFETY: as above.
unsafe impl Sync for Link {}

impl_has_work! {
    impl HasWork<Self, 0> for Link { self.reconcile_work }
    impl HasWork<Self, 1> for Link { self.fail_work }
}
impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Link { self.watchdog }
}

/// Monotonic time in nanoseconds, for timeouts.
pub(crate) fn now_ns() -> i64 {
    // SAFETY: `ktime_get` has no preconditions.
    unsafe { bindings::ktime_get() }
}

/// How long a wait for the backend spins before it sleeps between looks.
const WAIT_SPIN_NS: i64 = 20_000;
/// The sleep between looks after that.
const WAIT_SLEEP_US: i64 = 50;

/// A wait for the backend inside a driver callback (process context): it
/// spins for the first [`WAIT_SPIN_NS`] (a backend on another CPU answers
/// within microseconds), then sleeps [`WAIT_SLEEP_US`] between looks, so a
/// slow or hostile backend costs this CPU nothing and keeps nothing from
/// running; it ends after `timeout_ms`.
pub(crate) struct BackendWait {
    start: i64,
    deadline: i64,
}

impl BackendWait {
    /// A wait of at most `timeout_ms` from now.
    pub(crate) fn new(timeout_ms: i64) -> Self {
        let start = now_ns();
        BackendWait {
            start,
            deadline: start + timeout_ms * 1_000_000,
        }
    }

    /// Waits a little before the next look; `false` once the time is up.
    pub(crate) fn pause(&self) -> bool {
        let now = now_ns();
        if now > self.deadline {
            return false;
        }
        if now - self.start < WAIT_SPIN_NS {
            core::hint::spin_loop();
        } else {
            // Also a debug check that no caller is atomic.
            kernel::task::might_sleep();
            kernel::time::delay::fsleep(kernel::time::Delta::from_micros(WAIT_SLEEP_US));
        }
        true
    }
}

/// What probe hands to [`Link::new`]: the bound device and its resources.
pub(crate) struct LinkParts {
    /// The PCI device (see [`Link::pdev`]).
    pub(crate) pdev: *mut bindings::pci_dev,
    /// The device's register model.
    pub(crate) model: &'static dyn RegisterModel,
    /// BAR0.
    pub(crate) regs: DevresBar<BAR0_SIZE>,
    /// The shared-memory sections.
    pub(crate) sections: DeviceSections,
    /// The R/W section, mapped.
    pub(crate) rw: ShmemWindow,
    /// The v1 layout header page (ivshmem v1 only).
    pub(crate) v1_header: Option<ShmemWindow>,
    /// Interrupt vectors of this device.
    pub(crate) vectors: u32,
    /// virtio device id (v2: from the protocol; v1: 0 until attach).
    pub(crate) device_id: u32,
    /// PCI subsystem vendor id, reported as the virtio vendor id.
    pub(crate) vendor_id: u32,
}

impl Link {
    /// Initializer.
    pub(crate) fn new(parts: LinkParts) -> Result<impl PinInit<Self, Error>> {
        let LinkParts {
            pdev,
            model,
            regs,
            sections,
            rw,
            v1_header,
            vectors,
            device_id,
            vendor_id,
        } = parts;
        let chunks = rw.len() >> CHUNK_SHIFT;
        let mut words = KVec::with_capacity(words_for(chunks), GFP_KERNEL)?;
        words.resize(words_for(chunks), 0, GFP_KERNEL)?;
        let mut src = KVec::with_capacity(chunks, GFP_KERNEL)?;
        src.resize(chunks, BufferRef::default(), GFP_KERNEL)?;
        let pool = Pool::new(words, chunks, CHUNK_SHIFT).ok_or(EINVAL)?;
        let own_id = sections.layout.own_id();
        Ok(try_pin_init!(Link {
            pdev,
            model,
            regs,
            sections,
            rw,
            v1_header,
            own_id,
            vectors,
            device_id: AtomicU32::new(device_id),
            vendor_id,
            bounce <- new_spinlock_irq!(Bounce { pool, src }, "vdev_remote::Link::bounce"),
            queues <- new_spinlock_irq!(KVec::new(), "vdev_remote::Link::queues"),
            vq_lock <- new_mutex!((), "vdev_remote::Link::vq_lock"),
            attach <- new_mutex!(Attach { current: None, wait_restart: None, failure_noted: false, link_down: false }, "vdev_remote::Link::attach"),
            vdev: AtomicPtr::new(core::ptr::null_mut()),
            backend: AtomicU32::new(NO_BACKEND),
            dead: AtomicBool::new(false),
            failed_ready: AtomicBool::new(false),
            driver_ok: AtomicBool::new(false),
            callbacks: AtomicBool::new(false),
            late_fail_passes: AtomicU32::new(0),
            removing: AtomicBool::new(false),
            config_len: AtomicUsize::new(0),
            last_progress: AtomicI64::new(0),
            reconcile_work <- new_work!("vdev_remote::Link::reconcile"),
            fail_work <- new_work!("vdev_remote::Link::fail"),
            watchdog <- new_delayed_work!("vdev_remote::Link::watchdog"),
        }? Error))
    }

    /// The R/W section, for the header fields (fixed offsets inside the
    /// header area, which the section was checked to hold).
    pub(crate) fn section(&self) -> Fallback<'_, RawRegion> {
        self.rw.fallback()
    }

    /// Takes the backend's config-change flag (bit 0 of `config_event`):
    /// reads and clears it in one atomic step on the word that holds it, so
    /// a flag the backend sets again meanwhile is seen at the next
    /// interrupt, not lost between a read and a separate clear.
    fn take_config_event(&self) -> bool {
        let word = off::CONFIG_EVENT & !3;
        // The header is little-endian; loads give CPU values.
        let shift = (off::CONFIG_EVENT - word) * 8;
        let rw = self.rw.region();
        // Bounded: a backend that keeps changing the neighbouring bytes
        // (`queue_event`, reserved) only costs it its config interrupt.
        for _ in 0..16 {
            let Ok(cur) = rw.load::<u32>(word, Relaxed) else {
                return false;
            };
            if (cur >> shift) & 1 == 0 {
                return false;
            }
            match rw.compare_exchange_u32(word, cur, cur & !(0xff << shift)) {
                Ok(Ok(_)) => return true,
                Ok(Err(_)) => continue,
                Err(_) => return false,
            }
        }
        false
    }

    /// The PCI device's `struct device`, for logging.
    pub(crate) fn dev(&self) -> &kernel::device::Device {
        // SAFETY: `pdev` is bound while the link is in use (see the field),
        // and `dev` is its embedded, initialized `struct device`.
        unsafe { kernel::device::Device::from_raw(&raw mut (*self.pdev).dev) }
    }

    /// State-table entry of `peer`.
    pub(crate) fn state_of(&self, peer: u32) -> u32 {
        self.sections.state_of(peer).unwrap_or(0)
    }

    /// Whether the attached backend published its header anew (a restart
    /// the state table did not show: it left READY and came back under the
    /// same peer id between two looks, as ivshmem 2.0 with two peers does):
    /// the driver set DRIVER_OK, the header's status no longer has it.
    fn backend_restarted(&self) -> bool {
        self.driver_ok.load(Ordering::Acquire) && !self.header_driver_ok()
    }

    /// The header's device status has DRIVER_OK.
    fn header_driver_ok(&self) -> bool {
        self.section().load::<u32>(off::DEVICE_STATUS, Relaxed) & u32::from(DRIVER_OK) != 0
    }

    /// Whether a failed backend restarted since: it left READY, or (when
    /// it came back under the same peer id too fast for the state table to
    /// show it) it published its header anew, which clears the status.
    fn restarted(&self, failed: WaitRestart) -> bool {
        self.state_of(failed.peer) != STATE_READY
            || (failed.had_driver_ok && !self.header_driver_ok())
    }

    /// The lowest other peer that is READY: the backend.
    fn find_backend(&self) -> Option<u32> {
        (0..self.sections.layout.max_peers())
            .find(|&p| p != self.own_id && self.state_of(p) == STATE_READY)
    }

    /// Publishes the frontend's own state.
    pub(crate) fn publish_state(&self, state: u32) {
        if let Some(bar) = self.regs.try_access() {
            self.sections
                .publish_state(self.model, &Regs(&bar), state, self.vectors);
        }
    }

    /// Rings `vector` of the attached backend.
    pub(crate) fn ring_backend(&self, vector: u32) {
        let peer = self.backend.load(Ordering::Acquire);
        if peer == NO_BACKEND {
            return;
        }
        let Ok(doorbell) =
            Doorbell::new(peer, vector, self.sections.layout.max_peers(), self.vectors)
        else {
            return;
        };
        if let Some(bar) = self.regs.try_access() {
            self.model.ring(&Regs(&bar), doorbell);
        }
    }

    /// Notes that the backend made progress (or was just given work).
    pub(crate) fn progress(&self) {
        self.last_progress.store(now_ns(), Ordering::Relaxed);
    }

    /// Declares the backend failed: logs `why` once, completes everything
    /// outstanding with errors and schedules the teardown.
    pub(crate) fn fail(this: &Arc<Self>, why: core::fmt::Arguments<'_>) {
        let backend = this.backend.load(Ordering::Acquire);
        let still_ready = backend != NO_BACKEND && this.state_of(backend) == STATE_READY;
        Self::fail_as(this, why, still_ready);
    }

    /// Fails a backend found restarted: its next READY (now) is already
    /// the restart, so it is attached again without waiting.
    fn fail_restarted(this: &Arc<Self>) {
        Self::fail_as(this, format_args!("{}", RESTARTED), false);
    }

    /// [`Link::fail`], saying whether the backend must leave READY before
    /// it is attached again.
    fn fail_as(this: &Arc<Self>, why: core::fmt::Arguments<'_>, still_ready: bool) {
        if this.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        this.failed_ready.store(still_ready, Ordering::Release);
        dev_err!(
            this.dev(),
            "backend (peer {}) failed: {}; failing its I/O\n",
            this.backend.load(Ordering::Relaxed),
            why
        );
        Self::schedule_fail(this);
        Self::schedule_reconcile(this);
    }

    /// Runs the fail work (again): buffers queued after a failure get their
    /// errors from it too.
    pub(crate) fn schedule_fail(this: &Arc<Self>) {
        let _ = work_queue().enqueue::<Arc<Link>, 1>(this.clone());
    }

    /// Queues the reconcile work, unless the driver is going away: every
    /// path that queues it goes through here, so once [`Link::stop_work`]
    /// set `removing` nothing can queue it behind the final flush.
    fn schedule_reconcile(this: &Arc<Self>) {
        if !this.removing.load(Ordering::Acquire) {
            let _ = work_queue().enqueue::<Arc<Link>, 0>(this.clone());
        }
    }

    /// A snapshot of the queues, taken without allocating (IRQ context).
    fn queue_snapshot(&self) -> [Option<Arc<Queue>>; MAX_QUEUES] {
        let mut out: [Option<Arc<Queue>>; MAX_QUEUES] = Default::default();
        for (slot, q) in out.iter_mut().zip(self.queues.lock().iter()) {
            *slot = Some(q.clone());
        }
        out
    }

    /// Moves completions of every queue to the drivers.
    fn process_queues(this: &Arc<Self>) {
        if this.dead.load(Ordering::Acquire) || !this.callbacks.load(Ordering::Acquire) {
            return;
        }
        this.section().store(off::QUEUE_EVENT, 0u8, Relaxed);
        for q in this.queue_snapshot().iter().flatten() {
            match q.collect(&this.rw) {
                Ok(0) => {}
                Ok(_) => {
                    this.progress();
                    q.interrupt();
                }
                Err(e) => {
                    Self::fail(this, format_args!("queue {}: {}", q.index, e));
                    return;
                }
            }
        }
    }

    /// Vector 0: state changes and config changes.
    fn config_interrupt(this: &Arc<Self>) {
        let backend = this.backend.load(Ordering::Acquire);
        if backend != NO_BACKEND
            && this.state_of(backend) != STATE_READY
            && !this.dead.load(Ordering::Acquire)
        {
            Self::fail(
                this,
                format_args!("it left READY (state {})", this.state_of(backend)),
            );
            return;
        }
        if backend == NO_BACKEND || this.dead.load(Ordering::Acquire) {
            // Maybe a backend became READY (one to attach, or to replace a
            // failed device kept link down). A failed backend's config
            // events are not passed on.
            Self::schedule_reconcile(this);
            return;
        }
        if this.backend_restarted() && !this.dead.load(Ordering::Acquire) {
            Self::fail_restarted(this);
            return;
        }
        if this.take_config_event() {
            let vdev = this.vdev.load(Ordering::Acquire);
            if !vdev.is_null() {
                // SAFETY: `vdev` is registered until `teardown` clears the
                // pointer and synchronizes with this handler before
                // unregistering it.
                unsafe { crate::ffi::virtio_config_changed((*vdev).as_raw()) };
            }
        }
    }

    /// Waits until no interrupt handler runs any more on our vectors.
    pub(crate) fn synchronize_irqs(&self) {
        for v in 0..self.vectors {
            // SAFETY: `pdev` is bound and `v` below its vector count.
            let irq = unsafe { bindings::pci_irq_vector(self.pdev, v) };
            if let Ok(irq) = u32::try_from(irq) {
                // SAFETY: `irq` is one of our vectors.
                unsafe { bindings::synchronize_irq(irq) };
            }
        }
    }

    /// Stops calling the driver back (a reset, process context): once this
    /// returns, neither the fail work nor a vector's handler touches the
    /// queues or runs their callbacks, until `find_vqs` sets up new ones.
    pub(crate) fn quiesce_callbacks(&self) {
        self.callbacks.store(false, Ordering::Release);
        // The fail work checks the flag under `vq_lock`, the handlers
        // inside the handler: waiting for both is enough.
        drop(self.vq_lock.lock());
        self.synchronize_irqs();
    }

    /// Unregisters the attached device (process context, `attach` held).
    fn teardown(&self, st: &mut Attach) {
        let Some(dev) = st.current else {
            return;
        };
        self.note_failure(st);
        st.current = None;
        st.failure_noted = false;
        st.link_down = false;
        let backend = self.backend.load(Ordering::Acquire);
        self.vdev.store(core::ptr::null_mut(), Ordering::Release);
        self.synchronize_irqs();
        // SAFETY: `dev` was registered by `attach` and is unregistered once;
        // the driver's remove runs here and ends with `del_vqs`. The dead
        // flag stays set until it returns, so requests still in flight are
        // completed with errors by the fail work meanwhile.
        unsafe { crate::ffi::unregister_virtio_device((*dev.as_ptr()).as_raw()) };
        self.backend.store(NO_BACKEND, Ordering::Release);
        self.driver_ok.store(false, Ordering::Release);
        self.dead.store(false, Ordering::Release);
        dev_info!(
            self.dev(),
            "virtio device of backend peer {} removed\n",
            backend
        );
        let late = self.late_fail_passes.swap(0, Ordering::Relaxed);
        if late > 0 {
            dev_info!(
                self.dev(),
                "{} fail passes came after its driver's reset and left its queues alone\n",
                late
            );
        }
    }

    /// Once per failed device (process context, `attach` held): a backend
    /// that failed while READY must restart before it is attached again.
    fn note_failure(&self, st: &mut Attach) {
        if st.failure_noted || !self.dead.load(Ordering::Acquire) {
            return;
        }
        st.failure_noted = true;
        if self.failed_ready.load(Ordering::Acquire) {
            st.wait_restart = Some(WaitRestart {
                peer: self.backend.load(Ordering::Acquire),
                had_driver_ok: self.header_driver_ok(),
            });
        }
    }

    /// The backend to attach next, if one may be attached now: the lowest
    /// READY peer, once a backend that failed while READY has restarted
    /// (which is then forgotten).
    fn next_backend(&self, st: &mut Attach) -> Option<u32> {
        if let Some(failed) = st.wait_restart {
            if !self.restarted(failed) {
                return None;
            }
            st.wait_restart = None;
        }
        self.find_backend()
    }

    /// Attaches, tears down or does nothing, whatever the backend's state
    /// calls for.
    fn reconcile(this: &Arc<Self>) {
        let mut st = this.attach.lock();
        if this.removing.load(Ordering::Acquire) {
            return;
        }
        if let Some(dev) = st.current.filter(|_| this.dead.load(Ordering::Acquire)) {
            this.note_failure(&mut st);
            // SAFETY: `current` stays registered until `teardown`, which
            // needs `attach`, held here.
            let keep = unsafe { dev.as_ref() }.keeps_link_down();
            if keep && this.next_backend(&mut st).is_none() {
                if !st.link_down {
                    st.link_down = true;
                    dev_info!(
                        this.dev(),
                        "virtio device of backend peer {} kept, link down, until a backend replaces it\n",
                        this.backend.load(Ordering::Relaxed)
                    );
                    // SAFETY: registered (as above); its driver reads the
                    // failed device's config, which says the link is down.
                    unsafe { crate::ffi::virtio_config_changed(dev.as_ref().as_raw()) };
                }
                return;
            }
            this.teardown(&mut st);
        }
        if st.current.is_some() {
            return;
        }
        let Some(backend) = this.next_backend(&mut st) else {
            return;
        };
        match transport::attach(this, backend) {
            Ok(dev) => {
                this.vdev.store(dev.as_ptr(), Ordering::Release);
                st.current = Some(dev);
            }
            Err(e) => {
                dev_err!(
                    this.dev(),
                    "cannot attach backend peer {}: {:?}\n",
                    backend,
                    e
                );
                this.backend.store(NO_BACKEND, Ordering::Release);
                st.wait_restart = Some(WaitRestart {
                    peer: backend,
                    had_driver_ok: this.header_driver_ok(),
                });
            }
        }
    }

    /// Completes everything outstanding with errors and runs the drivers'
    /// callbacks (also for chains a kick completed inline).
    fn fail_outstanding(this: &Arc<Self>) {
        let _guard = this.vq_lock.lock();
        // Queued for a device that has since been torn down (and maybe
        // replaced by a healthy one): its queues are not this work's.
        // `dead` only goes back to false after the failed device's queues
        // were deleted under `vq_lock`, or at the next attach.
        if !this.dead.load(Ordering::Acquire) {
            return;
        }
        let queues = this.queue_snapshot();
        // Nor may it call back a driver that reset the device (which
        // then detaches the buffers itself, racing with any callback).
        if !this.callbacks.load(Ordering::Acquire) {
            if queues[0].is_some() {
                this.late_fail_passes.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        for q in queues.iter().flatten() {
            q.fail_all(&this.rw);
            q.interrupt();
        }
    }

    /// Declares a backend that completes nothing dead.
    fn watch(this: &Arc<Self>) {
        let timeout_ms = crate::module_parameters::request_timeout_ms.value();
        let backend = this.backend.load(Ordering::Acquire);
        if backend != NO_BACKEND && !this.dead.load(Ordering::Acquire) {
            if this.state_of(backend) != STATE_READY {
                Self::fail(
                    this,
                    format_args!("it left READY (state {})", this.state_of(backend)),
                );
            } else if this.backend_restarted() {
                Self::fail_restarted(this);
            } else if timeout_ms > 0 {
                let busy = this
                    .queue_snapshot()
                    .iter()
                    .flatten()
                    .any(|q| q.owes_answers && q.in_flight() > 0);
                let idle_ns = now_ns() - this.last_progress.load(Ordering::Relaxed);
                if busy && idle_ns > i64::from(timeout_ms) * 1_000_000 {
                    Self::fail(
                        this,
                        format_args!("it completed nothing for {} ms", idle_ns / 1_000_000),
                    );
                }
            }
        } else if this.dead.load(Ordering::Acquire)
            || (backend == NO_BACKEND && this.find_backend().is_some())
        {
            // A READY backend whose doorbell we missed, or a failed device
            // (kept link down) that one may replace by now.
            Self::schedule_reconcile(this);
        }
        Self::arm_watchdog(this);
    }

    /// (Re)starts the watchdog unless the driver is going away and the
    /// device is gone (while an unbind waits for a device's I/O, a hung
    /// backend must still be noticed).
    pub(crate) fn arm_watchdog(this: &Arc<Self>) {
        if !this.removing.load(Ordering::Acquire)
            || this.backend.load(Ordering::Acquire) != NO_BACKEND
        {
            let delay = kernel::time::msecs_to_jiffies(WATCHDOG_MS);
            let _ = work_queue().enqueue_delayed::<Arc<Link>, 2>(this.clone(), delay);
        }
    }

    /// Starts the link: READY, then attach if a backend waits.
    pub(crate) fn start(this: &Arc<Self>) {
        this.publish_state(STATE_READY);
        Self::schedule_reconcile(this);
        Self::arm_watchdog(this);
    }

    /// Stops the link on unbind: no new attach, the device unregistered
    /// (its driver finishes or fails its I/O), own state 0.
    pub(crate) fn shutdown(&self) {
        self.removing.store(true, Ordering::Release);
        let mut st = self.attach.lock();
        self.teardown(&mut st);
        self.publish_state(0);
    }

    /// Stops every work item for good; called after the interrupt handlers
    /// are gone. The watchdog is cancelled first, synchronously (running it
    /// could queue reconcile), then `removing` keeps anything from being
    /// queued again, then what is queued or running is waited for. Also the
    /// end of a probe that failed after [`Link::start`].
    pub(crate) fn stop_work(&self) {
        self.removing.store(true, Ordering::Release);
        // SAFETY: the work items are initialized fields of `self`, which is
        // alive. `cancel_delayed_work_sync` waits for a running watchdog and
        // leaves it unqueued; it cannot re-arm (it sees `removing` and no
        // backend once `shutdown` ran, and the handlers that could attach
        // one are gone). Then `flush_work` waits for a queued or running
        // reconcile or fail item, which sees `removing` and does nothing
        // new; neither queues the other or itself once `removing` is set.
        unsafe {
            let work = Work::raw_get(DelayedWork::raw_as_work(&raw const self.watchdog));
            let delayed = kernel::container_of!(work, bindings::delayed_work, work);
            bindings::cancel_delayed_work_sync(delayed);
            bindings::flush_work(Work::raw_get(&raw const self.reconcile_work));
            bindings::flush_work(Work::raw_get(&raw const self.fail_work));
            bindings::cancel_delayed_work_sync(delayed);
        }
        self.check_idle();
    }

    /// After [`Link::stop_work`]: no work item may be queued or running,
    /// or it would run after the link (or the module) is gone. Loud, since
    /// the tests catch kernel warnings.
    fn check_idle(&self) {
        // SAFETY: pointers to initialized work items of `self`, which is
        // alive; nothing is dereferenced here.
        let items = unsafe {
            [
                ("reconcile", Work::raw_get(&raw const self.reconcile_work)),
                ("fail", Work::raw_get(&raw const self.fail_work)),
                (
                    "watchdog",
                    Work::raw_get(DelayedWork::raw_as_work(&raw const self.watchdog)),
                ),
            ]
        };
        for (name, work) in items {
            // SAFETY: `work` is an initialized work item of `self`;
            // `work_busy` only reads its state.
            let busy = unsafe { bindings::work_busy(work) };
            if busy != 0 {
                dev_err!(
                    self.dev(),
                    "{} work still busy ({:#x}) after the link stopped\n",
                    name,
                    busy
                );
                kernel::warn_on!(true);
            }
        }
    }
}

/// The register-write protocol (see the module documentation).
impl Link {
    /// Waits until the backend consumed the previous register write.
    fn wait_idle(this: &Arc<Self>) -> Result {
        let rw = this.section();
        let wait = BackendWait::new(WRITE_TIMEOUT_MS);
        loop {
            if this.dead.load(Ordering::Acquire) {
                return Err(ENODEV);
            }
            if rw.load::<u32>(off::WRITE_TRANSACTION, Relaxed) == 0 {
                rw.fence(Acquire);
                return Ok(());
            }
            let backend = this.backend.load(Ordering::Acquire);
            if this.state_of(backend) != STATE_READY {
                Link::fail(this, format_args!("it left READY during a register write"));
                return Err(ENODEV);
            }
            if !wait.pause() {
                Link::fail(
                    this,
                    format_args!(
                        "it did not take a register write for {} ms",
                        WRITE_TIMEOUT_MS
                    ),
                );
                return Err(ETIMEDOUT);
            }
        }
    }

    /// Writes the low `width` bytes of `value` to the header field at
    /// `offset` through a `write_transaction`.
    pub(crate) fn reg_write(this: &Arc<Self>, offset: usize, value: u64, width: usize) -> Result {
        Self::transaction(this, offset, |rw| {
            // CAST: each arm stores the low `width` bytes, as the field is wide.
            match width {
                1 => rw.store(offset, value as u8, Relaxed),
                2 => rw.store(offset, value as u16, Relaxed),
                4 => rw.store(offset, value as u32, Relaxed),
                _ => rw.store(offset, value, Relaxed),
            }
        })
    }

    /// [`Link::reg_write`], then waits until the backend took the write.
    pub(crate) fn reg_write_sync(
        this: &Arc<Self>,
        offset: usize,
        value: u64,
        width: usize,
    ) -> Result {
        Self::reg_write(this, offset, value, width)?;
        Self::wait_idle(this)
    }

    /// Writes device config bytes at config offset `offset` through a
    /// `write_transaction`, byte by byte: the config starts at 0x4c, so
    /// wider fields are not naturally aligned in shared memory.
    pub(crate) fn config_write(this: &Arc<Self>, offset: usize, bytes: &[u8]) -> Result {
        let at = header::CONFIG_OFFSET + offset;
        Self::transaction(this, at, |rw| {
            for (i, b) in bytes.iter().enumerate() {
                rw.store(at + i, *b, Relaxed);
            }
        })
    }

    /// The handshake around one write: wait for the previous one to be
    /// taken, `store` the field at `offset`, publish the offset, ring.
    fn transaction(
        this: &Arc<Self>,
        offset: usize,
        store: impl FnOnce(&Fallback<'_, RawRegion>),
    ) -> Result {
        Self::wait_idle(this)?;
        let rw = this.section();
        store(&rw);
        rw.fence(Release);
        // CAST: header offsets are below MAX_HEADER_SIZE.
        rw.store(off::WRITE_TRANSACTION, offset as u32, Relaxed);
        rw.fence(Release);
        this.ring_backend(0);
        Ok(())
    }
}

/// The data path from the driver side: kicks.
impl Link {
    /// A kick on `queue`: publishes new chains to the shared ring and rings
    /// the backend. Always `true` (the virtqueue stays usable; a failed
    /// backend's buffers complete with errors through the fail work).
    pub(crate) fn kick(this: &Arc<Self>, queue: &Queue) -> bool {
        let spinning_driver =
            device_id::driver_spins_on_output(this.device_id.load(Ordering::Acquire));
        // SAFETY: no preconditions.
        let may_spin = unsafe { crate::ffi::vdev_remote_kick_may_spin(spinning_driver) };
        if this.dead.load(Ordering::Acquire) {
            if may_spin {
                // The caller may spin for its buffer with interrupts off;
                // the fail work might be queued on this very CPU.
                queue.fail_all(&this.rw);
            }
            Self::schedule_fail(this);
            return true;
        }
        match queue.publish(&this.rw) {
            Ok(p) if p.count == 0 => {}
            Ok(p) => {
                if p.was_idle {
                    this.progress();
                }
                this.ring_backend(queue.device_vector);
                if may_spin && p.readonly_in_flight > 0 {
                    Self::wait_for_readonly(this, queue);
                }
            }
            Err(e) => Self::fail(this, format_args!("queue {}: {}", queue.index, e)),
        }
        true
    }

    /// Some drivers (virtio_console's hvc output) kick with interrupts off
    /// and then spin until the device returns their buffer. With shadow
    /// rings the buffer only comes back through `collect`, normally run by
    /// our interrupt, which may be due on this very CPU: so poll here, for
    /// output-only chains queued with interrupts off, until the backend
    /// took them (bounded; a backend that does not answer is failed and the
    /// chains completed).
    fn wait_for_readonly(this: &Arc<Self>, queue: &Queue) {
        let rw = &this.rw;
        let deadline = now_ns() + WRITE_TIMEOUT_MS * 1_000_000;
        while queue.readonly_in_flight() > 0 {
            match queue.collect(rw) {
                Ok(0) => {}
                Ok(_) => this.progress(),
                Err(e) => {
                    Self::fail(this, format_args!("queue {}: {}", queue.index, e));
                    queue.fail_all(rw);
                    return;
                }
            }
            if this.dead.load(Ordering::Acquire) {
                queue.fail_all(rw);
                return;
            }
            if now_ns() > deadline {
                Self::fail(
                    this,
                    format_args!(
                        "it did not take output on queue {} for {} ms",
                        queue.index, WRITE_TIMEOUT_MS
                    ),
                );
                queue.fail_all(rw);
                return;
            }
            core::hint::spin_loop();
        }
    }
}

impl WorkItem<0> for Link {
    type Pointer = Arc<Link>;
    fn run(this: Arc<Link>) {
        Self::reconcile(&this);
    }
}

impl WorkItem<1> for Link {
    type Pointer = Arc<Link>;
    fn run(this: Arc<Link>) {
        Self::fail_outstanding(&this);
    }
}

impl WorkItem<2> for Link {
    type Pointer = Arc<Link>;
    fn run(this: Arc<Link>) {
        Self::watch(&this);
    }
}

impl VectorHandler for Link {
    fn vector(this: &Arc<Self>, vector: usize) {
        if this.sections.one_shot {
            // ivshmem 2.0 one-shot mode disabled interrupts on delivery.
            if let Some(bar) = this.regs.try_access() {
                this.model.enable_interrupts(&Regs(&bar));
            }
        }
        if vector == 0 {
            Self::config_interrupt(this);
        }
        // Queue interrupts may share any vector; collecting is cheap.
        Self::process_queues(this);
    }

    fn intx(this: &Arc<Self>) -> bool {
        let ours = this
            .regs
            .try_access()
            .is_some_and(|bar| this.model.ack_intx(&Regs(&bar)));
        if ours {
            Self::vector(this, 0);
        }
        ours
    }

    fn intx_shareable(&self) -> bool {
        self.model.intx_shareable()
    }
}
