// SPDX-License-Identifier: GPL-2.0
//! A connected ivshmem peer: handshake, peer table, doorbells.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::protocol::{self, protocol_error, PROTOCOL_VERSION, SHM_MESSAGE};
use crate::shm::SharedMemory;
use crate::{eventfd, poll};

/// A change in the set of peers, reported by [`Peer::process_messages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// A peer connected and all of its vectors have arrived.
    Joined(u16),
    /// A peer disconnected; its vectors are gone.
    Left(u16),
}

/// How [`Peer::connect_with`] performs the handshake.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Upper bound for the whole handshake (default 5 s). Also used as the
    /// socket receive timeout so that a half-sent message cannot hang us.
    pub timeout: Duration,
    /// Number of vectors the server gives every peer, if known.
    ///
    /// The protocol has no end-of-handshake marker. With `None` the number is
    /// taken from the peers already connected; if there are none, our own
    /// vectors are collected until the server has been quiet for `settle`.
    pub vectors: Option<usize>,
    /// Quiet period that ends the handshake when the vector count is not
    /// known (default 100 ms). Vectors that arrive later are still added by
    /// [`Peer::process_messages`].
    pub settle: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            vectors: None,
            settle: Duration::from_millis(100),
        }
    }
}

/// One participant of an ivshmem group, connected to the server.
#[derive(Debug)]
pub struct Peer {
    sock: UnixStream,
    id: u16,
    shm: SharedMemory,
    /// The shared memory's file descriptor, kept for peers that hand the
    /// memory on (a vhost-user frontend's memory table).
    shm_fd: OwnedFd,
    own: Vec<OwnedFd>,
    peers: BTreeMap<u16, Vec<OwnedFd>>,
    pending: VecDeque<PeerEvent>,
}

/// Checks that a message value is a valid peer id.
fn peer_id(value: i64) -> io::Result<u16> {
    u16::try_from(value).map_err(|_| protocol_error(format!("invalid peer id {value} from server")))
}

/// Receives the next handshake message, giving up at `deadline`.
fn next_before(sock: &UnixStream, deadline: Instant) -> io::Result<(i64, Option<OwnedFd>)> {
    let left = deadline.saturating_duration_since(Instant::now());
    if !poll::wait_readable(sock.as_fd(), Some(left))? {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "ivshmem server did not complete the handshake in time",
        ));
    }
    protocol::recv_msg(sock.as_fd()).map_err(|e| match e.kind() {
        // The socket receive timeout expired in the middle of a message.
        io::ErrorKind::WouldBlock => io::Error::new(
            io::ErrorKind::TimedOut,
            "ivshmem server stopped in the middle of a handshake message",
        ),
        _ => e,
    })
}

