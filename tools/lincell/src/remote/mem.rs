// SPDX-License-Identifier: GPL-2.0

//! The R/W section as the backend sees it: a [`GuestMemoryMmap`] at guest
//! address 0 (descriptor and ring addresses are offsets into the section),
//! plus atomic access to the virtio header at its start and to lincell's v1
//! layout header at the start of the shared memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use lincell_shared::ivshmem::v1layout::HeaderMemory;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use crate::error::{Error, Result};

/// The section, addressed from 0.
pub(crate) type Mem = GuestMemoryMmap;

/// Builds a [`Mem`] over `len` bytes of memory mapped at `ptr`.
///
/// # Safety
///
/// `ptr` must be page aligned and `len` bytes there must stay mapped shared
/// read/write for as long as the returned value (and its clones) live.
pub(crate) unsafe fn mem_from_raw(ptr: *mut u8, len: usize) -> Result<Mem> {
    // SAFETY: the caller guarantees the mapping outlives the region; the
    // region does not own (unmap) it.
    let region = unsafe {
        MmapRegion::build_raw(
            ptr,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
    }
    .map_err(|e| Error::Remote(format!("cannot use the R/W section as guest memory: {e}")))?;
    let region = GuestRegionMmap::new(region, GuestAddress(0))
        .ok_or_else(|| Error::Remote("R/W section too large".into()))?;
    GuestMemoryMmap::from_regions(vec![region])
        .map_err(|e| Error::Remote(format!("guest memory: {e}")))
}

/// Little-endian, atomic accessors for aligned header fields. Failures
/// (a field outside the memory) read as 0 and drop writes: the caller
/// checked the section is large enough for the header.
pub(crate) trait HeaderAccess {
    /// Loads a u16 (acquire).
    fn ld16(&self, off: usize) -> u16;
    /// Loads a u32 (acquire).
    fn ld32(&self, off: usize) -> u32;
    /// Loads a u64 (acquire).
    fn ld64(&self, off: usize) -> u64;
    /// Stores a u8 (release).
    fn st8(&self, off: usize, v: u8);
    /// Stores a u16 (release).
    fn st16(&self, off: usize, v: u16);
    /// Stores a u32 (release).
    fn st32(&self, off: usize, v: u32);
    /// Stores a u64 (release).
    fn st64(&self, off: usize, v: u64);
}

/// Guest address of a header offset.
fn at(off: usize) -> GuestAddress {
    GuestAddress(off as u64)
}

impl HeaderAccess for Mem {
    fn ld16(&self, off: usize) -> u16 {
        u16::from_le(self.load::<u16>(at(off), Ordering::Acquire).unwrap_or(0))
    }
    fn ld32(&self, off: usize) -> u32 {
        u32::from_le(self.load::<u32>(at(off), Ordering::Acquire).unwrap_or(0))
    }
    fn ld64(&self, off: usize) -> u64 {
        u64::from_le(self.load::<u64>(at(off), Ordering::Acquire).unwrap_or(0))
    }
    fn st8(&self, off: usize, v: u8) {
        let _ = self.store(v, at(off), Ordering::Release);
    }
    fn st16(&self, off: usize, v: u16) {
        let _ = self.store(v.to_le(), at(off), Ordering::Release);
    }
    fn st32(&self, off: usize, v: u32) {
        let _ = self.store(v.to_le(), at(off), Ordering::Release);
    }
    fn st64(&self, off: usize, v: u64) {
        let _ = self.store(v.to_le(), at(off), Ordering::Release);
    }
}

/// lincell's v1 layout header at the start of a host peer's shared memory,
/// with a real atomic compare-and-swap (two peers may race to create it).
pub(crate) struct RawHeader {
    base: *mut u8,
}

/// Bytes a [`RawHeader`] may touch.
const RAW_HEADER_LEN: usize = 0x40;

impl RawHeader {
    /// The header of the memory mapped at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be 8-byte aligned with at least 64 bytes mapped shared
    /// read/write there for as long as the value lives.
    pub(crate) unsafe fn new(base: *mut u8) -> Self {
        RawHeader { base }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= RAW_HEADER_LEN,
            "header offset {off:#x}"
        );
        // SAFETY: in bounds and aligned (asserted; `base` is 8-byte aligned
        // and mapped per `new`'s contract). Shared memory is only accessed
        // atomically through this reference.
        unsafe { AtomicU32::from_ptr(self.base.add(off).cast::<u32>()) }
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= RAW_HEADER_LEN,
            "header offset {off:#x}"
        );
        // SAFETY: as in `u32_at`.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast::<u64>()) }
    }
}

impl HeaderMemory for RawHeader {
    fn load32(&self, offset: usize) -> u32 {
        u32::from_le(self.u32_at(offset).load(Ordering::Acquire))
    }
    fn store32(&self, offset: usize, value: u32) {
        self.u32_at(offset).store(value.to_le(), Ordering::Release);
    }
    fn cas32(&self, offset: usize, old: u32, new: u32) -> u32 {
        match self.u32_at(offset).compare_exchange(
            old.to_le(),
            new.to_le(),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(v) | Err(v) => u32::from_le(v),
        }
    }
    fn load64(&self, offset: usize) -> u64 {
        u64::from_le(self.u64_at(offset).load(Ordering::Acquire))
    }
    fn store64(&self, offset: usize, value: u64) {
        self.u64_at(offset).store(value.to_le(), Ordering::Release);
    }
}
