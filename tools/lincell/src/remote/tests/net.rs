// SPDX-License-Identifier: GPL-2.0

//! virtio-net against the in-process frontend and an in-memory port:
//! features and config, the header both ways, frames split over
//! descriptors, short and oversized frames, chains that are too short or
//! point outside the section, offload requests that were not offered, and
//! randomized chains and frames (every frame that reaches the port or the
//! guest is whole and within the limits; the counters add up), and the
//! transmit policy (source-MAC lock, rate limit) with random sources.

use std::collections::VecDeque;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lincell_shared::vdev::header::{off, CONFIG_OFFSET};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_MTU,
    VIRTIO_NET_F_STATUS,
};
use vm_memory::{Bytes, GuestAddress};

use super::{daemon_lock, direct, remote_front, Direct, Front, Link, Rng, SECTION};
use crate::remote::engine::Faulty;
use crate::remote::net::policy::{Policy, TokenBucket};
use crate::remote::net::{Mac, Net, Port, Stats, ETH_HLEN, HDR_LEN, RX, TX};

/// Frames both ways, shared with the test.
#[derive(Clone, Default)]
struct MemPort {
    /// Frames waiting to go to the guest.
    inbound: Arc<Mutex<VecDeque<Vec<u8>>>>,
    /// Frames the guest sent.
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    /// `send` fails while set.
    broken: Arc<Mutex<bool>>,
}

impl Port for MemPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(f) = self.inbound.lock().unwrap().pop_front() else {
            return Ok(None);
        };
        let n = f.len().min(buf.len());
        buf[..n].copy_from_slice(&f[..n]);
        Ok(Some(n))
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if *self.broken.lock().unwrap() {
            return Err(io::Error::other("port down"));
        }
        self.sent.lock().unwrap().push(frame.to_vec());
        Ok(())
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn describe(&self) -> String {
        "mem".into()
    }
}

const MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x42]);
const MTU: usize = 1500;
const MAX_FRAME: usize = MTU + 18;

type NetFront = Front<Direct<Faulty<Net<MemPort>>>>;

fn net_front() -> (NetFront, MemPort) {
    let port = MemPort::default();
    // CAST: a constant in range.
    let dev = Net::new(port.clone(), MAC, MTU as u16, false).unwrap();
    let mut f = Front::new(direct(dev, None));
    f.bring_up(2);
    (f, port)
}

fn stats(f: &NetFront) -> Stats {
    f.link.0.device().inner().stats()
}

/// A frame of `len` bytes: broadcast destination, our source, then a
/// pattern from `seed`.
fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| seed.wrapping_add((i % 251) as u8))
        .collect();
    if len >= 12 {
        v[..6].fill(0xff);
        v[6..12].copy_from_slice(&MAC.0);
    }
    v
}

/// A transmit header: `flags`, `gso_type`, the rest zero.
fn tx_hdr(flags: u8, gso: u8) -> [u8; HDR_LEN] {
    let mut h = [0u8; HDR_LEN];
    h[0] = flags;
    h[1] = gso;
    h
}

impl<L: Link> Front<L> {
    /// Sends `bufs` (readable) on the transmit queue; returns the used
    /// entries of the pass.
    fn tx(&mut self, bufs: &[&[u8]]) -> Vec<(u32, u32)> {
        let descs: Vec<(u64, u32, bool)> = bufs
            .iter()
            .map(|b| (self.alloc(b), u32::try_from(b.len()).unwrap(), false))
            .collect();
        let ids = self.submit_ids(TX, &descs);
        self.link.kick();
        let used = self.used(TX);
        self.queues[TX].free.extend(ids);
        used
    }

    /// Posts a receive chain of writable buffers of `lens` bytes; returns
    /// (head, descriptor ids, addresses).
    fn post_rx(&mut self, lens: &[u32]) -> (u16, Vec<u16>, Vec<u64>) {
        let addrs: Vec<u64> = lens
            .iter()
            .map(|&l| self.alloc(&vec![0xee; l as usize]))
            .collect();
        let descs: Vec<(u64, u32, bool)> = addrs
            .iter()
            .zip(lens)
            .map(|(&a, &l)| (a, l, true))
            .collect();
        let ids = self.submit_ids(RX, &descs);
        (ids[0], ids, addrs)
    }

