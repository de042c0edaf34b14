// SPDX-License-Identifier: GPL-2.0
//! The peer table: the id space, every peer's eventfds, joining and leaving.
//!
//! Both kinds of peer live here, in one id space: host peers, which are
//! connected to the server socket and speak the ivshmem-server protocol,
//! and (with `--v2`) guests attached through vfio-user, which the device
//! process itself represents. Every peer has one eventfd per vector,
//! created here; ringing vector V of peer P is a write to P's eventfd V,
//! whoever rings. Host peers are told of every peer that joins (with its
//! eventfds) or leaves; guests learn nothing from here (the device model
//! raises their interrupts).

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ivshmem_peer::protocol::{send_msg, PROTOCOL_VERSION, SHM_MESSAGE};
use ivshmem_peer::{eventfd, SharedMemory};
use lincell_shared::ivshmem::layout::Layout;
use lincell_shared::ivshmem::v1layout;
use lincell_shared::shmem::SharedMemory as _;

use crate::memory::SharedMemoryFile;

/// How long a send to a client may block before the client is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Which state table, if any, the server maintains for peers that leave.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StateTable {
    /// lincell's v1 layout, if the memory holds one (found at run time).
    V1Layout,
    /// The ivshmem 2.0 state table at the start of the memory.
    V2(Layout),
}

/// One peer.
#[derive(Debug)]
struct Client {
    /// The server-protocol connection; `None` for a vfio-user guest.
    stream: Option<UnixStream>,
    /// The peer's eventfds, one per vector.
    vectors: Vec<OwnedFd>,
}

/// Why a doorbell was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// No peer with that id is connected.
    NoSuchPeer,
    /// The peer has no such vector.
    NoSuchVector,
    /// Writing the eventfd failed.
    Failed,
}

/// Every connected peer, by id.
#[derive(Debug)]
pub(crate) struct PeerTable {
    memory: SharedMemoryFile,
    /// The memory mapped here too, to maintain the state table of peers
    /// that leave (`None` if it could not be mapped).
    shm: Option<SharedMemory>,
    state_table: StateTable,
    vectors: u16,
    verbose: bool,
    clients: BTreeMap<u16, Client>,
    /// Where the search for the next free id starts (round robin).
    next_id: u32,
    /// Ids are below this (65536, or Max Peers of an ivshmem 2.0 device).
    id_limit: u32,
}

impl PeerTable {
    /// An empty table over `memory`.
    pub(crate) fn new(
        memory: SharedMemoryFile,
        state_table: StateTable,
        vectors: u16,
        id_limit: u32,
        verbose: bool,
    ) -> Self {
        let shm = SharedMemory::map(memory.fd()).ok();
        Self {
            memory,
            shm,
            state_table,
            vectors,
            verbose,
            clients: BTreeMap::new(),
            next_id: 0,
            id_limit: id_limit.clamp(1, 1 << 16),
        }
    }

    /// Ids of the connected peers, ascending.
    pub(crate) fn peer_ids(&self) -> Vec<u16> {
        self.clients.keys().copied().collect()
    }

    /// Ids and raw socket descriptors of the host peers, for `poll`.
    pub(crate) fn host_fds(&self) -> Vec<(u16, std::os::fd::RawFd)> {
        use std::os::fd::AsRawFd;
        self.clients
            .iter()
            .filter_map(|(&id, c)| c.stream.as_ref().map(|s| (id, s.as_raw_fd())))
            .collect()
    }

