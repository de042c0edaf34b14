// SPDX-License-Identifier: GPL-2.0

//! lincell's VM test harness as a library (the `lincell-vm` binary is its
//! command line): boot guests under virtme-ng with a time limit, run guest
//! test scripts, and turn their TAP/KTAP output and kernel logs into counted
//! test cases.

pub mod bench;
pub mod check;
pub mod guest;
pub mod scenario;
