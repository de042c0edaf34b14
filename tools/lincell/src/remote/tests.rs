// SPDX-License-Identifier: GPL-2.0

//! The backend against an in-process frontend: header handshake, feature
//! negotiation, split virtqueues in the section, virtio-blk and console
//! requests, faults, hostile memory, and one run of the real daemon loop
//! over an ivshmem server.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::{self, Acquire, Release};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lincell_shared::shmem::SharedMemory as _;
use lincell_shared::vdev::header::{feature, off, CONFIG_OFFSET, STATE_READY};
use lincell_shared::vdev::shadow::{
    avail_entry, avail_ring_size, desc_entry, desc_table_size, used_entry, used_ring_size,
    VIRTQ_DESCRIPTOR_SIZE, VIRTQ_DESC_ADDR_OFFSET, VIRTQ_DESC_FLAGS_OFFSET, VIRTQ_DESC_LEN_OFFSET,
    VIRTQ_DESC_NEXT_OFFSET, VIRTQ_RING_IDX_OFFSET, VIRTQ_USED_ELEMENT_SIZE,
    VIRTQ_USED_ELEM_ID_OFFSET, VIRTQ_USED_ELEM_LEN_OFFSET,
};
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_RO, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP,
    VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::blk::{self, Blk};
use super::console::{Console, Input, Output};
use super::engine::{Device, Engine, Fault, Faulty, Options, FAULT_AFTER};
use super::mem::{Mem, Section};
use crate::ivshmem::endpoint::Endpoint as _;

const SECTION: usize = 1 << 20;
/// A ring offset or size from the shared layout as a section offset.
fn off64(x: usize) -> u64 {
    u64::try_from(x).unwrap()
}

const F_WRITE: u16 = 2;
const F_NEXT: u16 = 1;

fn anon_mem() -> Mem {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), SECTION)]).unwrap()
}

fn opts() -> Options {
    Options {
        queue_size: 256,
        vectors: 4,
        verbose: false,
    }
}

/// A temporary backing file of `size` bytes, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(tag: &str, size: u64) -> Self {
        use std::sync::atomic::AtomicUsize;
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "lincell-remote-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(size).unwrap();
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn blk_dev(file: &TempFile, readonly: bool) -> Blk {
    Blk::open(&file.0, readonly, "lincell-test-serial", 256, false).unwrap()
}

/// How the test frontend reaches the backend.
trait Link {
    fn mem(&self) -> &Section;
    /// The backend handles the pending write transaction.
    fn transact(&mut self);
    /// The frontend kicked; returns once the backend processed its queues
    /// (the vectors it would ring).
    fn kick(&mut self) -> Vec<u16>;
}

/// The engine driven synchronously.
struct Direct<D: Device>(Engine<D>, Section);

impl<D: Device> Link for Direct<D> {
    fn mem(&self) -> &Section {
        &self.1
    }
    fn transact(&mut self) {
        assert!(self.0.poll_transaction(), "no transaction seen");
    }
    fn kick(&mut self) -> Vec<u16> {
        self.0.process_queues()
    }
}

fn direct<D: Device>(dev: D, fault: Option<Fault>) -> Direct<Faulty<D>> {
    let mem = anon_mem();
    let dev = Faulty::new(dev, fault, FAULT_AFTER);
    let mut e = Engine::new(mem.clone(), dev, opts()).unwrap();
    e.publish_header();
    Direct(e, Section::new(mem).unwrap())
}

/// The driver side of one split virtqueue.
struct DrvQueue {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    free: VecDeque<u16>,
    avail_idx: u16,
    last_used: u16,
}

/// A frontend speaking the header protocol.
struct Front<L: Link> {
    link: L,
    queues: Vec<DrvQueue>,
    /// Bump allocator for buffers.
    next_buf: u64,
    /// Whether completions set `queue_event` (lincell's backends do; a
    /// vhost-user backend behind the bridge rings the call eventfd only).
    queue_event: bool,
}

impl<L: Link> Front<L> {
    fn new(link: L) -> Self {
        Front {
            link,
            queues: Vec::new(),
            next_buf: 0x80000,
            queue_event: true,
        }
    }

    fn m(&self) -> &Section {
        self.link.mem()
    }

    fn write_field(&mut self, o: usize, width: usize, v: u64) {
        assert_eq!(
            self.m()
                .header()
                .load::<u32>(off::WRITE_TRANSACTION, Acquire),
            0,
            "transaction busy"
        );
        // CAST: test values fit their field.
        match width {
            2 => self.m().header().store::<u16>(o, v as u16, Release),
            4 => self.m().header().store::<u32>(o, v as u32, Release),
            _ => self.m().header().store::<u64>(o, v, Release),
        }
        self.m()
            .header()
            .store::<u32>(off::WRITE_TRANSACTION, o as u32, Release);
        self.link.transact();
        assert_eq!(
            self.m()
                .header()
                .load::<u32>(off::WRITE_TRANSACTION, Acquire),
            0,
            "transaction not cleared"
        );
    }

    fn device_features(&mut self) -> u64 {
        self.write_field(off::DEVICE_FEATURES_SEL, 4, 0);
        let lo = u64::from(self.m().header().load::<u32>(off::DEVICE_FEATURES, Acquire));
        self.write_field(off::DEVICE_FEATURES_SEL, 4, 1);
        let hi = u64::from(self.m().header().load::<u32>(off::DEVICE_FEATURES, Acquire));
        hi << 32 | lo
    }

