// SPDX-License-Identifier: GPL-2.0

//! `lincell remote vhost-user`: one virtio-over-ivshmem device served by an
//! existing vhost-user backend (`qemu-storage-daemon`, `virtiofsd`,
//! `vhost-device-*`).
//!
//! The bridge is a host peer of the ivshmem server and the vhost-user
//! frontend of the backend's UNIX socket. It only translates the control
//! plane: the [`Engine`] answers the virtio-over-ivshmem header (features,
//! queue set-up, status) as for lincell's own backends, with a
//! [`VhostDevice`] that never handles a chain; when the driver sets
//! DRIVER_OK the bridge hands the backend the whole R/W section as its one
//! memory region (guest address 0, so descriptor addresses, which are
//! section offsets, are valid guest addresses), the rings' addresses in its
//! own mapping of that region, the bridge's own doorbell eventfd of each
//! queue's kick vector (kick) and the frontend peer's eventfd of the
//! queue's completion vector (call). From then on the data path runs
//! between the guest's rings and the backend without the bridge.
//!
//! A backend that closes its socket, or does not answer a request within
//! [`REPLY_TIMEOUT`], is dropped. With `--hold-ms` (the default) the bridge
//! stays READY, waits for the old backend process to end, and hands the
//! queues to the next backend that answers on the socket within the hold,
//! with the requests the old one left unanswered ([`relay`]): an in-service
//! upgrade the guest does not notice. The take-over ends by the hold's
//! deadline whatever the new backend does ([`take_over`]). Otherwise (no
//! hold, a different device, a log that lost track, or no backend in time)
//! the bridge leaves READY (the frontend fails the device) and reconnects
//! every [`RECONNECT`] until the backend is back, then publishes a fresh
//! header and goes READY again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lincell_shared::vdev::header::{feature, STATE_READY};
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::EventFd;

use crate::error::{Error, Result};
use crate::ivshmem::endpoint::{Endpoint, PeerEndpoint};

use super::engine::{log, Chain, Device, Done, Engine, Options, QueueSetup};
use super::mem::{mem_from_raw, Mem};
use super::runner::{catch_signals, find_frontend, prepare_v1, STOP};

mod relay;
#[cfg(test)]
pub(crate) mod take_over_tests;

use relay::{Relay, RelayQueue, RingView};

/// Longest wait for a reply of the backend before it counts as dead.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between connection attempts while the backend is away.
pub(crate) const RECONNECT: Duration = Duration::from_millis(500);

/// Pause between connection attempts while the bridge holds the device
/// READY for a new backend.
const HOLD_RETRY: Duration = Duration::from_millis(20);

/// The longest wait between looks at the header and the socket.
const TICK: Duration = Duration::from_millis(100);

/// Device-specific feature bits (0 to 23) of a virtio device.
const DEVICE_FEATURES: u64 = (1 << 24) - 1;

/// `VIRTIO_BLK_F_RO`.
const BLK_F_RO: u32 = 5;
/// `VIRTIO_BLK_F_MQ`: masked, the bridge serves one request queue.
const BLK_F_MQ: u32 = 12;
/// `VIRTIO_BLK_F_DISCARD`.
const BLK_F_DISCARD: u32 = 13;
/// `VIRTIO_BLK_F_WRITE_ZEROES`.
const BLK_F_WRITE_ZEROES: u32 = 14;

/// A virtio device id of `lincell_shared::vdev::device_id` as the `u16` of
/// the header (checked when compiling: the ids are consts).
const fn id16(id: u32) -> u16 {
    assert!(id <= u16::MAX as u32);
    // CAST: checked above.
    id as u16
}

/// The virtio device ids the bridge names (`--device`, the hold, blk's
/// feature masking).
mod id {
    use super::id16;
    use lincell_shared::vdev::device_id;

    /// virtio-net.
    pub(super) const NET: u16 = id16(device_id::NET);
    /// virtio-blk.
    pub(super) const BLK: u16 = id16(device_id::BLK);
    /// virtio-console.
    pub(super) const CONSOLE: u16 = id16(device_id::CONSOLE);
    /// virtio-rng.
    pub(super) const RNG: u16 = id16(device_id::RNG);
    /// virtio-vsock.
    pub(super) const VSOCK: u16 = id16(device_id::VSOCK);
    /// virtio-fs.
    pub(super) const FS: u16 = id16(device_id::FS);
}

/// The virtio device kinds the bridge knows the config size of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kind {
    /// Virtio device id.
    pub(crate) id: u16,
    /// Bytes of config space asked from the backend (`GET_CONFIG`).
    pub(crate) config_len: u32,
}

/// The longest `--hold-ms`.
const MAX_HOLD_MS: u64 = 60_000;

