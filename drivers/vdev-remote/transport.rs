// SPDX-License-Identifier: GPL-2.0

//! The virtio device: what each `virtio_config_ops` callback does, as safe
//! methods of [`VirtioRemote`] (the C trampolines are in `vops.rs`).
//!
//! Register writes go through the backend's `write_transaction` handshake
//! (`Link::reg_write`, in `link.rs`); everything read from the header is
//! validated. Queue set-up pairs each virtqueue the virtio core creates
//! (private kernel memory) with a shared copy in the R/W section.

use core::ptr::NonNull;
use core::sync::atomic::Ordering::{Acquire, Relaxed};
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use kernel::{
    bindings, new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
    types::Opaque,
};

use crate::ffi;
use crate::link::{
    now_ns, BackendWait, Link, DRIVER_OK, HEADER_AREA, MAX_QUEUES, WRITE_TIMEOUT_MS,
};
use crate::queue::{Queue, QueueParts};
use crate::shared::ivshmem::v1layout;
use crate::shared::shmem::RawRegion;
use crate::shared::vdev::device_id;
use crate::shared::vdev::generation::{GenerationWatch, Verdict};
use crate::shared::vdev::header::{self, feature, off};
use crate::shared::vdev::shadow::{
    split_layout, split_size, used_ring_size, RingAddrs, MAX_QUEUE_SIZE,
};
use crate::vops;

/// Largest queue the frontend sets up (the backend may offer more).
const QUEUE_SIZE_LIMIT: u16 = 1024;

/// A registered virtio device.
///
/// # Invariants
///
/// `vdev` is the first field (`from_raw` casts a `virtio_device` pointer
/// to `VirtioRemote`); the value is pinned in a `KBox` leaked by
/// [`attach`], and freed by the device's `release` (`vops.rs`) once the
/// driver core drops the last reference.
#[pin_data]
#[repr(C)]
pub(crate) struct VirtioRemote {
    #[pin]
    vdev: Opaque<ffi::virtio_device>,
    pub(crate) link: Arc<Link>,
    /// The status the driver set. `get_status` reports this, not the
    /// header's copy: a failed backend cannot acknowledge a reset, and the
    /// virtio core insists on reading 0 after one.
    status: AtomicU8,
    /// The features the driver accepted (`finalize_features`).
    features: AtomicU64,
    /// The config generations reported to the virtio core: a backend that
    /// never holds its generation still must not keep the core's
    /// config-read loop going.
    #[pin]
    generation: SpinLock<GenerationWatch>,
}

/// Offers and limits of the virtqueue being set up.
struct Offer {
    size: u16,
    device_vector: u32,
}

impl VirtioRemote {
    /// A device for `link`'s backend, child of the PCI device.
    fn new(link: Arc<Link>) -> impl PinInit<Self, Error> {
        let parent = link.pdev;
        let device = link.device_id.load(Ordering::Acquire);
        let vendor = link.vendor_id;
        try_pin_init!(Self {
            vdev <- Opaque::try_ffi_init(move |slot: *mut ffi::virtio_device| {
                // SAFETY: `slot` is valid for writes; zero is a valid
                // `virtio_device` before registration (the C transports
                // kzalloc theirs), then the fields a transport owns are set.
                unsafe {
                    core::ptr::write_bytes(slot, 0, 1);
                    (*slot).dev.parent = &raw mut (*parent).dev;
                    (*slot).dev.release = Some(vops::release);
                    (*slot).config = &vops::CONFIG_OPS;
                    (*slot).map = &crate::bounce::MAP_OPS;
                    (*slot).vmap.dma_dev = &raw mut (*slot).dev;
                    (*slot).id.device = device;
                    (*slot).id.vendor = vendor;
                }
                Ok::<(), Error>(())
            }),
            link,
            status: AtomicU8::new(0),
            features: AtomicU64::new(0),
            generation <- new_spinlock!(GenerationWatch::new(), "vdev_remote::VirtioRemote::generation"),
        }? Error)
    }

