// SPDX-License-Identifier: GPL-2.0
//! The shared-memory region, mapped into this process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

use lincell_shared::shmem::{self, RawRegion};

/// A `MAP_SHARED` read/write mapping of the whole ivshmem region.
///
/// Other peers (guests, host processes) change this memory at any time, so
/// no Rust reference into it is ever handed out: words are loaded and
/// stored through [`SharedMemory::region`] (lincell's one shared-memory
/// interface, atomic single accesses suitable for flags and counters), and
/// bytes are copied.
///
/// # Invariants
///
/// `region` is exactly the mapping made in [`SharedMemory::map`], unmapped
/// only in `drop`.
#[derive(Debug)]
pub struct SharedMemory {
    region: RawRegion,
}

impl SharedMemory {
    /// Maps all of `fd` (its size is taken from `fstat`) shared and read/write.
    pub fn map(fd: BorrowedFd<'_>) -> io::Result<Self> {
        // SAFETY: stat is plain old data; fstat fills it in.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: st is a live, writable stat buffer.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("cannot stat shared memory: {err}"),
            ));
        }
        let len = usize::try_from(st.st_size).unwrap_or(0);
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "shared memory has size 0",
            ));
        }
        // SAFETY: a fresh mapping chosen by the kernel; it does not alias any
        // Rust object.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(
                err.kind(),
                format!("cannot map {len} bytes of shared memory: {err}"),
            ));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        // SAFETY: a fresh `len`-byte read/write mapping, unmapped only when
        // `self` drops; no Rust reference into it is ever made.
        let region = unsafe { RawRegion::new(ptr, len) };
        // INVARIANT: `region` is the mapping.
        Ok(Self { region })
    }

    /// The mapping as shared memory: little-endian words at byte offsets.
    pub fn region(&self) -> &RawRegion {
        &self.region
    }

    /// Size of the region in bytes.
    pub fn len(&self) -> usize {
        shmem::SharedMemory::len(&self.region)
    }

    /// Whether the region is empty (never: empty regions are refused by [`map`](Self::map)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start of the mapping, for callers that need raw access.
    ///
    /// The pointer is valid for [`len`](Self::len) bytes while `self` lives.
    /// Remember that other processes write to this memory concurrently.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the region.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let p = self.region.ptr(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked by `ptr`) and
        // `buf` is a distinct Rust buffer, so the two cannot overlap.
        unsafe { ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the region starting at `offset`.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        let p = self.region.ptr(offset, data.len())?;
        // SAFETY: as in read_bytes.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: the region is exactly the mapping created in `map` (type
        // invariant), and no reference into it can outlive `self`.
        unsafe { libc::munmap(self.as_ptr().cast(), self.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lincell_shared::shmem::SharedMemory as _;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::sync::atomic::Ordering::Relaxed;

    fn memfd(len: i64) -> OwnedFd {
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"shm-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: freshly created descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscall on a valid fd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }, 0);
        fd
    }

    #[test]
    fn accessors_and_bounds() {
        let fd = memfd(8192);
        let a = SharedMemory::map(fd.as_fd()).unwrap();
        let b = SharedMemory::map(fd.as_fd()).unwrap();
        assert_eq!(a.len(), 8192);
        a.region().store(8188, 0xdead_beef_u32, Relaxed).unwrap();
        assert_eq!(b.region().load::<u32>(8188, Relaxed), Ok(0xdead_beef));
        a.write_bytes(100, b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_bytes(100, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let err = |r: Result<u32, shmem::AccessError>| io::Error::from(r.unwrap_err()).kind();
        assert_eq!(
            err(a.region().load::<u32>(8192, Relaxed)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            err(a.region().load::<u32>(2, Relaxed)),
            io::ErrorKind::InvalidInput
        );
        assert!(a.write_bytes(8190, b"abc").is_err());
        assert!(a.read_bytes(usize::MAX, &mut buf).is_err());
    }

    #[test]
    fn empty_memory_is_refused() {
        let fd = memfd(0);
        assert!(SharedMemory::map(fd.as_fd()).is_err());
    }
}
