// SPDX-License-Identifier: GPL-2.0

//! Message channels between cells: a lock-free single-producer,
//! single-consumer ring of messages in shared memory, one per direction.
//!
//! Each ring has two blocks, each written by one side only, so a ring can
//! live where each peer may write only its own memory (ivshmem 2.0 and
//! lincell's v1 layout: the producer block in the sender's output section,
//! the consumer block in the receiver's), or both in the R/W section:
//!
//! ```text
//! producer block (written by the sender; 8-byte aligned)
//!   0x00 magic "LCMQ"   0x04 version (1)   0x08 slot_size   0x0c slots
//!   0x10 epoch (changes each time the sender creates the ring, never 0)
//!   0x14 head  (messages published, free-running)
//!   0x18 flags (bit 0: the sender waits for space and wants a doorbell)
//!   0x40 slot[0] ... slot[slots - 1], slot_size bytes each:
//!        0x00 len (payload bytes)   0x04 reserved (0)   0x08 payload
//! consumer block (written by the receiver; 8-byte aligned, 64 bytes)
//!   0x00 magic "LCMC"   0x04 epoch (the producer epoch it attached to)
//!   0x08 tail  (messages consumed, free-running)
//!   0x0c flags (bit 0: the receiver sleeps and wants a doorbell)
//! ```
//!
//! Every field is a little-endian `u32`. `slots` is a power of two
//! (1..=65536), `slot_size` a multiple of 8 (16..=65536). The byte-exact
//! layout is pinned by `rust/tests/wire_layout.rs` and, for C, `include/uapi/lincell/channel.h`
//! (checked against this file by `rust/tests/abi.rs`).
//!
//! Everything read from the other side is untrusted: a `head` or `tail`
//! more than `slots` apart, a length beyond the slot, a header that changes
//! under the receiver is a [`ChannelError`], never an out-of-bounds access
//! or a panic. Notifications are suppressed: the sender is told to ring the
//! receiver only if the receiver said it sleeps, and the receiver is told
//! to ring the sender only if the sender waits for space (the flag is set,
//! then the ring re-checked, so no wake-up is lost).
//!
//! Waiting (spin, block on a doorbell, spin-then-block) is the caller's
//! (`lincell`'s channel endpoints); this module only says when to ring.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::shmem::{AccessError, SharedMemory};

/// "LCMQ": a valid producer block.
pub const PRODUCER_MAGIC: u32 = u32::from_le_bytes(*b"LCMQ");
/// "LCMC": a valid consumer block.
pub const CONSUMER_MAGIC: u32 = u32::from_le_bytes(*b"LCMC");
/// Layout version.
pub const VERSION: u32 = 1;
/// Bytes of the producer block before the first slot.
pub const PRODUCER_HEADER_SIZE: usize = 0x40;
/// Bytes of the consumer block.
pub const CONSUMER_BLOCK_SIZE: usize = 0x40;
/// Bytes of a slot before its payload.
pub const SLOT_HEADER_SIZE: usize = 8;
/// Alignment of both blocks.
pub const BLOCK_ALIGN: usize = 8;
/// Largest `slots`.
pub const MAX_SLOTS: u32 = 65536;
/// Smallest and largest `slot_size`.
pub const SLOT_SIZE_RANGE: (u32, u32) = (16, 65536);
/// `flags` bit 0 of either block: this side waits and wants a doorbell.
pub const FLAG_WAITING: u32 = 1;

