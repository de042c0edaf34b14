// SPDX-License-Identifier: GPL-2.0

//! `/dev/ivshmemN`: one misc device per bound ivshmem device.
//!
//! The 7.3 `MiscDevice` trait has no `poll` and no parent device, so this
//! file registers a raw `struct miscdevice` with its own `file_operations`
//! (as binder does). The ABI is `shared::ivshmem::uapi` /
//! `include/uapi/lincell/ivshmem.h`, documented in
//! `Documentation/ivshmem-abi.md`.
//!
//! Every open file holds an `Arc<Shared>`, so files outlive unbinding
//! safely: once the device is going away, every call returns `ENODEV`,
//! blocked readers wake up, `poll` reports `POLLHUP`, and user mappings are
//! zapped. The file operations keep the module loaded while files are open.

use core::sync::atomic::{AtomicU32, Ordering};

use kernel::{
    bindings,
    ffi::{c_char, c_int, c_long, c_uint, c_ulong},
    fs::{
        file::flags::{self as file_flags, O_NONBLOCK},
        File,
    },
    mm::virt::VmaNew,
    new_spinlock,
    prelude::*,
    str::CString,
    sync::{poll::PollTable, Arc, SpinLock},
    transmute::{AsBytes, FromBytes},
    types::{ForeignOwnable, Opaque},
    uaccess::{UserPtr, UserSlice},
};

use crate::common::mmio::Regs;
use crate::device::{Shared, NR_COUNTERS};
use crate::shared::ivshmem::layout::Access;
use crate::shared::ivshmem::uapi::{self, ArrayArg, DeviceInfo, Ring};

// SAFETY: plain `repr(C)` integers without padding (checked by the host ABI
// test), so every byte is initialized.
unsafe impl AsBytes for DeviceInfo {}
// SAFETY: any bit pattern is a valid `Ring` (two `u32`).
unsafe impl FromBytes for Ring {}
// SAFETY: any bit pattern is a valid `ArrayArg` (integers only).
unsafe impl FromBytes for ArrayArg {}
// SAFETY: as above, integers only and no padding.
unsafe impl AsBytes for ArrayArg {}

/// Next `N` in `/dev/ivshmemN`.
static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// A registered `/dev/ivshmemN`.
///
/// # Invariants
///
/// `misc` is registered with `misc_register` and deregistered exactly once
/// in `drop`; its `name` points into `name`, which lives as long as `self`.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct Chardev {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    name: CString,
    shared: Arc<Shared>,
}

// SAFETY: the misc device may be deregistered from any thread; `shared` is
// thread-safe.
unsafe impl Send for Chardev {}
// SAFETY: `&Chardev` exposes nothing mutable.
unsafe impl Sync for Chardev {}

/// `file_operations` in a static.
struct Fops(bindings::file_operations);
// SAFETY: a table of function pointers and the module pointer, never written.
unsafe impl Sync for Fops {}

static FOPS: Fops = Fops(bindings::file_operations {
    owner: kernel::module::this_module::<crate::LocalModule>().as_ptr(),
    open: Some(fop_open),
    release: Some(fop_release),
    read: Some(fop_read),
    poll: Some(fop_poll),
    unlocked_ioctl: Some(fop_ioctl),
    compat_ioctl: bindings::compat_ptr_ioctl,
    mmap: Some(fop_mmap),
    llseek: Some(bindings::noop_llseek),
    ..pin_init::zeroed()
});

