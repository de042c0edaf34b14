// SPDX-License-Identifier: GPL-2.0
//! Be an ivshmem peer from an ordinary host process.
//!
//! An ivshmem server (QEMU's `contrib/ivshmem-server` or this project's
//! `ivshmem-server`) hands every connected peer the shared-memory file
//! descriptor plus one eventfd per interrupt vector of every peer. Guests
//! reach the same memory and doorbells through the `ivshmem-doorbell` PCI
//! device; a host process reaches them through [`Peer`]:
//!
//! ```no_run
//! use std::sync::atomic::Ordering;
//! use std::time::Duration;
//! use ivshmem_peer::Peer;
//! use lincell_shared::shmem::SharedMemory as _;
//!
//! let mut peer = Peer::connect("/tmp/ivshmem_socket")?;
//! peer.shm().region().store(0, 0xcafe_u32, Ordering::Release)?;
//! for other in peer.peers() {
//!     peer.ring(other, 0)?;
//! }
//! let count = peer.wait(0, Some(Duration::from_secs(1)))?;
//! println!("peer {} got {count} interrupt(s)", peer.id());
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The wire format lives in [`protocol`] and is shared with the server.
//! [`v2`] adds the ivshmem 2.0 view (sections, state table, own state) for
//! peers of an `ivshmem-server --v2` device.

pub mod eventfd;
pub mod peer;
pub mod poll;
pub mod protocol;
pub mod shm;
pub mod v2;

pub use peer::{ConnectOptions, Peer, PeerEvent};
pub use shm::SharedMemory;
