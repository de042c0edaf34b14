// SPDX-License-Identifier: GPL-2.0

//! A safe wrapper over `/dev/ivshmemN`.
//!
//! [`Device`] owns an open file of the character device and offers one
//! method per operation of the ABI (`include/uapi/lincell/ivshmem.h`, Rust
//! twin `lincell_shared::ivshmem::uapi`): each ioctl, `read` of the fired
//! vector mask, `poll`, and `mmap` as an RAII [`Mapping`] with bounds-checked
//! volatile accessors. Errors carry the device path, the operation and the
//! errno name, e.g. `/dev/ivshmem0: ioctl RING {peer 3, vector 7}: EINVAL
//! (Invalid argument)`.
//!
//! The raw entry points ([`Device::ioctl_raw`], [`Device::read_raw`],
//! [`Device::mmap_raw`]) exist for the ABI self-test, which must be able to
//! pass wrong sizes and pointers on purpose.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lincell_shared::ivshmem::uapi::{self, ArrayArg, DeviceInfo, Ring};
use lincell_shared::shmem::{RawRegion, SharedMemory};

/// The name of an errno value (`EINVAL`), for messages and TAP output.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        _ => "E?",
    }
}

/// `error` described as `EINVAL (Invalid argument)` when it is an OS error.
pub fn describe_error(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(n) => format!("{} ({})", errno_name(n), io::Error::from_raw_os_error(n)),
        None => error.to_string(),
    }
}

/// An OS error with context; [`errno_of`] still finds the errno.
#[derive(Debug)]
struct Context {
    msg: String,
    errno: Option<i32>,
}

impl std::fmt::Display for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Context {}

/// The errno behind `e`, also through the context this module adds.
pub fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<Context>())
            .and_then(|c| c.errno)
    })
}

/// Adds `what` as context to an OS error, keeping its kind, and its errno
/// for [`errno_of`] and in the message.
fn context(path: &Path, what: &str, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        Context {
            msg: format!("{}: {what}: {}", path.display(), describe_error(&error)),
            errno: errno_of(&error),
        },
    )
}

/// The PCI address of misc device `name` (`0000:00:04.0` for `ivshmem0`),
/// from sysfs.
pub fn pci_address(name: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/class/misc/{name}/device")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// An open `/dev/ivshmemN`.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
    info: DeviceInfo,
}

