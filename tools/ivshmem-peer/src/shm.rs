// SPDX-License-Identifier: GPL-2.0
//! The shared-memory region, mapped into this process.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::{self, NonNull};

/// A `MAP_SHARED` read/write mapping of the whole ivshmem region.
///
/// Other peers (guests, host processes) change this memory at any time, so
/// no Rust reference into it is ever handed out: all accessors copy, and the
/// 32-bit ones are volatile single accesses suitable for flags and counters.
#[derive(Debug)]
pub struct SharedMemory {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; all accesses go
// through raw pointers, so using it from several threads is no different from
// other processes using it at the same time.
unsafe impl Send for SharedMemory {}
// SAFETY: as for Send; no method hands out references into the mapping.
unsafe impl Sync for SharedMemory {}

/// An `InvalidInput` error about an access outside or misaligned in the region.
fn bad_access(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
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
        Ok(Self { ptr, len })
    }

    /// Size of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (never: empty regions are refused by [`map`](Self::map)).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the mapping, for callers that need raw access.
    ///
    /// The pointer is valid for [`len`](Self::len) bytes while `self` lives.
    /// Remember that other processes write to this memory concurrently.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Checks that `len` bytes at `offset` are inside the region.
    fn check(&self, offset: usize, len: usize) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(bad_access(format!(
                "access of {len} bytes at offset {offset} is outside the {}-byte shared memory",
                self.len
            ))),
        }
    }

    /// Checks a 4-byte access: in bounds and 4-byte aligned.
    fn check_u32(&self, offset: usize) -> io::Result<()> {
        if offset % 4 != 0 {
            return Err(bad_access(format!("offset {offset} is not 4-byte aligned")));
        }
        self.check(offset, 4)
    }

    /// Copies `buf.len()` bytes starting at `offset` out of the region.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: the range is inside the mapping (checked above) and `buf`
        // is a distinct Rust buffer, so the two cannot overlap.
        unsafe { ptr::copy_nonoverlapping(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the region starting at `offset`.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: as in read_bytes.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Volatile 32-bit read (native endianness) at a 4-byte aligned `offset`.
    pub fn read_u32(&self, offset: usize) -> io::Result<u32> {
        self.check_u32(offset)?;
        // SAFETY: in bounds and aligned (checked above; the mapping is page aligned).
        Ok(unsafe { ptr::read_volatile(self.as_ptr().add(offset).cast::<u32>()) })
    }

    /// Volatile 32-bit write (native endianness) at a 4-byte aligned `offset`.
    pub fn write_u32(&self, offset: usize, value: u32) -> io::Result<()> {
        self.check_u32(offset)?;
        // SAFETY: in bounds and aligned (checked above; the mapping is page aligned).
        unsafe { ptr::write_volatile(self.as_ptr().add(offset).cast::<u32>(), value) };
        Ok(())
    }
}

impl Drop for SharedMemory {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping created in `map`, and no
        // reference into it can outlive `self`.
        unsafe { libc::munmap(self.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

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
        a.write_u32(8188, 0xdead_beef).unwrap();
        assert_eq!(b.read_u32(8188).unwrap(), 0xdead_beef);
        a.write_bytes(100, b"hello").unwrap();
        let mut buf = [0u8; 5];
        b.read_bytes(100, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(
            a.read_u32(8192).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            a.read_u32(2).unwrap_err().kind(),
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
