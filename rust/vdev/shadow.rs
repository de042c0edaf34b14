// SPDX-License-Identifier: GPL-2.0

//! Shadow split rings: the frontend's defence against an untrusted backend.
//!
//! The kernel's virtio drivers run on a *private* split ring that only this
//! kernel can write. The backend works on a *shared* copy of it in the
//! ivshmem R/W section. The frontend moves work between the two:
//!
//! - [`Shadow::publish`] (on every kick) copies the chains the driver made
//!   available from the private ring to the shared one, remembering which
//!   heads are in flight and how many bytes each may receive;
//! - [`Shadow::collect`] (on every interrupt) copies used entries back, but
//!   only entries that name a head in flight, with a length no larger than
//!   that chain's device-writable bytes, and never more entries than were in
//!   flight. Anything else is a [`ShadowError`] and the device is failed;
//! - [`Shadow::fail_all`] completes every outstanding chain itself (used
//!   length 0, device-writable buffers filled with `0xff`, which every
//!   virtio status byte reads as an error), so the drivers' requests end
//!   with errors instead of waiting forever on a dead backend. virtio-blk
//!   has no request timeout, and `virtio_break_device` alone would strand
//!   in-flight requests.
//!
//! Nothing the backend writes is ever used as an index into private memory
//! without a check, and the private ring is never readable by the backend.
//! Both rings use the virtio 1.x little-endian split layout.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::super::shmem::{Fallback, SharedMemory};

/// `VRING_DESC_F_NEXT`.
pub const DESC_F_NEXT: u16 = 1;
/// `VRING_DESC_F_WRITE`.
pub const DESC_F_WRITE: u16 = 2;
/// `VRING_DESC_F_INDIRECT`.
pub const DESC_F_INDIRECT: u16 = 4;
/// `VRING_USED_F_NO_NOTIFY`.
pub const USED_F_NO_NOTIFY: u16 = 1;
/// Largest queue this code handles (virtio's split-ring maximum).
pub const MAX_QUEUE_SIZE: u16 = 32768;

// The virtio 1.x split-ring layout (virtio 1.2, section 2.7), every field
// little-endian:
//
// - descriptor table: `num` x `struct virtq_desc { le64 addr; le32 len;
//   le16 flags; le16 next; }`, 16-byte aligned;
// - driver area: `struct virtq_avail { le16 flags; le16 idx; le16
//   ring[num]; le16 used_event; }`, 2-byte aligned;
// - device area: `struct virtq_used { le16 flags; le16 idx; struct
//   virtq_used_elem { le32 id; le32 len; } ring[num]; le16 avail_event; }`,
//   4-byte aligned.

/// Size of one descriptor (`struct virtq_desc`).
pub const VIRTQ_DESCRIPTOR_SIZE: usize = 16;
/// Offset of `addr` (le64) in a descriptor.
pub const VIRTQ_DESC_ADDR_OFFSET: usize = 0;
/// Offset of `len` (le32) in a descriptor.
pub const VIRTQ_DESC_LEN_OFFSET: usize = 8;
/// Offset of `flags` (le16) in a descriptor.
pub const VIRTQ_DESC_FLAGS_OFFSET: usize = 12;
/// Offset of `next` (le16) in a descriptor.
pub const VIRTQ_DESC_NEXT_OFFSET: usize = 14;
/// Alignment of the descriptor table.
pub const VIRTQ_DESC_ALIGN: usize = 16;

/// Offset of `idx` (le16) in both the avail and the used ring (after the
/// le16 `flags`).
pub const VIRTQ_RING_IDX_OFFSET: usize = 2;

/// Size of the avail ring's `flags` and `idx`, before `ring[]`.
pub const VIRTQ_AVAIL_RING_HEADER_SIZE: usize = 4;
/// Size of one avail ring entry (a le16 head index).
pub const VIRTQ_AVAIL_ELEMENT_SIZE: usize = 2;
/// Size of the avail ring without its entries: the header and the trailing
/// le16 `used_event`.
pub const VIRTQ_AVAIL_RING_META_SIZE: usize = VIRTQ_AVAIL_RING_HEADER_SIZE + 2;
/// Alignment of the avail ring.
pub const VIRTQ_AVAIL_ALIGN: usize = 2;

