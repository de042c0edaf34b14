// SPDX-License-Identifier: GPL-2.0

//! The frontend's allocator for the shared R/W section.
//!
//! Everything the backend may see lives in the R/W section: the header, the
//! shared split rings and the bounce buffers that carry request data. The
//! section is cut into equal chunks; a bitmap records which are taken. An
//! allocation is a run of consecutive free chunks, searched first-fit from
//! a rotor (the end of the previous allocation), so short-lived bounce
//! buffers cycle through the pool instead of piling up at its start.
//!
//! The bitmap storage is handed in (`KVec` in the kernel, `Vec` on the host)
//! so this file needs no allocator.

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// The range is not inside the pool or not chunk aligned.
    OutOfRange,
    /// Part of the range was not allocated (double free).
    NotAllocated,
}

/// A first-fit chunk allocator over `chunks` chunks of `1 << shift` bytes.
pub struct Pool<B> {
    bits: B,
    chunks: usize,
    shift: u32,
    rotor: usize,
    used: usize,
}

/// Number of `u64` words a bitmap for `chunks` chunks needs.
pub const fn words_for(chunks: usize) -> usize {
    chunks.div_ceil(64)
}

impl<B: core::ops::DerefMut<Target = [u64]>> Pool<B> {
    /// A pool of `chunks` free chunks of `1 << shift` bytes; `bits` must
    /// hold at least [`words_for`]`(chunks)` words (it is cleared).
    pub fn new(mut bits: B, chunks: usize, shift: u32) -> Option<Self> {
        if bits.len() < words_for(chunks) || shift >= usize::BITS {
            return None;
        }
        bits.iter_mut().for_each(|w| *w = 0);
        Some(Pool {
            bits,
            chunks,
            shift,
            rotor: 0,
            used: 0,
        })
    }

