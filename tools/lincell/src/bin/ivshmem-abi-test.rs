// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-abi-test`: every error path of the `/dev/ivshmemN` ABI, as TAP.
//!
//! A tool of the test suite (`tests/guest/ivshmem-abi.sh`), kept out of the
//! `lincell` binary: it drives the device through the CLI's wrapper
//! ([`lincell::ivshmem::dev`]) plus raw calls with wrong arguments, and the
//! guests run it from the host's tree like `lincell` itself. Each check
//! names the call and the errno it must return; a mismatch prints what came
//! back instead.
//!
//! Expected behaviour (the contract of `drivers/ivshmem/chardev.rs` and
//! `include/uapi/lincell/ivshmem.h`): RING without vectors → `EOPNOTSUPP`;
//! bad peer or vector → `EINVAL`; unknown ioctl (number, size, direction or
//! type) → `ENOTTY`; bad user pointer → `EFAULT`; non-zero reserved field →
//! `EINVAL`; `read` with fewer than 8 bytes → `EINVAL`, non-blocking with
//! nothing pending → `EAGAIN`; `mmap` outside the region → `EINVAL`;
//! once the device is removed every call → `ENODEV`, `poll` →
//! `POLLHUP|POLLERR`, old mappings → `SIGBUS`.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;
use lincell::ivshmem::dev::{errno_name, errno_of, pci_address, Device, IntervalTimer};
use lincell::Error;
use lincell_shared::ivshmem::uapi::{self, ArrayArg, DeviceInfo, Ring};
use lincell_shared::shmem::SharedMemory as _;

/// Check the /dev/ivshmemN ABI with good and bad input (prints TAP).
#[derive(Parser, Debug)]
#[command(
    name = "ivshmem-abi-test",
    version,
    long_about = "\
Exercise the /dev/ivshmemN ABI of ivshmem.ko with good and bad input and
print TAP (the plan at the end): every ioctl with wrong numbers, sizes,
pointers and values, short and non-blocking reads, poll, mmap with bad
offsets, lengths, flags and section permissions. With --remove, also remove
the PCI device (sysfs `remove`) while a file and a mapping are open, check
what every call returns afterwards (ENODEV; the mapping must SIGBUS), and
rescan to bring the device back with its data.

Run by tests/guest/ivshmem-abi.sh and tests/guest/ivshmem-host-peer.sh as root in a guest, on a device nobody
else has open: the state checks need the last close.

Exit status: 0 every check passed; 1 a check failed (the TAP says which);
2 the test could not run to its end.",
    after_help = "\
Examples:
  ivshmem-abi-test /dev/ivshmem0
  ivshmem-abi-test /dev/ivshmem0 --remove"
)]
struct Cli {
    /// The device.
    dev: PathBuf,
    /// Also remove the PCI device and check the file afterwards.
    #[arg(long)]
    remove: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match selftest(&cli.dev, cli.remove, &mut io::stdout().lock()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ivshmem-abi-test: {e}");
            ExitCode::from(2)
        }
    }
}

/// The outcome of one check: `Err` says why it failed.
type Check<T = ()> = Result<T, Error>;

/// A failed check.
fn fail(why: String) -> Error {
    Error::Failed(why)
}

/// Page size assumed by the mmap checks (x86-64, arm64 4K kernels).
fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// The generic `_IOC` encoding, to build wrong ioctl numbers on purpose.
const fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}
const IOC_NONE: u32 = 0;
const IOC_W: u32 = 1;
const IOC_R: u32 = 2;
const IOC_RW: u32 = 3;

/// TAP output with numbering; the plan comes at the end.
struct Tap<'a> {
    out: &'a mut dyn Write,
    n: usize,
    failed: usize,
}

impl Tap<'_> {
    fn result(&mut self, name: &str, r: Check) -> io::Result<bool> {
        self.n += 1;
        match r {
            Ok(()) => writeln!(self.out, "ok {} - {name}", self.n)?,
            Err(why) => {
                self.failed += 1;
                for l in why.to_string().lines() {
                    writeln!(self.out, "# {l}")?;
                }
                writeln!(self.out, "not ok {} - {name}", self.n)?;
            }
        }
        self.out.flush()?;
        Ok(self.failed == 0)
    }

    fn skip(&mut self, name: &str, why: &str) -> io::Result<()> {
        self.n += 1;
        writeln!(self.out, "ok {} - {name} # SKIP {why}", self.n)
    }
}

/// `Ok` if `r` failed with `errno`, else a description of what happened.
fn expect_errno<T: std::fmt::Debug>(r: io::Result<T>, errno: i32) -> Check {
    match r {
        Err(e) if errno_of(&e) == Some(errno) => Ok(()),
        Err(e) => Err(fail(format!(
            "expected {}, got {} ({e})",
            errno_name(errno),
            errno_of(&e).map_or("no errno", errno_name)
        ))),
        Ok(v) => Err(fail(format!(
            "expected {}, but the call succeeded ({v:?})",
            errno_name(errno)
        ))),
    }
}