impl Chardev {
    /// Registers `/dev/ivshmemN` for `shared`, child of `parent`.
    pub(crate) fn new(
        parent: *mut bindings::device,
        shared: Arc<Shared>,
    ) -> Result<impl PinInit<Self, Error>> {
        let index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        let name = CString::try_from_fmt(fmt!("ivshmem{index}"))?;
        // The CString's buffer is on the heap: the pointer survives the move.
        let name_ptr = name.as_char_ptr();
        Ok(try_pin_init!(Self {
            name,
            shared,
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let misc = bindings::miscdevice {
                    // CAST: MISC_DYNAMIC_MINOR (255) fits.
                    minor: bindings::MISC_DYNAMIC_MINOR as c_int,
                    name: name_ptr,
                    fops: &FOPS.0,
                    parent,
                    mode: 0o600,
                    ..pin_init::zeroed()
                };
                // SAFETY: `slot` is valid for writes; once registered it stays
                // pinned until `drop` deregisters it (type invariant).
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a fully initialized miscdevice.
                kernel::error::to_result(unsafe { bindings::misc_register(slot) })
            }),
        }))
    }

    /// The device node name (`ivshmemN`).
    pub(crate) fn name(&self) -> &CStr {
        &self.name
    }
}

#[pinned_drop]
impl PinnedDrop for Chardev {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered by the type invariant. `misc_deregister` waits
        // for `misc_open` callers (both take `misc_mtx`), so no open can see
        // this `Chardev` afterwards.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// Per-open-file state.
#[pin_data]
struct OpenFile {
    shared: Arc<Shared>,
    /// `file->f_mapping`, registered in `Users::mappings` while open.
    mapping: usize,
    /// Counter values already reported to this file by `read`.
    #[pin]
    seen: SpinLock<[u64; NR_COUNTERS]>,
}

type OpenPtr = Pin<KBox<OpenFile>>;

/// Borrows the per-open state of `file`.
///
/// # Safety
///
/// `file` must be one of our files between `fop_open` and `fop_release`.
unsafe fn open_file<'a>(file: *mut bindings::file) -> Pin<&'a OpenFile> {
    // SAFETY: `fop_open` stored an `OpenPtr` in `private_data`, which stays
    // until `fop_release` (caller's guarantee).
    unsafe { <OpenPtr as ForeignOwnable>::borrow((*file).private_data) }
}

fn errno(e: Error) -> c_int {
    e.to_errno()
}

/// # Safety
///
/// Called by the VFS for a file opened on our misc device.
unsafe extern "C" fn fop_open(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: `misc_open` set `private_data` to our `struct miscdevice` and
    // holds `misc_mtx`, so the containing `Chardev` is alive during this call.
    let chardev = unsafe {
        let misc = (*file).private_data.cast::<Opaque<bindings::miscdevice>>();
        &*kernel::container_of!(misc, Chardev, misc)
    };
    let shared = chardev.shared.clone();
    if let Err(e) = shared.check_present() {
        return errno(e);
    }
    // SAFETY: `file` is valid; `f_mapping` is set before `open` is called.
    let mapping = unsafe { (*file).f_mapping } as usize;
    let counters = shared.events.lock().counters;
    let for_file = shared.clone();
    let of = match KBox::pin_init(
        pin_init!(OpenFile {
            shared: for_file,
            mapping,
            // A new reader sees only interrupts that arrive after it opened.
            seen <- new_spinlock!(counters),
        }),
        GFP_KERNEL,
    ) {
        Ok(of) => of,
        Err(e) => return errno(e),
    };
    {
        let mut users = shared.users.lock();
        if let Err(e) = users.mappings.push(mapping, GFP_KERNEL) {
            return errno(e.into());
        }
        users.open += 1;
    }
    if shared.sections.as_ref().is_some_and(|s| s.one_shot) {
        // One-shot mode: an interrupt delivered while nobody read (before
        // this open) disabled interrupts, and only a read re-enables them;
        // a new reader must not wait behind that forever.
        if let Some(bar) = shared.regs.try_access() {
            shared.model.enable_interrupts(&Regs(&bar));
        }
    }
    // SAFETY: we own `private_data` during open; every other fop reads it
    // back as an `OpenPtr` until release takes it.
    unsafe { (*file).private_data = of.into_foreign() };
    0
}

/// # Safety
///
/// Called by the VFS once, when the last reference to the file goes.
unsafe extern "C" fn fop_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release owns `private_data`, stored by `fop_open`.
    let of = unsafe { <OpenPtr as ForeignOwnable>::from_foreign((*file).private_data) };
    let shared = &of.shared;
    let mut users = shared.users.lock();
    if let Some(pos) = users.mappings.iter().position(|&m| m == of.mapping) {
        // Cannot fail: `pos` is in bounds.
        let _ = users.mappings.remove(pos);
    }
    users.open = users.open.saturating_sub(1);
    if users.open == 0 && users.state != 0 {
        // The last user is gone: the local state goes back to 0 ("not
        // ready") so peers do not keep talking to nobody. Best effort: the
        // device may be gone already.
        let _ = shared.publish_state(&mut users, 0);
    }
    0
}

