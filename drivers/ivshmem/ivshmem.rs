// SPDX-License-Identifier: GPL-2.0

//! ivshmem: PCI driver for ivshmem 2.0 (Jailhouse) and QEMU's ivshmem.
//!
//! Binds `110a:4106` (ivshmem 2.0, class `ff`, every protocol except the
//! virtio ones, which belong to `vdev_remote`) and `1af4:1110` (QEMU's
//! `ivshmem-plain` and `ivshmem-doorbell`), and reports what it found.
//!
//! Layout: this file is the crate root. `driver.rs` is the PCI driver
//! (probe/unbind), `device.rs` the state shared with open files and IRQ
//! handlers, `chardev.rs` `/dev/ivshmemN`, `sysfs.rs` the PCI attributes,
//! `kunit.rs` holds the in-kernel tests.
//! The kernel code shared with `vdev_remote.ko` (the start of probe, MSI-X
//! vectors, section discovery, MMIO adapters) is in `drivers/common/`, and
//! the device-independent logic (identity, register models, doorbells,
//! section layouts, the v1 header, the simulated v2 device, the user ABI)
//! lives in `rust/ivshmem/` and is tested on the host too.

/// Shared logic from `rust/`, the same files the host crate tests, under the
/// same paths (`shared::ivshmem::regs` is `lincell_shared::ivshmem::regs`).
#[path = "../../rust"]
pub mod shared {
    /// ivshmem (v1 and v2): device identity, doorbells, sections.
    pub mod ivshmem {
        pub mod doorbell;
        pub mod ident;
        pub mod layout;
        pub mod regs;
        // The simulated device only serves the KUnit suites, which exist
        // only with `CONFIG_KUNIT=y` (see `kunit_tests`).
        #[cfg(CONFIG_KUNIT = "y")]
        pub mod sim;
        pub mod uapi;
        pub mod v1layout;
        pub mod vendor_cap;
    }

    /// Loads and stores of little-endian words in shared memory.
    pub mod shmem;
}

/// Kernel code shared with `vdev_remote.ko`, from `drivers/common/`.
#[macro_use]
#[path = "../common/common.rs"]
mod common;

mod chardev;
mod device;
mod driver;
mod kunit;
mod sysfs;

kernel::module_pci_driver! {
    type: driver::IvshmemDriver,
    name: "ivshmem",
    authors: ["lincell developers"],
    description: "ivshmem 2.0 and QEMU ivshmem shared-memory devices",
    license: "GPL v2",
}
