// SPDX-License-Identifier: GPL-2.0
//! The server: accepts peers, introduces them to each other, and announces
//! departures. Single-threaded, driven by `poll(2)`.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ivshmem_peer::poll;

use crate::cli::Config;
use crate::memory::SharedMemoryFile;
use crate::peers::{PeerTable, StateTable};

/// How often [`Server::run_until`] looks at its stop flag at the latest.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// An ivshmem server listening on a UNIX socket.
///
/// Dropping it closes every client, removes the socket file (if it is still
/// ours) and releases the shared memory.
#[derive(Debug)]
pub struct Server {
    listener: UnixListener,
    socket_path: PathBuf,
    socket_inode: (u64, u64),
    /// The peers; shared with the vfio-user endpoints in `--v2` mode.
    table: Arc<Mutex<PeerTable>>,
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
        let table = PeerTable::new(
            memory,
            StateTable::V1Layout,
            config.vectors,
            1 << 16,
            config.verbose,
        );
        Self::listen(&config.socket_path, Arc::new(Mutex::new(table)))
    }

    /// Starts listening on `path` for host peers of `table`.
    pub(crate) fn listen(path: &Path, table: Arc<Mutex<PeerTable>>) -> io::Result<Self> {
        // Absolute, so that the file can still be removed after chdir("/").
        let socket_path = std::path::absolute(path)?;
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
        Ok(Self {
            listener,
            socket_path,
            socket_inode: (meta.dev(), meta.ino()),
            table,
        })
    }

    /// The peer table, locked. A panic elsewhere while it was held does not
    /// poison it for the server: the table stays consistent between calls.
    fn table(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The (absolute) path of the listening socket.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Ids of the connected peers, ascending.
    pub fn peer_ids(&self) -> Vec<u16> {
        self.table().peer_ids()
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
        let hosts = self.table().host_fds();
        let mut fds = Vec::with_capacity(hosts.len() + 1);
        for fd in std::iter::once(self.listener.as_raw_fd()).chain(hosts.iter().map(|h| h.1)) {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if poll::poll_fds(&mut fds, timeout)? == 0 {
            return Ok(());
        }
        let mut table = self.table();
        let gone = hosts
            .iter()
            .zip(&fds[1..])
            .filter(|((id, _), pfd)| pfd.revents != 0 && !table.client_alive(*id))
            .map(|((id, _), _)| *id)
            .collect();
        table.drop_clients(gone);
        if fds[0].revents != 0 {
            loop {
                match self.listener.accept() {
                    Ok((stream, _)) => table.add_host(stream),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        if e.kind() != io::ErrorKind::WouldBlock {
                            eprintln!("ivshmem-server: accept failed: {e}");
                        }
                        break;
                    }
                }
            }
        }
        Ok(())
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
