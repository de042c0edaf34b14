// SPDX-License-Identifier: GPL-2.0

//! The code of `lincell`, the command line for lincell's kernel modules,
//! and of its test tool `ivshmem-abi-test`.
//!
//! One module per subcommand group, each with its clap arguments and a
//! function per subcommand that returns [`Error`]; the binaries
//! (`src/main.rs`, `src/bin/`) parse the command line, dispatch, and turn
//! errors into exit statuses.

// The modules' overviews link their private submodules, for readers of the
// source and of `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub mod cpu;
pub mod error;
pub mod ivshmem;
pub mod platform;
pub mod remote;
pub mod rng;
mod sys;

pub use error::Error;
pub use sys::ioctl_request;