/// `--hold-ms` for a device kind: the hold asked for (at most
/// [`MAX_HOLD_MS`]) or the kind's default: 5 s for blk, whose requests may
/// be executed again (the same data to the same sectors), none for the
/// others. A backend replaced under fs (FUSE sessions, node ids, open
/// files) or vsock (connections) loses state the guest still relies on:
/// a hold is refused there.
pub(crate) fn hold_for(kind: &Kind, ms: Option<u64>) -> Result<Duration> {
    match ms {
        None if kind.id == id::BLK => Ok(Duration::from_millis(5000)),
        None | Some(0) => Ok(Duration::ZERO),
        Some(_) if matches!(kind.id, id::VSOCK | id::FS) => Err(Error::Usage(
            "--hold-ms: a new fs or vsock backend does not have the old one's sessions; \
             its requests cannot be handed over (use --hold-ms 0)"
                .into(),
        )),
        Some(ms) if ms > MAX_HOLD_MS => Err(Error::Usage(format!(
            "--hold-ms {ms}: at most {MAX_HOLD_MS}"
        ))),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

/// Parses `--device` (clap value parser): a name or a virtio device id.
pub(crate) fn parse_kind(s: &str) -> Result<Kind> {
    let (id, config_len) = match s {
        "blk" => (id::BLK, 60),
        "net" => (id::NET, 12),
        "console" => (id::CONSOLE, 12),
        "rng" => (id::RNG, 0),
        "vsock" => (id::VSOCK, 8),
        "fs" => (id::FS, 40),
        _ => {
            let id: u16 = s.parse().map_err(|_| {
                Error::Usage(format!(
                    "`{s}`: expected blk, net, console, rng, vsock, fs or a virtio device id"
                ))
            })?;
            if id == 0 {
                return Err(Error::Usage("virtio device id 0 is reserved".into()));
            }
            (id, 0)
        }
    };
    Ok(Kind { id, config_len })
}

/// What the bridge offers the frontend: the backend's device as it
/// described itself. [`Device::handle`] is never called (the backend
/// processes the rings itself).
#[derive(Debug)]
pub(crate) struct VhostDevice {
    id: u16,
    features: u64,
    config: Vec<u8>,
    queues: usize,
    socket: PathBuf,
}

impl Device for VhostDevice {
    fn device_id(&self) -> u16 {
        self.id
    }
    fn features(&self) -> u64 {
        self.features
    }
    fn config(&self) -> Vec<u8> {
        self.config.clone()
    }
    fn num_queues(&self) -> usize {
        self.queues
    }
    fn handle(&mut self, _q: usize, _chain: Chain<'_>, _mem: &Mem) -> Done {
        Done::default()
    }
    fn summary(&self) -> String {
        format!(
            "vhost-user device id {} on {}: {} queue(s), {} config bytes",
            self.id,
            self.socket.display(),
            self.queues,
            self.config.len()
        )
    }
}

/// What the command line chose.
#[derive(Debug)]
pub(crate) struct BridgeOptions {
    /// The ivshmem server's socket.
    pub(crate) ivshmem: PathBuf,
    /// The vhost-user backend's socket.
    pub(crate) backend: PathBuf,
    /// The device kind.
    pub(crate) kind: Kind,
    /// Largest queue size offered to the frontend.
    pub(crate) queue_size: u16,
    /// Offer VIRTIO_BLK_F_RO (blk only) and hide DISCARD/WRITE_ZEROES.
    pub(crate) readonly: bool,
    /// Log every header write.
    pub(crate) verbose: bool,
    /// How long the device stays READY while the backend is replaced
    /// (zero: no hold, and the backend gets the doorbells directly).
    pub(crate) hold: Duration,
}

/// A vhost-user error as a run-time error naming the request.
fn vu(what: &str) -> impl Fn(vhost::Error) -> Error + '_ {
    move |e| Error::Remote(format!("vhost-user {what}: {e}"))
}

/// One connection to the backend and what it said about itself.
struct Backend {
    frontend: Frontend,
    /// A second handle on the socket, polled for the backend's end.
    watch: UnixStream,
    /// Shuts the socket down when the backend sits on a request.
    watchdog: Watchdog,
    /// `GET_FEATURES`.
    features: u64,
    /// Negotiated protocol features.
    protocol: VhostUserProtocolFeatures,
    /// Queues the backend has (`GET_QUEUE_NUM`, else 1).
    queues: usize,
    /// Config space (`GET_CONFIG`, else empty).
    config: Vec<u8>,
    /// Queues handed to the backend (stopped on reset).
    started: Vec<usize>,
    /// The backend process (`SO_PEERCRED` at connect), polled for its end
    /// before another backend gets the rings.
    pidfd: Option<OwnedFd>,
    /// Its pid, for the log.
    pid: i32,
}

impl Backend {
    /// Connects and asks the backend what it is, by `until` if given (a
    /// take-over's hold deadline) and within [`REPLY_TIMEOUT`] anyway.
    fn connect(path: &Path, kind: Kind, until: Option<Instant>) -> Result<Self> {
        let sock =
            connect_now(path).map_err(|e| Error::Remote(format!("{}: {e}", path.display())))?;
        let watch = sock.try_clone()?;
        let (pid, pidfd) = peer_process(&sock);
        let watchdog = Watchdog::new(sock.try_clone()?);
        let mut frontend = Frontend::from_stream(sock, 1);
        let armed = watchdog.arm(until);
        frontend.set_owner().map_err(vu("SET_OWNER"))?;
        let features = frontend.get_features().map_err(vu("GET_FEATURES"))?;
        if features & 1 << feature::VERSION_1 == 0 {
            return Err(Error::Remote(format!(
                "backend features {features:#x} lack VERSION_1 (legacy devices are not bridged)"
            )));
        }
        let mut protocol = VhostUserProtocolFeatures::empty();
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            let offered = frontend
                .get_protocol_features()
                .map_err(vu("GET_PROTOCOL_FEATURES"))?;
            protocol =
                offered & (VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::CONFIG);
            frontend
                .set_protocol_features(protocol)
                .map_err(vu("SET_PROTOCOL_FEATURES"))?;
        }
        let queues = if protocol.contains(VhostUserProtocolFeatures::MQ) {
            frontend.get_queue_num().map_err(vu("GET_QUEUE_NUM"))?
        } else {
            1
        };
        let queues = usize::try_from(queues).unwrap_or(usize::MAX);
        if queues == 0 {
            return Err(Error::Remote("the backend has no queues".into()));
        }
        let mut config = Vec::new();
        if kind.config_len > 0 && protocol.contains(VhostUserProtocolFeatures::CONFIG) {
            // CAST: config_len is at most 60 (parse_kind).
            let buf = vec![0u8; kind.config_len as usize];
            let (_, payload) = frontend
                .get_config(0, kind.config_len, VhostUserConfigFlags::empty(), &buf)
                .map_err(vu("GET_CONFIG"))?;
            config = payload;
        }
        drop(armed);
        Ok(Backend {
            frontend,
            watch,
            watchdog,
            features,
            protocol,
            queues,
            config,
            started: Vec::new(),
            pidfd,
            pid,
        })
    }

    /// Whether the backend closed its end (or the socket failed).
    fn gone(&self) -> bool {
        let mut p = libc::pollfd {
            fd: self.watch.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, a zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        if n <= 0 {
            return n < 0;
        }
        if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return true;
        }
        // Readable without a request pending: end of file, or a message the
        // protocol does not allow here; either way the session is over.
        let mut b = 0u8;
        // SAFETY: a one-byte peek into a live local.
        let r = unsafe {
            libc::recv(
                self.watch.as_raw_fd(),
                (&mut b as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock
    }

    /// Hands the enabled queues to the backend (the driver set DRIVER_OK).
    fn start(&mut self, s: &Start<'_>) -> Result<()> {
        let _armed = self.watchdog.arm(s.until);
        // The backend sees guest-physical addresses in a region without an
        // IOMMU: ACCESS_PLATFORM and ORDER_PLATFORM are the transport's.
        let mut acked = s.driver_features & self.features;
        acked &= !(1 << feature::ACCESS_PLATFORM | 1 << feature::ORDER_PLATFORM);
        acked |= self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        self.frontend
            .set_features(acked)
            .map_err(vu("SET_FEATURES"))?;
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: s.len,
            userspace_addr: s.base,
            mmap_offset: s.offset,
            mmap_handle: s.mem_fd.as_raw_fd(),
        };
        self.frontend
            .set_mem_table(&[region])
            .map_err(vu("SET_MEM_TABLE"))?;
        for (k, q) in s.queues.iter().enumerate() {
            let i = q.index;
            self.frontend
                .set_vring_num(i, q.size)
                .map_err(vu("SET_VRING_NUM"))?;
            let addr = VringConfigData {
                queue_max_size: q.max,
                queue_size: q.size,
                flags: 0,
                desc_table_addr: s.base + q.desc,
                used_ring_addr: s.base + q.used,
                avail_ring_addr: s.base + q.avail,
                log_addr: None,
            };
            self.frontend
                .set_vring_addr(i, &addr)
                .map_err(vu("SET_VRING_ADDR"))?;
            let base = s.bases.get(k).copied().unwrap_or(0);
            self.frontend
                .set_vring_base(i, base)
                .map_err(vu("SET_VRING_BASE"))?;
            let (kick, call) = match s.relay {
                Some(r) => {
                    let fds = r.backend_fds(k)?;
                    (fds.kick, fds.call)
                }
                None => (
                    event_fd(s.ep.peer().own_event_fd(usize::from(q.device_vector))?)?,
                    event_fd(
                        s.ep.peer()
                            .peer_event_fd(s.frontend, usize::from(q.driver_vector))?,
                    )?,
                ),
            };
            self.frontend
                .set_vring_call(i, &call)
                .map_err(vu("SET_VRING_CALL"))?;
            self.frontend
                .set_vring_kick(i, &kick)
                .map_err(vu("SET_VRING_KICK"))?;
            if acked & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
                self.frontend
                    .set_vring_enable(i, true)
                    .map_err(vu("SET_VRING_ENABLE"))?;
            }
            self.started.push(i);
            // Requests the driver queued before the backend polled.
            kick.write(1)?;
        }
        Ok(())
    }

    /// Stops the queues handed out (device reset or frontend gone).
    fn stop(&mut self) -> Result<()> {
        let _armed = self.watchdog.arm(None);
        let protocol = self.features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        for i in std::mem::take(&mut self.started) {
            if protocol {
                self.frontend
                    .set_vring_enable(i, false)
                    .map_err(vu("SET_VRING_ENABLE"))?;
            }
            self.frontend
                .get_vring_base(i)
                .map_err(vu("GET_VRING_BASE"))?;
        }
        Ok(())
    }
}

/// Bounds the backend's answers: the vhost crate retries a receive that
/// timed out (`SO_RCVTIMEO` gives `EAGAIN`, which it treats as a transient
/// error), so a stopped backend would hold a request forever. While armed
/// ([`Watchdog::arm`]) past its deadline ([`REPLY_TIMEOUT`], or less when
/// the caller has less time: a take-over's hold), a thread shuts the
/// socket down: the pending receive (or a send blocked on a full socket)
/// then sees end of file and the request fails.
struct Watchdog {
    shared: Arc<WatchShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the watchdog thread and its owner share.
struct WatchShared {
    state: Mutex<WatchState>,
    /// Signalled on every change of `state`.
    changed: Condvar,
}

/// The watchdog's orders.
struct WatchState {
    /// When the armed phase must be over, and how long it was given (for
    /// the log); `None`: disarmed.
    armed: Option<(Instant, Duration)>,
    /// The owner is gone: the thread ends.
    quit: bool,
}

impl WatchShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the orders and wakes the thread.
    fn set(&self, f: impl FnOnce(&mut WatchState)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// An armed [`Watchdog`]; disarms it when dropped.
struct Armed<'a>(&'a WatchShared);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.set(|s| s.armed = None);
    }
}

