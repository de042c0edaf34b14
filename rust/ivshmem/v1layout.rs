// SPDX-License-Identifier: GPL-2.0

//! lincell's section layout for QEMU ivshmem (v1) devices.
//!
//! QEMU's ivshmem has no state register and no sections, so lincell peers
//! agree on a header at the start of the shared memory (specified in
//! `Documentation/ivshmem-v1-layout.md`):
//!
//! ```text
//! 0x00 u32 magic        MAGIC_READY once valid, MAGIC_INIT while a peer writes it
//! 0x04 u32 version      1
//! 0x08 u32 max_peers    2..=V1_MAX_PEERS
//! 0x0c u32 granule      page size the layout is rounded to (power of two >= 4096)
//! 0x10 u64 state_table_size
//! 0x18 u64 rw_size
//! 0x20 u64 output_size
//! 0x28 u32 protocol     ivshmem 2.0 protocol carried by the memory, 0 = undefined
//! ```
//!
//! All fields are little-endian. The sections (state table, R/W, outputs,
//! exactly as ivshmem 2.0 arranges them) start one granule after the header.
//! The first peer to find the memory zeroed claims it by an atomic
//! compare-and-swap of `magic` from 0 to `MAGIC_INIT`, writes the fields, then
//! publishes `MAGIC_READY`; later peers validate what they find. Everything
//! here is read from memory another peer can write: it is validated before
//! use, and a header that does not validate leaves the device without
//! sections (the whole region is then one R/W area) instead of failing.

use core::fmt;
use core::sync::atomic::Ordering::{Acquire, Release};

use super::super::shmem::{AccessError, SharedMemory};
use super::layout::{Layout, LayoutError, SectionSizes};

/// `magic` once the header is valid: "LCv1" read as a little-endian u32.
pub const MAGIC_READY: u32 = u32::from_le_bytes(*b"LCv1");
/// `magic` while the claiming peer writes the other fields.
pub const MAGIC_INIT: u32 = u32::from_le_bytes(*b"LCi1");
/// Header version.
pub const VERSION: u32 = 1;
/// Most peers a v1 layout may declare (the state table fits one page).
pub const V1_MAX_PEERS: u32 = 1024;
/// Peers declared by a peer that initializes the header.
pub const DEFAULT_MAX_PEERS: u32 = 8;

/// Header field offsets.
pub mod off {
    /// `magic` (u32).
    pub const MAGIC: usize = 0x00;
    /// `version` (u32).
    pub const VERSION: usize = 0x04;
    /// `max_peers` (u32).
    pub const MAX_PEERS: usize = 0x08;
    /// `granule` (u32).
    pub const GRANULE: usize = 0x0c;
    /// `state_table_size` (u64).
    pub const STATE_TABLE_SIZE: usize = 0x10;
    /// `rw_size` (u64).
    pub const RW_SIZE: usize = 0x18;
    /// `output_size` (u64).
    pub const OUTPUT_SIZE: usize = 0x20;
    /// `protocol` (u32): the ivshmem 2.0 protocol the memory carries (what
    /// a v2 device would report as its class), 0 = undefined. Written by
    /// the peer that serves the protocol (a vdev-remote backend writes
    /// `0x8000 | virtio device id`), read by the others.
    pub const PROTOCOL: usize = 0x28;
    /// Bytes of the header that carry fields.
    pub const END: usize = 0x2c;
}

/// A validated v1 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Number of peers.
    pub max_peers: u32,
    /// Rounding granule (and the header's own size).
    pub granule: u64,
    /// Section sizes.
    pub sizes: SectionSizes,
}

/// Why the memory has no usable v1 layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Error {
    /// The memory holds something else (a non-zero, unknown magic).
    ForeignData,
    /// Another peer started writing the header and did not finish in time.
    InitTimeout,
    /// Unknown header version.
    BadVersion(u32),
    /// A field is out of range.
    BadField(&'static str),
    /// The layout does not fit or overflows.
    Layout(LayoutError),
    /// The region is too small for a header and a state table.
    TooSmall,
    /// The header is not inside the memory given (a bug of the caller).
    Access(AccessError),
}

impl From<AccessError> for V1Error {
    fn from(e: AccessError) -> Self {
        V1Error::Access(e)
    }
}

impl fmt::Display for V1Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            V1Error::ForeignData => {
                f.write_str("shared memory holds foreign data (no lincell header)")
            }
            V1Error::InitTimeout => f.write_str("another peer did not finish writing the header"),
            V1Error::BadVersion(v) => write!(f, "unknown header version {v}"),
            V1Error::BadField(name) => write!(f, "header field {name} out of range"),
            V1Error::Layout(e) => write!(f, "{e}"),
            V1Error::TooSmall => f.write_str("shared memory too small for a lincell header"),
            V1Error::Access(e) => write!(f, "{e}"),
        }
    }
}

