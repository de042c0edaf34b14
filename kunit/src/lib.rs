// SPDX-License-Identifier: GPL-2.0
//! Turning the text a lincell VM test run produces into verdicts.
//!
//! The harness captures the guest's console (kernel log plus the stdout of
//! the guest test script) and sometimes host-side `cargo test` output. This
//! crate only reads that text; it never runs anything:
//!
//! - [`ktap`] counts KUnit / KTAP / plain TAP results, tolerating the dmesg
//!   prefixes and unrelated log lines mixed into them;
//! - [`cargo`] totals the summaries of `cargo test`;
//! - [`splat`] finds kernel log lines saying the kernel caught a bug, which
//!   fail a run even when every test passed;
//! - [`dmesg`] strips the kernel log prefix shared by the other two readers.

pub mod cargo;
pub mod dmesg;
pub mod ktap;
pub mod splat;

pub use cargo::{parse_cargo_test, CargoTotals};
pub use ktap::{parse, Case, Outcome, Report};
pub use splat::{find_splats, Splat};
