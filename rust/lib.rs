// SPDX-License-Identifier: GPL-2.0

//! lincell's shared logic, host build.
//!
//! Everything under `rust/` is plain `no_std` Rust with no dependencies: the
//! kernel modules include the same files with `#[path]` modules, as
//! `crate::shared` with this crate's module tree (see
//! `drivers/ivshmem/ivshmem.rs`), and this crate compiles them for the host so
//! the logic is unit-tested and fuzzed with `cargo test`, and shared with the
//! userspace tools.
//!
//! Rules for files in this directory, so that they build in both places:
//! - only `core`, no `alloc`, no `std` (except `host.rs`, which only the
//!   host crate builds);
//! - refer to sibling modules with `super::`, never `crate::`;
//! - no `unsafe` outside `shmem.rs`, which turns a pointer into checked
//!   accesses to shared memory once for everyone; anything else that
//!   touches hardware or user memory lives in the module's thin FFI layer;
//! - every value read from memory a peer can write is validated here, and the
//!   validation is tested.

#![no_std]

/// Loads and stores of little-endian words in shared memory: the one
/// interface of every layout, header and ring below.
pub mod shmem;

pub mod channel;

/// Host-only additions to [`shmem`]: heap-backed test memory, I/O errors.
#[cfg(any(test, feature = "std"))]
pub mod host;

/// ivshmem (v1 and v2): device identity, doorbells, shared-memory sections.
pub mod ivshmem {
    pub mod doorbell;
    pub mod ident;
    pub mod layout;
    pub mod regs;
    pub mod sim;
    pub mod uapi;
    pub mod v1layout;
    pub mod vendor_cap;
}

/// vdev-remote: the virtio-over-ivshmem header, the shared-memory pool and
/// the shadow split rings of the frontend.
pub mod vdev {
    pub mod device_id;
    pub mod generation;
    pub mod header;
    pub mod pool;
    pub mod shadow;
}

/// cpu_isolate: cpulists, CPU sets, the isolation state machine, noise
/// statistics.
pub mod cpu_isolate {
    pub mod cpulist;
    pub mod cpuset;
    pub mod histogram;
    pub mod ledger;
    pub mod recheck;
    pub mod request;
}