    /// Status handshake up to FEATURES_OK; returns whether it was accepted.
    fn negotiate(&mut self, features: u64) -> bool {
        self.write_field(off::DEVICE_STATUS, 4, 0);
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER;
        self.write_field(off::DEVICE_STATUS, 4, u64::from(s));
        for sel in 0..2u64 {
            self.write_field(off::DRIVER_FEATURES_SEL, 4, sel);
            self.write_field(
                off::DRIVER_FEATURES,
                4,
                features >> (32 * sel) & 0xffff_ffff,
            );
        }
        self.write_field(
            off::DEVICE_STATUS,
            4,
            u64::from(s | VIRTIO_CONFIG_S_FEATURES_OK),
        );
        self.m().header().load::<u32>(off::DEVICE_STATUS, Acquire) & VIRTIO_CONFIG_S_FEATURES_OK
            != 0
    }

    /// Sets up queue `qi` with `size` entries at `base`; returns whether
    /// the backend enabled it.
    fn setup_queue_at(&mut self, qi: u32, size: u16, desc: u64, avail: u64, used: u64) -> bool {
        // A driver starts from zeroed rings.
        for (a, l) in [
            (desc, off64(desc_table_size(size))),
            (avail, off64(avail_ring_size(size))),
            (used, off64(used_ring_size(size))),
        ] {
            if a.checked_add(l).is_some_and(|e| e <= SECTION as u64) && a >= 0x1000 {
                self.m()
                    .write_slice(&vec![0u8; l as usize], GuestAddress(a))
                    .unwrap();
            }
        }
        self.write_field(off::QUEUE_SEL, 4, u64::from(qi));
        self.write_field(off::QUEUE_SIZE, 2, u64::from(size));
        self.write_field(off::QUEUE_DESC, 8, desc);
        self.write_field(off::QUEUE_DRIVER, 8, avail);
        self.write_field(off::QUEUE_DEVICE, 8, used);
        self.write_field(off::QUEUE_DRIVER_VECTOR, 2, u64::from(qi) + 1);
        self.write_field(off::QUEUE_ENABLE, 2, 1);
        let on = self.m().header().load::<u16>(off::QUEUE_ENABLE, Acquire) == 1;
        if on {
            self.queues.push(DrvQueue {
                size,
                desc,
                avail,
                used,
                free: (0..size).collect(),
                avail_idx: 0,
                last_used: 0,
            });
        }
        on
    }

    fn setup_queue(&mut self, qi: u32, size: u16) -> bool {
        let base = 0x10000 + u64::from(qi) * 0x8000;
        self.setup_queue_at(qi, size, base, base + 0x1000, base + 0x2000)
    }

    /// Negotiates the default features, sets up `n` queues, DRIVER_OK.
    fn bring_up(&mut self, n: u32) {
        let f = self.device_features();
        assert!(self.negotiate(f));
        for q in 0..n {
            assert!(self.setup_queue(q, 16), "queue {q}");
        }
        let s = VIRTIO_CONFIG_S_ACKNOWLEDGE
            | VIRTIO_CONFIG_S_DRIVER
            | VIRTIO_CONFIG_S_FEATURES_OK
            | VIRTIO_CONFIG_S_DRIVER_OK;
        self.write_field(off::DEVICE_STATUS, 4, u64::from(s));
    }

    fn alloc(&mut self, data: &[u8]) -> u64 {
        let a = self.next_buf;
        self.m().write_slice(data, GuestAddress(a)).unwrap();
        self.next_buf += (data.len() as u64 + 63) & !63;
        if self.next_buf > SECTION as u64 - 0x10000 {
            self.next_buf = 0x80000;
        }
        a
    }

    /// Makes a chain of (addr, len, device-writable) available; returns its head.
    fn submit(&mut self, qi: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        self.submit_ids(qi, bufs)[0]
    }

