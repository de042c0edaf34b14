// SPDX-License-Identifier: GPL-2.0

//! sysfs attributes on the PCI device, in its `ivshmem/` directory: what
//! the device reports (read-only), and the in-kernel echo (`echo`, written
//! by root; `echo_count`).
//!
//! 7.3 has no sysfs abstraction, so this is a static C attribute group. The
//! show callback finds the driver data through the device's drvdata, which
//! the Rust PCI core sets to our `IvshmemDevice` after probe and clears on
//! unbind; the group is removed (waiting for running readers) before that
//! data is dropped, because `SysfsGroup` is the first field of
//! `IvshmemDevice`. Documented in `Documentation/ABI/testing/sysfs-driver-ivshmem`.

use core::ffi::c_void;
use core::fmt::Write;
use core::ptr::{addr_of, null};

use kernel::{bindings, device::Bound, ffi::c_char, pci, prelude::*, types::ForeignOwnable};

use crate::common::irq::raw_pci_dev;
use crate::device::Shared;
use crate::driver::IvshmemDevice;
use crate::shared::ivshmem::doorbell::EchoRequest;

/// Most peer states `peer_states` prints (one page of output).
const MAX_PRINTED_STATES: u32 = 256;

/// Which value an attribute shows.
#[derive(Clone, Copy)]
enum Field {
    Revision,
    Id,
    MaxPeers,
    Vectors,
    Protocol,
    ShmemSize,
    StateTableSize,
    RwSize,
    OutputSize,
    State,
    PeerStates,
    Echo,
    EchoCount,
}

struct Attr(bindings::device_attribute, Field);
// SAFETY: never written after initialization; read by sysfs from any CPU.
unsafe impl Sync for Attr {}

macro_rules! attr {
    ($name:literal, $field:ident) => {
        attr!($name, $field, 0o444, pin_init::zeroed())
    };
    ($name:literal, $field:ident, $mode:literal, $store:expr) => {
        Attr(
            bindings::device_attribute {
                attr: bindings::attribute {
                    name: kernel::str::as_char_ptr_in_const_context($name),
                    mode: $mode,
                    ..pin_init::zeroed()
                },
                __bindgen_anon_1: bindings::device_attribute__bindgen_ty_1 { show: Some(show) },
                __bindgen_anon_2: $store,
            },
            Field::$field,
        )
    };
}

static ATTRS: [Attr; 13] = [
    attr!(c"revision", Revision),
    attr!(c"id", Id),
    attr!(c"max_peers", MaxPeers),
    attr!(c"vectors", Vectors),
    attr!(c"protocol", Protocol),
    attr!(c"shmem_size", ShmemSize),
    attr!(c"state_table_size", StateTableSize),
    attr!(c"rw_size", RwSize),
    attr!(c"output_size", OutputSize),
    attr!(c"state", State),
    attr!(c"peer_states", PeerStates),
    attr!(
        c"echo",
        Echo,
        0o644,
        bindings::device_attribute__bindgen_ty_2 {
            store: Some(store_echo)
        }
    ),
    attr!(c"echo_count", EchoCount),
];

struct AttrList([*const bindings::attribute; 14]);
// SAFETY: pointers to the immutable statics above, never written.
unsafe impl Sync for AttrList {}

static ATTR_LIST: AttrList = AttrList([
    addr_of!(ATTRS[0].0.attr),
    addr_of!(ATTRS[1].0.attr),
    addr_of!(ATTRS[2].0.attr),
    addr_of!(ATTRS[3].0.attr),
    addr_of!(ATTRS[4].0.attr),
    addr_of!(ATTRS[5].0.attr),
    addr_of!(ATTRS[6].0.attr),
    addr_of!(ATTRS[7].0.attr),
    addr_of!(ATTRS[8].0.attr),
    addr_of!(ATTRS[9].0.attr),
    addr_of!(ATTRS[10].0.attr),
    addr_of!(ATTRS[11].0.attr),
    addr_of!(ATTRS[12].0.attr),
    null(),
]);

struct Group(bindings::attribute_group);
// SAFETY: immutable after initialization.
unsafe impl Sync for Group {}

/// In an `ivshmem/` directory of the PCI device: PCI already has files
/// such as `revision`.
static GROUP: Group = Group(bindings::attribute_group {
    name: kernel::str::as_char_ptr_in_const_context(c"ivshmem"),
    __bindgen_anon_2: bindings::attribute_group__bindgen_ty_2 {
        attrs_const: ATTR_LIST.0.as_ptr(),
    },
    ..pin_init::zeroed()
});

struct Groups([*const bindings::attribute_group; 2]);
// SAFETY: pointers to immutable statics.
unsafe impl Sync for Groups {}

/// `device_add_group` is a static inline; its exported sibling takes a
/// NULL-terminated list.
static GROUPS: Groups = Groups([addr_of!(GROUP.0), null()]);

