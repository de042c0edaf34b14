// SPDX-License-Identifier: GPL-2.0

//! Keeping movable kernel threads off isolated CPUs, and restoring their
//! affinity exactly.
//!
//! Same scheme as the interrupts (`irq.rs`): a thread's affinity is
//! remembered the first time it must move, it is steered while anything is
//! isolated, and it gets its original back when nothing is. A thread that
//! exits meanwhile is forgotten (we hold a task reference, never a dangling
//! pointer).
//!
//! The handler thread of an interrupt an isolation keeps (`irq/N-NAME`)
//! is left alone: the kernel moves it after its interrupt.
//!
//! Threads with `PF_NO_SETAFFINITY` (per-CPU threads such as `ksoftirqd/N`,
//! `migration/N`, `cpuhp/N`, and workqueue workers, whose pools the
//! workqueue code places) cannot be moved; they are counted as *pinned*.
//! The flag is read before the affinity is set, and `set_cpus_allowed_ptr()`
//! does not check it again (the kernel's checked setter is not exported):
//! a thread that `kthread_bind()` binds in between would be moved anyway.
//! So after each set the flag is read again, and a thread that got it
//! meanwhile has its previous mask put back and is not recorded
//! ([`crate::shared::cpu_isolate::recheck`], which also says what window
//! remains).
//!
//! Unbound workqueue workers follow `/sys/devices/virtual/workqueue/cpumask`
//! and cpuset isolated partitions, which the module cannot drive: the kernel
//! does not export `housekeeping_update()` or the workqueue cpumask setter.

use kernel::bindings;
use kernel::prelude::*;
use kernel::sync::aref::ARef;
use kernel::task::Task;

use crate::isolation::SinceLastPass;
use crate::shared::cpu_isolate::cpuset::CpuSet;
use crate::shared::cpu_isolate::ledger::{irq_thread_of, target, Ledger};
use crate::shared::cpu_isolate::recheck::{after_set, AfterSet, Purpose};
use crate::shim;

/// A kernel thread this module moved.
pub(crate) struct Steered {
    task: ARef<Task>,
    /// Affinity before the first isolation that moved it.
    pub(crate) original: CpuSet,
    /// Affinity this module set last.
    pub(crate) applied: CpuSet,
    /// Errno of the last failed `set_cpus_allowed_ptr()`, or 0.
    pub(crate) error: i32,
}

impl Steered {
    /// The thread's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.task.pid()
    }

    /// The thread's name.
    pub(crate) fn comm(&self) -> [u8; 16] {
        shim::task_comm(&self.task)
    }
}

/// After `set_cpus_allowed_ptr(task, set)` succeeded on a thread whose
/// mask was `before` when it was found movable: reads its flags and mask
/// again and, if the kernel bound it meanwhile (`PF_NO_SETAFFINITY`), puts
/// `before` back where [`after_set`] says so. Returns the verdict and the
/// mask the thread is left with.
pub(crate) fn confirm_set(
    task: &Task,
    purpose: Purpose,
    before: &CpuSet,
    set: &CpuSet,
) -> Result<(AfterSet, CpuSet)> {
    let bound = shim::task_flags(task) & bindings::PF_NO_SETAFFINITY != 0;
    let now = shim::task_affinity(task)?;
    let verdict = after_set(purpose, before, set, bound, &now);
    let left = match verdict {
        AfterSet::Ours => now,
        AfterSet::PutBack(previous) => {
            // The same unchecked setter: it moves a bound thread too.
            let r = shim::task_set_affinity(task, &previous);
            pr_info!(
                "pid {}: bound by the kernel while its affinity was set; put back {} ({})\n",
                task.pid(),
                previous,
                if r.is_ok() { "done" } else { "failed" }
            );
            if r.is_ok() {
                previous
            } else {
                now
            }
        }
        AfterSet::Theirs => {
            pr_info!(
                "pid {}: bound by the kernel while its affinity was set; left at {}\n",
                task.pid(),
                now
            );
            now
        }
    };
    Ok((verdict, left))
}

/// Counts for the `status` file.
#[derive(Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) moved: u32,
    pub(crate) pinned: u32,
    pub(crate) failed: u32,
}

