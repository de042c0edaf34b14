// SPDX-License-Identifier: GPL-2.0

//! One virtqueue: the driver's private vring, its shared copy in the R/W
//! section, and the shadow state that moves work between them.

use kernel::{new_spinlock_irq, prelude::*, sync::SpinLockIrq};

use crate::common::mmio::{report_bad_access, ShmemWindow};
use crate::ffi;
use crate::shared::shmem::{Fallback, RawRegion};
use crate::shared::vdev::header::HEADER_AREA;
use crate::shared::vdev::shadow::{Head, RingAddrs, Shadow, ShadowError};

/// What one kick published.
pub(crate) struct Published {
    /// Chains handed to the backend.
    pub(crate) count: u16,
    /// The backend had nothing of this queue before.
    pub(crate) was_idle: bool,
    /// Output-only chains the backend now holds.
    pub(crate) readonly_in_flight: u16,
}

/// A virtqueue of a registered virtio device.
///
/// # Invariants
///
/// `vq` is a live virtqueue created by `vring_create_virtqueue_map` whose
/// ring memory is `private_ring`; it is deleted only after this queue was
/// taken off `Link::queues` and every interrupt handler and the fail work
/// are done with it (`Link::del_vqs`).
#[pin_data]
pub(crate) struct Queue {
    /// The C virtqueue.
    pub(crate) vq: *mut ffi::virtqueue,
    /// Queue index in the header's `queue_sel` numbering.
    pub(crate) index: u32,
    /// The vector the backend wants to be rung on for this queue.
    pub(crate) device_vector: u32,
    /// The private ring (kernel memory, allocated with `vq`).
    pub(crate) private_ring: RawRegion,
    /// Its parts, as offsets into `private_ring`.
    pub(crate) private: RingAddrs,
    /// The shared ring: its parts (section offsets) and its allocation.
    pub(crate) shared: RingAddrs,
    pub(crate) shared_alloc: (usize, usize),
    /// The backend owes an answer for every buffer (not a receive queue):
    /// buffers held here count towards `request_timeout_ms`.
    pub(crate) owes_answers: bool,
    /// Shadow bookkeeping, taken from the kick path and the interrupt path.
    #[pin]
    pub(crate) shadow: SpinLockIrq<Shadow<KVec<Head>>>,
}

// SAFETY: `vq` is only used through the C virtqueue API, which is callable
// from any thread; the rest is plain data or locked.
unsafe impl Send for Queue {}
// SAFETY: as above.
unsafe impl Sync for Queue {}

/// What [`Queue::new`] builds a queue from.
pub(crate) struct QueueParts {
    /// The C virtqueue.
    pub(crate) vq: *mut ffi::virtqueue,
    /// Queue index in the header's `queue_sel` numbering.
    pub(crate) index: u32,
    /// The vector the backend wants to be rung on for this queue.
    pub(crate) device_vector: u32,
    /// Entries in the ring.
    pub(crate) num: u16,
    /// The private ring (kernel memory, allocated with `vq`).
    pub(crate) private_ring: RawRegion,
    /// Its parts, as offsets into `private_ring`.
    pub(crate) private: RingAddrs,
    /// The shared ring's parts (section offsets).
    pub(crate) shared: RingAddrs,
    /// The shared ring's allocation in the bounce pool (offset, length).
    pub(crate) shared_alloc: (usize, usize),
    /// See [`Queue::owes_answers`].
    pub(crate) owes_answers: bool,
}

impl Queue {
    /// A queue for `parts.vq` with `parts.num` entries.
    ///
    /// # Safety
    ///
    /// `parts.vq` must be a live virtqueue of `parts.num` entries whose ring
    /// memory is described by `parts.private_ring`/`parts.private`; see the
    /// type invariant.
    pub(crate) unsafe fn new(parts: QueueParts) -> Result<impl PinInit<Self>> {
        let QueueParts {
            vq,
            index,
            device_vector,
            num,
            private_ring,
            private,
            shared,
            shared_alloc,
            owes_answers,
        } = parts;
        let mut heads = KVec::with_capacity(usize::from(num), GFP_KERNEL)?;
        for _ in 0..num {
            heads.push(Head::default(), GFP_KERNEL)?;
        }
        let shadow = Shadow::new(num, heads).ok_or(EINVAL)?;
        // INVARIANT: the caller vouches for `vq` and its ring.
        Ok(pin_init!(Queue {
            vq,
            index,
            device_vector,
            private_ring,
            private,
            shared,
            shared_alloc,
            owes_answers,
            shadow <- new_spinlock_irq!(shadow, "vdev_remote::Queue::shadow"),
        }))
    }

    /// The private ring, whose offsets were fixed at set-up.
    fn private_ring(&self) -> Fallback<'_, RawRegion> {
        Fallback::new(&self.private_ring, report_bad_access)
    }

    /// Copies newly available chains to the shared ring in the R/W section
    /// `rw`, under one acquisition of the lock (this is the kick path).
    pub(crate) fn publish(&self, rw: &ShmemWindow) -> Result<Published, ShadowError> {
        let rw_len = rw.len();
        // Buffers are bounce slots inside the section, never the header.
        let ok = |addr: u64, len: u32| {
            addr >= HEADER_AREA as u64
                && addr
                    .checked_add(u64::from(len))
                    .is_some_and(|end| end <= rw_len as u64)
        };
        let mut shadow = self.shadow.lock();
        let count = shadow.publish(
            &self.private_ring(),
            &self.private,
            &rw.fallback(),
            &self.shared,
            &ok,
        )?;
        Ok(Published {
            count,
            was_idle: shadow.in_flight() == count,
            readonly_in_flight: shadow.readonly_in_flight(),
        })
    }

    /// Copies validated completions back; the number delivered.
    pub(crate) fn collect(&self, rw: &ShmemWindow) -> Result<u16, ShadowError> {
        self.shadow.lock().collect(
            &self.private_ring(),
            &self.private,
            &rw.fallback(),
            &self.shared,
        )
    }

    /// Chains the backend owns.
    pub(crate) fn in_flight(&self) -> u16 {
        self.shadow.lock().in_flight()
    }

    /// Chains the backend owns that it only reads.
    pub(crate) fn readonly_in_flight(&self) -> u16 {
        self.shadow.lock().readonly_in_flight()
    }

    /// Completes everything outstanding with errors (`0xff` in every
    /// device-writable buffer); the number completed.
    pub(crate) fn fail_all(&self, rw: &ShmemWindow) -> u16 {
        self.shadow
            .lock()
            .fail_all(&self.private_ring(), &self.private, &mut |addr, len| {
                if let (Ok(a), Ok(l)) = (usize::try_from(addr), usize::try_from(len)) {
                    rw.fill(a, l, 0xff);
                }
            })
    }

    /// Runs the driver's callback for completed buffers, in the context of
    /// a device interrupt handler (local interrupts off; on PREEMPT_RT, a
    /// threaded handler's: bottom halves off).
    pub(crate) fn interrupt(&self) {
        // SAFETY: `vq` is live (type invariant).
        unsafe { ffi::vdev_remote_vring_interrupt(self.vq) };
    }
}