/// Field offsets.
pub mod off {
    /// Producer block: `PRODUCER_MAGIC`.
    pub const P_MAGIC: usize = 0x00;
    /// Producer block: layout version.
    pub const P_VERSION: usize = 0x04;
    /// Producer block: bytes per slot.
    pub const P_SLOT_SIZE: usize = 0x08;
    /// Producer block: number of slots.
    pub const P_SLOTS: usize = 0x0c;
    /// Producer block: ring generation.
    pub const P_EPOCH: usize = 0x10;
    /// Producer block: messages published.
    pub const P_HEAD: usize = 0x14;
    /// Producer block: sender flags.
    pub const P_FLAGS: usize = 0x18;
    /// Slot: payload length.
    pub const S_LEN: usize = 0x00;
    /// Slot: payload.
    pub const S_PAYLOAD: usize = 0x08;
    /// Consumer block: `CONSUMER_MAGIC`.
    pub const C_MAGIC: usize = 0x00;
    /// Consumer block: the producer epoch attached to.
    pub const C_EPOCH: usize = 0x04;
    /// Consumer block: messages consumed.
    pub const C_TAIL: usize = 0x08;
    /// Consumer block: receiver flags.
    pub const C_FLAGS: usize = 0x0c;
}

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelError {
    /// `slots` or `slot_size` out of range.
    BadGeometry {
        /// Slots asked for.
        slots: u32,
        /// Slot size asked for.
        slot_size: u32,
    },
    /// A block does not fit or is misaligned in the memory given.
    Placement {
        /// Where the block starts.
        offset: usize,
        /// Bytes it needs.
        size: usize,
        /// Bytes of the memory.
        len: usize,
    },
    /// No valid producer block (yet): magic or version wrong.
    NotReady,
    /// The sender created the ring again (or vanished): re-attach.
    Reset,
    /// The other side wrote something impossible.
    Corrupt {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// The ring is full (try again when the receiver catches up).
    Full,
    /// No message is waiting.
    Empty,
    /// The message is longer than a slot holds.
    TooLong {
        /// Its length.
        len: usize,
        /// What a slot holds.
        max: usize,
    },
    /// The receive buffer is shorter than the message (still queued).
    BufferTooSmall {
        /// The message's length.
        len: usize,
    },
    /// A shared-memory access failed.
    Access(AccessError),
}

impl From<AccessError> for ChannelError {
    fn from(e: AccessError) -> Self {
        ChannelError::Access(e)
    }
}

impl core::fmt::Display for ChannelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChannelError::BadGeometry { slots, slot_size } => write!(
                f,
                "bad ring geometry: {slots} slots of {slot_size} bytes (slots: a power of two up to {MAX_SLOTS}; slot size: a multiple of 8 in {}..={})",
                SLOT_SIZE_RANGE.0, SLOT_SIZE_RANGE.1
            ),
            ChannelError::Placement { offset, size, len } => write!(
                f,
                "a {size}-byte block at offset {offset:#x} does not fit (8-byte aligned) in {len} bytes"
            ),
            ChannelError::NotReady => write!(f, "no sender has created the ring"),
            ChannelError::Reset => write!(f, "the sender created the ring again"),
            ChannelError::Corrupt { field, value } => {
                write!(f, "the peer wrote an impossible {field} ({value:#x})")
            }
            ChannelError::Full => write!(f, "the ring is full"),
            ChannelError::Empty => write!(f, "no message is waiting"),
            ChannelError::TooLong { len, max } => {
                write!(f, "a {len}-byte message does not fit a {max}-byte slot")
            }
            ChannelError::BufferTooSmall { len } => {
                write!(f, "the next message has {len} bytes, more than the buffer")
            }
            ChannelError::Access(e) => write!(f, "shared memory: {e:?}"),
        }
    }
}

/// A ring's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    slots: u32,
    slot_size: u32,
}

impl Geometry {
    /// `slots` slots of `slot_size` bytes (header included).
    pub fn new(slots: u32, slot_size: u32) -> Result<Self, ChannelError> {
        let ok = slots.is_power_of_two()
            && slots <= MAX_SLOTS
            && slot_size % 8 == 0
            && (SLOT_SIZE_RANGE.0..=SLOT_SIZE_RANGE.1).contains(&slot_size);
        if ok {
            Ok(Geometry { slots, slot_size })
        } else {
            Err(ChannelError::BadGeometry { slots, slot_size })
        }
    }

