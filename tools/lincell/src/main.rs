// SPDX-License-Identifier: GPL-2.0

//! `lincell`: the command line for lincell's kernel modules.
//!
//! One subcommand group per module, each in its own module of the library
//! (`src/lib.rs`); this file parses, dispatches, and maps errors to exit
//! statuses, once for all subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lincell::{cpu, ivshmem, platform, remote, Error};

/// Drive lincell's kernel modules from userspace.
#[derive(Parser, Debug)]
#[command(
    name = "lincell",
    version,
    about,
    long_about = "\
Drive lincell's kernel modules from userspace:

  ivshmem   ivshmem.ko's /dev/ivshmemN (shared memory, doorbells, peer
            states), or the same subcommands as a host peer of an
            ivshmem-server
  isolate, release, status, noise
            cpu_isolate.ko: isolate CPUs and restore them, measure noise
  run       start a command on isolated CPUs: inside their cpuset
            partition, pinned, optionally SCHED_FIFO/SCHED_RR
  latency   a cyclictest-like RT loop to another cell over a message
            channel: round trips and wake-ups, histogram, JSON, SVG
  platform  this machine's virtualization and isolation hooks (CPU
            virtualization, IOMMU, cache partitioning, interrupt
            controller, SR-IOV, ivshmem, preemption, isolation in force)
  remote    backends for vdev_remote.ko (virtio-blk, virtio-console,
            virtio-net over ivshmem) and the vhost-user bridge

`lincell COMMAND --help` describes each command, with examples.

Exit status, the same for every command:
  0  success (remote serve: stopped by SIGINT or SIGTERM)
  1  the command ran and the answer is no: a check failed, a wait timed
     out, cpu_isolate.ko refused the request (its reason and errno are
     printed), the vdev-remote backend failed at run time
  2  the command could not run: bad arguments, no such device, module not
     loaded, a failing system call
  N  run, isolate -- COMMAND: COMMAND's own status (128 + N if signal N
     killed it)",
    after_help = "\
Examples:
  lincell ivshmem info /dev/ivshmem0
  lincell ivshmem echo --socket /tmp/ivshmem.sock --tap
  lincell isolate 2-3 && lincell noise --load && lincell release 2-3
  lincell remote serve --socket /tmp/ivshmem.sock --blk disk.img"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// The help of each command comes from its arguments' type: a doc comment
// on a variant here would replace it.
#[derive(Subcommand, Debug)]
enum Command {
    Ivshmem(ivshmem::Args),
    Isolate(cpu::IsolateArgs),
    Release(cpu::ReleaseArgs),
    Status(cpu::StatusArgs),
    Noise(cpu::NoiseArgs),
    Run(cpu::RunArgs),
    Platform(platform::Args),
    Latency(ivshmem::latency::Args),
    Remote(remote::Args),
}

