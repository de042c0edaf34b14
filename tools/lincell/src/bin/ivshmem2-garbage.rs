// SPDX-License-Identifier: GPL-2.0

//! `ivshmem2-garbage`: a guest that writes garbage to every register of its
//! ivshmem 2.0 function, for `tests/guest/ivshmem2-hostile.sh`.
//!
//! The registers of an ivshmem 2.0 device of `ivshmem-server --v2` are
//! answered by the device process, over vfio-user, for every peer at once:
//! BAR0 (ID, Maximum Peers, Interrupt Control, Doorbell, State) and the
//! vendor capability in configuration space (Privileged Control, the
//! section sizes). A guest kernel can write anything there, at any width
//! and alignment; the device process must answer errors and keep serving
//! the other peers. This tool is that guest: with no driver bound, it maps
//! BAR0 through sysfs (`resource0`) and makes random reads and writes of 1,
//! 2, 4 and 8 bytes at random offsets, aligned or not, and writes random
//! bytes over the vendor capability through the `config` file. (BAR1, the
//! MSI-X table, is QEMU's emulation, and garbage there would have QEMU
//! write MSI messages to random guest addresses: it is left alone.)

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::ptr::NonNull;
use std::time::Instant;

use clap::Parser;
use lincell::rng::Rng;

/// Writes garbage to the registers of an ivshmem 2.0 PCI function.
#[derive(Parser, Debug)]
#[command(
    name = "ivshmem2-garbage",
    about = "Write garbage to every register of an ivshmem 2.0 PCI function (a test tool)",
    long_about = "\
Maps BAR0 of the PCI function PCI (its sysfs directory, e.g.
/sys/bus/pci/devices/0000:00:04.0) through resource0 and makes --accesses
random register accesses: 3 in 4 writes of random values, 1 in 4 reads, of
1, 2, 4 or 8 bytes at random offsets, 1 in 4 of them unaligned. Every
fourth access instead writes random bytes into the function's vendor
capability (configuration space, through the config file) or reads them
back. The function must have no driver bound (unbind it first) and memory
decoding enabled (write 1 to PCI/enable).

Prints bar0_writes=N bar0_reads=N config_writes=N config_refused=N
config_reads=N seconds=S. Exit status 0 when every access completed (a read
of a dead device returns all ones; nothing here can tell), 2 on an error
(no such function, a driver bound, no vendor capability)."
)]
struct Args {
    /// The function's sysfs directory.
    pci: PathBuf,
    /// Register accesses to make.
    #[arg(long, default_value_t = 20_000)]
    accesses: u64,
    /// Seed of the random sequence (the same seed, the same accesses).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// PCI capability ID of a vendor-specific capability.
const CAP_ID_VENDOR: u8 = 0x09;
/// Offset of the capabilities pointer in configuration space.
const CAP_POINTER: u64 = 0x34;

/// A shared mapping of a sysfs `resourceN` file, unmapped on drop.
///
/// # Invariants
///
/// `ptr` is the start of a live `len`-byte shared mapping, readable and
/// writable, owned by this value.
struct Bar {
    ptr: NonNull<u8>,
    len: usize,
}

impl Bar {
    fn map(file: &File) -> std::io::Result<Bar> {
        use std::os::fd::AsRawFd;
        let len = usize::try_from(file.metadata()?.len())
            .ok()
            .filter(|&l| l > 0)
            .ok_or_else(|| std::io::Error::other("BAR0 has no size"))?;
        // SAFETY: a fresh mapping of a file we hold open; the kernel picks
        // the address, so no existing memory is replaced.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| std::io::Error::other("mmap: null"))?;
        // INVARIANT: `ptr` is the `len`-byte read/write mapping just made.
        Ok(Bar { ptr, len })
    }

