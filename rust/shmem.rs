// SPDX-License-Identifier: GPL-2.0

//! One interface for loads and stores of words in shared memory.
//!
//! Everything lincell keeps in memory that another peer can read or write
//! (the v1 layout header, the state table, the virtio-over-ivshmem header,
//! split rings) is made of naturally aligned little-endian words. This
//! module is the one vocabulary for them, in the manner of vm-memory's
//! `Bytes::load`/`Bytes::store`:
//!
//! - [`Word`]: the sealed set of word types (`u8`, `u16`, `u32`, `u64`);
//! - [`SharedMemory`]: `load`/`store` of a [`Word`] at a byte offset with an
//!   explicit [`Ordering`], a 32-bit compare-and-swap and fences. Values are
//!   in CPU byte order, memory is little-endian. Every access is a single
//!   atomic access, bounds- and alignment-checked, with an [`AccessError`]
//!   instead of undefined behaviour;
//! - [`RawRegion`]: the one implementation over raw memory (a kernel
//!   `memremap` window, the private vring of a queue, a host `mmap`, the
//!   words of a test memory);
//! - [`Fallback`]: the one place where a failed access becomes a value, for
//!   callers without an error path (offsets validated at set-up).
//!
//! This is the only file under `rust/` with `unsafe`: turning a pointer into
//! accesses to memory Rust does not own cannot be done without it, and
//! doing it once here keeps every other user safe.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{self, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

mod sealed {
    /// Only this module implements [`super::Word`].
    pub trait Sealed {}
}

/// A word of shared memory: `u8`, `u16`, `u32` or `u64`, stored
/// little-endian and naturally aligned.
pub trait Word: sealed::Sealed + Copy + Default + Eq + fmt::Debug {
    /// Size (and alignment) in bytes.
    const SIZE: usize;

    /// Loads the little-endian word at `p` atomically, in CPU order.
    ///
    /// # Safety
    ///
    /// `p` must be valid for reads of `SIZE` bytes, `SIZE`-aligned, and the
    /// bytes must not be accessed non-atomically by Rust code meanwhile.
    #[doc(hidden)]
    unsafe fn load_at(p: *mut u8, order: Ordering) -> Self;

    /// Stores `v` little-endian at `p` atomically.
    ///
    /// # Safety
    ///
    /// As for [`Word::load_at`], for writes.
    #[doc(hidden)]
    unsafe fn store_at(p: *mut u8, v: Self, order: Ordering);
}

macro_rules! word {
    ($t:ty, $atomic:ty) => {
        impl sealed::Sealed for $t {}

        impl Word for $t {
            const SIZE: usize = core::mem::size_of::<$t>();

            unsafe fn load_at(p: *mut u8, order: Ordering) -> Self {
                // SAFETY: the caller guarantees that `p` is valid, aligned
                // and not accessed non-atomically by Rust code while the
                // reference lives (this statement). Other peers are outside
                // Rust's model and may access the bytes in any way: what
                // the atomic gives is one untorn access on our side.
                let a = unsafe { <$atomic>::from_ptr(p.cast()) };
                <$t>::from_le(a.load(load_order(order)))
            }

            unsafe fn store_at(p: *mut u8, v: Self, order: Ordering) {
                // SAFETY: as in `load_at`.
                let a = unsafe { <$atomic>::from_ptr(p.cast()) };
                a.store(v.to_le(), store_order(order));
            }
        }
    };
}

word!(u8, AtomicU8);
word!(u16, AtomicU16);
word!(u32, AtomicU32);
word!(u64, AtomicU64);

/// `order` made valid for a load: `Release` and `AcqRel` (which `core`
/// refuses with a panic) are strengthened to `Acquire`.
fn load_order(order: Ordering) -> Ordering {
    match order {
        Ordering::Release | Ordering::AcqRel => Ordering::Acquire,
        o => o,
    }
}