/// The exit status for `e` (the table in `lincell --help`).
fn exit_status(e: &Error) -> u8 {
    match e {
        Error::Failed(_) | Error::Reported | Error::Refused { .. } | Error::Remote(_) => 1,
        Error::Usage(_) | Error::Io(_) => 2,
        Error::Exited(code) => *code,
    }
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    // What error messages start with: `lincell ivshmem: ...`.
    let prefix = match &command {
        Command::Ivshmem(_) => "lincell ivshmem",
        Command::Remote(a) => a.prefix(),
        Command::Isolate(_)
        | Command::Release(_)
        | Command::Status(_)
        | Command::Noise(_)
        | Command::Run(_) => "lincell",
        Command::Platform(_) => "lincell platform",
        Command::Latency(_) => "lincell latency",
    };
    let result = match command {
        Command::Ivshmem(args) => ivshmem::run(args),
        Command::Isolate(args) => cpu::isolate(args),
        Command::Release(args) => cpu::release(args),
        Command::Status(args) => cpu::status(args),
        Command::Noise(args) => cpu::noise(args),
        Command::Run(args) => cpu::run(args),
        Command::Platform(args) => platform::run(args),
        Command::Latency(args) => ivshmem::latency::run(args),
        Command::Remote(args) => remote::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, Error::Reported | Error::Exited(_)) {
                eprintln!("{prefix}: {e}");
            }
            ExitCode::from(exit_status(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Checks `cmd` and its visible subcommands, recursively: a summary, a
    /// long help, and examples where there is something to run.
    fn check_help(cmd: &mut clap::Command, path: &str) {
        for sub in cmd.get_subcommands_mut() {
            let name = format!("{path} {}", sub.get_name());
            if sub.is_hide_set() || sub.get_name() == "help" {
                continue;
            }
            let help = sub.render_long_help().to_string();
            assert!(sub.get_about().is_some(), "{name} has no summary");
            assert!(sub.get_long_about().is_some(), "{name} has no long help");
            if sub.has_subcommands() {
                check_help(sub, &name);
            } else {
                assert!(
                    help.contains("Example"),
                    "{name} --help has no example:\n{help}"
                );
            }
        }
    }

    #[test]
    fn every_command_has_long_help_with_examples() {
        let mut cli = Cli::command();
        assert!(cli.render_long_help().to_string().contains("Exit status"));
        check_help(&mut cli, "lincell");
    }

    /// The command lines of the guest tests, samples, benchmarks and the
    /// arm64 board (tests/, samples/, bench/, tests/host/), with
    /// their variables filled in: they must keep parsing.
    #[test]
    fn the_scripts_command_lines_parse() {
        let s = "/tmp/ivshmem.sock";
        let d = "/dev/ivshmem0";
        let lines: &[&[&str]] = &[
            &["ivshmem", "info", d],
            &["ivshmem", "list"],
            &["ivshmem", "copybench", d, "--chunk", "1M", "--seconds", "1"],
            &["ivshmem", "copybench", d, "--chunk", "4K", "--seconds", "1"],
            &["ivshmem", "counters", d],
            &["ivshmem", "states", d],
            &["ivshmem", "states", d, "--watch", "--timeout", "180000"],
            &["ivshmem", "state", d, "7"],
            &["ivshmem", "wait", d, "--nonblock"],
            &["ivshmem", "wait", d, "--timeout", "60000"],
            &["ivshmem", "ring", d, "1", "1", "--count", "100000"],
            &["ivshmem", "ring", d, "1", "1"],
            &["ivshmem", "poke", d, "rw+64K", "from guest a"],
            &["ivshmem", "poke", d, "rw+0x1000", "hello from arm64"],
            &["ivshmem", "peek", d, "rw+0x1000", "16"],
            &["ivshmem", "peek", d, "rw+0x4200", "7"],
            &[
                "ivshmem",
                "peek",
                d,
                "rw+96K",
                "64",
                "--wait-for",
                "from guest b",
                "--timeout",
                "240000",
            ],
            &[
                "ivshmem",
                "pingpong",
                d,
                "--count",
                "1",
                "--mode",
                "read",
                "--connect-timeout",
                "120000",
            ],
            &[
                "ivshmem",
                "pingpong",
                d,
                "--count",
                "2000",
                "--mode",
                "poll",
                "--stop",
                "--connect-timeout",
                "60000",
            ],
            &[
                "ivshmem",
                "pingpong",
                d,
                "--peer",
                "1",
                "--count",
                "2000",
                "--mode",
                "read",
                "--connect-timeout",
                "60000",
            ],
            &[
                "ivshmem", "pingpong", d, "--peer", "1", "--vector", "1", "--count", "1000",
                "--mode", "read", "--stop",
            ],
            &[
                "ivshmem",
                "pingpong",
                d,
                "--count",
                "10000",
                "--mode",
                "spin",
                "--stop",
                "--connect-timeout",
                "120000",
            ],
            &[
                "ivshmem",
                "echo",
                d,
                "--start-timeout",
                "240000",
                "--timeout",
                "30000",
            ],
            &[
                "ivshmem",
                "echo",
                "--socket",
                s,
                "--tap",
                "--start-timeout",
                "300000",
                "--timeout",
                "30000",
            ],
            &["ivshmem", "echo", "--socket", s, "--sessions", "1"],
            &[
                "ivshmem",
                "echo",
                "--socket",
                s,
                "--sessions",
                "2",
                "--start-timeout",
                "300000",
                "--timeout",
                "30000",
            ],
            &["isolate", "2-3"],
            &["isolate", "3", "--offline"],
            &["isolate", "0-3"],
            &["status"],
            &["noise", "--duration-ms", "400", "--load", "--hist"],
            &[
                "noise",
                "--cpus",
                "0,2-3",
                "--duration-ms",
                "1000",
                "--load",
                "--raw",
            ],
            &["release", "2-3"],
            &["release", "all"],
            &["remote", "serve", d, "--blk", "/tmp/disk.img"],
            &[
                "remote",
                "serve",
                "--socket",
                s,
                "--blk",
                "/tmp/disk.img",
                "--fault",
                "bad-used-index",
                "--fault-after",
                "64",
            ],
            &[
                "remote",
                "serve",
                "--socket",
                s,
                "--blk",
                "/tmp/disk.img",
                "--fault",
                "stall",
                "--fault-after",
                "40",
            ],
            &[
                "remote",
                "serve",
                "--socket",
                s,
                "--console",
                "unix:/tmp/console.sock",
            ],
        ];
        for line in lines {
            let argv = std::iter::once("lincell").chain(line.iter().copied());
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("{line:?}: {e}");
            }
        }
    }

    #[test]
    fn exit_statuses_follow_the_table() {
        use std::io;
        assert_eq!(exit_status(&Error::Usage("x".into())), 2);
        assert_eq!(exit_status(&Error::Io(io::Error::other("x"))), 2);
        assert_eq!(exit_status(&Error::Failed("x".into())), 1);
        assert_eq!(exit_status(&Error::Reported), 1);
        assert_eq!(exit_status(&Error::Remote("x".into())), 1);
    }
}