    /// As `submit`, returning every descriptor id of the chain.
    fn submit_ids(&mut self, qi: usize, bufs: &[(u64, u32, bool)]) -> Vec<u16> {
        let mem = self.link.mem().clone();
        let q = &mut self.queues[qi];
        let ids: Vec<u16> = (0..bufs.len())
            .map(|_| q.free.pop_front().unwrap())
            .collect();
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let mut d = [0u8; VIRTQ_DESCRIPTOR_SIZE];
            d[VIRTQ_DESC_ADDR_OFFSET..][..8].copy_from_slice(&addr.to_le_bytes());
            d[VIRTQ_DESC_LEN_OFFSET..][..4].copy_from_slice(&len.to_le_bytes());
            let mut flags = if w { F_WRITE } else { 0 };
            let next = ids.get(i + 1).copied().unwrap_or(0);
            if i + 1 < bufs.len() {
                flags |= F_NEXT;
            }
            d[VIRTQ_DESC_FLAGS_OFFSET..][..2].copy_from_slice(&flags.to_le_bytes());
            d[VIRTQ_DESC_NEXT_OFFSET..][..2].copy_from_slice(&next.to_le_bytes());
            mem.write_slice(&d, GuestAddress(q.desc + off64(desc_entry(0, ids[i]))))
                .unwrap();
        }
        let slot = usize::from(q.avail_idx % q.size);
        mem.write_slice(
            &ids[0].to_le_bytes(),
            GuestAddress(q.avail + off64(avail_entry(0, slot))),
        )
        .unwrap();
        q.avail_idx = q.avail_idx.wrapping_add(1);
        std::sync::atomic::fence(Ordering::SeqCst);
        // CAST: offsets in a 1 MiB section.
        mem.header().store::<u16>(
            q.avail as usize + VIRTQ_RING_IDX_OFFSET,
            q.avail_idx,
            Release,
        );
        ids
    }

    /// Used entries published since the last call: (id, len).
    fn used(&mut self, qi: usize) -> Vec<(u32, u32)> {
        let mem = self.link.mem().clone();
        let q = &mut self.queues[qi];
        // CAST: offsets in a 1 MiB section.
        let idx = mem
            .header()
            .load::<u16>(q.used as usize + VIRTQ_RING_IDX_OFFSET, Acquire);
        let mut out = Vec::new();
        while q.last_used != idx {
            let slot = usize::from(q.last_used % q.size);
            let mut e = [0u8; VIRTQ_USED_ELEMENT_SIZE];
            mem.read_slice(&mut e, GuestAddress(q.used + off64(used_entry(0, slot))))
                .unwrap();
            let id = u32::from_le_bytes(e[VIRTQ_USED_ELEM_ID_OFFSET..][..4].try_into().unwrap());
            let len = u32::from_le_bytes(e[VIRTQ_USED_ELEM_LEN_OFFSET..][..4].try_into().unwrap());
            out.push((id, len));
            q.last_used = q.last_used.wrapping_add(1);
            if out.len() > 1000 {
                break;
            }
        }
        out
    }

    /// One virtio-blk request; returns (status, used len, data read).
    fn blk(&mut self, kind: u32, sector: u64, out: &[u8], in_len: u32) -> (u8, u32, Vec<u8>) {
        let mut hdr = [0u8; 16];
        hdr[..4].copy_from_slice(&kind.to_le_bytes());
        hdr[8..].copy_from_slice(&sector.to_le_bytes());
        let h = self.alloc(&hdr);
        let mut bufs = vec![(h, 16, false)];
        if !out.is_empty() {
            let a = self.alloc(out);
            bufs.push((a, out.len() as u32, false));
        }
        let din = if in_len > 0 {
            let a = self.alloc(&vec![0xee; in_len as usize]);
            bufs.push((a, in_len, true));
            Some(a)
        } else {
            None
        };
        let st = self.alloc(&[0xff]);
        bufs.push((st, 1, true));
        let ids = self.submit_ids(0, &bufs);
        let head = ids[0];
        let rung = self.link.kick();
        assert!(
            rung.contains(&1),
            "completion rings the queue's driver vector: {rung:?}"
        );
        if !self.queue_event {
            // An asynchronous backend may ring early (or twice): wait for
            // the used index itself.
            let q = &self.queues[0];
            let at = q.used as usize + VIRTQ_RING_IDX_OFFSET;
            let until = Instant::now() + Duration::from_secs(5);
            while self.m().header().load::<u16>(at, Acquire) == q.last_used {
                assert!(Instant::now() < until, "no completion within 5 s");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if self.queue_event {
            assert_eq!(
                self.m()
                    .load::<u8>(GuestAddress(off::QUEUE_EVENT as u64), Ordering::Acquire)
                    .unwrap(),
                1
            );
        }
        let used = self.used(0);
        assert_eq!(used.len(), 1, "one completion: {used:?}");
        assert_eq!(used[0].0, u32::from(head));
        self.queues[0].free.extend(ids);
        let mut status = [0u8];
        self.m().read_slice(&mut status, GuestAddress(st)).unwrap();
        let mut data = vec![0u8; in_len as usize];
        if let Some(a) = din {
            self.m().read_slice(&mut data, GuestAddress(a)).unwrap();
        }
        (status[0], used[0].1, data)
    }
}

#[test]
fn header_is_published_with_features_config_and_queue_limits() {
    let file = TempFile::new("hdr", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, false), None));
    let m = f.m().clone();
    assert_eq!(m.header().load::<u32>(off::REVISION, Acquire), 1);
    assert_eq!(
        m.header().load::<u32>(off::SIZE, Acquire) as usize,
        CONFIG_OFFSET + blk::CONFIG_LEN
    );
    assert_eq!(m.header().load::<u16>(off::QUEUE_SIZE, Acquire), 256);
    assert_eq!(
        m.header().load::<u16>(off::QUEUE_DEVICE_VECTOR, Acquire),
        1,
        "queue 0 is kicked on vector 1 of 4"
    );
    let mut cap = [0u8; 8];
    m.read_slice(&mut cap, GuestAddress(CONFIG_OFFSET as u64))
        .unwrap();
    assert_eq!(u64::from_le_bytes(cap), 2048, "capacity in sectors");
    assert_eq!(
        m.header().load::<u32>(CONFIG_OFFSET + 0x14, Acquire),
        512,
        "blk_size"
    );
    assert_eq!(
        m.header().load::<u32>(CONFIG_OFFSET + 0x0c, Acquire),
        126,
        "seg_max"
    );
    let feats = f.device_features();
    assert_eq!(feats & feature::REQUIRED, feature::REQUIRED);
    assert_ne!(feats & 1 << feature::ORDER_PLATFORM, 0);
    assert_eq!(feats & feature::UNSUPPORTED, 0);
    assert_eq!(feats & 1 << VIRTIO_BLK_F_RO, 0);
    // A queue that does not exist reads as size 0.
    f.write_field(off::QUEUE_SEL, 4, 1);
    assert_eq!(m.header().load::<u16>(off::QUEUE_SIZE, Acquire), 0);
    // Unknown offsets are ignored, but cleared.
    m.header()
        .store::<u32>(off::WRITE_TRANSACTION, off::SIZE as u32, Release);
    f.link.transact();
    assert_eq!(m.header().load::<u32>(off::WRITE_TRANSACTION, Acquire), 0);
    assert_eq!(m.header().load::<u32>(off::REVISION, Acquire), 1);
}

