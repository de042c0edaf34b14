// SPDX-License-Identifier: GPL-2.0
//! `--v2` through the real sockets: a host peer (`ivshmem_peer`) and a
//! "guest" played by the `vfio_user` crate's client, as QEMU would drive it.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::TempDir;
use ivshmem_peer::v2::V2Layout;
use ivshmem_peer::{eventfd, poll, ConnectOptions, Peer, PeerEvent};
use ivshmem_server::v2::{V2Config, V2Device};
use ivshmem_server::MemoryBacking;

const ID: u64 = 0x00;
const MAX_PEERS: u64 = 0x04;
const INT_CONTROL: u64 = 0x08;
const DOORBELL: u64 = 0x0c;
const STATE: u64 = 0x10;
const MSIX: u32 = 2;
const TRIGGER_EVENTFD: u32 = (1 << 5) | (1 << 2);
const WAIT: Duration = Duration::from_secs(5);

fn config(dir: &Path, strict: bool) -> V2Config {
    V2Config {
        socket_path: dir.join("host"),
        memory: MemoryBacking::Dir(dir.to_path_buf()),
        max_peers: 3,
        vectors: 2,
        rw_size: 0x4000,
        output_size: 0x1000,
        protocol: 0x4001,
        one_shot: false,
        strict,
        endpoints: vec![dir.join("g0").into()],
        verbose: false,
    }
}

/// Starts the device in a thread; it serves until the process ends.
fn start(cfg: &V2Config) {
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let dump: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let mut dev = V2Device::new(cfg, stop).expect("device starts");
    assert_eq!(dev.endpoints().len(), cfg.endpoints.len());
    assert!(dev.endpoints().iter().all(|e| !e.is_finished()), "serving");
    assert!(
        cfg.endpoints[0].path.exists() && cfg.socket_path.exists(),
        "sockets exist when ready"
    );
    std::thread::spawn(move || dev.run_until(stop, dump));
}

fn r32(c: &mut vfio_user::Client, region: u32, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    c.region_read(region, offset, &mut b).unwrap();
    u32::from_le_bytes(b)
}

fn w32(c: &mut vfio_user::Client, region: u32, offset: u64, v: u32) {
    c.region_write(region, offset, &v.to_le_bytes()).unwrap();
}

fn wait_fd(fd: &OwnedFd) -> bool {
    poll::wait_readable(fd.as_fd(), Some(WAIT)).unwrap()
        && eventfd::try_read(fd.as_fd()).unwrap().is_some()
}

fn msix_fds(c: &mut vfio_user::Client) -> Vec<OwnedFd> {
    let fds: Vec<OwnedFd> = (0..2).map(|_| eventfd::create().unwrap()).collect();
    for fd in &fds {
        eventfd::set_nonblocking(fd.as_fd()).unwrap();
    }
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    c.set_irqs(MSIX, TRIGGER_EVENTFD, 0, 2, &raw).unwrap();
    fds
}

fn wait_event(peer: &mut Peer, want: PeerEvent) {
    common::expect_event_within(peer, want, WAIT);
}

