// SPDX-License-Identifier: GPL-2.0

//! The virtio device and its `virtio_config_ops`: the header protocol.
//!
//! Every register write follows the Jailhouse handshake: wait until the
//! backend has consumed the previous write (`write_transaction == 0`),
//! store the field, publish its offset in `write_transaction`, ring the
//! backend's vector 0. A backend that is not READY, failed, or does not
//! consume a write within [`WRITE_TIMEOUT_MS`] makes the write fail and the
//! device fail. Everything read from the header is validated.

use core::ffi::{c_int, c_uint, c_void};

use core::ptr::NonNull;
use core::sync::atomic::Ordering::{self, Acquire, Relaxed, Release};
use kernel::ffi::c_char;

use kernel::{bindings, prelude::*, sync::Arc};

use crate::ffi;
use crate::link::{now_ns, Link, HEADER_AREA, MAX_QUEUES};
use crate::queue::Queue;
use crate::shared::ivshmem::v1layout;
use crate::shared::shmem::{Fallback, RawRegion};
use crate::shared::vdev::header::{self, feature, off, STATE_READY};
use crate::shared::vdev::shadow::{
    split_layout, split_size, used_ring_size, RingAddrs, MAX_QUEUE_SIZE,
};

/// How long the backend may take to consume a register write.
const WRITE_TIMEOUT_MS: i64 = 2000;
/// Largest queue the frontend sets up (the backend may offer more).
const QUEUE_SIZE_LIMIT: u16 = 1024;

/// A registered virtio device.
///
/// # Invariants
///
/// `vdev` is the first field (the C callbacks cast a `virtio_device`
/// pointer to `VirtioRemote`); the value lives in a `KBox` handed to the
/// driver core by `attach` and freed by [`release`].
#[repr(C)]
pub(crate) struct VirtioRemote {
    pub(crate) vdev: ffi::virtio_device,
    pub(crate) link: Arc<Link>,
    /// The status the driver set. `get_status` reports this, not the
    /// header's copy: a failed backend cannot acknowledge a reset, and the
    /// virtio core insists on reading 0 after one.
    status: core::sync::atomic::AtomicU8,
}

/// The `VirtioRemote` of a device passed to a callback.
///
/// # Safety
///
/// `vdev` must be the `vdev` field of a live `VirtioRemote`.
pub(crate) unsafe fn remote<'a>(vdev: *mut ffi::virtio_device) -> &'a VirtioRemote {
    // SAFETY: by the type invariant `vdev` is at offset 0.
    unsafe { &*vdev.cast::<VirtioRemote>() }
}

impl Link {
    /// Waits until the backend consumed the previous register write.
    fn wait_idle(this: &Arc<Self>) -> Result {
        let rw = this.section();
        let deadline = now_ns() + WRITE_TIMEOUT_MS * 1_000_000;
        loop {
            if this.dead.load(Ordering::Acquire) {
                return Err(ENODEV);
            }
            if rw.load::<u32>(off::WRITE_TRANSACTION, Relaxed) == 0 {
                core::sync::atomic::fence(Ordering::Acquire);
                return Ok(());
            }
            let backend = this.backend.load(Ordering::Acquire);
            if this.state_of(backend) != STATE_READY {
                Link::fail(this, format_args!("it left READY during a register write"));
                return Err(ENODEV);
            }
            if now_ns() > deadline {
                Link::fail(
                    this,
                    format_args!(
                        "it did not take a register write for {} ms",
                        WRITE_TIMEOUT_MS
                    ),
                );
                return Err(ETIMEDOUT);
            }
            core::hint::spin_loop();
        }
    }

    /// Writes a header field through a `write_transaction`.
    fn reg_write(this: &Arc<Self>, offset: usize, value: u64, width: usize) -> Result {
        Self::transaction(this, offset, |rw| {
            // CAST: each arm stores the low `width` bytes, as the field is wide.
            match width {
                1 => rw.store(offset, value as u8, Relaxed),
                2 => rw.store(offset, value as u16, Relaxed),
                4 => rw.store(offset, value as u32, Relaxed),
                _ => rw.store(offset, value, Relaxed),
            }
        })
    }

