// SPDX-License-Identifier: GPL-2.0

//! `lincell remote`: userspace backends for vdev-remote, the
//! virtio-over-ivshmem transport (`vdev_remote.ko` is the frontend).
//!
//! - [`mem`]: the R/W section as guest memory, header accessors;
//! - [`engine`]: the header protocol, virtqueues, completions, faults;
//! - [`blk`], [`console`], [`net`]: the device models;
//! - [`runner`]: the daemon loop over an ivshmem endpoint;
//! - [`bridge`]: a vhost-user backend behind the transport (`vhost-user`).
//!
//! Disks are measured with fio (bench/vdev-blk.sh, bench/fio/).

mod blk;
mod bridge;
mod console;
mod engine;
mod mem;
mod net;
mod runner;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::{Error, Result};
use crate::ivshmem::endpoint::{Endpoint, PeerEndpoint, Target, WaitMode};

use engine::{log, Device, Fault};
use runner::RunOptions;

/// Arguments of `lincell remote`.
#[derive(Parser, Debug)]
#[command(
    about = "Serve virtio devices to a vdev-remote frontend over ivshmem",
    long_about = "\
Serve virtio devices to a vdev_remote.ko frontend over ivshmem shared memory
(virtio-over-ivshmem, the Jailhouse virtio_ivshmem wire format).

The backend owns the virtio header at the start of the ivshmem R/W section,
answers the frontend's register writes, and processes its split virtqueues,
whose rings and buffers live in the same section. It runs in a guest on a
/dev/ivshmemN of ivshmem.ko (DEV) or on the host as a peer of an
ivshmem-server (--socket PATH)."
)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