/// Size of the used ring's `flags` and `idx`, before `ring[]`.
pub const VIRTQ_USED_RING_HEADER_SIZE: usize = 4;
/// Size of one used ring entry (`struct virtq_used_elem`).
pub const VIRTQ_USED_ELEMENT_SIZE: usize = 8;
/// Offset of `id` (le32) in a used ring entry.
pub const VIRTQ_USED_ELEM_ID_OFFSET: usize = 0;
/// Offset of `len` (le32) in a used ring entry.
pub const VIRTQ_USED_ELEM_LEN_OFFSET: usize = 4;
/// Size of the used ring without its entries: the header and the trailing
/// le16 `avail_event`.
pub const VIRTQ_USED_RING_META_SIZE: usize = VIRTQ_USED_RING_HEADER_SIZE + 2;
/// Alignment of the used ring.
pub const VIRTQ_USED_ALIGN: usize = 4;

/// Bytes of the descriptor table of a ring of `num` entries.
pub const fn desc_table_size(num: u16) -> usize {
    VIRTQ_DESCRIPTOR_SIZE * num as usize
}

/// Bytes of the avail ring of a ring of `num` entries.
pub const fn avail_ring_size(num: u16) -> usize {
    VIRTQ_AVAIL_RING_META_SIZE + VIRTQ_AVAIL_ELEMENT_SIZE * num as usize
}

/// Bytes of the used ring of a ring of `num` entries.
pub const fn used_ring_size(num: u16) -> usize {
    VIRTQ_USED_RING_META_SIZE + VIRTQ_USED_ELEMENT_SIZE * num as usize
}

/// Address of descriptor `i` of the table at `table`.
pub const fn desc_entry(table: usize, i: u16) -> usize {
    table + VIRTQ_DESCRIPTOR_SIZE * i as usize
}

/// Address of entry `slot` of the avail ring at `avail`.
pub const fn avail_entry(avail: usize, slot: usize) -> usize {
    avail + VIRTQ_AVAIL_RING_HEADER_SIZE + VIRTQ_AVAIL_ELEMENT_SIZE * slot
}

/// Address of entry `slot` of the used ring at `used`.
pub const fn used_entry(used: usize, slot: usize) -> usize {
    used + VIRTQ_USED_RING_HEADER_SIZE + VIRTQ_USED_ELEMENT_SIZE * slot
}

/// `x` rounded up to `align` (a power of two).
const fn align_up(x: usize, align: usize) -> usize {
    (x + align - 1) & !(align - 1)
}

/// Where the three parts of a split ring are, as byte offsets of the
/// memory holding it (section offsets for the shared ring, offsets into
/// the vring allocation for the private one).
///
/// Every offset the engine derives from these stays inside the ring's
/// [`split_size`] bytes, checked when the queue was set up; so the ring
/// accesses have no error path and go through a [`Fallback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAddrs {
    /// Descriptor table (16 bytes per entry).
    pub desc: usize,
    /// Driver area: flags, idx, ring[num] of u16.
    pub avail: usize,
    /// Device area: flags, idx, ring[num] of (u32 id, u32 len).
    pub used: usize,
}

/// Sizes of a split ring of `num` entries laid out contiguously by
/// [`split_layout`].
pub const fn split_size(num: u16) -> usize {
    split_layout(0, num).used + used_ring_size(num)
}

/// The contiguous layout of a split ring of `num` entries at `base` (desc
/// table, avail ring, then the used ring 4-byte aligned).
pub const fn split_layout(base: usize, num: u16) -> RingAddrs {
    let avail_end = desc_table_size(num) + avail_ring_size(num);
    RingAddrs {
        desc: base,
        avail: base + desc_table_size(num),
        used: base + align_up(avail_end, VIRTQ_USED_ALIGN),
    }
}