    /// Slots in the ring.
    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> u32 {
        self.slot_size
    }

    /// The longest message.
    pub fn max_payload(&self) -> usize {
        self.slot_size as usize - SLOT_HEADER_SIZE
    }

    /// Bytes of the producer block.
    pub fn producer_size(&self) -> usize {
        PRODUCER_HEADER_SIZE + self.slots as usize * self.slot_size as usize
    }

    fn slot(&self, index: u32) -> usize {
        PRODUCER_HEADER_SIZE + (index & (self.slots - 1)) as usize * self.slot_size as usize
    }
}

fn place<M: SharedMemory + ?Sized>(m: &M, offset: usize, size: usize) -> Result<(), ChannelError> {
    let fits = offset % BLOCK_ALIGN == 0 && offset.checked_add(size).is_some_and(|e| e <= m.len());
    if fits {
        Ok(())
    } else {
        Err(ChannelError::Placement {
            offset,
            size,
            len: m.len(),
        })
    }
}

/// Copies `data` to `at` in `m`, a word at a time (then bytes).
fn copy_to<M: SharedMemory + ?Sized>(m: &M, at: usize, data: &[u8]) -> Result<(), AccessError> {
    let mut chunks = data.chunks_exact(4);
    let mut o = at;
    for c in &mut chunks {
        m.store(o, u32::from_le_bytes([c[0], c[1], c[2], c[3]]), Relaxed)?;
        o += 4;
    }
    for &b in chunks.remainder() {
        m.store(o, b, Relaxed)?;
        o += 1;
    }
    Ok(())
}

/// Copies `out.len()` bytes from `at` in `m` into `out`.
fn copy_from<M: SharedMemory + ?Sized>(
    m: &M,
    at: usize,
    out: &mut [u8],
) -> Result<(), AccessError> {
    let mut chunks = out.chunks_exact_mut(4);
    let mut o = at;
    for c in &mut chunks {
        c.copy_from_slice(&m.load::<u32>(o, Relaxed)?.to_le_bytes());
        o += 4;
    }
    for b in chunks.into_remainder() {
        *b = m.load(o, Relaxed)?;
        o += 1;
    }
    Ok(())
}

/// What [`Producer::try_send`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The receiver sleeps: ring its doorbell.
    pub notify: bool,
}

/// The sending side of one ring. `P` is where the producer block is (this
/// side writes it), `C` where the consumer block is (this side only reads
/// it).
pub struct Producer<'a, P: SharedMemory + ?Sized, C: SharedMemory + ?Sized> {
    mem: &'a P,
    at: usize,
    peer: &'a C,
    peer_at: usize,
    geo: Geometry,
    head: u32,
}

impl<'a, P: SharedMemory + ?Sized, C: SharedMemory + ?Sized> Producer<'a, P, C> {
    /// Creates the ring: writes an empty producer block at `at` in `mem`
    /// with a new `epoch` (the caller picks one different from the last,
    /// e.g. from a clock; 0 is taken as 1), the magic last. `peer`/`peer_at`
    /// locate the receiver's consumer block.
    pub fn create(
        mem: &'a P,
        at: usize,
        peer: &'a C,
        peer_at: usize,
        geo: Geometry,
        epoch: u32,
    ) -> Result<Self, ChannelError> {
        place(mem, at, geo.producer_size())?;
        place(peer, peer_at, CONSUMER_BLOCK_SIZE)?;
        mem.store(at + off::P_MAGIC, 0u32, Relaxed)?;
        mem.fence(Release);
        mem.store(at + off::P_VERSION, VERSION, Relaxed)?;
        mem.store(at + off::P_SLOT_SIZE, geo.slot_size, Relaxed)?;
        mem.store(at + off::P_SLOTS, geo.slots, Relaxed)?;
        mem.store(at + off::P_EPOCH, epoch.max(1), Relaxed)?;
        mem.store(at + off::P_HEAD, 0u32, Relaxed)?;
        mem.store(at + off::P_FLAGS, 0u32, Relaxed)?;
        mem.fence(Release);
        mem.store(at + off::P_MAGIC, PRODUCER_MAGIC, Relaxed)?;
        Ok(Producer {
            mem,
            at,
            peer,
            peer_at,
            geo,
            head: 0,
        })
    }