/// The kernel threads this module changed.
pub(crate) struct KthreadSteering {
    steered: KVVec<Steered>,
    counts: Counts,
}

impl KthreadSteering {
    /// Nothing steered.
    pub(crate) fn new() -> Self {
        KthreadSteering {
            steered: KVVec::new(),
            counts: Counts::default(),
        }
    }

    /// The threads currently steered.
    pub(crate) fn steered(&self) -> &[Steered] {
        &self.steered
    }

    /// Counts of the last reconcile.
    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    /// Makes every kernel thread agree with `isolated` (the handler
    /// threads of interrupts `ledger` keeps excepted). An error means
    /// memory ran out; threads already handled are consistent.
    pub(crate) fn reconcile(
        &mut self,
        ledger: &Ledger,
        isolated: &CpuSet,
        housekeeping: &CpuSet,
        online: &CpuSet,
        since: &SinceLastPass<'_>,
    ) -> Result {
        let tasks = shim::kthreads()?;
        let mut counts = Counts::default();
        // Forget threads that exited.
        self.steered
            .retain(|s| tasks.iter().any(|t| t.as_ptr() == s.task.as_ptr()));
        // Names are read only while some isolation keeps interrupts.
        let keeps_irqs = ledger.kept_irqs().next().is_some();
        for task in tasks.iter() {
            let pos = self
                .steered
                .iter()
                .position(|s| s.task.as_ptr() == task.as_ptr());
            let follows_kept_irq = keeps_irqs
                && irq_thread_of(&shim::task_comm(task))
                    .is_some_and(|irq| ledger.kept_on(irq).is_some());
            if follows_kept_irq {
                // Its interrupt's affinity moves it, then and on release.
                if let Some(i) = pos {
                    let _ = self.steered.remove(i);
                }
                continue;
            }
            let flags = shim::task_flags(task);
            if flags & (bindings::PF_NO_SETAFFINITY | bindings::PF_EXITING) != 0 {
                if let Some(i) = pos {
                    let _ = self.steered.remove(i);
                }
                if flags & bindings::PF_NO_SETAFFINITY != 0
                    && shim::task_affinity(task)?.intersects(isolated)
                {
                    counts.pinned += 1;
                }
                continue;
            }
            let current = shim::task_affinity(task)?;
            let i = match pos {
                Some(i) => i,
                None if current.intersects(isolated) => {
                    let s = Steered {
                        task: task.clone(),
                        original: current,
                        applied: current,
                        error: 0,
                    };
                    self.steered.push(s, GFP_KERNEL)?;
                    self.steered.len() - 1
                }
                None => continue,
            };
            let s = &mut self.steered[i];
            // Changed by someone else: that is the new original; by the
            // kernel because its CPUs went offline: it is not.
            s.original = since.original_after(&s.original, &s.applied, &current)?;
            let wanted = target(&s.original, None, isolated, housekeeping, online);
            let restore = wanted.is_none();
            let target = wanted.unwrap_or(s.original);
            let changed = target != current;
            let result = if changed {
                shim::task_set_affinity(task, &target)
            } else {
                Ok(())
            };
            if changed && result.is_ok() {
                let (verdict, left) = confirm_set(task, Purpose::of(restore), &current, &target)?;
                if verdict != AfterSet::Ours {
                    // It became the kernel's to place between the check
                    // and the set: not ours to record, nor to restore.
                    let _ = self.steered.remove(i);
                    if left.intersects(isolated) {
                        counts.pinned += 1;
                    }
                    continue;
                }
            }
            match result {
                Ok(()) => {
                    s.applied = target;
                    s.error = 0;
                }
                Err(e) => {
                    s.error = -e.to_errno();
                    counts.failed += 1;
                }
            }
            if restore {
                if s.error != 0 {
                    pr_warn!(
                        "pid {}: could not restore affinity {} (errno {})\n",
                        s.pid(),
                        s.original,
                        s.error
                    );
                }
                let _ = self.steered.remove(i);
            } else if s.error == 0 {
                counts.moved += 1;
            }
        }
        self.counts = counts;
        Ok(())
    }
}