impl Device {
    /// Opens `path` read/write (close-on-exec) and reads its [`DeviceInfo`].
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_mode(path.as_ref(), true)
    }

    /// Opens `path` read-only: the device can be looked at (INFO, states,
    /// read-only mappings) but not acted on (RING and SET_STATE are
    /// `EBADF`).
    pub fn open_read_only(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::open_mode(path.as_ref(), false)
    }

    fn open_mode(path: &Path, write: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| context(path, "open", e))?;
        let mut dev = Device {
            file,
            path: path.to_path_buf(),
            info: DeviceInfo::default(),
        };
        dev.info = dev.query_info()?;
        Ok(dev)
    }

    /// The path the device was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device's `ivshmem/` sysfs directory (on its PCI device), found
    /// through the open file's device number, whatever the node is called.
    pub fn sysfs_dir(&self) -> io::Result<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let rdev = self.file.metadata()?.rdev();
        // The kernel's dev_t encoding as glibc's major()/minor() decode it.
        let major = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
        let minor = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
        Ok(PathBuf::from(format!(
            "/sys/dev/char/{major}:{minor}/device/ivshmem"
        )))
    }

    /// Turns ivshmem.ko's in-kernel echo on (answer doorbells by ringing
    /// `peer`) or off (`None`), through sysfs `echo` (root only); returns
    /// the doorbells it answered so far (`echo_count`).
    pub fn set_kernel_echo(&self, peer: Option<u32>) -> io::Result<u64> {
        let dir = self.sysfs_dir()?;
        let value = peer.map_or_else(|| "off".to_string(), |p| p.to_string());
        std::fs::write(dir.join("echo"), value)
            .map_err(|e| context(&dir.join("echo"), "write", e))?;
        self.kernel_echo_count()
    }

    /// Doorbells ivshmem.ko's in-kernel echo answered since probe.
    pub fn kernel_echo_count(&self) -> io::Result<u64> {
        let path = self.sysfs_dir()?.join("echo_count");
        let text = std::fs::read_to_string(&path).map_err(|e| context(&path, "read", e))?;
        text.trim()
            .parse()
            .map_err(|_| io::Error::other(format!("{}: not a number: {text:?}", path.display())))
    }

    /// The [`DeviceInfo`] read when the device was opened.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Calls `ioctl(fd, cmd, arg)` and returns its non-negative result.
    ///
    /// # Safety
    ///
    /// `arg` must be what the driver expects for `cmd` or an address the
    /// kernel may safely fail to access (the driver copies through
    /// `copy_{from,to}_user`, so bad user pointers give `EFAULT`); any
    /// memory the driver may write must be writable and not aliased by Rust
    /// references.
    pub unsafe fn ioctl_raw(&self, cmd: u32, arg: usize) -> io::Result<i32> {
        // SAFETY: the file descriptor is open; the argument's validity is the
        // caller's guarantee. CAST: ioctl request numbers are `c_ulong` on
        // Linux/glibc; a u32 always fits.
        let r = unsafe { libc::ioctl(self.file.as_raw_fd(), crate::sys::ioctl_request(cmd), arg) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// `IVSHMEM_IOCTL_INFO`.
    pub fn query_info(&self) -> io::Result<DeviceInfo> {
        let mut info = DeviceInfo::default();
        // SAFETY: INFO writes one `DeviceInfo` to the argument, a live local.
        unsafe { self.ioctl_raw(uapi::IOCTL_INFO, ptr::from_mut(&mut info) as usize) }
            .map_err(|e| context(&self.path, "ioctl INFO", e))?;
        Ok(info)
    }

    /// `IVSHMEM_IOCTL_RING`: raises `vector` on peer `peer`.
    pub fn ring(&self, peer: u32, vector: u32) -> io::Result<()> {
        let ring = Ring { peer, vector };
        // SAFETY: RING reads one `Ring` from the argument, a live local.
        unsafe { self.ioctl_raw(uapi::IOCTL_RING, ptr::from_ref(&ring) as usize) }.map_err(
            |e| {
                context(
                    &self.path,
                    &format!("ioctl RING {{peer {peer}, vector {vector}}}"),
                    e,
                )
            },
        )?;
        Ok(())
    }

    /// `IVSHMEM_IOCTL_SET_STATE`.
    pub fn set_state(&self, state: u32) -> io::Result<()> {
        // SAFETY: SET_STATE reads one `u32` from the argument, a live local.
        unsafe { self.ioctl_raw(uapi::IOCTL_SET_STATE, ptr::from_ref(&state) as usize) }
            .map_err(|e| context(&self.path, "ioctl SET_STATE", e))?;
        Ok(())
    }

    /// `IVSHMEM_IOCTL_GET_STATE`.
    pub fn get_state(&self) -> io::Result<u32> {
        let mut state = 0u32;
        // SAFETY: GET_STATE writes one `u32` to the argument, a live local.
        unsafe { self.ioctl_raw(uapi::IOCTL_GET_STATE, ptr::from_mut(&mut state) as usize) }
            .map_err(|e| context(&self.path, "ioctl GET_STATE", e))?;
        Ok(state)
    }

    /// Runs an array ioctl (`PEER_STATES`, `COUNTERS`) with a buffer of
    /// `T`, growing it until everything available fits.
    fn array<T: Copy + Default>(&self, cmd: u32, name: &str) -> io::Result<Vec<T>> {
        let mut buf: Vec<T> = Vec::new();
        loop {
            let mut arg = ArrayArg {
                ptr: buf.as_mut_ptr() as u64,
                count: u32::try_from(buf.len()).unwrap_or(u32::MAX),
                reserved: 0,
            };
            // SAFETY: the driver writes at most `count` elements of `T` to
            // `ptr` (our buffer, which has exactly that many) and the
            // updated `ArrayArg` to the argument, a live local.
            unsafe { self.ioctl_raw(cmd, ptr::from_mut(&mut arg) as usize) }
                .map_err(|e| context(&self.path, &format!("ioctl {name}"), e))?;
            // CAST: u32 to usize is lossless on 32- and 64-bit Linux.
            let available = arg.count as usize;
            if available <= buf.len() {
                buf.truncate(available);
                return Ok(buf);
            }
            buf = vec![T::default(); available];
        }
    }

    /// `IVSHMEM_IOCTL_PEER_STATES`: every peer's state.
    pub fn peer_states(&self) -> io::Result<Vec<u32>> {
        self.array(uapi::IOCTL_PEER_STATES, "PEER_STATES")
    }

    /// `IVSHMEM_IOCTL_COUNTERS`: interrupts delivered per vector since probe.
    pub fn counters(&self) -> io::Result<Vec<u64>> {
        self.array(uapi::IOCTL_COUNTERS, "COUNTERS")
    }

    /// `read(2)` into `buf` as is: the byte count or the OS error.
    pub fn read_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes.
        let r = unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(r).map_err(|_| io::Error::last_os_error())
    }

    /// One `read(2)` of the fired-vector mask; blocks unless the file is
    /// non-blocking. `EINTR` is returned as an error.
    pub fn read_mask(&self) -> io::Result<u64> {
        let mut buf = [0u8; uapi::READ_SIZE];
        let n = self.read_raw(&mut buf)?;
        if n != uapi::READ_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: read returned {n} bytes, expected {}",
                    self.path.display(),
                    uapi::READ_SIZE
                ),
            ));
        }
        Ok(u64::from_ne_bytes(buf))
    }

    /// Blocking `read(2)` of the fired-vector mask, retried after signals
    /// until `deadline`.
    ///
    /// A blocking read only returns early on a signal: without an
    /// [`IntervalTimer`] running (or another source of signals) this waits
    /// for as long as no interrupt arrives, whatever the deadline.
    pub fn read_events(&self, deadline: Instant) -> io::Result<u64> {
        loop {
            match self.read_mask() {
                Ok(mask) => return Ok(mask),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    if Instant::now() >= deadline {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "{}: no interrupt before the time limit (blocking read)",
                                self.path.display()
                            ),
                        ));
                    }
                }
                Err(e) => return Err(context(&self.path, "read", e)),
            }
        }
    }

    /// `poll(2)` for `POLLIN` for at most `timeout`; returns `revents`
    /// (0 when the time ran out).
    pub fn poll(&self, timeout: Duration) -> io::Result<i16> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms =
            libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one live, writable pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(context(&self.path, "poll", e));
        }
        Ok(pfd.revents)
    }

    /// Waits with `poll(2)` until an interrupt is pending (or `deadline`),
    /// then reads the mask. The device being gone is an error.
    pub fn poll_events(&self, deadline: Instant) -> io::Result<u64> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let revents = self.poll(left)?;
            if revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!(
                        "{}: poll reports the device gone (revents {revents:#x})",
                        self.path.display()
                    ),
                ));
            }
            if revents & libc::POLLIN != 0 {
                // Readable: only this thread reads, so this does not block.
                return self
                    .read_mask()
                    .map_err(|e| context(&self.path, "read after POLLIN", e));
            }
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{}: no interrupt before the time limit (poll)",
                        self.path.display()
                    ),
                ));
            }
        }
    }

    /// Non-blocking check: the pending mask, or `None` if `read` would
    /// block (`EAGAIN`).
    pub fn try_read_events(&self) -> io::Result<Option<u64>> {
        self.set_nonblocking(true)?;
        let r = self.read_mask();
        self.set_nonblocking(false)?;
        match r {
            Ok(mask) => Ok(Some(mask)),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
            Err(e) => Err(context(&self.path, "non-blocking read", e)),
        }
    }

    /// Sets or clears `O_NONBLOCK` on the open file.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        let fd = self.file.as_raw_fd();
        // SAFETY: F_GETFL on an open descriptor has no memory effects.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(context(
                &self.path,
                "fcntl F_GETFL",
                io::Error::last_os_error(),
            ));
        }
        let flags = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: F_SETFL on an open descriptor has no memory effects.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
            return Err(context(
                &self.path,
                "fcntl F_SETFL",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// `mmap(2)` of `len` bytes at byte `offset` of the shared memory with
    /// `prot` and `flags` as given; the raw result for the ABI self-test.
    pub fn mmap_raw(&self, offset: u64, len: usize, prot: i32, flags: i32) -> io::Result<Mapping> {
        let off = libc::off_t::try_from(offset).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} too large"),
            )
        })?;
        // SAFETY: a new mapping chosen by the kernel (no MAP_FIXED), aliasing
        // no Rust object.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                prot,
                flags,
                self.file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned address 0"))?;
        // SAFETY: a fresh `len`-byte mapping, unmapped only when the
        // `Mapping` drops; no Rust reference into it is ever made. (If `prot`
        // lacks PROT_WRITE, stores through the region fault.)
        let region = unsafe { RawRegion::new(ptr, len) };
        // INVARIANT: `region` is the mapping.
        Ok(Mapping { region })
    }

    /// Maps `len` bytes at byte `offset` of the shared memory, shared and
    /// read/write.
    pub fn map(&self, offset: u64, len: usize) -> io::Result<Mapping> {
        self.mmap_raw(
            offset,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
        .map_err(|e| {
            context(
                &self.path,
                &format!("mmap {len} bytes at offset {offset}"),
                e,
            )
        })
    }

    /// Maps the whole shared memory.
    pub fn map_all(&self) -> io::Result<Mapping> {
        let len = usize::try_from(self.info.shmem_size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "shared memory larger than the address space",
            )
        })?;
        self.map(0, len)
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// A user mapping of (part of) the shared memory, unmapped on drop.
///
/// Other peers write this memory at any time, so no Rust reference into it
/// is ever handed out: words are loaded and stored through
/// [`Mapping::region`] (single atomic accesses, suitable for flags and
/// sequence counters), bytes are copied.
///
/// # Invariants
///
/// `region` is exactly the mapping made by [`Device::mmap_raw`], unmapped
/// only in `drop`.
#[derive(Debug)]
pub struct Mapping {
    region: RawRegion,
}

