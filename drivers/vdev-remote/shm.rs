// SPDX-License-Identifier: GPL-2.0

//! Byte copies between the R/W section and kernel memory: the bounce
//! buffers and the fill of buffers a dead backend leaves behind. They are
//! not word accesses, so not `shared::shmem::SharedMemory`'s business; they
//! use the same bounds check (`RawRegion::ptr`).

use crate::common::mmio::ShmemWindow;
use crate::shared::shmem::SharedMemory;

impl ShmemWindow {
    /// Length of the window in bytes.
    pub(crate) fn len(&self) -> usize {
        self.region().len()
    }

    /// Fills `len` bytes at `offset` with `byte`; false if out of range.
    pub(crate) fn fill(&self, offset: usize, len: usize, byte: u8) -> bool {
        let Ok(p) = self.region().ptr(offset, len) else {
            return false;
        };
        // SAFETY: `len` bytes at `p` are inside the mapping.
        unsafe { core::ptr::write_bytes(p, byte, len) };
        true
    }

    /// Copies `len` bytes from kernel memory at `src` into the window;
    /// false if out of range.
    ///
    /// # Safety
    ///
    /// `src` must be valid for reading `len` bytes.
    pub(crate) unsafe fn copy_in(&self, offset: usize, src: *const u8, len: usize) -> bool {
        let Ok(p) = self.region().ptr(offset, len) else {
            return false;
        };
        // SAFETY: the destination is inside the mapping; the caller vouches
        // for the source; kernel memory never overlaps the window.
        unsafe { core::ptr::copy_nonoverlapping(src, p, len) };
        true
    }

    /// Copies `len` bytes from the window to kernel memory at `dst`; false
    /// if out of range.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writing `len` bytes.
    pub(crate) unsafe fn copy_out(&self, offset: usize, dst: *mut u8, len: usize) -> bool {
        let Ok(p) = self.region().ptr(offset, len) else {
            return false;
        };
        // SAFETY: as in `copy_in`, the other way round. The peer may change
        // the bytes meanwhile; they are data, not trusted.
        unsafe { core::ptr::copy_nonoverlapping(p, dst, len) };
        true
    }
}