/// # Safety
///
/// Called by the VFS on one of our open files; `buf` is a user pointer.
unsafe extern "C" fn fop_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: an open file of ours.
    let of = unsafe { open_file(file) };
    // SAFETY: `file` is valid for this call.
    let nonblock = unsafe { File::from_raw_file(file) }.flags() & O_NONBLOCK != 0;
    if count < uapi::READ_SIZE {
        return EINVAL.to_errno() as isize;
    }
    let user = UserSlice::new(UserPtr::from_ptr(buf.cast()), uapi::READ_SIZE);
    match read_events(&of, nonblock, user) {
        // CAST: at most 8.
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Waits for interrupts not yet reported to this file and returns their mask.
fn read_events(of: &OpenFile, nonblock: bool, user: UserSlice) -> Result<usize> {
    let shared = &of.shared;
    let mut events = shared.events.lock();
    let mask = loop {
        if events.dead {
            return Err(ENODEV);
        }
        let mask = uapi::take_pending(&events.counters, &mut *of.seen.lock());
        if mask != 0 {
            break mask;
        }
        if nonblock {
            return Err(EAGAIN);
        }
        if shared.waiters.wait_interruptible(&mut events) {
            return Err(ERESTARTSYS);
        }
    };
    drop(events);
    if shared.sections.as_ref().is_some_and(|s| s.one_shot) {
        // One-shot mode: the device disabled interrupts when it delivered
        // these; the consumer has them now, so take the next ones.
        if let Some(bar) = shared.regs.try_access() {
            shared.model.enable_interrupts(&Regs(&bar));
        }
    }
    user.writer().write(&mask)?;
    Ok(uapi::READ_SIZE)
}

/// # Safety
///
/// Called by the VFS on one of our open files.
unsafe extern "C" fn fop_poll(
    file: *mut bindings::file,
    wait: *mut bindings::poll_table_struct,
) -> bindings::__poll_t {
    // SAFETY: an open file of ours.
    let of = unsafe { open_file(file) };
    // SAFETY: `file` is valid for this call.
    let fileref = unsafe { File::from_raw_file(file) };
    // SAFETY: `wait` is null or a valid poll table for this call.
    let table = unsafe { PollTable::from_raw(wait) };
    table.register_wait(fileref, &of.shared.waiters);
    let events = of.shared.events.lock();
    if events.dead {
        return bindings::POLLERR | bindings::POLLHUP;
    }
    if uapi::any_pending(&events.counters, &*of.seen.lock()) {
        bindings::POLLIN | bindings::POLLRDNORM
    } else {
        0
    }
}

/// # Safety
///
/// Called by the VFS on one of our open files; `arg` is a user pointer.
unsafe extern "C" fn fop_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: an open file of ours.
    let of = unsafe { open_file(file) };
    // SAFETY: `file` is valid for this call.
    let flags = unsafe { File::from_raw_file(file) }.flags();
    let writable = flags & file_flags::O_ACCMODE != file_flags::O_RDONLY;
    match ioctl(&of.shared, cmd, arg, writable) {
        Ok(()) => 0,
        Err(e) => e.to_errno() as c_long,
    }
}

/// The size encoded in an ioctl number.
fn ioc_size(cmd: u32) -> usize {
    ((cmd >> 16) & 0x3fff) as usize
}