    /// The `VirtioRemote` of a device the virtio core passes.
    ///
    /// # Safety
    ///
    /// `vdev` must be the `vdev` field of a live `VirtioRemote`.
    pub(crate) unsafe fn from_raw<'a>(vdev: *mut ffi::virtio_device) -> &'a Self {
        // SAFETY: by the type invariant `vdev` is at offset 0 of a live value.
        unsafe { &*vdev.cast::<Self>() }
    }

    /// The C device.
    pub(crate) fn as_raw(&self) -> *mut ffi::virtio_device {
        self.vdev.get()
    }

    /// Reads `buf.len()` bytes of device config at `offset`: raw
    /// little-endian bytes, as `virtio_cread` expects from a transport.
    /// Outside the backend's config the bytes read 0, and so does all of
    /// a failed device's config: virtio-net then reads its link as down
    /// (see [`VirtioRemote::keeps_link_down`]).
    pub(crate) fn get_config(&self, offset: usize, buf: &mut [u8]) {
        let link = &self.link;
        if link.dead.load(Ordering::Acquire) {
            buf.fill(0);
            return;
        }
        let config_len = link.config_len.load(Ordering::Acquire);
        if !header::config_access_ok(offset, buf.len(), config_len) {
            buf.fill(0);
            dev_warn!(
                link.dev(),
                "config read of {} bytes at {} outside the backend's config\n",
                buf.len(),
                offset
            );
            return;
        }
        let rw = link.section();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = rw.load::<u8>(header::CONFIG_OFFSET + offset + i, Relaxed);
        }
    }

    /// Writes device config bytes at `offset` (at most 8, as the virtio
    /// core writes one field at a time).
    pub(crate) fn set_config(&self, offset: usize, bytes: &[u8]) {
        let link = &self.link;
        if !header::config_access_ok(offset, bytes.len(), link.config_len.load(Ordering::Acquire)) {
            dev_warn!(
                link.dev(),
                "config write of {} bytes at {} outside the backend's config\n",
                bytes.len(),
                offset
            );
            return;
        }
        // A failed write failed the device; the driver sees it there.
        let _ = Link::config_write(link, offset, bytes);
    }

    /// The config generation. The virtio core reads config in a loop until
    /// two generations agree, so whatever the backend does this must
    /// settle: an odd (update in progress) generation is waited out for
    /// [`WRITE_TIMEOUT_MS`], a generation that changes at every read for
    /// as long fails the backend, and a failed backend's generation is a
    /// constant.
    pub(crate) fn generation(&self) -> u32 {
        let link = &self.link;
        if link.dead.load(Ordering::Acquire) {
            let mut watch = self.generation.lock();
            watch.freeze();
            return watch.constant();
        }
        let rw = link.section();
        let wait = BackendWait::new(WRITE_TIMEOUT_MS);
        let generation = loop {
            let generation = rw.load::<u32>(off::CONFIG_GENERATION, Relaxed);
            rw.fence(Acquire);
            if generation & 1 == 0 {
                break generation;
            }
            if !wait.pause() {
                Link::fail(
                    link,
                    format_args!("its config stayed in an update for {} ms", WRITE_TIMEOUT_MS),
                );
            }
            if link.dead.load(Ordering::Acquire) {
                let mut watch = self.generation.lock();
                watch.freeze();
                return watch.constant();
            }
        };
        let verdict =
            self.generation
                .lock()
                .observe(generation, now_ns(), WRITE_TIMEOUT_MS * 1_000_000);
        match verdict {
            Verdict::Report(g) => g,
            Verdict::Fail(g) => {
                Link::fail(
                    link,
                    format_args!(
                        "its config generation changed at every read for {} ms",
                        WRITE_TIMEOUT_MS
                    ),
                );
                g
            }
        }
    }

    /// The status the driver last set.
    pub(crate) fn status(&self) -> u8 {
        self.status.load(Ordering::Acquire)
    }

    /// Sets the device status.
    pub(crate) fn set_status(&self, status: u8) {
        // The header may lack DRIVER_OK only while `driver_ok` is false:
        // cleared before a write without it, set after a write with it.
        // From then on a header without it is a backend that published
        // itself anew (see `Link::backend_restarted`).
        let ok = status & DRIVER_OK != 0;
        if !ok {
            self.link.driver_ok.store(false, Ordering::Release);
        }
        self.status.store(status, Ordering::Release);
        let _ = Link::reg_write(&self.link, off::DEVICE_STATUS, u64::from(status), 4);
        if ok {
            self.link.driver_ok.store(true, Ordering::Release);
        }
    }

    /// Resets the device (waits until the backend took the reset).
    pub(crate) fn reset(&self) {
        // Before the header loses DRIVER_OK (see `set_status`).
        self.link.driver_ok.store(false, Ordering::Release);
        // No callback after a reset, whatever the backend does.
        self.link.quiesce_callbacks();
        self.status.store(0, Ordering::Release);
        // A failed backend cannot reset; its queues are abandoned anyway.
        let _ = Link::reg_write_sync(&self.link, off::DEVICE_STATUS, 0, 4);
    }

    /// The features the backend offers that the frontend supports (0 if
    /// the backend does not answer).
    pub(crate) fn features(&self) -> u64 {
        let link = &self.link;
        let window = |sel: u64| -> Result<u64> {
            Link::reg_write_sync(link, off::DEVICE_FEATURES_SEL, sel, 4)?;
            Ok(u64::from(
                link.section().load::<u32>(off::DEVICE_FEATURES, Relaxed),
            ))
        };
        match (window(1), window(0)) {
            (Ok(hi), Ok(lo)) => (hi << 32 | lo) & !feature::UNSUPPORTED,
            _ => 0,
        }
    }

    /// Tells the backend the features the driver accepted.
    pub(crate) fn finalize_features(&self, features: u64) -> Result {
        let link = &self.link;
        if features & feature::REQUIRED != feature::REQUIRED {
            dev_err!(
                link.dev(),
                "backend lacks VERSION_1 or ACCESS_PLATFORM (features {:#x})\n",
                features
            );
            return Err(EINVAL);
        }
        Link::reg_write(link, off::DRIVER_FEATURES_SEL, 1, 4)?;
        Link::reg_write(link, off::DRIVER_FEATURES, features >> 32, 4)?;
        Link::reg_write(link, off::DRIVER_FEATURES_SEL, 0, 4)?;
        Link::reg_write(link, off::DRIVER_FEATURES, features & 0xffff_ffff, 4)?;
        self.features.store(features, Ordering::Release);
        Ok(())
    }

    /// Whether this device, once failed, is kept with its link down rather
    /// than removed until a backend can replace it
    /// ([`device_id::keeps_link_down`]).
    pub(crate) fn keeps_link_down(&self) -> bool {
        device_id::keeps_link_down(
            self.link.device_id.load(Ordering::Acquire),
            self.features.load(Ordering::Acquire),
        )
    }

    /// Sets up the virtqueues the driver asks for, one slot per entry of
    /// `infos` (`None` for an unnamed entry); on failure none is left.
    pub(crate) fn find_vqs(
        &self,
        vqs: &mut [*mut ffi::virtqueue],
        infos: &[ffi::virtqueue_info],
    ) -> Result {
        let link = &self.link;
        let named = infos.iter().filter(|i| !i.name.is_null());
        if named.clone().count() > MAX_QUEUES {
            return Err(E2BIG);
        }
        let with_callback = named.clone().filter(|i| i.callback.is_some()).count();
        // CAST: at most MAX_QUEUES.
        let count = named.count() as u32;
        // One vector per queue if there are enough, else one for all queues
        // (vector 1, or 0 shared with config changes).
        let per_queue = link.vectors as usize > with_callback;
        let shared_vector = if link.vectors > 1 { 1 } else { 0 };
        let mut index = 0;
        let mut next_vector = 1;
        for (slot, info) in vqs.iter_mut().zip(infos) {
            *slot = core::ptr::null_mut();
            if info.name.is_null() {
                continue;
            }
            let vector = if !per_queue {
                shared_vector
            } else if info.callback.is_some() {
                next_vector += 1;
                next_vector - 1
            } else {
                0
            };
            match self.setup_vq(index, count, info, vector) {
                Ok(vq) => *slot = vq,
                Err(e) => {
                    self.del_vqs();
                    return Err(e);
                }
            }
            index += 1;
        }
        // The queues are set up: their callbacks may run from now on.
        link.callbacks.store(true, Ordering::Release);
        Ok(())
    }

    /// What the backend offers for the selected queue, checked.
    fn offer(&self, index: u32) -> Result<Offer> {
        let link = &self.link;
        let rw = link.section();
        if rw.load::<u16>(off::QUEUE_ENABLE, Relaxed) != 0 {
            return Err(EBUSY);
        }
        let offered = rw.load::<u16>(off::QUEUE_SIZE, Relaxed);
        let device_vector = u32::from(rw.load::<u16>(off::QUEUE_DEVICE_VECTOR, Relaxed));
        if offered == 0 || !offered.is_power_of_two() || offered > MAX_QUEUE_SIZE {
            dev_err!(
                link.dev(),
                "backend offers queue {} with size {}\n",
                index,
                offered
            );
            return Err(ENOENT);
        }
        if device_vector >= link.vectors {
            dev_err!(
                link.dev(),
                "backend wants kicks for queue {} on vector {} of {}\n",
                index,
                device_vector,
                link.vectors
            );
            return Err(EINVAL);
        }
        Ok(Offer {
            size: offered.min(QUEUE_SIZE_LIMIT),
            device_vector,
        })
    }

    /// Sets up queue `index` of `count`; `driver_vector` is the vector the
    /// backend rings for it.
    fn setup_vq(
        &self,
        index: u32,
        count: u32,
        info: &ffi::virtqueue_info,
        driver_vector: u32,
    ) -> Result<*mut ffi::virtqueue> {
        let link = &self.link;
        Link::reg_write_sync(link, off::QUEUE_SEL, u64::from(index), 4)?;
        let offer = self.offer(index)?;
        let vq = VringQueue::create(self, index, offer.size, info)?;
        let num = vq.num()?;
        let (private_base, private) = vq.ring()?;
        let private_len = private.used + used_ring_size(num);
        let shared_len = split_size(num);
        let shared_off = link.bounce.lock().pool.alloc(shared_len).ok_or(ENOMEM)?;
        let shared = split_layout(shared_off, num);
        let free_shared = || {
            let _ = link.bounce.lock().pool.free(shared_off, shared_len);
        };
        link.rw.fill(shared_off, shared_len, 0);
        // SAFETY: the private ring is `private_len` bytes at its base,
        // allocated with the virtqueue, which `Queue`'s invariant keeps alive
        // while the region is used; Rust code reaches it only through the
        // region.
        let private_ring = unsafe { RawRegion::new(private_base, private_len) };
        // SAFETY: `vq` is live with `num` entries and the ring described.
        let init = unsafe {
            Queue::new(QueueParts {
                vq: vq.as_raw(),
                index,
                device_vector: offer.device_vector,
                num,
                private_ring,
                private,
                shared,
                shared_alloc: (shared_off, shared_len),
                owes_answers: device_id::queue_owes_answers(
                    link.device_id.load(Ordering::Acquire),
                    index,
                    count,
                ),
            })
        };
        let queue = init
            .and_then(|i| Arc::pin_init(i, GFP_KERNEL))
            .inspect_err(|_| free_shared())?;
        vq.set_owner(&queue);
        let activate = || -> Result {
            Link::reg_write(link, off::QUEUE_SIZE, u64::from(num), 2)?;
            Link::reg_write(link, off::QUEUE_DRIVER_VECTOR, u64::from(driver_vector), 2)?;
            Link::reg_write(link, off::QUEUE_DESC, shared.desc as u64, 8)?;
            Link::reg_write(link, off::QUEUE_DRIVER, shared.avail as u64, 8)?;
            Link::reg_write(link, off::QUEUE_DEVICE, shared.used as u64, 8)?;
            Link::reg_write_sync(link, off::QUEUE_ENABLE, 1, 2)
        };
        activate()
            .and_then(|()| {
                let mut qs = link.queues.lock();
                qs.push(queue.clone(), GFP_ATOMIC).map_err(Error::from)
            })
            .inspect_err(|_| free_shared())?;
        Ok(vq.into_raw())
    }

    /// Deletes every virtqueue (the driver is done with them).
    pub(crate) fn del_vqs(&self) {
        let link = &self.link;
        let _guard = link.vq_lock.lock();
        let queues = core::mem::take(&mut *link.queues.lock());
        // No handler may still use a queue we are about to delete.
        link.synchronize_irqs();
        for q in queues.iter() {
            let _ = Link::reg_write(link, off::QUEUE_SEL, u64::from(q.index), 4)
                .and_then(|()| Link::reg_write_sync(link, off::QUEUE_ENABLE, 0, 2));
            // SAFETY: the queue is off the list and no handler runs; the
            // driver is done with it (del_vqs).
            unsafe { ffi::vring_del_virtqueue(q.vq) };
            let _ = link
                .bounce
                .lock()
                .pool
                .free(q.shared_alloc.0, q.shared_alloc.1);
        }
    }
}