/// A `fmt::Write` over the one-page buffer sysfs gives `show`.
struct PageWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for PageWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn format(shared: &Shared, field: Field, out: &mut PageWriter<'_>) -> core::fmt::Result {
    let info = &shared.info;
    match field {
        Field::Revision => writeln!(out, "{}", info.revision),
        Field::Id => writeln!(out, "{}", info.own_id),
        Field::MaxPeers => writeln!(out, "{}", info.max_peers),
        Field::Vectors => writeln!(out, "{}", info.vectors),
        Field::Protocol => writeln!(out, "{:#06x}", info.protocol),
        Field::ShmemSize => writeln!(out, "{}", info.shmem_size),
        Field::StateTableSize => writeln!(out, "{}", info.state_table_size),
        Field::RwSize => writeln!(out, "{}", info.rw_size),
        Field::OutputSize => writeln!(out, "{}", info.output_size),
        Field::State => writeln!(out, "{}", shared.users.lock().state),
        Field::PeerStates => {
            let Some(s) = &shared.sections else {
                return writeln!(out);
            };
            // Under the lock `Shared::kill` takes: never read a departing
            // device's memory.
            let users = shared.users.lock();
            if users.gone {
                return writeln!(out);
            }
            let n = s.layout.max_peers().min(MAX_PRINTED_STATES);
            for peer in 0..n {
                let sep = if peer + 1 == n { "\n" } else { " " };
                write!(out, "{}{}", s.state_of(peer).unwrap_or(0), sep)?;
            }
            Ok(())
        }
        Field::Echo => match shared.echo() {
            EchoRequest::Off => writeln!(out, "off"),
            EchoRequest::Peer(p) => writeln!(out, "{p}"),
        },
        Field::EchoCount => writeln!(out, "{}", shared.echoed()),
    }
}

/// # Safety
///
/// Called by sysfs for one of our attributes on a PCI device that had the
/// group added; `buf` is a page.
unsafe extern "C" fn show(
    dev: *mut bindings::device,
    attr: *mut bindings::device_attribute,
    buf: *mut c_char,
) -> isize {
    let Some(field) = ATTRS
        .iter()
        .find(|a| core::ptr::eq(&a.0, attr.cast_const()))
        .map(|a| a.1)
    else {
        return EINVAL.to_errno() as isize;
    };
    // SAFETY: sysfs calls `show` for an attribute of `dev`, valid meanwhile.
    let Some(this) = (unsafe { bound(dev) }) else {
        return ENODEV.to_errno() as isize;
    };
    // SAFETY: sysfs hands `show` a zeroed page.
    let page =
        unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), kernel::page::PAGE_SIZE) };
    let mut out = PageWriter { buf: page, len: 0 };
    match format(this.shared(), field, &mut out) {
        // CAST: at most one page.
        Ok(()) => out.len as isize,
        Err(_) => EOVERFLOW.to_errno() as isize,
    }
}

/// The driver data of `dev`, or `None` before probe finished or once unbind
/// started.
///
/// # Safety
///
/// `dev` is a device with our group, in one of its `show`/`store` calls;
/// the returned reference does not outlive that call.
unsafe fn bound<'a>(dev: *mut bindings::device) -> Option<Pin<&'a IvshmemDevice>> {
    // SAFETY: `dev` is valid during the call (the caller's contract).
    let data = unsafe { bindings::dev_get_drvdata(dev) };
    if data.is_null() {
        return None;
    }
    // SAFETY: a non-null drvdata of a device bound to this driver is the
    // `Pin<KBox<IvshmemDevice>>` the PCI core stored after probe; it is not
    // dropped before `SysfsGroup` removed this group, which waits for the
    // running `show`/`store` the caller is in.
    Some(unsafe { <Pin<KBox<IvshmemDevice>> as ForeignOwnable>::borrow(data.cast::<c_void>()) })
}

/// `store` of `echo`: `off`, `-1` or a peer id (see
/// [`EchoRequest::parse`]); the file is root's (mode 0644).
///
/// # Safety
///
/// Called by sysfs for our `echo` attribute of a PCI device that had the
/// group added; `buf` holds `count` bytes.
unsafe extern "C" fn store_echo(
    dev: *mut bindings::device,
    _attr: *mut bindings::device_attribute,
    buf: *const c_char,
    count: usize,
) -> isize {
    // SAFETY: sysfs calls `store` for an attribute of `dev`, valid meanwhile.
    let Some(this) = (unsafe { bound(dev) }) else {
        return ENODEV.to_errno() as isize;
    };
    // SAFETY: sysfs hands `store` `count` readable bytes at `buf`.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
    let result = EchoRequest::parse(input)
        .map_err(|_| EINVAL)
        .and_then(|req| this.shared().set_echo(req));
    match result {
        // CAST: sysfs input is at most a page.
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// The attribute group on a PCI device, removed on drop.
///
/// # Invariants
///
/// `GROUP` is added to `dev` for the lifetime of this value.
pub(crate) struct SysfsGroup {
    dev: *mut bindings::device,
}

// SAFETY: `device_remove_group` may run on any thread.
unsafe impl Send for SysfsGroup {}
// SAFETY: no `&self` methods.
unsafe impl Sync for SysfsGroup {}

impl SysfsGroup {
    /// Adds the attributes to `pdev`.
    pub(crate) fn new(pdev: &pci::Device<Bound>) -> Result<Self> {
        // SAFETY: the embedded `struct device` of a bound PCI device.
        let dev = unsafe { &raw mut (*raw_pci_dev(pdev)).dev };
        // SAFETY: `dev` is valid; `GROUPS` is a static, NULL-terminated list.
        kernel::error::to_result(unsafe { bindings::device_add_groups(dev, GROUPS.0.as_ptr()) })?;
        // INVARIANT: the group was just added.
        Ok(SysfsGroup { dev })
    }
}

impl Drop for SysfsGroup {
    fn drop(&mut self) {
        // SAFETY: added in `new` (type invariant); removal waits for readers
        // of the attributes to finish.
        unsafe { bindings::device_remove_groups(self.dev, GROUPS.0.as_ptr()) };
    }
}