    /// Logs if verbose.
    pub(crate) fn log(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("ivshmem-server: {msg}");
        }
    }

    /// Reads (and discards) whatever a readable host peer sent; false on EOF
    /// or error, which means it is gone. Clients have nothing to say in this
    /// protocol.
    pub(crate) fn client_alive(&self, id: u16) -> bool {
        let Some(stream) = self.clients.get(&id).and_then(|c| c.stream.as_ref()) else {
            return false;
        };
        let mut buf = [0u8; 256];
        use std::os::fd::AsRawFd;
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let r = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match r {
            0 => false,
            r if r > 0 => true,
            _ => matches!(
                io::Error::last_os_error().kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }

    /// The next peer id not in use, round robin from the last one handed
    /// out (as QEMU's own server does), if any is free.
    ///
    /// Not the smallest free id: QEMU (seen with 7.2) corrupts its heap when
    /// a peer id it has seen leave comes back soon after, so ids are reused
    /// only after all others.
    fn free_id(&mut self) -> Option<u16> {
        let ids = self.id_limit;
        for step in 0..ids {
            let candidate = (self.next_id + step) % ids;
            // CAST: below `id_limit <= 1 << 16`.
            let id = candidate as u16;
            if !self.clients.contains_key(&id) {
                self.next_id = (candidate + 1) % ids;
                return Some(id);
            }
        }
        None
    }

    /// Creates the eventfds of a new peer.
    fn new_vectors(&self) -> io::Result<Vec<OwnedFd>> {
        (0..self.vectors).map(|_| eventfd::create()).collect()
    }

    /// Tells every host peer about the new peer `id`; returns the ones that
    /// could not be told.
    fn announce(&self, id: u16, vectors: &[OwnedFd]) -> Vec<u16> {
        self.clients
            .iter()
            .filter(|(_, c)| {
                c.stream.as_ref().is_some_and(|s| {
                    vectors
                        .iter()
                        .any(|fd| send_msg(s.as_fd(), i64::from(id), Some(fd.as_fd())).is_err())
                })
            })
            .map(|(&other, _)| other)
            .collect()
    }

    /// Sends a new host peer its id, the memory and everybody's vectors, and
    /// announces it to the others.
    pub(crate) fn add_host(&mut self, stream: UnixStream) {
        let Some(id) = self.free_id() else {
            eprintln!("ivshmem-server: all peer ids are in use, refusing a client");
            return;
        };
        let vectors = match self.new_vectors() {
            Ok(v) => v,
            Err(e) => {
                eprintln!("ivshmem-server: cannot create eventfds for a new peer: {e}");
                return;
            }
        };
        let sock = stream.as_fd();
        let hello = stream
            .set_write_timeout(Some(SEND_TIMEOUT))
            .and_then(|()| send_msg(sock, PROTOCOL_VERSION, None))
            .and_then(|()| send_msg(sock, i64::from(id), None))
            .and_then(|()| send_msg(sock, SHM_MESSAGE, Some(self.memory.fd())))
            .and_then(|()| {
                self.clients.iter().try_for_each(|(&other, c)| {
                    c.vectors
                        .iter()
                        .try_for_each(|fd| send_msg(sock, i64::from(other), Some(fd.as_fd())))
                })
            });
        if let Err(e) = hello {
            self.log(format_args!("peer {id} failed during its handshake: {e}"));
            return;
        }
        let mut failed = self.announce(id, &vectors);
        if vectors
            .iter()
            .any(|fd| send_msg(sock, i64::from(id), Some(fd.as_fd())).is_err())
        {
            failed.push(id);
        }
        self.log(format_args!("peer {id} connected"));
        self.clients.insert(
            id,
            Client {
                stream: Some(stream),
                vectors,
            },
        );
        self.drop_clients(failed);
    }

    /// Adds a guest peer (a vfio-user connection) and announces it to the
    /// host peers. Returns its id and duplicates of its eventfds, which the
    /// device reads to raise the guest's interrupts.
    pub(crate) fn add_guest(&mut self) -> io::Result<(u16, Vec<OwnedFd>)> {
        let id = self.free_id().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "all peer ids are in use (--max-peers)",
            )
        })?;
        let vectors = self.new_vectors()?;
        let copies = vectors
            .iter()
            .map(|fd| fd.try_clone())
            .collect::<io::Result<Vec<_>>>()?;
        let failed = self.announce(id, &vectors);
        self.log(format_args!("guest peer {id} connected"));
        self.clients.insert(
            id,
            Client {
                stream: None,
                vectors,
            },
        );
        self.drop_clients(failed);
        Ok((id, copies))
    }

    /// Rings vector `vector` of peer `target`.
    pub(crate) fn ring(&self, target: u16, vector: u16) -> Result<(), RingError> {
        let client = self.clients.get(&target).ok_or(RingError::NoSuchPeer)?;
        let fd = client
            .vectors
            .get(usize::from(vector))
            .ok_or(RingError::NoSuchVector)?;
        eventfd::signal(fd.as_fd()).map_err(|_| RingError::Failed)
    }

    /// Rings vector 0 of every peer but `except`.
    pub(crate) fn ring_others(&self, except: u16) {
        for (&other, c) in &self.clients {
            if other == except {
                continue;
            }
            if let Some(fd) = c.vectors.first() {
                if let Err(e) = eventfd::signal(fd.as_fd()) {
                    self.log(format_args!("cannot ring peer {other}: {e}"));
                }
            }
        }
    }

    /// Disconnects the given peers and tells the host peers; a host peer
    /// that cannot be told is dropped as well.
    pub(crate) fn drop_clients(&mut self, mut gone: Vec<u16>) {
        while let Some(id) = gone.pop() {
            // Dropping the client closes its socket and eventfds.
            if self.clients.remove(&id).is_none() {
                continue;
            }
            self.log(format_args!("peer {id} disconnected"));
            self.clear_state(id);
            for (&other, c) in &self.clients {
                let Some(s) = &c.stream else { continue };
                if send_msg(s.as_fd(), i64::from(id), None).is_err() && !gone.contains(&other) {
                    gone.push(other);
                }
            }
        }
    }

    /// Byte offset of `id`'s state-table entry, if the memory has a state
    /// table the server maintains.
    fn state_entry(&self, shm: &SharedMemory, id: u16) -> Option<usize> {
        let mem = shm.region();
        let offset = match self.state_table {
            StateTable::V2(layout) => layout.state_offset(u32::from(id))?,
            StateTable::V1Layout => {
                if v1layout::is_published(mem) != Ok(true) {
                    return None;
                }
                let header = v1layout::Header::read(mem).ok()?;
                let layout = header.layout(0, shm.len() as u64).ok()?;
                layout
                    .state_offset(u32::from(id))?
                    .checked_add(header.granule + layout.state_table().offset)?
            }
        };
        usize::try_from(offset).ok()
    }

    /// A peer left: if the memory has a state table (ivshmem 2.0, or a valid
    /// lincell v1 layout) and the peer's entry is not 0, store 0 there and
    /// ring vector 0 of every remaining peer, as the peer itself would have
    /// done had it shut down cleanly (`Documentation/ivshmem-v1-layout.md`;
    /// for ivshmem 2.0 this is the device's own duty).
    fn clear_state(&self, id: u16) {
        let Some(shm) = &self.shm else {
            return;
        };
        let Some(entry) = self.state_entry(shm, id) else {
            return;
        };
        let mem = shm.region();
        match mem.load::<u32>(entry, Ordering::Acquire) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if mem.store(entry, 0u32, Ordering::Release).is_err() {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        self.log(format_args!(
            "peer {id}: state cleared, vector 0 rung on the others"
        ));
        self.ring_others(id);
    }
}