    /// One access of `width` bytes (1, 2, 4 or 8) at `offset`, which with
    /// `width` lies inside the mapping: a write of `value` or a read.
    fn access(&self, offset: usize, width: usize, write: Option<u64>) {
        assert!(offset + width <= self.len && [1, 2, 4, 8].contains(&width));
        // SAFETY: `offset..offset + width` is inside the live mapping
        // (checked above; the invariant). Aligned accesses are volatile, as
        // MMIO wants. Unaligned ones (what this tool is for: x86_64 does
        // them on device memory, QEMU splits them) cannot be volatile in
        // Rust: they are unaligned accesses through a pointer laundered by
        // `black_box`, which the compiler cannot prove unobserved.
        unsafe {
            let p = self.ptr.as_ptr().add(offset);
            // CAST: the low `width` bytes of the value are written.
            macro_rules! one {
                ($t:ty) => {{
                    let q = std::hint::black_box(p.cast::<$t>());
                    let aligned = q.is_aligned();
                    match write {
                        Some(v) if aligned => q.write_volatile(v as $t),
                        Some(v) => q.write_unaligned(v as $t),
                        None if aligned => drop(std::hint::black_box(q.read_volatile())),
                        None => drop(std::hint::black_box(q.read_unaligned())),
                    }
                }};
            }
            match width {
                1 => one!(u8),
                2 => one!(u16),
                4 => one!(u32),
                _ => one!(u64),
            }
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours (invariant) and nothing refers to it
        // once we are dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The offset and length of the function's vendor capability.
fn vendor_capability(config: &File) -> std::io::Result<(u64, u64)> {
    let byte = |off: u64| -> std::io::Result<u8> {
        let mut b = [0u8];
        config.read_exact_at(&mut b, off)?;
        Ok(b[0])
    };
    let mut at = u64::from(byte(CAP_POINTER)?);
    // The list is finite in a sane device; 48 capabilities fill 256 bytes.
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        if byte(at)? == CAP_ID_VENDOR {
            return Ok((at, u64::from(byte(at + 2)?)));
        }
        at = u64::from(byte(at + 1)?);
    }
    Err(std::io::Error::other("no vendor capability"))
}

#[derive(Default)]
struct Counts {
    bar0_writes: u64,
    bar0_reads: u64,
    config_writes: u64,
    config_refused: u64,
    config_reads: u64,
}

fn run(a: &Args) -> std::io::Result<Counts> {
    if a.pci.join("driver").exists() {
        return Err(std::io::Error::other(format!(
            "{} has a driver bound: unbind it first",
            a.pci.display()
        )));
    }
    let bar = Bar::map(
        &OpenOptions::new()
            .read(true)
            .write(true)
            .open(a.pci.join("resource0"))?,
    )?;
    let config = OpenOptions::new()
        .read(true)
        .write(true)
        .open(a.pci.join("config"))?;
    let (cap, cap_len) = vendor_capability(&config)?;
    // Past the ID, next pointer and length bytes: the device's registers.
    let (cap_regs, cap_regs_len) = (cap + 3, cap_len.saturating_sub(3).max(1));
    let mut rng = Rng::new(a.seed);
    let mut n = Counts::default();
    for _ in 0..a.accesses {
        let width = rng.pick(&[1usize, 2, 4, 8]);
        if rng.below(4) == 0 {
            let off = cap_regs + rng.below(cap_regs_len);
            if rng.below(2) == 0 {
                let bytes = rng.next().to_le_bytes();
                let len = width.min(usize::try_from(cap + cap_len - off).unwrap_or(1));
                match config.write_at(&bytes[..len.max(1)], off) {
                    Ok(_) => n.config_writes += 1,
                    Err(_) => n.config_refused += 1,
                }
            } else {
                let mut b = [0u8; 8];
                let _ = config.read_at(&mut b[..width], off);
                n.config_reads += 1;
            }
            continue;
        }
        let slots = u64::try_from(bar.len / width).unwrap_or(1);
        let mut off = usize::try_from(rng.below(slots)).unwrap_or(0) * width;
        if rng.below(4) == 0 {
            off = (off + 1 + usize::try_from(rng.below(width as u64)).unwrap_or(0))
                .min(bar.len - width);
        }
        if rng.below(4) == 0 {
            bar.access(off, width, None);
            n.bar0_reads += 1;
        } else {
            bar.access(off, width, Some(rng.next()));
            n.bar0_writes += 1;
        }
    }
    Ok(n)
}

fn main() -> ExitCode {
    let a = Args::parse();
    let start = Instant::now();
    match run(&a) {
        Ok(n) => {
            println!(
                "bar0_writes={} bar0_reads={} config_writes={} config_refused={} config_reads={} seconds={:.1}",
                n.bar0_writes,
                n.bar0_reads,
                n.config_writes,
                n.config_refused,
                n.config_reads,
                start.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ivshmem2-garbage: {}: {e}", a.pci.display());
            ExitCode::from(2)
        }
    }
}
