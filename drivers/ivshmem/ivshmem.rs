// SPDX-License-Identifier: GPL-2.0

//! ivshmem: PCI driver for ivshmem 2.0 (Jailhouse) and QEMU's ivshmem.
//!
//! Binds `110a:4106` (ivshmem 2.0, class `ff`, every protocol except the
//! virtio ones, which belong to `vdev_remote`) and `1af4:1110` (QEMU's
//! `ivshmem-plain` and `ivshmem-doorbell`), and reports what it found.
//!
//! Layout: this file is the crate root. `driver.rs` is the PCI driver
//! (probe/unbind), `device.rs` the state shared with open files and IRQ
//! handlers, `chardev.rs` `/dev/ivshmemN`, `irq.rs` the MSI-X vectors,
//! `sections.rs` finds the section layout, `mmio.rs` adapts BAR0 and the
//! shared memory to the shared traits, `display.rs` lets the kernel print the
//! shared errors, `sysfs.rs` the PCI attributes, `kunit.rs` holds the
//! in-kernel tests.
//! The device-independent logic (identity, register models, doorbells,
//! section layouts, the v1 header, the simulated v2 device, the user ABI)
//! lives in `rust/ivshmem/` and is tested on the host too.

/// Shared logic from `rust/ivshmem/`, the same files the host crate tests.
#[path = "../../rust/ivshmem"]
pub mod shared {
    pub mod doorbell;
    pub mod ident;
    pub mod layout;
    pub mod regs;
    pub mod sim;
    pub mod uapi;
    pub mod v1layout;
    pub mod vendor_cap;
}

#[macro_use]
mod display;

mod chardev;
mod device;
mod driver;
mod irq;
mod kunit;
mod mmio;
mod sections;
mod sysfs;

kernel::module_pci_driver! {
    type: driver::IvshmemDriver,
    name: "ivshmem",
    authors: ["lincell developers"],
    description: "ivshmem 2.0 and QEMU ivshmem shared-memory devices",
    license: "GPL v2",
}
