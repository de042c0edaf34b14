// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-fuzz`: an unprivileged user attacking `/dev/ivshmemN`.
//!
//! A tool of the test suite (`tests/guest/ivshmem-fuzz.sh`), kept out of the
//! `lincell` binary. Started as root, it drops to `--uid`/`--gid` first (the
//! member of group `lincell` the udev rule lets in), then several threads
//! call, as fast as they can, with random arguments: ioctls (random numbers
//! of the driver's type and of any type, random sizes and directions,
//! argument pointers that are valid, NULL, kernel addresses, unmapped or
//! straddling a page end), `mmap` with random offsets, lengths, protections
//! and flags, `mprotect`/`mremap`/`munmap` on the mappings, accesses to the
//! mappings, `read` of random sizes into good and bad buffers, `write`,
//! `poll`, and close/reopen — while the test unbinds and rebinds the device
//! underneath. Accesses to mappings go through a pipe (`write(2)` from the
//! mapping, `read(2)` into it), so a mapping of a removed device gives
//! `EFAULT` instead of killing the fuzzer with SIGBUS.
//!
//! `--survivors N`: instead, map the device N times, say so on stdout, wait
//! until the device node is gone, and check that not one byte of any
//! mapping can be read or written any more.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use lincell::rng::Rng;
use lincell_shared::ivshmem::uapi::{self, ArrayArg};

/// Unprivileged random calls on /dev/ivshmemN while it comes and goes.
#[derive(Parser, Debug)]
#[command(
    name = "ivshmem-fuzz",
    about = "Unprivileged random ioctl/mmap/read/poll calls on /dev/ivshmemN",
    long_about = "\
Drops to --uid/--gid (with --gid as the only supplementary group), then runs
--threads threads that make --calls random calls in total on the
/dev/ivshmem* nodes that exist at the time (re-scanned as devices come and
go): ioctls with random numbers, sizes and argument pointers, mmap with
random offsets, lengths, protections and flags, mprotect, mremap, munmap,
accesses to the mappings (through a pipe: EFAULT, never SIGBUS), reads of
random sizes, write, poll, close and reopen. Prints calls=N errors=N
mappings=N seconds=S. Exit status 0 unless it could not drop privileges.

With --survivors N: map the first device N times (R/W section, read-only
parts), print `mapped`, wait up to 120 s for the node to disappear, then try
every mapping: exit status 0 if none can be read or written any more."
)]
struct Args {
    /// Calls in total.
    #[arg(long, default_value_t = 100_000)]
    calls: u64,
    /// Threads.
    #[arg(long, default_value_t = 4)]
    threads: u32,
    /// Seed of the random sequence (each thread derives its own).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// User to become (when started as root).
    #[arg(long)]
    uid: Option<u32>,
    /// Group to become (also the only supplementary group).
    #[arg(long)]
    gid: Option<u32>,
    /// Map the device N times and check that removal revokes every mapping.
    #[arg(long, value_name = "N")]
    survivors: Option<u32>,
}

fn page() -> usize {
    // SAFETY: sysconf has no memory effects.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// The `/dev/ivshmem*` nodes now.
fn nodes() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ivshmem"))
        })
        .collect();
    v.sort();
    v
}

/// Memory the fuzzer owns for ioctl and read arguments, plus an unmapped
/// page right after it (so "end of buffer" pointers straddle into a hole).
struct Scratch {
    base: *mut u8,
    len: usize,
    hole: usize,
}

impl Scratch {
    fn new() -> io::Result<Self> {
        let page = page();
        let len = 4 * page;
        // SAFETY: a fresh anonymous mapping of `len + page` bytes.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len + page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p.cast::<u8>();
        // SAFETY: unmapping the last page of our own mapping: a hole.
        unsafe { libc::munmap(base.add(len).cast(), page) };
        Ok(Scratch {
            base,
            len,
            hole: base as usize + len,
        })
    }

    /// An argument pointer: into the buffer (its bytes randomized), at its
    /// very end (straddling the hole), into the hole, NULL, small, or a
    /// kernel address.
    fn arg(&self, rng: &mut Rng) -> usize {
        match rng.below(8) {
            0 => 0,
            1 => 1 + rng.below(4095) as usize,
            2 => 0xffff_8000_0000_0000_u64 as usize + rng.below(1 << 30) as usize,
            3 => self.hole + rng.below(4096) as usize,
            4 => self.hole - 1 - rng.below(16) as usize,
            _ => {
                let off = rng.below(self.len as u64 - 64) as usize;
                for i in 0..64 {
                    // CAST: a random byte.
                    // SAFETY: `off + 64 <= len`, inside our buffer.
                    unsafe { *self.base.add(off + i) = rng.next() as u8 };
                }
                self.base as usize + off
            }
        }
    }

