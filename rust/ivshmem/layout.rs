// SPDX-License-Identifier: GPL-2.0

//! Sections of an ivshmem shared-memory region.
//!
//! The ivshmem 2.0 region is, from its base:
//!
//! ```text
//! [state table][R/W section][output peer 0][output peer 1]...[output peer n-1]
//! ```
//!
//! The state table (one little-endian `u32` per peer, read-only for all) is
//! mandatory; the R/W section (writable by all) may be empty; every peer has
//! an output section of the same size, writable only by its owner and
//! readable by all. Each size is rounded up to a page so that each section
//! can be mapped with its own permissions.
//!
//! The sizes come from the device (v2: the vendor capability, which a
//! hypervisor fills in) or from a header in memory a peer can write (v1), so
//! [`Layout::new`] treats them as untrusted: every sum is checked, and the
//! whole layout must fit the memory the driver actually mapped.

use core::fmt;

/// Section sizes as the device reports them (bytes, before page rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionSizes {
    /// State table size (non-zero; at least 4 bytes per peer).
    pub state_table: u64,
    /// R/W section size (may be 0).
    pub rw: u64,
    /// Size of each peer's output section (may be 0).
    pub output: u64,
}

/// A byte range inside the shared-memory region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// Offset from the start of the region.
    pub offset: u64,
    /// Length in bytes (page-rounded; 0 for an absent section).
    pub len: u64,
}

impl Section {
    /// One past the last byte.
    pub const fn end(self) -> u64 {
        self.offset + self.len
    }

    /// True when `[offset, offset + len)` lies inside this section.
    pub fn contains(self, offset: u64, len: u64) -> bool {
        match offset.checked_add(len) {
            Some(end) => offset >= self.offset && end <= self.end(),
            None => false,
        }
    }
}

/// What a section is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    /// The state table.
    StateTable,
    /// The common R/W section.
    ReadWrite,
    /// The output section of one peer.
    Output {
        /// Owner of the output section.
        peer: u32,
    },
}

/// How the local peer may access a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only: the state table and other peers' output sections.
    ReadOnly,
    /// Read/write: the R/W section and the own output section.
    ReadWrite,
}

/// Why a layout is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// The page size is not a power of two.
    BadPageSize,
    /// `max_peers` is 0 or above 65536.
    BadMaxPeers,
    /// The own peer id is not below `max_peers`.
    BadOwnId,
    /// The state table cannot hold one `u32` per peer.
    StateTableTooSmall,
    /// A size or offset overflows 64 bits.
    Overflow,
    /// The sections do not fit into the mapped region.
    TooLarge,
    /// A range does not fall inside exactly one section.
    NotInOneSection,
    /// A section size is not a multiple of the page size: the sections
    /// could not be mapped with their own permissions, and rounding them
    /// would put every later section at another offset than the device's.
    NotPageMultiple,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LayoutError::BadPageSize => "page size is not a power of two",
            LayoutError::BadMaxPeers => "maximum peers out of range (1..=65536)",
            LayoutError::BadOwnId => "own id is not below the maximum peers",
            LayoutError::StateTableTooSmall => "state table smaller than 4 bytes per peer",
            LayoutError::Overflow => "section sizes overflow",
            LayoutError::TooLarge => "sections do not fit into the shared memory",
            LayoutError::NotInOneSection => "range is not inside one section",
            LayoutError::NotPageMultiple => "a section size is not a multiple of the page size",
        })
    }
}

/// Highest number of peers ivshmem 2.0 allows.
pub const MAX_PEERS_LIMIT: u32 = 1 << 16;

/// A validated section layout.
///
/// # Invariants
///
/// Every section lies inside `[0, total)`, `total` is at most the region
/// length given to [`Layout::new`], `own_id < max_peers`, and no offset
/// computation over these fields overflows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    state_table: Section,
    rw: Section,
    output_base: u64,
    output_len: u64,
    max_peers: u32,
    own_id: u32,
    total: u64,
}