#[test]
fn one_vector_kicks_everything_on_vector_zero() {
    let mem = anon_mem();
    let mut o = opts();
    o.vectors = 1;
    let c = Console::new(
        Arc::new(Input::default()),
        Box::new(|_: &[u8]| {}),
        "t".into(),
        false,
    );
    let mut e = Engine::new(mem.clone(), c, o).unwrap();
    e.publish_header();
    assert_eq!(e.device_vectors(), [0, 0]);
    o.vectors = 2;
    let c = Console::new(
        Arc::new(Input::default()),
        Box::new(|_: &[u8]| {}),
        "t".into(),
        false,
    );
    assert_eq!(Engine::new(mem, c, o).unwrap().device_vectors(), [1, 0]);
}

#[test]
fn blk_write_read_flush_get_id() {
    let file = TempFile::new("rw", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, false), None));
    f.bring_up(1);
    let pattern: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
    let (st, len, _) = f.blk(VIRTIO_BLK_T_OUT, 10, &pattern, 0);
    assert_eq!((u32::from(st), len), (VIRTIO_BLK_S_OK, 1));
    let mut on_disk = vec![0u8; 4096];
    std::fs::File::open(&file.0)
        .unwrap()
        .read_exact_at(&mut on_disk, 10 * 512)
        .unwrap();
    assert_eq!(on_disk, pattern, "written to the file");
    let (st, len, data) = f.blk(VIRTIO_BLK_T_IN, 10, &[], 4096);
    assert_eq!((u32::from(st), len), (VIRTIO_BLK_S_OK, 4097));
    assert_eq!(data, pattern);
    let (st, len, _) = f.blk(VIRTIO_BLK_T_FLUSH, 0, &[], 0);
    assert_eq!((u32::from(st), len), (VIRTIO_BLK_S_OK, 1));
    let (st, len, id) = f.blk(VIRTIO_BLK_T_GET_ID, 0, &[], 20);
    assert_eq!((u32::from(st), len), (VIRTIO_BLK_S_OK, 21));
    assert_eq!(&id[..19], b"lincell-test-serial");
    assert_eq!(id[19], 0);
    // The last sector is readable, the one after is not.
    let (st, len, _) = f.blk(VIRTIO_BLK_T_IN, 2047, &[], 512);
    assert_eq!((u32::from(st), len), (VIRTIO_BLK_S_OK, 513));
}

#[test]
fn blk_bad_requests_fail_without_panic() {
    let file = TempFile::new("bad", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, false), None));
    f.bring_up(1);
    let (st, len, _) = f.blk(VIRTIO_BLK_T_IN, 2047, &[], 1024);
    assert_eq!(
        (u32::from(st), len),
        (VIRTIO_BLK_S_IOERR, 1),
        "past the end"
    );
    let (st, _, _) = f.blk(VIRTIO_BLK_T_IN, u64::MAX, &[], 512);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_IOERR, "sector overflow");
    let (st, _, _) = f.blk(VIRTIO_BLK_T_OUT, 0, &[1, 2, 3], 0);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_IOERR, "not a multiple of 512");
    let (st, len, _) = f.blk(99, 0, &[], 0);
    assert_eq!((u32::from(st), len), (VIRTIO_BLK_S_UNSUPP, 1));

    // A data descriptor outside the section: completed with len 0.
    let h = f.alloc(&[0u8; 16]);
    let s = f.alloc(&[0xff]);
    let head = f.submit(
        0,
        &[
            (h, 16, false),
            (SECTION as u64 - 8, 512, true),
            (s, 1, true),
        ],
    );
    f.link.kick();
    assert_eq!(f.used(0), [(u32::from(head), 0)]);
    // An address that wraps around.
    let head = f.submit(0, &[(u64::MAX - 4, 16, false), (s, 1, true)]);
    f.link.kick();
    let used = f.used(0);
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].0, u32::from(head));
    assert!(used[0].1 <= 1);
    // A looping chain ends (bounded by the queue size).
    let q = &f.queues[0];
    let (desc, avail) = (q.desc, q.avail);
    let m = f.m().clone();
    let mut d = [0u8; VIRTQ_DESCRIPTOR_SIZE];
    d[VIRTQ_DESC_ADDR_OFFSET..][..8].copy_from_slice(&h.to_le_bytes());
    d[VIRTQ_DESC_LEN_OFFSET..][..4].copy_from_slice(&16u32.to_le_bytes());
    d[VIRTQ_DESC_FLAGS_OFFSET..][..2].copy_from_slice(&F_NEXT.to_le_bytes());
    d[VIRTQ_DESC_NEXT_OFFSET..][..2].copy_from_slice(&5u16.to_le_bytes());
    m.write_slice(&d, GuestAddress(desc + off64(desc_entry(0, 5))))
        .unwrap();
    let i = f.queues[0].avail_idx;
    m.write_slice(
        &5u16.to_le_bytes(),
        GuestAddress(avail + off64(avail_entry(0, usize::from(i % 16)))),
    )
    .unwrap();
    f.queues[0].avail_idx = i.wrapping_add(1);
    // CAST: offsets in a 1 MiB section.
    m.header().store::<u16>(
        avail as usize + VIRTQ_RING_IDX_OFFSET,
        i.wrapping_add(1),
        Release,
    );
    f.link.kick();
    assert_eq!(f.used(0), [(5, 0)]);
}

