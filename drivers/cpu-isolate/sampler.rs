// SPDX-License-Identifier: GPL-2.0

//! The noise sampler: one kernel thread per measured CPU, bound to it,
//! reading the clock in a tight loop for a set duration (as the osnoise
//! tracer's workload does). Every gap between two reads at or above the
//! threshold is noise: the CPU was taken away from the thread.
//!
//! The threads run at normal priority, so on a loaded CPU the scheduler's
//! time slices show up as noise too; that is what isolation removes. Each
//! thread also counts the hard and soft interrupts its CPU handled during
//! the run, and from the kernel's accounting splits the noise into what the
//! OS caused (interrupt handlers, other tasks) and the rest (hardware, or
//! the hypervisor). A run is started and stopped through sysfs; the threads publish
//! their results when they finish (or are stopped: partial results, marked
//! incomplete) and the results stay until the next start.

use core::ffi::{c_int, c_void};

use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};
use kernel::time::{Instant, Monotonic};

use crate::kthread::{self, Kthread};
use crate::shared::cpu_isolate::cpuset::CpuSet;
use crate::shared::cpu_isolate::histogram::{thread_time, NoiseStats};
use crate::shim;

/// Default run length.
pub(crate) const DEFAULT_DURATION_MS: u64 = 1000;
/// Longest run: a thread that never sleeps for longer would hold up RCU
/// Tasks grace periods long enough to be reported as a stall.
pub(crate) const MAX_DURATION_MS: u64 = 60_000;
/// Default noise threshold (the osnoise tracer's default tolerance).
pub(crate) const DEFAULT_THRESHOLD_NS: u64 = 5000;
/// Largest threshold: one second.
pub(crate) const MAX_THRESHOLD_NS: u64 = 1_000_000_000;
/// Most CPUs in one run, so the results fit the one page sysfs gives a file.
pub(crate) const MAX_CPUS_PER_RUN: u32 = 16;
/// Clock reads between two checks for a stop request.
const STOP_CHECK_INTERVAL: u32 = 1024;

/// What one thread measured.
#[derive(Clone, Copy)]
pub(crate) struct CpuResult {
    /// The CPU.
    pub(crate) cpu: u32,
    /// Noise statistics.
    pub(crate) stats: NoiseStats,
    /// How long the thread measured.
    pub(crate) duration_ns: u64,
    /// Hard interrupts the CPU handled meanwhile.
    pub(crate) irqs: u64,
    /// Softirqs the CPU handled meanwhile.
    pub(crate) softirqs: u64,
    /// Time in interrupt and softirq handlers meanwhile.
    pub(crate) irq_time_ns: u64,
    /// Time the CPU gave to other tasks meanwhile.
    pub(crate) thread_time_ns: u64,
    /// False if the run was stopped early.
    pub(crate) complete: bool,
}

/// One CPU's part of a run, shared with its thread.
#[pin_data]
struct Slot {
    cpu: u32,
    threshold_ns: u64,
    duration_ns: u64,
    #[pin]
    result: Mutex<Option<CpuResult>>,
}

/// Settings for the next run.
#[derive(Clone, Copy)]
pub(crate) struct Settings {
    /// CPUs to measure.
    pub(crate) cpus: CpuSet,
    /// Run length, milliseconds.
    pub(crate) duration_ms: u64,
    /// Noise threshold, nanoseconds.
    pub(crate) threshold_ns: u64,
}

/// The state shown in `sampler/control`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// No run yet.
    Idle,
    /// Threads are measuring.
    Running,
    /// Every thread finished.
    Done,
    /// Stopped early; results are partial.
    Stopped,
}

impl RunState {
    /// The keyword shown in sysfs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            RunState::Idle => "idle",
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Stopped => "stopped",
        }
    }
}

/// A started run.
struct Run {
    // Field order is drop order: the threads are stopped (and their
    // functions have returned) before the slots they point to can go.
    threads: KVec<Kthread>,
    slots: KVec<Arc<Slot>>,
    stopped: bool,
}

/// The sampler: settings and the last run.
pub(crate) struct Sampler {
    settings: Settings,
    run: Option<Run>,
}

impl Sampler {
    /// No run, default settings, no CPUs chosen.
    pub(crate) fn new() -> Self {
        Sampler {
            settings: Settings {
                cpus: CpuSet::new(),
                duration_ms: DEFAULT_DURATION_MS,
                threshold_ns: DEFAULT_THRESHOLD_NS,
            },
            run: None,
        }
    }

    /// Settings for the next run.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Changes the settings; `EBUSY` while a run is in progress.
    pub(crate) fn set(&mut self, settings: Settings) -> Result {
        if self.state() == RunState::Running {
            return Err(EBUSY);
        }
        self.settings = settings;
        Ok(())
    }

    /// The state of the last run.
    pub(crate) fn state(&self) -> RunState {
        match &self.run {
            None => RunState::Idle,
            Some(r) if r.stopped => RunState::Stopped,
            Some(r) if r.slots.iter().all(|s| s.result.lock().is_some()) => RunState::Done,
            Some(_) => RunState::Running,
        }
    }

