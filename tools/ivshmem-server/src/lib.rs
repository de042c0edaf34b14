// SPDX-License-Identifier: GPL-2.0
//! ivshmem-server: hands shared memory and interrupt eventfds to ivshmem peers.
//!
//! A drop-in replacement for QEMU's `contrib/ivshmem-server`, speaking the
//! same protocol (see [`ivshmem_peer::protocol`]). The binary is a thin
//! wrapper; the pieces live here so that tests can drive a [`Server`] in a
//! thread:
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use ivshmem_server::{Config, MemoryBacking, Server};
//!
//! let config = Config {
//!     socket_path: "/tmp/ivshmem_socket".into(),
//!     memory: MemoryBacking::ShmName("ivshmem".into()),
//!     size: 4 << 20,
//!     vectors: 2,
//!     verbose: true,
//! };
//! let mut server = Server::new(&config)?;
//! server.run_until(&AtomicBool::new(false))?;
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod cli;
pub mod daemon;
pub mod memory;
pub mod peers;
pub mod server;
pub mod signals;
pub mod v2;

pub use cli::{parse_size, Cli, Config, MemoryBacking};
pub use server::Server;