/// `Ok` if `cond`, else a failure that says `why`.
fn ok_if(cond: bool, why: impl FnOnce() -> String) -> Check {
    if cond {
        Ok(())
    } else {
        Err(fail(why()))
    }
}

/// Calls an ioctl with a raw argument.
fn ioctl(dev: &Device, cmd: u32, arg: usize) -> io::Result<i32> {
    // SAFETY: the driver only accesses `arg` through copy_{from,to}_user;
    // every caller passes either a live local of at least the size encoded
    // in `cmd` or an address that must fault (EFAULT), never Rust-visible
    // memory that the kernel could write unexpectedly.
    unsafe { dev.ioctl_raw(cmd, arg) }
}

fn mmap_check(dev: &Device, offset: u64, len: usize, flags: i32) -> io::Result<()> {
    dev.mmap_raw(offset, len, libc::PROT_READ | libc::PROT_WRITE, flags)
        .map(drop)
}

/// A recognisable pattern for the first page.
fn pattern(len: usize) -> Vec<u8> {
    // CAST: truncation intended.
    (0..len).map(|i| (i as u8).wrapping_mul(7) ^ 0x5a).collect()
}

/// Runs every check on `path` and prints TAP; true if all passed.
fn selftest(path: &Path, remove: bool, out: &mut dyn Write) -> io::Result<bool> {
    writeln!(out, "TAP version 13")?;
    let mut t = Tap {
        out,
        n: 0,
        failed: 0,
    };
    let page = page_size();

    // The state test needs the device closed by everyone first.
    state_checks(&mut t, path)?;

    let dev = match Device::open(path) {
        Ok(d) => d,
        Err(e) => {
            t.result("open the device", Err(e.into()))?;
            writeln!(t.out, "1..{}", t.n)?;
            return Ok(false);
        }
    };
    let info = *dev.info();
    t.result(
        &format!(
            "INFO: revision {}, {} vectors, {} bytes",
            info.revision, info.vectors, info.shmem_size
        ),
        info_sane(&info),
    )?;

    mmap_checks(&mut t, &dev, path, &info, page)?;
    ioctl_checks(&mut t, &dev, &info)?;
    readonly_checks(&mut t, path)?;
    read_checks(&mut t, &dev, &info)?;

    if remove {
        remove_checks(&mut t, dev, path, page)?;
    }
    writeln!(t.out, "1..{}", t.n)?;
    Ok(t.failed == 0)
}

fn info_sane(i: &DeviceInfo) -> Check {
    let mut why = Vec::new();
    if !(1..=2).contains(&i.revision) {
        why.push(format!("revision {} is neither 1 nor 2", i.revision));
    }
    if i.shmem_size == 0 || !i.shmem_size.is_power_of_two() {
        why.push(format!("shmem_size {} is not a power of two", i.shmem_size));
    }
    if (i.vectors > 0) != (i.flags & uapi::INFO_DOORBELL != 0) {
        why.push(format!(
            "vectors {} disagrees with the DOORBELL flag ({:#x})",
            i.vectors, i.flags
        ));
    }
    if i.vectors > uapi::MAX_VECTORS {
        why.push(format!("vectors {} > {}", i.vectors, uapi::MAX_VECTORS));
    }
    let sections = i.flags & uapi::INFO_SECTIONS != 0;
    if i.revision == 1 && !sections && i.max_peers != 1 << 16 {
        why.push(format!(
            "max_peers {} on v1 without sections, expected 65536",
            i.max_peers
        ));
    }
    if i.revision == 1 && sections && !(2..=1024).contains(&i.max_peers) {
        why.push(format!(
            "max_peers {} from the v1 layout, expected 2..=1024",
            i.max_peers
        ));
    }
    if sections
        && (i.rw_offset % 4096 != 0 || i.rw_size == 0 || i.rw_offset + i.rw_size > i.shmem_size)
    {
        why.push(format!(
            "R/W section at {:#x}, {} bytes, does not fit",
            i.rw_offset, i.rw_size
        ));
    }
    if i.own_id >= i.max_peers {
        why.push(format!("own_id {} >= max_peers {}", i.own_id, i.max_peers));
    }
    if i.flags & uapi::INFO_SECTIONS == 0 && (i.rw_offset != 0 || i.rw_size != i.shmem_size) {
        why.push(format!(
            "without sections the R/W section must be the whole region, got offset {} size {}",
            i.rw_offset, i.rw_size
        ));
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(fail(why.join("\n")))
    }
}