    /// Frees everything.
    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.rotor = 0;
        self.used = 0;
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        1 << self.shift
    }

    /// Chunks in the pool.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Chunks currently allocated.
    pub fn used_chunks(&self) -> usize {
        self.used
    }

    fn chunks_for(&self, size: usize) -> Option<usize> {
        if size == 0 {
            return None;
        }
        Some(size.div_ceil(self.chunk_size()))
    }

    fn test(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set_run(&mut self, first: usize, n: usize, on: bool) {
        for i in first..first + n {
            let w = &mut self.bits[i / 64];
            if on {
                *w |= 1 << (i % 64);
            } else {
                *w &= !(1 << (i % 64));
            }
        }
    }

    /// Finds `n` free chunks in a row in `[from, to)`.
    fn find(&self, from: usize, to: usize, n: usize) -> Option<usize> {
        let mut run = 0;
        let mut i = from;
        while i < to {
            // Skip full words quickly.
            if i % 64 == 0 && i + 64 <= to && self.bits[i / 64] == u64::MAX {
                run = 0;
                i += 64;
                continue;
            }
            if self.test(i) {
                run = 0;
            } else {
                run += 1;
                if run == n {
                    return Some(i + 1 - n);
                }
            }
            i += 1;
        }
        None
    }

    /// Allocates `size` bytes; returns their offset from the pool start.
    pub fn alloc(&mut self, size: usize) -> Option<usize> {
        let n = self.chunks_for(size)?;
        if n > self.chunks - self.used {
            return None;
        }
        let first = self
            .find(self.rotor, self.chunks, n)
            .or_else(|| self.find(0, (self.rotor + n).min(self.chunks), n))?;
        self.set_run(first, n, true);
        self.used += n;
        self.rotor = if first + n >= self.chunks {
            0
        } else {
            first + n
        };
        Some(first << self.shift)
    }

    /// Marks `size` bytes at `offset` as taken (for fixed areas such as the
    /// header). Fails if any of it is already taken.
    pub fn reserve(&mut self, offset: usize, size: usize) -> Result<(), PoolError> {
        let (first, n) = self.range(offset, size)?;
        if (first..first + n).any(|i| self.test(i)) {
            return Err(PoolError::NotAllocated);
        }
        self.set_run(first, n, true);
        self.used += n;
        Ok(())
    }

    fn range(&self, offset: usize, size: usize) -> Result<(usize, usize), PoolError> {
        if offset & (self.chunk_size() - 1) != 0 {
            return Err(PoolError::OutOfRange);
        }
        let n = self.chunks_for(size).ok_or(PoolError::OutOfRange)?;
        let first = offset >> self.shift;
        if first.checked_add(n).is_none_or(|end| end > self.chunks) {
            return Err(PoolError::OutOfRange);
        }
        Ok((first, n))
    }

    /// Frees an allocation made by [`Pool::alloc`] with the same `size`.
    pub fn free(&mut self, offset: usize, size: usize) -> Result<(), PoolError> {
        let (first, n) = self.range(offset, size)?;
        if !(first..first + n).all(|i| self.test(i)) {
            return Err(PoolError::NotAllocated);
        }
        self.set_run(first, n, false);
        self.used -= n;
        Ok(())
    }

    /// Whether `[offset, offset + size)` lies in allocated chunks only.
    pub fn is_allocated(&self, offset: usize, size: usize) -> bool {
        match self.range(
            offset - offset % self.chunk_size(),
            size + offset % self.chunk_size(),
        ) {
            Ok((first, n)) => (first..first + n).all(|i| self.test(i)),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn pool(chunks: usize) -> Pool<Vec<u64>> {
        Pool::new(vec![0; words_for(chunks)], chunks, 10).unwrap()
    }

    #[test]
    fn alloc_free_roundtrip() {
        let mut p = pool(16);
        let a = p.alloc(1).unwrap();
        let b = p.alloc(3000).unwrap();
        assert_eq!(a, 0);
        assert_eq!(b, 1024);
        assert_eq!(p.used_chunks(), 4);
        assert!(p.is_allocated(b + 100, 2000));
        p.free(b, 3000).unwrap();
        assert_eq!(p.free(b, 3000), Err(PoolError::NotAllocated));
        assert_eq!(p.free(5, 10), Err(PoolError::OutOfRange));
        assert_eq!(p.free(15 << 10, 4096), Err(PoolError::OutOfRange));
        p.free(a, 1).unwrap();
        assert_eq!(p.used_chunks(), 0);
    }

    #[test]
    fn exhaustion_and_wraparound() {
        let mut p = pool(8);
        assert!(p.alloc(0).is_none());
        let x = p.alloc(6 << 10).unwrap();
        assert!(p.alloc(3 << 10).is_none());
        let y = p.alloc(2 << 10).unwrap();
        assert!(p.alloc(1).is_none());
        p.free(x, 6 << 10).unwrap();
        // The rotor sits at the end; the search wraps to the start.
        assert_eq!(p.alloc(4 << 10), Some(0));
        p.free(y, 2 << 10).unwrap();
    }

    #[test]
    fn reserve_blocks_allocation() {
        let mut p = pool(4);
        p.reserve(0, 1500).unwrap();
        assert_eq!(p.reserve(1024, 1), Err(PoolError::NotAllocated));
        assert_eq!(p.alloc(1), Some(2048));
        assert_eq!(p.alloc(2048), None);
        assert_eq!(p.alloc(1024), Some(3072));
    }

    #[test]
    fn random_workload_never_overlaps() {
        // xorshift; allocations are tracked in a shadow map.
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut p = pool(200);
        let mut owner = [false; 200];
        let mut live: Vec<(usize, usize)> = Vec::new();
        for _ in 0..20000 {
            if next() % 2 == 0 && !live.is_empty() {
                let i = (next() as usize) % live.len();
                let (o, sz) = live.swap_remove(i);
                p.free(o, sz).unwrap();
                owner[(o >> 10)..(o + sz).div_ceil(1024)].fill(false);
            } else {
                let sz = 1 + (next() as usize) % 9000;
                if let Some(o) = p.alloc(sz) {
                    let run = &mut owner[(o >> 10)..(o + sz).div_ceil(1024)];
                    assert!(run.iter().all(|b| !b), "chunks at {o:#x} handed out twice");
                    run.fill(true);
                    live.push((o, sz));
                }
            }
            assert_eq!(p.used_chunks(), owner.iter().filter(|b| **b).count());
        }
    }
}
