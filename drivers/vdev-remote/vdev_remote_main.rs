// SPDX-License-Identifier: GPL-2.0

//! vdev_remote: a virtio transport over ivshmem shared memory.
//!
//! The kernel's own virtio drivers (virtio_blk, virtio_console,
//! virtio_net, ...) bind to a `virtio_device` this module registers, and
//! talk through it to a backend in another VM or in a host process, using
//! the Jailhouse virtio-over-ivshmem protocol (`rust/vdev/header.rs`).
//!
//! Binds ivshmem 2.0 functions whose protocol is a virtio frontend
//! (`0x8000 | device id`) by ID, and QEMU ivshmem devices through
//! `driver_override` (their virtio device id is in the lincell v1 layout
//! header). See `Documentation/vdev-remote.md`.
//!
//! Layout: `driver.rs` is the PCI driver; `link.rs` the state of one bound
//! ivshmem device (registers, sections, interrupts, the register-write
//! protocol, kicks, the backend's life cycle and recovery); `transport.rs`
//! the virtio device (what each config op does, as safe methods) and
//! `vops.rs` the C trampolines into it; `queue.rs` the virtqueues and
//! their shadow rings; `bounce.rs` the `virtio_map_ops` that bounce buffers
//! through shared memory; `shm.rs` their byte copies; `ffi.rs` the bindgen
//! output. Words of shared memory (header fields, the shared and the
//! private rings alike) are reached through `shared::shmem`. The kernel
//! code shared with `ivshmem.ko` (the start of probe, MSI-X vectors,
//! section discovery, MMIO adapters) is in `drivers/common/`, and the
//! device-independent logic is in `rust/`.

/// Shared logic from `rust/`, the same files the host crate tests, under the
/// same paths (`shared::vdev::header` is `lincell_shared::vdev::header`).
#[path = "../../rust"]
pub mod shared {
    /// ivshmem (v1 and v2): device identity, doorbells, sections.
    pub mod ivshmem {
        pub mod doorbell;
        pub mod ident;
        pub mod layout;
        pub mod regs;
        pub mod v1layout;
        pub mod vendor_cap;
    }

    /// Loads and stores of little-endian words in shared memory.
    pub mod shmem;

    /// vdev-remote: the virtio-over-ivshmem header, the shared-memory pool
    /// and the shadow split rings of the frontend.
    pub mod vdev {
        pub mod device_id;
        pub mod generation;
        pub mod header;
        pub mod pool;
        pub mod shadow;
    }
}

/// Kernel code shared with `ivshmem.ko`, from `drivers/common/`.
#[macro_use]
#[path = "../common/common.rs"]
mod common;
kernel_display!(
    shared::vdev::device_id::DeviceIdError,
    shared::vdev::header::HeaderError,
    shared::vdev::shadow::ShadowError
);

mod bounce;
mod driver;
mod ffi;
mod kunit;
mod link;
mod queue;
mod shm;
mod transport;
mod vops;

kernel::module_pci_driver! {
    type: driver::VdevRemoteDriver,
    name: "vdev_remote",
    authors: ["lincell developers"],
    description: "virtio transport over ivshmem shared memory (virtio-over-ivshmem frontend)",
    license: "GPL v2",
    params: {
        v1_device_id: u32 {
            default: 0,
            description: "QEMU ivshmem devices: the only virtio device type to register (1 net, 2 blk, 3 console), also for a backend that announces none in the lincell v1 header (0: any of these, announced)",
        },
        request_timeout_ms: u32 {
            default: 10000,
            description: "A backend that completes nothing for this long while requests are outstanding is declared dead (0: never)",
        },
    },
}