fn state_checks(t: &mut Tap<'_>, path: &Path) -> io::Result<()> {
    let r = (|| -> Check {
        let a = Device::open(path)?;
        let b = Device::open(path)?;
        a.set_state(0x1234)?;
        let got = b.get_state()?;
        ok_if(got == 0x1234, || {
            format!("set 0x1234 through one file, another file reads {got:#x}")
        })?;
        if a.info().flags & uapi::INFO_SECTIONS != 0 {
            let states = b.peer_states()?;
            let own = a.info().own_id as usize;
            ok_if(states.len() == a.info().max_peers as usize, || {
                format!(
                    "PEER_STATES returned {} entries, expected max_peers {}",
                    states.len(),
                    a.info().max_peers
                )
            })?;
            ok_if(states.get(own) == Some(&0x1234), || {
                format!(
                    "PEER_STATES[{own}] is {:?}, expected the state just set (0x1234)",
                    states.get(own)
                )
            })?;
        }
        drop((a, b));
        let c = Device::open(path)?;
        let got = c.get_state()?;
        ok_if(got == 0, || {
            format!("after the last close the state is {got:#x}, expected 0")
        })
    })();
    t.result(
        "SET_STATE/GET_STATE: shared by all files, in PEER_STATES (with sections), back to 0 after the last close",
        r,
    )?;
    Ok(())
}

fn mmap_checks(
    t: &mut Tap<'_>,
    dev: &Device,
    path: &Path,
    info: &DeviceInfo,
    page: usize,
) -> io::Result<()> {
    let shared = libc::MAP_SHARED;
    let size = usize::try_from(info.shmem_size).unwrap_or(0);
    let rw_off = info.rw_offset;
    let rw_len = usize::try_from(info.rw_size).unwrap_or(0);
    let sections = info.flags & uapi::INFO_SECTIONS != 0;
    // Data through two mappings of two files.
    let r = (|| -> Check {
        let m1 = dev.map(rw_off, rw_len)?;
        let other = Device::open(path)?;
        let m2 = other.map(rw_off, rw_len)?;
        let pat = pattern(page);
        m1.write_bytes(0, &pat)?;
        m1.write_bytes(rw_len - 8, b"lastpage")?;
        let mut got = vec![0u8; page];
        m2.read_bytes(0, &mut got)?;
        ok_if(got == pat, || {
            "a second mapping (second file) does not see the bytes written".into()
        })
    })();
    t.result(
        &format!("mmap of the R/W section ({rw_len} bytes at {rw_off:#x}): two files' mappings share the data"),
        r,
    )?;

    let r = (|| -> Check {
        let m = dev.map(rw_off + (rw_len - page) as u64, page)?;
        let mut got = [0u8; 8];
        m.read_bytes(page - 8, &mut got)?;
        ok_if(&got == b"lastpage", || {
            format!("last page mapped at its offset reads {got:?}")
        })
    })();
    t.result(
        "mmap offset is a byte offset into the shared memory (last page of the R/W section)",
        r,
    )?;

    let sz = size as u64;
    let pg = page as u64;
    let cases: [(&str, u64, usize, i32); 6] = [
        ("mmap at offset = size -> EINVAL", sz, page, libc::EINVAL),
        (
            "mmap longer than the region -> EINVAL",
            0,
            size + page,
            libc::EINVAL,
        ),
        (
            "mmap crossing the end -> EINVAL",
            sz - pg,
            2 * page,
            libc::EINVAL,
        ),
        (
            "mmap at a huge offset (1 TiB) -> EINVAL",
            1 << 40,
            page,
            libc::EINVAL,
        ),
        (
            "mmap at an unaligned offset -> EINVAL",
            rw_off + 1,
            page,
            libc::EINVAL,
        ),
        ("mmap of length 0 -> EINVAL", rw_off, 0, libc::EINVAL),
    ];
    for (name, off, len, errno) in cases {
        t.result(name, expect_errno(mmap_check(dev, off, len, shared), errno))?;
    }

    if sections {
        section_checks(t, dev, info, page)?;
    }

    // MAP_PRIVATE: the driver does not document it. Whatever it does, a
    // private mapping must never write through to the shared memory.
    let r = (|| -> Check<String> {
        let shared_map = dev.map(rw_off, page)?;
        shared_map
            .region()
            .store(64, 0x1111_1111_u32, Relaxed)
            .map_err(io::Error::from)?;
        match dev.mmap_raw(
            rw_off,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE,
        ) {
            Err(e) if errno_of(&e) == Some(libc::EINVAL) => Ok("refused with EINVAL".into()),
            Err(e) => Err(fail(format!(
                "refused with {} (expected EINVAL or a private mapping)",
                e
            ))),
            Ok(p) => {
                let before = p
                    .region()
                    .load::<u32>(64, Relaxed)
                    .map_err(io::Error::from)?;
                p.region()
                    .store(64, 0x2222_2222_u32, Relaxed)
                    .map_err(io::Error::from)?;
                let through = shared_map
                    .region()
                    .load::<u32>(64, Relaxed)
                    .map_err(io::Error::from)?;
                let mine = p
                    .region()
                    .load::<u32>(64, Relaxed)
                    .map_err(io::Error::from)?;
                if before != 0x1111_1111 {
                    Err(fail(format!(
                        "private mapping read {before:#x}, the shared memory holds 0x11111111"
                    )))
                } else if through != 0x1111_1111 {
                    Err(fail(format!("a write to the MAP_PRIVATE mapping reached the shared memory ({through:#x})")))
                } else if mine != 0x2222_2222 {
                    Err(fail(format!(
                        "the private copy reads {mine:#x} after writing 0x22222222"
                    )))
                } else {
                    Ok("allowed, copy-on-write: reads the shared data, writes stay private".into())
                }
            }
        }
    })();
    match r {
        Ok(how) => t.result(&format!("MAP_PRIVATE never writes through ({how})"), Ok(()))?,
        Err(why) => t.result("MAP_PRIVATE never writes through", Err(why))?,
    };

    // VM_DONTEXPAND: a mapping cannot be grown with mremap.
    let r = (|| -> Check {
        let m = dev.map(rw_off, page)?;
        // SAFETY: mremap of our own live mapping; on success (a failure of
        // the check) the new mapping is unmapped right away and `m` is
        // forgotten, since its range was moved.
        let p = unsafe { libc::mremap(m.as_ptr().cast(), page, 2 * page, libc::MREMAP_MAYMOVE) };
        if p == libc::MAP_FAILED {
            let e = io::Error::last_os_error();
            return expect_errno::<()>(Err(e), libc::EFAULT);
        }
        // SAFETY: the mapping mremap just returned.
        unsafe { libc::munmap(p, 2 * page) };
        std::mem::forget(m);
        Err(fail("mremap grew the mapping".into()))
    })();
    t.result("mremap cannot grow a mapping (VM_DONTEXPAND) -> EFAULT", r)?;
    Ok(())
}