    /// The ring's shape.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// Looks for the receiver's consumer block at `peer_at` in `peer` from
    /// now on: for a sender that learns who receives only after its first
    /// messages (the receiver's hello names its output section). Until the
    /// receiver attaches there with this ring's epoch, the ring counts as
    /// unattached, as after [`Producer::create`].
    pub fn rebind(&mut self, peer: &'a C, peer_at: usize) -> Result<(), ChannelError> {
        place(peer, peer_at, CONSUMER_BLOCK_SIZE)?;
        self.peer = peer;
        self.peer_at = peer_at;
        Ok(())
    }

    /// The receiver's `tail`, validated; `None` while no receiver is
    /// attached to this epoch.
    fn tail(&self) -> Result<Option<u32>, ChannelError> {
        let p = self.peer;
        let magic: u32 = p.load(self.peer_at + off::C_MAGIC, Relaxed)?;
        let epoch: u32 = p.load(self.peer_at + off::C_EPOCH, Relaxed)?;
        let mine: u32 = self.mem.load(self.at + off::P_EPOCH, Relaxed)?;
        if magic != CONSUMER_MAGIC || epoch != mine {
            return Ok(None);
        }
        let tail: u32 = p.load(self.peer_at + off::C_TAIL, Acquire)?;
        if self.head.wrapping_sub(tail) > self.geo.slots {
            return Err(ChannelError::Corrupt {
                field: "tail",
                value: tail,
            });
        }
        Ok(Some(tail))
    }

    /// Free slots. While no receiver is attached to this epoch, the first
    /// `slots` messages may be queued for one that attaches later; after
    /// that (or once a receiver left) the ring counts as full.
    pub fn free(&self) -> Result<u32, ChannelError> {
        let used = match self.tail()? {
            Some(tail) => self.head.wrapping_sub(tail),
            None => self.head,
        };
        Ok(self.geo.slots.saturating_sub(used))
    }

    /// Queues `msg`, or `Err(Full)`.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<Sent, ChannelError> {
        if msg.len() > self.geo.max_payload() {
            return Err(ChannelError::TooLong {
                len: msg.len(),
                max: self.geo.max_payload(),
            });
        }
        if self.free()? == 0 {
            return Err(ChannelError::Full);
        }
        let slot = self.at + self.geo.slot(self.head);
        // CAST: bounded by max_payload, below 2^16.
        self.mem
            .store(slot + off::S_LEN, msg.len() as u32, Relaxed)?;
        self.mem.store(slot + 4, 0u32, Relaxed)?;
        copy_to(self.mem, slot + off::S_PAYLOAD, msg)?;
        self.head = self.head.wrapping_add(1);
        self.mem.fence(Release);
        self.mem.store(self.at + off::P_HEAD, self.head, Relaxed)?;
        // Pairs with the receiver's flag-then-check in `prepare_wait`.
        self.mem.fence(SeqCst);
        let flags: u32 = self.peer.load(self.peer_at + off::C_FLAGS, Relaxed)?;
        Ok(Sent {
            notify: self.tail()?.is_some() && flags & FLAG_WAITING != 0,
        })
    }

    /// Before sleeping until the receiver frees space: says so, then
    /// re-checks; `true` if the ring is still full (sleep), `false` if
    /// space appeared meanwhile (the flag is cleared again).
    pub fn prepare_wait(&self) -> Result<bool, ChannelError> {
        self.mem
            .store(self.at + off::P_FLAGS, FLAG_WAITING, Relaxed)?;
        self.mem.fence(SeqCst);
        if self.free()? > 0 {
            self.finish_wait()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// After waking: no doorbell wanted any more.
    pub fn finish_wait(&self) -> Result<(), ChannelError> {
        Ok(self.mem.store(self.at + off::P_FLAGS, 0u32, Relaxed)?)
    }
}

/// What [`Consumer::try_recv`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the message (copied to the front of the buffer).
    pub len: usize,
    /// The sender waits for space: ring its doorbell.
    pub notify: bool,
}