impl Args {
    /// What error messages of this subcommand start with.
    pub fn prefix(&self) -> &'static str {
        match self.cmd {
            Cmd::Serve(_) => "lincell remote",
            Cmd::VhostUser(_) => "lincell remote vhost-user",
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    Serve(ServeArgs),
    VhostUser(VhostUserArgs),
}

/// Bridge one virtio-over-ivshmem device to a vhost-user backend (host
/// peer only).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Serve one virtio device to a vdev-remote frontend through an existing
vhost-user backend (qemu-storage-daemon, virtiofsd, vhost-device-*): the
bridge joins the ivshmem server at --socket as a host peer and connects to
the backend's UNIX socket at --backend as its vhost-user frontend.

The backend describes the device: its virtio features (GET_FEATURES), queue
count (GET_QUEUE_NUM with protocol feature MQ, else 1) and config space
(GET_CONFIG with protocol feature CONFIG, the size given by --device). The
bridge writes the virtio-over-ivshmem header from them as lincell's own
backends do, and answers the frontend's negotiation itself. It offers only
what vdev_remote implements: never INDIRECT_DESC, EVENT_IDX, RING_PACKED,
IN_ORDER or NOTIFICATION_DATA; always VERSION_1 (the backend must offer it),
ACCESS_PLATFORM and ORDER_PLATFORM (the transport's, not passed on). For
virtio-blk the MQ feature is hidden (one request queue) and --readonly adds
VIRTIO_BLK_F_RO and hides DISCARD and WRITE_ZEROES.

When the driver sets DRIVER_OK the bridge hands the backend: the ivshmem R/W
section as its one memory region (SET_MEM_TABLE: guest address 0, the
section's offset in the shared-memory fd, so descriptor addresses, which
are section offsets, are guest addresses), each enabled queue's size and
ring addresses (SET_VRING_NUM, SET_VRING_ADDR in the bridge's mapping,
SET_VRING_BASE 0), as kick fd the bridge's own eventfd of the queue's kick
vector (queue i is kicked on vector 1+i) and as call fd the frontend peer's
eventfd of the vector the driver chose for the queue (SET_VRING_KICK,
SET_VRING_CALL, SET_VRING_ENABLE). The data path then runs between the
guest's rings and the backend; the bridge only watches vector 0 (header
writes, state changes) and the socket. A device reset or the frontend
leaving READY stops the queues (SET_VRING_ENABLE 0, GET_VRING_BASE).

The ivshmem device needs a vector per queue besides vector 0 (queues beyond
that are not offered).

In-service upgrade: with --hold-ms above 0 (the default for blk: 5000) the kick
and call fds the backend gets are eventfds of the bridge, and a relay
thread forwards each doorbell, scanning the rings first: the bridge keeps
a log of the requests in flight (heads made available, not yet used).
When the backend closes its socket, the bridge stays READY, waits for the
backend process to end (its pid from SO_PEERCRED), connects to the next
backend on the same socket, checks that it describes the same device,
writes the heads still in flight, oldest first, into the avail slots from
the used index on and hands over the queues with SET_VRING_BASE at that
used index: the new backend executes exactly the requests the old one left
unanswered, once each (a request it executed but did not complete is
executed again, which is harmless for a disk: the same data goes to the
same sectors), then those queued meanwhile. Completions the old backend
published but did not signal are the driver's: the bridge raises the
frontend's interrupt once after the hand-over. The guest sees a pause, no
error, as long as the hold is shorter than vdev_remote's
request_timeout_ms (10 s by default). qemu-storage-daemon 7.2 does not
offer VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, hence the bridge's own log.
--hold-ms 0 gives the backend the ivshmem doorbells directly (one relay hop
fewer each way) and no hold.

If the backend closes its socket or leaves a request unanswered for 5 s and
no backend takes over within the hold (or the new one describes another
device, or the in-flight log lost track: more than a ring's worth of
entries between two scans), the bridge sets its ivshmem state to 0 (the
frontend fails the device, its I/O errors), reconnects every 0.5 s, and
once the backend answers publishes a fresh header and goes READY again (the
frontend re-attaches).

SIGINT or SIGTERM stops the bridge: the queues are stopped at the backend
and the own state goes to 0.

Exit status: 0 stopped by a signal; 1 runtime error (ivshmem server,
shared memory); 2 usage error.",
    after_help = "\
Examples:
  ivshmem-server -F -S /tmp/ivshmem.sock -l 16M -n 4 &
  qemu-storage-daemon --blockdev driver=file,node-name=f,filename=disk.img \\
      --export type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path=/tmp/vu.sock,writable=on &
  lincell remote vhost-user --socket /tmp/ivshmem.sock --backend /tmp/vu.sock"
)]
struct VhostUserArgs {
    /// The ivshmem server's socket (the bridge is a host peer).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// The vhost-user backend's UNIX socket.
    #[arg(long, value_name = "PATH")]
    backend: PathBuf,
    /// The device kind: blk, net, console, rng, vsock, fs (sets the virtio
    /// device id and the config size asked from the backend) or a virtio
    /// device id (no config space). vdev_remote binds blk, net and console
    /// only.
    #[arg(long, value_name = "KIND", default_value = "blk", value_parser = bridge::parse_kind)]
    device: bridge::Kind,
    /// virtio-blk: offer VIRTIO_BLK_F_RO (the driver then never writes).
    #[arg(long)]
    readonly: bool,
    /// Largest queue size offered (a power of two).
    #[arg(long, value_name = "N", default_value = "256", value_parser = parse_queue_size)]
    queue_size: u16,
    /// How long the device stays READY while the backend is replaced
    /// (in-service upgrade, see above), at most 60000; 0: no hold, the
    /// backend gets the doorbells directly and a backend lost fails the
    /// device. Default 5000 for blk, 0 for the others; refused for fs and
    /// vsock, whose backends keep state a new process does not have.
    #[arg(long, value_name = "MS")]
    hold_ms: Option<u64>,
    /// Log every header write.
    #[arg(short, long)]
    verbose: bool,
}

/// How the console is connected.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ConsoleSpec {
    /// stdin/stdout.
    Stdio,
    /// A UNIX stream socket to listen on.
    Unix(PathBuf),
}