/// Access rules of a memory with sections: read-only parts refuse write
/// mappings (`EACCES`), a mapping must stay within one section (`EINVAL`).
fn section_checks(t: &mut Tap<'_>, dev: &Device, info: &DeviceInfo, page: usize) -> io::Result<()> {
    let ro = libc::PROT_READ;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let sh = libc::MAP_SHARED;
    let map = |off: u64, len: usize, prot: i32| dev.mmap_raw(off, len, prot, sh).map(drop);
    let st = info.state_table_offset;
    if st > 0 {
        t.result(
            "mmap of the layout header writable -> EACCES",
            expect_errno(map(0, page, rw), libc::EACCES),
        )?;
        let r = dev
            .mmap_raw(0, page, ro, sh)
            .map_err(Error::from)
            .and_then(|m| {
                let mut magic = [0u8; 4];
                m.read_bytes(0, &mut magic)?;
                ok_if(info.revision != 1 || &magic == b"LCv1", || {
                    format!("header starts with {magic:?}, expected LCv1")
                })
            });
        t.result(
            "mmap of the layout header read-only works (v1: starts with LCv1)",
            r,
        )?;
        t.result(
            "mmap from the header into the state table -> EINVAL",
            expect_errno(
                map(
                    0,
                    page + usize::try_from(info.state_table_size).unwrap_or(0),
                    ro,
                ),
                libc::EINVAL,
            ),
        )?;
    }
    let st_len = usize::try_from(info.state_table_size).unwrap_or(page);
    t.result(
        "mmap of the state table writable -> EACCES",
        expect_errno(map(st, st_len, rw), libc::EACCES),
    )?;
    let r = (|| -> Check {
        let m = dev.mmap_raw(st, st_len, ro, sh)?;
        // SAFETY: mprotect on our own live mapping.
        let rc = unsafe { libc::mprotect(m.as_ptr().cast(), st_len, rw) };
        let r = if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        };
        expect_errno(r, libc::EACCES)
    })();
    t.result(
        "mprotect(PROT_WRITE) of a read-only state table mapping -> EACCES",
        r,
    )?;
    t.result(
        "mmap across the state table and the R/W section -> EINVAL",
        expect_errno(
            map(info.rw_offset - page as u64, 2 * page, ro),
            libc::EINVAL,
        ),
    )?;
    if info.output_size > 0 {
        let own = info.output_offset + u64::from(info.own_id) * info.output_size;
        let out_len = usize::try_from(info.output_size).unwrap_or(page);
        t.result(
            "mmap of the own output section writable works",
            map(own, out_len, rw).map_err(Error::from),
        )?;
        let other = (info.own_id + 1) % info.max_peers.max(1);
        let other_off = info.output_offset + u64::from(other) * info.output_size;
        t.result(
            &format!("mmap of peer {other}'s output section writable -> EACCES"),
            expect_errno(map(other_off, out_len, rw), libc::EACCES),
        )?;
        t.result(
            &format!("mmap of peer {other}'s output section read-only works"),
            map(other_off, out_len, ro).map_err(Error::from),
        )?;
        t.result(
            "mmap across the R/W section and the first output section -> EINVAL",
            expect_errno(
                map(info.output_offset - page as u64, 2 * page, ro),
                libc::EINVAL,
            ),
        )?;
    }
    Ok(())
}