#[test]
fn blk_readonly_refuses_writes() {
    let file = TempFile::new("ro", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, true), None));
    assert_ne!(f.device_features() & 1 << VIRTIO_BLK_F_RO, 0);
    f.bring_up(1);
    let (st, _, _) = f.blk(VIRTIO_BLK_T_OUT, 0, &[7u8; 512], 0);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_IOERR);
    let (st, _, _) = f.blk(VIRTIO_BLK_T_IN, 0, &[], 512);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_OK);
}

/// A 1 MiB file with a pattern, served as `range`; the pattern's byte at
/// file offset `o`.
fn pattern_at(o: u64) -> u8 {
    // CAST: a byte of a hash.
    (o.wrapping_mul(0x9e37_79b9) >> 13) as u8
}

impl<L: Link> Front<L> {
    /// virtio-blk's capacity in config space.
    fn capacity(&self) -> u64 {
        let mut cap = [0u8; 8];
        self.m()
            .read_slice(&mut cap, GuestAddress(CONFIG_OFFSET as u64))
            .unwrap();
        u64::from_le_bytes(cap)
    }
}

fn ranged(file: &TempFile, r: &str, readonly: bool) -> Front<Direct<Faulty<Blk>>> {
    let data: Vec<u8> = (0..1u64 << 20).map(pattern_at).collect();
    std::fs::write(&file.0, &data).unwrap();
    let dev = blk_dev(file, readonly)
        .with_range(r.parse().unwrap())
        .unwrap();
    let mut f = Front::new(direct(dev, None));
    f.bring_up(1);
    f
}

#[test]
fn blk_range_maps_to_the_offset_and_refuses_outside() {
    let file = TempFile::new("range", 1 << 20);
    // 64 KiB at 256 KiB: 128 sectors.
    let mut f = ranged(&file, "256K:64K", false);
    let cap = f.capacity();
    assert_eq!(cap, 128, "capacity is LENGTH/512");
    // Sector 0 is byte 256 KiB of the file.
    let (st, _, data) = f.blk(VIRTIO_BLK_T_IN, 0, &[], 1024);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_OK);
    assert_eq!(
        data,
        (0..1024)
            .map(|i| pattern_at(256 * 1024 + i))
            .collect::<Vec<_>>()
    );
    // A write to the last sector lands at OFFSET + 127 * 512.
    let (st, _, _) = f.blk(VIRTIO_BLK_T_OUT, 127, &[0xa5; 512], 0);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_OK);
    let on_disk = std::fs::read(&file.0).unwrap();
    assert_eq!(&on_disk[(256 + 63) * 1024 + 512..][..512], &[0xa5; 512]);
    // Crossing the end, past it, overflowing: I/O errors, nothing touched.
    for (kind, sector, out, len) in [
        (VIRTIO_BLK_T_IN, 127, &[][..], 1024),
        (VIRTIO_BLK_T_IN, 128, &[][..], 512),
        (VIRTIO_BLK_T_OUT, 127, &[1u8; 1024][..], 0),
        (VIRTIO_BLK_T_OUT, 128, &[1u8; 512][..], 0),
        (VIRTIO_BLK_T_OUT, u64::MAX / 512 + 1, &[1u8; 512][..], 0),
        (VIRTIO_BLK_T_IN, u64::MAX, &[][..], 512),
    ] {
        let (st, _, _) = f.blk(kind, sector, out, len);
        assert_eq!(
            u32::from(st),
            VIRTIO_BLK_S_IOERR,
            "type {kind} sector {sector}"
        );
    }
    // A discard crossing the end fails too.
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&100u64.to_le_bytes());
    seg[8..12].copy_from_slice(&29u32.to_le_bytes());
    let (st, _, _) = f.blk(VIRTIO_BLK_T_DISCARD, 0, &seg, 0);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_IOERR);
    let after = std::fs::read(&file.0).unwrap();
    assert_eq!(after, on_disk, "nothing written by the refused requests");
    // Outside the range the file is the pattern still.
    assert!((0..256 * 1024).all(|o| after[o] == pattern_at(o as u64)));
    assert!((320 * 1024..1 << 20).all(|o| after[o] == pattern_at(o as u64)));
    // A discard inside punches the hole inside only.
    seg[8..12].copy_from_slice(&28u32.to_le_bytes());
    let (st, _, _) = f.blk(VIRTIO_BLK_T_DISCARD, 0, &seg, 0);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_OK);
    let after = std::fs::read(&file.0).unwrap();
    assert!(after[(256 * 1024 + 100 * 512)..][..28 * 512]
        .iter()
        .all(|&b| b == 0));
    assert!((320 * 1024..1 << 20).all(|o| after[o] == pattern_at(o as u64)));
}

