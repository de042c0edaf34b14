// SPDX-License-Identifier: GPL-2.0
//! Helpers shared by the integration tests: temporary directories and a
//! server running in a thread.
#![allow(dead_code)]

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ivshmem_peer::{Peer, PeerEvent};
use ivshmem_server::{Config, MemoryBacking, Server};
use lincell_shared::shmem::SharedMemory;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("ivshmem-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A [`Server`] on a socket in a temp dir, with 1 MiB of memory from that
/// dir, served by a thread until dropped.
pub(crate) struct Running {
    pub(crate) socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
    pub(crate) dir: TempDir,
}

impl Running {
    pub(crate) fn start(vectors: u16) -> Self {
        let dir = TempDir::new("server");
        let config = Config {
            socket_path: dir.0.join("sock"),
            memory: MemoryBacking::Dir(dir.0.clone()),
            size: 1 << 20,
            vectors,
            verbose: false,
        };
        let mut server = Server::new(&config).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || server.run_until(&flag));
        Self {
            socket: config.socket_path,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    pub(crate) fn connect(&self) -> Peer {
        Peer::connect(&self.socket).unwrap()
    }

    /// Stops the server thread and returns what `run_until` returned.
    pub(crate) fn stop(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map_or(Ok(()), |t| t.join().unwrap())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Processes server messages until `want` is seen (panics after 10 s).
pub(crate) fn expect_event(peer: &mut Peer, want: PeerEvent) {
    expect_event_within(peer, want, Duration::from_secs(10));
}

/// [`expect_event`] with another limit.
pub(crate) fn expect_event_within(peer: &mut Peer, want: PeerEvent, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if peer
            .poll_server(Some(Duration::from_millis(100)))
            .unwrap()
            .contains(&want)
        {
            return;
        }
    }
    panic!("peer {} never saw {want:?}", peer.id());
}

/// Loads the u32 at `offset` of `peer`'s shared memory (acquire).
pub(crate) fn load(peer: &Peer, offset: usize) -> u32 {
    peer.shm()
        .region()
        .load(offset, Ordering::Acquire)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Stores `value` at `offset` of `peer`'s shared memory (release).
pub(crate) fn store(peer: &Peer, offset: usize, value: u32) {
    peer.shm()
        .region()
        .store(offset, value, Ordering::Release)
        .unwrap_or_else(|e| panic!("{e}"))
}