    /// A safe place for what the kernel writes through an `ArrayArg`.
    fn array_target(&self, rng: &mut Rng) -> u64 {
        match rng.below(4) {
            0 => 0,
            1 => self.hole as u64,
            2 => 0xffff_8000_0000_0000,
            _ => self.base as u64 + (self.len / 2) as u64,
        }
    }
}

// SAFETY: the scratch memory is only a target for syscalls; its bytes are
// garbage by design, races on them harm nothing.
unsafe impl Send for Scratch {}
// SAFETY: as above.
unsafe impl Sync for Scratch {}

/// A mapping the fuzzer made.
struct Map {
    addr: usize,
    len: usize,
}

/// One attacker thread's state.
struct Worker<'a> {
    rng: Rng,
    scratch: &'a Scratch,
    file: Option<File>,
    maps: Vec<Map>,
    pipe: [RawFd; 2],
    errors: u64,
}

impl Worker<'_> {
    fn fd(&mut self) -> RawFd {
        if self.file.is_none() || self.rng.below(200) == 0 {
            let nodes = nodes();
            self.file = None;
            if !nodes.is_empty() {
                // CAST: an index into `nodes`.
                let path = &nodes[self.rng.below(nodes.len() as u64) as usize];
                let mut o = OpenOptions::new();
                o.read(true).custom_flags(libc::O_NONBLOCK);
                if self.rng.below(4) != 0 {
                    o.write(true);
                }
                self.file = o.open(path).ok();
            }
        }
        self.file.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    fn ret(&mut self, r: isize) {
        if r < 0 {
            self.errors += 1;
        }
    }

    /// One random call.
    fn step(&mut self) {
        let fd = self.fd();
        match self.rng.below(16) {
            0..=5 => self.ioctl(fd),
            6..=8 => self.mmap(fd),
            9 => self.remap(),
            10..=11 => self.touch(),
            12 => self.read(fd),
            13 => {
                let p = self.scratch.arg(&mut self.rng);
                // SAFETY: a write(2) from a pointer the kernel checks.
                let r = unsafe { libc::write(fd, p as *const libc::c_void, 8) };
                self.ret(r);
            }
            14 => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, no wait.
                let r = unsafe { libc::poll(&mut pfd, 1, 0) };
                self.ret(r as isize);
            }
            _ => self.file = None,
        }
    }

    fn ioctl(&mut self, fd: RawFd) {
        let rng = &mut self.rng;
        let known = [
            uapi::IOCTL_INFO,
            uapi::IOCTL_RING,
            uapi::IOCTL_SET_STATE,
            uapi::IOCTL_GET_STATE,
            uapi::IOCTL_PEER_STATES,
            uapi::IOCTL_COUNTERS,
        ];
        let cmd = match rng.below(4) {
            0 | 1 => rng.pick(&known),
            2 => {
                // The driver's type, any number, size and direction.
                // CAST: random bits in their fields.
                let (dir, nr, size) = (
                    rng.below(4) as u32,
                    rng.below(10) as u32,
                    rng.below(1 << 14) as u32,
                );
                dir << 30 | size << 16 | uapi::IOC_MAGIC << 8 | nr
            }
            // CAST: any 32-bit number.
            _ => rng.next() as u32,
        };
        let mut arg = self.scratch.arg(rng);
        let nr = cmd & 0xff;
        if cmd >> 8 & 0xff == uapi::IOC_MAGIC && (nr == 4 || nr == 5) && rng.below(2) == 0 {
            // An array argument whose buffer pointer the kernel will write
            // through: aim it where that harms nothing but the test.
            let a = ArrayArg {
                ptr: self.scratch.array_target(rng),
                // CAST: any count.
                count: rng.next() as u32,
                reserved: u32::from(rng.below(8) == 0),
            };
            let at = self.scratch.base as usize;
            // SAFETY: the first bytes of our scratch buffer.
            unsafe { ptr::write_unaligned(at as *mut ArrayArg, a) };
            arg = at;
        }
        // SAFETY: the kernel checks every pointer; the ones it may write
        // through are our scratch buffer, a hole, NULL or kernel addresses.
        let r = unsafe { libc::ioctl(fd, lincell::ioctl_request(cmd), arg) };
        self.ret(r as isize);
    }

    fn mmap(&mut self, fd: RawFd) {
        let page = page() as u64;
        let rng = &mut self.rng;
        let offset = match rng.below(4) {
            0 => rng.below(64) * page,
            1 => rng.below(4096) * page,
            2 => rng.below(1 << 20),
            _ => rng.next() & !(page - 1),
        };
        // CAST: lengths from a page to 16 MiB, or any.
        let len = match rng.below(4) {
            0 => page as usize,
            1 => ((1 + rng.below(16)) * page) as usize,
            2 => (rng.below(4096) * page) as usize,
            _ => rng.below(1 << 24) as usize,
        };
        let prot = rng.pick(&[
            libc::PROT_READ,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_NONE,
        ]);
        let flags = rng.pick(&[
            libc::MAP_SHARED,
            libc::MAP_PRIVATE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
        ]);
        // SAFETY: no MAP_FIXED: the kernel picks the address.
        // CAST: offsets fit off_t's bits (may be negative: the kernel says no).
        let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, offset as libc::off_t) };
        if p == libc::MAP_FAILED {
            self.errors += 1;
            return;
        }
        self.maps.push(Map {
            addr: p as usize,
            len,
        });
        if self.maps.len() > 16 {
            let m = self.maps.swap_remove(0);
            // SAFETY: our own mapping.
            unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) };
        }
    }

    fn remap(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        // CAST: an index.
        let i = self.rng.below(self.maps.len() as u64) as usize;
        let page = page();
        match self.rng.below(3) {
            0 => {
                let prot = self.rng.pick(&[
                    libc::PROT_READ,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::PROT_NONE,
                ]);
                let m = &self.maps[i];
                // SAFETY: our own mapping.
                let r = unsafe { libc::mprotect(m.addr as *mut libc::c_void, m.len, prot) };
                self.ret(r as isize);
            }
            1 => {
                let new_len = page * (1 + self.rng.below(32) as usize);
                let m = &self.maps[i];
                // SAFETY: our own mapping; MAYMOVE only, never onto memory
                // we use.
                let p = unsafe {
                    libc::mremap(
                        m.addr as *mut libc::c_void,
                        m.len,
                        new_len,
                        libc::MREMAP_MAYMOVE,
                    )
                };
                if p == libc::MAP_FAILED {
                    self.errors += 1;
                } else {
                    self.maps[i] = Map {
                        addr: p as usize,
                        len: new_len,
                    };
                }
            }
            _ => {
                let m = self.maps.swap_remove(i);
                // SAFETY: our own mapping.
                unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) };
            }
        }
    }

    /// Reads or writes a byte of a random mapping through the pipe.
    fn touch(&mut self) {
        if self.maps.is_empty() {
            return;
        }
        // CAST: an index and an offset.
        let m = &self.maps[self.rng.below(self.maps.len() as u64) as usize];
        let at = m.addr + self.rng.below(m.len as u64) as usize;
        let write = self.rng.below(2) == 0;
        let mut byte = 0u8;
        // SAFETY: the kernel copies from/to `at` and fails with EFAULT where
        // the mapping is gone or forbids it; the pipe is ours.
        let r = unsafe {
            if write {
                // Into the mapping: a byte into the pipe, then read(2) it
                // into the mapping.
                libc::write(self.pipe[1], ptr::from_ref(&byte).cast(), 1);
                let r = libc::read(self.pipe[0], at as *mut libc::c_void, 1);
                if r < 0 {
                    // Drain the byte the failed read left.
                    libc::read(self.pipe[0], ptr::from_mut(&mut byte).cast(), 1);
                }
                r
            } else {
                let r = libc::write(self.pipe[1], at as *const libc::c_void, 1);
                if r == 1 {
                    libc::read(self.pipe[0], ptr::from_mut(&mut byte).cast(), 1);
                }
                r
            }
        };
        self.ret(r);
    }

    fn read(&mut self, fd: RawFd) {
        let n = self.rng.pick(&[0usize, 1, 7, 8, 9, 16, 4096]);
        let p = self.scratch.arg(&mut self.rng);
        // SAFETY: read(2) into a pointer the kernel checks (ours or bad).
        let r = unsafe { libc::read(fd, p as *mut libc::c_void, n) };
        self.ret(r);
    }
}

