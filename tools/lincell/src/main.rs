// SPDX-License-Identifier: GPL-2.0

//! `lincell`: the command line for lincell's kernel modules.
//!
//! One subcommand group per module; each lives in its own file.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Drive lincell's kernel modules from userspace.
#[derive(Parser, Debug)]
#[command(name = "lincell", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn main() -> ExitCode {
    match Cli::parse().command {}
}
