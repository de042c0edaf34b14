// SPDX-License-Identifier: GPL-2.0

//! `lincell remote bench`: a small block-device benchmark, so that a
//! vdev-remote disk and a native virtio-blk disk can be measured the same
//! way in the same guest (the guests have no fio).
//!
//! Direct I/O (`O_DIRECT`) on page-aligned buffers, `--jobs` threads each
//! with one request in flight, for `--seconds`; prints one line a script
//! can parse:
//!
//! ```text
//! bench mode=randread bs=4096 jobs=1 seconds=5.00 ops=1234 mb_per_s=0.99 iops=246.8
//! ```

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

use crate::error::{Error, Result};

/// Access pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Reads at random block-aligned offsets.
    Randread,
    /// Writes at random block-aligned offsets.
    Randwrite,
}

/// Arguments of `lincell remote bench`.
#[derive(Parser, Debug)]
pub(crate) struct BenchArgs {
    /// Block device (or file) to measure. Write modes overwrite its data.
    dev: PathBuf,
    /// Access pattern.
    #[arg(long, value_enum, default_value = "randread")]
    mode: Mode,
    /// Bytes per request (a multiple of 512).
    #[arg(long, default_value_t = 4096)]
    bs: usize,
    /// Threads, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// How long to run.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Only use the first SIZE bytes of the device (default: all of it).
    #[arg(long)]
    size: Option<u64>,
    /// Start at this byte offset.
    #[arg(long, default_value_t = 0)]
    offset: u64,
}

/// A page-aligned buffer.
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> io::Result<Self> {
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: posix_memalign writes an allocation of `len` bytes to `p`.
        let rc = unsafe { libc::posix_memalign(&mut p, 4096, len) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: `p` holds `len` writable bytes.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 0x5a, len) };
        Ok(Aligned { ptr: p.cast(), len })
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign.
        unsafe { libc::free(self.ptr.cast()) };
    }
}

fn worker(
    args: &BenchArgs,
    span: u64,
    seed: u64,
    stop: &AtomicBool,
    ops: &AtomicU64,
) -> io::Result<()> {
    let write = matches!(args.mode, Mode::Write | Mode::Randwrite);
    let f = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(&args.dev)?;
    let buf = Aligned::new(args.bs)?;
    let blocks = span / args.bs as u64;
    let mut rng = seed | 1;
    let mut next = seed % blocks.max(1);
    while !stop.load(Ordering::Relaxed) {
        let block = match args.mode {
            Mode::Read | Mode::Write => {
                next = (next + 1) % blocks;
                next
            }
            Mode::Randread | Mode::Randwrite => {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % blocks
            }
        };
        // CAST: offsets fit off_t for any real device.
        let off = (args.offset + block * args.bs as u64) as libc::off_t;
        // SAFETY: `buf` holds `bs` bytes, aligned for O_DIRECT.
        let n = unsafe {
            if write {
                libc::pwrite(f.as_raw_fd(), buf.ptr.cast(), buf.len, off)
            } else {
                libc::pread(f.as_raw_fd(), buf.ptr.cast(), buf.len, off)
            }
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs `lincell remote bench`: failing I/O on the device is an
/// [`Error::Remote`] (exit status 1).
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    if args.bs == 0 || args.bs % 512 != 0 || args.jobs == 0 || args.seconds <= 0.0 {
        return Err(Error::Usage(
            "--bs must be a positive multiple of 512, --jobs and --seconds positive".into(),
        ));
    }
    let size = OpenOptions::new()
        .read(true)
        .open(&args.dev)
        .and_then(|f| crate::sys::file_size(&f))
        .map_err(|e| Error::Remote(format!("{}: {e}", args.dev.display())))?;
    let span = args
        .size
        .unwrap_or(size)
        .min(size.saturating_sub(args.offset));
    if span < args.bs as u64 {
        return Err(Error::Usage(format!(
            "{} is smaller than one request",
            args.dev.display()
        )));
    }
    let args = Arc::new(args);
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.jobs)
        .map(|j| {
            let (args, stop, ops) = (args.clone(), stop.clone(), ops.clone());
            std::thread::spawn(move || {
                worker(
                    &args,
                    span,
                    0x9e37_79b9_7f4a_7c15 ^ ((j as u64 + 1) * 0x1234_5678),
                    &stop,
                    &ops,
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(args.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for w in workers {
        if let Ok(Err(e)) = w.join() {
            failed = Some(e);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = failed {
        return Err(Error::Remote(format!("{}: {e}", args.dev.display())));
    }
    let n = ops.load(Ordering::Relaxed);
    // CAST: counts far below 2^52 convert exactly.
    let (nf, bsf) = (n as f64, args.bs as f64);
    println!(
        "bench mode={} bs={} jobs={} seconds={:.2} ops={} mb_per_s={:.2} iops={:.1}",
        format!("{:?}", args.mode).to_lowercase(),
        args.bs,
        args.jobs,
        secs,
        n,
        nf * bsf / secs / 1e6,
        nf / secs
    );
    Ok(())
}