/// A file opened read-only may look but not act on the peers: RING and
/// SET_STATE are `EBADF`, INFO and GET_STATE work.
fn readonly_checks(t: &mut Tap<'_>, path: &Path) -> io::Result<()> {
    // Opening reads INFO, so this also checks that INFO works read-only.
    let dev = match Device::open_read_only(path) {
        Ok(d) => d,
        Err(e) => {
            return t
                .result("open the device read-only (INFO works)", Err(e.into()))
                .map(|_| ())
        }
    };
    t.result("open the device read-only (INFO works)", Ok(()))?;
    let ring = Ring { peer: 0, vector: 0 };
    t.result(
        "RING on a read-only file -> EBADF",
        expect_errno(
            ioctl(&dev, uapi::IOCTL_RING, ptr::from_ref(&ring) as usize),
            libc::EBADF,
        ),
    )?;
    t.result(
        "SET_STATE on a read-only file -> EBADF",
        expect_errno(dev.set_state(0), libc::EBADF),
    )?;
    Ok(())
}

fn ioctl_checks(t: &mut Tap<'_>, dev: &Device, info: &DeviceInfo) -> io::Result<()> {
    let magic = uapi::IOC_MAGIC;
    let info_size = std::mem::size_of::<DeviceInfo>() as u32;
    let mut scratch = [0u8; 256];
    let buf = scratch.as_mut_ptr() as usize;

    t.result(
        "INFO with a NULL pointer -> EFAULT",
        expect_errno(ioctl(dev, uapi::IOCTL_INFO, 0), libc::EFAULT),
    )?;
    let wrong: [(&str, u32); 9] = [
        (
            "INFO with a wrong size (40) -> ENOTTY",
            ioc(IOC_R, magic, 0, 40),
        ),
        (
            "INFO with direction _IOW -> ENOTTY",
            ioc(IOC_W, magic, 0, info_size),
        ),
        (
            "INFO as _IO (no size) -> ENOTTY",
            ioc(IOC_NONE, magic, 0, 0),
        ),
        (
            "INFO with another type byte (0xbf) -> ENOTTY",
            ioc(IOC_R, magic + 1, 0, info_size),
        ),
        (
            "RING with a wrong size (4) -> ENOTTY",
            ioc(IOC_W, magic, 1, 4),
        ),
        (
            "COUNTERS with a wrong size (8) -> ENOTTY",
            ioc(IOC_RW, magic, 5, 8),
        ),
        (
            "unknown ioctl number 0x06 -> ENOTTY",
            ioc(IOC_RW, magic, 6, 16),
        ),
        (
            "unknown ioctl number 0xff -> ENOTTY",
            ioc(IOC_RW, magic, 0xff, 16),
        ),
        ("TCGETS (a terminal ioctl) -> ENOTTY", libc::TCGETS as u32),
    ];
    for (name, cmd) in wrong {
        t.result(name, expect_errno(ioctl(dev, cmd, buf), libc::ENOTTY))?;
    }

    // RING.
    let ring = |peer: u32, vector: u32| {
        let r = Ring { peer, vector };
        ioctl(dev, uapi::IOCTL_RING, ptr::from_ref(&r) as usize)
    };
    if info.vectors == 0 {
        t.result(
            "RING on a device without vectors -> EOPNOTSUPP",
            expect_errno(ring(info.own_id, 0), libc::EOPNOTSUPP),
        )?;
    } else {
        t.result(
            &format!("RING vector {} (= vectors) -> EINVAL", info.vectors),
            expect_errno(ring(info.own_id, info.vectors), libc::EINVAL),
        )?;
        t.result(
            "RING vector 64 -> EINVAL",
            expect_errno(ring(info.own_id, 64), libc::EINVAL),
        )?;
        t.result(
            &format!("RING peer {} (= max_peers) -> EINVAL", info.max_peers),
            expect_errno(ring(info.max_peers, 0), libc::EINVAL),
        )?;
        t.result(
            "RING peer 0xffffffff -> EINVAL",
            expect_errno(ring(u32::MAX, 0), libc::EINVAL),
        )?;
    }
    t.result(
        "RING with a NULL pointer -> EFAULT",
        expect_errno(ioctl(dev, uapi::IOCTL_RING, 0), libc::EFAULT),
    )?;

    // State.
    t.result(
        "SET_STATE with a NULL pointer -> EFAULT",
        expect_errno(ioctl(dev, uapi::IOCTL_SET_STATE, 0), libc::EFAULT),
    )?;
    t.result(
        "GET_STATE with a NULL pointer -> EFAULT",
        expect_errno(ioctl(dev, uapi::IOCTL_GET_STATE, 0), libc::EFAULT),
    )?;

    // PEER_STATES.
    if info.flags & uapi::INFO_SECTIONS == 0 {
        t.result(
            "PEER_STATES without a section layout -> EOPNOTSUPP",
            expect_errno(dev.peer_states(), libc::EOPNOTSUPP),
        )?;
    } else {
        let r = dev
            .peer_states()
            .map_err(Error::from)
            .and_then(|s| ok_if(!s.is_empty(), || "PEER_STATES returned no peers".into()));
        t.result(
            "PEER_STATES with a section layout returns the state table",
            r,
        )?;
        let mut arg = ArrayArg {
            ptr: buf as u64,
            count: 4,
            reserved: 1,
        };
        t.result(
            "PEER_STATES with reserved != 0 -> EINVAL",
            expect_errno(
                ioctl(
                    dev,
                    uapi::IOCTL_PEER_STATES,
                    ptr::from_mut(&mut arg) as usize,
                ),
                libc::EINVAL,
            ),
        )?;
        t.result(
            "PEER_STATES with a NULL argument -> EFAULT",
            expect_errno(ioctl(dev, uapi::IOCTL_PEER_STATES, 0), libc::EFAULT),
        )?;
    }

    // COUNTERS.
    let mut arg = ArrayArg {
        ptr: 0,
        count: 0,
        reserved: 0,
    };
    let r = ioctl(dev, uapi::IOCTL_COUNTERS, ptr::from_mut(&mut arg) as usize)
        .map_err(Error::from)
        .and_then(|_| {
            ok_if(arg.count == info.vectors, || {
                format!(
                    "count came back {}, expected {} (vectors)",
                    arg.count, info.vectors
                )
            })
        });
    t.result("COUNTERS with count 0 reports the number of vectors", r)?;
    let mut arg = ArrayArg {
        ptr: buf as u64,
        count: 4,
        reserved: 1,
    };
    t.result(
        "COUNTERS with reserved != 0 -> EINVAL",
        expect_errno(
            ioctl(dev, uapi::IOCTL_COUNTERS, ptr::from_mut(&mut arg) as usize),
            libc::EINVAL,
        ),
    )?;
    t.result(
        "COUNTERS with a NULL argument -> EFAULT",
        expect_errno(ioctl(dev, uapi::IOCTL_COUNTERS, 0), libc::EFAULT),
    )?;
    if info.vectors > 0 {
        let mut arg = ArrayArg {
            ptr: 8,
            count: info.vectors,
            reserved: 0,
        };
        t.result(
            "COUNTERS with a bad buffer pointer -> EFAULT",
            expect_errno(
                ioctl(dev, uapi::IOCTL_COUNTERS, ptr::from_mut(&mut arg) as usize),
                libc::EFAULT,
            ),
        )?;
    }
    Ok(())
}

