// SPDX-License-Identifier: GPL-2.0
//! `--v2`: the server is an ivshmem 2.0 device for stock QEMU (≥ 10.1)
//! guests attached over vfio-user, and host peers join it through the
//! usual server socket.
//!
//! One process owns the shared memory, laid out as ivshmem 2.0 has it
//! (`[state table][R/W section][output 0]..[output N-1]`), and the peer
//! table ([`crate::peers`]): guests (one per `--vfio-user` endpoint
//! connection) and host peers share one id space below Max Peers and ring
//! each other the same way, through every peer's eventfds.
//!
//! - [`config`]: the PCI configuration space (IDs, class and protocol, BARs,
//!   vendor and MSI-X capabilities);
//! - [`device`]: one guest's function: BAR0 registers, trapped BAR2
//!   accesses, reset, MSI-X set-up; independent of the socket;
//! - [`irq`]: Interrupt Control and one-shot, forwarding a guest's eventfds
//!   to QEMU's MSI-X eventfds;
//! - [`endpoint`]: the vfio-user socket of one guest (thin).
//!
//! Host peers learn the layout from the command line the device was
//! started with ([`V2Layout`], [`V2Config::host_layout`]): the server
//! protocol has no room for it, and it stays byte-compatible with QEMU's so
//! that v1-only peers can still join.

pub mod config;
pub mod device;
pub mod endpoint;
pub mod irq;
#[cfg(test)]
pub(crate) mod testutil;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ivshmem_peer::v2::V2Layout;
use ivshmem_peer::SharedMemory;
use lincell_shared::ivshmem::layout::{Layout, MAX_PEERS_LIMIT};

use crate::cli::MemoryBacking;
use crate::memory::SharedMemoryFile;
use crate::peers::{PeerTable, RingError, StateTable};
use crate::server::Server;
use device::{DeviceParams, Protection};
use endpoint::Endpoint;

/// Why the device refused an access or a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// Offset and length do not fit the region.
    OutOfRange,
    /// No such vfio region (or an empty one).
    NoSuchRegion(u32),
    /// An interrupt index, range or action the device does not have.
    BadIrq,
    /// A device parameter is invalid.
    BadParameter(&'static str),
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::OutOfRange => f.write_str("access outside the region"),
            DeviceError::NoSuchRegion(r) => write!(f, "no region {r}"),
            DeviceError::BadIrq => f.write_str("unsupported interrupt set-up"),
            DeviceError::BadParameter(what) => write!(f, "invalid device parameter: {what}"),
        }
    }
}

impl std::error::Error for DeviceError {}

impl From<DeviceError> for io::Error {
    fn from(e: DeviceError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// What the device did, for `SIGUSR1` and the tests.
#[derive(Debug, Default)]
pub struct Stats {
    doorbells: AtomicU64,
    dropped_doorbells: AtomicU64,
    delivered: AtomicU64,
    dropped_disabled: AtomicU64,
    dropped_no_vector: AtomicU64,
    refused_writes: AtomicU64,
    bad_accesses: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Doorbell register writes that rang a peer.
    pub doorbells: u64,
    /// Doorbell register writes dropped (absent peer or vector).
    pub dropped_doorbells: u64,
    /// Interrupts raised in guests.
    pub delivered: u64,
    /// Interrupts dropped because Interrupt Control was 0.
    pub dropped_disabled: u64,
    /// Interrupts dropped because QEMU had no eventfd for the vector.
    pub dropped_no_vector: u64,
    /// Writes to sections the guest may not write (strict mode), or past
    /// the last section.
    pub refused_writes: u64,
    /// Register accesses that are not aligned 32-bit words, writes to BAR1.
    pub bad_accesses: u64,
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "doorbells {} (dropped {}), interrupts delivered {} (dropped: disabled {}, no vector {}), refused writes {}, bad register accesses {}",
            self.doorbells,
            self.dropped_doorbells,
            self.delivered,
            self.dropped_disabled,
            self.dropped_no_vector,
            self.refused_writes,
            self.bad_accesses
        )
    }
}

/// Refused writes are logged for the first one and then every this many.
const REFUSED_LOG_EVERY: u64 = 1024;

