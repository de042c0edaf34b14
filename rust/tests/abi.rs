// SPDX-License-Identifier: GPL-2.0

//! The C headers under `include/uapi/lincell/` and their Rust twins
//! (`ivshmem.h` and `rust/ivshmem/uapi.rs`, `channel.h` and
//! `rust/channel.rs`) describe the same ABI: compile a C program against
//! each header and compare every size, offset, constant and ioctl number it
//! prints with the Rust definitions.

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

use lincell_shared::ivshmem::uapi::*;

const PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <lincell/ivshmem.h>
#define P(x) printf(#x " %lu\n", (unsigned long)(x))
int main(void)
{
	P(sizeof(struct ivshmem_info));
	P(offsetof(struct ivshmem_info, flags));
	P(offsetof(struct ivshmem_info, shmem_size));
	P(offsetof(struct ivshmem_info, rw_offset));
	P(offsetof(struct ivshmem_info, output_size));
	P(sizeof(struct ivshmem_ring));
	P(sizeof(struct ivshmem_array));
	P(offsetof(struct ivshmem_array, count));
	P(IVSHMEM_IOCTL_INFO);
	P(IVSHMEM_IOCTL_RING);
	P(IVSHMEM_IOCTL_SET_STATE);
	P(IVSHMEM_IOCTL_GET_STATE);
	P(IVSHMEM_IOCTL_PEER_STATES);
	P(IVSHMEM_IOCTL_COUNTERS);
	P(IVSHMEM_MAX_VECTORS);
	P(IVSHMEM_INFO_DOORBELL | IVSHMEM_INFO_ONESHOT << 8 | IVSHMEM_INFO_SECTIONS << 16);
	return 0;
}
"#;

/// Compiles and runs a probe program against `include/uapi`; the number at
/// the end of each line it prints, and its output.
fn probe(name: &str, source: &str) -> (Vec<u64>, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("lincell-abi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.c"), source).unwrap();
    let status = Command::new("cc")
        .arg("-I")
        .arg(root.join("include/uapi"))
        .arg("-o")
        .arg(dir.join("probe"))
        .arg(dir.join("probe.c"))
        .status()
        .expect("a C compiler (cc) is needed for this test");
    assert!(status.success(), "the uapi header does not compile");
    let out = Command::new(dir.join("probe")).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let values: Vec<u64> = text
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let _ = std::fs::remove_dir_all(dir);
    (values, text)
}

#[test]
fn abi_matches_c_header() {
    let (values, text) = probe("ivshmem", PROBE);
    let expected: Vec<u64> = vec![
        size_of::<DeviceInfo>() as u64,
        offset_of!(DeviceInfo, flags) as u64,
        offset_of!(DeviceInfo, shmem_size) as u64,
        offset_of!(DeviceInfo, rw_offset) as u64,
        offset_of!(DeviceInfo, output_size) as u64,
        size_of::<Ring>() as u64,
        size_of::<ArrayArg>() as u64,
        offset_of!(ArrayArg, count) as u64,
        u64::from(IOCTL_INFO),
        u64::from(IOCTL_RING),
        u64::from(IOCTL_SET_STATE),
        u64::from(IOCTL_GET_STATE),
        u64::from(IOCTL_PEER_STATES),
        u64::from(IOCTL_COUNTERS),
        u64::from(MAX_VECTORS),
        u64::from(INFO_DOORBELL | INFO_ONESHOT << 8 | INFO_SECTIONS << 16),
    ];
    assert_eq!(
        values, expected,
        "C header vs Rust, in the order of the probe:\n{text}"
    );
}

const CHANNEL_PROBE: &str = r#"
#include <stdio.h>
#include <stddef.h>
#include <lincell/channel.h>
#define P(x) printf(#x " %lu\n", (unsigned long)(x))
int main(void)
{
	P(LINCELL_CHANNEL_PRODUCER_MAGIC);
	P(LINCELL_CHANNEL_CONSUMER_MAGIC);
	P(LINCELL_CHANNEL_VERSION);
	P(LINCELL_CHANNEL_WAITING);
	P(LINCELL_CHANNEL_MAX_SLOTS);
	P(LINCELL_CHANNEL_MIN_SLOT_SIZE);
	P(LINCELL_CHANNEL_MAX_SLOT_SIZE);
	P(offsetof(struct lincell_channel_producer, slot_size));
	P(offsetof(struct lincell_channel_producer, slots));
	P(offsetof(struct lincell_channel_producer, epoch));
	P(offsetof(struct lincell_channel_producer, head));
	P(offsetof(struct lincell_channel_producer, flags));
	P(offsetof(struct lincell_channel_producer, slot_area));
	P(offsetof(struct lincell_channel_slot, payload));
	P(offsetof(struct lincell_channel_consumer, epoch));
	P(offsetof(struct lincell_channel_consumer, tail));
	P(offsetof(struct lincell_channel_consumer, flags));
	P(sizeof(struct lincell_channel_consumer));
	return 0;
}
"#;

/// `include/uapi/lincell/channel.h` and `rust/channel.rs` agree.
#[test]
fn channel_layout_matches_c_header() {
    use lincell_shared::channel::{self as ch, off};
    let (values, text) = probe("channel", CHANNEL_PROBE);
    let expected: Vec<u64> = vec![
        u64::from(ch::PRODUCER_MAGIC),
        u64::from(ch::CONSUMER_MAGIC),
        u64::from(ch::VERSION),
        u64::from(ch::FLAG_WAITING),
        u64::from(ch::MAX_SLOTS),
        u64::from(ch::SLOT_SIZE_RANGE.0),
        u64::from(ch::SLOT_SIZE_RANGE.1),
        off::P_SLOT_SIZE as u64,
        off::P_SLOTS as u64,
        off::P_EPOCH as u64,
        off::P_HEAD as u64,
        off::P_FLAGS as u64,
        ch::PRODUCER_HEADER_SIZE as u64,
        off::S_PAYLOAD as u64,
        off::C_EPOCH as u64,
        off::C_TAIL as u64,
        off::C_FLAGS as u64,
        ch::CONSUMER_BLOCK_SIZE as u64,
    ];
    assert_eq!(
        values, expected,
        "C header vs Rust, in the order of the probe:\n{text}"
    );
}