/// `order` made valid for a store: `Acquire` and `AcqRel` are strengthened
/// to `Release`.
fn store_order(order: Ordering) -> Ordering {
    match order {
        Ordering::Acquire | Ordering::AcqRel => Ordering::Release,
        o => o,
    }
}

/// Why an access was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessErrorKind {
    /// The bytes are not all inside the memory.
    OutOfBounds,
    /// The word is not naturally aligned.
    Misaligned,
}

/// An access of `size` bytes at `offset` of a memory of `len` bytes that
/// could not be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessError {
    /// What is wrong with it.
    pub kind: AccessErrorKind,
    /// Byte offset of the access.
    pub offset: usize,
    /// Bytes accessed.
    pub size: usize,
    /// Size of the memory.
    pub len: usize,
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let AccessError {
            kind,
            offset,
            size,
            len,
        } = *self;
        match kind {
            AccessErrorKind::OutOfBounds => write!(
                f,
                "shared memory access of {size} bytes at {offset:#x} is outside the {len:#x}-byte region"
            ),
            AccessErrorKind::Misaligned => write!(
                f,
                "shared memory access of {size} bytes at {offset:#x} is not {size}-byte aligned"
            ),
        }
    }
}

/// What [`SharedMemory::compare_exchange_u32`] returns: `Ok(Ok(previous))`
/// if the word was replaced, `Ok(Err(previous))` if not.
pub type CompareExchange = Result<Result<u32, u32>, AccessError>;

/// Memory shared with other peers, addressed by byte offset.
///
/// Values are in CPU byte order, memory little-endian. Every load and store
/// is one atomic access of the word's size; `order` is the atomic ordering
/// (`Release`/`AcqRel` for a load and `Acquire`/`AcqRel` for a store are
/// strengthened to the valid ordering instead of panicking).
pub trait SharedMemory {
    /// Size in bytes.
    fn len(&self) -> usize;

    /// Whether the memory has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the word at `offset`.
    fn load<T: Word>(&self, offset: usize, order: Ordering) -> Result<T, AccessError>;

    /// Stores `value` at `offset`.
    fn store<T: Word>(&self, offset: usize, value: T, order: Ordering) -> Result<(), AccessError>;

    /// Atomically replaces the u32 at `offset` with `new` if it is
    /// `current` (`AcqRel` on success, `Acquire` on failure).
    fn compare_exchange_u32(&self, offset: usize, current: u32, new: u32) -> CompareExchange;

    /// A memory fence (`Relaxed` is none).
    fn fence(&self, order: Ordering) {
        if order != Ordering::Relaxed {
            atomic::fence(order);
        }
    }
}

/// `len` bytes of memory at a raw address, shared with other peers.
///
/// # Invariants
///
/// `base..base + len` is readable (and writable, unless nothing stores
/// through the value) for as long as the value exists, and Rust code
/// accesses it only through raw pointers and atomics.
pub struct RawRegion {
    base: NonNull<u8>,
    len: usize,
}

impl fmt::Debug for RawRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawRegion")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish()
    }
}

// SAFETY: the region is plain memory that other processes and devices use
// concurrently anyway; every access through it is atomic or a raw copy.
unsafe impl Send for RawRegion {}
// SAFETY: as for `Send`; no method hands out references into the region.
unsafe impl Sync for RawRegion {}

impl RawRegion {
    /// The `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// For as long as the returned value exists, `base..base + len` must be
    /// mapped readable and writable (or readable only, if nothing ever
    /// stores through the region), and no Rust reference may point into it
    /// (other peers, devices and processes may access it at any time; so
    /// may other `RawRegion`s).
    pub const unsafe fn new(base: NonNull<u8>, len: usize) -> Self {
        // INVARIANT: the caller guarantees the memory.
        RawRegion { base, len }
    }