/// The ioctls; `writable`: the file was opened for writing, which ringing
/// doorbells and setting the state (acting on the peers) require.
fn ioctl(shared: &Shared, cmd: u32, arg: c_ulong, writable: bool) -> Result {
    let user = UserSlice::new(UserPtr::from_addr(arg), ioc_size(cmd));
    let info = &shared.info;
    // A device that is going away answers nothing, not even what it was.
    shared.check_present()?;
    if matches!(cmd, uapi::IOCTL_RING | uapi::IOCTL_SET_STATE) && !writable {
        return Err(EBADF);
    }
    match cmd {
        uapi::IOCTL_INFO => user.writer().write(info),
        uapi::IOCTL_RING => {
            let ring: Ring = user.reader().read()?;
            shared.ring(ring.peer, ring.vector)
        }
        uapi::IOCTL_SET_STATE => {
            let state: u32 = user.reader().read()?;
            shared.publish_state(&mut shared.users.lock(), state)
        }
        uapi::IOCTL_GET_STATE => {
            let state = shared.users.lock().state;
            user.writer().write(&state)
        }
        uapi::IOCTL_COUNTERS => {
            let (mut reader, mut writer) = user.reader_writer();
            let mut arg: ArrayArg = reader.read()?;
            if arg.reserved != 0 {
                return Err(EINVAL);
            }
            let counters = shared.events.lock().counters;
            // CAST: `vectors <= MAX_VECTORS`.
            let available = (info.vectors as usize).min(NR_COUNTERS);
            let n = (arg.count as usize).min(available);
            // CAST: user address.
            let mut out = UserSlice::new(UserPtr::from_addr(arg.ptr as usize), n * 8).writer();
            for c in &counters[..n] {
                out.write(c)?;
            }
            // CAST: `available <= 64`.
            arg.count = available as u32;
            writer.write(&arg)
        }
        uapi::IOCTL_PEER_STATES => {
            let sections = shared.sections.as_ref().ok_or(EOPNOTSUPP)?;
            let (mut reader, mut writer) = user.reader_writer();
            let mut arg: ArrayArg = reader.read()?;
            if arg.reserved != 0 {
                return Err(EINVAL);
            }
            let available = sections.layout.max_peers();
            let n = arg.count.min(available);
            // Copy the table out under the lock `kill` takes, so it is never
            // read once the device (and its memory) may be going away; then
            // copy to the user without holding it.
            // Up to 256 KiB: virtually contiguous is enough.
            let mut states = KVVec::with_capacity(n as usize, GFP_KERNEL)?;
            {
                let users = shared.users.lock();
                if users.gone {
                    return Err(ENODEV);
                }
                for peer in 0..n {
                    states.push(sections.state_of(peer).unwrap_or(0), GFP_KERNEL)?;
                }
            }
            // CAST: user address; `n * 4` is at most 256 KiB.
            let mut out =
                UserSlice::new(UserPtr::from_addr(arg.ptr as usize), n as usize * 4).writer();
            for s in states.iter() {
                out.write(s)?;
            }
            arg.count = available;
            writer.write(&arg)
        }
        _ => Err(ENOTTY),
    }
}

