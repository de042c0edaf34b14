// SPDX-License-Identifier: GPL-2.0
//! Thin wrappers around `poll(2)` with [`Duration`] timeouts.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

/// Converts a timeout to poll's milliseconds: `None` waits forever, and a
/// partial millisecond rounds up so that short waits do not become busy loops.
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(t) => {
            let ms = t.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

/// Polls `fds` once and returns the number of entries with events.
///
/// An interrupted call (`EINTR`, e.g. a signal arrived) returns `Ok(0)` so
/// that the caller can look at its stop flag.
pub fn poll_fds(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let nfds = libc::nfds_t::try_from(fds.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors to poll"))?;
    // SAFETY: fds is a live, writable slice of nfds pollfd structures.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms(timeout)) };
    match usize::try_from(r) {
        Ok(n) => Ok(n),
        Err(_) => {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            }
        }
    }
}

/// Waits until `fd` is readable, hung up or in error, for at most `timeout`
/// (`None`: forever). Returns `Ok(false)` if the time ran out first.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut pfd = [libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if poll_fds(&mut pfd, left)? > 0 {
            return Ok(true);
        }
        if left.is_some_and(|l| l.is_zero()) || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}