    /// Writes device config bytes through a `write_transaction`, byte by
    /// byte: the config starts at 0x4c, so wider fields are not naturally
    /// aligned in shared memory.
    fn config_write(this: &Arc<Self>, offset: usize, bytes: &[u8]) -> Result {
        let at = header::CONFIG_OFFSET + offset;
        Self::transaction(this, at, |rw| {
            for (i, b) in bytes.iter().enumerate() {
                rw.store(at + i, *b, Relaxed);
            }
        })
    }

    /// The handshake around one write: wait for the previous one to be
    /// taken, `store` the field at `offset`, publish the offset, ring.
    fn transaction(
        this: &Arc<Self>,
        offset: usize,
        store: impl FnOnce(&Fallback<'_, RawRegion>),
    ) -> Result {
        Self::wait_idle(this)?;
        let rw = this.section();
        store(&rw);
        rw.fence(Release);
        // CAST: header offsets are below MAX_HEADER_SIZE.
        rw.store(off::WRITE_TRANSACTION, offset as u32, Relaxed);
        rw.fence(Release);
        this.ring_backend(0);
        Ok(())
    }

    fn reg_write_sync(this: &Arc<Self>, offset: usize, value: u64, width: usize) -> Result {
        Self::reg_write(this, offset, value, width)?;
        Self::wait_idle(this)
    }
}

/// Attaches a virtio device for the backend `backend`.
pub(crate) fn attach(link: &Arc<Link>, backend: u32) -> Result<NonNull<VirtioRemote>> {
    let rw = link.section();
    let revision = rw.load(off::REVISION, Relaxed);
    let size = rw.load(off::SIZE, Relaxed);
    rw.fence(Acquire);
    let config_len = header::check_header(revision, size, HEADER_AREA as u64)
        .inspect_err(|e| dev_err!(link.dev(), "backend peer {}: {}\n", backend, e))
        .map_err(|_| EPROTO)?;
    if let Some(h) = &link.v1_header {
        let protocol: u32 = h.fallback().load(v1layout::off::PROTOCOL, Acquire);
        let fallback = crate::module_parameters::v1_device_id.value();
        let id = if protocol & !u32::from(header::PROTOCOL_DEVICE_ID_MASK)
            == u32::from(header::PROTOCOL_VIRTIO_FRONTEND)
        {
            protocol & u32::from(header::PROTOCOL_DEVICE_ID_MASK)
        } else if protocol == 0 && fallback != 0 {
            fallback
        } else {
            dev_err!(
                link.dev(),
                "backend peer {} announces protocol {:#x}, not a virtio frontend's (set v1_device_id= if it cannot announce one)\n",
                backend,
                protocol
            );
            return Err(EPROTO);
        };
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

    let boxed = KBox::<VirtioRemote>::new_uninit(GFP_KERNEL)?;
    let raw = KBox::into_raw(boxed).cast::<VirtioRemote>();
    // SAFETY: `raw` is a fresh allocation of a `VirtioRemote`; zero is a
    // valid `virtio_device` before registration (the C code kzallocs it);
    // the `link` field is written before any use.
    unsafe {
        core::ptr::write_bytes(raw.cast::<u8>(), 0, core::mem::size_of::<VirtioRemote>());
        core::ptr::write(&raw mut (*raw).link, link.clone());
        let vdev = &raw mut (*raw).vdev;
        (*vdev).dev.parent = &raw mut (*link.pdev).dev;
        (*vdev).dev.release = Some(release);
        (*vdev).config = &CONFIG_OPS;
        (*vdev).map = &crate::bounce::MAP_OPS;
        (*vdev).vmap.dma_dev = &raw mut (*vdev).dev;
        (*vdev).id.device = link.device_id.load(Ordering::Acquire);
        (*vdev).id.vendor = link.vendor_id;
    }
    // SAFETY: `raw` holds a prepared `virtio_device`; on failure the C
    // contract is `put_device`, which ends in `release`.
    let ret = unsafe { ffi::register_virtio_device(&raw mut (*raw).vdev) };
    if ret != 0 {
        // SAFETY: as above.
        unsafe { bindings::put_device(&raw mut (*raw).vdev.dev) };
        return Err(Error::from_errno(ret));
    }
    dev_info!(
        link.dev(),
        "backend peer {} attached: virtio device id {}, {} bytes of config\n",
        backend,
        link.device_id.load(Ordering::Relaxed),
        config_len
    );
    // SAFETY: non-null, just registered.
    Ok(unsafe { NonNull::new_unchecked(raw) })
}

/// `struct device` release: frees the `VirtioRemote`.
///
/// # Safety
///
/// Called by the C side with one of our devices or tokens, as its contract says.
unsafe extern "C" fn release(dev: *mut bindings::device) {
    // SAFETY: `dev` is the `dev` of the `vdev` of a `VirtioRemote` that
    // `attach` leaked from a `KBox`; the driver core calls this once.
    unsafe {
        let vdev = kernel::container_of!(dev, ffi::virtio_device, dev);
        drop(KBox::from_raw(vdev.cast::<VirtioRemote>()));
    }
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn get(
    vdev: *mut ffi::virtio_device,
    offset: c_uint,
    buf: *mut c_void,
    len: c_uint,
) {
    // SAFETY: the virtio core passes our device.
    let link = &unsafe { remote(vdev) }.link;
    let (offset, len) = (offset as usize, len as usize);
    let buf = buf.cast::<u8>();
    let rw = link.section();
    let ok = header::config_access_ok(offset, len, link.config_len.load(Ordering::Acquire));
    for i in 0..len {
        // Raw little-endian bytes, as virtio_cread expects from transports.
        let b = if ok {
            rw.load::<u8>(header::CONFIG_OFFSET + offset + i, Relaxed)
        } else {
            0
        };
        // SAFETY: the caller's buffer holds `len` bytes.
        unsafe { buf.add(i).write(b) };
    }
    if !ok {
        dev_warn!(
            link.dev(),
            "config read of {} bytes at {} outside the backend's config\n",
            len,
            offset
        );
    }
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn set(
    vdev: *mut ffi::virtio_device,
    offset: c_uint,
    buf: *const c_void,
    len: c_uint,
) {
    // SAFETY: the virtio core passes our device.
    let link = &unsafe { remote(vdev) }.link;
    let (offset, len) = (offset as usize, len as usize);
    if !header::config_access_ok(offset, len, link.config_len.load(Ordering::Acquire)) {
        dev_warn!(
            link.dev(),
            "config write of {} bytes at {} outside the backend's config\n",
            len,
            offset
        );
        return;
    }
    let mut bytes = [0u8; 8];
    // SAFETY: the caller's buffer holds `len <= 8` bytes.
    unsafe { core::ptr::copy_nonoverlapping(buf.cast::<u8>(), bytes.as_mut_ptr(), len) };
    let _ = Link::config_write(link, offset, &bytes[..len]);
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn generation(vdev: *mut ffi::virtio_device) -> u32 {
    // SAFETY: the virtio core passes our device.
    let link = &unsafe { remote(vdev) }.link;
    let rw = link.section();
    let deadline = now_ns() + WRITE_TIMEOUT_MS * 1_000_000;
    loop {
        let generation = rw.load::<u32>(off::CONFIG_GENERATION, Relaxed);
        rw.fence(Acquire);
        if generation & 1 == 0 || link.dead.load(Ordering::Acquire) {
            return generation;
        }
        if now_ns() > deadline {
            Link::fail(
                link,
                format_args!("its config stayed in an update for {} ms", WRITE_TIMEOUT_MS),
            );
            return generation;
        }
        core::hint::spin_loop();
    }
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn get_status(vdev: *mut ffi::virtio_device) -> u8 {
    // SAFETY: the virtio core passes our device.
    unsafe { remote(vdev) }.status.load(Ordering::Acquire)
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn set_status(vdev: *mut ffi::virtio_device, status: u8) {
    // SAFETY: the virtio core passes our device.
    let remote = unsafe { remote(vdev) };
    remote.status.store(status, Ordering::Release);
    let _ = Link::reg_write(&remote.link, off::DEVICE_STATUS, u64::from(status), 4);
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn reset(vdev: *mut ffi::virtio_device) {
    // SAFETY: the virtio core passes our device.
    let remote = unsafe { remote(vdev) };
    remote.status.store(0, Ordering::Release);
    // A failed backend cannot reset; its queues are abandoned anyway.
    let _ = Link::reg_write_sync(&remote.link, off::DEVICE_STATUS, 0, 4);
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn get_features(vdev: *mut ffi::virtio_device) -> u64 {
    // SAFETY: the virtio core passes our device.
    let link = &unsafe { remote(vdev) }.link;
    let rw = link.section();
    let window = |sel: u64| -> Result<u64> {
        Link::reg_write_sync(link, off::DEVICE_FEATURES_SEL, sel, 4)?;
        Ok(u64::from(rw.load::<u32>(off::DEVICE_FEATURES, Relaxed)))
    };
    match (window(1), window(0)) {
        (Ok(hi), Ok(lo)) => (hi << 32 | lo) & !feature::UNSUPPORTED,
        _ => 0,
    }
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn finalize_features(vdev: *mut ffi::virtio_device) -> c_int {
    // SAFETY: the virtio core passes our device.
    let link = &unsafe { remote(vdev) }.link;
    // SAFETY: `vdev` is our device, being probed.
    unsafe { ffi::vring_transport_features(vdev) };
    // SAFETY: the feature union's first word is the low 64 bits.
    let features = unsafe { *(*vdev).__bindgen_anon_1.features.as_ref() };
    if features & feature::REQUIRED != feature::REQUIRED {
        dev_err!(
            link.dev(),
            "backend lacks VERSION_1 or ACCESS_PLATFORM (features {:#x})\n",
            features
        );
        return EINVAL.to_errno();
    }
    let r = Link::reg_write(link, off::DRIVER_FEATURES_SEL, 1, 4)
        .and_then(|()| Link::reg_write(link, off::DRIVER_FEATURES, features >> 32, 4))
        .and_then(|()| Link::reg_write(link, off::DRIVER_FEATURES_SEL, 0, 4))
        .and_then(|()| Link::reg_write(link, off::DRIVER_FEATURES, features & 0xffff_ffff, 4));
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn bus_name(vdev: *mut ffi::virtio_device) -> *const c_char {
    // SAFETY: the virtio core passes our device; the PCI device is bound
    // while it exists and its name lives as long as it does.
    unsafe { (*remote(vdev).link.pdev).dev.kobj.name }
}

/// Kick: publish new chains to the shared ring and ring the backend.
///
/// # Safety
///
/// Called by the C side with one of our devices or tokens, as its contract says.
unsafe extern "C" fn notify(vq: *mut ffi::virtqueue) -> bool {
    // SAFETY: our queues' `priv_` is the `Queue` in `Link::queues`, alive
    // until `del_vqs`, and `vdev` our device.
    let (queue, link) = unsafe { (&*(*vq).priv_.cast::<Queue>(), &remote((*vq).vdev).link) };
    // SAFETY: no preconditions.
    let may_spin = unsafe { ffi::vdev_remote_kick_may_spin() };
    if link.dead.load(Ordering::Acquire) {
        if may_spin {
            // The caller may spin for its buffer with interrupts off; the
            // fail work might be queued on this very CPU.
            queue.fail_all(&link.rw);
        }
        Link::schedule_fail(link);
        return true;
    }
    match queue.publish(&link.rw) {
        Ok(p) if p.count == 0 => {}
        Ok(p) => {
            if p.was_idle {
                link.progress();
            }
            link.ring_backend(queue.device_vector);
            if may_spin && p.readonly_in_flight > 0 {
                wait_for_readonly(link, queue);
            }
        }
        Err(e) => Link::fail(link, format_args!("queue {}: {}", queue.index, e)),
    }
    true
}

/// Some drivers (virtio_console's hvc output) kick with interrupts off and
/// then spin until the device returns their buffer. With shadow rings the
/// buffer only comes back through `collect`, normally run by our interrupt,
/// which may be due on this very CPU: so poll here, for output-only chains
/// queued with interrupts off, until the backend took them (bounded; a
/// backend that does not answer is failed and the chains completed).
fn wait_for_readonly(link: &Arc<Link>, queue: &Queue) {
    let rw = &link.rw;
    let deadline = now_ns() + WRITE_TIMEOUT_MS * 1_000_000;
    while queue.readonly_in_flight() > 0 {
        match queue.collect(rw) {
            Ok(0) => {}
            Ok(_) => link.progress(),
            Err(e) => {
                Link::fail(link, format_args!("queue {}: {}", queue.index, e));
                queue.fail_all(rw);
                return;
            }
        }
        if link.dead.load(Ordering::Acquire) {
            queue.fail_all(rw);
            return;
        }
        if now_ns() > deadline {
            Link::fail(
                link,
                format_args!(
                    "it did not take output on queue {} for {} ms",
                    queue.index, WRITE_TIMEOUT_MS
                ),
            );
            queue.fail_all(rw);
            return;
        }
        core::hint::spin_loop();
    }
}

/// Sets up one queue. `driver_vector` is the vector the backend rings.
fn setup_vq(
    link: &Arc<Link>,
    vdev: *mut ffi::virtio_device,
    index: u32,
    info: &ffi::virtqueue_info,
    driver_vector: u32,
) -> Result<*mut ffi::virtqueue> {
    Link::reg_write_sync(link, off::QUEUE_SEL, u64::from(index), 4)?;
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
    let size = offered.min(QUEUE_SIZE_LIMIT);
    // SAFETY: `vdev` is our device in find_vqs; the callbacks match the C
    // types; the name outlives the queue (it is the driver's).
    let vq = unsafe {
        ffi::vring_create_virtqueue_map(
            index,
            u32::from(size),
            bindings::SMP_CACHE_BYTES,
            vdev,
            true,
            true,
            info.ctx,
            Some(notify),
            info.callback,
            info.name,
            (*vdev).vmap,
        )
    };
    if vq.is_null() {
        return Err(ENOMEM);
    }
    let cleanup = move |e: Error| {
        // SAFETY: `vq` was created above and is not used elsewhere yet.
        unsafe { ffi::vring_del_virtqueue(vq) };
        e
    };
    // SAFETY: `vq` is live.
    let num = unsafe { ffi::virtqueue_get_vring_size(vq) };
    // SAFETY: as above; the vring is the queue's private ring.
    let vring = unsafe { &*ffi::virtqueue_get_vring(vq) };
    let num = u16::try_from(num).map_err(|_| cleanup(EINVAL))?;
    // The private ring as offsets into its allocation (desc table, then the
    // avail and the used ring): the virtio core keeps its own pointers.
    let desc = vring.desc as usize;
    let offset_of = |part: usize| part.checked_sub(desc).ok_or(EINVAL);
    let private = RingAddrs {
        desc: 0,
        avail: offset_of(vring.avail as usize).map_err(cleanup)?,
        used: offset_of(vring.used as usize).map_err(cleanup)?,
    };
    let private_len = private.used + used_ring_size(num);
    let private_base = NonNull::new(vring.desc.cast::<u8>())
        .ok_or(EINVAL)
        .map_err(cleanup)?;
    let shared_len = split_size(num);
    let shared_off = link
        .bounce
        .lock()
        .pool
        .alloc(shared_len)
        .ok_or(ENOMEM)
        .map_err(cleanup)?;
    let shared = split_layout(shared_off, num);
    link.rw.fill(shared_off, shared_len, 0);
    // SAFETY: the private ring is `private_len` bytes at `desc`, allocated
    // with the queue, which `Queue`'s invariant keeps alive while the region
    // is used; Rust code reaches it only through the region.
    let private_ring = unsafe { RawRegion::new(private_base, private_len) };
    // SAFETY: `vq` is live with `num` entries and the ring described.
    let init = unsafe {
        Queue::new(crate::queue::QueueParts {
            vq,
            index,
            device_vector,
            num,
            private_ring,
            private,
            shared,
            shared_alloc: (shared_off, shared_len),
        })
    };
    let queue = init
        .and_then(|i| Arc::pin_init(i, GFP_KERNEL))
        .map_err(|e| {
            let _ = link.bounce.lock().pool.free(shared_off, shared_len);
            cleanup(e)
        })?;
    // SAFETY: `vq` is live; `priv_` is ours to use.
    unsafe { (*vq).priv_ = core::ptr::from_ref::<Queue>(&queue).cast_mut().cast() };
    let activate = || -> Result {
        Link::reg_write(link, off::QUEUE_SIZE, u64::from(num), 2)?;
        Link::reg_write(link, off::QUEUE_DRIVER_VECTOR, u64::from(driver_vector), 2)?;
        Link::reg_write(link, off::QUEUE_DESC, shared.desc as u64, 8)?;
        Link::reg_write(link, off::QUEUE_DRIVER, shared.avail as u64, 8)?;
        Link::reg_write(link, off::QUEUE_DEVICE, shared.used as u64, 8)?;
        Link::reg_write_sync(link, off::QUEUE_ENABLE, 1, 2)
    };
    let pushed = activate().and_then(|()| {
        let mut qs = link.queues.lock();
        qs.push(queue.clone(), GFP_ATOMIC).map_err(Error::from)
    });
    if let Err(e) = pushed {
        let _ = link.bounce.lock().pool.free(shared_off, shared_len);
        return Err(cleanup(e));
    }
    Ok(vq)
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn del_vqs(vdev: *mut ffi::virtio_device) {
    // SAFETY: the virtio core passes our device.
    let link = &unsafe { remote(vdev) }.link;
    let _guard = link.vq_lock.lock();
    let queues = core::mem::take(&mut *link.queues.lock());
    // No handler may still use a queue we are about to delete.
    link.synchronize_irqs();
    for q in queues.iter() {
        let _ = Link::reg_write(link, off::QUEUE_SEL, u64::from(q.index), 4)
            .and_then(|()| Link::reg_write_sync(link, off::QUEUE_ENABLE, 0, 2));
        // SAFETY: the queue is off the list and no handler runs; the driver
        // is done with it (del_vqs).
        unsafe { ffi::vring_del_virtqueue(q.vq) };
        let _ = link
            .bounce
            .lock()
            .pool
            .free(q.shared_alloc.0, q.shared_alloc.1);
    }
}

/// `virtio_config_ops` callback.
///
/// # Safety
///
/// Called by the virtio core with one of our devices (or its virtqueues).
unsafe extern "C" fn find_vqs(
    vdev: *mut ffi::virtio_device,
    nvqs: c_uint,
    vqs: *mut *mut ffi::virtqueue,
    infos: *mut ffi::virtqueue_info,
    _desc: *mut bindings::irq_affinity,
) -> c_int {
    // SAFETY: the virtio core passes our device and `nvqs` entries in each array.
    let (link, vqs, infos) = unsafe {
        (
            &remote(vdev).link,
            core::slice::from_raw_parts_mut(vqs, nvqs as usize),
            core::slice::from_raw_parts(infos, nvqs as usize),
        )
    };
    let with_callback = infos
        .iter()
        .filter(|i| !i.name.is_null() && i.callback.is_some())
        .count();
    if infos.iter().filter(|i| !i.name.is_null()).count() > MAX_QUEUES {
        return E2BIG.to_errno();
    }
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
        match setup_vq(link, vdev, index, info, vector) {
            Ok(vq) => *slot = vq,
            Err(e) => {
                // SAFETY: our own del_vqs on our device.
                unsafe { del_vqs(vdev) };
                return e.to_errno();
            }
        }
        index += 1;
    }
    0
}

/// The transport's config ops.
pub(crate) static CONFIG_OPS: ffi::virtio_config_ops = ffi::virtio_config_ops {
    get: Some(get),
    set: Some(set),
    generation: Some(generation),
    get_status: Some(get_status),
    set_status: Some(set_status),
    reset: Some(reset),
    find_vqs: Some(find_vqs),
    del_vqs: Some(del_vqs),
    get_features: Some(get_features),
    finalize_features: Some(finalize_features),
    bus_name: Some(bus_name),
    // SAFETY: the remaining members are optional callbacks; `None` (zero)
    // means "not supported".
    ..unsafe { core::mem::zeroed() }
};
