// SPDX-License-Identifier: GPL-2.0

//! Offline hand-off: taking CPUs offline (as Jailhouse does before it gives
//! them to a cell) and bringing them back online.
//!
//! `remove_cpu()`/`add_cpu()` are the exported entry points; they take the
//! device hotplug lock themselves. They are called with the module's state
//! mutex held (isolate and release are serialized by it), which is safe
//! because no hotplug callback takes it: the module registers none. The kernel itself refuses the
//! boot CPU (`-EPERM`); the ledger refuses it earlier with a message.

use kernel::bindings;
use kernel::error::to_result;
use kernel::prelude::*;

use crate::shared::cpu_isolate::cpuset::CpuSet;

/// CPUs this module took offline and will bring back unless told to keep
/// them offline ([`Offlined::keep`]): a failed isolation rolls back on drop.
pub(crate) struct Offlined {
    cpus: CpuSet,
}

impl Offlined {
    /// Nothing taken offline yet.
    pub(crate) fn new() -> Self {
        Offlined {
            cpus: CpuSet::new(),
        }
    }

    /// Takes `cpu` offline.
    pub(crate) fn take(&mut self, cpu: u32) -> Result {
        // SAFETY: process context; the only lock of ours held is the state
        // mutex, which no hotplug callback takes (module doc). The kernel
        // validates `cpu`.
        to_result(unsafe { bindings::remove_cpu(cpu) })?;
        self.cpus.insert(cpu);
        Ok(())
    }

    /// Keeps the CPUs offline: the isolation succeeded.
    pub(crate) fn keep(mut self) {
        self.cpus = CpuSet::new();
    }
}

impl Drop for Offlined {
    fn drop(&mut self) {
        if let Err((cpu, e)) = bring_online(&self.cpus) {
            pr_err!("rollback: CPU {} stays offline ({:?})\n", cpu, e);
        }
    }
}

/// Brings every CPU of `cpus` online; tries them all and returns the first
/// failure.
pub(crate) fn bring_online(cpus: &CpuSet) -> core::result::Result<(), (u32, Error)> {
    let mut first = Ok(());
    for cpu in cpus.iter() {
        // SAFETY: as in `Offlined::take`.
        if let Err(e) = to_result(unsafe { bindings::add_cpu(cpu) }) {
            if first.is_ok() {
                first = Err((cpu, e));
            }
        }
    }
    first
}
