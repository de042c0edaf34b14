// SPDX-License-Identifier: GPL-2.0

//! Everything lincell puts in shared memory is little-endian and naturally
//! aligned, whatever the CPU: an x86_64 host and an arm64 board (or a
//! big-endian peer) must read the same bytes. These tests write each
//! structure through the same code the modules and tools use, into a byte
//! buffer, and compare the bytes with hand-written literals (never with
//! `to_le_bytes` of the expected value, so that the test would also fail on
//! a little-endian host if a field were stored in CPU order):
//!
//! - the lincell v1 layout header (`Documentation/ivshmem-v1-layout.md`);
//! - the virtio-over-ivshmem register header (Jailhouse's
//!   `struct virtio_ivshmem_header`);
//! - the split virtqueues the shadow-ring engine publishes and collects;
//! - the `/dev/ivshmemN` ioctl structures (native-endian by design, they
//!   never leave the machine, but their layout must not depend on the
//!   target: natural alignment, no implicit padding).

use std::mem::{align_of, offset_of, size_of};
use std::sync::atomic::Ordering::Relaxed;

use lincell_shared::host::TestMemory;
use lincell_shared::ivshmem::uapi::{self, ArrayArg, DeviceInfo, Ring};
use lincell_shared::ivshmem::v1layout::{self, Header};
use lincell_shared::shmem::SharedMemory;
use lincell_shared::vdev::header as vhdr;
use lincell_shared::vdev::shadow::{
    split_layout, split_size, Head, RingAddrs, Shadow, ShadowError, DESC_F_NEXT, DESC_F_WRITE,
    MAX_QUEUE_SIZE,
};

/// Shared memory as a peer sees it: bytes, through the same [`RawRegion`]
/// the modules and tools use, with every store logged.
fn bytes(len: usize) -> TestMemory {
    TestMemory::new(len).logging()
}

/// Memory holding `image`, with every later store logged.
fn image(image: &[u8]) -> TestMemory {
    TestMemory::with(image).logging()
}