#[test]
fn blk_range_with_readonly_and_bad_ranges() {
    let file = TempFile::new("range-ro", 1 << 20);
    let mut f = ranged(&file, "1K:4K", true);
    assert_ne!(f.device_features() & 1 << VIRTIO_BLK_F_RO, 0);
    assert_eq!(f.capacity(), 8);
    let (st, _, data) = f.blk(VIRTIO_BLK_T_IN, 7, &[], 512);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_OK);
    assert_eq!(
        data,
        (0..512)
            .map(|i| pattern_at(1024 + 7 * 512 + i))
            .collect::<Vec<_>>()
    );
    let (st, _, _) = f.blk(VIRTIO_BLK_T_OUT, 0, &[1u8; 512], 0);
    assert_eq!(u32::from(st), VIRTIO_BLK_S_IOERR, "read-only range");
    // Ranges beyond the file are refused at start-up.
    for r in ["1M:512", "0:1025K", "1020K:8K"] {
        assert!(
            blk_dev(&file, false)
                .with_range(r.parse().unwrap())
                .is_err(),
            "{r}"
        );
    }
    assert!(blk_dev(&file, false)
        .with_range("1020K:4K".parse().unwrap())
        .is_ok());
}

/// Randomized: random requests against a random range never touch a byte
/// outside it, and succeed exactly when they lie inside.
#[test]
fn blk_range_random_requests_stay_inside() {
    let file = TempFile::new("range-rand", 1 << 20);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for _ in 0..4 {
        let off = (rng.next() % 1024) * 512;
        let len = (1 + rng.next() % (2048 - off / 512).min(256)) * 512;
        let mut f = ranged(&file, &format!("{off}:{len}"), false);
        let sectors = len / 512;
        for _ in 0..60 {
            let r = rng.next();
            let sector = match r & 3 {
                0 => r >> 8,
                1 => sectors.saturating_sub(r >> 8 & 7),
                _ => (r >> 8) % sectors,
            };
            let n = 1 + (r >> 40) % 16;
            let fits = sector.checked_add(n).is_some_and(|e| e <= sectors);
            let (st, _, _) = if r >> 60 & 1 == 0 {
                f.blk(VIRTIO_BLK_T_OUT, sector, &vec![0x5a; (n * 512) as usize], 0)
            } else {
                f.blk(VIRTIO_BLK_T_IN, sector, &[], (n * 512) as u32)
            };
            let want = if fits {
                VIRTIO_BLK_S_OK
            } else {
                VIRTIO_BLK_S_IOERR
            };
            assert_eq!(u32::from(st), want, "{off}:{len} sector {sector}+{n}");
        }
        let after = std::fs::read(&file.0).unwrap();
        for (o, &b) in after.iter().enumerate() {
            let o64 = o as u64;
            if o64 < off || o64 >= off + len {
                assert_eq!(b, pattern_at(o64), "byte {o} outside {off}:{len}");
            }
        }
    }
}

#[test]
fn unsupported_features_and_bad_queues_are_refused() {
    let file = TempFile::new("neg", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, false), None));
    let offered = f.device_features();
    assert!(!f.negotiate(offered | 1 << feature::INDIRECT_DESC));
    assert!(!f.negotiate(offered & !(1 << feature::VERSION_1)));
    assert!(f.negotiate(offered));
    assert!(
        !f.setup_queue_at(0, 12, 0x10000, 0x11000, 0x12000),
        "size not a power of two"
    );
    assert!(
        !f.setup_queue_at(0, 512, 0x10000, 0x11000, 0x12000),
        "size above the maximum"
    );
    assert!(
        !f.setup_queue_at(0, 16, SECTION as u64 - 64, 0x11000, 0x12000),
        "desc outside"
    );
    assert!(
        !f.setup_queue_at(0, 16, 0x10008, 0x11000, 0x12000),
        "desc misaligned"
    );
    assert!(
        !f.setup_queue_at(0, 16, 0x40, 0x11000, 0x12000),
        "desc over the header"
    );
    assert!(
        !f.setup_queue_at(0, 16, 0x10000, 0x11001, 0x12000),
        "avail misaligned"
    );
    assert!(
        !f.setup_queue_at(0, 16, 0x10000, 0x11000, u64::MAX - 8),
        "used wraps"
    );
    assert!(
        !f.setup_queue_at(5, 16, 0x10000, 0x11000, 0x12000),
        "no queue 5"
    );
    assert!(f.setup_queue_at(0, 16, 0x10000, 0x11000, 0x12000));
    // Reset: the queue is off again, presented with its maximum size.
    f.write_field(off::DEVICE_STATUS, 4, 0);
    f.write_field(off::QUEUE_SEL, 4, 0);
    assert_eq!(f.m().header().load::<u16>(off::QUEUE_ENABLE, Acquire), 0);
    assert_eq!(f.m().header().load::<u16>(off::QUEUE_SIZE, Acquire), 256);
}

#[test]
fn detach_disables_queues_until_renegotiated() {
    let file = TempFile::new("detach", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, false), None));
    f.bring_up(1);
    assert_eq!(f.blk(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, 0);
    f.link.0.detach();
    assert!(!f.link.0.live());
    let h = f.alloc(&[0u8; 16]);
    let s = f.alloc(&[0xff]);
    f.submit(0, &[(h, 16, false), (s, 1, true)]);
    assert!(f.link.kick().is_empty(), "nothing processed while detached");
    f.queues.clear();
    f.bring_up(1);
    assert_eq!(f.blk(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, 0);
}

fn console_pair() -> (Console, Arc<Input>, Arc<Mutex<Vec<u8>>>) {
    let input = Arc::new(Input::default());
    let sink = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&sink);
    let output: Output = Box::new(move |d: &[u8]| s2.lock().unwrap().extend_from_slice(d));
    (
        Console::new(Arc::clone(&input), output, "test".into(), false),
        input,
        sink,
    )
}