    /// Start of the region (valid for [`SharedMemory::len`] bytes while
    /// `self` lives).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// Pointer to `size` bytes at `offset`, if they are inside the region;
    /// for callers that copy bytes in or out. The bytes are written by
    /// peers: copy them out and validate the copy.
    pub fn ptr(&self, offset: usize, size: usize) -> Result<*mut u8, AccessError> {
        match offset.checked_add(size) {
            // SAFETY: `offset + size <= len`: inside the region.
            Some(end) if end <= self.len => Ok(unsafe { self.base.as_ptr().add(offset) }),
            _ => Err(self.error(AccessErrorKind::OutOfBounds, offset, size)),
        }
    }

    /// Pointer to the naturally aligned word at `offset`.
    fn word<T: Word>(&self, offset: usize) -> Result<*mut u8, AccessError> {
        let p = self.ptr(offset, T::SIZE)?;
        if p.addr() % T::SIZE != 0 {
            return Err(self.error(AccessErrorKind::Misaligned, offset, T::SIZE));
        }
        Ok(p)
    }

    fn error(&self, kind: AccessErrorKind, offset: usize, size: usize) -> AccessError {
        AccessError {
            kind,
            offset,
            size,
            len: self.len,
        }
    }
}

impl SharedMemory for RawRegion {
    fn len(&self) -> usize {
        self.len
    }

    fn load<T: Word>(&self, offset: usize, order: Ordering) -> Result<T, AccessError> {
        let p = self.word::<T>(offset)?;
        // SAFETY: `word` checked that the bytes are inside the region and
        // aligned; the region is valid and only accessed atomically (type
        // invariant).
        Ok(unsafe { T::load_at(p, order) })
    }

    fn store<T: Word>(&self, offset: usize, value: T, order: Ordering) -> Result<(), AccessError> {
        let p = self.word::<T>(offset)?;
        // SAFETY: as in `load`.
        unsafe { T::store_at(p, value, order) };
        Ok(())
    }

    fn compare_exchange_u32(&self, offset: usize, current: u32, new: u32) -> CompareExchange {
        let p = self.word::<u32>(offset)?;
        // SAFETY: as in `load`.
        let a = unsafe { AtomicU32::from_ptr(p.cast()) };
        Ok(a.compare_exchange(
            current.to_le(),
            new.to_le(),
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map(u32::from_le)
        .map_err(u32::from_le))
    }
}

/// Accesses for callers without an error path, at offsets validated when
/// the memory was set up (fixed header fields, ring entries): a failed
/// access is a bug, not a peer's doing. It is handed to `report` (the
/// kernel says so once), a load then reads 0 and a store is dropped. This
/// is the only place that turns an [`AccessError`] into a value.
pub struct Fallback<'a, M: ?Sized> {
    mem: &'a M,
    report: fn(&AccessError),
}

impl<'a, M: SharedMemory + ?Sized> Fallback<'a, M> {
    /// Accesses to `mem`, reporting failures to `report`.
    pub fn new(mem: &'a M, report: fn(&AccessError)) -> Self {
        Fallback { mem, report }
    }