fn read_checks(t: &mut Tap<'_>, dev: &Device, info: &DeviceInfo) -> io::Result<()> {
    for len in [0usize, 1, 7] {
        let mut b = [0u8; 8];
        t.result(
            &format!("read of {len} bytes -> EINVAL"),
            expect_errno(dev.read_raw(&mut b[..len]), libc::EINVAL),
        )?;
    }
    dev.set_nonblocking(true)?;
    let mut b = [0u8; 8];
    t.result(
        "non-blocking read with nothing pending -> EAGAIN",
        expect_errno(dev.read_raw(&mut b), libc::EAGAIN),
    )?;
    dev.set_nonblocking(false)?;
    let r = dev
        .poll(Duration::ZERO)
        .map_err(Error::from)
        .and_then(|rev| {
            ok_if(rev == 0, || {
                format!("poll reports {rev:#x} with nothing pending")
            })
        });
    t.result("poll with nothing pending reports nothing", r)?;
    // SAFETY: write(2) from a live 8-byte buffer.
    let w = unsafe { libc::write(dev.as_fd().as_raw_fd(), b.as_ptr().cast(), 8) };
    let r = if w < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(w)
    };
    t.result(
        "write(2) is not supported -> EINVAL",
        expect_errno(r, libc::EINVAL),
    )?;

    if info.vectors == 0 {
        // Nothing can ever arrive: a blocking read blocks until a signal.
        let r = (|| -> Check {
            let _timer = IntervalTimer::start(Duration::from_millis(200))?;
            let start = Instant::now();
            let mut b = [0u8; 8];
            let r = dev.read_raw(&mut b);
            let waited = start.elapsed();
            expect_errno(r, libc::EINTR)?;
            ok_if(waited >= Duration::from_millis(150), || {
                format!("read returned after only {waited:?}")
            })
        })();
        t.result(
            "blocking read without vectors blocks until a signal (EINTR)",
            r,
        )?;
    } else {
        // Ring ourselves: poll and read must see exactly that vector.
        let v = info.vectors - 1;
        let r = (|| -> Check {
            dev.ring(info.own_id, v)?;
            let rev = dev.poll(Duration::from_secs(5))?;
            ok_if(rev & libc::POLLIN != 0, || {
                format!("poll revents {rev:#x} within 5 s, expected POLLIN")
            })?;
            let mut b = [0u8; 16];
            let n = dev.read_raw(&mut b)?;
            ok_if(n == 8, || {
                format!("read of 16 bytes returned {n}, expected 8")
            })?;
            let mask = u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
            ok_if(mask == 1 << v, || {
                format!("mask {mask:#x}, expected {:#x}", 1u64 << v)
            })?;
            dev.set_nonblocking(true)?;
            let again = dev.read_raw(&mut b);
            dev.set_nonblocking(false)?;
            expect_errno(again, libc::EAGAIN)
        })();
        t.result(
            &format!(
                "RING own id vector {v}: POLLIN, read returns 8 bytes with bit {v}, then EAGAIN"
            ),
            r,
        )?;
    }
    Ok(())
}