impl Stats {
    /// The current counts.
    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            doorbells: g(&self.doorbells),
            dropped_doorbells: g(&self.dropped_doorbells),
            delivered: g(&self.delivered),
            dropped_disabled: g(&self.dropped_disabled),
            dropped_no_vector: g(&self.dropped_no_vector),
            refused_writes: g(&self.refused_writes),
            bad_accesses: g(&self.bad_accesses),
        }
    }

    pub(crate) fn count_doorbell(&self, delivered: bool) {
        let c = if delivered {
            &self.doorbells
        } else {
            &self.dropped_doorbells
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_delivery(&self, d: irq::Delivery) {
        let c = match d {
            irq::Delivery::Raised => &self.delivered,
            irq::Delivery::Disabled => &self.dropped_disabled,
            irq::Delivery::NoEventfd => &self.dropped_no_vector,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_bad_access(&self) {
        self.bad_accesses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self, peer: u16, offset: u64, len: u64) {
        let n = self.refused_writes.fetch_add(1, Ordering::Relaxed);
        if n % REFUSED_LOG_EVERY == 0 {
            eprintln!(
                "ivshmem-server: peer {peer}: refused write of {len} bytes at BAR2 offset {offset:#x} ({} refused so far)",
                n + 1
            );
        }
    }
}

/// What a device's function needs from the rest of the device: the other
/// peers' doorbells and the shared memory.
pub trait Fabric: Send + Sync {
    /// Rings `vector` of peer `target`.
    fn ring(&self, target: u16, vector: u16) -> Result<(), RingError>;
    /// Rings vector 0 of every peer except `except`.
    fn ring_others(&self, except: u16);
    /// The shared memory, mapped in this process.
    fn memory(&self) -> &SharedMemory;
}

/// One `--vfio-user` endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// The socket's path.
    pub path: PathBuf,
    /// The protocol of this guest's function, if not the device's
    /// (`--protocol`).
    pub protocol: Option<u16>,
}

impl From<PathBuf> for EndpointSpec {
    fn from(path: PathBuf) -> Self {
        Self {
            path,
            protocol: None,
        }
    }
}

/// Everything the command line says about a `--v2` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Config {
    /// Host peers' socket (`-S`).
    pub socket_path: PathBuf,
    /// Backing of the shared memory.
    pub memory: MemoryBacking,
    /// Max Peers.
    pub max_peers: u32,
    /// MSI-X vectors per peer.
    pub vectors: u16,
    /// R/W section size.
    pub rw_size: u64,
    /// Output section size per peer.
    pub output_size: u64,
    /// Protocol.
    pub protocol: u16,
    /// One-shot interrupt mode.
    pub one_shot: bool,
    /// Strict BAR2 protection.
    pub strict: bool,
    /// vfio-user sockets, one guest each.
    pub endpoints: Vec<EndpointSpec>,
    /// Log peers joining and leaving.
    pub verbose: bool,
}

/// The host page size.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

impl V2Config {
    /// What host peers must be told: the same numbers give the same
    /// layout (one definition, [`V2Layout::sizes`]).
    pub fn host_layout(&self) -> V2Layout {
        V2Layout {
            max_peers: self.max_peers,
            rw_size: self.rw_size,
            output_size: self.output_size,
        }
    }

    /// The layout (seen from peer 0), checked.
    pub fn layout(&self, page: u64) -> io::Result<Layout> {
        let bad = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
        if !(2..=MAX_PEERS_LIMIT).contains(&self.max_peers) {
            return Err(bad(format!(
                "--max-peers {} is out of range (2..={MAX_PEERS_LIMIT})",
                self.max_peers
            )));
        }
        Layout::new(
            self.host_layout().sizes(page),
            self.max_peers,
            0,
            page,
            u64::MAX,
        )
        .map_err(|e| bad(format!("invalid section sizes: {e} (page size {page})")))
    }

    /// The parameters every guest's function gets.
    pub fn device_params(&self) -> io::Result<DeviceParams> {
        let page = page_size();
        let layout = self.layout(page)?;
        let bar2_size = layout
            .total()
            .max(config::REG_BAR_SIZE)
            .checked_next_power_of_two()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "shared memory too large")
            })?;
        if !(1..=config::MAX_VECTORS).contains(&self.vectors) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "-n {}: 1 to {} vectors are supported",
                    self.vectors,
                    config::MAX_VECTORS
                ),
            ));
        }
        Ok(DeviceParams {
            max_peers: self.max_peers,
            vectors: self.vectors,
            protocol: self.protocol,
            one_shot: self.one_shot,
            protection: if self.strict {
                Protection::Strict
            } else {
                Protection::MapAll
            },
            layout,
            bar2_size,
            page_size: page,
        })
    }
}

