// SPDX-License-Identifier: GPL-2.0

//! Kernel code both PCI drivers use: `ivshmem.ko` and `vdev_remote.ko`
//! compile this folder into their crates with the same line,
//!
//! ```ignore
//! #[macro_use]
//! #[path = "../common/common.rs"]
//! mod common;
//! ```
//!
//! and each crate also holds the shared logic of `rust/` as `crate::shared`
//! (the module tree of the host crate, `lincell_shared`), which these files
//! use. Siblings are reached with `super::`.
//!
//! `probe.rs` is the start of probe that both drivers share; `irq.rs` the
//! interrupt vectors; `mmio.rs` adapts BAR0 and the shared memory to the
//! shared traits; `sections.rs` finds the section layout of a device;
//! `display.rs` lets the kernel print the errors of the shared logic.

#[macro_use]
pub(crate) mod display;
pub(crate) mod irq;
pub(crate) mod mmio;
pub(crate) mod probe;
pub(crate) mod sections;