impl Mapping {
    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Whether the mapping is empty (never: the driver refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Start address, for tests that deliberately touch the mapping raw
    /// (e.g. expecting `SIGBUS` after device removal).
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    /// The mapping as shared memory: little-endian words at byte offsets.
    /// Stores into a read-only mapping fault, as any write to it would.
    pub fn region(&self) -> &RawRegion {
        &self.region
    }

    /// Copies bytes out of the mapping, one single-byte load each.
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.region.ptr(offset, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.region.load(offset + i, Ordering::Relaxed)?;
        }
        Ok(())
    }

    /// Copies bytes into the mapping, one single-byte store each.
    pub fn write_bytes(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.region.ptr(offset, data.len())?;
        for (i, b) in data.iter().enumerate() {
            self.region.store(offset + i, *b, Ordering::Relaxed)?;
        }
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping created in `mmap_raw` (type
        // invariant); no reference into it outlives `self`.
        unsafe { libc::munmap(self.as_ptr().cast(), self.len()) };
    }
}

/// A periodic `SIGALRM` to the calling thread that interrupts its blocking
/// system calls, so that a blocking `read` of the device can give up at a
/// deadline.
///
/// The handler does nothing and is installed without `SA_RESTART`: a
/// blocked `read` returns `EINTR`, [`Device::read_events`] looks at its
/// deadline and reads again. The timer is a POSIX timer aimed at this
/// thread only (`SIGEV_THREAD_ID`), so other threads are not disturbed. At
/// most one exists at a time (the handler is process-wide state); dropping
/// it deletes the timer and restores the previous handler.
pub struct IntervalTimer {
    old: libc::sigaction,
    timer: libc::timer_t,
}

static TIMER_ACTIVE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_alarm(_sig: libc::c_int) {}

impl IntervalTimer {
    /// Starts a `SIGALRM` to the calling thread every `period`.
    pub fn start(period: Duration) -> io::Result<Self> {
        if TIMER_ACTIVE.swap(true, Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "an interval timer is already running",
            ));
        }
        let fail = |e: io::Error| {
            TIMER_ACTIVE.store(false, Ordering::SeqCst);
            io::Error::new(
                e.kind(),
                format!("cannot start the read watchdog timer: {e}"),
            )
        };
        // SAFETY: sigaction is plain data; zeroed is a valid empty value.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = 0;
        // SAFETY: plain data, filled in by sigaction.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid sigaction structures; the handler is async-signal-safe
        // (it does nothing).
        if unsafe { libc::sigaction(libc::SIGALRM, &act, &mut old) } < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        // SAFETY: sigevent is plain data; zeroed is a valid starting value.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = libc::SIGALRM;
        // SAFETY: gettid has no preconditions.
        sev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut timer: libc::timer_t = ptr::null_mut();
        // SAFETY: valid sigevent and output location.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: restoring the handler saved above.
            unsafe { libc::sigaction(libc::SIGALRM, &old, ptr::null_mut()) };
            return Err(fail(e));
        }
        let ts = libc::timespec {
            // time_t is i64 on every target the tools support.
            tv_sec: period.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: libc::c_long::from(period.subsec_nanos().max(1000)),
        };
        let spec = libc::itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        // SAFETY: `timer` was just created; `spec` is valid; no old value wanted.
        if unsafe { libc::timer_settime(timer, 0, &spec, ptr::null_mut()) } < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: deleting the timer created above, restoring the handler.
            unsafe {
                libc::timer_delete(timer);
                libc::sigaction(libc::SIGALRM, &old, ptr::null_mut());
            }
            return Err(fail(e));
        }
        Ok(IntervalTimer { old, timer })
    }
}

