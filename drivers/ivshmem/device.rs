// SPDX-License-Identifier: GPL-2.0

//! State of one bound device shared by the driver, its IRQ handlers and every
//! open file.
//!
//! Open files and user mappings can outlive the binding (unbind, `rmmod` of
//! a dependency, surprise removal), so this lives in an `Arc`. What must not
//! outlive the binding is revocable: the registers are a `DevresBar` (gone
//! once unbound), and `Events::dead` tells readers and pollers to give up.

use kernel::{
    new_mutex, new_poll_condvar, new_spinlock_irq,
    pci::DevresBar,
    prelude::*,
    sync::{poll::PollCondVar, Mutex, SpinLockIrq},
};

use crate::hal::RegisterModel;
use crate::regs::BAR0_SIZE;
use crate::shared::layout::Layout;
use crate::shared::uapi::{DeviceInfo, MAX_VECTORS};

/// Number of vectors counted, as an array length.
pub(crate) const NR_COUNTERS: usize = MAX_VECTORS as usize;

/// Interrupt bookkeeping, written by the hard-IRQ handlers.
pub(crate) struct Events {
    /// Interrupts delivered per vector since probe.
    pub(crate) counters: [u64; NR_COUNTERS],
    /// The device is gone: blocked readers return `ENODEV`.
    pub(crate) dead: bool,
}

/// Who has the device open.
pub(crate) struct Users {
    /// Open files.
    pub(crate) open: u32,
    /// The local state as last set through the device (v1 keeps it here).
    pub(crate) state: u32,
    /// `file->f_mapping` of every open file (as addresses), so that user
    /// mappings can be zapped when the device goes away. Each entry is valid
    /// while its file is open: release removes it.
    pub(crate) mappings: KVec<usize>,
}

/// Per-device state shared with open files and IRQ handlers.
#[pin_data]
pub(crate) struct Shared {
    /// What `IVSHMEM_IOCTL_INFO` reports.
    pub(crate) info: DeviceInfo,
    /// The register model of this device's revision.
    pub(crate) model: &'static dyn RegisterModel,
    /// The registers; revoked on unbind.
    pub(crate) regs: DevresBar<BAR0_SIZE>,
    /// Bus address of the shared memory (BAR2).
    pub(crate) shmem_phys: u64,
    /// Section layout, when the device has sections (mmap permissions).
    pub(crate) layout: Option<Layout>,
    /// Interrupt counters.
    #[pin]
    pub(crate) events: SpinLockIrq<Events>,
    /// Woken on every interrupt and when the device goes away.
    #[pin]
    pub(crate) waiters: PollCondVar,
    /// Open files and local state.
    #[pin]
    pub(crate) users: Mutex<Users>,
}

impl Shared {
    /// Initializer for a device described by `info`.
    pub(crate) fn new(
        info: DeviceInfo,
        model: &'static dyn RegisterModel,
        regs: DevresBar<BAR0_SIZE>,
        shmem_phys: u64,
        layout: Option<Layout>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            info,
            model,
            regs,
            shmem_phys,
            layout,
            events <- new_spinlock_irq!(Events { counters: [0; NR_COUNTERS], dead: false }),
            waiters <- new_poll_condvar!("ivshmem::waiters"),
            users <- new_mutex!(Users { open: 0, state: 0, mappings: KVec::new() }),
        })
    }

    /// Counts one interrupt on `vector` and wakes waiters (hard-IRQ context).
    pub(crate) fn signal(&self, vector: usize) {
        if let Some(c) = self.events.lock().counters.get_mut(vector) {
            *c = c.wrapping_add(1);
        }
        self.waiters.notify_all();
    }

    /// Marks the device gone, wakes everyone and zaps user mappings of the
    /// shared memory so no process keeps access to a removed BAR.
    pub(crate) fn kill(&self) {
        self.events.lock().dead = true;
        self.waiters.notify_all();
        let users = self.users.lock();
        for &mapping in users.mappings.iter() {
            // SAFETY: `mapping` is the `f_mapping` of a file that is still
            // open (release removes it under this lock), so the address_space
            // is alive. Zapping the whole range removes every PTE of our
            // mappings; a later access faults and gets SIGBUS.
            unsafe {
                kernel::bindings::unmap_mapping_range(
                    mapping as *mut kernel::bindings::address_space,
                    0,
                    0,
                    1,
                )
            };
        }
    }
}