    /// The bytes of a posted receive chain.
    fn rx_bytes(&self, lens: &[u32], addrs: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for (&l, &a) in lens.iter().zip(addrs) {
            let mut b = vec![0u8; l as usize];
            self.m().read_slice(&mut b, GuestAddress(a)).unwrap();
            out.extend(b);
        }
        out
    }
}

#[test]
fn net_offers_mac_status_mtu_and_no_offloads() {
    let (mut f, _) = net_front();
    let feat = f.device_features();
    for b in [VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_F_MTU] {
        assert_ne!(feat & 1 << b, 0, "feature {b} offered");
    }
    for b in [VIRTIO_NET_F_CSUM, VIRTIO_NET_F_MRG_RXBUF] {
        assert_eq!(feat & 1 << b, 0, "feature {b} not offered");
    }
    let mut c = [0u8; 12];
    f.m()
        .read_slice(&mut c, GuestAddress(CONFIG_OFFSET as u64))
        .unwrap();
    assert_eq!(&c[..6], &MAC.0, "mac");
    assert_eq!(u16::from_le_bytes([c[6], c[7]]), 1, "status: link up");
    assert_eq!(u16::from_le_bytes([c[8], c[9]]), 1, "one queue pair");
    assert_eq!(usize::from(u16::from_le_bytes([c[10], c[11]])), MTU);
    assert_eq!(
        f.m()
            .header()
            .load::<u32>(off::SIZE, std::sync::atomic::Ordering::Acquire),
        (CONFIG_OFFSET + 12) as u32
    );
}

#[test]
fn net_transmits_whole_frames_however_split() {
    let (mut f, port) = net_front();
    let fr = frame(60, 1);
    let mut one = tx_hdr(0, 0).to_vec();
    one.extend(&fr);
    let used = f.tx(&[&one]);
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].1, 0, "transmit used length is 0");
    // Header alone, then the frame in three pieces, one cut inside the
    // Ethernet header.
    let big = frame(MAX_FRAME, 2);
    let used = f.tx(&[&tx_hdr(0, 0), &big[..5], &big[5..700], &big[700..]]);
    assert_eq!(used.len(), 1);
    // Header split across descriptors too.
    let mut hdr_and_start = tx_hdr(0, 0)[4..].to_vec();
    hdr_and_start.extend(&fr[..20]);
    f.tx(&[&tx_hdr(0, 0)[..4], &hdr_and_start, &fr[20..]]);
    let sent = port.sent.lock().unwrap().clone();
    assert_eq!(sent, vec![fr.clone(), big, fr]);
    let s = stats(&f);
    assert_eq!((s.tx_frames, s.tx_bad_chain, s.tx_bad_header), (3, 0, 0));
    assert_eq!(s.tx_bytes, 60 + MAX_FRAME as u64 + 60);
}

#[test]
fn net_drops_bad_transmit_chains_and_survives() {
    let (mut f, port) = net_front();
    let fr = frame(100, 3);
    // Shorter than the header.
    assert_eq!(f.tx(&[&[0u8; 11]]).len(), 1, "completed anyway");
    // Header, no frame; header and a runt below an Ethernet header.
    f.tx(&[&tx_hdr(0, 0)]);
    f.tx(&[&tx_hdr(0, 0), &[0u8; ETH_HLEN - 1]]);
    // One byte over the largest frame.
    f.tx(&[&tx_hdr(0, 0), &frame(MAX_FRAME + 1, 4)]);
    // Offloads that were not offered: NEEDS_CSUM, TSO4.
    f.tx(&[&tx_hdr(1, 0), &fr]);
    f.tx(&[&tx_hdr(0, 1), &fr]);
    // A descriptor outside the section.
    let ids = f.submit_ids(TX, &[(SECTION as u64 - 8, 64, false)]);
    f.link.kick();
    assert_eq!(f.used(TX).len(), 1);
    f.queues[TX].free.extend(ids);
    // A transmit chain with a writable part: sent, used length 0.
    let h = f.alloc(&{
        let mut v = tx_hdr(0, 0).to_vec();
        v.extend(&fr);
        v
    });
    let w = f.alloc(&[0u8; 64]);
    let ids = f.submit_ids(
        TX,
        &[(h, (HDR_LEN + fr.len()) as u32, false), (w, 64, true)],
    );
    f.link.kick();
    assert_eq!(f.used(TX), vec![(u32::from(ids[0]), 0)]);
    f.queues[TX].free.extend(ids);
    // The port failing: counted, completed.
    *port.broken.lock().unwrap() = true;
    let mut one = tx_hdr(0, 0).to_vec();
    one.extend(&fr);
    assert_eq!(f.tx(&[&one]).len(), 1);
    *port.broken.lock().unwrap() = false;
    // And a good frame still goes through.
    f.tx(&[&one]);
    let s = stats(&f);
    assert_eq!(s.tx_bad_chain, 5, "{s:?}");
    assert_eq!(s.tx_bad_header, 2, "{s:?}");
    assert_eq!(s.tx_port_errors, 1, "{s:?}");
    assert_eq!(s.tx_frames, 2, "{s:?}");
    assert_eq!(*port.sent.lock().unwrap(), vec![fr.clone(), fr]);
}

