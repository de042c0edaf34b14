// SPDX-License-Identifier: GPL-2.0

//! Isolate and release: the shared state machine ([`Ledger`]) driving the
//! three levers the module has (interrupts, kernel threads, CPU hotplug).
//!
//! Isolation order: check, steer interrupts and threads off the new CPUs,
//! then (offline mode) take the CPUs offline, then record the region. Any
//! failure undoes what was done, so a refused or failed request changes
//! nothing. Release runs in reverse: bring offline CPUs back, forget the
//! region, re-steer for what is still isolated (restoring the originals when
//! nothing is).

use kernel::prelude::*;

use crate::irq::IrqSteering;
use crate::kthreads::KthreadSteering;
use crate::offline::{self, Offlined};
use crate::shared::cpu_isolate::cpuset::CpuSet;
use crate::shared::cpu_isolate::ledger::{original_after, Ledger, Refusal, Region};
use crate::shared::cpu_isolate::request::{IsolateRequest, Mode, ReleaseRequest};
use crate::shim::{self, irq_flags, IrqScratch};

/// Why an isolate or release request did not happen.
pub(crate) enum Failure {
    /// Refused by the ledger's checks.
    Refused(Refusal),
    /// The kernel failed a step (CPU hotplug, memory); `cpu` if one CPU.
    Kernel {
        what: &'static str,
        cpu: Option<u32>,
        err: Error,
    },
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Refused(r)
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Kernel {
            what: "out of memory",
            cpu: None,
            err,
        }
    }
}

/// All isolation state.
pub(crate) struct Isolator {
    ledger: Ledger,
    irqs: IrqSteering,
    kthreads: KthreadSteering,
    /// The CPUs online at the last steering pass.
    online_then: CpuSet,
}

/// What CPU hotplug did since the last steering pass, for telling the
/// kernel's own affinity changes from someone's choice
/// ([`original_after`]).
pub(crate) struct SinceLastPass<'a> {
    online_then: &'a CpuSet,
}

impl SinceLastPass<'_> {
    /// The original to keep for something steered from `original` to
    /// `applied`, now found at `current`.
    pub(crate) fn original_after(
        &self,
        original: &CpuSet,
        applied: &CpuSet,
        current: &CpuSet,
    ) -> Result<CpuSet> {
        if current == applied {
            return Ok(*original);
        }
        // Read after `current`: a break visible there is recorded here.
        let went_offline = shim::went_offline()?;
        Ok(original_after(
            original,
            applied,
            current,
            self.online_then,
            &went_offline,
        ))
    }
}

/// Checks that every interrupt `req` keeps exists and can be moved.
fn check_kept_irqs(req: &IsolateRequest) -> Result<(), Failure> {
    if req.irqs.as_slice().is_empty() {
        return Ok(());
    }
    let mut scratch = IrqScratch::new()?;
    for &irq in req.irqs.as_slice() {
        let info = shim::irq_query(irq, &mut scratch).ok_or(Refusal::NoSuchIrq(irq))?;
        if info.flags & irq_flags::CAN_SET == 0 || info.flags & irq_flags::MANAGED != 0 {
            return Err(Refusal::IrqNotMovable(irq).into());
        }
    }
    Ok(())
}

impl Isolator {
    /// Nothing isolated.
    pub(crate) fn new() -> Self {
        Isolator {
            ledger: Ledger::new(),
            irqs: IrqSteering::new(),
            kthreads: KthreadSteering::new(),
            online_then: CpuSet::new(),
        }
    }

    /// The active regions.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Interrupt steering state.
    pub(crate) fn irqs(&self) -> &IrqSteering {
        &self.irqs
    }

    /// Kernel-thread steering state.
    pub(crate) fn kthreads(&self) -> &KthreadSteering {
        &self.kthreads
    }

    /// Steers interrupts and threads for `isolated`.
    fn steer(&mut self, isolated: &CpuSet) -> Result {
        let topo = shim::topology()?;
        let hk = topo
            .online
            .intersection(&topo.housekeeping)
            .difference(isolated);
        let seen = shim::went_offline()?;
        let since = SinceLastPass {
            online_then: &self.online_then,
        };
        self.irqs
            .reconcile(&self.ledger, isolated, &hk, &topo.online, &since)?;
        self.kthreads
            .reconcile(&self.ledger, isolated, &hk, &topo.online, &since)?;
        // Every steered item was just checked with `topo.online` online;
        // CPUs that go offline from now on stay recorded.
        self.online_then = topo.online;
        shim::forget_offline(&seen)
    }

    /// Isolates `req.cpus`, or changes nothing.
    pub(crate) fn isolate(&mut self, req: &IsolateRequest) -> Result<(), Failure> {
        let topo = shim::topology()?;
        self.ledger.check_isolate(&topo, req)?;
        check_kept_irqs(req)?;
        let before = self.ledger.isolated();
        let after = before.union(&req.cpus);
        // Take the ledger slot first, so nothing can fail after the system
        // has been changed; give it back if applying fails, then steer for
        // what was isolated before.
        let slot = self.ledger.add(Region::from(req))?;
        let result = self.apply(req, &after);
        if result.is_err() {
            self.ledger.remove(slot);
            self.undo_steer(&before);
        }
        result
    }

    /// Steers for `after` and takes `req`'s CPUs offline if asked; the
    /// caller undoes the steering on failure.
    fn apply(&mut self, req: &IsolateRequest, after: &CpuSet) -> Result<(), Failure> {
        self.steer(after)?;
        if req.mode == Mode::Offline {
            let mut off = Offlined::new();
            for cpu in req.cpus.iter() {
                if let Err(err) = off.take(cpu) {
                    // `off` brings back what it took when it drops.
                    drop(off);
                    return Err(Failure::Kernel {
                        what: "remove_cpu() failed",
                        cpu: Some(cpu),
                        err,
                    });
                }
            }
            off.keep();
        }
        Ok(())
    }

    fn undo_steer(&mut self, isolated: &CpuSet) {
        if let Err(e) = self.steer(isolated) {
            pr_err!("rollback of steering failed ({:?})\n", e);
        }
    }

    /// Releases what `req` names. Release always completes: a CPU that does
    /// not come back online is reported (and stays offline), the region is
    /// forgotten either way.
    pub(crate) fn release(&mut self, req: &ReleaseRequest) -> Result<(), Failure> {
        let sel = self.ledger.check_release(req)?;
        let mut result = Ok(());
        for &slot in sel.slots() {
            let Some(region) = self.ledger.remove(slot) else {
                continue;
            };
            if region.mode == Mode::Offline {
                if let Err((cpu, err)) = offline::bring_online(&region.cpus) {
                    pr_err!(
                        "release: CPU {} did not come back online ({:?})\n",
                        cpu,
                        err
                    );
                    result = Err(Failure::Kernel {
                        what: "add_cpu() failed",
                        cpu: Some(cpu),
                        err,
                    });
                }
            }
        }
        let still = self.ledger.isolated();
        self.steer(&still)?;
        result
    }
}
