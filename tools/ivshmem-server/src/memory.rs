// SPDX-License-Identifier: GPL-2.0
//! Creating the shared memory the server hands out.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::cli::MemoryBacking;

/// The shared memory: a file descriptor of the requested size.
///
/// A POSIX shared memory object is unlinked when this is dropped (peers that
/// already have it keep their mapping); a file in a directory is unlinked
/// right after creation, so nothing is left behind either way.
#[derive(Debug)]
pub struct SharedMemoryFile {
    fd: OwnedFd,
    shm_name: Option<CString>,
}

/// Adds context to the last OS error.
fn os_error(what: String) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

impl SharedMemoryFile {
    /// Creates (or reuses, for an existing POSIX object) the memory and sets
    /// its size to `size` bytes.
    pub fn create(backing: &MemoryBacking, size: u64) -> io::Result<Self> {
        let this = match backing {
            MemoryBacking::ShmName(name) => Self::shm_open(name)?,
            MemoryBacking::Dir(dir) => Self::unlinked_file(dir.as_os_str().as_bytes())?,
        };
        let len = libc::off_t::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("size {size} is too large"),
            )
        })?;
        // SAFETY: ftruncate takes no pointers; the fd is ours.
        if unsafe { libc::ftruncate(this.fd.as_raw_fd(), len) } < 0 {
            return Err(os_error(format!(
                "cannot set shared memory size to {size} bytes"
            )));
        }
        Ok(this)
    }

    /// Opens (creating if needed) the POSIX shared memory object `name`.
    fn shm_open(name: &str) -> io::Result<Self> {
        let bare = name.strip_prefix('/').unwrap_or(name);
        if bare.is_empty() || bare.contains('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid shared memory name '{name}': must be non-empty without '/'"),
            ));
        }
        let cname = CString::new(format!("/{bare}")).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory name contains NUL",
            )
        })?;
        // SAFETY: cname is a valid NUL-terminated string.
        let fd = unsafe {
            libc::shm_open(
                cname.as_ptr(),
                libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(os_error(format!(
                "cannot open shared memory object '{name}'"
            )));
        }
        // SAFETY: fd was just returned by shm_open and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self {
            fd,
            shm_name: Some(cname),
        })
    }

    /// Creates a file in `dir` and unlinks it, keeping only the descriptor.
    fn unlinked_file(dir: &[u8]) -> io::Result<Self> {
        let shown = String::from_utf8_lossy(dir).into_owned();
        let mut template = dir.to_vec();
        template.extend_from_slice(b"/ivshmem.XXXXXX");
        let template = CString::new(template).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "directory name contains NUL")
        })?;
        let mut buf = template.into_bytes_with_nul();
        // SAFETY: buf is a writable NUL-terminated template ending in XXXXXX.
        let fd = unsafe { libc::mkostemp(buf.as_mut_ptr().cast(), libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(os_error(format!("cannot create a file in '{shown}'")));
        }
        // SAFETY: fd was just returned by mkostemp and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: buf still holds the NUL-terminated name mkostemp filled in.
        if unsafe { libc::unlink(buf.as_ptr().cast()) } < 0 {
            return Err(os_error(format!(
                "cannot unlink the memory file in '{shown}'"
            )));
        }
        Ok(Self { fd, shm_name: None })
    }

    /// The memory's file descriptor, to be sent to peers.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for SharedMemoryFile {
    fn drop(&mut self) {
        if let Some(name) = &self.shm_name {
            // SAFETY: name is a valid NUL-terminated string.
            unsafe { libc::shm_unlink(name.as_ptr()) };
        }
    }
}