/// Parses `--console` (clap value parser).
fn parse_console(s: &str) -> Result<ConsoleSpec> {
    if s == "stdio" {
        return Ok(ConsoleSpec::Stdio);
    }
    match s.strip_prefix("unix:") {
        Some(p) if !p.is_empty() => Ok(ConsoleSpec::Unix(p.into())),
        _ => Err(Error::Usage(format!(
            "`{s}`: expected `stdio` or `unix:PATH`"
        ))),
    }
}

/// Where virtio-net frames go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NetSpec {
    /// A TAP device of this name.
    Tap(String),
}

/// Parses `--net` (clap value parser).
fn parse_net(s: &str) -> Result<NetSpec> {
    match s.strip_prefix("tap:") {
        Some(name) => {
            net::tap::check_name(name)?;
            Ok(NetSpec::Tap(name.into()))
        }
        None => Err(Error::Usage(format!("`{s}`: expected `tap:IFNAME`"))),
    }
}

/// Parses `--mtu` (clap value parser).
fn parse_mtu(s: &str) -> Result<u16> {
    let range = || {
        Error::Usage(format!(
            "MTU `{s}` is not a number from {} to {}",
            net::MIN_MTU,
            net::MAX_MTU
        ))
    };
    let n: u16 = s.parse().map_err(|_| range())?;
    if !(net::MIN_MTU..=net::MAX_MTU).contains(&n) {
        return Err(range());
    }
    Ok(n)
}

/// Parses `--queue-size` (clap value parser).
fn parse_queue_size(s: &str) -> Result<u16> {
    let n: u16 = s
        .parse()
        .map_err(|_| Error::Usage(format!("`{s}` is not a number from 2 to 32768")))?;
    if n < 2 || !n.is_power_of_two() {
        return Err(Error::Usage(format!(
            "queue size {n} must be a power of two from 2 to 32768"
        )));
    }
    Ok(n)
}

/// Serve one virtio device (block, console or network) to a vdev-remote
/// frontend.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
Serve one virtio device to a vdev-remote frontend: virtio-blk backed by a
file or block device (--blk), virtio-console connected to stdio or a UNIX
socket (--console), or virtio-net attached to a TAP device (--net).

Start-up: the backend maps the shared memory. On QEMU ivshmem (v1) memory it
creates lincell's v1 section layout if the memory is blank (or joins the one
a peer created) and records the protocol (0x8000 | virtio device id) in it;
on an ivshmem 2.0 device the device's sections are used as they are. It then
clears the first 4 KiB of the R/W section, writes the virtio header (device
features, config, queue limits, revision last) and sets its ivshmem state to
1 (READY). Its frontend is the lowest-numbered other peer whose state is 1,
re-evaluated on every state change. When the frontend leaves READY the queues
are disabled and the backend waits for it to come back and renegotiate.

Queue i is kicked by the frontend on vector 1+i if the backend has more than
1+i vectors, else on vector 0; vector 0 also carries register writes and state
changes. Every wake-up (and a periodic tick) handles pending register writes
and all enabled queues. Completions ring the frontend on the vector it chose
per queue.

Everything the frontend writes is validated: ring and buffer addresses must
lie inside the R/W section, chains are bounded, sectors must be in range.
Bad requests complete with VIRTIO_BLK_S_IOERR or are dropped with a log line.

Offered features: VERSION_1, ACCESS_PLATFORM, ORDER_PLATFORM, and for
virtio-blk BLK_SIZE (512), SEG_MAX (queue size - 2, at most 126), SIZE_MAX
(128 KiB), FLUSH, RO (--readonly) and DISCARD (regular files, by punching
holes); never INDIRECT_DESC, EVENT_IDX or RING_PACKED. virtio-console has
one port (no MULTIPORT): receiveq 0 carries input to the guest, transmitq 1
its output. virtio-net offers MAC, STATUS (link up) and MTU, and no
checksum or segmentation offload (no CSUM, GUEST_CSUM, TSO, UFO or
MRG_RXBUF): receiveq 0 carries frames to the guest, transmitq 1 frames from
it, each behind a 12-byte virtio_net_hdr; there is no control queue. A
transmitted frame shorter than an Ethernet header, longer than the MTU plus
18 bytes (Ethernet header and one VLAN tag), or whose header asks for an
offload is dropped and counted; so is a frame from the TAP that does not fit
the guest's receive buffer. The counters are logged when the backend stops.

