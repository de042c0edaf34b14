// SPDX-License-Identifier: GPL-2.0

//! Where `lincell latency`'s two rings are (`--placement`).
//!
//! Each ring has a producer block, written by its sender, and a consumer
//! block, written by its receiver ([`lincell_shared::channel`]). Where the
//! memory has output sections (ivshmem 2.0, lincell's v1 layout) each side
//! keeps the two blocks it writes in its own output section, which the
//! other side can read but not write, so neither can scribble over what the
//! other publishes; otherwise all four blocks share the R/W section.
//!
//! ```text
//! output placement, in each side's own output section:
//!   +0x0000 producer block of the ring this side sends on (64 x 64 B)
//!   +0x1040 consumer block of the ring this side receives on
//!   +0x1080 64 zero bytes: the initiator's stand-in consumer block until
//!           the responder's hello names its output section
//! rw placement, at --shm-offset in the R/W section:
//!   +0x0000 initiator -> responder, producer block
//!   +0x1040 initiator -> responder, consumer block
//!   +0x1080 responder -> initiator, producer block
//!   +0x20c0 responder -> initiator, consumer block   (end: +0x2100)
//! ```
//!
//! With output placement a side does not know the other's output section
//! until it finds the other's hello there: the responder looks for an
//! initiator's ring in every other peer's output section, the initiator
//! for the responder's answer.

use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;

use lincell_shared::channel::CONSUMER_BLOCK_SIZE;
use lincell_shared::shmem::{RawRegion, SharedMemory};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ivshmem::endpoint::{Endpoint, ShmOffset};

/// R/W placement: the four blocks.
const TX_PRODUCER: usize = 0;
const TX_CONSUMER: usize = 0x1040;
const RX_PRODUCER: usize = 0x1080;
const RX_CONSUMER: usize = 0x20c0;
/// Bytes the rings take in the R/W section.
const RW_AREA: usize = RX_CONSUMER + CONSUMER_BLOCK_SIZE;
/// Output placement: the blocks in each side's own output section.
const OUT_PRODUCER: usize = 0;
const OUT_CONSUMER: usize = 0x1040;
const OUT_UNBOUND: usize = 0x1080;
/// Bytes the rings take in each output section.
const OUT_AREA: usize = OUT_UNBOUND + CONSUMER_BLOCK_SIZE;

/// Where the rings go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Placement {
    /// Output sections if the memory has them (large enough), else the
    /// R/W section.
    Auto,
    /// All in the R/W section, at --shm-offset.
    Rw,
    /// Each side's blocks in its own output section.
    Output,
}

impl Placement {
    /// The keyword, as in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Placement::Auto => "auto",
            Placement::Rw => "rw",
            Placement::Output => "output",
        }
    }
}

/// Which side of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Initiator,
    Responder,
}

/// Where the other side may have put its producer block, and where it
/// keeps the consumer block of the ring this side sends on.
pub(super) struct Link<'r> {
    /// The other side's memory.
    pub(super) theirs: &'r RawRegion,
    /// Its producer block, in `theirs`.
    pub(super) their_producer: usize,
    /// Its consumer block of this side's ring, in `theirs`.
    pub(super) their_consumer: usize,
}

/// The rings' memory of one side (see the module documentation).
pub(super) struct Rings {
    placement: Placement,
    /// The R/W area, or the own output section's.
    own: RawRegion,
    /// Output placement: the other peers' output sections (read-only).
    peers: Vec<RawRegion>,
}

/// A region copied out of `ep`'s mappings: `len` bytes at `offset`.
///
/// # Safety
///
/// Valid while `ep` lives: the caller drops the region first.
unsafe fn window(ep: &dyn Endpoint, offset: usize, len: usize, write: bool) -> Option<RawRegion> {
    let (m, o) = ep.shm().region_at(offset, len, write).ok()?;
    let p = NonNull::new(m.ptr(o, len).ok()?)?;
    // SAFETY: `len` bytes at `p` are inside `m`, one of `ep`'s mappings,
    // valid while `ep` lives (this function's contract); every access goes
    // through the region's atomics.
    Some(unsafe { RawRegion::new(p, len) })
}