/// Bookkeeping for one head in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// The backend owns this chain.
    pub in_flight: bool,
    /// Bytes the backend may write into the chain.
    pub writable: u32,
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowError {
    /// The backend's used index moved by more entries than were in flight.
    UsedIndex {
        /// Entries the index claims.
        claimed: u16,
        /// Entries that were in flight.
        in_flight: u16,
    },
    /// A used entry names a head that is out of range or not in flight.
    UsedId(u32),
    /// A used entry's length exceeds the chain's writable bytes.
    UsedLen {
        /// The head.
        id: u32,
        /// The length written.
        len: u32,
        /// The chain's writable bytes.
        writable: u32,
    },
    /// The private ring is inconsistent (a driver or transport bug, not the
    /// backend): bad head, loop, indirect descriptor, buffer outside the pool.
    Private(&'static str),
}

impl core::fmt::Display for ShadowError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ShadowError::UsedIndex { claimed, in_flight } => write!(
                f,
                "backend used index advanced by {claimed} with {in_flight} buffers in flight"
            ),
            ShadowError::UsedId(id) => {
                write!(f, "backend completed head {id}, which is not in flight")
            }
            ShadowError::UsedLen { id, len, writable } => write!(
                f,
                "backend completed head {id} with length {len} > {writable} writable bytes"
            ),
            ShadowError::Private(what) => write!(f, "private ring: {what}"),
        }
    }
}

/// One queue's shadow state. `H` stores one [`Head`] per ring entry.
pub struct Shadow<H> {
    num: u16,
    heads: H,
    /// Private avail index up to which chains were published.
    next_avail: u16,
    /// Shared used index up to which entries were taken.
    shared_used: u16,
    /// Private used index written so far.
    private_used: u16,
    in_flight: u16,
    /// Chains in flight without device-writable buffers (e.g. console
    /// output), which some drivers wait for by spinning.
    readonly_in_flight: u16,
}

/// One descriptor.
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

fn load_desc<M: SharedMemory + ?Sized>(m: &Fallback<'_, M>, table: usize, i: u16) -> Desc {
    let at = desc_entry(table, i);
    Desc {
        addr: m.load(at + VIRTQ_DESC_ADDR_OFFSET, Relaxed),
        len: m.load(at + VIRTQ_DESC_LEN_OFFSET, Relaxed),
        flags: m.load(at + VIRTQ_DESC_FLAGS_OFFSET, Relaxed),
        next: m.load(at + VIRTQ_DESC_NEXT_OFFSET, Relaxed),
    }
}

fn store_desc<M: SharedMemory + ?Sized>(m: &Fallback<'_, M>, table: usize, i: u16, d: Desc) {
    let at = desc_entry(table, i);
    m.store(at + VIRTQ_DESC_ADDR_OFFSET, d.addr, Relaxed);
    m.store(at + VIRTQ_DESC_LEN_OFFSET, d.len, Relaxed);
    m.store(at + VIRTQ_DESC_FLAGS_OFFSET, d.flags, Relaxed);
    m.store(at + VIRTQ_DESC_NEXT_OFFSET, d.next, Relaxed);
}

/// The `idx` of the avail or used ring at `ring`.
fn load_idx<M: SharedMemory + ?Sized>(m: &Fallback<'_, M>, ring: usize) -> u16 {
    m.load(ring + VIRTQ_RING_IDX_OFFSET, Relaxed)
}

/// Publishes `idx` for the avail or used ring at `ring`, after every
/// earlier store.
fn publish_idx<M: SharedMemory + ?Sized>(m: &Fallback<'_, M>, ring: usize, idx: u16) {
    m.fence(Release);
    m.store(ring + VIRTQ_RING_IDX_OFFSET, idx, Relaxed);
}

impl<H: core::ops::DerefMut<Target = [Head]>> Shadow<H> {
    /// A shadow for a ring of `num` entries (a power of two); `heads` must
    /// hold `num` entries (they are reset).
    pub fn new(num: u16, mut heads: H) -> Option<Self> {
        if !num.is_power_of_two() || num > MAX_QUEUE_SIZE || heads.len() < num as usize {
            return None;
        }
        heads.iter_mut().for_each(|h| *h = Head::default());
        Some(Shadow {
            num,
            heads,
            next_avail: 0,
            shared_used: 0,
            private_used: 0,
            in_flight: 0,
            readonly_in_flight: 0,
        })
    }

    /// Entries in the ring.
    pub fn num(&self) -> u16 {
        self.num
    }

    /// Chains the backend owns.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Chains the backend owns that have no device-writable buffer.
    pub fn readonly_in_flight(&self) -> u16 {
        self.readonly_in_flight
    }

    fn slot(&self, idx: u16) -> usize {
        (idx & (self.num - 1)) as usize
    }