/// The receiving side of one ring: `P` holds the sender's producer block
/// (only read), `C` this side's consumer block (written).
pub struct Consumer<'a, P: SharedMemory + ?Sized, C: SharedMemory + ?Sized> {
    peer: &'a P,
    peer_at: usize,
    mem: &'a C,
    at: usize,
    geo: Geometry,
    epoch: u32,
    tail: u32,
}

impl<'a, P: SharedMemory + ?Sized, C: SharedMemory + ?Sized> Consumer<'a, P, C> {
    /// Attaches to the ring whose producer block is at `peer_at` in
    /// `peer`, taking every message published so far; writes this side's
    /// consumer block at `at` in `mem`. `Err(NotReady)` until the sender
    /// has created the ring.
    pub fn attach(
        peer: &'a P,
        peer_at: usize,
        mem: &'a C,
        at: usize,
    ) -> Result<Self, ChannelError> {
        place(mem, at, CONSUMER_BLOCK_SIZE)?;
        place(peer, peer_at, PRODUCER_HEADER_SIZE)?;
        let magic: u32 = peer.load(peer_at + off::P_MAGIC, Acquire)?;
        let version: u32 = peer.load(peer_at + off::P_VERSION, Relaxed)?;
        if magic != PRODUCER_MAGIC || version != VERSION {
            return Err(ChannelError::NotReady);
        }
        let slots: u32 = peer.load(peer_at + off::P_SLOTS, Relaxed)?;
        let slot_size: u32 = peer.load(peer_at + off::P_SLOT_SIZE, Relaxed)?;
        let geo = Geometry::new(slots, slot_size).map_err(|_| ChannelError::Corrupt {
            field: "geometry",
            value: slots,
        })?;
        place(peer, peer_at, geo.producer_size())?;
        let epoch: u32 = peer.load(peer_at + off::P_EPOCH, Relaxed)?;
        let head: u32 = peer.load(peer_at + off::P_HEAD, Acquire)?;
        // The messages queued before any receiver attached (at most
        // `slots`) are this receiver's; a ring that ran further (an earlier
        // receiver left) is joined at its head.
        let tail = if head <= slots { 0 } else { head };
        mem.store(at + off::C_MAGIC, 0u32, Relaxed)?;
        mem.fence(Release);
        mem.store(at + off::C_EPOCH, epoch, Relaxed)?;
        mem.store(at + off::C_TAIL, tail, Relaxed)?;
        mem.store(at + off::C_FLAGS, 0u32, Relaxed)?;
        mem.fence(Release);
        mem.store(at + off::C_MAGIC, CONSUMER_MAGIC, Relaxed)?;
        Ok(Consumer {
            peer,
            peer_at,
            mem,
            at,
            geo,
            epoch,
            tail,
        })
    }

    /// The ring's shape.
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The producer epoch this receiver attached to.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The sender's head, validated against this side's tail.
    fn head(&self) -> Result<u32, ChannelError> {
        let p = self.peer;
        let magic: u32 = p.load(self.peer_at + off::P_MAGIC, Relaxed)?;
        let epoch: u32 = p.load(self.peer_at + off::P_EPOCH, Relaxed)?;
        let slots: u32 = p.load(self.peer_at + off::P_SLOTS, Relaxed)?;
        let slot_size: u32 = p.load(self.peer_at + off::P_SLOT_SIZE, Relaxed)?;
        if magic != PRODUCER_MAGIC
            || epoch != self.epoch
            || slots != self.geo.slots
            || slot_size != self.geo.slot_size
        {
            return Err(ChannelError::Reset);
        }
        let head: u32 = p.load(self.peer_at + off::P_HEAD, Acquire)?;
        if head.wrapping_sub(self.tail) > self.geo.slots {
            return Err(ChannelError::Corrupt {
                field: "head",
                value: head,
            });
        }
        Ok(head)
    }