#[test]
fn net_receives_with_header_and_waits_for_buffers() {
    let (mut f, port) = net_front();
    let a = frame(60, 5);
    let b = frame(MAX_FRAME, 6);
    port.inbound.lock().unwrap().extend([a.clone(), b.clone()]);
    // No receive buffer yet: nothing happens, the frames wait.
    assert!(f.link.kick().is_empty());
    assert_eq!(f.used(RX).len(), 0);
    // One chain: one frame, header in its own descriptor as Linux does not
    // (any split works).
    let lens = [HDR_LEN as u32, 2000];
    let (head, ids, addrs) = f.post_rx(&lens);
    let rung = f.link.kick();
    assert_eq!(rung, vec![1], "the receive queue's vector");
    let used = f.used(RX);
    assert_eq!(used, vec![(u32::from(head), (HDR_LEN + a.len()) as u32)]);
    let got = f.rx_bytes(&lens, &addrs);
    let mut want_hdr = [0u8; HDR_LEN];
    want_hdr[10] = 1; // num_buffers
    assert_eq!(&got[..HDR_LEN], &want_hdr);
    assert_eq!(&got[HDR_LEN..HDR_LEN + a.len()], &a[..]);
    f.queues[RX].free.extend(ids);
    // The second frame in one big buffer, split at an odd place.
    let lens = [7, 1000, 600];
    let (_, ids, addrs) = f.post_rx(&lens);
    f.link.kick();
    assert_eq!(f.used(RX)[0].1, (HDR_LEN + b.len()) as u32);
    assert_eq!(
        &f.rx_bytes(&lens, &addrs)[HDR_LEN..HDR_LEN + b.len()],
        &b[..]
    );
    f.queues[RX].free.extend(ids);
    let s = stats(&f);
    assert_eq!((s.rx_frames, s.rx_bytes), (2, (a.len() + b.len()) as u64));
}

#[test]
fn net_drops_frames_that_do_not_fit_and_keeps_going() {
    let (mut f, port) = net_front();
    let big = frame(1000, 7);
    let small = frame(64, 8);
    port.inbound.lock().unwrap().extend([
        frame(ETH_HLEN - 1, 9),   // runt from the port
        frame(MAX_FRAME + 1, 10), // too large for the MTU
        big.clone(),              // too large for the first chain
        small.clone(),            // fits the second
    ]);
    let (h1, ids1, _) = f.post_rx(&[200]);
    let lens = [200];
    let (h2, ids2, addrs2) = f.post_rx(&lens);
    // A chain with no writable buffer at all.
    let r = f.alloc(&[0u8; 64]);
    let ids3 = f.submit_ids(RX, &[(r, 64, false)]);
    f.link.kick();
    let used = f.used(RX);
    assert_eq!(
        used,
        vec![
            (u32::from(h1), 0),
            (u32::from(h2), (HDR_LEN + small.len()) as u32)
        ]
    );
    assert_eq!(
        &f.rx_bytes(&lens, &addrs2)[HDR_LEN..HDR_LEN + small.len()],
        &small[..]
    );
    // The read-only chain waits until a frame comes, then is returned empty.
    port.inbound.lock().unwrap().push_back(small.clone());
    f.link.kick();
    assert_eq!(f.used(RX), vec![(u32::from(ids3[0]), 0)]);
    for ids in [ids1, ids2, ids3] {
        f.queues[RX].free.extend(ids);
    }
    let s = stats(&f);
    assert_eq!(s.rx_bad_size, 2, "{s:?}");
    assert_eq!(s.rx_short_chain, 2, "{s:?}");
    assert_eq!(s.rx_frames, 1, "{s:?}");
}