impl Rings {
    /// Finds the rings' memory in `ep` for `want` (`at`: the R/W placement's
    /// offset).
    ///
    /// # Safety
    ///
    /// The regions are valid only while `ep` lives: drop `self` first.
    pub(super) unsafe fn locate(ep: &dyn Endpoint, want: Placement, at: ShmOffset) -> Result<Self> {
        let sections = ep.output_sections();
        let own_section = usize::try_from(ep.id())
            .ok()
            .and_then(|i| sections.get(i).copied());
        let has_output = own_section.is_some_and(|(_, len)| len >= OUT_AREA);
        let placement = match want {
            Placement::Auto if has_output => Placement::Output,
            Placement::Auto => Placement::Rw,
            Placement::Output if !has_output => {
                return Err(Error::Usage(format!(
                    "--placement output: {} has no output section of at least {OUT_AREA} bytes",
                    ep.describe()
                )))
            }
            p => p,
        };
        if placement == Placement::Rw {
            // SAFETY: the region's lifetime is passed on to the caller.
            let own = unsafe { rw_region(ep, at) }?;
            return Ok(Rings {
                placement,
                own,
                peers: Vec::new(),
            });
        }
        let (own_off, _) = own_section.unwrap_or_default();
        // SAFETY: passed on to the caller.
        let own = unsafe { window(ep, own_off, OUT_AREA, true) }.ok_or_else(|| {
            Error::Usage(format!(
                "{}: the own output section is not mapped writable",
                ep.describe()
            ))
        })?;
        for o in (OUT_UNBOUND..OUT_AREA).step_by(4) {
            own.store(o, 0u32, Relaxed)
                .map_err(|e| Error::Failed(format!("{}: {e}", ep.describe())))?;
        }
        let peers = sections
            .iter()
            .enumerate()
            .filter(|&(p, _)| Some(p) != usize::try_from(ep.id()).ok())
            .filter(|&(_, &(_, len))| len >= OUT_AREA)
            // SAFETY: passed on to the caller.
            .filter_map(|(_, &(off, _))| unsafe { window(ep, off, OUT_AREA, false) })
            .collect();
        Ok(Rings {
            placement,
            own,
            peers,
        })
    }

    /// Where they are: [`Placement::Rw`] or [`Placement::Output`].
    pub(super) fn placement(&self) -> Placement {
        self.placement
    }

    /// The memory this side writes.
    pub(super) fn own(&self) -> &RawRegion {
        &self.own
    }

    /// Offsets in [`Rings::own`] of this side's producer block and of its
    /// consumer block of the other side's ring.
    pub(super) fn mine(&self, role: Role) -> (usize, usize) {
        match (self.placement, role) {
            (Placement::Rw, Role::Initiator) => (TX_PRODUCER, RX_CONSUMER),
            (Placement::Rw, Role::Responder) => (RX_PRODUCER, TX_CONSUMER),
            _ => (OUT_PRODUCER, OUT_CONSUMER),
        }
    }

    /// Where the initiator's ring looks for its receiver's consumer block
    /// before the responder answered ([`Producer::rebind`] then): the real
    /// one in the R/W section, a zeroed stand-in in the own output section.
    ///
    /// [`Producer::rebind`]: lincell_shared::channel::Producer::rebind
    pub(super) fn unbound(&self) -> (&RawRegion, usize) {
        match self.placement {
            Placement::Rw => (&self.own, TX_CONSUMER),
            _ => (&self.own, OUT_UNBOUND),
        }
    }

    /// Every place the other side may be.
    pub(super) fn links(&self, role: Role) -> Vec<Link<'_>> {
        match (self.placement, role) {
            (Placement::Rw, Role::Initiator) => vec![Link {
                theirs: &self.own,
                their_producer: RX_PRODUCER,
                their_consumer: TX_CONSUMER,
            }],
            (Placement::Rw, Role::Responder) => vec![Link {
                theirs: &self.own,
                their_producer: TX_PRODUCER,
                their_consumer: RX_CONSUMER,
            }],
            _ => self
                .peers
                .iter()
                .map(|theirs| Link {
                    theirs,
                    their_producer: OUT_PRODUCER,
                    their_consumer: OUT_CONSUMER,
                })
                .collect(),
        }
    }
}

/// The R/W placement's memory: `RW_AREA` bytes at `at`, which must be
/// inside the R/W section.
///
/// # Safety
///
/// The region is valid only while `ep` lives (its mapping): the caller
/// drops it first.
unsafe fn rw_region(ep: &dyn Endpoint, at: ShmOffset) -> Result<RawRegion> {
    let (rw_off, _) = ep.rw_section();
    let (ptr, len) = ep.rw_ptr().ok_or_else(|| {
        Error::Usage(format!(
            "{}: the R/W section is not mapped writable",
            ep.describe()
        ))
    })?;
    let start = at.resolve(ep).checked_sub(rw_off);
    let inside = start
        .and_then(|s| s.checked_add(RW_AREA))
        .is_some_and(|e| e <= len);
    let (Some(start), true) = (start, inside) else {
        return Err(Error::Usage(format!(
            "--shm-offset: the rings ({RW_AREA} bytes) must lie inside the R/W section ({len} bytes)"
        )));
    };
    // SAFETY: `start + RW_AREA <= len` bytes of the mapping at `ptr`, valid
    // while `ep` lives (this function's contract).
    let base = unsafe { NonNull::new_unchecked(ptr.add(start)) };
    // SAFETY: as above; every access goes through the region's atomics.
    Ok(unsafe { RawRegion::new(base, RW_AREA) })
}
