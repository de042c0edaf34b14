// SPDX-License-Identifier: GPL-2.0

//! The vhost-user bridge for real, on the host: `qemu-storage-daemon`
//! exports a file as vhost-user-blk, the bridge is a host peer of an
//! ivshmem server, and the in-process frontend (a second host peer)
//! negotiates, writes and reads through qemu-storage-daemon's own virtio-blk
//! device; then the daemon is killed (the bridge must leave READY) and
//! restarted (the bridge must come back READY and serve again). Skipped
//! when qemu-storage-daemon is not installed.

use std::process::{Child, Command, Stdio};

use super::*;
use crate::remote::bridge::{hold_for, parse_kind, run, BridgeOptions};

/// A child process killed when dropped (also when a check panics).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// qemu-storage-daemon exporting `file` at `sock`.
fn qsd(file: &std::path::Path, sock: &std::path::Path) -> Option<Daemon> {
    let _ = std::fs::remove_file(sock);
    let child = Command::new("qemu-storage-daemon")
        .arg("--blockdev")
        .arg(format!(
            "driver=file,node-name=f,filename={}",
            file.display()
        ))
        .arg("--export")
        .arg(format!(
            "type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path={},writable=on",
            sock.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(Daemon)?;
    let until = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < until, "qemu-storage-daemon made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

/// The bridge's state in the ivshmem state table, as the frontend sees it.
fn state_of(f: &Front<Remote>) -> u32 {
    let states = f.link.ep.peer_states().unwrap();
    states[f.link.backend as usize]
}

fn wait_state(f: &Front<Remote>, want: u32, what: &str) {
    let until = Instant::now() + Duration::from_secs(15);
    while state_of(f) != want {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bridge_serves_qemu_storage_daemon_and_survives_its_death() {
    use crate::ivshmem::endpoint::tests::TestServer;

    let _one = daemon_lock();
    let file = TempFile::new("vhost", 1 << 20);
    let sock = std::env::temp_dir().join(format!("lincell-vu-{}.sock", std::process::id()));
    let Some(daemon) = qsd(&file.0, &sock) else {
        eprintln!("qemu-storage-daemon not installed: test skipped");
        return;
    };
    let server = TestServer::start(4);
    let opts = BridgeOptions {
        ivshmem: server.socket.clone(),
        backend: sock.clone(),
        kind: parse_kind("blk").unwrap(),
        queue_size: 256,
        readonly: false,
        verbose: false,
        // This test wants the device to fail when the backend dies.
        hold: Duration::ZERO,
    };
    let bridge = std::thread::spawn(move || run(&opts));

    let mut f = remote_front(&server, 0x8002, 1 << 1);
    f.queue_event = false;
    f.bring_up(1);
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    assert_eq!(f.blk(VIRTIO_BLK_T_OUT, 5, &data, 0).0, 0);
    let (st, len, back) = f.blk(VIRTIO_BLK_T_IN, 5, &[], 4096);
    assert_eq!((st, len), (0, 4097));
    assert_eq!(back, data);
    let mut on_disk = vec![0u8; 4096];
    std::fs::File::open(&file.0)
        .unwrap()
        .read_exact_at(&mut on_disk, 5 * 512)
        .unwrap();
    assert_eq!(on_disk, data, "the bytes are in qemu-storage-daemon's file");

    // The backend dies: the bridge leaves READY; restarted, it comes back.
    drop(daemon);
    wait_state(&f, 0, "the bridge stayed READY after the backend died");
    let daemon = qsd(&file.0, &sock).unwrap();
    wait_state(&f, STATE_READY, "the bridge did not come back READY");

    // A fresh negotiation (what vdev_remote does on a backend that came
    // back) reaches the new daemon, with the data still there.
    let f2_link = f.link;
    let mut f = Front::new(f2_link);
    f.queue_event = false;
    f.next_buf = 0x40000;
    f.bring_up(1);
    let (st, _, back) = f.blk(VIRTIO_BLK_T_IN, 5, &[], 4096);
    assert_eq!(st, 0);
    assert_eq!(back, data);

    super::super::runner::STOP.store(true, Ordering::SeqCst);
    bridge.join().unwrap().unwrap();
    assert_eq!(state_of(&f), 0, "the bridge cleared its state on shutdown");
    drop(daemon);
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn the_hold_defaults_to_blk_only_and_is_refused_for_stateful_backends() {
    let kind = |s| parse_kind(s).unwrap();
    let ms = |d: std::time::Duration| d.as_millis();
    assert_eq!(hold_for(&kind("blk"), None).map(ms).ok(), Some(5000));
    for k in ["net", "console", "rng", "fs", "vsock"] {
        assert_eq!(hold_for(&kind(k), None).map(ms).ok(), Some(0), "{k}");
        assert_eq!(hold_for(&kind(k), Some(0)).map(ms).ok(), Some(0), "{k}");
    }
    assert_eq!(
        hold_for(&kind("console"), Some(300)).map(ms).ok(),
        Some(300)
    );
    assert!(hold_for(&kind("fs"), Some(100)).is_err());
    assert!(hold_for(&kind("vsock"), Some(100)).is_err());
    assert_eq!(
        hold_for(&kind("blk"), Some(60_000)).map(ms).ok(),
        Some(60_000)
    );
    assert!(hold_for(&kind("blk"), Some(60_001)).is_err());
    assert!(hold_for(&kind("blk"), Some(u64::MAX)).is_err());
}

/// The bridge (`run`) with a fake backend: lost, it is waited for (its
/// process, this one, never ends) for the whole hold, during which header
/// writes are answered; the device fails by the hold's end.
#[test]
fn the_header_is_served_during_the_hold_and_the_device_fails_by_its_end() {
    use crate::ivshmem::endpoint::tests::TestServer;
    use crate::remote::bridge::take_over_tests::{Fake, Manner};

    let _one = daemon_lock();
    let fake = Fake::start("header", Manner::Mute);
    let server = TestServer::start(4);
    let hold = Duration::from_millis(2000);
    let opts = BridgeOptions {
        ivshmem: server.socket.clone(),
        backend: fake.path.clone(),
        kind: parse_kind("blk").unwrap(),
        queue_size: 256,
        readonly: false,
        verbose: false,
        hold,
    };
    let bridge = std::thread::spawn(move || run(&opts));
    let mut f = remote_front(&server, 0x8002, 1 << 1);
    f.queue_event = false;
    assert_ne!(f.device_features() & 1 << 32, 0, "VERSION_1 offered");

    // The backend goes away. Its "process" (this one) never ends, so the
    // bridge waits the whole hold for it: header writes are answered
    // meanwhile, well within the hold.
    fake.lose_first();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(state_of(&f), STATE_READY, "the hold keeps the device READY");
    let t1 = Instant::now();
    assert_ne!(f.device_features() & 1 << 32, 0);
    let served = t1.elapsed();
    assert!(served < Duration::from_millis(500), "{served:?}");
    assert_eq!(state_of(&f), STATE_READY, "still in the hold");

    // The device fails by the end of the hold (plus slack).
    wait_state(&f, 0, "the bridge stayed READY past the hold");
    let failed = t0.elapsed();
    assert!(failed < hold + Duration::from_millis(500), "{failed:?}");

    super::super::runner::STOP.store(true, Ordering::SeqCst);
    bridge.join().unwrap().unwrap();
}
