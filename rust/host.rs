// SPDX-License-Identifier: GPL-2.0

//! Host-only additions to [`shmem`](super::shmem), built with the `std`
//! feature (and for this crate's own tests); the kernel modules never
//! include this file.
//!
//! - [`TestMemory`]: heap-backed shared memory for tests, a [`RawRegion`]
//!   over 8-byte aligned words, with raw byte access for playing the other
//!   peer and an optional log of every store;
//! - `From<AccessError> for std::io::Error`, for the tools.

extern crate std;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};
use std::boxed::Box;
use std::sync::Mutex;
use std::vec::Vec;

use super::shmem::{AccessError, CompareExchange, Fallback, RawRegion, SharedMemory, Word};

impl From<AccessError> for std::io::Error {
    fn from(e: AccessError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, std::format!("{e}"))
    }
}

/// One store: its offset and the little-endian bytes written.
pub type Store = (usize, Vec<u8>);

/// Zeroed, heap-backed, 8-byte aligned shared memory for tests.
///
/// Accesses go through a [`RawRegion`] over the words, exactly as on real
/// shared memory. [`TestMemory::put`] and [`TestMemory::bytes`] play the
/// other peer, byte for byte.
pub struct TestMemory {
    /// The region over `words`; declared first so it goes first.
    region: RawRegion,
    /// The storage; never accessed but through `region`.
    _words: Box<[AtomicU64]>,
    /// Every successful store, if logging.
    log: Option<Mutex<Vec<Store>>>,
}

impl TestMemory {
    /// `len` zero bytes.
    pub fn new(len: usize) -> Self {
        let words: Box<[AtomicU64]> = (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect();
        let base =
            NonNull::new(words.as_ptr().cast_mut().cast::<u8>()).unwrap_or(NonNull::dangling());
        // SAFETY: `words` holds at least `len` bytes, is owned by the value
        // and never referenced but through the region; `AtomicU64` is an
        // `UnsafeCell`, so writes through a pointer derived from the shared
        // slice are allowed.
        let region = unsafe { RawRegion::new(base, len) };
        TestMemory {
            region,
            _words: words,
            log: None,
        }
    }

    /// A memory holding `image`.
    pub fn with(image: &[u8]) -> Self {
        let m = TestMemory::new(image.len());
        m.put(0, image);
        m
    }

    /// The same memory, logging every store made through [`SharedMemory`]
    /// from now on (not those of [`TestMemory::put`]).
    pub fn logging(mut self) -> Self {
        self.log = Some(Mutex::new(Vec::new()));
        self
    }

    /// The stores logged so far.
    pub fn stores(&self) -> Vec<Store> {
        self.log
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }

    /// The region itself.
    pub fn region(&self) -> &RawRegion {
        &self.region
    }

    /// Accesses whose failure fails the test.
    pub fn fallback(&self) -> Fallback<'_, Self> {
        Fallback::new(self, |e| panic!("{e}"))
    }

    /// Writes `bytes` at `at`, as another peer would.
    ///
    /// # Panics
    ///
    /// If the bytes are not inside the memory.
    pub fn put(&self, at: usize, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            self.region
                .store(at + i, *b, Ordering::Relaxed)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }

    /// `len` bytes at `at`.
    ///
    /// # Panics
    ///
    /// If the bytes are not inside the memory.
    pub fn slice(&self, at: usize, len: usize) -> Vec<u8> {
        (at..at + len)
            .map(|o| {
                self.region
                    .load::<u8>(o, Ordering::Relaxed)
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    /// All the bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.slice(0, self.region.len())
    }

    fn record(&self, offset: usize, size: usize) {
        if let Some(log) = &self.log {
            let bytes = self.slice(offset, size);
            log.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((offset, bytes));
        }
    }
}

impl SharedMemory for TestMemory {
    fn len(&self) -> usize {
        self.region.len()
    }

    fn load<T: Word>(&self, offset: usize, order: Ordering) -> Result<T, AccessError> {
        self.region.load(offset, order)
    }

    fn store<T: Word>(&self, offset: usize, value: T, order: Ordering) -> Result<(), AccessError> {
        self.region.store(offset, value, order)?;
        self.record(offset, T::SIZE);
        Ok(())
    }

    fn compare_exchange_u32(&self, offset: usize, current: u32, new: u32) -> CompareExchange {
        let r = self.region.compare_exchange_u32(offset, current, new)?;
        if r.is_ok() {
            self.record(offset, 4);
        }
        Ok(r)
    }
}