    /// Walks the private chain at `head`, calling `each` for every
    /// descriptor; returns the chain's writable bytes.
    fn walk<P: SharedMemory + ?Sized>(
        &self,
        pm: &Fallback<'_, P>,
        pr: &RingAddrs,
        head: u16,
        mut each: impl FnMut(u16, Desc) -> Result<(), ShadowError>,
    ) -> Result<u32, ShadowError> {
        let mut i = head;
        let mut writable: u32 = 0;
        for _ in 0..self.num {
            let d = load_desc(pm, pr.desc, i);
            if d.flags & DESC_F_INDIRECT != 0 {
                return Err(ShadowError::Private("indirect descriptor"));
            }
            if d.flags & DESC_F_WRITE != 0 {
                writable = writable
                    .checked_add(d.len)
                    .ok_or(ShadowError::Private("chain too long"))?;
            }
            each(i, d)?;
            if d.flags & DESC_F_NEXT == 0 {
                return Ok(writable);
            }
            if d.next >= self.num {
                return Err(ShadowError::Private("next out of range"));
            }
            i = d.next;
        }
        Err(ShadowError::Private("descriptor loop"))
    }

    /// Copies the chains the driver made available since the last call from
    /// the private ring (`pm`, `pr`) to the shared ring (`sm`, `sr`).
    /// `buffer_ok(addr, len)` vets every buffer address (it must be a
    /// bounce buffer of this device). Returns the number of chains
    /// published (the caller kicks the backend if it is non-zero).
    pub fn publish<P: SharedMemory + ?Sized, S: SharedMemory + ?Sized>(
        &mut self,
        pm: &Fallback<'_, P>,
        pr: &RingAddrs,
        sm: &Fallback<'_, S>,
        sr: &RingAddrs,
        buffer_ok: &dyn Fn(u64, u32) -> bool,
    ) -> Result<u16, ShadowError> {
        let avail_idx = load_idx(pm, pr.avail);
        pm.fence(Acquire);
        let n = avail_idx.wrapping_sub(self.next_avail);
        if n > self.num - self.in_flight {
            return Err(ShadowError::Private("avail index ahead of free entries"));
        }
        let start = self.next_avail;
        for k in 0..n {
            let idx = start.wrapping_add(k);
            let slot = self.slot(idx);
            let head: u16 = pm.load(avail_entry(pr.avail, slot), Relaxed);
            if head >= self.num || self.heads[head as usize].in_flight {
                return Err(ShadowError::Private("bad head in avail ring"));
            }
            let writable = self.walk(pm, pr, head, |i, d| {
                if !buffer_ok(d.addr, d.len) {
                    return Err(ShadowError::Private("buffer outside the bounce pool"));
                }
                store_desc(sm, sr.desc, i, d);
                Ok(())
            })?;
            self.heads[head as usize] = Head {
                in_flight: true,
                writable,
            };
            self.in_flight += 1;
            if writable == 0 {
                self.readonly_in_flight += 1;
            }
            sm.store(avail_entry(sr.avail, slot), head, Relaxed);
            // Published one by one so an error later leaves a consistent
            // shared ring.
            self.next_avail = idx.wrapping_add(1);
        }
        if n > 0 {
            publish_idx(sm, sr.avail, self.next_avail);
        }
        Ok(n)
    }

    /// Copies what the backend completed from the shared ring to the
    /// private one, validating every entry. Returns the number of entries
    /// delivered; the caller then runs the driver's callback.
    pub fn collect<P: SharedMemory + ?Sized, S: SharedMemory + ?Sized>(
        &mut self,
        pm: &Fallback<'_, P>,
        pr: &RingAddrs,
        sm: &Fallback<'_, S>,
        sr: &RingAddrs,
    ) -> Result<u16, ShadowError> {
        let used_idx = load_idx(sm, sr.used);
        sm.fence(Acquire);
        let claimed = used_idx.wrapping_sub(self.shared_used);
        if claimed > self.in_flight {
            return Err(ShadowError::UsedIndex {
                claimed,
                in_flight: self.in_flight,
            });
        }
        let mut delivered = 0;
        let mut result = Ok(());
        for _ in 0..claimed {
            let slot = self.slot(self.shared_used);
            let id: u32 = sm.load(
                used_entry(sr.used, slot) + VIRTQ_USED_ELEM_ID_OFFSET,
                Relaxed,
            );
            let len: u32 = sm.load(
                used_entry(sr.used, slot) + VIRTQ_USED_ELEM_LEN_OFFSET,
                Relaxed,
            );
            let head = match self.heads.get(id as usize) {
                Some(h) if id < u32::from(self.num) && h.in_flight => *h,
                _ => {
                    result = Err(ShadowError::UsedId(id));
                    break;
                }
            };
            if len > head.writable {
                result = Err(ShadowError::UsedLen {
                    id,
                    len,
                    writable: head.writable,
                });
                break;
            }
            self.push_used(pm, pr, id, len);
            self.shared_used = self.shared_used.wrapping_add(1);
            delivered += 1;
        }
        if delivered > 0 {
            publish_idx(pm, pr.used, self.private_used);
        }
        result.map(|()| delivered)
    }

