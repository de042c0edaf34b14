// SPDX-License-Identifier: GPL-2.0

//! Steering movable interrupts off isolated CPUs, and restoring them exactly.
//!
//! [`IrqSteering::reconcile`] makes every interrupt descriptor agree with the
//! current set of isolated CPUs. The first time an interrupt has to move,
//! its affinity is remembered as its *original*; while anything is isolated
//! it gets [`steered`] (original minus the isolated CPUs, or all housekeeping
//! CPUs if nothing is left); once nothing is isolated, it gets its original
//! back and is forgotten. Several isolations therefore compose, and the last
//! release restores the snapshot taken before the first isolation.
//!
//! If someone changes an interrupt's affinity while it is steered (through
//! `/proc/irq/N/smp_affinity`), that choice becomes its new original: the
//! module does not undo an administrator's later decision. The kernel's
//! own change when every CPU of the affinity went offline is not such a
//! decision ([`SinceLastPass`]): the original stays.
//!
//! An isolation can also *keep* interrupts (`isolate 1 irqs=24`): those
//! are delivered on its CPUs while it is active, whatever their original
//! (an RT task's own device interrupt, so that its wake-up happens where it
//! runs), and restored the same way when it is released.
//!
//! Kernel-managed interrupts (multi-queue devices) and interrupts whose chip
//! cannot move them are never touched; those that touch isolated CPUs are
//! reported. `irq_set_affinity()` does not check the managed state itself,
//! so an interrupt a driver frees and requests again as managed between
//! the module's query and its set would be moved: after each set the
//! module queries the interrupt again, and one that became managed (or
//! unmovable) meanwhile has its previous mask put back and is not recorded
//! ([`crate::shared::cpu_isolate::recheck`], which also says what window
//! remains).

use kernel::prelude::*;

use crate::isolation::SinceLastPass;
use crate::shared::cpu_isolate::cpuset::CpuSet;
use crate::shared::cpu_isolate::ledger::{target, Ledger};
use crate::shared::cpu_isolate::recheck::{after_set, AfterSet, Purpose};
use crate::shim::{self, irq_flags, IrqScratch};

/// One interrupt this module moved.
struct Steered {
    irq: u32,
    /// Affinity before the first isolation that moved it.
    original: CpuSet,
    /// Affinity this module set last.
    applied: CpuSet,
}

/// What happened to an interrupt that touches the isolated CPUs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Moved; its original affinity is remembered.
    Moved,
    /// Kept on the isolated CPUs of the region that names it; its original
    /// affinity is remembered.
    Kept,
    /// Kernel-managed: the kernel decides its affinity; it stays.
    Managed,
    /// Per-CPU, or its chip cannot change affinity; it stays.
    Unmovable,
    /// `irq_set_affinity()` failed with this errno.
    Failed(i32),
}

impl State {
    /// The keyword used in the `irqs` file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            State::Moved => "moved",
            State::Kept => "kept",
            State::Managed => "managed",
            State::Unmovable => "unmovable",
            State::Failed(_) => "failed",
        }
    }
}

/// One line of the `irqs` report.
pub(crate) struct Line {
    /// The interrupt number.
    pub(crate) irq: u32,
    /// Its state.
    pub(crate) state: State,
    /// Original affinity, for moved interrupts.
    pub(crate) original: Option<CpuSet>,
}

/// Counts for the `status` file.
#[derive(Clone, Copy, Default)]
pub(crate) struct Counts {
    pub(crate) moved: u32,
    pub(crate) kept: u32,
    pub(crate) managed: u32,
    pub(crate) unmovable: u32,
    pub(crate) failed: u32,
}

/// What an interrupt's affinity is computed from ([`target`]).
struct Targets<'a> {
    kept: Option<&'a CpuSet>,
    isolated: &'a CpuSet,
    housekeeping: &'a CpuSet,
    online: &'a CpuSet,
}

