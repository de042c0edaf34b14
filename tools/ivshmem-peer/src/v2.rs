// SPDX-License-Identifier: GPL-2.0
//! The ivshmem 2.0 view of a host peer: sections, the state table, and
//! setting the own state.
//!
//! An `ivshmem-server --v2` device lays its memory out as ivshmem 2.0 does
//! (`[state table][R/W section][output 0]..[output N-1]`). The server
//! protocol carries no layout (it is QEMU's, unchanged), so a host peer is
//! given the same numbers the device was started with ([`V2Layout`]:
//! `--max-peers`, `--rw-size`, `--output-size`) and checks them against
//! the memory it received:
//!
//! ```no_run
//! use ivshmem_peer::v2::V2Layout;
//! use ivshmem_peer::Peer;
//!
//! let peer = Peer::connect("/tmp/ivshmem_socket")?;
//! let v2 = peer.v2(V2Layout { max_peers: 3, rw_size: 1 << 20, output_size: 64 << 10 })?;
//! v2.set_state(1)?; // own entry, then vector 0 of every other peer
//! println!("states: {:?}, R/W at {:#x}", v2.states()?, v2.layout().rw().offset);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The view does not change v1 use of [`Peer`] in any way.

use std::io;
use std::sync::atomic::{fence, Ordering};

use lincell_shared::ivshmem::layout::{Layout, Section, SectionSizes};
use lincell_shared::shmem::SharedMemory as _;

use crate::Peer;

/// What an ivshmem 2.0 device's command line says about its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V2Layout {
    /// Max Peers (`--max-peers`).
    pub max_peers: u32,
    /// R/W section size (`--rw-size`).
    pub rw_size: u64,
    /// Output section size per peer (`--output-size`).
    pub output_size: u64,
}

/// The host page size.
fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

impl V2Layout {
    /// The section sizes: the state table holds 4 bytes per peer, rounded
    /// up to a page (`page` a power of two).
    pub fn sizes(&self, page: u64) -> SectionSizes {
        SectionSizes {
            state_table: (4 * u64::from(self.max_peers)).next_multiple_of(page.max(1)),
            rw: self.rw_size,
            output: self.output_size,
        }
    }

    /// The validated layout seen from peer `own_id`, which must fit
    /// `region_len` bytes.
    pub fn layout(&self, own_id: u32, page: u64, region_len: u64) -> io::Result<Layout> {
        Layout::new(self.sizes(page), self.max_peers, own_id, page, region_len).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ivshmem 2.0 layout {self:?}: {e}"),
            )
        })
    }
}

/// A [`Peer`] seen as an ivshmem 2.0 peer.
#[derive(Debug)]
pub struct V2View<'a> {
    peer: &'a Peer,
    layout: Layout,
}

impl Peer {
    /// The ivshmem 2.0 view of this peer, for a device started with
    /// `layout`. Fails if the layout does not fit the memory the server
    /// handed out or our id is not below Max Peers.
    pub fn v2(&self, layout: V2Layout) -> io::Result<V2View<'_>> {
        // CAST: a mapping length fits in u64.
        let len = self.shm().len() as u64;
        let layout = layout.layout(u32::from(self.id()), page_size(), len)?;
        Ok(V2View { peer: self, layout })
    }
}

impl V2View<'_> {
    /// The sections (own output section = this peer's).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The R/W section.
    pub fn rw(&self) -> Section {
        self.layout.rw()
    }

    /// This peer's output section.
    pub fn own_output(&self) -> Section {
        self.layout.own_output()
    }

    /// The state-table entry of `peer`.
    pub fn state_of(&self, peer: u32) -> io::Result<u32> {
        let at = self
            .layout
            .state_offset(peer)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no peer {peer} (max peers {})", self.layout.max_peers()),
                )
            })?;
        Ok(self.peer.shm().region().load(at, Ordering::Acquire)?)
    }

    /// Every entry of the state table, by peer id.
    pub fn states(&self) -> io::Result<Vec<u32>> {
        (0..self.layout.max_peers())
            .map(|p| self.state_of(p))
            .collect()
    }

    /// This peer's state.
    pub fn state(&self) -> io::Result<u32> {
        self.state_of(self.layout.own_id())
    }

    /// Sets this peer's state as the device does for a guest's State
    /// write: stores the entry and, if it changed, rings vector 0 of every
    /// other peer. Returns whether it changed.
    pub fn set_state(&self, value: u32) -> io::Result<bool> {
        let own = self.layout.own_id();
        if self.state_of(own)? == value {
            return Ok(false);
        }
        let at = self
            .layout
            .state_offset(own)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or_else(|| io::Error::other("own state entry out of range"))?;
        self.peer
            .shm()
            .region()
            .store(at, value, Ordering::Release)?;
        // The entry is visible before any peer's interrupt.
        fence(Ordering::SeqCst);
        for other in self.peer.peers() {
            // A peer that left in the meantime is no error.
            match self.peer.ring(other, 0) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_the_state_table_to_a_page() {
        let l = V2Layout {
            max_peers: 3,
            rw_size: 0x10000,
            output_size: 0x4000,
        };
        assert_eq!(
            l.sizes(4096),
            SectionSizes {
                state_table: 4096,
                rw: 0x10000,
                output: 0x4000
            }
        );
        let big = V2Layout {
            max_peers: 2000,
            ..l
        };
        assert_eq!(big.sizes(4096).state_table, 8192);
        let layout = l.layout(2, 4096, 0x1d000).unwrap();
        assert_eq!(layout.own_output().offset, 0x1000 + 0x10000 + 2 * 0x4000);
        assert!(l.layout(2, 4096, 0x1c000).is_err(), "does not fit");
        assert!(l.layout(3, 4096, 1 << 20).is_err(), "id not below max");
        let odd = V2Layout { rw_size: 100, ..l };
        assert!(odd.layout(0, 4096, 1 << 20).is_err(), "not a page multiple");
    }
}