/// The device's shared state: the peer table, the memory, the counters.
#[derive(Debug)]
pub struct Hub {
    table: Arc<Mutex<PeerTable>>,
    shm: SharedMemory,
    memory_fd: RawFd,
    params: DeviceParams,
    stats: Arc<Stats>,
    verbose: bool,
}

impl Hub {
    /// The peer table, locked (a panic elsewhere does not poison it: the
    /// table is consistent between calls).
    pub(crate) fn table(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The memory file's descriptor, valid while the hub lives.
    pub(crate) fn memory_fd(&self) -> RawFd {
        self.memory_fd
    }

    /// Logs if verbose.
    pub(crate) fn log(&self, msg: fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("ivshmem-server: {msg}");
        }
    }
}

impl Fabric for Hub {
    fn ring(&self, target: u16, vector: u16) -> Result<(), RingError> {
        self.table().ring(target, vector)
    }

    fn ring_others(&self, except: u16) {
        self.table().ring_others(except);
    }

    fn memory(&self) -> &SharedMemory {
        &self.shm
    }
}

/// A running `--v2` device: the host-peer server and the endpoints.
#[derive(Debug)]
pub struct V2Device {
    // Field order is drop order: the endpoints (and their sockets) go
    // first, then the server socket, then the memory.
    endpoints: Vec<Endpoint>,
    server: Server,
    hub: Arc<Hub>,
}

impl V2Device {
    /// Creates the memory, the host socket and every vfio-user socket; the
    /// device is ready (every socket exists) when this returns.
    pub fn new(config: &V2Config, stop: &'static AtomicBool) -> io::Result<Self> {
        let params = config.device_params()?;
        let memory = SharedMemoryFile::create(&config.memory, params.layout.total())?;
        let shm = SharedMemory::map(memory.fd())?;
        let memory_fd = memory.fd().as_raw_fd();
        let table = Arc::new(Mutex::new(PeerTable::new(
            memory,
            StateTable::V2(params.layout),
            config.vectors,
            params.max_peers,
            config.verbose,
        )));
        let hub = Arc::new(Hub {
            table: table.clone(),
            shm,
            memory_fd,
            params,
            stats: Arc::new(Stats::default()),
            verbose: config.verbose,
        });
        let server = Server::listen(&config.socket_path, table)?;
        let endpoints = config
            .endpoints
            .iter()
            .map(|e| {
                let mut params = hub.params;
                params.protocol = e.protocol.unwrap_or(params.protocol);
                Endpoint::start(&e.path, hub.clone(), params, stop)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            endpoints,
            server,
            hub,
        })
    }

    /// The vfio-user endpoints, in command-line order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The host peers' socket.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.hub.stats.snapshot()
    }

    /// The layout (seen from peer 0) and BAR2 size.
    pub fn params(&self) -> DeviceParams {
        self.hub.params
    }

    /// Serves until `stop` is set; prints the counters to stderr whenever
    /// `dump` is set (and clears it).
    ///
    /// Endpoint threads that are serving a guest are not waited for (the
    /// vfio-user loop blocks until QEMU goes away): the caller exits, and
    /// dropping the device removes every socket.
    pub fn run_until(&mut self, stop: &AtomicBool, dump: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::SeqCst) {
            self.server.poll_once(Some(Duration::from_millis(200)))?;
            if dump.swap(false, Ordering::SeqCst) {
                eprintln!(
                    "ivshmem-server: peers {:?}; {}",
                    self.server.peer_ids(),
                    self.stats()
                );
            }
        }
        Ok(())
    }
}