#[test]
fn net_reset_forgets_the_pending_frame() {
    let (mut f, port) = net_front();
    port.inbound.lock().unwrap().push_back(frame(80, 11));
    f.link.kick();
    // Read ahead (no buffer), then the driver resets.
    f.write_field(off::DEVICE_STATUS, 4, 0);
    f.queues.clear();
    f.bring_up(2);
    let (_, _, _) = f.post_rx(&[2048]);
    f.link.kick();
    assert_eq!(f.used(RX).len(), 0, "the old frame is gone");
}

#[test]
fn net_mac_parsing() {
    assert_eq!("02:00:00:00:00:42".parse::<Mac>().unwrap(), MAC);
    assert_eq!(
        "02:AB:cd:00:00:01".parse::<Mac>().unwrap().to_string(),
        "02:ab:cd:00:00:01"
    );
    for bad in [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:00:00",
        "01:00:00:00:00:01",
        "00:00:00:00:00:00",
        "2:00:00:00:00:01",
        "zz:00:00:00:00:01",
        "02-00-00-00-00-01",
    ] {
        assert!(bad.parse::<Mac>().is_err(), "{bad:?}");
    }
    let d = Mac::derived("lct0");
    assert_eq!(d, Mac::derived("lct0"), "stable");
    assert_ne!(d, Mac::derived("lct1"));
    assert_eq!(d.0[0], 0x02, "locally administered unicast");
    assert!(Net::new(MemPort::default(), MAC, 67, false).is_err());
    assert!(Net::new(MemPort::default(), Mac([1, 0, 0, 0, 0, 0]), 1500, false).is_err());
}

