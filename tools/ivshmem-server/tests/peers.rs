// SPDX-License-Identifier: GPL-2.0
//! Two or more peers talking through a real server running in a thread.

mod common;

use std::io;
use std::thread;
use std::time::Duration;

use common::{expect_event, load, store, Running, TempDir};
use ivshmem_peer::PeerEvent;
use ivshmem_server::{Config, MemoryBacking, Server};

const LONG: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(100);

#[test]
fn peers_meet_and_share_memory() {
    let server = Running::start(2);
    let mut a = server.connect();
    assert_eq!((a.id(), a.vectors(), a.shm().len()), (0, 2, 1 << 20));
    assert!(a.peers().is_empty());
    let b = server.connect();
    assert_ne!(a.id(), b.id());
    assert_eq!(b.vectors(), 2);
    assert_eq!(b.peers(), [a.id()]);
    expect_event(&mut a, PeerEvent::Joined(b.id()));
    assert_eq!(a.peers(), [b.id()]);

    let pattern: Vec<u8> = (0..=255).collect();
    a.shm().write_bytes(4096, &pattern).unwrap();
    let mut seen = vec![0u8; 256];
    b.shm().read_bytes(4096, &mut seen).unwrap();
    assert_eq!(seen, pattern);
    store(&b, 8192, 0x1234_5678);
    assert_eq!(load(&a, 8192), 0x1234_5678);
}

#[test]
fn doorbells_wake_the_right_vector() {
    let server = Running::start(2);
    let mut a = server.connect();
    let b = server.connect();
    expect_event(&mut a, PeerEvent::Joined(b.id()));

    // Nothing rung yet: no spurious interrupts.
    assert_eq!(
        b.wait(1, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    a.ring(b.id(), 1).unwrap();
    assert_eq!(b.wait(1, Some(LONG)).unwrap(), 1);
    assert_eq!(
        b.wait(0, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert_eq!(
        b.wait(1, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );

    b.ring(a.id(), 0).unwrap();
    b.ring(a.id(), 0).unwrap();
    assert_eq!(a.wait(0, Some(LONG)).unwrap(), 2);
    assert_eq!(
        a.wait(0, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
    assert_eq!(
        a.wait(1, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );

    assert_eq!(
        a.ring(b.id(), 2).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(a.ring(999, 0).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(
        a.wait(2, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(a.own_event_fd(1).is_ok() && a.own_event_fd(2).is_err());
}

#[test]
fn thousand_ping_pongs_lose_nothing() {
    const ROUNDS: u32 = 1000;
    let server = Running::start(1);
    let mut a = server.connect();
    let b = server.connect();
    expect_event(&mut a, PeerEvent::Joined(b.id()));
    let (a_id, b_id) = (a.id(), b.id());

    let ponger = thread::spawn(move || {
        for i in 0..ROUNDS {
            assert_eq!(b.wait(0, Some(LONG)).unwrap(), 1, "round {i}");
            assert_eq!(load(&b, 0), i, "ping payload");
            store(&b, 4, i);
            b.ring(a_id, 0).unwrap();
        }
        assert_eq!(
            b.wait(0, Some(SHORT)).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    });
    for i in 0..ROUNDS {
        store(&a, 0, i);
        a.ring(b_id, 0).unwrap();
        assert_eq!(a.wait(0, Some(LONG)).unwrap(), 1, "round {i}");
        assert_eq!(load(&a, 4), i, "pong payload");
    }
    ponger.join().unwrap();
    assert_eq!(
        a.wait(0, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );
}

#[test]
fn departures_are_announced_and_ids_not_reused_at_once() {
    let server = Running::start(1);
    let mut a = server.connect();
    let b = server.connect();
    let b_id = b.id();
    expect_event(&mut a, PeerEvent::Joined(b_id));
    drop(b);
    expect_event(&mut a, PeerEvent::Left(b_id));
    assert!(a.peers().is_empty());
    let err = a.ring(b_id, 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(
        err.to_string().contains(&format!("unknown peer {b_id}")),
        "{err}"
    );

    // Ids go round robin: the next client gets a new id, not b's.
    let c = server.connect();
    assert_eq!(c.id(), b_id + 1);
    expect_event(&mut a, PeerEvent::Joined(c.id()));
    a.ring(c.id(), 0).unwrap();
    assert_eq!(c.wait(0, Some(LONG)).unwrap(), 1);
}

#[test]
fn server_shutdown_is_noticed_and_socket_removed() {
    let mut server = Running::start(1);
    let mut a = server.connect();
    server.stop().unwrap();
    assert!(!server.socket.exists());
    let err = a.poll_server(Some(LONG)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn stale_socket_is_replaced_but_other_files_are_not() {
    let dir = TempDir::new("stale");
    let mut config = Config {
        socket_path: dir.0.join("sock"),
        memory: MemoryBacking::Dir(dir.0.clone()),
        size: 65536,
        vectors: 1,
        verbose: false,
    };
    drop(std::os::unix::net::UnixListener::bind(&config.socket_path).unwrap());
    assert!(config.socket_path.exists());
    let server = Server::new(&config).unwrap();
    drop(server);
    assert!(!config.socket_path.exists());

    config.socket_path = dir.0.join("file");
    std::fs::write(&config.socket_path, "keep me").unwrap();
    let err = Server::new(&config).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(
        std::fs::read_to_string(&config.socket_path).unwrap(),
        "keep me"
    );
}

#[test]
fn posix_shm_object_is_created_and_removed() {
    let dir = TempDir::new("shm");
    let name = format!("ivshmem-test-{}", std::process::id());
    let config = Config {
        socket_path: dir.0.join("sock"),
        memory: MemoryBacking::ShmName(name.clone()),
        size: 65536,
        vectors: 1,
        verbose: false,
    };
    let server = Server::new(&config).unwrap();
    let object = std::path::Path::new("/dev/shm").join(&name);
    assert_eq!(std::fs::metadata(&object).unwrap().len(), 65536);
    drop(server);
    assert!(!object.exists());

    let bad = Config {
        memory: MemoryBacking::ShmName("a/b".into()),
        ..config
    };
    assert_eq!(
        Server::new(&bad).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn departing_peer_state_is_cleared_in_a_lincell_v1_layout() {
    use lincell_shared::ivshmem::v1layout::{init_or_join, Header};
    let server = Running::start(2);
    let mut a = server.connect();
    let b = server.connect();
    expect_event(&mut a, PeerEvent::Joined(b.id()));

    // Without a layout, a departure rings nothing.
    let b_id = b.id();
    drop(b);
    expect_event(&mut a, PeerEvent::Left(b_id));
    assert_eq!(
        a.wait(0, Some(SHORT)).unwrap_err().kind(),
        io::ErrorKind::TimedOut
    );

    // With one: the dead peer's READY state is cleared and vector 0 rung.
    let h = Header::propose(1 << 20, 4096, 8).unwrap();
    init_or_join(a.shm().region(), &h, || false).unwrap();
    let c = server.connect();
    let c_id = c.id();
    expect_event(&mut a, PeerEvent::Joined(c_id));
    let table = 4096usize; // one-granule header, state table first
    store(&c, table + 4 * usize::from(c_id), 1);
    store(&a, table + 4 * usize::from(a.id()), 1);
    drop(c);
    assert_eq!(a.wait(0, Some(LONG)).unwrap(), 1);
    assert_eq!(load(&a, table + 4 * usize::from(c_id)), 0);
    assert_eq!(
        load(&a, table + 4 * usize::from(a.id())),
        1,
        "other entries untouched"
    );
}
