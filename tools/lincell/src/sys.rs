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

/// The child [`ForwardSignals`] passes signals to (0: none).
static FORWARD_TO: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// The signals [`ForwardSignals`] handles.
const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// While it lives, SIGINT, SIGTERM and SIGHUP do not end this process but
/// are passed on to one child, so that the caller outlives the child and
/// can clean up after it. Dropping it restores the default actions.
pub(crate) struct ForwardSignals(());

impl ForwardSignals {
    /// Passes the signals to process `pid`.
    pub(crate) fn to(pid: u32) -> io::Result<Self> {
        let pid = i32::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        FORWARD_TO.store(pid, std::sync::atomic::Ordering::Relaxed);
        for sig in FORWARDED {
            set_action(
                sig,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )?;
        }
        Ok(ForwardSignals(()))
    }
}

impl Drop for ForwardSignals {
    fn drop(&mut self) {
        for sig in FORWARDED {
            let _ = set_action(sig, libc::SIG_DFL);
        }
        FORWARD_TO.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

fn set_action(sig: libc::c_int, handler: libc::sighandler_t) -> io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid empty value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART;
    // SAFETY: a valid sigaction; the handler only calls kill(2).
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