#[test]
fn console_moves_bytes_both_ways() {
    let (c, input, sink) = console_pair();
    let mut f = Front::new(direct(c, None));
    assert_eq!(
        f.m().header().load::<u32>(off::SIZE, Acquire) as usize,
        CONFIG_OFFSET + 12
    );
    f.bring_up(2);
    // receiveq: a buffer waits until input arrives.
    let rx = f.alloc(&[0u8; 16]);
    let head = f.submit(0, &[(rx, 16, true)]);
    assert!(f.link.kick().is_empty());
    input.push(b"hello guest, this is longer than 16");
    assert_eq!(f.link.kick(), [1]);
    assert_eq!(f.used(0), [(u32::from(head), 16)]);
    let mut got = [0u8; 16];
    f.m().read_slice(&mut got, GuestAddress(rx)).unwrap();
    assert_eq!(&got, b"hello guest, thi");
    let rx2 = f.alloc(&[0u8; 64]);
    let head = f.submit(0, &[(rx2, 64, true)]);
    f.link.kick();
    assert_eq!(
        f.used(0),
        [(u32::from(head), 19)],
        "used len is exactly what was written"
    );
    // transmitq.
    let tx = f.alloc(b"guest says hi\n");
    let head = f.submit(1, &[(tx, 14, false)]);
    assert_eq!(f.link.kick(), [2]);
    assert_eq!(f.used(1), [(u32::from(head), 0)]);
    assert_eq!(sink.lock().unwrap().as_slice(), b"guest says hi\n");
}

/// Runs `FAULT_AFTER + 2` flushes under `fault`; returns the used entries
/// of the last two and the used index seen.
fn run_fault(fault: Fault) -> (Vec<(u32, u32)>, u16, u16) {
    let file = TempFile::new("fault", 1 << 20);
    let mut f = Front::new(direct(blk_dev(&file, false), Some(fault)));
    f.bring_up(1);
    for _ in 0..FAULT_AFTER {
        assert_eq!(f.blk(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, 0);
    }
    let h = f.alloc(&[0u8; 16]);
    let s = f.alloc(&[0xff]);
    let mut hdr = [0u8; 16];
    hdr[..4].copy_from_slice(&VIRTIO_BLK_T_FLUSH.to_le_bytes());
    f.m().write_slice(&hdr, GuestAddress(h)).unwrap();
    f.submit(0, &[(h, 16, false), (s, 1, true)]);
    f.link.kick();
    let q = &f.queues[0];
    // CAST: offsets in a 1 MiB section.
    let idx = f
        .m()
        .header()
        .load::<u16>(q.used as usize + VIRTQ_RING_IDX_OFFSET, Acquire);
    let expected = q.last_used.wrapping_add(1);
    let used = f.used(0);
    (used.into_iter().take(1).collect(), idx, expected)
}

#[test]
fn faults_misbehave_after_eight_requests() {
    let (u, idx, want) = run_fault(Fault::BadUsedLen);
    assert_eq!(idx, want);
    assert_eq!(u[0].1, 2, "len beyond the 1 writable byte");
    let (u, _, _) = run_fault(Fault::BadUsedId);
    assert!(u[0].0 >= 16, "id {} >= queue size", u[0].0);
    let (_, idx, want) = run_fault(Fault::BadUsedIndex);
    assert_eq!(idx, want.wrapping_add(1000));
    let (u, idx, want) = run_fault(Fault::Stall);
    assert!(u.is_empty());
    assert_eq!(idx, want.wrapping_sub(1), "nothing completed");
}

/// xorshift64*.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_garbage_in_header_and_rings_never_panics() {
    let file = TempFile::new("fuzz", 1 << 20);
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (c, input, _) = console_pair();
        input.push(&[b'x'; 100]);
        let mut blk_front = Front::new(direct(blk_dev(&file, false), None));
        let mut con_front = Front::new(direct(c, None));
        blk_front.bring_up(1);
        con_front.bring_up(2);
        for f in [&mut blk_front.link as &mut dyn Link, &mut con_front.link] {
            let m = f.mem().clone();
            for _ in 0..2000 {
                let r = rng.next();
                // Mostly the header and the rings, sometimes anywhere.
                let at = match r % 4 {
                    0 => r >> 8 & 0xff,
                    1 | 2 => 0x10000 + (r >> 8 & 0x1_ffff),
                    _ => r >> 8 & (SECTION as u64 - 1),
                };
                let len = (r >> 40 & 15) as usize + 1;
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                let _ = m.write_slice(&bytes, GuestAddress(at));
                if r >> 60 == 0 {
                    // A random transaction, sometimes at a real field.
                    let field = [
                        off::QUEUE_ENABLE,
                        off::DEVICE_STATUS,
                        off::QUEUE_SEL,
                        off::QUEUE_SIZE,
                        off::QUEUE_DESC,
                        off::DEVICE_FEATURES_SEL,
                    ][(r >> 20) as usize % 6];
                    m.header().store::<u32>(
                        off::WRITE_TRANSACTION,
                        if r & 1 == 0 {
                            field as u32
                        } else {
                            (r >> 32) as u32
                        },
                        Release,
                    );
                }
                while m.header().load::<u32>(off::WRITE_TRANSACTION, Acquire) != 0 {
                    f.transact();
                }
                f.kick();
            }
        }
    }
}

#[test]
fn frontend_is_the_lowest_other_ready_peer() {
    use super::runner::find_frontend;
    assert_eq!(find_frontend(&[1, 1, 0, 1], 0), Some(1));
    assert_eq!(find_frontend(&[1, 1, 0, 1], 1), Some(0));
    assert_eq!(find_frontend(&[0, 1, 2, 1], 1), Some(3));
    assert_eq!(find_frontend(&[0, 1], 1), None);
    assert_eq!(find_frontend(&[], 0), None);
}