/// `value` if it is a multiple of `page` (a power of two, checked by the
/// caller). The device defines the offsets as plain sums of the sizes (the
/// ivshmem 2.0 specification has the provider round them to mappable
/// pages), so a size that is not a page multiple — on a 16K- or 64K-page
/// kernel, a 4K-multiple — is refused, never rounded.
fn page_multiple(value: u64, page: u64) -> Result<u64, LayoutError> {
    if value & (page - 1) == 0 {
        Ok(value)
    } else {
        Err(LayoutError::NotPageMultiple)
    }
}

impl Layout {
    /// Validates `sizes` for a region of `region_len` bytes with `max_peers`
    /// peers, seen from peer `own_id`; every size must be a multiple of
    /// `page_size`.
    pub fn new(
        sizes: SectionSizes,
        max_peers: u32,
        own_id: u32,
        page_size: u64,
        region_len: u64,
    ) -> Result<Self, LayoutError> {
        if !page_size.is_power_of_two() {
            return Err(LayoutError::BadPageSize);
        }
        if max_peers == 0 || max_peers > MAX_PEERS_LIMIT {
            return Err(LayoutError::BadMaxPeers);
        }
        if own_id >= max_peers {
            return Err(LayoutError::BadOwnId);
        }
        if sizes.state_table < 4 * u64::from(max_peers) {
            return Err(LayoutError::StateTableTooSmall);
        }
        let st_len = page_multiple(sizes.state_table, page_size)?;
        let rw_len = page_multiple(sizes.rw, page_size)?;
        let out_len = page_multiple(sizes.output, page_size)?;
        let output_base = st_len.checked_add(rw_len).ok_or(LayoutError::Overflow)?;
        let total = out_len
            .checked_mul(u64::from(max_peers))
            .and_then(|o| o.checked_add(output_base))
            .ok_or(LayoutError::Overflow)?;
        if total > region_len {
            return Err(LayoutError::TooLarge);
        }
        // INVARIANT: all sections end at or before `total <= region_len`,
        // and `total` itself was computed without overflow.
        Ok(Layout {
            state_table: Section {
                offset: 0,
                len: st_len,
            },
            rw: Section {
                offset: st_len,
                len: rw_len,
            },
            output_base,
            output_len: out_len,
            max_peers,
            own_id,
            total,
        })
    }

    /// Number of peers (and of output sections).
    pub const fn max_peers(&self) -> u32 {
        self.max_peers
    }

    /// The local peer's id.
    pub const fn own_id(&self) -> u32 {
        self.own_id
    }

    /// Bytes covered by all sections.
    pub const fn total(&self) -> u64 {
        self.total
    }

    /// The state table.
    pub const fn state_table(&self) -> Section {
        self.state_table
    }

    /// The common R/W section.
    pub const fn rw(&self) -> Section {
        self.rw
    }

    /// The output section of `peer`, or `None` for a peer that cannot exist.
    pub fn output(&self, peer: u32) -> Option<Section> {
        if peer >= self.max_peers {
            return None;
        }
        // No overflow: `output_base + max_peers * output_len == total`.
        Some(Section {
            offset: self.output_base + u64::from(peer) * self.output_len,
            len: self.output_len,
        })
    }

    /// The local peer's output section.
    pub fn own_output(&self) -> Section {
        Section {
            offset: self.output_base + u64::from(self.own_id) * self.output_len,
            len: self.output_len,
        }
    }

    /// Byte offset of `peer`'s entry in the state table.
    pub fn state_offset(&self, peer: u32) -> Option<u64> {
        (peer < self.max_peers).then(|| u64::from(peer) * 4)
    }

    /// How the local peer may access a section.
    pub const fn access(&self, kind: SectionKind) -> Access {
        match kind {
            SectionKind::StateTable => Access::ReadOnly,
            SectionKind::ReadWrite => Access::ReadWrite,
            SectionKind::Output { peer } if peer == self.own_id => Access::ReadWrite,
            SectionKind::Output { .. } => Access::ReadOnly,
        }
    }

