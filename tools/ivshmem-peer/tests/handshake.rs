// SPDX-License-Identifier: GPL-2.0
//! Handshake and codec tests against scripted fake servers.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ivshmem_peer::protocol::{recv_msg, send_msg};
use ivshmem_peer::{eventfd, ConnectOptions, Peer, PeerEvent};

/// A listening socket in a fresh directory, served by one scripted thread.
struct FakeServer {
    dir: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    fn new(script: impl FnOnce(UnixStream) + Send + 'static) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ivshmem-peer-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("sock")).unwrap();
        let thread = thread::spawn(move || script(listener.accept().unwrap().0));
        Self {
            dir,
            thread: Some(thread),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends each (value, fd) message, then waits for the client to hang up.
fn script(msgs: Vec<(i64, Option<OwnedFd>)>) -> impl FnOnce(UnixStream) + Send + 'static {
    move |s| {
        for (v, fd) in &msgs {
            send_msg(s.as_fd(), *v, fd.as_ref().map(AsFd::as_fd)).unwrap();
        }
        let _ = (&s).read_to_end(&mut Vec::new());
    }
}

fn memfd(len: i64) -> OwnedFd {
    // SAFETY: the name is a NUL-terminated literal.
    let fd = unsafe { libc::memfd_create(c"test".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: freshly created descriptor, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscall on a valid descriptor.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len) }, 0);
    fd
}

fn efd() -> Option<OwnedFd> {
    Some(eventfd::create().unwrap())
}

fn quick() -> ConnectOptions {
    ConnectOptions {
        timeout: Duration::from_millis(500),
        ..ConnectOptions::default()
    }
}

fn connect_err(msgs: Vec<(i64, Option<OwnedFd>)>) -> io::Error {
    let server = FakeServer::new(script(msgs));
    Peer::connect_with(server.socket(), &quick()).unwrap_err()
}

#[test]
fn full_handshake_and_later_messages() {
    let (p1a, p1b, o1, o2, n1, n2) = (efd(), efd(), efd(), efd(), efd(), efd());
    // Keep duplicates of our own eventfds to check that ringing reaches them.
    let own_dup = o2.as_ref().unwrap().try_clone().unwrap();
    let server = FakeServer::new(script(vec![
        (0, None),
        (3, None),
        (-1, Some(memfd(65536))),
        (1, p1a),
        (1, p1b),
        (3, o1),
        (3, o2),
        (4, n1),
        (4, n2),
        (1, None),
    ]));
    let mut peer = Peer::connect_with(server.socket(), &quick()).unwrap();
    assert_eq!((peer.id(), peer.vectors(), peer.shm().len()), (3, 2, 65536));
    let mut events = Vec::new();
    while events.len() < 2 {
        let got = peer.poll_server(Some(Duration::from_secs(5))).unwrap();
        assert!(!got.is_empty(), "no events before the timeout");
        events.extend(got);
    }
    assert_eq!(events, [PeerEvent::Joined(4), PeerEvent::Left(1)]);
    assert_eq!(peer.peers(), [4]);
    assert_eq!(peer.ring(1, 0).unwrap_err().kind(), io::ErrorKind::NotFound);
    eventfd::signal(own_dup.as_fd()).unwrap();
    eventfd::signal(own_dup.as_fd()).unwrap();
    assert_eq!(peer.wait(1, Some(Duration::from_secs(5))).unwrap(), 2);
    drop(peer);
}

#[test]
fn wrong_version_is_rejected() {
    let err = connect_err(vec![(1, None)]);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("version 1"), "{err}");
}

#[test]
fn version_with_fd_is_rejected() {
    let err = connect_err(vec![(0, efd())]);
    assert!(err.to_string().contains("file descriptor"), "{err}");
}

#[test]
fn bad_peer_id_is_rejected() {
    let err = connect_err(vec![(0, None), (65536, None)]);
    assert!(err.to_string().contains("invalid peer id 65536"), "{err}");
    let err = connect_err(vec![(0, None), (-5, None)]);
    assert!(err.to_string().contains("invalid peer id -5"), "{err}");
}

#[test]
fn missing_shm_fd_is_rejected() {
    let err = connect_err(vec![(0, None), (2, None), (-1, None)]);
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("no file descriptor"), "{err}");
}

#[test]
fn wrong_third_message_is_rejected() {
    let err = connect_err(vec![(0, None), (2, None), (7, Some(memfd(4096)))]);
    assert!(
        err.to_string()
            .contains("expected the shared memory message"),
        "{err}"
    );
}

#[test]
fn leave_message_before_own_vectors_is_rejected() {
    let err = connect_err(vec![
        (0, None),
        (2, None),
        (-1, Some(memfd(4096))),
        (1, None),
    ]);
    assert!(err.to_string().contains("without file descriptor"), "{err}");
}

#[test]
fn silent_server_times_out() {
    let server = FakeServer::new(|s| {
        let _ = (&s).read_to_end(&mut Vec::new());
    });
    let start = Instant::now();
    let err = Peer::connect_with(server.socket(), &quick()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[test]
fn half_message_times_out() {
    let server = FakeServer::new(|mut s| {
        s.write_all(&[0, 0, 0, 0]).unwrap();
        let _ = s.read_to_end(&mut Vec::new());
    });
    let start = Instant::now();
    let err = Peer::connect_with(server.socket(), &quick()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn server_hangup_is_eof() {
    let server = FakeServer::new(|s| send_msg(s.as_fd(), 0, None).unwrap());
    let err = Peer::connect_with(server.socket(), &quick()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
}

/// Sends one message carrying two descriptors, which the protocol forbids.
fn send_two_fds(sock: BorrowedFd<'_>, a: BorrowedFd<'_>, b: BorrowedFd<'_>) {
    let data = 7i64.to_le_bytes();
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: 8,
    };
    // SAFETY: all-zero is a valid empty msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only does arithmetic.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(8) } as usize;
    // SAFETY: the 64-byte aligned buffer holds one header and two ints.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(8) as usize;
        let p = libc::CMSG_DATA(c).cast::<libc::c_int>();
        p.write_unaligned(a.as_raw_fd());
        p.add(1).write_unaligned(b.as_raw_fd());
    }
    // SAFETY: msg points at live buffers.
    assert_eq!(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) }, 8);
}

#[test]
fn message_with_two_fds_is_rejected() {
    let (a, b) = UnixStream::pair().unwrap();
    let (e1, e2) = (eventfd::create().unwrap(), eventfd::create().unwrap());
    send_two_fds(a.as_fd(), e1.as_fd(), e2.as_fd());
    send_msg(a.as_fd(), 9, None).unwrap();
    let err = recv_msg(b.as_fd()).unwrap_err();
    assert!(err.to_string().contains("2 file descriptors"), "{err}");
    // The stream stays in sync: the next message is intact.
    assert_eq!(recv_msg(b.as_fd()).unwrap().0, 9);
}
