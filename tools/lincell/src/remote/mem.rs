// SPDX-License-Identifier: GPL-2.0

//! The R/W section as the backend sees it: a [`GuestMemoryMmap`] at guest
//! address 0 (descriptor and ring addresses are offsets into the section)
//! for virtio-queue and the device models, and the same bytes as
//! `lincell_shared::shmem::SharedMemory` for the virtio header at its
//! start ([`Section`]).

use std::ptr::NonNull;

use lincell_shared::shmem::{Fallback, RawRegion};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

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

/// The section as virtio-queue sees it ([`Mem`]) and, over the same bytes,
/// as [`SharedMemory`] for the virtio header's fields.
///
/// Dereferences to the [`Mem`].
///
/// # Invariants
///
/// `region` covers the one region of `mem`, which stays mapped while `mem`
/// lives.
pub(crate) struct Section {
    region: RawRegion,
    mem: Mem,
}

impl Section {
    /// The section of `mem`, which must be one region starting at 0.
    pub(crate) fn new(mem: Mem) -> Result<Self> {
        if mem.num_regions() != 1 {
            return Err(Error::Remote(
                "the R/W section must be one region of guest memory".into(),
            ));
        }
        let len = usize::try_from(mem.last_addr().0)
            .ok()
            .and_then(|last| last.checked_add(1))
            .ok_or_else(|| Error::Remote("R/W section too large".into()))?;
        let base = mem
            .get_host_address(GuestAddress(0))
            .ok()
            .and_then(NonNull::new)
            .ok_or_else(|| Error::Remote("the R/W section is not mapped".into()))?;
        // SAFETY: the one region of `mem` is `len` bytes mapped read/write
        // at `base` while `mem` lives (it is kept next to the region), and
        // vm-memory never makes Rust references into guest memory.
        let region = unsafe { RawRegion::new(base, len) };
        // INVARIANT: `region` is the region of `mem`.
        Ok(Section { region, mem })
    }

    /// The virtio header's fields: fixed offsets in the header area, which
    /// the engine checked the section holds, so a failed access is a bug;
    /// it is logged, then reads 0 or is dropped.
    pub(crate) fn header(&self) -> Fallback<'_, RawRegion> {
        Fallback::new(&self.region, |e| eprintln!("lincell remote: {e}; ignored"))
    }
}

impl Clone for Section {
    fn clone(&self) -> Self {
        // PANIC: `self.mem` passed `Section::new`; its clone is the same
        // memory.
        Section::new(Mem::clone(&self.mem)).expect("a section's memory is a section")
    }
}

impl std::ops::Deref for Section {
    type Target = Mem;

    fn deref(&self) -> &Mem {
        &self.mem
    }
}
