// SPDX-License-Identifier: GPL-2.0

//! Thin adapters from kernel I/O to the shared register and memory traits.
//!
//! The register models (`shared::ivshmem::regs`) are written against a
//! small trait so that KUnit and host tests can run them on a simulated
//! device; the v1 header and the rings (`shared::ivshmem::v1layout`,
//! `shared::vdev::shadow`) against `shared::shmem::SharedMemory`. This
//! file connects them to the real thing: BAR0 through the kernel's `Io`
//! accessors, and the shared memory through a `memremap` window seen as a
//! `RawRegion`.

use core::ptr::NonNull;

use kernel::{bindings, io::Io, pci, pr_warn_once, prelude::*};

use crate::shared::ivshmem::regs::{RegisterBlock, BAR0_SIZE};
use crate::shared::shmem::{AccessError, Fallback, RawRegion};

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
/// `region` covers exactly a `memremap` mapping, unmapped only in `drop`.
pub(crate) struct ShmemWindow {
    region: RawRegion,
}

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
        // SAFETY: `ptr` maps `len` bytes read/write until `drop`, and no
        // Rust reference into the mapping is ever made.
        let region = unsafe { RawRegion::new(ptr, len) };
        // INVARIANT: `region` is the mapping.
        Ok(ShmemWindow { region })
    }

    /// The window as shared memory, for accesses with an error path.
    pub(crate) fn region(&self) -> &RawRegion {
        &self.region
    }

    /// The window for accesses at offsets validated at set-up (header
    /// fields, the state table, rings), which have no error path: a failed
    /// one is reported once by [`report_bad_access`], then reads 0 or is
    /// dropped.
    pub(crate) fn fallback(&self) -> Fallback<'_, RawRegion> {
        Fallback::new(&self.region, report_bad_access)
    }
}

/// Reports, once, a shared-memory access that is misaligned or outside its
/// memory, made where there is no error path ([`Fallback`]): the load read 0
/// or the store was dropped. The shared logic only uses offsets validated at
/// set-up there, so this points at a bug, not at a peer.
pub(crate) fn report_bad_access(e: &AccessError) {
    pr_warn_once!("{}; ignored\n", e);
}

impl Drop for ShmemWindow {
    fn drop(&mut self) {
        // SAFETY: mapped by `memremap` (type invariant), unmapped once.
        unsafe { bindings::memunmap(self.region.as_ptr().cast()) };
    }
}