/// A virtqueue just created by the virtio core, deleted on drop unless
/// handed over with [`VringQueue::into_raw`].
///
/// # Invariants
///
/// `vq` is a live virtqueue no one else uses yet.
struct VringQueue {
    vq: NonNull<ffi::virtqueue>,
}

impl VringQueue {
    /// Creates the private split ring of queue `index` with `size` entries.
    fn create(
        dev: &VirtioRemote,
        index: u32,
        size: u16,
        info: &ffi::virtqueue_info,
    ) -> Result<Self> {
        let vdev = dev.as_raw();
        // SAFETY: `vdev` is our device in find_vqs; the callbacks match the
        // C types; the name outlives the queue (it is the driver's).
        let vq = unsafe {
            ffi::vring_create_virtqueue_map(
                index,
                u32::from(size),
                bindings::SMP_CACHE_BYTES,
                vdev,
                true,
                true,
                info.ctx,
                Some(vops::notify),
                info.callback,
                info.name,
                (*vdev).vmap,
            )
        };
        // INVARIANT: freshly created, not shared yet.
        NonNull::new(vq).map(|vq| VringQueue { vq }).ok_or(ENOMEM)
    }

    fn as_raw(&self) -> *mut ffi::virtqueue {
        self.vq.as_ptr()
    }