/// # Safety
///
/// Called by the VFS while setting up a new mapping of one of our files.
unsafe extern "C" fn fop_mmap(
    file: *mut bindings::file,
    vma: *mut bindings::vm_area_struct,
) -> c_int {
    // SAFETY: an open file of ours.
    let of = unsafe { open_file(file) };
    // SAFETY: `vma` is being set up by mmap for this call.
    let area = unsafe { VmaNew::from_raw(vma) };
    match mmap(&of.shared, area) {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}

fn mmap(shared: &Shared, vma: &VmaNew) -> Result {
    // `Shared::kill` marks the device gone and zaps mappings under this
    // lock, so a mapping made while holding it is either refused here or
    // zapped there. (Not the registers' RCU guard: mapping may sleep.)
    let users = shared.users.lock();
    if users.gone {
        return Err(ENODEV);
    }
    let info = &shared.info;
    // Shared memory is shared: a private (copy-on-write) mapping of device
    // memory would silently stop seeing the peers' writes.
    if vma.flags() & kernel::mm::virt::flags::MAYSHARE == 0 {
        return Err(EINVAL);
    }
    // SAFETY: reading a field of the vma being set up.
    let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff };
    let offset = u64::try_from(pgoff)
        .ok()
        .and_then(|p| p.checked_mul(kernel::page::PAGE_SIZE as u64))
        .ok_or(EINVAL)?;
    // CAST: usize fits in u64.
    let len = (vma.end() - vma.start()) as u64;
    let end = offset.checked_add(len).ok_or(EINVAL)?;
    if len == 0 || end > info.shmem_size {
        return Err(EINVAL);
    }
    let access = match &shared.sections {
        Some(s) if offset < s.base => {
            // The v1 header: readable, never writable from userspace.
            if end > s.base {
                return Err(EINVAL);
            }
            Access::ReadOnly
        }
        Some(s) => s.layout.lookup(offset - s.base, len).map_err(|_| EINVAL)?.1,
        // Without a section layout the whole region is one R/W section.
        None => Access::ReadWrite,
    };
    if access == Access::ReadOnly {
        if vma.writable() {
            return Err(EACCES);
        }
        vma.try_clear_maywrite()?;
    }
    vma.set_io();
    vma.set_dontexpand();
    vma.set_dontdump();
    // SAFETY: the vma is being set up by mmap (nobody else sees it yet), as
    // `VmaNew`'s own flag setters assume; PFNMAP is what `vmf_insert_pfn`
    // requires and what `vm_iomap_memory` would have set.
    unsafe {
        (*vma.as_ptr()).__bindgen_anon_2.vm_flags |= kernel::mm::virt::flags::PFNMAP;
        (*vma.as_ptr()).vm_ops = &VM_OPS.0;
    }
    // Nothing is mapped yet: pages are inserted by `vm_fault`, once the vma
    // is on the file's mapping list where `Shared::kill` zaps it. Filling
    // the page tables here would leave a window (after this returns, before
    // mmap links the vma) in which a removal zaps nothing and the mapping
    // outlives the device.
    drop(users);
    Ok(())
}

/// `vm_operations_struct` in a static.
struct VmOps(bindings::vm_operations_struct);
// SAFETY: a table of function pointers, never written.
unsafe impl Sync for VmOps {}

static VM_OPS: VmOps = VmOps(bindings::vm_operations_struct {
    fault: Some(vm_fault),
    ..pin_init::zeroed()
});

/// A fault on a mapping of the shared memory: maps the page, unless the
/// device is gone (`SIGBUS`). Under the lock `Shared::kill` takes, so a
/// page is either inserted before the kill zaps the mapping, or refused.
///
/// # Safety
///
/// Called by the MM for a fault on one of our vmas.
unsafe extern "C" fn vm_fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    // SAFETY: `vmf` describes this fault; its vma is ours and alive during
    // it, and holds a reference on its file, which is one of our open files
    // (so `private_data` is ours until release, after the vma is gone).
    let (vma, address, pgoff, of) = unsafe {
        let f = &(*vmf).__bindgen_anon_1;
        (f.vma, f.address, f.pgoff, open_file((*f.vma).vm_file))
    };
    let shared = &of.shared;
    let users = shared.users.lock();
    if users.gone {
        return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
    }
    let page_shift = kernel::page::PAGE_SHIFT;
    // `mmap` checked that the vma's pages lie inside the shared memory, and
    // DONTEXPAND keeps them there; check anyway, it costs nothing.
    // CAST: the BAR's length fits in `unsigned long`.
    if pgoff >= (shared.info.shmem_size >> page_shift) as c_ulong {
        return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
    }
    // CAST: as above, for the BAR's address.
    let pfn = (shared.shmem_phys >> page_shift) as c_ulong + pgoff;
    // SAFETY: `vma` is a PFNMAP vma of ours (set up in `mmap`), `address`
    // the faulting address inside it, `pfn` a page of our BAR2, which stays
    // ours while `gone` is false (checked under the lock `kill` takes).
    let ret = unsafe { bindings::vmf_insert_pfn(vma, address, pfn) };
    drop(users);
    ret
}
