// SPDX-License-Identifier: GPL-2.0
//! The server: accepts peers, introduces them to each other, and announces
//! departures. Single-threaded, driven by `poll(2)`.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ivshmem_peer::protocol::{send_msg, PROTOCOL_VERSION, SHM_MESSAGE};
use ivshmem_peer::{eventfd, poll, SharedMemory};
use lincell_shared::ivshmem::v1layout;
use lincell_shared::shmem::SharedMemory as _;

use crate::cli::Config;
use crate::memory::SharedMemoryFile;

/// How long a send to a client may block before the client is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How often [`Server::run_until`] looks at its stop flag at the latest.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// One connected peer.
#[derive(Debug)]
struct Client {
    stream: UnixStream,
    vectors: Vec<OwnedFd>,
}

/// An ivshmem server listening on a UNIX socket.
///
/// Dropping it closes every client, removes the socket file (if it is still
/// ours) and releases the shared memory.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    socket_path: PathBuf,
    socket_inode: (u64, u64),
    memory: SharedMemoryFile,
    /// The memory mapped here too, to clear the lincell v1 state of peers
    /// that leave (`None` if it could not be mapped).
    shm: Option<SharedMemory>,
    vectors: u16,
    verbose: bool,
    clients: BTreeMap<u16, Client>,
    /// Where the search for the next free id starts (round robin).
    next_id: u32,
}

/// Adds `what` as context to an error.
fn context(what: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Server {
    /// Creates the shared memory and starts listening on the socket.
    ///
    /// A socket file left at the path by an earlier run is removed first;
    /// any other kind of file there is an error.
    pub fn new(config: &Config) -> io::Result<Self> {
        if !(1..=64).contains(&config.vectors) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} vectors requested; 1 to 64 are supported",
                    config.vectors
                ),
            ));
        }
        if config.size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "shared memory size is 0",
            ));
        }
        let memory = SharedMemoryFile::create(&config.memory, config.size)?;
        // Absolute, so that the file can still be removed after chdir("/").
        let socket_path = std::path::absolute(&config.socket_path)?;
        let shown = socket_path.display().to_string();
        match std::fs::symlink_metadata(&socket_path) {
            Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&socket_path)
                .map_err(context(format!("cannot remove stale socket {shown}")))?,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{shown} exists and is not a socket"),
                ))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(&socket_path)
            .map_err(context(format!("cannot listen on {shown}")))?;
        listener.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(&socket_path)?;
        let shm = SharedMemory::map(memory.fd()).ok();
        Ok(Self {
            listener,
            socket_path,
            socket_inode: (meta.dev(), meta.ino()),
            memory,
            shm,
            vectors: config.vectors,
            verbose: config.verbose,
            clients: BTreeMap::new(),
            next_id: 0,
        })
    }

    /// The (absolute) path of the listening socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Ids of the connected peers, ascending.
    pub fn peer_ids(&self) -> Vec<u16> {
        self.clients.keys().copied().collect()
    }

    /// Serves until `stop` becomes true (checked at least every 200 ms and
    /// whenever a signal interrupts the wait).
    pub fn run_until(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::SeqCst) {
            self.poll_once(Some(STOP_CHECK))?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for activity, then handles new connections and
    /// disconnections. Only a failing `poll` itself is an error; a
    /// misbehaving client is just dropped.
    pub fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let ids = self.peer_ids();
        let mut fds = Vec::with_capacity(ids.len() + 1);
        for fd in std::iter::once(self.listener.as_raw_fd())
            .chain(self.clients.values().map(|c| c.stream.as_raw_fd()))
        {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if poll::poll_fds(&mut fds, timeout)? == 0 {
            return Ok(());
        }
        let gone = ids
            .iter()
            .zip(&fds[1..])
            .filter(|(id, pfd)| pfd.revents != 0 && !self.client_alive(**id))
            .map(|(id, _)| *id)
            .collect();
        self.drop_clients(gone);
        if fds[0].revents != 0 {
            self.accept_all();
        }
        Ok(())
    }

    /// Logs if verbose.
    fn log(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("ivshmem-server: {msg}");
        }
    }

    /// Reads (and discards) whatever a readable client sent; false on EOF or
    /// error, which means it is gone. Clients have nothing to say in this protocol.
    fn client_alive(&self, id: u16) -> bool {
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        let mut buf = [0u8; 256];
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let r = unsafe {
            libc::recv(
                client.stream.as_raw_fd(),
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

    /// Accepts every pending connection.
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_client(stream),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        eprintln!("ivshmem-server: accept failed: {e}");
                    }
                    return;
                }
            }
        }
    }

    /// The next peer id not in use, round robin from the last one handed
    /// out (as QEMU's own server does), if any is free.
    ///
    /// Not the smallest free id: QEMU (seen with 7.2) corrupts its heap when
    /// a peer id it has seen leave comes back soon after, so ids are reused
    /// only after all others.
    fn free_id(&mut self) -> Option<u16> {
        const IDS: u32 = 1 << 16;
        for step in 0..IDS {
            let candidate = (self.next_id + step) % IDS;
            // CAST: below 1 << 16.
            let id = candidate as u16;
            if !self.clients.contains_key(&id) {
                self.next_id = (candidate + 1) % IDS;
                return Some(id);
            }
        }
        None
    }

    /// Sends a new client its id, the memory and everybody's vectors, and
    /// announces it to the others.
    fn add_client(&mut self, stream: UnixStream) {
        let Some(id) = self.free_id() else {
            eprintln!("ivshmem-server: all peer ids are in use, refusing a client");
            return;
        };
        let vectors = match (0..self.vectors)
            .map(|_| eventfd::create())
            .collect::<io::Result<Vec<_>>>()
        {
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
        let mut failed: Vec<u16> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                let other = c.stream.as_fd();
                vectors
                    .iter()
                    .any(|fd| send_msg(other, i64::from(id), Some(fd.as_fd())).is_err())
            })
            .map(|(&other, _)| other)
            .collect();
        if vectors
            .iter()
            .any(|fd| send_msg(sock, i64::from(id), Some(fd.as_fd())).is_err())
        {
            failed.push(id);
        }
        self.log(format_args!("peer {id} connected"));
        self.clients.insert(id, Client { stream, vectors });
        self.drop_clients(failed);
    }

    /// Disconnects the given clients and tells the rest; a client that cannot
    /// be told is dropped as well.
    fn drop_clients(&mut self, mut gone: Vec<u16>) {
        while let Some(id) = gone.pop() {
            // Dropping the client closes its socket and eventfds.
            if self.clients.remove(&id).is_none() {
                continue;
            }
            self.log(format_args!("peer {id} disconnected"));
            self.clear_v1_state(id);
            for (&other, c) in &self.clients {
                if send_msg(c.stream.as_fd(), i64::from(id), None).is_err()
                    && !gone.contains(&other)
                {
                    gone.push(other);
                }
            }
        }
    }
}