/// Waits until `cond` holds, up to `limit`.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Forks a child that maps `page` bytes at `offset` of `dev` in a loop until
/// mmap fails with `ENODEV` (the device is gone), then touches the last
/// mapping it got:
/// it must die of SIGBUS ([`reap_mapper`]). Mappings made right up to the
/// removal race it; none may keep the memory.
fn spawn_mapper(dev: &Device, offset: u64, page: usize) -> io::Result<libc::pid_t> {
    let fd = dev.as_fd().as_raw_fd();
    // The child says when its first mapping exists, so that the removal
    // races the loop, not the child's start-up.
    let mut started = [0; 2];
    // SAFETY: a pipe of our own.
    if unsafe { libc::pipe(started.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the process is single-threaded here; the child runs only
    // syscalls and plain reads until `_exit`.
    let pid = unsafe { libc::fork() };
    if pid != 0 {
        let mut b = 0u8;
        // SAFETY: our pipe; the read returns 1 once the child mapped, or 0
        // when it exited before (the reaping reports why).
        unsafe {
            libc::close(started[1]);
            if pid > 0 {
                libc::read(started[0], ptr::from_mut(&mut b).cast(), 1);
            }
            libc::close(started[0]);
        }
        return if pid < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(pid)
        };
    }
    // SAFETY: in the child: mmap with our own arguments; the read of the
    // last mapping is of a live VMA (never unmapped), expected to SIGBUS.
    unsafe {
        let mut last: *mut u8 = ptr::null_mut();
        let deadline = libc::time(ptr::null_mut()) + 30;
        loop {
            let p = libc::mmap(
                ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                offset as libc::off_t,
            );
            if p == libc::MAP_FAILED {
                if *libc::__errno_location() == libc::ENODEV {
                    break;
                }
                libc::_exit(4);
            }
            // Only the newest mapping is kept (the map count is limited).
            if last.is_null() {
                libc::write(started[1], ptr::from_ref(&1u8).cast(), 1);
                libc::close(started[1]);
            } else {
                libc::munmap(last.cast(), page);
            }
            last = p.cast();
            if libc::time(ptr::null_mut()) > deadline {
                libc::_exit(3);
            }
        }
        if last.is_null() {
            libc::_exit(2);
        }
        let v = ptr::read_volatile(last);
        libc::_exit(i32::from(v == 0));
    }
}

/// Waits for the [`spawn_mapper`] child: SIGBUS is the pass.
fn reap_mapper(pid: libc::pid_t) -> Check {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
        return Ok(());
    }
    Err(fail(
        match (libc::WIFSIGNALED(status), libc::WEXITSTATUS(status)) {
            (true, _) => format!("died of signal {}", libc::WTERMSIG(status)),
            (false, 2) => "no mmap succeeded".into(),
            (false, 3) => "mmap still worked 30 s later".into(),
            (false, 4) => "mmap failed with another error than ENODEV".into(),
            (false, c) => format!("read a mapping made before the removal (exit {c})"),
        },
    ))
}

