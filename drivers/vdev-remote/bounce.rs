// SPDX-License-Identifier: GPL-2.0

//! `virtio_map_ops`: buffers are bounced through the R/W section.
//!
//! The backend never sees a guest-physical address. Every buffer a driver
//! hands to a virtqueue is copied into a slot of the R/W section's pool
//! (device-readable data on map, device-written data back on unmap), and
//! the "DMA address" in the descriptor is the slot's offset in the section.
//! The vring memory the virtio core allocates through `alloc` is private
//! kernel memory: the shared copy of each ring is separate (`queue.rs`).

use core::ffi::c_void;

use kernel::{bindings, prelude::*};

use crate::ffi;
use crate::link::{Link, MAX_MAPPING};
use crate::transport::VirtioRemote;

/// The link behind a mapping token: `vmap.dma_dev` is our `virtio_device`'s
/// own `dev` (set in `attach`).
///
/// # Safety
///
/// `map` must be the `vmap` of a live `VirtioRemote`.
unsafe fn link_of<'a>(map: ffi::virtio_map) -> &'a Link {
    // SAFETY: per the contract `dma_dev` is `&vdev.dev` of our device.
    unsafe {
        let vdev = kernel::container_of!(map.dma_dev, ffi::virtio_device, dev);
        &VirtioRemote::from_raw(vdev).link
    }
}

fn to_device(dir: bindings::dma_data_direction) -> bool {
    dir == bindings::dma_data_direction::DMA_TO_DEVICE
        || dir == bindings::dma_data_direction::DMA_BIDIRECTIONAL
}

fn from_device(dir: bindings::dma_data_direction) -> bool {
    dir == bindings::dma_data_direction::DMA_FROM_DEVICE
        || dir == bindings::dma_data_direction::DMA_BIDIRECTIONAL
}

const MAPPING_ERROR: bindings::dma_addr_t = !0;

/// Where a mapped buffer's bytes are: `offset` bytes into the physically
/// contiguous pages that start at `page` (what `map_page` is given; a
/// buffer may span pages). Kept as integers so the bounce pool holding
/// them is `Send`.
#[derive(Clone, Copy, Default)]
pub(crate) struct BufferRef {
    page: usize,
    offset: usize,
}

impl BufferRef {
    /// The same buffer `n` bytes further.
    fn advanced(self, n: usize) -> Self {
        BufferRef {
            page: self.page,
            offset: self.offset + n,
        }
    }

    /// Calls `f(kernel_address, position, length)` for each piece of the
    /// first `size` bytes that lies in one page, with that page mapped by
    /// `kmap_local_page` for the call (no assumption that the buffer has a
    /// permanent kernel mapping, as highmem pages do not).
    ///
    /// # Safety
    ///
    /// The `size` bytes must belong to a live buffer that the caller's
    /// mapping contract lets us access; `f` must not keep the address.
    unsafe fn for_each_page(self, size: usize, mut f: impl FnMut(*mut u8, usize, usize)) {
        let page_size = kernel::page::PAGE_SIZE;
        let mut done = 0;
        while done < size {
            let at = self.offset + done;
            // The pages of one DMA segment are contiguous, and so are their
            // `struct page`s (the kernel requires it since nth_page went).
            let page = (self.page as *mut bindings::page).wrapping_add(at / page_size);
            let in_page = at % page_size;
            let len = (page_size - in_page).min(size - done);
            // SAFETY: `page` is a live page of the buffer (this function's
            // contract); the mapping is undone below, in order.
            let va = unsafe { bindings::kmap_local_page(page) };
            // SAFETY: `in_page < PAGE_SIZE`, inside the mapped page.
            f(unsafe { va.cast::<u8>().add(in_page) }, done, len);
            // SAFETY: the most recent `kmap_local_page` of this context.
            unsafe { bindings::kunmap_local(va) };
            done += len;
        }
    }