    /// Entries in the ring.
    fn num(&self) -> Result<u16> {
        // SAFETY: `vq` is live (type invariant).
        let num = unsafe { ffi::virtqueue_get_vring_size(self.as_raw()) };
        u16::try_from(num).map_err(|_| EINVAL)
    }

    /// The private ring: its base (the descriptor table) and its parts as
    /// offsets from there; the virtio core keeps its own pointers.
    fn ring(&self) -> Result<(NonNull<u8>, RingAddrs)> {
        // SAFETY: `vq` is live; the vring is its private split ring.
        let vring = unsafe { &*ffi::virtqueue_get_vring(self.as_raw()) };
        let desc = vring.desc as usize;
        let offset_of = |part: usize| part.checked_sub(desc).ok_or(EINVAL);
        let parts = RingAddrs {
            desc: 0,
            avail: offset_of(vring.avail as usize)?,
            used: offset_of(vring.used as usize)?,
        };
        Ok((NonNull::new(vring.desc.cast::<u8>()).ok_or(EINVAL)?, parts))
    }

    /// Makes `queue` the one `notify` finds through the virtqueue.
    fn set_owner(&self, queue: &Arc<Queue>) {
        // SAFETY: `vq` is live and not used by anyone else yet; `priv_` is
        // the transport's field. The queue outlives the virtqueue:
        // `del_vqs` deletes the virtqueue before dropping the queue.
        unsafe { (*self.as_raw()).priv_ = core::ptr::from_ref::<Queue>(queue).cast_mut().cast() };
    }