Policy: the device, not the guest, decides what the guest may do. virtio-net
drops (and counts) transmitted frames whose source address is not the
device's MAC unless --allow-any-mac is given, and frames over --rate-limit.
virtio-blk exports the whole file or only --range OFFSET:LENGTH of it,
read-only with --readonly; a request outside what is exported fails.

The network data path is one thread and one event loop: each wake-up (a
doorbell, or the TAP readable) drains every available transmit chain (up to
a ring per queue), fills receive chains while frames are pending at the TAP,
and rings each completed queue's vector once. While a frame waits for a
receive buffer the TAP is not polled; the guest's refill kick wakes the
backend.

SIGINT or SIGTERM stops the backend cleanly: the request in hand completes,
the file is fdatasync'ed, the own state goes to 0 (vector 0 rung to the
others). Restarting it rewrites the header and the frontend re-attaches
(for virtio-net the guest gets a new network interface: addresses and
routes must be set again).

Logs go to stderr: a start-up summary, negotiation, state changes and
errors, and at the stop the requests, wake-ups, doorbells rung and CPU time
used (and the frame counters of virtio-net); -v adds a line per request.

Exit status: 0 stopped by a signal; 1 runtime error (device, memory, TAP,
backing file); 2 usage error.",
    after_help = "\
Examples:
  ivshmem-server -F -S /tmp/ivshmem.sock -l 16M -n 4 &
  lincell remote serve --socket /tmp/ivshmem.sock --blk disk.img
  lincell remote serve /dev/ivshmem0 --console unix:/tmp/hvc.sock
  ip tuntap add dev lct0 mode tap && ip addr add 10.0.0.1/24 dev lct0 && ip link set lct0 up
  lincell remote serve --socket /tmp/ivshmem.sock --net tap:lct0 --mac 02:00:00:00:00:02
  lincell remote serve --socket /tmp/ivshmem.sock --blk disk.img --range 1M:64M --readonly
  lincell remote serve --socket /tmp/ivshmem.sock --net tap:lct0 --rate-limit 10M
  lincell remote serve --socket /tmp/ivshmem.sock --blk disk.img --fault stall"
)]
struct ServeArgs {
    /// The ivshmem device (/dev/ivshmemN), or the ivshmem server's socket.
    #[arg(value_name = "DEV")]
    dev: Option<PathBuf>,
    /// Join the ivshmem server at PATH as a host peer instead of using DEV.
    #[arg(long, value_name = "PATH", conflicts_with = "dev")]
    socket: Option<PathBuf>,
    /// Serve virtio-blk backed by FILE (a regular file or block device);
    /// the capacity is its size rounded down to 512 bytes.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["console", "net"],
        conflicts_with_all = ["console", "net"]
    )]
    blk: Option<PathBuf>,
    /// Open the --blk file read-only and offer VIRTIO_BLK_F_RO.
    ///
    /// With --range, only the range is exported, and read-only.
    #[arg(long, requires = "blk")]
    readonly: bool,
    /// Export only LENGTH bytes of the --blk file starting at byte OFFSET:
    /// the guest sees a disk of LENGTH bytes (capacity LENGTH/512 sectors)
    /// whose sector 0 is byte OFFSET of the file, like one partition of a
    /// larger image.
    ///
    /// Every request is checked against LENGTH before OFFSET is added: a
    /// read, write or discard that crosses the end of the range fails as a
    /// whole with VIRTIO_BLK_S_IOERR and nothing outside the range is ever
    /// read or written. Both numbers are bytes with an optional K, M, G or
    /// T suffix (powers of 1024) and multiples of 512; LENGTH is above 0
    /// and OFFSET+LENGTH must not exceed the file's size. Combines with
    /// --readonly (the range is then read-only). Default: the whole file.
    #[arg(long, value_name = "OFFSET:LENGTH", requires = "blk")]
    range: Option<blk::range::ByteRange>,
    /// Serial number returned by GET_ID (at most 20 bytes; default: the
    /// file name, cut to 20 bytes).
    #[arg(long, value_name = "ID", requires = "blk")]
    serial: Option<String>,
    /// Serve virtio-console: `stdio` (guest output to stdout, stdin to the
    /// guest) or `unix:PATH` (listen on a UNIX stream socket at PATH, one
    /// client at a time; a stale socket is replaced).
    #[arg(long, value_name = "stdio|unix:PATH", value_parser = parse_console, conflicts_with = "net")]
    console: Option<ConsoleSpec>,
    /// Serve virtio-net attached to the TAP device IFNAME (IFF_TAP |
    /// IFF_NO_PI on /dev/net/tun): an existing, persistent TAP (`ip tuntap
    /// add dev IFNAME mode tap`) keeps its addresses across backend
    /// restarts; otherwise the kernel creates one that disappears with the
    /// backend. The TAP lives in the backend's network namespace (run the
    /// backend with `ip netns exec NS` to put it in NS); bringing it up and
    /// addressing it is left to the caller. Needs CAP_NET_ADMIN, or a
    /// persistent TAP owned by the user.
    #[arg(long, value_name = "tap:IFNAME", value_parser = parse_net)]
    net: Option<NetSpec>,
    /// The guest's MAC address (VIRTIO_NET_F_MAC), XX:XX:XX:XX:XX:XX,
    /// unicast and not zero (default: a locally administered address
    /// derived from IFNAME, 02:6c:63:..., the same at every start).
    #[arg(long, value_name = "MAC", requires = "net")]
    mac: Option<net::Mac>,
    /// The link's MTU (VIRTIO_NET_F_MTU), 68 to 65000: offered to the guest
    /// and set on the TAP (default: the TAP's own MTU, 1500 for a new one).
    #[arg(long, value_name = "BYTES", requires = "net", value_parser = parse_mtu)]
    mtu: Option<u16>,
    /// Turn the source-MAC lock off.
    ///
    /// By default a frame the guest transmits whose Ethernet source address
    /// is not the device's MAC (--mac) is dropped and counted (`source MAC`
    /// in the stop line; the first one is logged), so a guest cannot pose
    /// as another cell or as the host, and a guest that changes its own
    /// address (`ip link set dev X address ...`) loses the link. Turn it
    /// off for a guest that bridges other addresses (a bridge or a VM
    /// inside it).
    #[arg(long, requires = "net")]
    allow_any_mac: bool,
    /// Limit what the guest transmits to RATE bytes per second (Ethernet
    /// frames without the virtio header; receive is not limited).
    ///
    /// A token bucket refilled at RATE and holding --rate-burst bytes: a
    /// frame larger than the tokens left is dropped and counted (`rate
    /// limit` in the stop line; the first one is logged), as a policer
    /// does; it is not delayed, which would hold the guest's transmit ring.
    /// TCP slows down to the rate by itself; UDP senders lose what is over
    /// it. RATE is bytes per second with an optional decimal suffix k
    /// (1000), M (10^6) or G (10^9): 125k is one Mbit/s. Default: no limit.
    #[arg(long, value_name = "RATE", requires = "net", value_parser = net::policy::parse_rate)]
    rate_limit: Option<u64>,
    /// The rate limit's bucket size in bytes: how much the guest may send
    /// at once after being idle (default: a tenth of a second at RATE, at
    /// least two largest frames). At least the largest frame (MTU + 18
    /// bytes), else such a frame could never pass; accepts the suffixes of
    /// RATE.
    #[arg(long, value_name = "BYTES", requires = "rate_limit", value_parser = net::policy::parse_rate)]
    rate_burst: Option<u64>,
    /// Largest queue size offered (a power of two).
    #[arg(long, value_name = "N", default_value = "256", value_parser = parse_queue_size)]
    queue_size: u16,
    /// Test aid: misbehave after --fault-after completed requests so that the
    /// frontend's validation can be exercised. bad-used-index publishes a
    /// used index 1000 ahead, bad-used-id completes with an id >= the queue
    /// size, bad-used-len reports more bytes than the writable buffers
    /// hold, stall stops completing (while staying READY).
    #[arg(long, value_name = "MODE")]
    fault: Option<Fault>,
    /// Completed requests before --fault starts (a disk's probe reads a few
    /// sectors: make it larger to let the device come up first).
    #[arg(long, value_name = "N", default_value_t = engine::FAULT_AFTER, requires = "fault")]
    fault_after: u64,
    /// Log every request.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs `lincell remote`.