    /// Copies the buffer's first `size` bytes into the section at `slot`.
    ///
    /// # Safety
    ///
    /// As [`BufferRef::for_each_page`].
    unsafe fn copy_to_section(self, link: &Link, slot: usize, size: usize) {
        let rw = &link.rw;
        // SAFETY: per this function's contract; each piece is readable
        // while `for_each_page` has it mapped.
        unsafe {
            self.for_each_page(size, |va, pos, len| {
                rw.copy_in(slot + pos, va, len);
            })
        };
    }

    /// Copies `size` bytes from the section at `slot` into the buffer.
    ///
    /// # Safety
    ///
    /// As [`BufferRef::for_each_page`].
    unsafe fn copy_from_section(self, link: &Link, slot: usize, size: usize) {
        let rw = &link.rw;
        // SAFETY: as in `copy_to_section`, writable.
        unsafe {
            self.for_each_page(size, |va, pos, len| {
                rw.copy_out(slot + pos, va, len);
            })
        };
    }
}

/// The buffer whose bytes section offset `handle` carries, if `handle` is
/// inside a live mapping.
fn source_of(link: &Link, handle: bindings::dma_addr_t, size: usize) -> Option<BufferRef> {
    let offset = usize::try_from(handle).ok()?;
    let b = link.bounce.lock();
    if !b.pool.is_allocated(offset, size) {
        return None;
    }
    let chunk = b.pool.chunk_size();
    Some(b.src[offset / chunk].advanced(offset % chunk))
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// (and, for unmap/sync, a handle `map_page` returned).
unsafe extern "C" fn map_page(
    map: ffi::virtio_map,
    page: *mut bindings::page,
    offset: usize,
    size: usize,
    dir: bindings::dma_data_direction,
    attrs: usize,
) -> bindings::dma_addr_t {
    // SAFETY: the virtio core passes our device's token.
    let link = unsafe { link_of(map) };
    if size == 0 || size > MAX_MAPPING {
        return MAPPING_ERROR;
    }
    let buffer = BufferRef {
        page: page as usize,
        offset,
    };
    let slot = {
        let mut b = link.bounce.lock();
        let Some(slot) = b.pool.alloc(size) else {
            return MAPPING_ERROR;
        };
        let chunk = b.pool.chunk_size();
        for (i, src) in b.src[slot / chunk..(slot + size).div_ceil(chunk)]
            .iter_mut()
            .enumerate()
        {
            *src = buffer.advanced(i * chunk);
        }
        slot
    };
    // CAST: DMA_ATTR_* are small flag bits.
    if to_device(dir) && attrs & bindings::DMA_ATTR_SKIP_CPU_SYNC as usize == 0 {
        // SAFETY: the buffer is `size` readable bytes (the caller's mapping
        // contract); the slot is inside the section.
        unsafe { buffer.copy_to_section(link, slot, size) };
    } else {
        // The slot still holds whatever its last user's I/O left there, and
        // unmap copies the whole slot back: a backend that writes less than
        // the buffer must not hand the driver someone else's data (the
        // swiotlb info leak, CVE-2022-0854). Bytes it does not write read 0.
        link.rw.fill(slot, size, 0);
    }
    slot as bindings::dma_addr_t
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// (and, for unmap/sync, a handle `map_page` returned).
unsafe extern "C" fn unmap_page(
    map: ffi::virtio_map,
    handle: bindings::dma_addr_t,
    size: usize,
    dir: bindings::dma_data_direction,
    attrs: usize,
) {
    // SAFETY: the virtio core passes our device's token.
    let link = unsafe { link_of(map) };
    let Some(buffer) = source_of(link, handle, size) else {
        dev_warn!(
            link.dev(),
            "unmap of {} bytes at {:#x}: not a live mapping\n",
            size,
            handle
        );
        return;
    };
    // CAST: as in `map_page`.
    if from_device(dir) && attrs & bindings::DMA_ATTR_SKIP_CPU_SYNC as usize == 0 {
        // SAFETY: the buffer recorded at map time, still owned by the
        // caller until this unmap returns; the slot is in the section.
        unsafe { buffer.copy_from_section(link, handle as usize, size) };
    }
    let _ = link.bounce.lock().pool.free(handle as usize, size);
}

/// Copies a live mapping's bytes towards the CPU (`to_cpu`) or the device.
fn sync(link: &Link, handle: bindings::dma_addr_t, size: usize, to_cpu: bool) {
    let Some(buffer) = source_of(link, handle, size) else {
        return;
    };
    // SAFETY: the buffer recorded when it was mapped, owned by the caller
    // while the mapping lives; the slot is inside the section.
    unsafe {
        if to_cpu {
            buffer.copy_from_section(link, handle as usize, size);
        } else {
            buffer.copy_to_section(link, handle as usize, size);
        }
    }
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// and a handle `map_page` returned.
unsafe extern "C" fn sync_for_cpu(
    map: ffi::virtio_map,
    handle: bindings::dma_addr_t,
    size: usize,
    _dir: bindings::dma_data_direction,
) {
    // SAFETY: the virtio core passes our device's token.
    sync(unsafe { link_of(map) }, handle, size, true);
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// As [`sync_for_cpu`].
unsafe extern "C" fn sync_for_device(
    map: ffi::virtio_map,
    handle: bindings::dma_addr_t,
    size: usize,
    _dir: bindings::dma_data_direction,
) {
    // SAFETY: the virtio core passes our device's token.
    sync(unsafe { link_of(map) }, handle, size, false);
}

/// Ring memory: private, zeroed kernel pages (the shared copy is separate).
///
/// # Safety
///
/// Called by the C side with one of our devices or tokens, as its contract says.
unsafe extern "C" fn alloc(
    _map: ffi::virtio_map,
    size: usize,
    handle: *mut bindings::dma_addr_t,
    gfp: bindings::gfp_t,
) -> *mut c_void {
    // SAFETY: plain page allocation.
    let p = unsafe { bindings::alloc_pages_exact_noprof(size, gfp | bindings::__GFP_ZERO) };
    if !p.is_null() {
        // The handle is never given to the backend; 0 marks "private".
        // SAFETY: the caller passes a valid output location.
        unsafe { *handle = 0 };
    }
    p
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// (and, for unmap/sync, a handle `map_page` returned).
unsafe extern "C" fn free(
    _map: ffi::virtio_map,
    size: usize,
    vaddr: *mut c_void,
    _handle: bindings::dma_addr_t,
    _attrs: usize,
) {
    // SAFETY: `vaddr` came from `alloc` with this `size`.
    unsafe { bindings::free_pages_exact(vaddr, size) };
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// (and, for unmap/sync, a handle `map_page` returned).
unsafe extern "C" fn need_sync(_map: ffi::virtio_map, _handle: bindings::dma_addr_t) -> bool {
    true
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// (and, for unmap/sync, a handle `map_page` returned).
unsafe extern "C" fn mapping_error(_map: ffi::virtio_map, handle: bindings::dma_addr_t) -> i32 {
    i32::from(handle == MAPPING_ERROR)
}

/// `virtio_map_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with the mapping token of one of our devices
/// (and, for unmap/sync, a handle `map_page` returned).
unsafe extern "C" fn max_mapping_size(_map: ffi::virtio_map) -> usize {
    MAX_MAPPING
}

/// The transport's mapping ops.
pub(crate) static MAP_OPS: ffi::virtio_map_ops = ffi::virtio_map_ops {
    map_page: Some(map_page),
    unmap_page: Some(unmap_page),
    sync_single_for_cpu: Some(sync_for_cpu),
    sync_single_for_device: Some(sync_for_device),
    alloc: Some(alloc),
    free: Some(free),
    need_sync: Some(need_sync),
    mapping_error: Some(mapping_error),
    max_mapping_size: Some(max_mapping_size),
};
