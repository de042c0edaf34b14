// SPDX-License-Identifier: GPL-2.0
//! eventfd operations: the doorbells of ivshmem.
//!
//! Ringing a vector adds 1 to its eventfd counter; the owner of the vector
//! reads (and so resets) the counter to learn how many rings arrived.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Creates a blocking, close-on-exec eventfd with counter 0.
pub fn create() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a descriptor we just created and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to the counter of `fd`, waking whoever waits on it.
pub fn signal(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    loop {
        // SAFETY: `one` is a live 8-byte buffer.
        let r = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if r == 8 {
            return Ok(());
        }
        let err = if r < 0 {
            io::Error::last_os_error()
        } else {
            io::Error::other(format!("short write of {r} bytes to eventfd"))
        };
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Reads and resets the counter of a non-blocking eventfd.
///
/// Returns `Ok(None)` if the counter is zero (`EAGAIN`).
pub fn try_read(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: buf is a live, writable 8-byte buffer.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r == 8 {
            return Ok(Some(u64::from_ne_bytes(buf)));
        }
        let err = if r < 0 {
            io::Error::last_os_error()
        } else {
            io::Error::other(format!("short read of {r} bytes from eventfd"))
        };
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Sets `O_NONBLOCK` on `fd`.
///
/// The flag belongs to the open file description, which the server and the
/// other peers share; they only ever write to our eventfds, and a write to an
/// eventfd only blocks when its counter is about to overflow, so this is safe.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointer argument.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL takes an int argument.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
