// SPDX-License-Identifier: GPL-2.0

//! `--range OFFSET:LENGTH`: the part of the backing file a virtio-blk
//! device exports. The guest sees a disk of LENGTH bytes (capacity
//! LENGTH / 512 sectors) whose sector 0 is byte OFFSET of the file; every
//! request is checked against LENGTH before OFFSET is added, so no request
//! can reach outside the range (one that crosses its end fails as a whole
//! with `VIRTIO_BLK_S_IOERR`).
//!
//! Both numbers are bytes with an optional binary suffix `K` (1024), `M`
//! (1024^2), `G` (1024^3) or `T` (1024^4), and multiples of 512; LENGTH is
//! above 0 and the range must lie inside the file.

use crate::error::{Error, Result};

use super::SECTOR;

/// A byte range of the backing file.
///
/// # Invariants
///
/// `offset` and `len` are multiples of [`SECTOR`], `len > 0`, and
/// `offset + len` does not overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ByteRange {
    offset: u64,
    len: u64,
}

impl ByteRange {
    /// The range `offset..offset + len`, checked.
    pub(crate) fn new(offset: u64, len: u64) -> Result<Self> {
        if offset % SECTOR != 0 || len % SECTOR != 0 {
            return Err(Error::Usage(format!(
                "range {offset}:{len}: offset and length must be multiples of {SECTOR} bytes"
            )));
        }
        if len == 0 {
            return Err(Error::Usage("range length must be above 0".into()));
        }
        if offset.checked_add(len).is_none() {
            return Err(Error::Usage(format!(
                "range {offset}:{len} ends beyond 2^64 bytes"
            )));
        }
        // INVARIANT: checked above.
        Ok(ByteRange { offset, len })
    }

    /// The whole of a file of `size` bytes (rounded down to sectors), which
    /// may be empty.
    pub(crate) fn whole(size: u64) -> Self {
        // INVARIANT: a multiple of SECTOR from 0; 0 + len cannot overflow.
        ByteRange {
            offset: 0,
            len: size - size % SECTOR,
        }
    }

    /// First byte in the file.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Checks that the range lies inside a file of `size` bytes.
    pub(crate) fn fits(&self, size: u64) -> Result<()> {
        // The invariant keeps the sum from overflowing.
        if self.offset + self.len > size {
            return Err(Error::Usage(format!(
                "range {}:{} ends at byte {}, beyond the file's {size} bytes",
                self.offset,
                self.len,
                self.offset + self.len
            )));
        }
        Ok(())
    }

    /// The file offset of `len` bytes at byte `at` of the range, if they
    /// lie inside it.
    pub(crate) fn map(&self, at: u64, len: u64) -> Option<u64> {
        let end = at.checked_add(len)?;
        (end <= self.len).then_some(self.offset + at)
    }
}

impl std::fmt::Display for ByteRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bytes {:#x}..{:#x}", self.offset, self.offset + self.len)
    }
}

/// Parses a size: bytes with an optional binary suffix K, M, G or T.
fn parse_size(s: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "`{s}`: expected bytes, optionally with K, M, G or T (powers of 1024)"
        ))
    };
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M')) => (&s[..i], 20),
        Some((i, 'G')) => (&s[..i], 30),
        Some((i, 'T')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

impl std::str::FromStr for ByteRange {
    type Err = Error;

    /// `OFFSET:LENGTH`.
    fn from_str(s: &str) -> Result<Self> {
        let (o, l) = s
            .split_once(':')
            .ok_or_else(|| Error::Usage(format!("`{s}`: expected OFFSET:LENGTH, like 1M:64M")))?;
        ByteRange::new(parse_size(o)?, parse_size(l)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_what_is_not_sector_aligned() {
        let r: ByteRange = "1M:64M".parse().unwrap();
        assert_eq!((r.offset(), r.len()), (1 << 20, 64 << 20));
        let r: ByteRange = "0:512".parse().unwrap();
        assert_eq!((r.offset(), r.len()), (0, 512));
        let r: ByteRange = "4096:1G".parse().unwrap();
        assert_eq!((r.offset(), r.len()), (4096, 1 << 30));
        for bad in [
            "",
            "1M",
            ":",
            "1M:",
            ":1M",
            "0:0",
            "1:512",
            "0:513",
            "1.5M:1M",
            "-512:512",
            "0:1P",
            "16777216T:1T",
            "18446744073709551104:512",
            "0:1M:2M",
        ] {
            assert!(bad.parse::<ByteRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ranges_fit_files_and_map_inside_only() {
        let r = ByteRange::new(4096, 8192).unwrap();
        assert!(r.fits(12288).is_ok());
        assert!(r.fits(12287).is_err());
        assert_eq!(r.map(0, 8192), Some(4096));
        assert_eq!(r.map(7680, 512), Some(4096 + 7680));
        assert_eq!(r.map(7680, 1024), None, "crosses the end");
        assert_eq!(r.map(8192, 0), Some(12288), "an empty access at the end");
        assert_eq!(r.map(u64::MAX, 512), None, "overflow");
        assert_eq!(ByteRange::whole(1000).len(), 512);
        assert_eq!(ByteRange::whole(100).len(), 0);
    }

    /// Randomized: whatever a guest asks, a mapped access lies inside the
    /// range in the file.
    #[test]
    fn mapped_accesses_stay_inside_the_range() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..10_000 {
            let off = (next() % (1 << 40)) * SECTOR;
            let len = (1 + next() % (1 << 30)) * SECTOR;
            let r = ByteRange::new(off, len).unwrap();
            let at = match next() % 3 {
                0 => next(),
                1 => next() % (len + 4096),
                _ => len.saturating_sub(next() % 4096),
            };
            let n = next() % (1 << 25);
            if let Some(f) = r.map(at, n) {
                assert!(f >= off && f + n <= off + len, "{r}: {at}+{n} -> {f}");
            } else {
                assert!(at.checked_add(n).is_none_or(|e| e > len));
            }
        }
    }
}
