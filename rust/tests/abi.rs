// SPDX-License-Identifier: GPL-2.0

//! The C header `include/uapi/lincell/ivshmem.h` and `rust/ivshmem/uapi.rs`
//! describe the same ABI: compile a C program against the header and compare
//! every size, offset and ioctl number it prints with the Rust definitions.

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

#[test]
fn abi_matches_c_header() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("lincell-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.c"), PROBE).unwrap();
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
    let _ = std::fs::remove_dir_all(dir);
}
