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
//! upgrade the guest does not notice. Otherwise (no hold, a different
//! device, a log that lost track, or no backend in time) the bridge leaves
//! READY (the frontend fails the device) and reconnects every [`RECONNECT`]
//! until the backend is back, then publishes a fresh header and goes READY
//! again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Connects and asks the backend what it is.
    fn connect(path: &Path, kind: Kind) -> Result<Self> {
        let sock = UnixStream::connect(path)
            .map_err(|e| Error::Remote(format!("{}: {e}", path.display())))?;
        let watch = sock.try_clone()?;
        let (pid, pidfd) = peer_process(&sock);
        let watchdog = Watchdog::new(sock.try_clone()?);
        let mut frontend = Frontend::from_stream(sock, 1);
        let armed = watchdog.arm();
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
        let _armed = self.watchdog.arm();
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
        let _armed = self.watchdog.arm();
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
/// ([`Watchdog::arm`]) for longer than [`REPLY_TIMEOUT`], a thread shuts
/// the socket down: the pending receive then sees end of file and the
/// request fails.
struct Watchdog {
    shared: Arc<WatchShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the watchdog thread and its owner share.
struct WatchShared {
    /// When the armed phase must be over; `None`: disarmed.
    deadline: Mutex<Option<Instant>>,
    /// The owner is gone: the thread ends.
    quit: AtomicBool,
}

/// An armed [`Watchdog`]; disarms it when dropped.
struct Armed<'a>(&'a WatchShared);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        if let Ok(mut d) = self.0.deadline.lock() {
            *d = None;
        }
    }
}

impl Watchdog {
    /// A watchdog over `sock` (a clone of the backend's socket).
    fn new(sock: UnixStream) -> Self {
        let shared = Arc::new(WatchShared {
            deadline: Mutex::new(None),
            quit: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vhost-user watchdog".into())
            .spawn(move || {
                while !s.quit.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    let late = s
                        .deadline
                        .lock()
                        .map(|d| d.is_some_and(|d| Instant::now() >= d))
                        .unwrap_or(true);
                    if late {
                        log(format_args!(
                            "the vhost-user backend did not answer within {REPLY_TIMEOUT:?}; disconnecting"
                        ));
                        let _ = sock.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                }
            })
            .ok();
        Watchdog { shared, thread }
    }

    /// Arms the watchdog until the returned guard drops.
    fn arm(&self) -> Armed<'_> {
        if let Ok(mut d) = self.shared.deadline.lock() {
            *d = Some(Instant::now() + REPLY_TIMEOUT);
        }
        Armed(&self.shared)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// Waits until the process of `pidfd` has ended or `deadline`; whether it
/// ended.
fn wait_exit(pidfd: &OwnedFd, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        if left.is_zero() || STOP.load(Ordering::SeqCst) {
            return false;
        }
        // CAST: at most 100 ms (a stop request is seen between slices).
        let ms = left.as_millis().min(100) as libc::c_int;
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, ms) };
        if n > 0 {
            return true;
        }
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
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
        match Backend::connect(&o.backend, o.kind) {
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
            match take_over(&ep, &mut link, backend, o, &section) {
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
/// indices; empty: all 0).
fn hand_out(
    ep: &PeerEndpoint,
    link: &Link,
    backend: &mut Backend,
    frontend: u16,
    bases: &[u16],
    s: &Section,
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
        base: s.ptr as u64,
        len: s.len as u64,
        offset: s.rw_off as u64,
        mem_fd: ep.peer().shm_fd(),
    };
    backend.start(&start)?;
    Ok(queues.len())
}

/// The backend went away: with a hold, waits for its process to end and
/// for the next backend on the socket, and hands it the queues with the
/// requests in flight. `None`: the device fails (the caller leaves READY).
fn take_over(
    ep: &PeerEndpoint,
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
        Some(fd) if !wait_exit(fd, deadline) => {
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
        if Instant::now() >= deadline {
            log(format_args!("no backend took over within {:?}", o.hold));
            return None;
        }
        match Backend::connect(&o.backend, o.kind) {
            Ok(b) => break b,
            Err(_) => std::thread::sleep(HOLD_RETRY),
        }
    };
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
        if let Err(e) = hand_out(ep, link, &mut backend, f, &bases, s) {
            log(format_args!("the new backend refused the queues: {e}"));
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

/// Serves the device with one backend connection.
fn session(
    ep: &mut PeerEndpoint,
    link: &mut Link,
    backend: &mut Backend,
    o: &BridgeOptions,
    s: &Section,
) -> Result<End> {
    let own = ep.id();
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
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(Error::Remote(format!("wait: {e}"))),
        }
        if backend.gone() {
            log(format_args!("vhost-user backend closed its socket"));
            return Ok(End::Lost);
        }
        let states = ep
            .peer_states()
            .map_err(|e| Error::Remote(format!("peer states: {e}")))?;
        let now = find_frontend(&states, own);
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
            let n = hand_out(ep, link, backend, f, &[], s)?;
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
                id: 2,
                config_len: 60,
            },
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
                id: 2,
                config_len: 60,
            },
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