impl Peer {
    /// Connects to the server socket at `path` with default [`ConnectOptions`].
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::connect_with(path, &ConnectOptions::default())
    }

    /// Connects to the server at `path`, performs the handshake and maps the
    /// shared memory.
    pub fn connect_with(path: impl AsRef<Path>, opts: &ConnectOptions) -> io::Result<Self> {
        let path = path.as_ref();
        let sock = UnixStream::connect(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot connect to ivshmem server at {}: {e}",
                    path.display()
                ),
            )
        })?;
        sock.set_read_timeout(Some(opts.timeout.max(Duration::from_millis(1))))?;
        let deadline = Instant::now() + opts.timeout;

        let (version, fd) = next_before(&sock, deadline)?;
        if version != PROTOCOL_VERSION {
            return Err(protocol_error(format!(
                "unsupported ivshmem protocol version {version} (expected {PROTOCOL_VERSION})"
            )));
        }
        if fd.is_some() {
            return Err(protocol_error(
                "protocol version message carried a file descriptor",
            ));
        }
        let (id, fd) = next_before(&sock, deadline)?;
        let id = peer_id(id)?;
        if fd.is_some() {
            return Err(protocol_error("peer id message carried a file descriptor"));
        }
        let (value, fd) = next_before(&sock, deadline)?;
        if value != SHM_MESSAGE {
            return Err(protocol_error(format!(
                "expected the shared memory message ({SHM_MESSAGE}), got {value}"
            )));
        }
        let shm_fd =
            fd.ok_or_else(|| protocol_error("shared memory message carried no file descriptor"))?;
        let shm = SharedMemory::map(shm_fd.as_fd())?;

        // Vectors of the peers already there, then our own.
        let mut peers: BTreeMap<u16, Vec<OwnedFd>> = BTreeMap::new();
        let mut own = Vec::new();
        let mut later = None;
        loop {
            if !own.is_empty() {
                let expected = opts.vectors.or_else(|| peers.values().next().map(Vec::len));
                if expected == Some(own.len()) {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if expected.is_none()
                    && !poll::wait_readable(sock.as_fd(), Some(opts.settle.min(left)))?
                {
                    break;
                }
            }
            let (value, fd) = next_before(&sock, deadline)?;
            let sender = peer_id(value)?;
            match fd {
                Some(fd) if sender == id => own.push(fd),
                Some(fd) if own.is_empty() => peers.entry(sender).or_default().push(fd),
                None if own.is_empty() => {
                    return Err(protocol_error(format!(
                        "unexpected message {value} without file descriptor during the handshake"
                    )))
                }
                // Someone else's news, after our own vectors: handle it later.
                fd => {
                    later = Some((value, fd));
                    break;
                }
            }
        }
        if let Some(n) = opts.vectors.filter(|&n| n != own.len()) {
            return Err(protocol_error(format!(
                "server gave us {} vectors, expected {n}",
                own.len()
            )));
        }
        if let Some((p, fds)) = peers.iter().find(|(_, fds)| fds.len() != own.len()) {
            return Err(protocol_error(format!(
                "peer {p} has {} vectors but we have {}",
                fds.len(),
                own.len()
            )));
        }
        for fd in &own {
            eventfd::set_nonblocking(fd.as_fd())?;
        }
        let mut peer = Self {
            sock,
            id,
            shm,
            shm_fd,
            own,
            peers,
            pending: VecDeque::new(),
        };
        if let Some((value, fd)) = later {
            peer.handle(value, fd)?;
        }
        Ok(peer)
    }

    /// Our peer id, given by the server.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Number of interrupt vectors we (and every other peer) have.
    pub fn vectors(&self) -> usize {
        self.own.len()
    }

    /// The shared memory.
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Ids of the other peers whose vectors have all arrived, ascending.
    pub fn peers(&self) -> Vec<u16> {
        let n = self.own.len();
        self.peers
            .iter()
            .filter(|(_, fds)| fds.len() >= n)
            .map(|(&p, _)| p)
            .collect()
    }

    /// Rings vector `vector` of peer `peer` (which may be ourselves).
    ///
    /// Fails with `NotFound` for a peer we do not know (e.g. one that left)
    /// and `InvalidInput` for a vector the peer does not have.
    pub fn ring(&self, peer: u16, vector: usize) -> io::Result<()> {
        let fds = if peer == self.id {
            &self.own
        } else {
            self.peers.get(&peer).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("unknown peer {peer}"))
            })?
        };
        let fd = fds.get(vector).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peer {peer} has no vector {vector} (it has {})", fds.len()),
            )
        })?;
        eventfd::signal(fd.as_fd()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot ring peer {peer} vector {vector}: {e}"),
            )
        })
    }

    /// The shared memory's file descriptor (what [`shm`](Self::shm) maps
    /// from offset 0), for handing the memory to another process.
    pub fn shm_fd(&self) -> BorrowedFd<'_> {
        self.shm_fd.as_fd()
    }

    /// Peer `peer`'s eventfd for `vector`: writing it rings that peer, as
    /// [`ring`](Self::ring) does. For handing a doorbell to another process.
    ///
    /// Fails with `NotFound` for a peer we do not know and `InvalidInput`
    /// for a vector it does not have.
    pub fn peer_event_fd(&self, peer: u16, vector: usize) -> io::Result<BorrowedFd<'_>> {
        let fds = self.peers.get(&peer).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("unknown peer {peer}"))
        })?;
        fds.get(vector).map(AsFd::as_fd).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peer {peer} has no vector {vector} (it has {})", fds.len()),
            )
        })
    }

    /// Our eventfd for `vector`, for use in an external poll loop.
    ///
    /// It is non-blocking; reading it returns and resets the ring count.
    pub fn own_event_fd(&self, vector: usize) -> io::Result<BorrowedFd<'_>> {
        self.own.get(vector).map(AsFd::as_fd).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no vector {vector} (we have {})", self.own.len()),
            )
        })
    }

    /// The server socket, for use in an external poll loop: when it is
    /// readable, call [`process_messages`](Self::process_messages).
    pub fn server_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Waits for an interrupt on our vector `vector`, for at most `timeout`
    /// (`None`: forever), and returns how many rings arrived since the last
    /// wait. Fails with `TimedOut` if none arrived in time.
    pub fn wait(&self, vector: usize, timeout: Option<Duration>) -> io::Result<u64> {
        let fd = self.own_event_fd(vector)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if poll::wait_readable(fd, left)? {
                if let Some(count) = eventfd::try_read(fd)? {
                    return Ok(count);
                }
            }
            // Nothing (or another thread took it): give up once the time is out.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no interrupt on vector {vector} within {:?}",
                        timeout.unwrap_or_default()
                    ),
                ));
            }
        }
    }

    /// Applies every message the server has sent so far, without blocking,
    /// and returns the resulting events.
    ///
    /// Fails with `UnexpectedEof` when the server has gone away.
    pub fn process_messages(&mut self) -> io::Result<Vec<PeerEvent>> {
        while poll::wait_readable(self.sock.as_fd(), Some(Duration::ZERO))? {
            let (value, fd) = protocol::recv_msg(self.sock.as_fd())?;
            self.handle(value, fd)?;
        }
        Ok(self.pending.drain(..).collect())
    }

    /// Like [`process_messages`](Self::process_messages), but first waits up
    /// to `timeout` (`None`: forever) until there is at least one event.
    /// Returns an empty list if the time ran out.
    pub fn poll_server(&mut self, timeout: Option<Duration>) -> io::Result<Vec<PeerEvent>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let events = self.process_messages()?;
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if !events.is_empty() || left.is_some_and(|l| l.is_zero()) {
                return Ok(events);
            }
            if !poll::wait_readable(self.sock.as_fd(), left)? {
                return Ok(Vec::new());
            }
        }
    }

    /// Applies one message that arrived after the handshake.
    fn handle(&mut self, value: i64, fd: Option<OwnedFd>) -> io::Result<()> {
        let sender = peer_id(value)?;
        let event = match fd {
            // A vector of ours that arrived after the handshake settled.
            Some(fd) if sender == self.id => {
                eventfd::set_nonblocking(fd.as_fd())?;
                self.own.push(fd);
                None
            }
            Some(fd) => {
                let fds = self.peers.entry(sender).or_default();
                fds.push(fd);
                (fds.len() == self.own.len()).then_some(PeerEvent::Joined(sender))
            }
            None if sender == self.id => {
                return Err(protocol_error(
                    "server reported our own peer id as disconnected",
                ))
            }
            None => self.peers.remove(&sender).map(|_| PeerEvent::Left(sender)),
        };
        self.pending.extend(event);
        Ok(())
    }
}