/// The interrupts this module changed, and the last reconcile's report.
pub(crate) struct IrqSteering {
    steered: KVVec<Steered>,
    report: KVVec<Line>,
}

impl IrqSteering {
    /// Adds a line to the report of the last reconcile or release.
    fn record(&mut self, irq: u32, state: State, original: Option<CpuSet>) -> Result {
        self.report.push(
            Line {
                irq,
                state,
                original,
            },
            GFP_KERNEL,
        )?;
        Ok(())
    }

    /// After `irq_set_affinity(irq, set)` succeeded on an interrupt whose
    /// affinity was `before`: queries it again and, if it became managed or
    /// unmovable meanwhile, puts `before` back ([`after_set`]) and reports
    /// it as what it is now. True if the change is the module's to record.
    fn confirm_set(
        &mut self,
        irq: u32,
        purpose: Purpose,
        before: &CpuSet,
        set: &CpuSet,
        scratch: &mut IrqScratch,
    ) -> Result<bool> {
        let (locked, now, state) = match shim::irq_query(irq, scratch) {
            Some(info) => {
                let managed = info.flags & irq_flags::MANAGED != 0;
                let locked = managed || info.flags & irq_flags::CAN_SET == 0;
                let state = if managed {
                    State::Managed
                } else {
                    State::Unmovable
                };
                (locked, info.affinity, Some(state))
            }
            // Freed since: nothing to put back, nothing to report.
            None => (true, CpuSet::new(), None),
        };
        match after_set(purpose, before, set, locked, &now) {
            AfterSet::Ours => return Ok(true),
            AfterSet::PutBack(previous) => {
                let r = shim::irq_set_affinity(irq, &previous);
                pr_info!(
                    "IRQ {}: became kernel-managed or unmovable while its affinity was set; put back {} ({})\n",
                    irq,
                    previous,
                    if r.is_ok() { "done" } else { "failed" }
                );
            }
            AfterSet::Theirs if state.is_some() => {
                pr_info!(
                    "IRQ {}: became kernel-managed or unmovable while its affinity was set; left at {}\n",
                    irq,
                    now
                );
            }
            AfterSet::Theirs => {}
        }
        if let Some(state) = state {
            self.record(irq, state, None)?;
        }
        Ok(false)
    }

    /// Nothing steered.
    pub(crate) fn new() -> Self {
        IrqSteering {
            steered: KVVec::new(),
            report: KVVec::new(),
        }
    }

    /// The last reconcile's report, by interrupt number.
    pub(crate) fn report(&self) -> &[Line] {
        &self.report
    }