    /// Hands the virtqueue over (to the driver and `Queue`).
    fn into_raw(self) -> *mut ffi::virtqueue {
        let vq = self.as_raw();
        core::mem::forget(self);
        vq
    }
}

impl Drop for VringQueue {
    fn drop(&mut self) {
        // SAFETY: live and unused by anyone else (type invariant).
        unsafe { ffi::vring_del_virtqueue(self.as_raw()) };
    }
}

/// Attaches a virtio device for the backend `backend`.
pub(crate) fn attach(link: &Arc<Link>, backend: u32) -> Result<NonNull<VirtioRemote>> {
    let rw = link.section();
    let revision = rw.load::<u32>(off::REVISION, Relaxed);
    let size = rw.load::<u32>(off::SIZE, Relaxed);
    rw.fence(Acquire);
    let config_len = header::check_header(revision, size, HEADER_AREA as u64)
        .inspect_err(|e| dev_err!(link.dev(), "backend peer {}: {}\n", backend, e))
        .map_err(|_| EPROTO)?;
    // ivshmem 2.0: the type is the device's protocol, checked at probe. QEMU
    // ivshmem: the backend announces it, at every attach.
    if let Some(h) = &link.v1_header {
        let param = crate::module_parameters::v1_device_id.value();
        let protocol = h.fallback().load::<u32>(v1layout::off::PROTOCOL, Acquire);
        let id = device_id::from_v1_protocol(protocol, param)
            .inspect_err(|e| dev_err!(link.dev(), "backend peer {}: {}\n", backend, e))
            .map_err(|_| EPROTO)?;
        link.device_id.store(id, Ordering::Release);
    }
    link.config_len.store(config_len, Ordering::Release);
    link.backend.store(backend, Ordering::Release);
    link.dead.store(false, Ordering::Release);
    link.progress();
    {
        // A fresh pool: nothing of a previous device survives.
        let mut b = link.bounce.lock();
        b.pool.clear();
        b.pool.reserve(0, HEADER_AREA).map_err(|_| EINVAL)?;
    }

    let dev = KBox::pin_init(VirtioRemote::new(link.clone()), GFP_KERNEL)?;
    // SAFETY: the device stays pinned: from here on only its `release`
    // frees it, through `KBox::from_raw`.
    let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(dev) });
    // SAFETY: `raw` holds a prepared `virtio_device`; on failure the C
    // contract is `put_device`, which ends in `release`.
    let ret = unsafe { ffi::register_virtio_device((*raw).as_raw()) };
    if ret != 0 {
        // SAFETY: as above.
        unsafe { bindings::put_device(&raw mut (*(*raw).as_raw()).dev) };
        return Err(Error::from_errno(ret));
    }
    dev_info!(
        link.dev(),
        "backend peer {} attached: virtio device id {}, {} bytes of config\n",
        backend,
        link.device_id.load(Ordering::Relaxed),
        config_len
    );
    // SAFETY: non-null, from `KBox::into_raw`.
    Ok(unsafe { NonNull::new_unchecked(raw) })
}