pub fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Serve(a) => serve(&a),
        Cmd::VhostUser(a) => {
            if a.readonly && a.device.id != 2 {
                return Err(Error::Usage("--readonly is for --device blk".into()));
            }
            bridge::run(&bridge::BridgeOptions {
                ivshmem: a.socket,
                backend: a.backend,
                kind: a.device,
                queue_size: a.queue_size,
                readonly: a.readonly,
                verbose: a.verbose,
                hold: bridge::hold_for(&a.device, a.hold_ms)?,
            })
        }
    }
}

/// `lincell remote serve`: errors after the arguments were accepted are
/// [`Error::Remote`] (exit status 1).
fn serve(a: &ServeArgs) -> Result<()> {
    if let Some(s) = &a.serial {
        if s.len() > 20 {
            return Err(Error::Usage(format!(
                "--serial {s:?} is longer than 20 bytes"
            )));
        }
    }
    // clap's `requires` does not hold within this subcommand: check here.
    if a.net.is_none()
        && (a.mac.is_some()
            || a.mtu.is_some()
            || a.allow_any_mac
            || a.rate_limit.is_some()
            || a.rate_burst.is_some())
    {
        return Err(Error::Usage(
            "--mac, --mtu, --allow-any-mac, --rate-limit and --rate-burst need --net".into(),
        ));
    }
    if a.rate_burst.is_some() && a.rate_limit.is_none() {
        return Err(Error::Usage("--rate-burst needs --rate-limit".into()));
    }
    if a.blk.is_none() && a.range.is_some() {
        return Err(Error::Usage("--range needs --blk".into()));
    }
    let target = Target::resolve(a.dev.as_deref(), a.socket.as_deref(), None)?;
    let remote = |e: std::io::Error| Error::Remote(e.to_string());
    if let Some(NetSpec::Tap(name)) = &a.net {
        let tap = net::tap::Tap::open(name)?;
        let mtu = match a.mtu {
            Some(m) => {
                if tap.mtu().ok() != Some(m) {
                    tap.set_mtu(m)?;
                }
                m
            }
            None => tap.mtu()?.clamp(net::MIN_MTU, net::MAX_MTU),
        };
        let mac = a.mac.unwrap_or_else(|| net::Mac::derived(tap.name()));
        let max_frame = net::Net::<net::tap::Tap>::max_frame_len(mtu);
        if let Some(b) = a.rate_burst {
            // CAST: usize to u64 is lossless on every supported target.
            if b < max_frame as u64 {
                return Err(Error::Usage(format!(
                    "--rate-burst {b} is below the largest frame ({max_frame} bytes at MTU {mtu}): such frames could never pass"
                )));
            }
        }
        let rate = a
            .rate_limit
            .map(|r| {
                let burst = a
                    .rate_burst
                    .unwrap_or_else(|| net::policy::default_burst(r, max_frame));
                net::policy::TokenBucket::new(r, burst, std::time::Instant::now())
            })
            .transpose()?;
        let policy = net::policy::Policy {
            mac_lock: !a.allow_any_mac,
            rate,
        };
        let d = net::Net::new(tap, mac, mtu, a.verbose)?.with_policy(policy);
        return start(&target, d, a, Duration::from_millis(100));
    }
    match (&a.blk, &a.console) {
        (Some(path), _) => {
            let serial = a
                .serial
                .clone()
                .unwrap_or_else(|| blk::default_serial(path));
            let mut d = blk::Blk::open(path, a.readonly, &serial, a.queue_size, a.verbose)
                .map_err(remote)?;
            if let Some(r) = a.range {
                d = d.with_range(r)?;
            }
            start(&target, d, a, Duration::from_millis(100))
        }
        (None, Some(ConsoleSpec::Stdio)) => start(
            &target,
            console::Console::stdio(a.verbose),
            a,
            Duration::from_millis(10),
        ),
        (None, Some(ConsoleSpec::Unix(p))) => {
            let d = console::Console::unix(p, a.verbose).map_err(remote)?;
            start(&target, d, a, Duration::from_millis(10))
        }
        (None, None) => Err(Error::Usage(
            "give --blk FILE, --console stdio|unix:PATH or --net tap:IFNAME".into(),
        )),
    }
}

