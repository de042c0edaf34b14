// SPDX-License-Identifier: GPL-2.0

//! Host tests of the take-over's time bound: a fake vhost-user backend on a
//! UNIX socket (a thread of the test) replaces the one the bridge lost,
//! and either answers, never answers, or answers the first messages and
//! then stalls. Whatever it does, [`take_over`] must be over by the hold
//! deadline plus [`SLACK`]: the guest's queues are held meanwhile.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::ivshmem::endpoint::tests::TestServer;

/// How late after the hold deadline a take-over that failed may return:
/// the watchdog's wake-up, the socket's shutdown and the log line.
const SLACK: Duration = Duration::from_millis(300);

/// The hold of these tests.
const HOLD: Duration = Duration::from_millis(1000);

/// `VHOST_USER_GET_FEATURES`.
const GET_FEATURES: u32 = 1;
/// The reply flags: version 1 and the reply bit.
const REPLY: u32 = 0x1 | 0x4;
/// `VIRTIO_F_VERSION_1`.
const VERSION_1: u64 = 1 << 32;
/// `VHOST_USER_F_PROTOCOL_FEATURES`.
const PROTOCOL_FEATURES: u64 = 1 << 30;

/// What a fake backend does with a connection.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Manner {
    /// Answers `GET_FEATURES` (VERSION_1 only: no protocol features, so
    /// that is the whole handshake); ignores the rest.
    Answers,
    /// Reads and never answers (a stopped backend).
    Mute,
    /// Answers `GET_FEATURES` offering protocol features, then never
    /// answers again (the bridge's `GET_PROTOCOL_FEATURES` hangs).
    Stalls,
}

/// Serves one connection in `manner` until the bridge closes it.
fn serve(mut c: UnixStream, manner: Manner) {
    let mut answered = false;
    loop {
        let mut hdr = [0u8; 12];
        if c.read_exact(&mut hdr).is_err() {
            return;
        }
        let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
        let (request, size) = (word(0), word(8));
        let mut payload = vec![0u8; size as usize];
        if c.read_exact(&mut payload).is_err() {
            return;
        }
        let features = match manner {
            Manner::Mute => continue,
            Manner::Stalls if answered => continue,
            Manner::Stalls => VERSION_1 | PROTOCOL_FEATURES,
            Manner::Answers => VERSION_1,
        };
        if request != GET_FEATURES {
            continue;
        }
        let mut reply = Vec::with_capacity(20);
        reply.extend_from_slice(&GET_FEATURES.to_le_bytes());
        reply.extend_from_slice(&REPLY.to_le_bytes());
        reply.extend_from_slice(&8u32.to_le_bytes());
        reply.extend_from_slice(&features.to_le_bytes());
        if c.write_all(&reply).is_err() {
            return;
        }
        answered = true;
    }
}

/// A fake backend listening at a private path: its first connection is
/// served as [`Manner::Answers`] (the backend the bridge starts with), the
/// later ones in `then`.
pub(crate) struct Fake {
    dir: PathBuf,
    /// The socket.
    pub(crate) path: PathBuf,
    stop: Arc<AtomicBool>,
    /// The first connection, once accepted.
    first: Arc<Mutex<Option<UnixStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// Listens; `tag` names the directory.
    pub(crate) fn start(tag: &str, then: Manner) -> Self {
        let dir =
            std::env::temp_dir().join(format!("lincell-take-over-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let path = dir.join("vu.sock");
        let l = UnixListener::bind(&path).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let quit = Arc::clone(&stop);
        let first = Arc::new(Mutex::new(None));
        let keep = Arc::clone(&first);
        let thread = std::thread::spawn(move || {
            for (n, c) in l.incoming().enumerate() {
                if quit.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(c) = c else { return };
                let manner = if n == 0 { Manner::Answers } else { then };
                if n == 0 {
                    if let (Ok(mut k), Ok(dup)) = (keep.lock(), c.try_clone()) {
                        *k = Some(dup);
                    }
                }
                std::thread::spawn(move || serve(c, manner));
            }
        });
        Fake {
            dir,
            path,
            stop,
            first,
            thread: Some(thread),
        }
    }

    /// The first backend goes away: its socket is shut down.
    pub(crate) fn lose_first(&self) {
        if let Some(c) = self.first.lock().expect("first").take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A bridge READY on a test ivshmem server with a backend `fake` answers
/// as its first, then lost: runs [`take_over`] and says what it gave and
/// how long it took.
fn take_over_after_loss(fake: &Fake) -> (bool, Duration) {
    let _one = crate::remote::tests::daemon_lock();
    let server = TestServer::start(4);
    let o = BridgeOptions {
        ivshmem: server.socket.clone(),
        backend: fake.path.clone(),
        kind: parse_kind("blk").expect("blk"),
        queue_size: 256,
        readonly: false,
        verbose: false,
        hold: HOLD,
    };
    let mut ep = PeerEndpoint::connect(&o.ivshmem).expect("ivshmem peer");
    if ep.v2_layout().is_none() {
        prepare_v1(&ep, o.kind.id).expect("v1 layout");
    }
    let (rw_off, _) = ep.rw_section();
    let (ptr, len) = ep.rw_ptr().expect("R/W section");
    let s = Section { ptr, len, rw_off };
    let mut old = Backend::connect(&o.backend, o.kind, None).expect("first backend");
    let mut link = Link::new(&mut ep, &old, &o, &s).expect("link");
    // The fake is a thread of this process, which does not end: there is
    // no process to wait for (no queues were handed out either).
    old.pidfd = None;
    let t0 = Instant::now();
    let new = take_over(&mut ep, &mut link, old, &o, &s);
    (new.is_some(), t0.elapsed())
}

#[test]
fn a_backend_that_answers_takes_over_within_the_hold() {
    let fake = Fake::start("answers", Manner::Answers);
    let (took_over, took) = take_over_after_loss(&fake);
    assert!(took_over);
    assert!(took < HOLD, "{took:?}");
}

#[test]
fn a_mute_backend_fails_the_take_over_by_the_hold_deadline() {
    let fake = Fake::start("mute", Manner::Mute);
    let (took_over, took) = take_over_after_loss(&fake);
    assert!(!took_over);
    assert!(took >= HOLD, "{took:?}");
    assert!(took < HOLD + SLACK, "{took:?}");
}

#[test]
fn a_backend_stalling_mid_handshake_fails_the_take_over_by_the_hold_deadline() {
    let fake = Fake::start("stalls", Manner::Stalls);
    let (took_over, took) = take_over_after_loss(&fake);
    assert!(!took_over);
    assert!(took >= HOLD, "{took:?}");
    assert!(took < HOLD + SLACK, "{took:?}");
}
