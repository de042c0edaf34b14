// SPDX-License-Identifier: GPL-2.0
//! `ivshmem-server`: command-line entry point. See `ivshmem-server --help`.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use ivshmem_server::daemon::{self, PidFileGuard};
use ivshmem_server::v2::V2Device;
use ivshmem_server::{signals, Cli, Server};

/// Starts the server as `cli` says and serves until SIGINT/SIGTERM.
fn run(cli: &Cli) -> io::Result<()> {
    let pidfile = cli
        .pidfile
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let stop = signals::install()?;
    if cli.v2 {
        return run_v2(cli, pidfile, stop);
    }
    let mut server = Server::new(&cli.config())?;
    let _pidfile = detach(cli, pidfile)?;
    if cli.verbose {
        eprintln!(
            "ivshmem-server: listening on {} ({} bytes, {} vectors)",
            server.socket_path().display(),
            cli.size,
            cli.vectors
        );
    }
    server.run_until(stop)
}

/// Daemonizes unless `-F`, writing the pid file (in the foreground, or
/// by the daemon); it is removed when the returned guard drops.
fn detach(cli: &Cli, pidfile: Option<std::path::PathBuf>) -> io::Result<Option<PidFileGuard>> {
    if cli.foreground {
        if let Some(path) = &pidfile {
            daemon::write_pidfile(path, std::process::id())?;
        }
    } else {
        daemon::daemonize(pidfile.as_deref())?;
    }
    Ok(pidfile.map(PidFileGuard))
}

/// `--v2`: the ivshmem 2.0 device. Stays in the foreground unless `-F` is
/// missing, in which case it daemonizes before any thread starts.
fn run_v2(
    cli: &Cli,
    pidfile: Option<std::path::PathBuf>,
    stop: &'static std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    let dump = signals::install_dump()?;
    let mut config = cli.v2_config();
    // Absolute, so that they still work after daemonize's chdir("/").
    config.socket_path = std::path::absolute(&config.socket_path)?;
    for e in &mut config.endpoints {
        e.path = std::path::absolute(&e.path)?;
    }
    if let ivshmem_server::MemoryBacking::Dir(d) = &mut config.memory {
        *d = std::path::absolute(&*d)?;
    }
    // Validate before daemonizing, so that errors reach the terminal.
    let params = config.device_params()?;
    // Threads start in V2Device::new: fork first.
    let _pidfile = detach(cli, pidfile)?;
    let mut device = V2Device::new(&config, stop)?;
    if cli.verbose {
        let l = params.layout;
        eprintln!(
            "ivshmem-server: ivshmem 2.0 device, host peers on {}, {} max peers, {} vectors, protocol {:#06x}{}{}; state table {:#x}, R/W {:#x}+{:#x}, output {:#x} each from {:#x}; memory {} bytes, BAR2 {} bytes; vfio-user: {}",
            device.server().socket_path().display(),
            params.max_peers,
            params.vectors,
            params.protocol,
            if params.one_shot { ", one-shot" } else { "" },
            if cli.strict { ", strict" } else { "" },
            l.state_table().len,
            l.rw().offset,
            l.rw().len,
            l.output(0).map_or(0, |s| s.len),
            l.output(0).map_or(0, |s| s.offset),
            l.total(),
            params.bar2_size,
            config.endpoints.iter().map(|e| match e.protocol {
                Some(p) => format!("{} (protocol {p:#06x})", e.path.display()),
                None => e.path.display().to_string(),
            }).collect::<Vec<_>>().join(" ")
        );
    }
    device.run_until(stop, dump)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ivshmem-server: {e}");
            ExitCode::FAILURE
        }
    }
}