    /// Finds the one section holding all of `[offset, offset + len)`.
    ///
    /// Used to decide whether a mapping request is allowed and with which
    /// permissions; an empty range or one that straddles two sections is
    /// refused, because the two sides might have different permissions.
    pub fn lookup(&self, offset: u64, len: u64) -> Result<(SectionKind, Access), LayoutError> {
        if len == 0 {
            return Err(LayoutError::NotInOneSection);
        }
        let kind = if self.state_table.contains(offset, len) {
            SectionKind::StateTable
        } else if self.rw.len != 0 && self.rw.contains(offset, len) {
            SectionKind::ReadWrite
        } else if self.output_len != 0 && offset >= self.output_base {
            let rel = offset - self.output_base;
            let idx = rel / self.output_len;
            // CAST: `idx < max_peers <= 65536` once the contains() check holds,
            // and a larger quotient fails the bound below before use.
            if idx >= u64::from(self.max_peers) {
                return Err(LayoutError::NotInOneSection);
            }
            let peer = idx as u32;
            match self.output(peer) {
                Some(s) if s.contains(offset, len) => SectionKind::Output { peer },
                _ => return Err(LayoutError::NotInOneSection),
            }
        } else {
            return Err(LayoutError::NotInOneSection);
        };
        Ok((kind, self.access(kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn sizes(st: u64, rw: u64, out: u64) -> SectionSizes {
        SectionSizes {
            state_table: st,
            rw,
            output: out,
        }
    }

    #[test]
    fn jailhouse_like_layout() {
        // 2 peers, 4 KiB state table, 64 KiB R/W, 16 KiB per output.
        let l = Layout::new(sizes(0x1000, 0x10000, 0x4000), 2, 1, PAGE, 1 << 20).unwrap();
        assert_eq!(
            l.state_table(),
            Section {
                offset: 0,
                len: 0x1000
            }
        );
        assert_eq!(
            l.rw(),
            Section {
                offset: 0x1000,
                len: 0x10000
            }
        );
        assert_eq!(
            l.output(0),
            Some(Section {
                offset: 0x11000,
                len: 0x4000
            })
        );
        assert_eq!(
            l.output(1),
            Some(Section {
                offset: 0x15000,
                len: 0x4000
            })
        );
        assert_eq!(l.output(2), None);
        assert_eq!(l.own_output(), l.output(1).unwrap());
        assert_eq!(l.total(), 0x19000);
    }

    #[test]
    fn sizes_must_be_page_multiples() {
        // Rounding these would move the R/W and output sections away from
        // where the device has them; they are refused instead.
        for (st, rw, out) in [(8, 4096, 4096), (4096, 1, 4096), (4096, 4096, 4097)] {
            assert_eq!(
                Layout::new(sizes(st, rw, out), 2, 0, PAGE, 1 << 20),
                Err(LayoutError::NotPageMultiple),
                "{st:#x} {rw:#x} {out:#x}"
            );
        }
        // 4K multiples are not 16K multiples (a 16K-page arm64 kernel).
        assert_eq!(
            Layout::new(sizes(0x1000, 0x3000, 0x1000), 2, 0, 0x4000, 1 << 20),
            Err(LayoutError::NotPageMultiple)
        );
        let l = Layout::new(sizes(0x4000, 0xc000, 0x4000), 2, 0, 0x4000, 1 << 20).unwrap();
        assert_eq!(
            l.rw(),
            Section {
                offset: 0x4000,
                len: 0xc000
            }
        );
        assert_eq!(l.total(), 0x4000 + 0xc000 + 2 * 0x4000);
    }

    #[test]
    fn permissions() {
        let l = Layout::new(sizes(0x1000, 0x1000, 0x1000), 3, 1, PAGE, 1 << 20).unwrap();
        assert_eq!(
            l.lookup(0, 4),
            Ok((SectionKind::StateTable, Access::ReadOnly))
        );
        assert_eq!(
            l.lookup(0x1000, 0x1000),
            Ok((SectionKind::ReadWrite, Access::ReadWrite))
        );
        assert_eq!(
            l.lookup(0x2000, 0x1000),
            Ok((SectionKind::Output { peer: 0 }, Access::ReadOnly))
        );
        assert_eq!(
            l.lookup(0x3000, 0x1000),
            Ok((SectionKind::Output { peer: 1 }, Access::ReadWrite))
        );
        assert_eq!(
            l.lookup(0x4fff, 1),
            Ok((SectionKind::Output { peer: 2 }, Access::ReadOnly))
        );
    }

    #[test]
    fn straddling_and_outside_ranges_are_refused() {
        let l = Layout::new(sizes(0x1000, 0x1000, 0x1000), 2, 0, PAGE, 1 << 20).unwrap();
        let bad = Err(LayoutError::NotInOneSection);
        assert_eq!(l.lookup(0x0fff, 2), bad);
        assert_eq!(l.lookup(0x1000, 0x2000), bad);
        assert_eq!(l.lookup(0x4000, 1), bad);
        assert_eq!(l.lookup(0, 0), bad);
        assert_eq!(l.lookup(u64::MAX, 2), bad);
        assert_eq!(l.lookup(0x2000, u64::MAX), bad);
    }

    #[test]
    fn empty_sections_are_never_found() {
        let l = Layout::new(sizes(0x1000, 0, 0), 2, 0, PAGE, 0x1000).unwrap();
        assert_eq!(l.rw().len, 0);
        assert_eq!(l.lookup(0x1000, 1), Err(LayoutError::NotInOneSection));
        assert_eq!(l.total(), 0x1000);
    }

    #[test]
    fn untrusted_sizes_are_rejected() {
        let r = |s, peers, id, region| Layout::new(s, peers, id, PAGE, region);
        assert_eq!(
            r(sizes(0x1000, 0, 0), 0, 0, 1 << 20),
            Err(LayoutError::BadMaxPeers)
        );
        assert_eq!(
            r(sizes(0x1000, 0, 0), 65537, 0, 1 << 20),
            Err(LayoutError::BadMaxPeers)
        );
        assert_eq!(
            r(sizes(0x1000, 0, 0), 2, 2, 1 << 20),
            Err(LayoutError::BadOwnId)
        );
        assert_eq!(
            r(sizes(4, 0, 0), 2, 0, 1 << 20),
            Err(LayoutError::StateTableTooSmall)
        );
        assert_eq!(
            r(sizes(0, 0, 0), 2, 0, 1 << 20),
            Err(LayoutError::StateTableTooSmall)
        );
        assert_eq!(
            r(sizes(u64::MAX, 0, 0), 2, 0, u64::MAX),
            Err(LayoutError::NotPageMultiple)
        );
        assert_eq!(
            r(sizes(0x2000, !0xfff, 0), 2, 0, u64::MAX),
            Err(LayoutError::Overflow)
        );
        assert_eq!(
            r(sizes(0x40000, 0, 1 << 60), 65536, 0, u64::MAX),
            Err(LayoutError::Overflow)
        );
        assert_eq!(
            r(sizes(0x1000, 0x1000, 0), 2, 0, 0x1fff),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(
            Layout::new(sizes(0x1000, 0, 0), 2, 0, 3000, 1 << 20),
            Err(LayoutError::BadPageSize)
        );
    }

    #[test]
    fn state_offsets() {
        let l = Layout::new(sizes(0x1000, 0, 0), 4, 0, PAGE, 0x1000).unwrap();
        assert_eq!(l.state_offset(3), Some(12));
        assert_eq!(l.state_offset(4), None);
    }

    /// Every accepted layout keeps every section inside the region, and
    /// `lookup` agrees with `output` for every peer (a cheap exhaustive fuzz
    /// over small sizes; the cargo-fuzz target covers the rest).
    #[test]
    fn accepted_layouts_stay_inside_region() {
        for peers in 1..=5u32 {
            for st in [0u64, 4, 8, 20, 4096, 4097] {
                for rw in [0u64, 1, 4096, 9000] {
                    for out in [0u64, 1, 4096, 5000] {
                        for region in [4096u64, 16384, 65536] {
                            let Ok(l) =
                                Layout::new(sizes(st, rw, out), peers, peers - 1, PAGE, region)
                            else {
                                continue;
                            };
                            assert!(l.total() <= region);
                            assert!(l.rw().end() <= region);
                            for p in 0..peers {
                                let s = l.output(p).unwrap();
                                assert!(s.end() <= region);
                                if s.len > 0 {
                                    assert_eq!(
                                        l.lookup(s.offset, s.len).unwrap().0,
                                        SectionKind::Output { peer: p }
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
