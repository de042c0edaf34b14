// SPDX-License-Identifier: GPL-2.0

//! `lincell`: the command line for lincell's kernel modules.
//!
//! One subcommand group per module; each lives in its own file.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cpu;
mod ivshmem;
mod remote;
mod sys;

/// Drive lincell's kernel modules from userspace.
#[derive(Parser, Debug)]
#[command(name = "lincell", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    // Help text (short and long) comes from `ivshmem::Args`: a doc comment
    // here would replace its long help.
    Ivshmem(ivshmem::Args),
    /// Isolate CPUs (cpu_isolate.ko): steer IRQs and kernel threads off them, optionally take them offline.
    Isolate(cpu::IsolateArgs),
    /// Release an isolation, restoring exactly what was there before.
    Release(cpu::ReleaseArgs),
    /// Show what cpu_isolate.ko has isolated and moved.
    Status(cpu::StatusArgs),
    /// Measure per-CPU noise with cpu_isolate.ko's sampler (optionally under load).
    Noise(cpu::NoiseArgs),
    // Help text comes from `remote::Args`, as for `ivshmem`.
    Remote(remote::Args),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Ivshmem(args) => ivshmem::run(args),
        Command::Isolate(args) => cpu::isolate(args),
        Command::Release(args) => cpu::release(args),
        Command::Status(args) => cpu::status(args),
        Command::Noise(args) => cpu::noise(args),
        Command::Remote(args) => remote::run(args),
    }
}
