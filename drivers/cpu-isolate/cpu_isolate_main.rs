// SPDX-License-Identifier: GPL-2.0

//! cpu_isolate: isolate CPUs at run time, restore them exactly, and measure
//! how quiet they are.
//!
//! Layout: this file is the crate root and the module's life cycle;
//! `isolation.rs` drives isolate/release with the shared state machine,
//! `irq.rs` and `kthreads.rs` steer interrupts and kernel threads,
//! `offline.rs` takes CPUs offline and back, `sampler.rs` (with `kthread.rs`)
//! measures noise, `state.rs` and `sysfs.rs` are the interface, `shim.rs`
//! declares the C shim (`shim.c`), `kunit.rs` holds the in-kernel tests.
//! The pure logic (cpulists, CPU sets, the ledger of isolations, noise
//! statistics) lives in `rust/cpu_isolate/` and is shared with the host.

/// Shared logic from `rust/`, the same files the host crate tests, under the
/// same paths (`shared::cpu_isolate::cpulist` is
/// `lincell_shared::cpu_isolate::cpulist`).
#[path = "../../rust"]
pub mod shared {
    /// cpulists, CPU sets, the isolation state machine, noise statistics.
    pub mod cpu_isolate {
        pub mod cpulist;
        pub mod cpuset;
        pub mod histogram;
        pub mod ledger;
        pub mod recheck;
        pub mod request;
    }
}

#[macro_use]
#[path = "../common/bindgen.rs"]
mod bindgen;

mod irq;
mod isolation;
mod kthread;
mod kthreads;
mod kunit;
mod offline;
mod sampler;
mod shim;
mod state;
mod sysfs;

use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::Mutex;

use crate::shared::cpu_isolate::cpuset::MAX_CPUS;
use crate::state::State;
use crate::sysfs::SysfsDir;

module! {
    type: CpuIsolateModule,
    name: "cpu_isolate",
    authors: ["lincell developers"],
    description: "Run-time CPU isolation with exact restore, and a noise sampler",
    license: "GPL v2",
}

struct CpuIsolateModule {
    // Field order is drop order: the sysfs directory goes (and running
    // callbacks drain) before the state it points to. `Drop` below releases
    // everything first.
    sysfs: Option<SysfsDir>,
    state: Pin<KBox<Mutex<State>>>,
    // Last: the steering reads its record until the state is torn down.
    _hotplug: shim::HotplugWatch,
}

impl kernel::Module for CpuIsolateModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let nr = shim::nr_cpu_ids();
        if nr > MAX_CPUS {
            pr_err!("{} CPU ids; this module handles at most {}\n", nr, MAX_CPUS);
            return Err(ENODEV);
        }
        let hotplug = shim::HotplugWatch::new()?;
        let state = KBox::pin_init(new_mutex!(State::new()), GFP_KERNEL)?;
        // SAFETY: `state` is pinned on the heap and, by field order, outlives
        // the directory.
        let sysfs = unsafe { SysfsDir::create(&state) }?;
        Ok(CpuIsolateModule {
            sysfs: Some(sysfs),
            state,
            _hotplug: hotplug,
        })
    }
}

impl Drop for CpuIsolateModule {
    fn drop(&mut self) {
        // No new requests, then undo everything this module changed.
        drop(self.sysfs.take());
        self.state.lock().teardown();
    }
}