/// Random transmit and receive traffic with hostile chains: nothing panics,
/// whatever reaches the port or the guest is a whole frame within the
/// limits, every chain completes, and the counters add up.
#[test]
fn net_random_chains_and_frames() {
    for seed in 1..=30u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (mut f, port) = net_front();
        let mut tx_chains = 0u64;
        let mut rx_chains = 0u64;
        let mut from_port = 0u64;
        let mut good_tx: Vec<Vec<u8>> = Vec::new();
        for _ in 0..200 {
            let r = rng.next();
            if r & 1 == 0 {
                // A transmit chain: maybe a good header, random frame size,
                // cut into 1 to 4 pieces, sometimes a bad address.
                let len = match r >> 1 & 3 {
                    0 => (r >> 8) as usize % 40,
                    1 => MAX_FRAME - 2 + (r >> 8) as usize % 4,
                    _ => ETH_HLEN + (r >> 8) as usize % 1600,
                };
                let hdr = if r >> 20 & 7 == 0 {
                    tx_hdr((r >> 24) as u8, (r >> 32) as u8)
                } else {
                    tx_hdr(0, 0)
                };
                let fr = frame(len, (r >> 40) as u8);
                let mut bytes = hdr.to_vec();
                bytes.extend(&fr);
                let pieces = 1 + (r >> 44) as usize % 4;
                let mut cuts: Vec<usize> = (1..pieces)
                    .map(|_| rng.next() as usize % (bytes.len() + 1))
                    .collect();
                cuts.sort_unstable();
                let mut descs = Vec::new();
                let mut at = 0;
                for c in cuts.into_iter().chain([bytes.len()]) {
                    let a = f.alloc(&bytes[at..c]);
                    descs.push((a, u32::try_from(c - at).unwrap(), false));
                    at = c;
                }
                let bad_addr = r >> 50 & 15 == 0;
                if bad_addr {
                    descs[0].0 = SECTION as u64 - 4 + (r >> 54 & 3);
                    descs[0].1 = descs[0].1.max(8);
                }
                let ok_hdr = hdr[0] & 1 == 0 && hdr[1] == 0;
                if !bad_addr && ok_hdr && (ETH_HLEN..=MAX_FRAME).contains(&len) {
                    good_tx.push(fr);
                }
                let ids = f.submit_ids(TX, &descs);
                tx_chains += 1;
                f.link.kick();
                assert_eq!(f.used(TX).len(), 1, "seed {seed}: tx chain completed");
                f.queues[TX].free.extend(ids);
            } else {
                // Frames from the port, and a receive chain.
                for _ in 0..(r >> 1 & 3) {
                    let x = rng.next();
                    let len = match x & 3 {
                        0 => (x >> 8) as usize % 20,
                        1 => MAX_FRAME - 1 + (x >> 8) as usize % 3,
                        _ => ETH_HLEN + (x >> 8) as usize % 1500,
                    };
                    port.inbound.lock().unwrap().push_back(frame(len, x as u8));
                    from_port += 1;
                }
                if f.queues[RX].free.len() >= 3 {
                    let n = 1 + (r >> 8) as usize % 3;
                    let lens: Vec<u32> = (0..n)
                        .map(|_| u32::try_from(rng.next() % 1200).unwrap())
                        .collect();
                    let (head, ids, _) = f.post_rx(&lens);
                    rx_chains += 1;
                    f.link.kick();
                    for (id, len) in f.used(RX) {
                        let writable: u32 = lens.iter().sum();
                        if id == u32::from(head) {
                            assert!(len <= writable, "seed {seed}: used {len} > {writable}");
                            assert!(
                                len == 0 || len as usize >= HDR_LEN + ETH_HLEN,
                                "seed {seed}: used len {len}"
                            );
                            f.queues[RX].free.extend(ids.iter().copied());
                        } else {
                            // An earlier chain that waited for a frame:
                            // its ids go back below.
                            assert!(len as usize <= HDR_LEN + MAX_FRAME);
                        }
                    }
                }
                // Chains still out are given up when their ids run short:
                // reset the queue pair.
                if f.queues[RX].free.len() < 3 {
                    f.write_field(off::DEVICE_STATUS, 4, 0);
                    f.queues.clear();
                    f.bring_up(2);
                    port.inbound.lock().unwrap().clear();
                }
            }
        }
        let s = stats(&f);
        assert_eq!(
            s.tx_frames + s.tx_bad_chain + s.tx_bad_header + s.tx_port_errors,
            tx_chains,
            "seed {seed}: every tx chain counted once: {s:?}"
        );
        let sent = port.sent.lock().unwrap().clone();
        assert_eq!(
            sent, good_tx,
            "seed {seed}: exactly the good frames, in order"
        );
        assert!(
            s.rx_frames + s.rx_short_chain <= rx_chains,
            "seed {seed}: {s:?}"
        );
        assert!(s.rx_frames + s.rx_short_chain + s.rx_bad_size <= from_port);
    }
}

/// Random bytes over the rings while traffic flows: no panic.
#[test]
fn net_garbage_in_the_rings_never_panics() {
    for seed in 1..=10u64 {
        let mut rng = Rng(seed | 1);
        let (mut f, port) = net_front();
        let m = f.m().clone();
        for i in 0..1500 {
            let r = rng.next();
            if i % 10 == 0 {
                port.inbound
                    .lock()
                    .unwrap()
                    .push_back(frame(60 + (r % 1400) as usize, r as u8));
            }
            let at = match r % 3 {
                0 => 0x10000 + (r >> 8 & 0xffff),
                1 => 0x80000 + (r >> 8 & 0x3_ffff),
                _ => r >> 8 & (SECTION as u64 - 1),
            };
            let len = (r >> 40 & 15) as usize + 1;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if at >= 0x1000 {
                let _ = m.write_slice(&bytes, GuestAddress(at));
            }
            f.link.kick();
        }
    }
}