/// `image[at..]` overwritten with `bytes`.
fn place(image: &mut [u8], at: usize, bytes: &[u8]) {
    image[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Fields given as (name, offset, width) must be naturally aligned and
/// follow each other without holes, from `start` to `end`.
fn assert_packed_and_aligned(fields: &[(&str, usize, usize)], start: usize, end: usize) {
    let mut next = start;
    for &(name, offset, width) in fields {
        assert!(width.is_power_of_two(), "{name}: width {width}");
        assert_eq!(
            offset % width,
            0,
            "{name} at {offset:#x} is not aligned to its {width} bytes"
        );
        assert_eq!(
            offset, next,
            "{name} at {offset:#x}: hole or overlap before it (expected {next:#x})"
        );
        next = offset + width;
    }
    assert_eq!(next, end, "fields end at {next:#x}, expected {end:#x}");
}

// ---------------------------------------------------------------------------
// (a) lincell v1 layout header

/// The header as `Documentation/ivshmem-v1-layout.md` draws it, as a C
/// struct without any packing attribute: natural alignment alone must give
/// the specified offsets.
#[repr(C)]
#[allow(dead_code)]
struct V1HeaderC {
    magic: u32,
    version: u32,
    max_peers: u32,
    granule: u32,
    state_table_size: u64,
    rw_size: u64,
    output_size: u64,
    protocol: u32,
}

#[test]
fn v1_header_fields_are_naturally_aligned_and_where_the_spec_says() {
    use v1layout::off;
    assert_packed_and_aligned(
        &[
            ("magic", off::MAGIC, 4),
            ("version", off::VERSION, 4),
            ("max_peers", off::MAX_PEERS, 4),
            ("granule", off::GRANULE, 4),
            ("state_table_size", off::STATE_TABLE_SIZE, 8),
            ("rw_size", off::RW_SIZE, 8),
            ("output_size", off::OUTPUT_SIZE, 8),
            ("protocol", off::PROTOCOL, 4),
        ],
        0,
        off::END,
    );
    // The offsets of the specification's table.
    assert_eq!(
        [off::MAGIC, off::VERSION, off::MAX_PEERS, off::GRANULE],
        [0x00, 0x04, 0x08, 0x0c]
    );
    assert_eq!(
        [off::STATE_TABLE_SIZE, off::RW_SIZE, off::OUTPUT_SIZE],
        [0x10, 0x18, 0x20]
    );
    assert_eq!((off::PROTOCOL, off::END), (0x28, 0x2c));
    // ... which a plain C struct reproduces.
    assert_eq!(offset_of!(V1HeaderC, magic), off::MAGIC);
    assert_eq!(offset_of!(V1HeaderC, version), off::VERSION);
    assert_eq!(offset_of!(V1HeaderC, max_peers), off::MAX_PEERS);
    assert_eq!(offset_of!(V1HeaderC, granule), off::GRANULE);
    assert_eq!(
        offset_of!(V1HeaderC, state_table_size),
        off::STATE_TABLE_SIZE
    );
    assert_eq!(offset_of!(V1HeaderC, rw_size), off::RW_SIZE);
    assert_eq!(offset_of!(V1HeaderC, output_size), off::OUTPUT_SIZE);
    assert_eq!(offset_of!(V1HeaderC, protocol), off::PROTOCOL);
}

#[test]
fn v1_magic_constants_spell_their_names_in_memory() {
    assert_eq!(
        v1layout::MAGIC_READY,
        0x3176_434c,
        "the value the specification gives"
    );
    assert_eq!(
        v1layout::MAGIC_INIT,
        0x3169_434c,
        "the value the specification gives"
    );
    let m = bytes(4);
    m.store(0, v1layout::MAGIC_READY, Relaxed).unwrap();
    assert_eq!(m.bytes(), b"LCv1");
    m.store(0, v1layout::MAGIC_INIT, Relaxed).unwrap();
    assert_eq!(m.bytes(), b"LCi1");
}

/// Creates the header in blank memory through `init_or_join`, the way the
/// driver and the tools do, and adds the protocol field the way a
/// vdev-remote backend does.
fn create<M: SharedMemory + ?Sized>(mem: &M, proposal: &Header, protocol: u32) {
    let got = v1layout::init_or_join(mem, proposal, || panic!("blank memory: nobody to wait for"))
        .unwrap();
    assert_eq!(&got, proposal);
    mem.store(v1layout::off::PROTOCOL, protocol, Relaxed)
        .unwrap();
}

/// 1 MiB region, 4 KiB pages, the default 8 peers, a virtio-blk backend.
fn header_1m() -> (Header, [u8; 64]) {
    let h = Header::propose(1 << 20, 4096, v1layout::DEFAULT_MAX_PEERS).unwrap();
    let mut img = [0u8; 64];
    place(&mut img, 0x00, b"LCv1");
    place(&mut img, 0x04, &[0x01, 0x00, 0x00, 0x00]); // version 1
    place(&mut img, 0x08, &[0x08, 0x00, 0x00, 0x00]); // 8 peers
    place(&mut img, 0x0c, &[0x00, 0x10, 0x00, 0x00]); // granule 0x1000
    place(
        &mut img,
        0x10,
        &[0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
    ); // state table 0x1000
       // R/W: 1 MiB - 2 pages - 8 * 64 KiB = 0x7e000.
    place(
        &mut img,
        0x18,
        &[0x00, 0xe0, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00],
    );
    place(
        &mut img,
        0x20,
        &[0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],
    ); // output 0x10000
    place(&mut img, 0x28, &[0x02, 0x80, 0x00, 0x00]); // protocol 0x8002 (virtio-blk frontend)
    (h, img)
}

/// 8 GiB region, 64 KiB pages (an arm64 kernel with 64K pages), 258 peers:
/// every field has more than one significant byte and the R/W size needs
/// the upper half of its u64.
fn header_8g() -> (Header, [u8; 64]) {
    let h = Header::propose(8 << 30, 64 << 10, 258).unwrap();
    let mut img = [0u8; 64];
    place(&mut img, 0x00, b"LCv1");
    place(&mut img, 0x04, &[0x01, 0x00, 0x00, 0x00]);
    place(&mut img, 0x08, &[0x02, 0x01, 0x00, 0x00]); // 258 = 0x102
    place(&mut img, 0x0c, &[0x00, 0x00, 0x01, 0x00]); // granule 0x10000
    place(
        &mut img,
        0x10,
        &[0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],
    ); // state table 0x10000
       // R/W: 8 GiB - 2 * 64 KiB - 258 * 64 KiB = 0x1_fefc_0000.
    place(
        &mut img,
        0x18,
        &[0x00, 0x00, 0xfc, 0xfe, 0x01, 0x00, 0x00, 0x00],
    );
    place(
        &mut img,
        0x20,
        &[0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00],
    ); // output 0x10000
    place(&mut img, 0x28, &[0x03, 0x80, 0x00, 0x00]); // protocol 0x8003 (virtio-console frontend)
    (h, img)
}

#[test]
fn v1_header_bytes_written_through_init_or_join() {
    for (proposal, expected, protocol) in [(header_1m(), 0x8002), (header_8g(), 0x8003)]
        .into_iter()
        .map(|((h, img), p)| (h, img, p))
    {
        let mem = bytes(64);
        create(&mem, &proposal, protocol);
        assert_eq!(mem.bytes(), expected, "{proposal:?}");
        // Reserved bytes after the fields stay zero.
        assert!(mem.bytes()[v1layout::off::END..].iter().all(|&b| b == 0));
    }
}

#[test]
fn v1_header_bytes_written_through_a_bare_raw_region() {
    // The tools' path: a `RawRegion` over their mapping, without the test
    // memory's log in between. It must produce the same bytes.
    for (proposal, expected, protocol) in [(header_1m(), 0x8002), (header_8g(), 0x8003)]
        .into_iter()
        .map(|((h, img), p)| (h, img, p))
    {
        let mem = TestMemory::new(64);
        create(mem.region(), &proposal, protocol);
        assert_eq!(mem.bytes(), expected, "{proposal:?}");
    }
}

#[test]
fn v1_header_is_claimed_written_then_published() {
    let (proposal, _) = header_1m();
    let mem = bytes(64);
    create(&mem, &proposal, 0x8002);
    let log = mem.stores();
    // Claimed with "LCi1" first, published with "LCv1" last of the fields
    // init_or_join writes (the protocol comes afterwards, from the backend).
    assert_eq!(log[0], (0x00, b"LCi1".to_vec()));
    let published = log
        .iter()
        .position(|e| *e == (0x00, b"LCv1".to_vec()))
        .unwrap();
    assert_eq!(
        published,
        log.len() - 2,
        "every field before the magic: {log:?}"
    );
    assert_eq!(log[log.len() - 1].0, v1layout::off::PROTOCOL);
    for (at, bytes) in log.iter() {
        assert_eq!(
            at % bytes.len(),
            0,
            "store of {} bytes at {at:#x} is not naturally aligned",
            bytes.len()
        );
    }
}

#[test]
fn v1_header_bytes_are_read_back_as_little_endian() {
    // A peer joining memory another peer (of any byte order) laid out.
    for ((expected, img), protocol) in [(header_1m(), 0x8002u32), (header_8g(), 0x8003)] {
        let mem = image(&img);
        let other = Header::propose(1 << 20, 4096, 2).unwrap();
        let got =
            v1layout::init_or_join(&mem, &other, || panic!("published header: no wait")).unwrap();
        assert_eq!(got, expected);
        assert_eq!(
            mem.load::<u32>(v1layout::off::PROTOCOL, Relaxed),
            Ok(protocol)
        );
        // Joining writes nothing.
        assert!(mem.stores().is_empty());
        assert_eq!(mem.bytes(), img);
    }
    // A header written in big-endian byte order is refused, not misread.
    let (_, img) = header_1m();
    let mut be = img;
    be[0x04..0x08].copy_from_slice(&[0, 0, 0, 1]);
    let mem = image(&be);
    assert_eq!(
        Header::read(&mem),
        Err(v1layout::V1Error::BadVersion(0x0100_0000))
    );
}

// ---------------------------------------------------------------------------
// (b) the virtio-over-ivshmem register header

/// Jailhouse's `struct virtio_ivshmem_header` (Siemens' virtio-over-ivshmem
/// frontend for Linux, `drivers/virtio/virtio_ivshmem.c` in the
/// jailhouse-enabling kernel trees), field for field in the same order and
/// types (`__le32` -> u32, `__u8 __reserved[2]`, `__u8 config[]`).
#[repr(C)]
#[allow(dead_code)]
struct VirtioIvshmemHeader {
    revision: u32,
    size: u32,
    write_transaction: u32,
    device_features: u32,
    device_features_sel: u32,
    driver_features: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    queue_size: u16,
    queue_device_vector: u16,
    queue_driver_vector: u16,
    queue_enable: u16,
    queue_desc: u64,
    queue_driver: u64,
    queue_device: u64,
    config_event: u8,
    queue_event: u8,
    reserved: [u8; 2],
    device_status: u32,
    config_generation: u32,
    config: [u8; 0],
}

#[test]
fn virtio_header_offsets_are_aligned_and_match_jailhouse() {
    use vhdr::off;
    let fields = [
        (
            "revision",
            off::REVISION,
            4,
            offset_of!(VirtioIvshmemHeader, revision),
        ),
        ("size", off::SIZE, 4, offset_of!(VirtioIvshmemHeader, size)),
        (
            "write_transaction",
            off::WRITE_TRANSACTION,
            4,
            offset_of!(VirtioIvshmemHeader, write_transaction),
        ),
        (
            "device_features",
            off::DEVICE_FEATURES,
            4,
            offset_of!(VirtioIvshmemHeader, device_features),
        ),
        (
            "device_features_sel",
            off::DEVICE_FEATURES_SEL,
            4,
            offset_of!(VirtioIvshmemHeader, device_features_sel),
        ),
        (
            "driver_features",
            off::DRIVER_FEATURES,
            4,
            offset_of!(VirtioIvshmemHeader, driver_features),
        ),
        (
            "driver_features_sel",
            off::DRIVER_FEATURES_SEL,
            4,
            offset_of!(VirtioIvshmemHeader, driver_features_sel),
        ),
        (
            "queue_sel",
            off::QUEUE_SEL,
            4,
            offset_of!(VirtioIvshmemHeader, queue_sel),
        ),
        (
            "queue_size",
            off::QUEUE_SIZE,
            2,
            offset_of!(VirtioIvshmemHeader, queue_size),
        ),
        (
            "queue_device_vector",
            off::QUEUE_DEVICE_VECTOR,
            2,
            offset_of!(VirtioIvshmemHeader, queue_device_vector),
        ),
        (
            "queue_driver_vector",
            off::QUEUE_DRIVER_VECTOR,
            2,
            offset_of!(VirtioIvshmemHeader, queue_driver_vector),
        ),
        (
            "queue_enable",
            off::QUEUE_ENABLE,
            2,
            offset_of!(VirtioIvshmemHeader, queue_enable),
        ),
        (
            "queue_desc",
            off::QUEUE_DESC,
            8,
            offset_of!(VirtioIvshmemHeader, queue_desc),
        ),
        (
            "queue_driver",
            off::QUEUE_DRIVER,
            8,
            offset_of!(VirtioIvshmemHeader, queue_driver),
        ),
        (
            "queue_device",
            off::QUEUE_DEVICE,
            8,
            offset_of!(VirtioIvshmemHeader, queue_device),
        ),
        (
            "config_event",
            off::CONFIG_EVENT,
            1,
            offset_of!(VirtioIvshmemHeader, config_event),
        ),
        (
            "queue_event",
            off::QUEUE_EVENT,
            1,
            offset_of!(VirtioIvshmemHeader, queue_event),
        ),
        (
            "reserved",
            off::QUEUE_EVENT + 1,
            2,
            offset_of!(VirtioIvshmemHeader, reserved),
        ),
        (
            "device_status",
            off::DEVICE_STATUS,
            4,
            offset_of!(VirtioIvshmemHeader, device_status),
        ),
        (
            "config_generation",
            off::CONFIG_GENERATION,
            4,
            offset_of!(VirtioIvshmemHeader, config_generation),
        ),
    ];
    for &(name, ours, _, theirs) in &fields {
        assert_eq!(
            ours, theirs,
            "{name}: lincell {ours:#x}, Jailhouse struct {theirs:#x}"
        );
    }
    let table: Vec<_> = fields.iter().map(|&(n, o, w, _)| (n, o, w)).collect();
    assert_packed_and_aligned(&table, 0, vhdr::CONFIG_OFFSET);
    assert_eq!(vhdr::CONFIG_OFFSET, 0x4c);
    assert_eq!(offset_of!(VirtioIvshmemHeader, config), vhdr::CONFIG_OFFSET);
    // The fields the frontend writes through a transaction: the width the
    // backend applies is the field's width.
    for &(name, offset, width) in &table {
        if let Some(w) = vhdr::writable_field_width(offset) {
            assert_eq!(w, width, "{name}");
        }
    }
}

#[test]
fn virtio_header_fields_are_little_endian_in_memory() {
    // What a backend writes and a frontend reads, byte for byte.
    use vhdr::off;
    let m = bytes(vhdr::CONFIG_OFFSET);
    m.store(off::REVISION, vhdr::REVISION, Relaxed).unwrap();
    m.store(off::SIZE, 0x88u32, Relaxed).unwrap();
    m.store(off::QUEUE_SIZE, 0x0100u16, Relaxed).unwrap();
    m.store(off::QUEUE_DESC, 0x0000_0001_0000_1000u64, Relaxed)
        .unwrap();
    m.store(off::DEVICE_STATUS, 0x0fu32, Relaxed).unwrap();
    let b = m.bytes();
    assert_eq!(b[0x00..0x08], [0x01, 0, 0, 0, 0x88, 0, 0, 0]);
    assert_eq!(b[0x20..0x22], [0x00, 0x01]);
    assert_eq!(
        b[0x28..0x30],
        [0x00, 0x10, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]
    );
    assert_eq!(b[0x44..0x48], [0x0f, 0, 0, 0]);
    assert_eq!(
        vhdr::check_header(
            m.load(off::REVISION, Relaxed).unwrap(),
            m.load(off::SIZE, Relaxed).unwrap(),
            1 << 20
        ),
        Ok(0x3c)
    );
}

// ---------------------------------------------------------------------------
// (c) split virtqueues

#[test]
fn split_ring_parts_are_aligned_as_virtio_requires() {
    // virtio 1.x, 2.7: descriptor table 16-byte aligned, driver area (avail)
    // 2, device area (used) 4; sizes 16*n, 6+2*n, 6+8*n.
    let mut num = 1u16;
    loop {
        for base in [0usize, 0x10, 0x1000, 0x7_fff0] {
            let r = split_layout(base, num);
            let n = usize::from(num);
            assert_eq!(r.desc, base);
            assert_eq!(r.desc % 16, 0, "num {num} base {base:#x}");
            assert_eq!(r.avail, r.desc + 16 * n, "avail follows the table");
            assert_eq!(r.avail % 2, 0);
            assert_eq!(r.used % 4, 0, "num {num}: used at {:#x}", r.used);
            assert!(
                r.used >= r.avail + 6 + 2 * n && r.used < r.avail + 6 + 2 * n + 4,
                "num {num}"
            );
            assert_eq!(base + split_size(num), r.used + 6 + 8 * n, "num {num}");
            // Entries: avail ring[k] (u16) at avail + 4 + 2k, used ring[k]
            // (u32 id, u32 len) at used + 4 + 8k.
            assert_eq!((r.avail + 4) % 2, 0);
            assert_eq!((r.used + 4) % 4, 0);
        }
        if num == MAX_QUEUE_SIZE {
            break;
        }
        num *= 2;
    }
    // The 4-entry ring used below, spelled out.
    assert_eq!(
        split_layout(0x100, 4),
        RingAddrs {
            desc: 0x100,
            avail: 0x140,
            used: 0x150
        }
    );
    assert_eq!(split_size(4), 0x76);
}

const NUM: u16 = 4;
/// Private ring (the virtio core's vring) at 0, shared ring at 0x100.
const SHARED: usize = 0x100;

/// Descriptor 2: device-readable, 0x0a0b0c0d bytes at 0x1122334455667788,
/// chained to 3.
const DESC2: [u8; 16] = [
    0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // addr, u64 LE at +0
    0x0d, 0x0c, 0x0b, 0x0a, // len, u32 LE at +8
    0x01, 0x00, // flags NEXT, u16 LE at +12
    0x03, 0x00, // next = 3, u16 LE at +14
];
/// Descriptor 3: device-writable, 0x200 bytes at 0x1_0000_2000, end of chain.
const DESC3: [u8; 16] = [
    0x00, 0x20, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // addr
    0x00, 0x02, 0x00, 0x00, // len 0x200
    0x02, 0x00, // flags WRITE
    0x00, 0x00, // next (unused)
];

/// The private ring as the virtio core leaves it after adding the chain
/// 2 -> 3 and making it available (avail idx 1, ring[0] = 2).
fn private_ring() -> TestMemory {
    let mut img = vec![0u8; split_size(NUM)];
    place(&mut img, 16 * 2, &DESC2);
    place(&mut img, 16 * 3, &DESC3);
    place(&mut img, 0x40 + 2, &[0x01, 0x00]); // avail idx
    place(&mut img, 0x40 + 4, &[0x02, 0x00]); // avail ring[0]
    image(&img)
}

fn shadow() -> Shadow<Vec<Head>> {
    Shadow::new(NUM, vec![Head::default(); usize::from(NUM)]).unwrap()
}

#[test]
fn descriptor_fields_decode_as_virtio_defines() {
    // The literal bytes above are what the flag constants and values say.
    let m = image(&DESC2);
    assert_eq!(m.load::<u64>(0, Relaxed), Ok(0x1122_3344_5566_7788));
    assert_eq!(m.load::<u32>(8, Relaxed), Ok(0x0a0b_0c0d));
    assert_eq!(m.load::<u16>(12, Relaxed), Ok(DESC_F_NEXT));
    assert_eq!(m.load::<u16>(14, Relaxed), Ok(3));
    let m = image(&DESC3);
    assert_eq!(m.load::<u64>(0, Relaxed), Ok(0x1_0000_2000));
    assert_eq!(m.load::<u16>(12, Relaxed), Ok(DESC_F_WRITE));
}

#[test]
fn published_chain_and_collected_used_entry_byte_for_byte() {
    let pm = private_ring();
    let pr = split_layout(0, NUM);
    let sm = bytes(SHARED + split_size(NUM));
    let sr = split_layout(SHARED, NUM);
    let mut sh = shadow();

    // Publish: the chain's descriptors, then the avail entry, then the idx.
    assert_eq!(
        sh.publish(&pm.fallback(), &pr, &sm.fallback(), &sr, &|_, _| true),
        Ok(1)
    );
    let mut want = vec![0u8; SHARED + split_size(NUM)];
    place(&mut want, 0x120, &DESC2); // desc[2]
    place(&mut want, 0x130, &DESC3); // desc[3]
    place(&mut want, 0x140, &[0x00, 0x00]); // avail flags (untouched)
    place(&mut want, 0x142, &[0x01, 0x00]); // avail idx 1
    place(&mut want, 0x144, &[0x02, 0x00]); // avail ring[0] = head 2
    assert_eq!(sm.bytes(), want, "shared ring after publish");
    let idx_store = sm.stores().iter().position(|(a, _)| *a == 0x142).unwrap();
    assert_eq!(idx_store, sm.stores().len() - 1, "avail idx is stored last");
    for (at, bytes) in sm.stores().iter() {
        assert_eq!(
            at % bytes.len(),
            0,
            "unaligned {}-byte store at {at:#x}",
            bytes.len()
        );
    }

    // The backend completes head 2 with 0x100 bytes: used idx and entry.
    sm.put(0x154, &[0x02, 0x00, 0x00, 0x00]); // used ring[0].id (u32 LE)
    sm.put(0x158, &[0x00, 0x01, 0x00, 0x00]); // used ring[0].len = 0x100
    sm.put(0x152, &[0x01, 0x00]); // used idx 1
    assert_eq!(sh.collect(&pm.fallback(), &pr, &sm.fallback(), &sr), Ok(1));
    // Copied to the private used ring (at 0x50): idx 1, { id 2, len 0x100 }.
    assert_eq!(pm.slice(0x50, 4), [0x00, 0x00, 0x01, 0x00]);
    assert_eq!(
        pm.slice(0x54, 8),
        [0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]
    );
    assert_eq!(sh.in_flight(), 0);
}

#[test]
fn a_big_endian_used_entry_is_refused() {
    let pm = private_ring();
    let pr = split_layout(0, NUM);
    let sm = bytes(SHARED + split_size(NUM));
    let sr = split_layout(SHARED, NUM);
    let mut sh = shadow();
    sh.publish(&pm.fallback(), &pr, &sm.fallback(), &sr, &|_, _| true)
        .unwrap();
    // Length 0x100 in big-endian reads as 0x10000 > the 0x200 writable bytes.
    sm.put(0x154, &[0x02, 0x00, 0x00, 0x00]);
    sm.put(0x158, &[0x00, 0x00, 0x01, 0x00]);
    sm.put(0x152, &[0x01, 0x00]);
    assert_eq!(
        sh.collect(&pm.fallback(), &pr, &sm.fallback(), &sr),
        Err(ShadowError::UsedLen {
            id: 2,
            len: 0x10000,
            writable: 0x200
        })
    );
    // Head 2 in big-endian reads as 0x02000000: not in flight.
    let mut sh = shadow();
    let sm = bytes(SHARED + split_size(NUM));
    sh.publish(&pm.fallback(), &pr, &sm.fallback(), &sr, &|_, _| true)
        .unwrap();
    sm.put(0x154, &[0x00, 0x00, 0x00, 0x02]);
    sm.put(0x152, &[0x01, 0x00]);
    assert_eq!(
        sh.collect(&pm.fallback(), &pr, &sm.fallback(), &sr),
        Err(ShadowError::UsedId(0x0200_0000))
    );
}

#[test]
fn ring_indices_are_u16_little_endian_past_255() {
    // 0x123 publish/complete rounds: both indices need their high byte.
    let pm = private_ring();
    let pr = split_layout(0, NUM);
    let sm = bytes(SHARED + split_size(NUM));
    let sr = split_layout(SHARED, NUM);
    let mut sh = shadow();
    for round in 1..=0x123u16 {
        let slot = usize::from((round - 1) % NUM);
        pm.put(0x44 + 2 * slot, &[0x02, 0x00]);
        pm.put(0x42, &round.to_le_bytes());
        assert_eq!(
            sh.publish(&pm.fallback(), &pr, &sm.fallback(), &sr, &|_, _| true),
            Ok(1)
        );
        sm.put(0x154 + 8 * slot, &[0x02, 0, 0, 0]);
        sm.put(0x158 + 8 * slot, &[0x00, 0, 0, 0]);
        sm.put(0x152, &round.to_le_bytes());
        assert_eq!(sh.collect(&pm.fallback(), &pr, &sm.fallback(), &sr), Ok(1));
    }
    assert_eq!(sm.slice(0x142, 2), [0x23, 0x01], "shared avail idx 0x123");
    assert_eq!(pm.slice(0x52, 2), [0x23, 0x01], "private used idx 0x123");
    // The last round used slot 0x122 % 4 = 2.
    assert_eq!(sm.slice(0x144 + 2 * 2, 2), [0x02, 0x00]);
}

// ---------------------------------------------------------------------------
// (d) the /dev/ivshmemN ioctl structures

#[test]
fn uapi_structures_have_no_implicit_padding_and_natural_alignment() {
    // Native-endian by design (they cross the user/kernel boundary of one
    // machine only), but the layout must be the same on every target,
    // including 32-bit ones where u64 is only 4-byte aligned: every field at
    // a multiple of its own size, no hole, size a multiple of 8.
    macro_rules! fields {
        ($t:ty: $($f:ident: $ft:ty),* $(,)?) => {{
            $( let _: fn(&$t) -> $ft = |s| s.$f; )*
            vec![$( (stringify!($f), offset_of!($t, $f), size_of::<$ft>()) ),*]
        }};
    }
    let info = fields!(DeviceInfo:
        revision: u32, own_id: u32, max_peers: u32, vectors: u32, protocol: u32, flags: u32,
        shmem_size: u64, state_table_offset: u64, state_table_size: u64, rw_offset: u64,
        rw_size: u64, output_offset: u64, output_size: u64,
    );
    assert_packed_and_aligned(&info, 0, size_of::<DeviceInfo>());
    assert_eq!((size_of::<DeviceInfo>(), align_of::<DeviceInfo>()), (80, 8));

    let ring = fields!(Ring: peer: u32, vector: u32);
    assert_packed_and_aligned(&ring, 0, size_of::<Ring>());
    assert_eq!((size_of::<Ring>(), align_of::<Ring>()), (8, 4));

    let array = fields!(ArrayArg: ptr: u64, count: u32, reserved: u32);
    assert_packed_and_aligned(&array, 0, size_of::<ArrayArg>());
    assert_eq!((size_of::<ArrayArg>(), align_of::<ArrayArg>()), (16, 8));

    // The sizes the ioctl numbers encode (bits 16..30).
    assert_eq!((uapi::IOCTL_INFO >> 16) & 0x3fff, 80);
    assert_eq!((uapi::IOCTL_RING >> 16) & 0x3fff, 8);
    assert_eq!((uapi::IOCTL_PEER_STATES >> 16) & 0x3fff, 16);
    assert_eq!((uapi::IOCTL_COUNTERS >> 16) & 0x3fff, 16);
    assert_eq!(uapi::READ_SIZE, 8);
}

/// The message channel's two blocks (`rust/channel.rs`,
/// `include/uapi/lincell/channel.h`), byte for byte.
#[test]
fn channel_blocks_are_little_endian_and_as_documented() {
    use lincell_shared::channel::{Consumer, Geometry, Producer};
    let m = bytes(0x1000);
    let geo = Geometry::new(2, 16).unwrap();
    let mut tx = Producer::create(&m, 0x100, &m, 0x800, geo, 0x0102_0304).unwrap();
    let mut rx = Consumer::attach(&m, 0x100, &m, 0x800).unwrap();
    tx.try_send(&[0xaa, 0xbb, 0xcc]).unwrap();
    #[rustfmt::skip]
    let producer: [u8; 0x28] = [
        b'L', b'C', b'M', b'Q', 1, 0, 0, 0,   16, 0, 0, 0,   2, 0, 0, 0,     // magic version slot_size slots
        4, 3, 2, 1,             1, 0, 0, 0,   0, 0, 0, 0,    0, 0, 0, 0,     // epoch head flags (pad)
        0, 0, 0, 0, 0, 0, 0, 0,                                              // (pad to 0x28)
    ];
    assert_eq!(m.slice(0x100, 0x28), producer);
    // Slot 0 at +0x40: len, reserved, payload.
    assert_eq!(
        m.slice(0x140, 11),
        [3, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0xbb, 0xcc]
    );
    let mut buf = [0u8; 8];
    rx.try_recv(&mut buf).unwrap();
    #[rustfmt::skip]
    let consumer: [u8; 16] = [
        b'L', b'C', b'M', b'C', 4, 3, 2, 1,   1, 0, 0, 0,   0, 0, 0, 0,      // magic epoch tail flags
    ];
    assert_eq!(m.slice(0x800, 16), consumer);
}