    /// Counts of the report.
    pub(crate) fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for l in self.report.iter() {
            match l.state {
                State::Moved => c.moved += 1,
                State::Kept => c.kept += 1,
                State::Managed => c.managed += 1,
                State::Unmovable => c.unmovable += 1,
                State::Failed(_) => c.failed += 1,
            }
        }
        c
    }

    /// Makes every interrupt agree with `isolated` and the interrupts the
    /// regions of `ledger` keep (see the module documentation).
    /// Per-interrupt failures are reported, not returned; an error means
    /// memory ran out, and leaves every interrupt it already handled
    /// consistent with `isolated`.
    pub(crate) fn reconcile(
        &mut self,
        ledger: &Ledger,
        isolated: &CpuSet,
        housekeeping: &CpuSet,
        online: &CpuSet,
        since: &SinceLastPass<'_>,
    ) -> Result {
        let mut scratch = IrqScratch::new()?;
        self.report.clear();
        for irq in 0..shim::nr_irqs() {
            let pos = self.steered.iter().position(|s| s.irq == irq);
            let Some(info) = shim::irq_query(irq, &mut scratch) else {
                // Freed since: nothing left to restore.
                if let Some(i) = pos {
                    let _ = self.steered.remove(i);
                }
                continue;
            };
            let movable =
                info.flags & irq_flags::CAN_SET != 0 && info.flags & irq_flags::MANAGED == 0;
            if !movable {
                if let Some(i) = pos {
                    let _ = self.steered.remove(i);
                }
                if info.affinity.union(&info.effective).intersects(isolated) {
                    let state = if info.flags & irq_flags::MANAGED != 0 {
                        State::Managed
                    } else {
                        State::Unmovable
                    };
                    self.record(irq, state, None)?;
                }
                continue;
            }
            let kept = ledger.kept_on(irq);
            let state = if kept.is_some() {
                State::Kept
            } else {
                State::Moved
            };
            let first = target(
                &info.affinity,
                kept.as_ref(),
                isolated,
                housekeeping,
                online,
            );
            match (pos, first) {
                (Some(i), _) => {
                    let targets = Targets {
                        kept: kept.as_ref(),
                        isolated,
                        housekeeping,
                        online,
                    };
                    self.update(i, &info.affinity, &targets, state, since, &mut scratch)?
                }
                (None, Some(target)) => {
                    // Reserve first, so the change is always remembered.
                    self.steered.reserve(1, GFP_KERNEL)?;
                    self.report.reserve(1, GFP_KERNEL)?;
                    match shim::irq_set_affinity(irq, &target) {
                        Ok(()) => {
                            // Recorded only if it is still ours to move.
                            let ours = self.confirm_set(
                                irq,
                                Purpose::Steer,
                                &info.affinity,
                                &target,
                                &mut scratch,
                            )?;
                            if ours {
                                let s = Steered {
                                    irq,
                                    original: info.affinity,
                                    applied: target,
                                };
                                self.steered.push(s, GFP_KERNEL)?;
                                self.record(irq, state, Some(info.affinity))?;
                            }
                        }
                        Err(e) => {
                            self.record(irq, State::Failed(-e.to_errno()), None)?;
                        }
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// Brings an already steered interrupt in line with `t`; `state` is
    /// what it is if it stays changed.
    fn update(
        &mut self,
        i: usize,
        current: &CpuSet,
        t: &Targets<'_>,
        state: State,
        since: &SinceLastPass<'_>,
        scratch: &mut IrqScratch,
    ) -> Result {
        let s = &mut self.steered[i];
        let original = since.original_after(&s.original, &s.applied, current)?;
        if *current != s.applied {
            if original == *current {
                pr_info!(
                    "IRQ {}: affinity changed to {} while isolated; keeping it\n",
                    s.irq,
                    current
                );
            } else {
                pr_info!(
                    "IRQ {}: the kernel moved it to {} when its CPUs went offline; steering it again\n",
                    s.irq,
                    current
                );
            }
            s.original = original;
        }
        let (irq, original) = (s.irq, s.original);
        let wanted = target(&original, t.kept, t.isolated, t.housekeeping, t.online);
        let restore = wanted.is_none();
        let target = wanted.unwrap_or(original);
        let changed = target != *current;
        let result = if changed {
            shim::irq_set_affinity(irq, &target)
        } else {
            Ok(())
        };
        if changed && result.is_ok() {
            if !self.confirm_set(irq, Purpose::of(restore), current, &target, scratch)? {
                // The kernel's now: not ours to record, nor to restore.
                let _ = self.steered.remove(i);
                return Ok(());
            }
        }
        if restore {
            let _ = self.steered.remove(i);
            if let Err(e) = result {
                pr_warn!(
                    "IRQ {}: could not restore affinity {} ({:?})\n",
                    irq,
                    original,
                    e
                );
                self.record(irq, State::Failed(-e.to_errno()), Some(original))?;
            }
            return Ok(());
        }
        match result {
            Ok(()) => {
                self.steered[i].applied = target;
                self.record(irq, state, Some(original))?;
            }
            Err(e) => {
                self.record(irq, State::Failed(-e.to_errno()), Some(original))?;
            }
        }
        Ok(())
    }
}