    /// CPUs a running run measures (empty if none runs).
    pub(crate) fn busy_cpus(&self) -> CpuSet {
        let mut set = CpuSet::new();
        if self.state() == RunState::Running {
            if let Some(r) = &self.run {
                for s in r.slots.iter() {
                    set.insert(s.cpu);
                }
            }
        }
        set
    }

    /// Starts a run on `online` CPUs of the settings.
    ///
    /// `EBUSY` while one runs, `EINVAL` without CPUs or with more than
    /// [`MAX_CPUS_PER_RUN`], `ENODEV` if a CPU is not online.
    pub(crate) fn start(&mut self, online: &CpuSet) -> Result {
        if self.state() == RunState::Running {
            return Err(EBUSY);
        }
        let s = self.settings;
        if s.cpus.is_empty() || s.cpus.len() > MAX_CPUS_PER_RUN {
            return Err(EINVAL);
        }
        if !s.cpus.is_subset(online) {
            return Err(ENODEV);
        }
        // The previous run's threads have all returned; this reaps them.
        self.run = None;
        let mut run = Run {
            threads: KVec::new(),
            slots: KVec::new(),
            stopped: false,
        };
        for cpu in s.cpus.iter() {
            let slot = Arc::pin_init(
                pin_init!(Slot {
                    cpu,
                    threshold_ns: s.threshold_ns,
                    duration_ns: s.duration_ms.saturating_mul(1_000_000),
                    result <- new_mutex!(None),
                }),
                GFP_KERNEL,
            )?;
            let data = core::ptr::from_ref::<Slot>(&slot)
                .cast_mut()
                .cast::<c_void>();
            run.slots.push(slot, GFP_KERNEL)?;
            run.threads.reserve(1, GFP_KERNEL)?;
            // SAFETY: `data` points into an `Arc` that `run.slots` keeps
            // alive until after `run.threads` is dropped (field order), and
            // dropping a `Kthread` stops the thread first; `sampler_main`
            // returns once asked to stop.
            let thread = unsafe { Kthread::spawn_bound(sampler_main, data, cpu, c"cpu_noise") }?;
            run.threads.push(thread, GFP_KERNEL)?;
        }
        self.run = Some(run);
        Ok(())
    }

    /// Stops a running run, keeping what each thread measured so far.
    pub(crate) fn stop(&mut self) {
        if self.state() != RunState::Running {
            return;
        }
        if let Some(run) = &mut self.run {
            // Each drop stops one thread and waits until it has published.
            run.threads.clear();
            run.stopped = true;
        }
    }

    /// The results of the last run, one per CPU, ascending; CPUs whose
    /// thread has not finished are left out.
    pub(crate) fn results(
        &self,
        mut f: impl FnMut(&CpuResult) -> core::fmt::Result,
    ) -> core::fmt::Result {
        if let Some(run) = &self.run {
            for slot in run.slots.iter() {
                if let Some(r) = *slot.result.lock() {
                    f(&r)?;
                }
            }
        }
        Ok(())
    }
}

/// Thread function of a sampler thread.
///
/// # Safety
///
/// `data` points to a [`Slot`] that stays valid until the thread is stopped.
unsafe extern "C" fn sampler_main(data: *mut c_void) -> c_int {
    // SAFETY: per this function's contract.
    let slot = unsafe { &*data.cast::<Slot>() };
    let result = measure(slot);
    *slot.result.lock() = Some(result);
    0
}

/// The measurement loop, on the CPU the thread is bound to.
fn measure(slot: &Slot) -> CpuResult {
    let mut stats = NoiseStats::new(slot.threshold_ns);
    let end = i64::try_from(slot.duration_ns).unwrap_or(i64::MAX);
    let irqs = shim::cpu_irqs(slot.cpu);
    let softirqs = shim::cpu_softirqs(slot.cpu);
    let irq_time = shim::cpu_irqtime(slot.cpu);
    let runtime = shim::current_runtime();
    let start = Instant::<Monotonic>::now();
    let mut prev: i64 = 0;
    let mut complete = true;
    let mut n: u32 = 0;
    loop {
        let now = (Instant::<Monotonic>::now() - start).as_nanos();
        // The monotonic clock never goes back; 0 if it ever did.
        stats.record(u64::try_from(now - prev).unwrap_or(0));
        prev = now;
        if now >= end {
            break;
        }
        n = n.wrapping_add(1);
        if n % STOP_CHECK_INTERVAL == 0 {
            if kthread::should_stop() {
                complete = false;
                break;
            }
            // As osnoise does: on a non-preemptible kernel a run of up to
            // 60 s must still let the scheduler and RCU make progress. What
            // it lets run shows up as noise, which it is.
            shim::cond_resched();
        }
    }
    let duration_ns = u64::try_from(prev).unwrap_or(0);
    let irq_time_ns = shim::cpu_irqtime(slot.cpu).wrapping_sub(irq_time);
    let own = shim::current_runtime().wrapping_sub(runtime);
    CpuResult {
        cpu: slot.cpu,
        stats,
        duration_ns,
        irqs: shim::cpu_irqs(slot.cpu).wrapping_sub(irqs),
        softirqs: shim::cpu_softirqs(slot.cpu).wrapping_sub(softirqs),
        irq_time_ns,
        thread_time_ns: thread_time(duration_ns, own, irq_time_ns),
        complete,
    }
}
