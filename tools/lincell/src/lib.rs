// SPDX-License-Identifier: GPL-2.0

//! The code of `lincell`, the command line for lincell's kernel modules,
//! and of its test tool `ivshmem-abi-test`.
//!
//! One module per subcommand group, each with its clap arguments and a
//! function per subcommand that returns [`Error`]; the binaries
//! (`src/main.rs`, `src/bin/`) parse the command line, dispatch, and turn
//! errors into exit statuses.

pub mod cpu;
pub mod error;
pub mod ivshmem;
pub mod remote;
mod sys;

pub use error::Error;