/// Serializes the tests that run the daemon loop (its stop flag,
/// [`super::runner::STOP`], is one per process) and clears the flag.
pub(crate) fn daemon_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    super::runner::STOP.store(false, Ordering::SeqCst);
    g
}

/// The daemon loop for real: backend and frontend are host peers of an
/// ivshmem server; the frontend follows the state protocol, negotiates over
/// doorbells, and does a block write and read.
#[test]
fn daemon_serves_a_frontend_over_the_ivshmem_server() {
    use crate::ivshmem::endpoint::tests::TestServer;
    use crate::ivshmem::endpoint::{Endpoint, PeerEndpoint};

    let _one = daemon_lock();
    let server = TestServer::start(4);
    let file = TempFile::new("daemon", 1 << 20);
    let socket = server.socket.clone();
    let path = file.0.clone();
    let backend = std::thread::spawn(move || {
        let ep = PeerEndpoint::connect(&socket).unwrap();
        let dev = Blk::open(&path, false, "d", 256, false).unwrap();
        super::runner::prepare_v1(&ep, dev.device_id()).unwrap();
        let id = ep.id();
        let r = super::runner::serve(
            Box::new(ep),
            dev,
            &super::runner::RunOptions {
                queue_size: 256,
                fault: None,
                fault_after: FAULT_AFTER,
                verbose: false,
                tick: Duration::from_millis(20),
            },
        );
        (id, r)
    });

    let mut f = remote_front(&server, 0x8002, 1 << 1);
    let backend_id = f.link.backend;
    f.next_buf = 0x40000;
    f.bring_up(1);
    let data = [0x5au8; 1024];
    assert_eq!(f.blk(VIRTIO_BLK_T_OUT, 3, &data, 0).0, 0);
    let (st, len, back) = f.blk(VIRTIO_BLK_T_IN, 3, &[], 1024);
    assert_eq!((st, len), (0, 1025));
    assert_eq!(back, data);

    super::runner::STOP.store(true, Ordering::SeqCst);
    let (id, r) = backend.join().unwrap();
    r.unwrap();
    assert_eq!(id, backend_id);
    let states = f.link.ep.peer_states().unwrap();
    assert_eq!(
        states[backend_id as usize], 0,
        "backend cleared its state on shutdown"
    );
    let mut on_disk = [0u8; 1024];
    std::fs::File::open(&file.0)
        .unwrap()
        .read_exact_at(&mut on_disk, 3 * 512)
        .unwrap();
    assert_eq!(on_disk, data);
    let _ = std::io::stderr().flush();
}

/// A frontend as a second host peer of `server`, once the backend (another
/// thread) is READY and wrote `protocol`; its kicks ring vector 1 and wait
/// for `wait_mask`.
fn remote_front(
    server: &crate::ivshmem::endpoint::tests::TestServer,
    protocol: u32,
    wait_mask: u64,
) -> Front<Remote> {
    use crate::ivshmem::endpoint::tests::wait_for_peer;
    use crate::ivshmem::endpoint::{Endpoint, PeerEndpoint};

    let mut fe = PeerEndpoint::connect(&server.socket).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let backend_id = loop {
        let _ = fe.refresh();
        if let Ok(states) = fe.peer_states() {
            if let Some(b) = states.iter().position(|&s| s == STATE_READY) {
                break u32::try_from(b).unwrap();
            }
        }
        assert!(Instant::now() < until, "backend never became READY");
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_for_peer(&mut fe, backend_id);
    let (rw_off, rw_len) = fe.rw_section();
    assert!(rw_off > 0, "the backend created the v1 layout");
    assert_eq!(
        fe.peer()
            .shm()
            .region()
            .load::<u32>(lincell_shared::ivshmem::v1layout::off::PROTOCOL, Acquire),
        Ok(protocol)
    );
    fe.set_state(STATE_READY).unwrap();
    let (ptr, len) = fe.rw_ptr().unwrap();
    assert_eq!(len, rw_len);
    // SAFETY: the mapping lives as long as `fe`, which outlives `mem`.
    let mem = Section::new(unsafe { super::mem::mem_from_raw(ptr, len).unwrap() }).unwrap();

    let mut f = Front::new(Remote {
        ep: fe,
        mem,
        backend: backend_id,
        wait_mask,
    });
    f.next_buf = 0x40000;
    f
}

/// Doorbells to a backend in another thread.
pub(super) struct Remote {
    pub(super) ep: crate::ivshmem::endpoint::PeerEndpoint,
    mem: Section,
    pub(super) backend: u32,
    /// The vectors a kick waits for.
    wait_mask: u64,
}

impl Link for Remote {
    fn mem(&self) -> &Section {
        &self.mem
    }
    fn transact(&mut self) {
        self.ep.ring(self.backend, 0).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        while self
            .mem
            .header()
            .load::<u32>(off::WRITE_TRANSACTION, Acquire)
            != 0
        {
            assert!(
                Instant::now() < until,
                "backend did not clear the transaction"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    fn kick(&mut self) -> Vec<u16> {
        self.ep.ring(self.backend, 1).unwrap();
        let ev = self
            .ep
            .wait(self.wait_mask, Duration::from_secs(5))
            .unwrap();
        (0..4u16).filter(|v| ev.mask & 1 << v != 0).collect()
    }
}

mod bridge;
mod net;