fn drop_privileges(uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    if let Some(g) = gid {
        // SAFETY: plain syscalls with valid arguments.
        unsafe {
            if libc::setgroups(1, &g) != 0 || libc::setgid(g) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    if let Some(u) = uid {
        // SAFETY: as above.
        if unsafe { libc::setuid(u) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `--survivors`: map, wait for removal, check every mapping is revoked.
fn survivors(n: u32) -> ExitCode {
    let Some(path) = nodes().into_iter().next() else {
        eprintln!("ivshmem-fuzz: no /dev/ivshmem* node");
        return ExitCode::from(2);
    };
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ivshmem-fuzz: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let page = page();
    let mut maps = Vec::new();
    for i in 0..n {
        // Pages of the first 64 pages; read-only parts get PROT_READ.
        let off = (u64::from(i) % 64) * page as u64;
        for prot in [libc::PROT_READ | libc::PROT_WRITE, libc::PROT_READ] {
            // SAFETY: no MAP_FIXED.
            // CAST: a small offset.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    page,
                    prot,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    off as libc::off_t,
                )
            };
            if p != libc::MAP_FAILED {
                maps.push(Map {
                    addr: p as usize,
                    len: page,
                });
                break;
            }
        }
    }
    let mut pipe = [0; 2];
    // SAFETY: a pipe of our own, non-blocking: a failed copy must never
    // leave a later read waiting for a byte that is not there.
    unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_NONBLOCK) };
    // Touch them all once so that every mapping has pages in place.
    let mut readable = 0;
    for m in &maps {
        // SAFETY: as in `Worker::touch`.
        let r = unsafe { libc::write(pipe[1], m.addr as *const libc::c_void, 1) };
        if r == 1 {
            readable += 1;
            let mut b = 0u8;
            // SAFETY: draining our pipe.
            unsafe { libc::read(pipe[0], ptr::from_mut(&mut b).cast(), 1) };
        }
    }
    println!("mapped {} mappings, {readable} readable", maps.len());
    let _ = io::stdout().flush();
    let start = Instant::now();
    while path.exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if path.exists() {
        eprintln!("ivshmem-fuzz: {} still there after 120 s", path.display());
        return ExitCode::from(2);
    }
    let mut alive = 0;
    for m in &maps {
        for off in [0, m.len / 2, m.len - 1] {
            // SAFETY: as in `Worker::touch`.
            let r = unsafe { libc::write(pipe[1], (m.addr + off) as *const libc::c_void, 1) };
            if r == 1 {
                alive += 1;
                let mut b = 0u8;
                // SAFETY: draining our pipe.
                unsafe { libc::read(pipe[0], ptr::from_mut(&mut b).cast(), 1) };
            }
        }
    }
    println!(
        "after removal: {alive} of {} probes could still read",
        maps.len() * 3
    );
    drop(file);
    if alive == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = drop_privileges(args.uid, args.gid) {
        eprintln!("ivshmem-fuzz: cannot drop privileges: {e}");
        return ExitCode::from(2);
    }
    if let Some(n) = args.survivors {
        return survivors(n);
    }
    // SAFETY: no memory effects.
    if args.uid.is_some() && unsafe { libc::geteuid() } == 0 {
        eprintln!("ivshmem-fuzz: still root after dropping privileges");
        return ExitCode::from(2);
    }
    let scratch = match Scratch::new() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("ivshmem-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let calls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mappings = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..args.threads.max(1))
        .map(|t| {
            let (scratch, calls, errors, mappings) = (
                scratch.clone(),
                calls.clone(),
                errors.clone(),
                mappings.clone(),
            );
            let (seed, total) = (args.seed, args.calls);
            std::thread::spawn(move || {
                let mut pipe = [0; 2];
                // SAFETY: a pipe of our own, non-blocking: a failed copy must never
                // leave a later read waiting for a byte that is not there.
                unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_NONBLOCK) };
                let mut w = Worker {
                    rng: Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(t)),
                    scratch: &scratch,
                    file: None,
                    maps: Vec::new(),
                    pipe,
                    errors: 0,
                };
                while calls.fetch_add(1, Relaxed) < total {
                    let before = w.maps.len();
                    w.step();
                    if w.maps.len() > before {
                        mappings.fetch_add(1, Relaxed);
                    }
                }
                for m in w.maps.drain(..) {
                    // SAFETY: our own mapping.
                    unsafe { libc::munmap(m.addr as *mut libc::c_void, m.len) };
                }
                errors.fetch_add(w.errors, Relaxed);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    println!(
        "calls={} errors={} mappings={} seconds={:.1}",
        calls.load(Relaxed).min(args.calls),
        errors.load(Relaxed),
        mappings.load(Relaxed),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
