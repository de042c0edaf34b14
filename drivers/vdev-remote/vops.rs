// SPDX-License-Identifier: GPL-2.0

//! The C side of the virtio device: `virtio_config_ops`, the virtqueue
//! notify callback and the device's `release`. Each is a trampoline that
//! turns the C arguments into references and slices and calls the safe
//! method of [`VirtioRemote`] (`transport.rs`) or [`Link`] that does the
//! work; nothing else happens here.

use core::ffi::{c_int, c_uint, c_void};

use kernel::ffi::c_char;
use kernel::{bindings, prelude::*};

use crate::ffi;
use crate::link::Link;
use crate::queue::Queue;
use crate::transport::VirtioRemote;

/// The device passed to a callback.
///
/// # Safety
///
/// `vdev` must be one of our devices, registered by `transport::attach`
/// and not released (the virtio core only calls back on such devices).
unsafe fn dev<'a>(vdev: *mut ffi::virtio_device) -> &'a VirtioRemote {
    // SAFETY: per this function's contract.
    unsafe { VirtioRemote::from_raw(vdev) }
}

/// `config->get`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices and a buffer of `len`
/// writable bytes.
unsafe extern "C" fn get(
    vdev: *mut ffi::virtio_device,
    offset: c_uint,
    buf: *mut c_void,
    len: c_uint,
) {
    // SAFETY: the caller's buffer holds `len` bytes, ours for the call.
    let buf = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), len as usize) };
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.get_config(offset as usize, buf);
}

/// `config->set`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices and a buffer of `len`
/// readable bytes.
unsafe extern "C" fn set(
    vdev: *mut ffi::virtio_device,
    offset: c_uint,
    buf: *const c_void,
    len: c_uint,
) {
    // SAFETY: the caller's buffer holds `len` bytes, read during the call.
    let bytes = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len as usize) };
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.set_config(offset as usize, bytes);
}

/// `config->generation`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn generation(vdev: *mut ffi::virtio_device) -> u32 {
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.generation()
}

/// `config->get_status`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn get_status(vdev: *mut ffi::virtio_device) -> u8 {
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.status()
}

/// `config->set_status`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn set_status(vdev: *mut ffi::virtio_device, status: u8) {
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.set_status(status);
}

/// `config->reset`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn reset(vdev: *mut ffi::virtio_device) {
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.reset();
}

/// `config->get_features`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn get_features(vdev: *mut ffi::virtio_device) -> u64 {
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.features()
}

/// `config->finalize_features`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices, being probed.
unsafe extern "C" fn finalize_features(vdev: *mut ffi::virtio_device) -> c_int {
    // SAFETY: `vdev` is our device, being probed: the core lets the
    // transport drop the ring features it does not implement.
    unsafe { ffi::vring_transport_features(vdev) };
    // SAFETY: the feature union's first word is the low 64 bits; the core
    // does not change it during this call.
    let features = unsafe { *(*vdev).__bindgen_anon_1.features.as_ref() };
    // SAFETY: the virtio core passes our device.
    match unsafe { dev(vdev) }.finalize_features(features) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `config->bus_name`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn bus_name(vdev: *mut ffi::virtio_device) -> *const c_char {
    // SAFETY: the virtio core passes our device; the PCI device is bound
    // while it exists and its name lives as long as it does.
    unsafe { (*dev(vdev).link.pdev).dev.kobj.name }
}

/// `config->find_vqs`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices and `nvqs` entries in
/// each array.
unsafe extern "C" fn find_vqs(
    vdev: *mut ffi::virtio_device,
    nvqs: c_uint,
    vqs: *mut *mut ffi::virtqueue,
    infos: *mut ffi::virtqueue_info,
    _desc: *mut bindings::irq_affinity,
) -> c_int {
    // SAFETY: `nvqs` entries in each array, ours for the call.
    let (vqs, infos) = unsafe {
        (
            core::slice::from_raw_parts_mut(vqs, nvqs as usize),
            core::slice::from_raw_parts(infos, nvqs as usize),
        )
    };
    // SAFETY: the virtio core passes our device.
    match unsafe { dev(vdev) }.find_vqs(vqs, infos) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `config->del_vqs`.
///
/// # Safety
///
/// Called by the virtio core with one of our devices.
unsafe extern "C" fn del_vqs(vdev: *mut ffi::virtio_device) {
    // SAFETY: the virtio core passes our device.
    unsafe { dev(vdev) }.del_vqs();
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

/// A virtqueue's notify callback (the kick).
///
/// # Safety
///
/// Called by the virtio core with one of our virtqueues.
pub(crate) unsafe extern "C" fn notify(vq: *mut ffi::virtqueue) -> bool {
    // SAFETY: our queues' `priv_` is the `Queue` in `Link::queues`, alive
    // until `del_vqs` deleted the virtqueue, and `vdev` our device.
    let (queue, dev) = unsafe { (&*(*vq).priv_.cast::<Queue>(), dev((*vq).vdev)) };
    Link::kick(&dev.link, queue)
}

/// The device's `struct device` release: frees the `VirtioRemote`.
///
/// # Safety
///
/// Called by the driver core, once, with the `dev` of one of our devices.
pub(crate) unsafe extern "C" fn release(dev: *mut bindings::device) {
    // SAFETY: `dev` is the `dev` of the `vdev` of a `VirtioRemote` that
    // `attach` leaked from a `KBox`; the driver core calls this once.
    unsafe {
        let vdev = kernel::container_of!(dev, ffi::virtio_device, dev);
        drop(KBox::from_raw(vdev.cast::<VirtioRemote>()));
    }
}