    /// The memory itself, for accesses that have an error path.
    pub fn memory(&self) -> &'a M {
        self.mem
    }

    /// Size of the memory in bytes.
    pub fn len(&self) -> usize {
        self.mem.len()
    }

    /// Whether the memory has no bytes.
    pub fn is_empty(&self) -> bool {
        self.mem.is_empty()
    }

    /// Loads the word at `offset`; 0 if that fails.
    pub fn load<T: Word>(&self, offset: usize, order: Ordering) -> T {
        self.mem
            .load(offset, order)
            .unwrap_or_else(|e| self.failed(e))
    }

    /// Stores `value` at `offset`; dropped if that fails.
    pub fn store<T: Word>(&self, offset: usize, value: T, order: Ordering) {
        if let Err(e) = self.mem.store(offset, value, order) {
            self.failed::<()>(e);
        }
    }

    /// A memory fence (`Relaxed` is none).
    pub fn fence(&self, order: Ordering) {
        self.mem.fence(order);
    }

    fn failed<T: Default>(&self, e: AccessError) -> T {
        (self.report)(&e);
        T::default()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::host::TestMemory;
    use super::*;
    use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
    use std::string::ToString;

    #[test]
    fn words_are_little_endian_and_naturally_aligned() {
        let m = TestMemory::new(16);
        m.store(0, 0x1122_3344_5566_7788u64, Release).unwrap();
        m.store(8, 0xa1b2_c3d4u32, Relaxed).unwrap();
        m.store(12, 0xbeefu16, SeqCst).unwrap();
        m.store(14, 0x7fu8, Relaxed).unwrap();
        assert_eq!(
            m.bytes(),
            [
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xd4, 0xc3, 0xb2, 0xa1, 0xef, 0xbe,
                0x7f, 0x00
            ]
        );
        assert_eq!(m.load::<u64>(0, Acquire), Ok(0x1122_3344_5566_7788));
        assert_eq!(m.load::<u32>(4, Relaxed), Ok(0x1122_3344));
        assert_eq!(m.load::<u16>(12, Relaxed), Ok(0xbeef));
        assert_eq!(m.load::<u8>(15, Relaxed), Ok(0));
    }

    #[test]
    fn out_of_bounds_and_misaligned_accesses_are_refused() {
        let m = TestMemory::new(16);
        let err = |kind, offset, size| AccessError {
            kind,
            offset,
            size,
            len: 16,
        };
        assert_eq!(
            m.load::<u64>(16, Relaxed),
            Err(err(AccessErrorKind::OutOfBounds, 16, 8))
        );
        assert_eq!(
            m.load::<u32>(usize::MAX, Relaxed),
            Err(err(AccessErrorKind::OutOfBounds, usize::MAX, 4))
        );
        assert_eq!(
            m.store(2, 1u32, Relaxed),
            Err(err(AccessErrorKind::Misaligned, 2, 4))
        );
        assert_eq!(
            m.compare_exchange_u32(6, 0, 1),
            Err(err(AccessErrorKind::Misaligned, 6, 4))
        );
        assert!(m.bytes().iter().all(|&b| b == 0), "nothing was written");
        assert_eq!(
            err(AccessErrorKind::OutOfBounds, 16, 8).to_string(),
            "shared memory access of 8 bytes at 0x10 is outside the 0x10-byte region"
        );
        assert_eq!(
            err(AccessErrorKind::Misaligned, 2, 4).to_string(),
            "shared memory access of 4 bytes at 0x2 is not 4-byte aligned"
        );
    }

    #[test]
    fn compare_exchange_reports_the_previous_value() {
        let m = TestMemory::new(8);
        assert_eq!(m.compare_exchange_u32(4, 0, 7), Ok(Ok(0)));
        assert_eq!(m.compare_exchange_u32(4, 0, 9), Ok(Err(7)));
        assert_eq!(m.bytes()[4..], [7, 0, 0, 0]);
    }

    #[test]
    fn invalid_orderings_are_strengthened_not_fatal() {
        let m = TestMemory::new(8);
        m.store(0, 5u32, Acquire).unwrap();
        assert_eq!(m.load::<u32>(0, Release), Ok(5));
        m.fence(Relaxed);
    }

    #[test]
    fn fallback_reads_zero_drops_stores_and_reports() {
        use std::sync::atomic::AtomicUsize;
        static REPORTED: AtomicUsize = AtomicUsize::new(0);
        let m = TestMemory::new(8);
        m.store(0, 0xffff_ffffu32, Relaxed).unwrap();
        let f = Fallback::new(&m, |_| {
            REPORTED.fetch_add(1, Relaxed);
        });
        assert_eq!(f.load::<u32>(0, Relaxed), 0xffff_ffff);
        assert_eq!(f.load::<u32>(8, Relaxed), 0);
        f.store(2, 1u16, Relaxed);
        f.store(1, 1u16, Relaxed);
        assert_eq!(REPORTED.load(Relaxed), 2);
        assert_eq!(m.bytes(), [0xff, 0xff, 0x01, 0x00, 0, 0, 0, 0]);
        assert_eq!(f.len(), 8);
    }
}