/// Frames as datagrams on a UNIX socket pair: a port with a descriptor, as
/// a TAP has.
struct DgramPort(std::os::unix::net::UnixDatagram);

impl Port for DgramPort {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.0.recv(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame).map(|_| ())
    }
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        Some(self.0.as_fd())
    }
    fn describe(&self) -> String {
        "dgram".into()
    }
}

/// The daemon loop with a net device whose port has a descriptor: a frame
/// arriving at the port wakes the backend at once (not at its 3 s tick)
/// and reaches the guest's receive buffer; a transmitted frame reaches the
/// port.
#[test]
fn daemon_wakes_for_frames_at_the_port() {
    use crate::ivshmem::endpoint::tests::TestServer;
    use crate::ivshmem::endpoint::{Endpoint, PeerEndpoint};
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    let _one = daemon_lock();
    let server = TestServer::start(4);
    let (outside, inside) = std::os::unix::net::UnixDatagram::pair().unwrap();
    inside.set_nonblocking(true).unwrap();
    outside
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let socket = server.socket.clone();
    let backend = std::thread::spawn(move || {
        let ep = PeerEndpoint::connect(&socket).unwrap();
        // CAST: a constant in range.
        let dev = Net::new(DgramPort(inside), MAC, MTU as u16, false).unwrap();
        crate::remote::runner::prepare_v1(&ep, dev.device_id()).unwrap();
        crate::remote::runner::serve(
            Box::new(ep),
            dev,
            &crate::remote::runner::RunOptions {
                queue_size: 256,
                fault: None,
                fault_after: 0,
                verbose: false,
                tick: Duration::from_secs(3),
            },
        )
    });
    use crate::remote::engine::Device as _;
    // Kicks wait for the transmit queue's completion (vector 2).
    let mut f = remote_front(&server, 0x8001, 1 << 2);
    f.bring_up(2);
    // A receive buffer, published with a kick that completes nothing.
    let lens = [2048];
    let (head, ids, addrs) = f.post_rx(&lens);
    let backend_id = f.link.backend;
    f.link.ep.ring(backend_id, 1).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let fr = frame(300, 42);
    let t = Instant::now();
    outside.send(&fr).unwrap();
    let ev = f.link.ep.wait(1 << 1, Duration::from_secs(5)).unwrap();
    let took = t.elapsed();
    assert_ne!(ev.mask & 1 << 1, 0);
    assert!(
        took < Duration::from_secs(2),
        "the frame waited {took:?} (for the tick?)"
    );
    assert_eq!(
        f.used(RX),
        vec![(u32::from(head), (HDR_LEN + fr.len()) as u32)]
    );
    assert_eq!(
        &f.rx_bytes(&lens, &addrs)[HDR_LEN..HDR_LEN + fr.len()],
        &fr[..]
    );
    f.queues[RX].free.extend(ids);
    // Transmit: the frame comes out of the port.
    let out = frame(200, 43);
    let mut bytes = tx_hdr(0, 0).to_vec();
    bytes.extend(&out);
    assert_eq!(f.tx(&[&bytes]).len(), 1);
    let mut got = vec![0u8; 4096];
    let n = outside.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &out[..]);

    crate::remote::runner::STOP.store(true, Ordering::SeqCst);
    backend.join().unwrap().unwrap();
}

/// A device on a new port with `policy`, brought up.
fn net_front_with(policy: Policy) -> (NetFront, MemPort) {
    let port = MemPort::default();
    // CAST: a constant in range.
    let dev = Net::new(port.clone(), MAC, MTU as u16, false)
        .unwrap()
        .with_policy(policy);
    let mut f = Front::new(direct(dev, None));
    f.bring_up(2);
    (f, port)
}

/// Header and frame in one descriptor.
fn one_tx(fr: &[u8]) -> Vec<u8> {
    let mut v = tx_hdr(0, 0).to_vec();
    v.extend(fr);
    v
}

