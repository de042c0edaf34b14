// SPDX-License-Identifier: GPL-2.0

//! `lincell ivshmem copybench`: how fast this CPU copies between the
//! shared memory's R/W section and its own RAM.
//!
//! A bounce-buffer transport (vdev_remote) copies every byte of a request
//! once between the guest's pages and the R/W section, so this copy rate
//! is the floor its throughput is measured against. The region used is
//! saved first and written back at the end, so a section in use by a peer
//! that is not looking at those bytes (the bounce pool before a frontend
//! attaches) is left as it was.

use std::io::Write;
use std::time::{Duration, Instant};

use super::cli::{CopyMethod, CopybenchArgs};
use super::endpoint::WaitMode;
use crate::error::{Error, Result};

/// Copies `len` bytes from `src` to `dst` with `method`.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `len` bytes, and
/// the two ranges must not overlap.
unsafe fn copy(method: CopyMethod, src: *const u8, dst: *mut u8, len: usize) {
    match method {
        // SAFETY: the caller's preconditions are copy_nonoverlapping's.
        CopyMethod::Libc => unsafe { std::ptr::copy_nonoverlapping(src, dst, len) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `rep movsb` reads `len` bytes at `src` and writes `len`
        // bytes at `dst`, both valid by the caller's preconditions; it
        // touches only rsi, rdi and rcx, declared as clobbered, and the
        // direction flag is clear by the ABI.
        CopyMethod::Movsb => unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") src => _,
                inout("rdi") dst => _,
                options(nostack, preserves_flags)
            );
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the loop reads `len / 32 * 32` bytes at `src` and writes
        // as many at `dst` (valid by the caller's preconditions), then the
        // tail with copy_nonoverlapping; it touches only the registers
        // declared.
        CopyMethod::Movq => unsafe {
            let body = len / 32 * 32;
            if body > 0 {
                std::arch::asm!(
                    "2:",
                    "mov {a}, [{s}]",
                    "mov {b}, [{s} + 8]",
                    "mov {c}, [{s} + 16]",
                    "mov {d}, [{s} + 24]",
                    "mov [{t}], {a}",
                    "mov [{t} + 8], {b}",
                    "mov [{t} + 16], {c}",
                    "mov [{t} + 24], {d}",
                    "add {s}, 32",
                    "add {t}, 32",
                    "sub {n}, 32",
                    "jnz 2b",
                    s = inout(reg) src => _,
                    t = inout(reg) dst => _,
                    n = inout(reg) body => _,
                    a = out(reg) _,
                    b = out(reg) _,
                    c = out(reg) _,
                    d = out(reg) _,
                    options(nostack)
                );
            }
            std::ptr::copy_nonoverlapping(src.add(body), dst.add(body), len - body);
        },
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: as for Libc.
        CopyMethod::Movsb | CopyMethod::Movq => unsafe {
            std::ptr::copy_nonoverlapping(src, dst, len)
        },
    }
}

/// Copies `chunk`-byte pieces from `src` to `dst` (both `size` bytes,
/// walked in turn) for `secs`; the rate in MB/s (10^6 bytes).
///
/// # Safety
///
/// As for [`copy`], with `size` bytes; `chunk` divides `size`.
unsafe fn rate(
    method: CopyMethod,
    src: *const u8,
    dst: *mut u8,
    size: usize,
    chunk: usize,
    secs: Duration,
) -> f64 {
    let start = Instant::now();
    let mut bytes = 0u64;
    let mut off = 0;
    loop {
        // SAFETY: `off + chunk <= size` since chunk divides size.
        unsafe { copy(method, src.add(off), dst.add(off), chunk) };
        // CAST: usize fits in u64 on every target.
        bytes += chunk as u64;
        off = (off + chunk) % size;
        // One clock read per 256 KiB at least: cheap beside the copy.
        if off % (256 << 10).max(chunk) == 0 && start.elapsed() >= secs {
            break;
        }
    }
    // CAST: a rate for display.
    bytes as f64 / start.elapsed().as_secs_f64() / 1e6
}

/// `copybench`.
pub(crate) fn copybench(a: &CopybenchArgs, out: &mut dyn Write) -> Result<()> {
    let ep = a.dev.target()?.open(WaitMode::Poll)?;
    let (ptr, len) = ep.rw_ptr().ok_or_else(|| {
        Error::Failed(format!(
            "{}: the R/W section is not mapped read/write",
            ep.describe()
        ))
    })?;
    let offset = a.offset.unwrap_or(len / 2);
    let size = a
        .size
        .unwrap_or_else(|| len.saturating_sub(offset).min(8 << 20) / a.chunk.max(1) * a.chunk);
    if a.chunk == 0 || size == 0 || size % a.chunk != 0 {
        return Err(Error::Usage(format!(
            "--size ({size}) must be a non-zero multiple of --chunk ({})",
            a.chunk
        )));
    }
    if offset.checked_add(size).is_none_or(|end| end > len) {
        return Err(Error::Usage(format!(
            "{size} bytes at {offset:#x} do not fit the R/W section ({len:#x} bytes)"
        )));
    }
    // SAFETY: `offset + size <= len` (checked above) and the section's
    // `len` bytes stay mapped while `ep` lives.
    let shm = unsafe { ptr.add(offset) };
    let mut saved = vec![0u8; size];
    let ram = vec![0x5au8; size];
    let mut ram2 = vec![0u8; size];
    let secs = Duration::from_secs_f64(a.seconds);
    // SAFETY: `shm` holds `size` bytes (above); the vectors are `size`
    // bytes each and distinct from the mapping and from each other.
    unsafe { copy(CopyMethod::Libc, shm, saved.as_mut_ptr(), size) };
    for &method in &a.method {
        // SAFETY: as above.
        let (to, from, local) = unsafe {
            (
                rate(method, ram.as_ptr(), shm, size, a.chunk, secs),
                rate(method, shm, ram2.as_mut_ptr(), size, a.chunk, secs),
                rate(method, ram.as_ptr(), ram2.as_mut_ptr(), size, a.chunk, secs),
            )
        };
        writeln!(
            out,
            "copy method={} chunk={} size={size} seconds={:.2} to_shm_mb_per_s={to:.1} \
             from_shm_mb_per_s={from:.1} ram_mb_per_s={local:.1}",
            method.name(),
            a.chunk,
            a.seconds
        )?;
    }
    // SAFETY: as above.
    unsafe { copy(CopyMethod::Libc, saved.as_ptr(), shm, size) };
    Ok(())
}
