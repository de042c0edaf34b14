// SPDX-License-Identifier: GPL-2.0
//! `ivshmem-server`: command-line entry point. See `ivshmem-server --help`.

use std::io;
use std::process::ExitCode;

use clap::Parser;
use ivshmem_server::daemon::{self, PidFileGuard};
use ivshmem_server::{signals, Cli, Server};

/// Starts the server as `cli` says and serves until SIGINT/SIGTERM.
fn run(cli: &Cli) -> io::Result<()> {
    let pidfile = cli
        .pidfile
        .as_deref()
        .map(std::path::absolute)
        .transpose()?;
    let stop = signals::install()?;
    let mut server = Server::new(&cli.config())?;
    if cli.foreground {
        if let Some(path) = &pidfile {
            daemon::write_pidfile(path, std::process::id())?;
        }
    } else {
        daemon::daemonize(pidfile.as_deref())?;
    }
    let _pidfile = pidfile.map(PidFileGuard);
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