impl Header {
    /// The layout a peer creates for `region_len` bytes with `page_size`
    /// pages: `max_peers` peers, a one-granule state table, output sections
    /// of 1/16 of the region (at most 64 KiB, none below 1 MiB), and the rest
    /// as the R/W section.
    pub fn propose(region_len: u64, page_size: u64, max_peers: u32) -> Result<Self, V1Error> {
        if !page_size.is_power_of_two() || page_size < 4096 {
            return Err(V1Error::BadField("granule"));
        }
        let fixed = page_size.checked_mul(2).ok_or(V1Error::TooSmall)?;
        if region_len < fixed || u64::from(max_peers) * 4 > page_size {
            return Err(V1Error::TooSmall);
        }
        let output = if region_len >= 1 << 20 {
            (region_len / 16).min(64 << 10) & !(page_size - 1)
        } else {
            0
        };
        let outputs = output
            .checked_mul(u64::from(max_peers))
            .ok_or(V1Error::TooSmall)?;
        let rw = (region_len - fixed)
            .checked_sub(outputs)
            .ok_or(V1Error::TooSmall)?
            & !(page_size - 1);
        Ok(Header {
            max_peers,
            granule: page_size,
            sizes: SectionSizes {
                state_table: page_size,
                rw,
                output,
            },
        })
    }

    /// Validates the header and returns the section layout for `own_id` in a
    /// region of `region_len` bytes (sections start `granule` bytes in).
    pub fn layout(&self, own_id: u32, region_len: u64) -> Result<Layout, V1Error> {
        let avail = region_len
            .checked_sub(self.granule)
            .ok_or(V1Error::TooSmall)?;
        Layout::new(self.sizes, self.max_peers, own_id, self.granule, avail)
            .map_err(V1Error::Layout)
    }

    /// Writes the fields (not `magic`), each with release ordering.
    fn write<M: SharedMemory + ?Sized>(&self, mem: &M) -> Result<(), V1Error> {
        mem.store(off::VERSION, VERSION, Release)?;
        mem.store(off::MAX_PEERS, self.max_peers, Release)?;
        // CAST: the granule is a page size, far below 4 GiB.
        mem.store(off::GRANULE, self.granule as u32, Release)?;
        mem.store(off::STATE_TABLE_SIZE, self.sizes.state_table, Release)?;
        mem.store(off::RW_SIZE, self.sizes.rw, Release)?;
        mem.store(off::OUTPUT_SIZE, self.sizes.output, Release)?;
        Ok(())
    }

    /// Reads and checks a published header.
    pub fn read<M: SharedMemory + ?Sized>(mem: &M) -> Result<Self, V1Error> {
        let version = mem.load::<u32>(off::VERSION, Acquire)?;
        if version != VERSION {
            return Err(V1Error::BadVersion(version));
        }
        let max_peers = mem.load::<u32>(off::MAX_PEERS, Acquire)?;
        if !(2..=V1_MAX_PEERS).contains(&max_peers) {
            return Err(V1Error::BadField("max_peers"));
        }
        let granule = u64::from(mem.load::<u32>(off::GRANULE, Acquire)?);
        if !granule.is_power_of_two() || granule < 4096 {
            return Err(V1Error::BadField("granule"));
        }
        Ok(Header {
            max_peers,
            granule,
            sizes: SectionSizes {
                state_table: mem.load(off::STATE_TABLE_SIZE, Acquire)?,
                rw: mem.load(off::RW_SIZE, Acquire)?,
                output: mem.load(off::OUTPUT_SIZE, Acquire)?,
            },
        })
    }
}

/// Whether `mem` holds a published header (`magic` is [`MAGIC_READY`]).
pub fn is_published<M: SharedMemory + ?Sized>(mem: &M) -> Result<bool, V1Error> {
    Ok(mem.load::<u32>(off::MAGIC, Acquire)? == MAGIC_READY)
}