    /// Messages waiting.
    pub fn pending(&self) -> Result<u32, ChannelError> {
        Ok(self.head()?.wrapping_sub(self.tail))
    }

    /// Takes the next message into `buf`, or `Err(Empty)`.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Received, ChannelError> {
        if self.head()? == self.tail {
            return Err(ChannelError::Empty);
        }
        let slot = self.peer_at + self.geo.slot(self.tail);
        let len: u32 = self.peer.load(slot + off::S_LEN, Relaxed)?;
        let len_us = len as usize;
        if len_us > self.geo.max_payload() {
            return Err(ChannelError::Corrupt {
                field: "len",
                value: len,
            });
        }
        let out = buf
            .get_mut(..len_us)
            .ok_or(ChannelError::BufferTooSmall { len: len_us })?;
        copy_from(self.peer, slot + off::S_PAYLOAD, out)?;
        // The copy is done before the slot is handed back.
        self.peer.fence(Acquire);
        self.tail = self.tail.wrapping_add(1);
        self.mem.fence(Release);
        self.mem.store(self.at + off::C_TAIL, self.tail, Relaxed)?;
        self.mem.fence(SeqCst);
        let flags: u32 = self.peer.load(self.peer_at + off::P_FLAGS, Relaxed)?;
        Ok(Received {
            len: len_us,
            notify: flags & FLAG_WAITING != 0,
        })
    }

    /// Before sleeping until a message arrives: says so, then re-checks;
    /// `true` if the ring is still empty (sleep), `false` if a message
    /// arrived meanwhile (the flag is cleared again).
    pub fn prepare_wait(&self) -> Result<bool, ChannelError> {
        self.mem
            .store(self.at + off::C_FLAGS, FLAG_WAITING, Relaxed)?;
        self.mem.fence(SeqCst);
        if self.pending()? > 0 {
            self.finish_wait()?;
            return Ok(false);
        }
        Ok(true)
    }

    /// After waking: no doorbell wanted any more.
    pub fn finish_wait(&self) -> Result<(), ChannelError> {
        Ok(self.mem.store(self.at + off::C_FLAGS, 0u32, Relaxed)?)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::host::TestMemory;

    const P: usize = 0x100;
    const C: usize = 0x4000;

    fn ring(slots: u32, slot_size: u32) -> TestMemory {
        let _ = Geometry::new(slots, slot_size).unwrap();
        TestMemory::new(0x8000)
    }

    #[test]
    fn messages_arrive_in_order_across_wrap_around() {
        let m = ring(4, 32);
        let geo = Geometry::new(4, 32).unwrap();
        let mut tx = Producer::create(&m, P, &m, C, geo, 7).unwrap();
        let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
        let mut buf = [0u8; 64];
        for i in 0u32..1000 {
            let msg: Vec<u8> = (0..(i % 25) as u8).map(|b| b ^ i as u8).collect();
            assert_eq!(tx.try_send(&msg), Ok(Sent { notify: false }));
            let r = rx.try_recv(&mut buf).unwrap();
            assert_eq!(&buf[..r.len], &msg[..], "message {i}");
        }
        assert_eq!(rx.try_recv(&mut buf), Err(ChannelError::Empty));
    }

    #[test]
    fn full_and_empty() {
        let m = ring(4, 16);
        let geo = Geometry::new(4, 16).unwrap();
        let mut tx = Producer::create(&m, P, &m, C, geo, 1).unwrap();
        let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
        for _ in 0..4 {
            tx.try_send(b"12345678").unwrap();
        }
        assert_eq!(tx.try_send(b"x"), Err(ChannelError::Full));
        assert_eq!(
            tx.try_send(&[0; 9]),
            Err(ChannelError::TooLong { len: 9, max: 8 })
        );
        let mut small = [0u8; 4];
        assert_eq!(
            rx.try_recv(&mut small),
            Err(ChannelError::BufferTooSmall { len: 8 })
        );
        let mut buf = [0u8; 8];
        assert_eq!(rx.pending(), Ok(4));
        for _ in 0..4 {
            assert_eq!(rx.try_recv(&mut buf).unwrap().len, 8);
        }
        assert_eq!(rx.try_recv(&mut buf), Err(ChannelError::Empty));
        assert_eq!(tx.free(), Ok(4));
    }

    #[test]
    fn a_sender_rebound_to_the_receiver_s_block_sees_its_tail() {
        // The sender's own memory (producer block, and a zeroed stand-in
        // consumer block), and the receiver's memory (its consumer block):
        // the layout of two output sections.
        let own = TestMemory::new(0x2000);
        let theirs = TestMemory::new(0x2000);
        let geo = Geometry::new(4, 16).unwrap();
        let mut tx = Producer::create(&own, 0, &own, 0x1080, geo, 9).unwrap();
        for _ in 0..4 {
            tx.try_send(b"hello").unwrap();
        }
        assert_eq!(tx.try_send(b"x"), Err(ChannelError::Full));
        assert!(matches!(
            tx.rebind(&theirs, 0x1ff8),
            Err(ChannelError::Placement { .. })
        ));
        assert!(matches!(
            tx.rebind(&theirs, 0x1044),
            Err(ChannelError::Placement { .. })
        ));
        tx.rebind(&theirs, 0x1040).unwrap();
        // Not attached there yet: still full.
        assert_eq!(tx.free(), Ok(0));
        let mut rx = Consumer::attach(&own, 0, &theirs, 0x1040).unwrap();
        let mut buf = [0u8; 8];
        for _ in 0..4 {
            assert_eq!(rx.try_recv(&mut buf).unwrap().len, 5);
        }
        assert_eq!(tx.free(), Ok(4));
        assert_eq!(tx.try_send(b"more"), Ok(Sent { notify: false }));
        assert_eq!(rx.try_recv(&mut buf).unwrap().len, 4);
    }

    #[test]
    fn a_receiver_attaching_late_gets_what_was_sent() {
        let m = ring(8, 16);
        let mut tx = Producer::create(&m, P, &m, C, Geometry::new(8, 16).unwrap(), 3).unwrap();
        tx.try_send(b"early").unwrap();
        let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
        let mut buf = [0u8; 8];
        let r = rx.try_recv(&mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"early");
    }

    #[test]
    fn notifications_only_when_the_other_side_waits() {
        let m = ring(2, 16);
        let mut tx = Producer::create(&m, P, &m, C, Geometry::new(2, 16).unwrap(), 5).unwrap();
        let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
        assert_eq!(rx.prepare_wait(), Ok(true));
        assert!(tx.try_send(b"a").unwrap().notify);
        // Data arrived before the receiver slept: it must not sleep.
        assert_eq!(rx.prepare_wait(), Ok(false));
        assert!(!tx.try_send(b"b").unwrap().notify);
        assert_eq!(tx.prepare_wait(), Ok(true));
        let mut buf = [0u8; 8];
        assert!(rx.try_recv(&mut buf).unwrap().notify);
        assert_eq!(tx.prepare_wait(), Ok(false));
        assert!(!rx.try_recv(&mut buf).unwrap().notify);
    }

    #[test]
    fn a_recreated_ring_is_a_reset_for_the_receiver() {
        let m = ring(4, 16);
        let geo = Geometry::new(4, 16).unwrap();
        let mut tx = Producer::create(&m, P, &m, C, geo, 1).unwrap();
        let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
        tx.try_send(b"x").unwrap();
        let _tx2 = Producer::create(&m, P, &m, C, geo, 2).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(rx.try_recv(&mut buf), Err(ChannelError::Reset));
        assert!(Consumer::attach(&m, P, &m, C).is_ok());
    }

    #[test]
    fn hostile_indices_and_lengths_are_errors() {
        let m = ring(4, 16);
        let geo = Geometry::new(4, 16).unwrap();
        let mut tx = Producer::create(&m, P, &m, C, geo, 1).unwrap();
        let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
        let mut buf = [0u8; 64];
        m.put(P + off::P_HEAD, &100u32.to_le_bytes());
        assert!(matches!(
            rx.try_recv(&mut buf),
            Err(ChannelError::Corrupt { field: "head", .. })
        ));
        m.put(P + off::P_HEAD, &1u32.to_le_bytes());
        m.put(P + PRODUCER_HEADER_SIZE + off::S_LEN, &9u32.to_le_bytes());
        assert!(matches!(
            rx.try_recv(&mut buf),
            Err(ChannelError::Corrupt { field: "len", .. })
        ));
        m.put(C + off::C_TAIL, &0xffff_0000u32.to_le_bytes());
        assert!(matches!(
            tx.try_send(b"x"),
            Err(ChannelError::Corrupt { field: "tail", .. })
        ));
        m.put(P + off::P_SLOTS, &3u32.to_le_bytes());
        assert_eq!(rx.pending(), Err(ChannelError::Reset));
        assert!(Consumer::attach(&m, P, &m, C).is_err());
    }

    #[test]
    fn placement_and_geometry_are_checked() {
        let m = TestMemory::new(0x200);
        let geo = Geometry::new(8, 64).unwrap();
        assert!(matches!(
            Producer::create(&m, 0, &m, 0x1c0, geo, 1),
            Err(ChannelError::Placement { .. })
        ));
        assert!(matches!(
            Consumer::attach(&m, 4, &m, 0x100),
            Err(ChannelError::Placement { .. })
        ));
        assert!(Geometry::new(3, 16).is_err());
        assert!(Geometry::new(4, 12).is_err());
        assert!(Geometry::new(4, 8).is_err());
        assert!(Geometry::new(1 << 17, 16).is_err());
        assert_eq!(
            Consumer::attach(&m, 0, &m, 0x100).err(),
            Some(ChannelError::NotReady)
        );
    }

    /// Random bytes all over both blocks between operations: every call
    /// returns, and never reads or writes outside the blocks.
    #[test]
    fn fuzzed_shared_memory_never_escapes_the_blocks() {
        let geo = Geometry::new(8, 32).unwrap();
        let end = P + geo.producer_size();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..300 {
            let m = TestMemory::new(0x8000).logging();
            let mut tx = Producer::create(&m, P, &m, C, geo, round + 1).unwrap();
            let mut rx = Consumer::attach(&m, P, &m, C).unwrap();
            let mut buf = vec![0u8; 64];
            for _ in 0..200 {
                let r = next();
                let at = if r & 1 == 0 {
                    P + (r >> 8) as usize % (geo.producer_size())
                } else {
                    C + (r >> 8) as usize % CONSUMER_BLOCK_SIZE
                };
                m.put(at, &[(r >> 32) as u8]);
                let _ = tx.try_send(&buf[..(r >> 40) as usize % 30]);
                let _ = rx.try_recv(&mut buf);
                let _ = rx.pending();
                let _ = rx.prepare_wait();
                let _ = tx.prepare_wait();
            }
            for (at, bytes) in m.stores() {
                let last = at + bytes.len() - 1;
                let inside =
                    |lo: usize, hi: usize| (lo..hi).contains(&at) && (lo..hi).contains(&last);
                assert!(
                    inside(P, end) || inside(C, C + CONSUMER_BLOCK_SIZE),
                    "store at {at:#x}"
                );
            }
        }
    }
}
