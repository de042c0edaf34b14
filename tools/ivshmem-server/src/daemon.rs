// SPDX-License-Identifier: GPL-2.0
//! Running in the background, and the pid file.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Writes `pid` and a newline to `path`, atomically (a temporary file
/// renamed into place): whoever sees the file sees the whole pid.
pub fn write_pidfile(path: &Path, pid: u32) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io::Error::new(
                e.kind(),
                format!("cannot write pid file {}: {e}", path.display()),
            )
        })
}

/// Removes the pid file when dropped.
#[derive(Debug)]
pub struct PidFileGuard(pub PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Detaches from the terminal: forks, and the parent writes the child's pid
/// to `pidfile` (if any) and exits at once with status 0, without running
/// destructors. The child, which returns, starts a new session, changes to
/// `/` and points stdin, stdout and stderr at `/dev/null`.
///
/// Must be called while the process has a single thread. Paths the caller
/// keeps using must be absolute.
pub fn daemonize(pidfile: Option<&Path>) -> io::Result<()> {
    // SAFETY: the process is single-threaded (documented requirement).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child > 0 {
        let status = match pidfile.map(|p| write_pidfile(p, child.unsigned_abs())) {
            Some(Err(e)) => {
                eprintln!("ivshmem-server: {e}");
                // SAFETY: kill takes no pointers; child is our own child.
                unsafe { libc::kill(child, libc::SIGTERM) };
                1
            }
            _ => 0,
        };
        // SAFETY: _exit ends the parent without touching the state (socket,
        // shared memory) that now belongs to the child.
        unsafe { libc::_exit(status) };
    }
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..3 {
        // SAFETY: both are open descriptors; dup2 replaces the target.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