impl Drop for IntervalTimer {
    fn drop(&mut self) {
        // SAFETY: `timer` is ours (created in `start`, deleted only here);
        // the handler restored is the one saved in `start`.
        unsafe {
            libc::timer_delete(self.timer);
            libc::sigaction(libc::SIGALRM, &self.old, ptr::null_mut());
        }
        TIMER_ACTIVE.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(errno_name(libc::ENOTTY), "ENOTTY");
        assert_eq!(errno_name(9999), "E?");
        let e = io::Error::from_raw_os_error(libc::EINVAL);
        assert!(
            describe_error(&e).starts_with("EINVAL ("),
            "{}",
            describe_error(&e)
        );
    }

    #[test]
    fn opening_a_missing_device_names_it() {
        let e = Device::open("/nonexistent/ivshmem9").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/ivshmem9: open: ENOENT"), "{msg}");
        assert_eq!(
            errno_of(&e),
            Some(libc::ENOENT),
            "the errno survives the context"
        );
        assert_eq!(errno_of(&io::Error::other("x")), None);
    }

    #[test]
    fn interval_timer_interrupts_a_blocking_read() {
        let (r, _w) = std::io::pipe().unwrap();
        let _t = IntervalTimer::start(Duration::from_millis(20)).unwrap();
        assert!(
            IntervalTimer::start(Duration::from_millis(20)).is_err(),
            "only one timer at a time"
        );
        let mut b = [0u8; 1];
        let start = Instant::now();
        // SAFETY: a live one-byte buffer.
        let n = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EINTR));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