impl Watchdog {
    /// A watchdog over `sock` (a clone of the backend's socket).
    fn new(sock: UnixStream) -> Self {
        let shared = Arc::new(WatchShared {
            state: Mutex::new(WatchState {
                armed: None,
                quit: false,
            }),
            changed: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vhost-user watchdog".into())
            .spawn(move || {
                let mut g = s.lock();
                while !g.quit {
                    match g.armed {
                        None => {
                            g = s
                                .changed
                                .wait(g)
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                        }
                        Some((deadline, given)) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                drop(g);
                                log(format_args!(
                                    "the vhost-user backend did not answer within {} ms; disconnecting",
                                    given.as_millis()
                                ));
                                let _ = sock.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            g = s
                                .changed
                                .wait_timeout(g, left)
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .0;
                        }
                    }
                }
            })
            .ok();
        Watchdog { shared, thread }
    }

    /// Arms the watchdog until the returned guard drops: for
    /// [`REPLY_TIMEOUT`], or until `until` if that comes first.
    fn arm(&self, until: Option<Instant>) -> Armed<'_> {
        let now = Instant::now();
        let mut deadline = now + REPLY_TIMEOUT;
        if let Some(u) = until {
            deadline = deadline.min(u);
        }
        self.shared
            .set(|s| s.armed = Some((deadline, deadline.saturating_duration_since(now))));
        Armed(&self.shared)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.set(|s| s.quit = true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to the UNIX socket at `path` without waiting: a listener
/// whose backlog is full (a backend that stopped accepting) gives
/// `WouldBlock` at once instead of a connect that blocks until it accepts.
/// The stream returned is blocking.
fn connect_now(path: &Path) -> io::Result<UnixStream> {
    use std::os::unix::ffi::OsStrExt;

    // SAFETY: an all-zero sockaddr_un is a valid (empty) address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    // CAST: AF_UNIX (1) fits sa_family_t.
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // One byte stays for the terminating NUL.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a UNIX socket path (empty, too long or with a NUL)",
        ));
    }
    for (d, &b) in addr.sun_path.iter_mut().zip(bytes) {
        // CAST: a byte as a c_char, the same bits.
        *d = b as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the fd returned is new.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // CAST: the size of a sockaddr_un fits a socklen_t.
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a live sockaddr_un of `len` bytes; `fd` is open.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let sock = UnixStream::from(fd);
    sock.set_nonblocking(false)?;
    Ok(sock)
}

/// Whether a failed wait only ran out of time or was interrupted (look
/// again) rather than failed.
fn waited_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// A duplicate of `fd` as the vhost crate's [`EventFd`].
fn event_fd(fd: BorrowedFd<'_>) -> Result<EventFd> {
    let owned = fd.try_clone_to_owned()?;
    // SAFETY: `owned` is an open eventfd whose ownership passes to the
    // EventFd (into_raw_fd gives it up).
    Ok(unsafe { EventFd::from_raw_fd(owned.into_raw_fd()) })
}

/// The pid of the process at the other end of `sock` and a pidfd of it
/// (`None` where the kernel has no pidfd_open).
fn peer_process(sock: &UnixStream) -> (i32, Option<OwnedFd>) {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    // CAST: the size of a ucred fits a socklen_t.
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills at most `len` bytes of the live `cred`.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 || cred.pid <= 0 {
        return (0, None);
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, cred.pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0);
    // SAFETY: a fresh fd that nothing else owns.
    (cred.pid, fd.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Whether the process of `pidfd` has ended.
fn exited(pidfd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0
}

/// Waits until the process of `pidfd` has ended or `deadline`, serving the
/// header meanwhile ([`serve_hold`]); whether it ended.
fn wait_exit(ep: &mut PeerEndpoint, link: &mut Link, pidfd: &OwnedFd, deadline: Instant) -> bool {
    loop {
        if exited(pidfd) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || STOP.load(Ordering::SeqCst) {
            return false;
        }
        // Vector 0 (header writes) or the process's end, whichever first.
        match ep.wait_or(1, left.min(TICK), pidfd.as_fd()) {
            Ok(_) => {}
            Err(e) if waited_out(&e) => {}
            Err(e) => {
                log(format_args!("wait: {e}"));
                return false;
            }
        }
        if !serve_hold(ep, link) {
            return false;
        }
    }
}

/// What [`Backend::start`] needs.
struct Start<'a> {
    ep: &'a PeerEndpoint,
    frontend: u16,
    driver_features: u64,
    queues: &'a [QueueSetup],
    /// `SET_VRING_BASE` of each queue (none: 0).
    bases: &'a [u16],
    /// The doorbell relay, whose eventfds the backend then gets.
    relay: Option<&'a Relay>,
    /// The hand-out must be over by then (a take-over's hold deadline).
    until: Option<Instant>,
    /// The R/W section in the bridge's address space.
    base: u64,
    /// Its length.
    len: u64,
    /// Its offset in the memory fd.
    offset: u64,
    mem_fd: BorrowedFd<'a>,
}

/// The device the frontend is offered for what the backend said
/// (`features`, `queues`, `config`) on an ivshmem device of `vectors`.
fn device_of(
    features: u64,
    queues: usize,
    config: &[u8],
    o: &BridgeOptions,
    vectors: u32,
) -> Result<VhostDevice> {
    let mut features = features & DEVICE_FEATURES;
    let mut queues = queues;
    if o.kind.id == id::BLK {
        features &= !(1 << BLK_F_MQ);
        queues = 1;
        if o.readonly {
            features |= 1 << BLK_F_RO;
            features &= !(1 << BLK_F_DISCARD | 1 << BLK_F_WRITE_ZEROES);
        }
    }
    // Each queue needs a kick vector of its own: vector 0 is the bridge's
    // (header writes, state changes).
    let max = usize::try_from(vectors.saturating_sub(1)).unwrap_or(0);
    if max == 0 {
        return Err(Error::Remote(format!(
            "the ivshmem device has {vectors} vector(s); the bridge needs one per queue besides vector 0"
        )));
    }
    if queues > max {
        log(format_args!(
            "serving {max} of the backend's {queues} queues ({vectors} vectors)"
        ));
        queues = max;
    }
    if config.len() > lincell_shared::vdev::header::MAX_CONFIG {
        return Err(Error::Remote("backend config space too large".into()));
    }
    Ok(VhostDevice {
        id: o.kind.id,
        features,
        config: config.to_vec(),
        queues,
        socket: o.backend.clone(),
    })
}

/// Connects to the backend, retrying until it answers or a signal.
fn connect_retrying(o: &BridgeOptions) -> Option<Backend> {
    let mut warned = false;
    while !STOP.load(Ordering::SeqCst) {
        match Backend::connect(&o.backend, o.kind, None) {
            Ok(b) => {
                log(format_args!(
                    "vhost-user backend {}: features {:#x}, protocol {:#x}, {} queue(s), {} config bytes",
                    o.backend.display(),
                    b.features,
                    b.protocol.bits(),
                    b.queues,
                    b.config.len()
                ));
                return Some(b);
            }
            Err(e) => {
                if !warned {
                    log(format_args!("{e}; retrying every {RECONNECT:?}"));
                    warned = true;
                }
                std::thread::sleep(RECONNECT);
            }
        }
    }
    None
}

/// Runs the bridge until SIGINT/SIGTERM.
pub(crate) fn run(o: &BridgeOptions) -> Result<()> {
    catch_signals().map_err(|e| Error::Remote(format!("signals: {e}")))?;
    let mut ep = PeerEndpoint::connect(&o.ivshmem)
        .map_err(|e| Error::Remote(format!("{}: {e}", o.ivshmem.display())))?;
    if ep.v2_layout().is_none() {
        prepare_v1(&ep, o.kind.id)?;
    }
    let (rw_off, _) = ep.rw_section();
    let (ptr, len) = ep.rw_ptr().ok_or_else(|| {
        Error::Remote(format!(
            "{}: the R/W section is not inside the shared memory",
            ep.describe()
        ))
    })?;
    log(format_args!(
        "{}: {} vectors, R/W section at {rw_off:#x} ({len:#x} bytes)",
        ep.describe(),
        ep.vectors()
    ));
    let section = Section { ptr, len, rw_off };
    let result = 'device: loop {
        let Some(mut backend) = connect_retrying(o) else {
            break Ok(());
        };
        let mut link = match Link::new(&mut ep, &backend, o, &section) {
            Ok(l) => l,
            Err(e) => {
                log(format_args!("{e}"));
                std::thread::sleep(RECONNECT);
                continue;
            }
        };
        // One device, one header: backends come and go under it as long
        // as each takes over from the last.
        loop {
            match session(&mut ep, &mut link, &mut backend, o, &section) {
                Ok(End::Signal) => break 'device Ok(()),
                Ok(End::Lost) => {}
                Err(e) => log(format_args!("{e}")),
            }
            match take_over(&mut ep, &mut link, backend, o, &section) {
                Some(b) => backend = b,
                None => break,
            }
        }
        drop(link);
        if let Err(e) = ep.set_state(0) {
            log(format_args!("cannot clear own state: {e}"));
        }
        log(format_args!(
            "left READY (the frontend fails the device); reconnecting to {}",
            o.backend.display()
        ));
    };
    if let Err(e) = ep.set_state(0) {
        log(format_args!("cannot clear own state: {e}"));
    }
    log(format_args!("stopped"));
    result
}

/// The R/W section in the bridge's address space.
struct Section {
    ptr: *mut u8,
    len: usize,
    /// Its offset in the shared-memory fd.
    rw_off: usize,
}

/// The device as the frontend sees it, kept while backends come and go.
struct Link {
    engine: Engine<VhostDevice>,
    /// The frontend peer, once READY.
    frontend: Option<u32>,
    /// The driver's queues are handed out (to the backend of the moment).
    started: bool,
    /// The in-flight log and doorbell relay of the queues handed out
    /// (with a hold only).
    relay: Option<Relay>,
    /// The queues as the driver set them up when they were handed out: a
    /// take-over hands out these, in this order (the relay's trackers
    /// follow it), whatever the driver toggled since.
    queues: Vec<QueueSetup>,
}

impl Link {
    /// Publishes the device `backend` describes and goes READY.
    fn new(
        ep: &mut PeerEndpoint,
        backend: &Backend,
        o: &BridgeOptions,
        s: &Section,
    ) -> Result<Self> {
        let dev = device_of(
            backend.features,
            backend.queues,
            &backend.config,
            o,
            ep.vectors(),
        )?;
        // SAFETY: the section stays mapped while `ep` lives, which outlives
        // the link and so the engine holding `mem`.
        let mem = unsafe { mem_from_raw(s.ptr, s.len)? };
        let mut engine = Engine::new(
            mem,
            dev,
            Options {
                queue_size: o.queue_size,
                vectors: ep.vectors(),
                verbose: o.verbose,
            },
        )?;
        engine.publish_header();
        ep.set_state(STATE_READY)
            .map_err(|e| Error::Remote(format!("cannot set own state READY: {e}")))?;
        let own = ep.id();
        log(format_args!(
            "{}; features {:#x}; kick vectors {:?}; READY (own id {own})",
            engine.device().summary(),
            engine.offered(),
            engine.device_vectors()
        ));
        Ok(Link {
            engine,
            frontend: find_frontend(&ep.peer_states().unwrap_or_default(), own),
            started: false,
            relay: None,
            queues: Vec::new(),
        })
    }

