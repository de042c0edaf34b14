// SPDX-License-Identifier: GPL-2.0

//! ivshmem: PCI driver for ivshmem 2.0 (Jailhouse) and QEMU's ivshmem.
//!
//! Binds `110a:4106` (ivshmem 2.0, class `ff`, every protocol except the
//! virtio ones, which belong to `vdev_remote`) and `1af4:1110` (QEMU's
//! `ivshmem-plain` and `ivshmem-doorbell`), and reports what it found.
//!
//! Layout: this file is the crate root; `driver.rs` is the PCI driver,
//! `regs.rs` the register blocks of both revisions, `kunit.rs` the in-kernel
//! tests. The device-independent logic (identity, doorbells, section layout)
//! lives in `rust/ivshmem/` and is shared with the host tools.

/// Shared logic from `rust/ivshmem/`, the same files the host crate tests.
#[path = "../../rust/ivshmem"]
pub mod shared {
    pub mod doorbell;
    pub mod ident;
    pub mod layout;
    pub mod uapi;
}

mod chardev;
mod device;
mod driver;
mod hal;
mod irq;
mod kunit;
mod regs;

kernel::module_pci_driver! {
    type: driver::IvshmemDriver,
    name: "ivshmem",
    authors: ["lincell developers"],
    description: "ivshmem 2.0 and QEMU ivshmem shared-memory devices",
    license: "GPL v2",
}