impl Server {
    /// A peer left: if the memory holds a valid lincell v1 layout and the
    /// peer has a state-table entry that is not 0, store 0 there and ring
    /// vector 0 of every remaining peer, as the peer itself would have done
    /// had it shut down cleanly (`Documentation/ivshmem-v1-layout.md`).
    fn clear_v1_state(&self, id: u16) {
        let Some(shm) = &self.shm else {
            return;
        };
        let mem = shm.region();
        if v1layout::is_published(mem) != Ok(true) {
            return;
        }
        let Ok(header) = v1layout::Header::read(mem) else {
            return;
        };
        let Ok(layout) = header.layout(0, shm.len() as u64) else {
            return;
        };
        let Some(entry) = layout
            .state_offset(u32::from(id))
            .and_then(|o| o.checked_add(header.granule + layout.state_table().offset))
            .and_then(|o| usize::try_from(o).ok())
        else {
            return;
        };
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
        for (&other, c) in &self.clients {
            if let Some(fd) = c.vectors.first() {
                if let Err(e) = eventfd::signal(fd.as_fd()) {
                    self.log(format_args!("cannot ring peer {other}: {e}"));
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only remove the socket if it is still the one we created.
        if let Ok(m) = std::fs::symlink_metadata(&self.socket_path) {
            if (m.dev(), m.ino()) == self.socket_inode {
                let _ = std::fs::remove_file(&self.socket_path);
            }
        }
    }
}