#[test]
fn guest_and_host_peers_share_doorbells_and_states() {
    let dir = TempDir::new("v2");
    let cfg = config(&dir.0, false);
    start(&cfg);
    let opts = ConnectOptions {
        vectors: Some(2),
        ..ConnectOptions::default()
    };
    let mut host = Peer::connect_with(&cfg.socket_path, &opts).unwrap();
    assert_eq!(host.id(), 0);
    let layout = V2Layout {
        max_peers: 3,
        rw_size: 0x4000,
        output_size: 0x1000,
    };
    assert_eq!(
        host.shm().len(),
        0x1000 + 0x4000 + 3 * 0x1000,
        "memory = sections"
    );

    let mut guest = vfio_user::Client::new(&cfg.endpoints[0].path).unwrap();
    wait_event(&mut host, PeerEvent::Joined(1));
    assert_eq!(r32(&mut guest, 7, 0), 0x4106_110a);
    assert_eq!(r32(&mut guest, 7, 8), 0xff40_0100);
    assert_eq!(
        (r32(&mut guest, 0, ID), r32(&mut guest, 0, MAX_PEERS)),
        (1, 3)
    );
    let bar2 = guest.region(2).unwrap();
    assert_eq!(
        bar2.size, 0x8000,
        "BAR2 is the power of two above 0x8000 bytes"
    );
    assert_eq!(bar2.sparse_areas.len(), 1, "default mode maps everything");
    assert!(bar2.file_offset.is_some(), "the memory fd is handed over");

    // Host -> guest: dropped while Interrupt Control is 0, delivered after.
    let irq = msix_fds(&mut guest);
    host.ring(1, 1).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        eventfd::try_read(irq[1].as_fd()).unwrap(),
        None,
        "disabled: dropped"
    );
    w32(&mut guest, 0, INT_CONTROL, 1);
    host.ring(1, 1).unwrap();
    assert!(
        wait_fd(&irq[1]),
        "host doorbell reaches the guest's MSI-X vector 1"
    );

    // Guest -> host doorbell; doorbells to absent peers are dropped.
    w32(&mut guest, 0, DOORBELL, 1);
    assert_eq!(host.wait(1, Some(WAIT)).unwrap(), 1);
    w32(&mut guest, 0, DOORBELL, 2 << 16);
    w32(&mut guest, 0, DOORBELL, 0xffff_ffff);

    // Guest state -> table entry + vector 0 at the host.
    w32(&mut guest, 0, STATE, 7);
    assert_eq!(host.wait(0, Some(WAIT)).unwrap(), 1);
    let view = host.v2(layout).unwrap();
    assert_eq!(view.states().unwrap(), vec![0, 7, 0]);
    // Host state -> guest vector 0.
    assert!(view.set_state(3).unwrap());
    assert!(wait_fd(&irq[0]), "host state change raises guest vector 0");
    assert_eq!(
        r32(&mut guest, 2, 0),
        3,
        "guest reads the state table (trapped or not)"
    );

    // Guest leaves: entry cleared, host told and rung; a new QEMU gets a
    // fresh peer on the same endpoint.
    guest.shutdown().unwrap();
    drop(guest);
    wait_event(&mut host, PeerEvent::Left(1));
    assert_eq!(host.wait(0, Some(WAIT)).unwrap(), 1);
    assert_eq!(host.v2(layout).unwrap().state_of(1).unwrap(), 0);
    let mut again = vfio_user::Client::new(&cfg.endpoints[0].path).unwrap();
    wait_event(&mut host, PeerEvent::Joined(2));
    assert_eq!(r32(&mut again, 0, ID), 2);
}

#[test]
fn strict_mode_traps_foreign_sections() {
    let dir = TempDir::new("v2strict");
    let cfg = config(&dir.0, true);
    start(&cfg);
    let mut guest = vfio_user::Client::new(&cfg.endpoints[0].path).unwrap();
    assert_eq!(r32(&mut guest, 0, ID), 0);
    let areas: Vec<(u64, u64)> = guest
        .region(2)
        .unwrap()
        .sparse_areas
        .iter()
        .map(|a| (a.offset, a.size))
        .collect();
    assert_eq!(
        areas,
        vec![(0x1000, 0x4000), (0x5000, 0x1000)],
        "R/W and own output only"
    );
    // The state table and peer 1's output: reads answered, writes refused.
    w32(&mut guest, 0, STATE, 9);
    w32(&mut guest, 2, 0, 0xdead);
    w32(&mut guest, 2, 0x6000, 0xbeef);
    assert_eq!(r32(&mut guest, 2, 0), 9);
    assert_eq!(r32(&mut guest, 2, 0x6000), 0);
    // Garbage that is not an error: misaligned and odd-sized register
    // accesses. (Accesses the device answers with an error, such as bad
    // regions, are covered by the unit tests: this crate's client does not
    // read error replies.)
    guest.region_write(0, 9, &[1, 2, 3]).unwrap();
    guest.region_write(0, 0x800, &[0xff; 8]).unwrap();
    assert_eq!(r32(&mut guest, 0, ID), 0, "still serving");
}