#[test]
fn net_mac_lock_drops_and_counts_spoofed_frames() {
    let (mut f, port) = net_front();
    let good = frame(100, 1);
    let mut spoofed = good.clone();
    spoofed[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x43]);
    let mut multicast_src = good.clone();
    multicast_src[6] = 0x03;
    for fr in [&good, &spoofed, &multicast_src, &good] {
        assert_eq!(f.tx(&[&one_tx(fr)]).len(), 1, "completed either way");
    }
    // Source split across descriptors: still checked on the whole frame.
    let bytes = one_tx(&spoofed);
    f.tx(&[&bytes[..HDR_LEN + 8], &bytes[HDR_LEN + 8..]]);
    assert_eq!(*port.sent.lock().unwrap(), vec![good.clone(), good.clone()]);
    let s = stats(&f);
    assert_eq!(
        (s.tx_frames, s.tx_spoofed, s.tx_rate_limited),
        (2, 3, 0),
        "{s:?}"
    );

    // Lock off: every source passes.
    let (mut f, port) = net_front_with(Policy {
        mac_lock: false,
        rate: None,
    });
    for fr in [&good, &spoofed, &multicast_src] {
        f.tx(&[&one_tx(fr)]);
    }
    assert_eq!(
        *port.sent.lock().unwrap(),
        vec![good, spoofed, multicast_src]
    );
    assert_eq!(stats(&f).tx_spoofed, 0);
}

#[test]
fn net_rate_limit_drops_frames_over_the_bucket() {
    // 1 byte/s: after the 3000-byte burst nothing more passes in the test.
    let bucket = TokenBucket::new(1, 3000, Instant::now()).unwrap();
    let (mut f, port) = net_front_with(Policy {
        mac_lock: true,
        rate: Some(bucket),
    });
    let fr = frame(1000, 2);
    for _ in 0..5 {
        f.tx(&[&one_tx(&fr)]);
    }
    // A spoofed frame takes no tokens (and is counted as spoofed).
    let mut spoofed = frame(60, 3);
    spoofed[11] ^= 1;
    f.tx(&[&one_tx(&spoofed)]);
    assert_eq!(port.sent.lock().unwrap().len(), 3);
    let s = stats(&f);
    assert_eq!(
        (s.tx_frames, s.tx_bytes, s.tx_rate_limited, s.tx_spoofed),
        (3, 3000, 2, 1),
        "{s:?}"
    );
    // A fast rate lets the same traffic through.
    let bucket = TokenBucket::new(1_000_000_000, 1_000_000, Instant::now()).unwrap();
    let (mut f, port) = net_front_with(Policy {
        mac_lock: true,
        rate: Some(bucket),
    });
    for _ in 0..50 {
        f.tx(&[&one_tx(&fr)]);
    }
    assert_eq!(port.sent.lock().unwrap().len(), 50);
}

/// Randomized: frames with random source addresses (the guest controls
/// them) and sizes; exactly those from the device's MAC reach the port,
/// within the burst, and every chain is counted once.
#[test]
fn net_policy_random_sources_and_sizes() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9) | 1);
        let burst = 20_000 + rng.next() % 50_000;
        let bucket = TokenBucket::new(1, burst, Instant::now()).unwrap();
        let (mut f, port) = net_front_with(Policy {
            mac_lock: true,
            rate: Some(bucket),
        });
        let (mut want, mut passed, mut chains) = (Vec::new(), 0u64, 0u64);
        for _ in 0..200 {
            let r = rng.next();
            let len = ETH_HLEN + (r >> 8) as usize % (MAX_FRAME - ETH_HLEN + 1);
            let mut fr = frame(len, r as u8);
            let own = r & 3 != 0;
            if !own {
                // A random source, changed in at least one byte.
                let i = 6 + (r >> 32) as usize % 6;
                fr[i] ^= 1 + (r >> 40) as u8 % 255;
            }
            f.tx(&[&one_tx(&fr)]);
            chains += 1;
            if own && passed + len as u64 <= burst {
                passed += len as u64;
                want.push(fr);
            }
        }
        assert_eq!(*port.sent.lock().unwrap(), want, "seed {seed}");
        let s = stats(&f);
        assert_eq!(
            s.tx_frames + s.tx_spoofed + s.tx_rate_limited,
            chains,
            "seed {seed}: {s:?}"
        );
        assert!(s.tx_bytes <= burst, "seed {seed}: {s:?}");
    }
}
