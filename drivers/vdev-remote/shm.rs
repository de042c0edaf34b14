// SPDX-License-Identifier: GPL-2.0

//! Access to ring memory for the shadow-ring engine (`shared::vdev::shadow`).
//!
//! [`RwSection`] is the ivshmem R/W section, addressed by offset: the backend
//! writes it, so every access is bounds-checked and single-width, and the
//! values are validated by the engine. [`Private`] is a vring in kernel
//! memory that only this kernel writes, addressed by kernel virtual address
//! and bounded to the ring's allocation.

use core::sync::atomic::{fence, Ordering};

use crate::common::mmio::ShmemWindow;
use crate::shared::vdev::shadow::RingMemory;

/// Volatile little-endian loads and stores through a checked pointer.
macro_rules! volatile_rw {
    ($lookup:ident) => {
        fn load16(&self, a: usize) -> u16 {
            self.$lookup(a, 2).map_or(0, |p| {
                // SAFETY: `$lookup` returns a pointer to 2 valid bytes,
                // aligned because every ring field offset is naturally
                // aligned.
                u16::from_le(unsafe { p.cast::<u16>().read_volatile() })
            })
        }
        fn load32(&self, a: usize) -> u32 {
            self.$lookup(a, 4).map_or(0, |p| {
                // SAFETY: as in `load16`, 4 bytes.
                u32::from_le(unsafe { p.cast::<u32>().read_volatile() })
            })
        }
        fn load64(&self, a: usize) -> u64 {
            self.$lookup(a, 8).map_or(0, |p| {
                // SAFETY: as in `load16`, 8 bytes.
                u64::from_le(unsafe { p.cast::<u64>().read_volatile() })
            })
        }
        fn store16(&self, a: usize, v: u16) {
            if let Some(p) = self.$lookup(a, 2) {
                // SAFETY: as in `load16`.
                unsafe { p.cast::<u16>().write_volatile(v.to_le()) }
            }
        }
        fn store32(&self, a: usize, v: u32) {
            if let Some(p) = self.$lookup(a, 4) {
                // SAFETY: as in `load32`.
                unsafe { p.cast::<u32>().write_volatile(v.to_le()) }
            }
        }
        fn store64(&self, a: usize, v: u64) {
            if let Some(p) = self.$lookup(a, 8) {
                // SAFETY: as in `load64`.
                unsafe { p.cast::<u64>().write_volatile(v.to_le()) }
            }
        }
        fn release(&self) {
            fence(Ordering::Release);
        }
        fn acquire(&self) {
            fence(Ordering::Acquire);
        }
    };
}

/// The R/W section, addressed by offset.
pub(crate) struct RwSection<'a>(pub(crate) &'a ShmemWindow);

impl RwSection<'_> {
    fn at(&self, offset: usize, len: usize) -> Option<*mut u8> {
        if offset % len != 0 {
            return None;
        }
        self.0.ptr(offset, len)
    }

    /// Loads a byte.
    pub(crate) fn load8(&self, offset: usize) -> u8 {
        // SAFETY: `at` checked that the byte is inside the mapping.
        self.at(offset, 1)
            .map_or(0, |p| unsafe { p.read_volatile() })
    }

    /// Stores a byte.
    pub(crate) fn store8(&self, offset: usize, v: u8) {
        if let Some(p) = self.at(offset, 1) {
            // SAFETY: as in `load8`.
            unsafe { p.write_volatile(v) }
        }
    }

    /// Fills `len` bytes at `offset` with `byte`; false if out of range.
    pub(crate) fn fill(&self, offset: usize, len: usize, byte: u8) -> bool {
        match self.0.ptr(offset, len) {
            Some(p) => {
                // SAFETY: `len` bytes at `p` are inside the mapping.
                unsafe { core::ptr::write_bytes(p, byte, len) };
                true
            }
            None => false,
        }
    }

    /// Copies `len` bytes from kernel memory at `src` into the section.
    ///
    /// # Safety
    ///
    /// `src` must be valid for reading `len` bytes.
    pub(crate) unsafe fn copy_in(&self, offset: usize, src: *const u8, len: usize) -> bool {
        match self.0.ptr(offset, len) {
            Some(p) => {
                // SAFETY: the destination is inside the mapping; the caller
                // vouches for the source; kernel memory never overlaps it.
                unsafe { core::ptr::copy_nonoverlapping(src, p, len) };
                true
            }
            None => false,
        }
    }

    /// Copies `len` bytes from the section to kernel memory at `dst`.
    ///
    /// # Safety
    ///
    /// `dst` must be valid for writing `len` bytes.
    pub(crate) unsafe fn copy_out(&self, offset: usize, dst: *mut u8, len: usize) -> bool {
        match self.0.ptr(offset, len) {
            Some(p) => {
                // SAFETY: as in `copy_in`, the other way round. The backend
                // may change the bytes meanwhile; they are data, not trusted.
                unsafe { core::ptr::copy_nonoverlapping(p, dst, len) };
                true
            }
            None => false,
        }
    }
}

impl RingMemory for RwSection<'_> {
    volatile_rw!(at);
}

/// A private vring: `len` bytes of kernel memory at `base`.
///
/// # Invariants
///
/// `base..base + len` is a live allocation for as long as the value exists.
pub(crate) struct Private {
    base: usize,
    len: usize,
}

impl Private {
    /// Describes the ring allocation at `base`.
    ///
    /// # Safety
    ///
    /// `base..base + len` must stay allocated while the value is used.
    pub(crate) unsafe fn new(base: usize, len: usize) -> Self {
        // INVARIANT: the caller guarantees the allocation.
        Private { base, len }
    }

    fn at(&self, addr: usize, len: usize) -> Option<*mut u8> {
        let end = addr.checked_add(len)?;
        if addr < self.base || end > self.base + self.len || addr % len != 0 {
            return None;
        }
        Some(addr as *mut u8)
    }
}

impl RingMemory for Private {
    volatile_rw!(at);
}