/// Opens the endpoint (preparing v1 memory on the host) and serves.
fn start<D: Device>(target: &Target, dev: D, a: &ServeArgs, tick: Duration) -> Result<()> {
    let ep: Box<dyn Endpoint> = match target {
        Target::Socket(s) => {
            let ep = PeerEndpoint::connect(s)
                .map_err(|e| Error::Remote(format!("{}: {e}", s.display())))?;
            // An ivshmem 2.0 device (LINCELL_IVSHMEM_V2_LAYOUT) has its
            // sections already; the v1 header would land on its state table.
            if ep.v2_layout().is_none() {
                runner::prepare_v1(&ep, dev.device_id())?;
            }
            Box::new(ep)
        }
        Target::Device(_) => {
            let ep = target
                .open(WaitMode::Poll)
                .map_err(|e| Error::Remote(e.to_string()))?;
            check_device(ep.as_ref(), dev.device_id());
            ep
        }
    };
    runner::serve(
        ep,
        dev,
        &RunOptions {
            queue_size: a.queue_size,
            fault: a.fault,
            fault_after: a.fault_after,
            verbose: a.verbose,
            tick,
        },
    )
}

/// On a device, checks what ivshmem.ko set up: the v1 layout (which it
/// creates itself) and the protocol field, which only a host peer can write
/// (the header page is read-only to userspace).
fn check_device(ep: &dyn Endpoint, device_id: u16) {
    use lincell_shared::ivshmem::uapi;
    use lincell_shared::ivshmem::v1layout;
    use lincell_shared::shmem::SharedMemory as _;
    use lincell_shared::vdev::header::PROTOCOL_VIRTIO_FRONTEND;
    use std::sync::atomic::Ordering;
    let Some(dev) = ep.device() else {
        return;
    };
    let info = *dev.info();
    if info.flags & uapi::INFO_SECTIONS == 0 {
        log(format_args!(
            "warning: {} has no sections (no state table); a frontend cannot see this backend",
            ep.describe()
        ));
        return;
    }
    if info.revision == 1 {
        let want = u32::from(PROTOCOL_VIRTIO_FRONTEND | device_id);
        let field = |write| ep.shm().region_at(v1layout::off::PROTOCOL, 4, write);
        let have = field(false)
            .and_then(|(m, o)| Ok(m.load::<u32>(o, Ordering::Acquire)?))
            .unwrap_or(0);
        if have != want
            && field(true)
                .and_then(|(m, o)| Ok(m.store(o, want, Ordering::Release)?))
                .is_err()
        {
            log(format_args!(
                "note: v1 layout protocol field is {have:#x}, not {want:#x} (read-only from a guest)"
            ));
        }
    } else {
        log(format_args!(
            "ivshmem 2.0 device, protocol {:#x}",
            info.protocol
        ));
    }
}
