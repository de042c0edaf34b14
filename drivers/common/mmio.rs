// SPDX-License-Identifier: GPL-2.0

//! Thin adapters from kernel I/O to the shared register and memory traits.
//!
//! The register models (`shared::ivshmem::regs`) and the v1 header logic
//! (`shared::ivshmem::v1layout`) are written against small traits so that KUnit and
//! host tests can run them on a simulated device. This file implements those
//! traits for the real thing: BAR0 through the kernel's `Io` accessors, and
//! the shared memory through a `memremap` window.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kernel::{bindings, io::Io, pci, pr_warn_once, prelude::*};

use crate::shared::ivshmem::regs::{RegisterBlock, BAR0_SIZE};
use crate::shared::ivshmem::v1layout::HeaderMemory;

/// BAR0: the register block.
pub(crate) type Bar0<'bound> = pci::Bar<'bound, BAR0_SIZE>;

/// BAR0 as a [`RegisterBlock`].
pub(crate) struct Regs<'a, 'b>(pub(crate) &'a Bar0<'b>);

impl RegisterBlock for Regs<'_, '_> {
    fn read32(&self, offset: usize) -> u32 {
        // The models only use offsets below BAR0_SIZE, which the BAR covers
        // (checked when it was mapped), so this cannot fail. The trait has
        // no error path: should it fail anyway, say so once and read 0.
        self.0
            .try_read32(offset)
            .inspect_err(|e| {
                pr_warn_once!("BAR0 read at {offset:#x} failed ({e:?}); reading 0\n");
            })
            .unwrap_or(0)
    }

    fn write32(&self, offset: usize, value: u32) {
        // As in `read32`: cannot fail; if it does, say so once and drop the
        // write.
        if let Err(e) = self.0.try_write32(value, offset) {
            pr_warn_once!("BAR0 write at {offset:#x} failed ({e:?}); write dropped\n");
        }
    }
}

/// A write-back mapping of part of the shared memory.
///
/// # Invariants
///
/// `ptr` is a `memremap` mapping of `len` bytes, unmapped only in `drop`.
pub(crate) struct ShmemWindow {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory usable from any CPU; all accesses go
// through atomics.
unsafe impl Send for ShmemWindow {}
// SAFETY: as above.
unsafe impl Sync for ShmemWindow {}

impl ShmemWindow {
    /// Maps `len` bytes at bus address `phys` write-back.
    ///
    /// ivshmem memory is RAM on the provider's side (QEMU maps a file,
    /// Jailhouse a RAM region), so a cacheable mapping is coherent with the
    /// peers and allows atomics (device memory would not on arm64).
    pub(crate) fn new(phys: u64, len: usize) -> Result<Self> {
        // SAFETY: `memremap` validates its arguments and returns null on
        // failure; the range belongs to our bound device.
        // CAST: the flag constant is a small enum value.
        let p =
            unsafe { bindings::memremap(phys, len, bindings::MEMREMAP_WB as kernel::ffi::c_ulong) };
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(ENOMEM)?;
        // INVARIANT: `ptr` maps `len` bytes.
        Ok(ShmemWindow { ptr, len })
    }

    /// Length of the window in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Pointer to `len` bytes at `offset`, if they lie inside the window.
    /// What the memory holds is written by peers: callers copy it out and
    /// validate it before use.
    pub(crate) fn ptr(&self, offset: usize, len: usize) -> Option<*mut u8> {
        if offset.checked_add(len)? > self.len() {
            return None;
        }
        // SAFETY: `offset + len <= self.len`, inside the mapping.
        Some(unsafe { self.ptr.as_ptr().add(offset) })
    }

    fn atomic32(&self, offset: usize) -> Option<&AtomicU32> {
        let Some(p) = self.ptr(offset, 4).filter(|_| offset % 4 == 0) else {
            self.bad_access(offset, 4);
            return None;
        };
        // SAFETY: `ptr` checked that the 4 bytes are inside the mapping, and
        // they are 4-byte aligned (the mapping is page aligned); the memory
        // lives as long as `self` and is only accessed atomically by us.
        Some(unsafe { AtomicU32::from_ptr(p.cast()) })
    }

    fn atomic64(&self, offset: usize) -> Option<&AtomicU64> {
        let Some(p) = self.ptr(offset, 8).filter(|_| offset % 8 == 0) else {
            self.bad_access(offset, 8);
            return None;
        };
        // SAFETY: as in `atomic32`, with 8 bytes and 8-byte alignment.
        Some(unsafe { AtomicU64::from_ptr(p.cast()) })
    }
}

impl ShmemWindow {
    /// Reports, once, an access of `width` bytes at `offset` that is
    /// misaligned or outside the window. The [`HeaderMemory`] methods have
    /// no error path, so such a load reads 0 (`u32::MAX` for `cas32`) and
    /// such a store is dropped; the shared logic only uses fixed, aligned
    /// offsets inside the window, so this points at a bug, not at a peer.
    fn bad_access(&self, offset: usize, width: usize) {
        pr_warn_once!(
            "shared memory access of {width} bytes at {offset:#x} is misaligned or outside the {:#x}-byte window; ignored\n",
            self.len
        );
    }
}

impl HeaderMemory for ShmemWindow {
    fn load32(&self, offset: usize) -> u32 {
        self.atomic32(offset)
            .map_or(0, |a| u32::from_le(a.load(Ordering::Acquire)))
    }

    fn store32(&self, offset: usize, value: u32) {
        if let Some(a) = self.atomic32(offset) {
            a.store(value.to_le(), Ordering::Release);
        }
    }

    fn cas32(&self, offset: usize, old: u32, new: u32) -> u32 {
        self.atomic32(offset).map_or(u32::MAX, |a| {
            match a.compare_exchange(
                old.to_le(),
                new.to_le(),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(v) | Err(v) => u32::from_le(v),
            }
        })
    }

    fn load64(&self, offset: usize) -> u64 {
        self.atomic64(offset)
            .map_or(0, |a| u64::from_le(a.load(Ordering::Acquire)))
    }

    fn store64(&self, offset: usize, value: u64) {
        if let Some(a) = self.atomic64(offset) {
            a.store(value.to_le(), Ordering::Release);
        }
    }
}

impl Drop for ShmemWindow {
    fn drop(&mut self) {
        // SAFETY: mapped by `memremap` (type invariant), unmapped once.
        unsafe { bindings::memunmap(self.ptr.as_ptr().cast()) };
    }
}