#[test]
fn two_guests_ring_each_other() {
    let dir = TempDir::new("v2two");
    let mut cfg = config(&dir.0, false);
    cfg.endpoints.push(ivshmem_server::v2::EndpointSpec {
        path: dir.0.join("g1"),
        protocol: Some(0xc002),
    });
    start(&cfg);
    let mut a = vfio_user::Client::new(&cfg.endpoints[0].path).unwrap();
    let a_id = r32(&mut a, 0, ID);
    let mut b = vfio_user::Client::new(&cfg.endpoints[1].path).unwrap();
    let b_id = r32(&mut b, 0, ID);
    assert_ne!(a_id, b_id, "one id space");
    assert_eq!(r32(&mut a, 7, 8) >> 8, 0xff_4001, "the device's protocol");
    assert_eq!(
        r32(&mut b, 7, 8) >> 8,
        0xff_c002,
        "the endpoint's own protocol"
    );
    let a_irq = msix_fds(&mut a);
    let b_irq = msix_fds(&mut b);
    w32(&mut a, 0, INT_CONTROL, 1);
    w32(&mut b, 0, INT_CONTROL, 1);
    w32(&mut b, 0, DOORBELL, a_id << 16 | 1);
    assert!(wait_fd(&a_irq[1]), "guest b -> guest a, vector 1");
    w32(&mut a, 0, DOORBELL, b_id << 16);
    assert!(wait_fd(&b_irq[0]), "guest a -> guest b, vector 0");
    // A state change reaches the other guest's vector 0; a guest that
    // leaves rings it again (its entry was not 0).
    w32(&mut a, 0, STATE, 1);
    assert!(wait_fd(&b_irq[0]), "state change seen by b");
    assert_eq!(r32(&mut b, 2, u64::from(a_id) * 4), 1);
    a.shutdown().unwrap();
    drop(a);
    assert!(wait_fd(&b_irq[0]), "a's leave seen by b");
    assert_eq!(r32(&mut b, 2, u64::from(a_id) * 4), 0, "entry cleared");
}

#[test]
fn garbage_clients_do_not_take_the_endpoint_down() {
    use std::io::Write;
    let dir = TempDir::new("v2garbage");
    let cfg = config(&dir.0, false);
    start(&cfg);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..8 {
        let mut s = std::os::unix::net::UnixStream::connect(&cfg.endpoints[0].path).unwrap();
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // A header-sized prefix that parses (command 1..=12), then noise.
        let mut msg = garbage.clone();
        msg[2..4].copy_from_slice(&(1 + round as u16 % 12).to_le_bytes());
        // Small sizes, so that the server parses message after message.
        for chunk in msg.chunks_mut(64) {
            if chunk.len() >= 8 {
                let size = 16 + u32::from(chunk[4] % 48);
                chunk[4..8].copy_from_slice(&size.to_le_bytes());
            }
        }
        let _ = s.write_all(&msg);
        // Drain the replies for a while, then hang up.
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut sink = [0u8; 4096];
        while matches!(std::io::Read::read(&mut s, &mut sink), Ok(n) if n > 0) {}
        drop(s);
    }
    // The endpoint still serves a well-behaved client, as a fresh peer.
    let deadline = Instant::now() + WAIT;
    loop {
        match vfio_user::Client::new(&cfg.endpoints[0].path) {
            Ok(mut c) => {
                assert_eq!(r32(&mut c, 0, MAX_PEERS), 3);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("endpoint dead: {e}"),
        }
    }
}
