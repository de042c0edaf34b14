// SPDX-License-Identifier: GPL-2.0

//! Small system-call helpers shared by the subcommands, written once for
//! both C libraries the tools are built with (glibc on the host, musl for
//! the static arm64 guest build), whose `ioctl` request types differ.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// An ioctl request number in the C library's type (`unsigned long` on
/// glibc, `int` on musl, where requests with the direction bit set are
/// negative: the same 32 bits either way).
#[allow(
    clippy::cast_lossless,
    clippy::cast_possible_wrap,
    reason = "a widening on glibc, a same-width reinterpretation on musl"
)]
pub fn ioctl_request(cmd: u32) -> libc::Ioctl {
    cmd as libc::Ioctl
}

/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)` (64-bit size_t).
const BLKGETSIZE64: u32 = 0x8008_1272;

/// Size in bytes of an open regular file or block device.
pub(crate) fn file_size(file: &std::fs::File) -> io::Result<u64> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let meta = file.metadata()?;
    if meta.file_type().is_block_device() {
        block_device_size(file.as_fd())
    } else {
        Ok(meta.len())
    }
}

/// Size in bytes of the block device open on `fd`.
fn block_device_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 to the argument, a live local.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            ioctl_request(BLKGETSIZE64),
            std::ptr::from_mut(&mut size),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}
