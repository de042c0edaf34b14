// SPDX-License-Identifier: GPL-2.0

//! State of one bound device shared by the driver, its IRQ handlers and every
//! open file.
//!
//! Open files and user mappings can outlive the binding (unbind, surprise
//! removal), so this lives in an `Arc`. What must not outlive the binding is
//! revocable: the registers are a `DevresBar` (gone once unbound), and
//! `Events::dead` tells readers and pollers to give up.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kernel::{
    new_mutex, new_poll_condvar, new_spinlock_irq,
    pci::DevresBar,
    prelude::*,
    sync::{poll::PollCondVar, Arc, Mutex, SpinLockIrq},
};

use crate::common::irq::VectorHandler;
use crate::common::mmio::{Regs, ShmemWindow};
use crate::common::sections::DeviceSections;
use crate::shared::ivshmem::doorbell::{Doorbell, EchoError, EchoRequest};
use crate::shared::ivshmem::regs::{RegisterModel, BAR0_SIZE};
use crate::shared::ivshmem::uapi::{DeviceInfo, MAX_VECTORS};

/// Number of vectors counted, as an array length.
pub(crate) const NR_COUNTERS: usize = MAX_VECTORS as usize;

/// Interrupt bookkeeping, written by the hard-IRQ handlers.
pub(crate) struct Events {
    /// Interrupts delivered per vector since probe.
    pub(crate) counters: [u64; NR_COUNTERS],
    /// The device is gone: blocked readers return `ENODEV`.
    pub(crate) dead: bool,
}

/// Who has the device open, and whether it is still there.
///
/// Everything that touches the shared memory or the state table from the
/// kernel (state publishing, `PEER_STATES`, mmap, sysfs) holds this lock and
/// checks `gone`: `Shared::kill` sets it under the same lock, so no access
/// can start after the device began to go away.
pub(crate) struct Users {
    /// The device was unbound or removed: every call fails with `ENODEV`.
    pub(crate) gone: bool,
    /// Open files.
    pub(crate) open: u32,
    /// The local state as last set through the device.
    pub(crate) state: u32,
    /// `file->f_mapping` of every open file (as addresses), so that user
    /// mappings can be zapped when the device goes away. Each entry is valid
    /// while its file is open: release removes it.
    pub(crate) mappings: KVec<usize>,
    /// A kernel write-back mapping of the whole shared memory, held while
    /// the device is present only for what it reserves: the memory type
    /// that user pages inserted at fault time inherit (on x86 a page of no
    /// reserved range would be mapped uncached). Dropped by `kill`.
    pub(crate) memtype: Option<ShmemWindow>,
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
    /// Sections and the mapped state table, when the device has them.
    pub(crate) sections: Option<DeviceSections>,
    /// Interrupt counters.
    #[pin]
    pub(crate) events: SpinLockIrq<Events>,
    /// Woken on every interrupt and when the device goes away.
    #[pin]
    pub(crate) waiters: PollCondVar,
    /// Open files and local state.
    #[pin]
    pub(crate) users: Mutex<Users>,
    /// The in-kernel echo (sysfs `echo`): 0 off, else the peer answered
    /// plus one. Read by the interrupt handlers.
    echo: AtomicU32,
    /// Doorbells the in-kernel echo answered since probe.
    echoed: AtomicU64,
}