fn remove_checks(t: &mut Tap<'_>, dev: Device, path: &Path, page: usize) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Ok(pci) = std::fs::canonicalize(format!("/sys/class/misc/{name}/device")) else {
        t.result(
            "find the PCI device of the character device",
            Err(fail(format!("/sys/class/misc/{name}/device missing"))),
        )?;
        return Ok(());
    };
    let pci_name = pci
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let map = dev.map(dev.info().rw_offset, page)?;
    let rw_off = dev.info().rw_offset;
    let mut before = vec![0u8; 64];
    map.read_bytes(0, &mut before)?;

    // A second node for the same device number, to try opening it later.
    let node = PathBuf::from(format!("/tmp/lincell-abi-{name}"));
    let _ = std::fs::remove_file(&node);
    let node_ok = {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(path)?.rdev();
        let c = std::ffi::CString::new(node.as_os_str().as_encoded_bytes())
            .map_err(io::Error::other)?;
        // SAFETY: a valid C string; mknod has no memory effects.
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, rdev) == 0 }
    };

    // A process that maps the device in a loop while it is removed: the
    // last mapping it got must not outlive the device either.
    let mapper = spawn_mapper(&dev, rw_off, page)?;

    let r = std::fs::write(pci.join("remove"), "1")
        .map_err(|e| Error::io(pci.join("remove").display(), e));
    let removed = r.is_ok();
    t.result(
        &format!("remove PCI device {pci_name} while a file and a mapping are open"),
        r,
    )?;
    if !removed {
        return Ok(());
    }
    t.result(
        &format!("{} disappears", path.display()),
        ok_if(
            wait_until(Duration::from_secs(5), || !path.exists()),
            || "still there after 5 s".into(),
        ),
    )?;
    if node_ok {
        let r = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node);
        t.result(
            "open of the removed device's number -> ENODEV",
            expect_errno(r.map(drop), libc::ENODEV),
        )?;
        let _ = std::fs::remove_file(&node);
    } else {
        t.skip(
            "open of the removed device's number -> ENODEV",
            "cannot mknod in /tmp",
        )?;
    }

    let mut b = [0u8; 8];
    t.result(
        "read after removal -> ENODEV",
        expect_errno(dev.read_raw(&mut b), libc::ENODEV),
    )?;
    let r = dev
        .poll(Duration::from_secs(1))
        .map_err(Error::from)
        .and_then(|rev| {
            let want = libc::POLLHUP | libc::POLLERR;
            ok_if(rev & want == want, || {
                format!("revents {rev:#x}, expected POLLHUP|POLLERR")
            })
        });
    t.result("poll after removal -> POLLHUP|POLLERR", r)?;
    let mut info = DeviceInfo::default();
    t.result(
        "INFO after removal -> ENODEV",
        expect_errno(
            ioctl(&dev, uapi::IOCTL_INFO, ptr::from_mut(&mut info) as usize),
            libc::ENODEV,
        ),
    )?;
    let ring = Ring { peer: 0, vector: 0 };
    t.result(
        "RING after removal -> ENODEV",
        expect_errno(
            ioctl(&dev, uapi::IOCTL_RING, ptr::from_ref(&ring) as usize),
            libc::ENODEV,
        ),
    )?;
    t.result(
        "SET_STATE after removal -> ENODEV",
        expect_errno(dev.set_state(1), libc::ENODEV),
    )?;
    t.result(
        "GET_STATE after removal -> ENODEV",
        expect_errno(dev.get_state(), libc::ENODEV),
    )?;
    t.result(
        "COUNTERS after removal -> ENODEV",
        expect_errno(dev.counters(), libc::ENODEV),
    )?;
    t.result(
        "PEER_STATES after removal -> ENODEV",
        expect_errno(dev.peer_states(), libc::ENODEV),
    )?;
    t.result(
        "mmap after removal -> ENODEV",
        expect_errno(
            mmap_check(&dev, rw_off, page, libc::MAP_SHARED),
            libc::ENODEV,
        ),
    )?;

    // The old mapping was zapped: touching it must kill with SIGBUS.
    let addr = map.as_ptr();
    // SAFETY: this process is single-threaded here (the CLI runs no
    // threads), so the child may run any code until `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: the child reads the (zapped) mapping, which is still a
        // valid VMA; the expected outcome is SIGBUS. `_exit` skips Rust
        // destructors that belong to the parent.
        unsafe {
            let v = ptr::read_volatile(addr);
            libc::_exit(i32::from(v == 0));
        }
    }
    let r = if pid < 0 {
        Err(Error::io("fork", io::Error::last_os_error()))
    } else {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
            Ok(())
        } else if libc::WIFSIGNALED(status) {
            Err(fail(format!(
                "the child died of signal {}, expected SIGBUS",
                libc::WTERMSIG(status)
            )))
        } else {
            Err(fail(format!(
                "the child read the old mapping without a fault (exit {})",
                libc::WEXITSTATUS(status)
            )))
        }
    };
    t.result("touching a mapping made before removal -> SIGBUS", r)?;
    t.result(
        "the last of the mappings made while the device was removed -> SIGBUS",
        reap_mapper(mapper),
    )?;
    drop(map);
    drop(dev);

    // Rescan: the device comes back as a new /dev/ivshmemN with its data.
    let r = (|| -> Check {
        std::fs::write("/sys/bus/pci/rescan", "1")
            .map_err(|e| Error::io("/sys/bus/pci/rescan", e))?;
        let mut found = None;
        let back = wait_until(Duration::from_secs(10), || {
            found = std::fs::read_dir("/sys/class/misc").ok().and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("ivshmem"))
                    .find(|n| pci_address(n).as_deref() == Some(pci_name.as_str()))
            });
            found
                .as_ref()
                .is_some_and(|n| Path::new("/dev").join(n).exists())
        });
        let n = found
            .filter(|_| back)
            .ok_or_else(|| fail("no ivshmem device for the PCI address within 10 s".into()))?;
        let d = Device::open(Path::new("/dev").join(&n))?;
        let m = d.map(rw_off, page)?;
        let mut after = vec![0u8; 64];
        m.read_bytes(0, &mut after)?;
        ok_if(after == before, || {
            format!("/dev/{n}: the shared memory lost its contents")
        })
    })();
    t.result(
        "PCI rescan: the device is back with a new node and the same data",
        r,
    )?;
    Ok(())
}