    fn push_used<P: SharedMemory + ?Sized>(
        &mut self,
        pm: &Fallback<'_, P>,
        pr: &RingAddrs,
        id: u32,
        len: u32,
    ) {
        let slot = self.slot(self.private_used);
        pm.store(
            used_entry(pr.used, slot) + VIRTQ_USED_ELEM_ID_OFFSET,
            id,
            Relaxed,
        );
        pm.store(
            used_entry(pr.used, slot) + VIRTQ_USED_ELEM_LEN_OFFSET,
            len,
            Relaxed,
        );
        self.private_used = self.private_used.wrapping_add(1);
        self.not_in_flight(id);
    }

    /// Head `id` is no longer the backend's.
    fn not_in_flight(&mut self, id: u32) {
        if let Some(h) = self.heads.get_mut(id as usize) {
            if h.in_flight {
                h.in_flight = false;
                self.in_flight -= 1;
                if h.writable == 0 {
                    self.readonly_in_flight -= 1;
                }
            }
        }
    }

    /// Completes every request the driver handed over, published or not,
    /// with length 0, after `fill(addr, len)` was called on each
    /// device-writable buffer. Returns the number of chains completed. Used
    /// once the backend is considered dead; it reads only the private ring.
    ///
    /// Chains with no driver-readable descriptor are not requests but
    /// buffers offered for the device to fill (virtio-net's and
    /// virtio-console's receive queues): a dead device owes them nothing, so
    /// they are taken off the ring and kept, never completed. Completing
    /// them empty would have the driver refill at once and kick, and the
    /// failed device complete the refill at once again: a loop that held a
    /// CPU (an RCU stall) on a failed virtio-net device. The driver gets
    /// them back when the device is torn down (`detach_unused_buf`).
    pub fn fail_all<P: SharedMemory + ?Sized>(
        &mut self,
        pm: &Fallback<'_, P>,
        pr: &RingAddrs,
        fill: &mut dyn FnMut(u64, u32),
    ) -> u16 {
        let mut done = 0;
        let mut fail_chain = |s: &mut Self, head: u16| -> u16 {
            let mut request = false;
            let walked = s.walk(pm, pr, head, |_, d| {
                request |= d.flags & DESC_F_WRITE == 0;
                Ok(())
            });
            if walked.is_ok() && !request {
                s.not_in_flight(u32::from(head));
                return 0;
            }
            // A broken chain (impossible for a private ring) still gets
            // completed; its buffers are just not filled.
            let _ = s.walk(pm, pr, head, |_, d| {
                if d.flags & DESC_F_WRITE != 0 {
                    fill(d.addr, d.len);
                }
                Ok(())
            });
            s.push_used(pm, pr, u32::from(head), 0);
            1
        };
        for head in 0..self.num {
            if self.heads[head as usize].in_flight {
                done += fail_chain(self, head);
            }
        }
        let avail_idx = load_idx(pm, pr.avail);
        pm.fence(Acquire);
        // The avail index goes back when the driver takes buffers back
        // (`virtqueue_detach_unused_buf` lowers it by one per buffer): then
        // there is nothing new, not a whole ring of it.
        let n = match avail_idx.wrapping_sub(self.next_avail) {
            n if n <= self.num => n,
            _ => 0,
        };
        for k in 0..n {
            let slot = self.slot(self.next_avail.wrapping_add(k));
            let head: u16 = pm.load(avail_entry(pr.avail, slot), Relaxed);
            if head < self.num {
                done += fail_chain(self, head);
            }
        }
        self.next_avail = self.next_avail.wrapping_add(n);
        // The shared ring is abandoned: forget what the backend claimed.
        self.shared_used = 0;
        if done > 0 {
            publish_idx(pm, pr.used, self.private_used);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::super::host::TestMemory;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    const NUM: u16 = 8;

    struct Rig {
        pm: TestMemory,
        sm: TestMemory,
        pr: RingAddrs,
        sr: RingAddrs,
        shadow: Shadow<Vec<Head>>,
        avail: u16,
    }

    impl Rig {
        fn new() -> Self {
            Rig {
                pm: TestMemory::new(split_size(NUM)),
                sm: TestMemory::new(0x100 + split_size(NUM)),
                pr: split_layout(0, NUM),
                sr: split_layout(0x100, NUM),
                shadow: Shadow::new(NUM, vec![Head::default(); NUM as usize]).unwrap(),
                avail: 0,
            }
        }
        /// The driver adds a chain of (addr, len, writable) at descriptors
        /// starting at `first`.
        fn add(&mut self, first: u16, bufs: &[(u64, u32, bool)]) {
            for (k, &(addr, len, w)) in bufs.iter().enumerate() {
                let i = first + k as u16;
                let mut flags = if w { DESC_F_WRITE } else { 0 };
                if k + 1 < bufs.len() {
                    flags |= DESC_F_NEXT;
                }
                store_desc(
                    &self.pm.fallback(),
                    self.pr.desc,
                    i,
                    Desc {
                        addr,
                        len,
                        flags,
                        next: i + 1,
                    },
                );
            }
            let pm = self.pm.fallback();
            let slot = (self.avail % NUM) as usize;
            pm.store(avail_entry(self.pr.avail, slot), first, Relaxed);
            self.avail = self.avail.wrapping_add(1);
            publish_idx(&pm, self.pr.avail, self.avail);
        }
        fn publish(&mut self) -> Result<u16, ShadowError> {
            self.shadow.publish(
                &self.pm.fallback(),
                &self.pr,
                &self.sm.fallback(),
                &self.sr,
                &|a, l| a >= 0x1000 && a + u64::from(l) <= 0x100000,
            )
        }
        fn collect(&mut self) -> Result<u16, ShadowError> {
            self.shadow
                .collect(&self.pm.fallback(), &self.pr, &self.sm.fallback(), &self.sr)
        }
        /// The backend completes `id` with `len` at shared used slot `idx`.
        fn complete(&self, idx: u16, id: u32, len: u32) {
            let sm = self.sm.fallback();
            let entry = used_entry(self.sr.used, (idx % NUM) as usize);
            sm.store(entry + VIRTQ_USED_ELEM_ID_OFFSET, id, Relaxed);
            sm.store(entry + VIRTQ_USED_ELEM_LEN_OFFSET, len, Relaxed);
            publish_idx(&sm, self.sr.used, idx.wrapping_add(1));
        }
        fn private_used(&self) -> Vec<(u32, u32)> {
            let pm = self.pm.fallback();
            (0..load_idx(&pm, self.pr.used))
                .map(|i| {
                    let entry = used_entry(self.pr.used, (i % NUM) as usize);
                    (
                        pm.load(entry + VIRTQ_USED_ELEM_ID_OFFSET, Relaxed),
                        pm.load(entry + VIRTQ_USED_ELEM_LEN_OFFSET, Relaxed),
                    )
                })
                .collect()
        }
    }

    #[test]
    fn layout_matches_virtio() {
        // vring_size(256, 4) from the virtio spec: 4096 + 518 -> 4616 (used at
        // 4616 after 4-byte alignment) + 6 + 2048.
        assert_eq!(split_size(256), 4616 + 6 + 8 * 256);
        assert_eq!(split_layout(0, 256).avail, 4096);
    }

    #[test]
    fn ring_parts_match_virtio() {
        // Sizes of the three parts from the virtio 1.x spec (2.7.5-2.7.8).
        assert_eq!(desc_table_size(256), 16 * 256);
        assert_eq!(avail_ring_size(256), 6 + 2 * 256);
        assert_eq!(used_ring_size(256), 6 + 8 * 256);
        assert_eq!(avail_entry(0x100, 3), 0x100 + 4 + 2 * 3);
        assert_eq!(
            used_entry(0x100, 3) + VIRTQ_USED_ELEM_LEN_OFFSET,
            0x100 + 8 + 8 * 3
        );
        assert_eq!(
            desc_entry(0x100, 3) + VIRTQ_DESC_NEXT_OFFSET,
            0x100 + 16 * 3 + 14
        );
        assert_eq!(split_layout(0, 256).used % VIRTQ_USED_ALIGN, 0);
    }

    #[test]
    fn publish_then_collect() {
        let mut r = Rig::new();
        r.add(
            0,
            &[(0x1000, 16, false), (0x2000, 512, true), (0x3000, 1, true)],
        );
        assert_eq!(r.publish(), Ok(1));
        // The shared ring got the chain and the avail entry.
        let sm = r.sm.fallback();
        assert_eq!(load_idx(&sm, r.sr.avail), 1);
        assert_eq!(sm.load::<u16>(avail_entry(r.sr.avail, 0), Relaxed), 0);
        assert_eq!(load_desc(&r.sm.fallback(), r.sr.desc, 1).addr, 0x2000);
        assert_eq!(r.shadow.in_flight(), 1);
        assert_eq!(r.collect(), Ok(0));
        r.complete(0, 0, 513);
        assert_eq!(r.collect(), Ok(1));
        assert_eq!(r.private_used(), vec![(0, 513)]);
        assert_eq!(r.shadow.in_flight(), 0);
    }

    #[test]
    fn read_only_chains_are_counted() {
        let mut r = Rig::new();
        r.add(0, &[(0x1000, 16, false)]);
        r.add(1, &[(0x2000, 16, true)]);
        r.publish().unwrap();
        assert_eq!(
            (r.shadow.in_flight(), r.shadow.readonly_in_flight()),
            (2, 1)
        );
        r.complete(0, 0, 0);
        r.collect().unwrap();
        assert_eq!(
            (r.shadow.in_flight(), r.shadow.readonly_in_flight()),
            (1, 0)
        );
        r.shadow.fail_all(&r.pm.fallback(), &r.pr, &mut |_, _| {});
        assert_eq!(
            (r.shadow.in_flight(), r.shadow.readonly_in_flight()),
            (0, 0)
        );
    }

    #[test]
    fn used_index_beyond_in_flight_is_refused() {
        let mut r = Rig::new();
        r.add(0, &[(0x1000, 16, true)]);
        r.publish().unwrap();
        publish_idx(&r.sm.fallback(), r.sr.used, 1000);
        assert_eq!(
            r.collect(),
            Err(ShadowError::UsedIndex {
                claimed: 1000,
                in_flight: 1
            })
        );
        assert!(r.private_used().is_empty());
    }

    #[test]
    fn bad_ids_and_lengths_are_refused() {
        let mut r = Rig::new();
        r.add(0, &[(0x1000, 16, true)]);
        r.add(1, &[(0x2000, 16, false)]);
        r.publish().unwrap();
        r.complete(0, 5, 0); // never made available
        assert_eq!(r.collect(), Err(ShadowError::UsedId(5)));
        r.complete(0, 0xffff_ffff, 0);
        assert_eq!(r.collect(), Err(ShadowError::UsedId(0xffff_ffff)));
        r.complete(0, 1, 1); // read-only chain: 0 writable bytes
        assert_eq!(
            r.collect(),
            Err(ShadowError::UsedLen {
                id: 1,
                len: 1,
                writable: 0
            })
        );
        r.complete(0, 0, 16);
        assert_eq!(r.collect(), Ok(1));
        // Completing the same head twice is refused too.
        r.complete(1, 0, 16);
        assert_eq!(r.collect(), Err(ShadowError::UsedId(0)));
        assert_eq!(r.private_used(), vec![(0, 16)]);
    }

    #[test]
    fn private_ring_errors() {
        let mut r = Rig::new();
        r.add(0, &[(0x10, 16, false)]); // outside the pool
        assert_eq!(
            r.publish(),
            Err(ShadowError::Private("buffer outside the bounce pool"))
        );
        let mut r = Rig::new();
        store_desc(
            &r.pm.fallback(),
            r.pr.desc,
            0,
            Desc {
                addr: 0x1000,
                len: 1,
                flags: DESC_F_NEXT,
                next: 0,
            },
        );
        r.pm.fallback()
            .store(avail_entry(r.pr.avail, 0), 0u16, Relaxed);
        publish_idx(&r.pm.fallback(), r.pr.avail, 1);
        assert_eq!(r.publish(), Err(ShadowError::Private("descriptor loop")));
        let mut r = Rig::new();
        publish_idx(&r.pm.fallback(), r.pr.avail, NUM + 1);
        assert!(r.publish().is_err());
    }

    #[test]
    fn fail_all_completes_published_and_pending_chains() {
        let mut r = Rig::new();
        r.add(0, &[(0x1000, 16, false), (0x2000, 4, true)]);
        r.add(2, &[(0x3000, 8, true)]);
        r.publish().unwrap();
        r.add(3, &[(0x4000, 2, false), (0x4100, 2, true)]); // not published yet
        r.add(5, &[(0x5000, 8, true)]); // not published, receive-only
        let mut filled = Vec::new();
        assert_eq!(
            r.shadow
                .fail_all(&r.pm.fallback(), &r.pr, &mut |a, l| filled.push((a, l))),
            2
        );
        // Requests (a driver-readable part) complete with their writable
        // buffers filled; receive-only chains (2, 5) are kept, not filled.
        filled.sort();
        assert_eq!(filled, vec![(0x2000, 4), (0x4100, 2)]);
        let mut used = r.private_used();
        used.sort();
        assert_eq!(used, vec![(0, 0), (3, 0)]);
        assert_eq!(r.shadow.in_flight(), 0);
        // Nothing is left to fail: a second pass (the next kick of a failed
        // device) completes nothing, so the driver has nothing to refill.
        assert_eq!(
            r.shadow.fail_all(&r.pm.fallback(), &r.pr, &mut |_, _| {}),
            0
        );
        r.add(6, &[(0x6000, 8, true)]); // a refill after the failure
        assert_eq!(
            r.shadow.fail_all(&r.pm.fallback(), &r.pr, &mut |_, _| {}),
            0
        );
        assert_eq!(r.private_used().len(), 2);
    }

    #[test]
    fn fail_all_after_the_driver_took_kept_buffers_back_completes_nothing() {
        let mut r = Rig::new();
        r.add(0, &[(0x1000, 16, false), (0x2000, 4, true)]);
        r.add(2, &[(0x3000, 8, true)]);
        r.add(4, &[(0x4000, 8, true)]);
        r.publish().unwrap();
        assert_eq!(
            r.shadow.fail_all(&r.pm.fallback(), &r.pr, &mut |_, _| {}),
            1
        );
        // The driver detaches the two kept receive buffers at teardown,
        // lowering its avail index once for each.
        let avail = load_idx(&r.pm.fallback(), r.pr.avail);
        publish_idx(&r.pm.fallback(), r.pr.avail, avail.wrapping_sub(2));
        // A late fail pass finds nothing: no stale avail entry (head 0's
        // request is still in slot 0) is completed a second time.
        let mut filled = 0;
        assert_eq!(
            r.shadow
                .fail_all(&r.pm.fallback(), &r.pr, &mut |_, _| filled += 1),
            0
        );
        assert_eq!(filled, 0);
        assert_eq!(r.private_used(), vec![(0, 0)]);
    }

    #[test]
    fn wraparound_of_indices() {
        let mut r = Rig::new();
        for round in 0..70_000u32 {
            let head = (round % u32::from(NUM)) as u16;
            r.add(head, &[(0x1000 + u64::from(head) * 0x100, 64, true)]);
            assert_eq!(r.publish(), Ok(1));
            // CAST: the backend's used index wraps like the avail index.
            r.complete(round as u16, u32::from(head), 64);
            assert_eq!(r.collect(), Ok(1), "round {round}");
        }
    }

    #[test]
    fn garbage_from_the_backend_never_delivers_foreign_heads() {
        let mut s = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..2000 {
            let mut r = Rig::new();
            let published = 1 + (next() % u64::from(NUM)) as u16;
            for h in 0..published {
                r.add(h, &[(0x1000, 32, true)]);
            }
            r.publish().unwrap();
            // The backend scribbles over the whole used area.
            for off in (0..used_ring_size(NUM)).step_by(2) {
                // CAST: random 16-bit words.
                r.sm.fallback()
                    .store(r.sr.used + off, next() as u16, Relaxed);
            }
            let _ = r.collect();
            for (id, len) in r.private_used() {
                assert!(id < u32::from(published), "foreign head {id}");
                assert!(len <= 32);
            }
            assert!(r.private_used().len() <= published as usize);
        }
    }
}