impl Shared {
    /// Initializer for a device described by `info`.
    pub(crate) fn new(
        info: DeviceInfo,
        model: &'static dyn RegisterModel,
        regs: DevresBar<BAR0_SIZE>,
        shmem_phys: u64,
        sections: Option<DeviceSections>,
        memtype: Option<ShmemWindow>,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            info,
            model,
            regs,
            shmem_phys,
            sections,
            events <- new_spinlock_irq!(Events { counters: [0; NR_COUNTERS], dead: false }),
            waiters <- new_poll_condvar!("ivshmem::waiters"),
            users <- new_mutex!(Users {
                gone: false,
                open: 0,
                state: 0,
                mappings: KVec::new(),
                memtype,
            }),
            echo: AtomicU32::new(0),
            echoed: AtomicU64::new(0),
        })
    }

    /// Counts one interrupt on `vector` and wakes waiters (hard-IRQ context).
    pub(crate) fn signal(&self, vector: usize) {
        if let Some(c) = self.events.lock().counters.get_mut(vector) {
            *c = c.wrapping_add(1);
        }
        self.waiters.notify_all();
    }

    /// The in-kernel echo's setting.
    pub(crate) fn echo(&self) -> EchoRequest {
        match self.echo.load(Ordering::Acquire) {
            0 => EchoRequest::Off,
            p => EchoRequest::Peer(p - 1),
        }
    }

    /// Doorbells the in-kernel echo answered since probe.
    pub(crate) fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::Relaxed)
    }

    /// Turns the in-kernel echo on (for a valid peer other than us, on a
    /// device with at least two vectors) or off.
    pub(crate) fn set_echo(&self, req: EchoRequest) -> Result {
        let info = &self.info;
        let value = match req.validate(info.own_id, info.max_peers, info.vectors) {
            Ok(EchoRequest::Off) => 0,
            Ok(EchoRequest::Peer(p)) => {
                self.check_present()?;
                // The peer id is below 1 << 16: no overflow.
                p + 1
            }
            Err(EchoError::NoVectors) => return Err(EOPNOTSUPP),
            Err(_) => return Err(EINVAL),
        };
        self.echo.store(value, Ordering::Release);
        Ok(())
    }

    /// The in-kernel echo, from the interrupt handler of `vector`: rings
    /// the configured peer on the same vector (never for vector 0, which
    /// carries state changes). One doorbell out per doorbell in, without a
    /// lock: a peer ringing us in a loop costs the same either way.
    fn answer(&self, vector: usize) {
        let Ok(vector) = u32::try_from(vector) else {
            return;
        };
        let Some(doorbell) = self
            .echo()
            .answer(vector, self.info.max_peers, self.info.vectors)
        else {
            return;
        };
        // Revocable registers: nothing is rung once the device is unbound.
        if let Some(bar) = self.regs.try_access() {
            self.model.ring(&Regs(&bar), doorbell);
            self.echoed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fails with `ENODEV` once the device is going away.
    pub(crate) fn check_present(&self) -> Result {
        if self.users.lock().gone {
            return Err(ENODEV);
        }
        Ok(())
    }

    /// Rings `vector` on `peer` after validating both.
    pub(crate) fn ring(&self, peer: u32, vector: u32) -> Result {
        // (The revocable registers below also refuse once unbound.)
        self.check_present()?;
        if self.info.vectors == 0 {
            // ivshmem-plain: no interrupts at all.
            return Err(EOPNOTSUPP);
        }
        let doorbell = Doorbell::new(peer, vector, self.info.max_peers, self.info.vectors)
            .map_err(|_| EINVAL)?;
        let bar = self.regs.try_access().ok_or(ENODEV)?;
        self.model.ring(&Regs(&bar), doorbell);
        Ok(())
    }

    /// Publishes the local state to the peers.
    ///
    /// ivshmem 2.0 does it in hardware (State register → state table +
    /// vector 0 on the others). On v1 the driver writes its own state-table
    /// entry and rings vector 0 on every other peer, as the lincell v1
    /// layout specifies. Called with `users` locked (it serializes states).
    pub(crate) fn publish_state(&self, users: &mut Users, state: u32) -> Result {
        if users.gone {
            return Err(ENODEV);
        }
        let bar = self.regs.try_access().ok_or(ENODEV)?;
        users.state = state;
        match &self.sections {
            Some(sections) => {
                sections.publish_state(self.model, &Regs(&bar), state, self.info.vectors)
            }
            // No state table: only ivshmem 2.0's register, if any.
            None => {
                self.model.set_state(&Regs(&bar), state);
            }
        }
        Ok(())
    }

    /// Marks the device gone, wakes everyone and zaps user mappings of the
    /// shared memory so no process keeps access to a removed BAR.
    pub(crate) fn kill(&self) {
        self.echo.store(0, Ordering::Release);
        let mut users = self.users.lock();
        if users.state != 0 {
            // Peers see us leave; best effort, the device may be gone.
            let _ = self.publish_state(&mut users, 0);
        }
        users.gone = true;
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
        // No user page is left and none can be inserted (`gone`).
        users.memtype = None;
        drop(users);
        self.events.lock().dead = true;
        self.waiters.notify_all();
    }
}

impl VectorHandler for Shared {
    fn vector(this: &Arc<Self>, vector: usize) {
        // The answer first: it is the latency being measured.
        this.answer(vector);
        this.signal(vector);
    }

    fn intx(this: &Arc<Self>) -> bool {
        // The registers are revocable; reading them under RCU is fine here.
        let ours = this
            .regs
            .try_access()
            .is_some_and(|bar| this.model.ack_intx(&Regs(&bar)));
        if ours {
            this.signal(0);
        }
        ours
    }

    fn intx_shareable(&self) -> bool {
        self.model.intx_shareable()
    }
}