/// Joins the layout in `mem`, creating it from `proposal` if the memory is
/// blank. `wait` is called between polls while another peer is writing the
/// header; it returns `false` once the caller's time budget is spent.
pub fn init_or_join<M: SharedMemory + ?Sized>(
    mem: &M,
    proposal: &Header,
    mut wait: impl FnMut() -> bool,
) -> Result<Header, V1Error> {
    loop {
        match mem.compare_exchange_u32(off::MAGIC, 0, MAGIC_INIT)? {
            Ok(_) => {
                // We claimed blank memory: publish our proposal.
                proposal.write(mem)?;
                mem.store(off::MAGIC, MAGIC_READY, Release)?;
                return Ok(*proposal);
            }
            Err(MAGIC_READY) => return Header::read(mem),
            Err(MAGIC_INIT) => {
                if !wait() {
                    return Err(V1Error::InitTimeout);
                }
            }
            Err(_) => return Err(V1Error::ForeignData),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::host::TestMemory;
    use super::*;

    /// Blank memory for a header.
    fn blank() -> TestMemory {
        TestMemory::new(64)
    }

    #[test]
    fn first_peer_creates_second_joins_same_layout() {
        let mem = blank();
        let p = Header::propose(1 << 20, 4096, 8).unwrap();
        let a = init_or_join(&mem, &p, || false).unwrap();
        assert_eq!(mem.load::<u32>(off::MAGIC, Acquire), Ok(MAGIC_READY));
        // A second peer with a different proposal adopts the published one.
        let other = Header::propose(1 << 20, 4096, 2).unwrap();
        let b = init_or_join(&mem, &other, || false).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            &mem.bytes()[..4],
            b"LCv1",
            "magic is little-endian on the wire"
        );
    }

    #[test]
    fn proposal_fits_and_is_aligned() {
        let h = Header::propose(1 << 20, 4096, 8).unwrap();
        assert_eq!(h.sizes.output, 64 << 10);
        assert_eq!(h.sizes.state_table, 4096);
        let l = h.layout(7, 1 << 20).unwrap();
        assert!(l.total() + h.granule <= 1 << 20);
        assert_eq!(l.rw().offset, 4096);
        let small = Header::propose(64 << 10, 4096, 2).unwrap();
        assert_eq!(small.sizes.output, 0);
        assert_eq!(small.sizes.rw, (64 << 10) - 8192);
        assert_eq!(Header::propose(4096, 4096, 2), Err(V1Error::TooSmall));
        assert_eq!(Header::propose(1 << 20, 4096, 2048), Err(V1Error::TooSmall));
    }

    #[test]
    fn half_written_header_times_out() {
        let mem = blank();
        mem.store(off::MAGIC, MAGIC_INIT, Release).unwrap();
        let mut polls = 0;
        let r = init_or_join(&mem, &Header::propose(1 << 20, 4096, 2).unwrap(), || {
            polls += 1;
            polls < 5
        });
        assert_eq!(r, Err(V1Error::InitTimeout));
        assert_eq!(polls, 5);
    }

    #[test]
    fn waiting_peer_sees_the_header_once_published() {
        let mem = blank();
        mem.store(off::MAGIC, MAGIC_INIT, Release).unwrap();
        let p = Header::propose(1 << 20, 4096, 4).unwrap();
        let r = init_or_join(&mem, &p, || {
            // The other peer finishes while we wait.
            p.write(&mem).unwrap();
            mem.store(off::MAGIC, MAGIC_READY, Release).unwrap();
            true
        });
        assert_eq!(r, Ok(p));
    }

    #[test]
    fn foreign_and_hostile_headers_are_refused() {
        let p = Header::propose(1 << 20, 4096, 2).unwrap();
        let mem = blank();
        mem.store(off::MAGIC, 0xdead_beef_u32, Release).unwrap();
        assert_eq!(init_or_join(&mem, &p, || false), Err(V1Error::ForeignData));

        let hostile = |field: usize, value: u64, wide: bool| {
            let mem = blank();
            init_or_join(&mem, &p, || false).unwrap();
            if wide {
                mem.store(field, value, Release).unwrap();
            } else {
                // CAST: test values fit.
                mem.store(field, value as u32, Release).unwrap();
            }
            Header::read(&mem).and_then(|h| h.layout(0, 1 << 20))
        };
        assert_eq!(hostile(off::VERSION, 2, false), Err(V1Error::BadVersion(2)));
        assert_eq!(
            hostile(off::MAX_PEERS, 1, false),
            Err(V1Error::BadField("max_peers"))
        );
        assert_eq!(
            hostile(off::MAX_PEERS, 1 << 20, false),
            Err(V1Error::BadField("max_peers"))
        );
        assert_eq!(
            hostile(off::GRANULE, 4097, false),
            Err(V1Error::BadField("granule"))
        );
        assert_eq!(
            hostile(off::GRANULE, 1024, false),
            Err(V1Error::BadField("granule"))
        );
        assert!(matches!(
            hostile(off::RW_SIZE, u64::MAX, true),
            Err(V1Error::Layout(_))
        ));
        assert!(matches!(
            hostile(off::OUTPUT_SIZE, 1 << 40, true),
            Err(V1Error::Layout(_))
        ));
        assert!(matches!(
            hostile(off::STATE_TABLE_SIZE, 0, true),
            Err(V1Error::Layout(_))
        ));
    }

    #[test]
    fn a_header_outside_the_memory_is_an_access_error() {
        use super::super::super::shmem::{AccessError, AccessErrorKind};
        let p = Header::propose(1 << 20, 4096, 2).unwrap();
        let mem = TestMemory::new(off::RW_SIZE);
        assert_eq!(
            init_or_join(&mem, &p, || false),
            Err(V1Error::Access(AccessError {
                kind: AccessErrorKind::OutOfBounds,
                offset: off::RW_SIZE,
                size: 8,
                len: off::RW_SIZE,
            }))
        );
    }

    #[test]
    fn own_id_beyond_max_peers_has_no_layout() {
        let h = Header::propose(1 << 20, 4096, 2).unwrap();
        assert_eq!(
            h.layout(2, 1 << 20),
            Err(V1Error::Layout(LayoutError::BadOwnId))
        );
    }
}