    /// The frontend peer while the driver runs the device.
    fn live_frontend(&self) -> Option<u16> {
        self.frontend
            .filter(|_| self.engine.live())
            .and_then(|f| u16::try_from(f).ok())
    }
}

/// How a session with one backend ended.
enum End {
    /// SIGINT or SIGTERM.
    Signal,
    /// The backend closed its socket.
    Lost,
}

/// The doorbells and rings of `queues` for a [`Relay`].
fn relay_queues(
    ep: &PeerEndpoint,
    frontend: u16,
    queues: &[QueueSetup],
    s: &Section,
) -> Result<Vec<RelayQueue>> {
    queues
        .iter()
        .map(|q| {
            Ok(RelayQueue {
                kick_in: ep
                    .peer()
                    .own_event_fd(usize::from(q.device_vector))?
                    .try_clone_to_owned()?,
                call_out: ep
                    .peer()
                    .peer_event_fd(frontend, usize::from(q.driver_vector))?
                    .try_clone_to_owned()?,
                // SAFETY: the section stays mapped while `ep` lives, which
                // outlives the link and so the relay.
                ring: unsafe { RingView::new(s.ptr, s.len, q.avail, q.used, q.size)? },
            })
        })
        .collect()
}

/// Hands the driver's queues to `backend`, from `bases` (the used
/// indices; empty: all 0), by `until` if given.
fn hand_out(
    ep: &PeerEndpoint,
    link: &Link,
    backend: &mut Backend,
    frontend: u16,
    bases: &[u16],
    s: &Section,
    until: Option<Instant>,
) -> Result<usize> {
    let queues = &link.queues;
    // CAST: usize to u64 is lossless on the hosts lincell supports.
    let start = Start {
        ep,
        frontend,
        driver_features: link.engine.driver_features(),
        queues,
        bases,
        relay: link.relay.as_ref(),
        until,
        base: s.ptr as u64,
        len: s.len as u64,
        offset: s.rw_off as u64,
        mem_fd: ep.peer().shm_fd(),
    };
    backend.start(&start)?;
    Ok(queues.len())
}

/// The header and vector 0 during a take-over, between its waits: the
/// driver's header writes are answered, a frontend that left is followed
/// and a reset (or the frontend gone) drops what was to be carried over:
/// the driver sets the queues up again, and the next session hands them
/// out afresh. `false`: the ivshmem side failed (the device fails).
fn serve_hold(ep: &mut PeerEndpoint, link: &mut Link) -> bool {
    if let Err(e) = follow_driver(ep, link) {
        log(format_args!("{e}"));
        return false;
    }
    if link.started && link.live_frontend().is_none() {
        log(format_args!(
            "the driver reset the device (or the frontend left) during the hold; nothing to carry over"
        ));
        link.started = false;
        link.relay = None;
    }
    true
}

/// The backend went away: with a hold, waits for its process to end and
/// for the next backend on the socket, and hands it the queues with the
/// requests in flight. `None`: the device fails (the caller leaves READY).
///
/// The whole take-over ends by the hold deadline (plus the watchdog's
/// wake-up and a log line: milliseconds): the wait for the old process,
/// each connect (which never blocks: [`connect_now`]), the new backend's
/// handshake and the hand-out each get at most the time left in the hold
/// ([`Watchdog::arm`]), and past the deadline the device fails as for a
/// backend that never came back. The header and vector 0 are served
/// between the waits ([`serve_hold`]: every [`TICK`] at most while the old
/// process runs, every [`HOLD_RETRY`] between connects), not while a
/// connected backend's handshake or the hand-out is in progress: header
/// writes then wait for the backend's answers, at most until the hold
/// deadline.
fn take_over(
    ep: &mut PeerEndpoint,
    link: &mut Link,
    old: Backend,
    o: &BridgeOptions,
    s: &Section,
) -> Option<Backend> {
    if o.hold.is_zero() || STOP.load(Ordering::SeqCst) {
        return None;
    }
    if link.started && link.live_frontend().is_none() {
        // Reset or frontend gone meanwhile: nothing to carry over.
        link.started = false;
        link.relay = None;
    }
    if link.started
        && !link
            .relay
            .as_ref()
            .is_some_and(|r| r.trackers().iter().all(|t| t.synced()))
    {
        log(format_args!(
            "the in-flight log is not exact; the device fails"
        ));
        return None;
    }
    let t0 = Instant::now();
    let deadline = t0 + o.hold;
    log(format_args!(
        "holding the device READY up to {:?} for a new backend on {}",
        o.hold,
        o.backend.display()
    ));
    // No other backend may touch the rings while the old one can; a
    // started queue is handed over only once its process is known gone.
    match &old.pidfd {
        Some(fd) if !wait_exit(ep, link, fd, deadline) => {
            log(format_args!(
                "the old backend (pid {}) still runs after {:?}; the device fails",
                old.pid, o.hold
            ));
            return None;
        }
        None if link.started => {
            log(format_args!(
                "the old backend's process is unknown (no SO_PEERCRED pid or pidfd); \
                 its requests cannot be handed over safely; the device fails"
            ));
            return None;
        }
        _ => {}
    }
    drop(old);
    let mut backend = loop {
        if STOP.load(Ordering::SeqCst) {
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log(format_args!("no backend took over within {:?}", o.hold));
            return None;
        }
        match Backend::connect(&o.backend, o.kind, Some(deadline)) {
            Ok(b) => break b,
            Err(_) => {
                if !serve_hold(ep, link) {
                    return None;
                }
                // Vector 0 only, so that a header write is served at once.
                let _ = ep.wait(1, HOLD_RETRY.min(left));
                if !serve_hold(ep, link) {
                    return None;
                }
            }
        }
    };
    if Instant::now() >= deadline {
        // The watchdog may have cut the socket after the last answer.
        log(format_args!(
            "the new backend (pid {}) answered past the hold; the device fails",
            backend.pid
        ));
        return None;
    }
    let same = device_of(
        backend.features,
        backend.queues,
        &backend.config,
        o,
        ep.vectors(),
    )
    .is_ok_and(|d| {
        let e = link.engine.device();
        d.id == e.id && d.features == e.features && d.queues == e.queues && d.config == e.config
    });
    if !same {
        log(format_args!(
            "the new backend (pid {}) describes another device; the device fails",
            backend.pid
        ));
        return None;
    }
    let mut resubmitted = 0;
    if link.started {
        let (Some(f), Some(relay)) = (link.live_frontend(), link.relay.as_ref()) else {
            return None;
        };
        let Some(hand) = relay
            .trackers()
            .iter_mut()
            .map(relay::Tracker::hand_over)
            .collect::<Option<Vec<_>>>()
        else {
            log(format_args!(
                "the in-flight log is not exact; the device fails"
            ));
            return None;
        };
        let bases: Vec<u16> = hand.iter().map(|h| h.base).collect();
        resubmitted = hand.iter().map(|h| h.resubmitted).sum();
        if let Err(e) = hand_out(ep, link, &mut backend, f, &bases, s, Some(deadline)) {
            log(format_args!("the new backend refused the queues: {e}"));
            return None;
        }
        if Instant::now() >= deadline {
            // The watchdog may have cut the socket after the last request.
            log(format_args!(
                "the hand-out to the new backend ended past the hold; the device fails"
            ));
            return None;
        }
        relay.nudge();
    }
    log(format_args!(
        "backend pid {} took over in {} ms: {resubmitted} request(s) in flight resubmitted; the device stayed READY",
        backend.pid,
        t0.elapsed().as_millis()
    ));
    Some(backend)
}

/// The driver's side of the header: follows the frontend peer (a new one,
/// or the old one gone: the queues are detached) and answers the header
/// transactions pending.
fn follow_driver(ep: &PeerEndpoint, link: &mut Link) -> Result<()> {
    let states = ep
        .peer_states()
        .map_err(|e| Error::Remote(format!("peer states: {e}")))?;
    let now = find_frontend(&states, ep.id());
    if now != link.frontend {
        if let Some(old) = link.frontend {
            log(format_args!(
                "frontend peer {old} left READY; queues stopped"
            ));
            link.engine.detach();
        }
        if let Some(n) = now {
            log(format_args!("frontend is peer {n}"));
        }
        link.frontend = now;
    }
    while link.engine.poll_transaction() {}
    Ok(())
}

/// Serves the device with one backend connection.
fn session(
    ep: &mut PeerEndpoint,
    link: &mut Link,
    backend: &mut Backend,
    o: &BridgeOptions,
    s: &Section,
) -> Result<End> {
    loop {
        if STOP.load(Ordering::SeqCst) {
            if link.started {
                let _ = backend.stop();
            }
            return Ok(End::Signal);
        }
        // Vector 0 only: the queues' kick vectors belong to the backend
        // (or to the relay).
        let watch = backend.watch.try_clone()?;
        match ep.wait_or(1, TICK, watch.as_fd()) {
            Ok(_) => {}
            Err(e) if waited_out(&e) => {}
            Err(e) => return Err(Error::Remote(format!("wait: {e}"))),
        }
        if backend.gone() {
            log(format_args!("vhost-user backend closed its socket"));
            return Ok(End::Lost);
        }
        follow_driver(ep, link)?;
        let live = link.live_frontend();
        if link.started && live.is_none() {
            link.started = false;
            link.relay = None;
            backend.stop()?;
            log(format_args!("queues stopped at the backend"));
        } else if let (false, Some(f)) = (link.started, live) {
            link.queues = link.engine.enabled_queues();
            if !o.hold.is_zero() {
                link.relay = Some(Relay::start(relay_queues(ep, f, &link.queues, s)?)?);
            }
            // Started before the first queue is: a backend lost half-way
            // through leaves queues running, and the take-over must hand
            // them over from the log, not start them again from 0.
            link.started = true;
            let n = hand_out(ep, link, backend, f, &[], s, None)?;
            log(format_args!(
                "{n} queue(s) handed to the backend (features {:#x}); data path: guest <-> backend{}",
                link.engine.driver_features(),
                if link.relay.is_some() {
                    ", doorbells through the bridge's in-flight log"
                } else {
                    ""
                }
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kind: &str, readonly: bool) -> BridgeOptions {
        BridgeOptions {
            ivshmem: PathBuf::from("/nonexistent/iv.sock"),
            backend: PathBuf::from("/nonexistent/vu.sock"),
            // PANIC: a known kind.
            kind: parse_kind(kind).expect("kind"),
            queue_size: 256,
            readonly,
            verbose: false,
            hold: Duration::ZERO,
        }
    }

    #[test]
    fn kinds_parse() {
        assert_eq!(
            parse_kind("blk").ok(),
            Some(Kind {
                id: 2,
                config_len: 60
            })
        );
        assert_eq!(
            parse_kind("fs").ok(),
            Some(Kind {
                id: 26,
                config_len: 40
            })
        );
        assert_eq!(
            parse_kind("vsock").ok(),
            Some(Kind {
                id: 19,
                config_len: 8
            })
        );
        assert_eq!(
            parse_kind("42").ok(),
            Some(Kind {
                id: 42,
                config_len: 0
            })
        );
        assert!(parse_kind("0").is_err());
        assert!(parse_kind("disk").is_err());
        assert!(parse_kind("70000").is_err());
    }

    /// What qemu-storage-daemon 7.2's vhost-user-blk offers (measured).
    const QSD_FEATURES: u64 = 0x1_7500_7e46;

    #[test]
    fn blk_hides_mq_and_transport_bits() {
        let d = device_of(QSD_FEATURES, 4, &[0; 60], &opts("blk", false), 4).expect("device");
        assert_eq!(d.queues, 1);
        assert_eq!(d.features & 1 << BLK_F_MQ, 0);
        assert_eq!(d.features & !DEVICE_FEATURES, 0);
        assert_ne!(d.features & 1 << BLK_F_DISCARD, 0);
        assert_eq!(d.config.len(), 60);
    }

    #[test]
    fn readonly_blk() {
        let d = device_of(QSD_FEATURES, 1, &[], &opts("blk", true), 4).expect("device");
        assert_ne!(d.features & 1 << BLK_F_RO, 0);
        assert_eq!(
            d.features & (1 << BLK_F_DISCARD | 1 << BLK_F_WRITE_ZEROES),
            0
        );
    }

    #[test]
    fn queues_need_vectors() {
        assert!(device_of(1 << 32, 1, &[], &opts("rng", false), 1).is_err());
        let d = device_of(1 << 32, 5, &[], &opts("fs", false), 3).expect("device");
        assert_eq!(d.queues, 2);
        assert!(device_of(1 << 32, 1, &[0; 300], &opts("42", false), 4).is_err());
    }

    #[test]
    fn dead_socket_fails_fast() {
        let e = Backend::connect(
            Path::new("/nonexistent/vu.sock"),
            Kind {
                id: id::BLK,
                config_len: 60,
            },
            None,
        );
        assert!(e.is_err());
    }

    /// A vhost-user "backend" listening in a private directory named after
    /// `tag`; the directory, the socket path and the listener.
    fn listening(tag: &str) -> (PathBuf, PathBuf, std::os::unix::net::UnixListener) {
        let dir = std::env::temp_dir().join(format!("lincell-bridge-{tag}{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("vu.sock");
        let _ = std::fs::remove_file(&path);
        // PANIC: a fresh path in a private directory.
        let l = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        (dir, path, l)
    }

    /// `Backend::connect` to `path` as a blk device fails.
    fn connect_fails(path: &Path) -> bool {
        Backend::connect(
            path,
            Kind {
                id: id::BLK,
                config_len: 60,
            },
            None,
        )
        .is_err()
    }

    #[test]
    fn backend_that_closes_is_an_error_not_a_hang() {
        let (dir, path, l) = listening("");
        let t = std::thread::spawn(move || {
            // Accept and close at once: the bridge's first reply never comes.
            let _ = l.accept();
        });
        let start = std::time::Instant::now();
        assert!(connect_fails(&path));
        assert!(start.elapsed() < REPLY_TIMEOUT + Duration::from_secs(1));
        let _ = t.join();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn backend_that_never_answers_times_out() {
        let (dir, path, l) = listening("mute-");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            // Accept, then hold the connection open without a word (a
            // stopped backend) until the test is done.
            let c = l.accept();
            let _ = rx.recv();
            drop(c);
        });
        let start = std::time::Instant::now();
        assert!(connect_fails(&path));
        let took = start.elapsed();
        assert!(
            took >= REPLY_TIMEOUT - Duration::from_millis(100),
            "{took:?}"
        );
        assert!(took < REPLY_TIMEOUT * 2, "{took:?}");
        let _ = tx.send(());
        let _ = t.join();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
