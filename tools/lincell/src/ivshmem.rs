// SPDX-License-Identifier: GPL-2.0

//! `lincell ivshmem`: use `/dev/ivshmemN` from a guest, or join the ivshmem
//! server as a host peer, with the same subcommands.
//!
//! - [`dev`]: the safe wrapper over the character device (ioctls, read,
//!   poll, mmap);
//! - [`endpoint`]: one trait over a device and a host peer;
//! - [`proto`]: the ping-pong session header in shared memory;
//! - [`pingpong`]: the `pingpong` initiator and the `echo` responder;
//! - [`bench`]: latency statistics;
//! - [`abi`]: the hidden `abi-selftest` that the guest tests run.

mod abi;
mod bench;
mod dev;
pub(crate) mod endpoint;
mod pingpong;
mod proto;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use lincell_shared::ivshmem::uapi::{self, DeviceInfo};

use dev::{describe_error, Device};
use endpoint::{ShmOffset, Target, WaitMode};
use proto::Mode;

/// The device used when a subcommand that can default does not name one.
const DEFAULT_DEV: &str = "/dev/ivshmem0";

/// Arguments of `lincell ivshmem`.
#[derive(Parser, Debug)]
#[command(
    about = "Use ivshmem devices (/dev/ivshmemN) or join an ivshmem server as a host peer",
    long_about = "\
Use the shared memory and doorbells of lincell's ivshmem.ko devices.

In a guest, DEV is a character device of ivshmem.ko (/dev/ivshmem0, ...).
On the host, the same subcommands join the ivshmem server as a peer: pass
--socket PATH (the server's UNIX socket), or give the socket path as DEV.
Either way a peer has an id, a number of interrupt vectors, and the shared
memory; ringing vector V of peer P raises V there.

Numbers (offsets, lengths) accept decimal, 0x-hex, and K/M/G suffixes.
An OFFSET may also be `rw` or `rw+N`: N bytes into the common read/write
section. Use that form when the memory has a section layout (ivshmem 2.0,
or the lincell v1 layout header that ivshmem.ko writes on QEMU devices):
there the region starts with read-only parts, and a host peer finds the
section by reading the same header.

Exit status: 0 success; 1 a wait timed out or a check failed; 2 an error
(bad arguments, missing device, failing system call).",
    after_help = "\
Examples:
  lincell ivshmem list
  lincell ivshmem info /dev/ivshmem0
  lincell ivshmem ring /dev/ivshmem0 1 0
  lincell ivshmem wait /dev/ivshmem0 --timeout 5000
  lincell ivshmem echo --socket /tmp/ivshmem.sock --tap
  lincell ivshmem pingpong /dev/ivshmem0 --count 10000 --mode poll"
)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `DEV` operand and `--socket` option shared by most subcommands.
#[derive(clap::Args, Debug)]
struct TargetArgs {
    /// The device (/dev/ivshmemN), or the ivshmem server's socket.
    #[arg(value_name = "DEV")]
    dev: Option<PathBuf>,
    /// Join the ivshmem server at PATH as a host peer instead of using DEV.
    #[arg(long, value_name = "PATH", conflicts_with = "dev")]
    socket: Option<PathBuf>,
}

impl TargetArgs {
    fn target(&self, default: Option<&Path>) -> io::Result<Target> {
        Target::resolve(self.dev.as_deref(), self.socket.as_deref(), default)
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List every /dev/ivshmemN with its PCI address, revision, id, vectors and size.
    #[command(
        long_about = "\
List every ivshmem character device: name, PCI address (from
/sys/class/misc/ivshmemN/device), revision (1: QEMU ivshmem, 2: ivshmem 2.0),
own peer id, number of interrupt vectors, and shared-memory size.

A device that cannot be opened is listed with the reason.",
        after_help = "Example:\n  lincell ivshmem list"
    )]
    List,

    /// Show everything the device reports (IVSHMEM_IOCTL_INFO).
    #[command(
        long_about = "\
Show every field of IVSHMEM_IOCTL_INFO: revision, own peer id, maximum
number of peers (65536 on QEMU's ivshmem, where any 16-bit id may exist),
vectors, protocol, flags, and the shared-memory sections (offsets are also
mmap offsets). With --socket, shows what a host peer sees: its id, vectors,
the size of the memory and the other peers.

DEV defaults to /dev/ivshmem0.",
        after_help = "Examples:\n  lincell ivshmem info\n  lincell ivshmem info /dev/ivshmem1 --json\n  lincell ivshmem info --socket /tmp/ivshmem.sock"
    )]
    Info {
        #[command(flatten)]
        target: TargetArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },

    /// Ring a doorbell: raise VECTOR (default 0) on peer PEER.
    #[command(
        override_usage = "lincell ivshmem ring DEV PEER [VECTOR]\n       lincell ivshmem ring --socket PATH PEER [VECTOR]",
        long_about = "\
Ring a doorbell: raise interrupt VECTOR (default 0) on peer PEER
(IVSHMEM_IOCTL_RING on a device; a write to the peer's eventfd as a host
peer). PEER may be the own id. A device refuses with EOPNOTSUPP when it has
no vectors (ivshmem-plain) and EINVAL for a peer or vector out of range.",
        after_help = "Examples:\n  lincell ivshmem ring /dev/ivshmem0 1\n  lincell ivshmem ring --socket /tmp/ivshmem.sock 0 1"
    )]
    Ring {
        /// DEV PEER [VECTOR], or PEER [VECTOR] with --socket.
        #[arg(value_name = "ARGS", num_args = 1..=3, required = true)]
        operands: Vec<String>,
        /// Join the ivshmem server at PATH as a host peer instead of using DEV.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Ring N times back to back (an interrupt storm for large N).
        #[arg(long, value_name = "N", default_value_t = 1)]
        count: u64,
    },

    /// Wait for doorbells and print the mask of vectors that fired.
    #[command(
        long_about = "\
Wait until a doorbell arrives and print the mask of the vectors that fired
(hexadecimal, e.g. 0x2 for vector 1). On a device the wait is a blocking
read(2), or poll(2) then read(2) with --poll; as a host peer, a poll of the
own eventfds. Only doorbells that arrive after the device was opened count.

Exit status 1 if nothing arrived within --timeout (or, with --nonblock, if
nothing was pending: the read returned EAGAIN).",
        after_help = "Examples:\n  lincell ivshmem wait /dev/ivshmem0 --timeout 5000\n  lincell ivshmem wait /dev/ivshmem0 --poll\n  lincell ivshmem wait --socket /tmp/ivshmem.sock --timeout 100"
    )]
    Wait {
        #[command(flatten)]
        target: TargetArgs,
        /// Give up after MS milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        timeout: u64,
        /// Wait with poll(2) instead of a blocking read(2) (devices).
        #[arg(long)]
        poll: bool,
        /// Do not wait: report what is pending now (a non-blocking read).
        #[arg(long, conflicts_with = "poll")]
        nonblock: bool,
    },

    /// Get or set the own state (IVSHMEM_IOCTL_GET_STATE / SET_STATE).
    #[command(
        long_about = "\
Without VALUE, print the own state; with VALUE, set it. On ivshmem 2.0 the
state is published in the state table and other peers get vector 0; on
QEMU's ivshmem the driver keeps it locally. The state returns to 0 when the
last user closes the device.",
        after_help = "Examples:\n  lincell ivshmem state /dev/ivshmem0\n  lincell ivshmem state /dev/ivshmem0 1"
    )]
    State {
        /// The device.
        dev: PathBuf,
        /// New state (decimal or 0x-hex).
        value: Option<String>,
    },

    /// Print every peer's state (IVSHMEM_IOCTL_PEER_STATES); --watch follows changes.
    #[command(
        long_about = "\
Print the state of every peer from the state table. Devices without a
section layout (IVSHMEM_INFO_SECTIONS clear) refuse with EOPNOTSUPP, which
is reported as such (exit status 2).

With --watch, keep running: every state change raises vector 0, and each
time it fires the changed entries are printed as `peer N: OLD -> NEW`, until
--timeout passes (exit 0) or the device goes away (exit 2).",
        after_help = "Examples:\n  lincell ivshmem states /dev/ivshmem0\n  lincell ivshmem states /dev/ivshmem0 --watch --timeout 60000"
    )]
    States {
        /// The device.
        dev: PathBuf,
        /// Follow state changes (vector 0) after printing the table.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop after MS milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 3_600_000)]
        timeout: u64,
    },

    /// Print the per-vector interrupt counters (IVSHMEM_IOCTL_COUNTERS).
    #[command(
        long_about = "\
Print how many interrupts each vector received since the device was
probed (one line per vector).",
        after_help = "Example:\n  lincell ivshmem counters /dev/ivshmem0"
    )]
    Counters {
        /// The device.
        dev: PathBuf,
    },

    /// Read LEN bytes of shared memory at OFFSET (through mmap).
    #[command(
        override_usage = "lincell ivshmem peek DEV OFFSET LEN [OPTIONS]\n       lincell ivshmem peek --socket PATH OFFSET LEN [OPTIONS]",
        long_about = "\
Map the shared memory and print LEN bytes at OFFSET: as text up to the first
NUL byte, or as a hex dump with --hex. With --wait-for TEXT, first wait
(bounded by --timeout) until the memory at OFFSET starts with TEXT; exit
status 1 if it never does.",
        after_help = "Examples:\n  lincell ivshmem peek /dev/ivshmem0 rw+0x1000 64\n  lincell ivshmem peek /dev/ivshmem0 0 64 --hex\n  lincell ivshmem peek --socket /tmp/ivshmem.sock rw+64K 32 --wait-for hello --timeout 60000"
    )]
    Peek {
        /// DEV OFFSET LEN, or OFFSET LEN with --socket.
        #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
        operands: Vec<String>,
        /// Join the ivshmem server at PATH as a host peer instead of using DEV.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Print a hex dump.
        #[arg(long)]
        hex: bool,
        /// Wait until the memory at OFFSET starts with TEXT.
        #[arg(long, value_name = "TEXT")]
        wait_for: Option<String>,
        /// Limit for --wait-for, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        timeout: u64,
    },

    /// Write STRING into shared memory at OFFSET (through mmap).
    #[command(
        override_usage = "lincell ivshmem poke DEV OFFSET STRING\n       lincell ivshmem poke --socket PATH OFFSET STRING",
        long_about = "\
Map the shared memory and write the bytes of STRING at OFFSET, followed by
a NUL byte unless --no-nul is given.",
        after_help = "Examples:\n  lincell ivshmem poke /dev/ivshmem0 rw+0x1000 hello\n  lincell ivshmem poke --socket /tmp/ivshmem.sock rw+64K 'from the host'"
    )]
    Poke {
        /// DEV OFFSET STRING, or OFFSET STRING with --socket.
        #[arg(value_name = "ARGS", num_args = 2..=3, required = true)]
        operands: Vec<String>,
        /// Join the ivshmem server at PATH as a host peer instead of using DEV.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Do not write a terminating NUL byte.
        #[arg(long)]
        no_nul: bool,
    },

    /// Answer ping-pong sessions: ring the initiator back on every doorbell.
    #[command(
        long_about = "\
The responder of `pingpong`. Waits (bounded by --start-timeout) for an
initiator to publish a session in the header at --shm-offset, checks its
data, publishes its own, then for every doorbell on the session's vector
copies the ping sequence number to the pong field and rings the initiator
back on the same vector (in spin mode: spins on the sequence number, no
doorbells). Doorbells on other vectors, coalesced doorbells and doorbells
without a new ping are counted as anomalies.

Ends after the initiator asks it to stop (pingpong --stop), after --count
round trips in total or --sessions sessions. A session that does not start
within --start-timeout, or an initiator silent for --timeout, is a failure
(exit status 1). With --tap, prints one TAP test per session and the plan
at the end.",
        after_help = "Examples:\n  lincell ivshmem echo --socket \"$LINCELL_IVSHMEM_SOCKET\" --tap\n  lincell ivshmem echo /dev/ivshmem0 --sessions 1 --start-timeout 120000"
    )]
    Echo {
        #[command(flatten)]
        target: TargetArgs,
        /// Exit after N round trips in total.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Exit after N sessions.
        #[arg(long, value_name = "N")]
        sessions: Option<u32>,
        /// Limit for the (next) session to start, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 120_000)]
        start_timeout: u64,
        /// Limit for the initiator's next ping within a session, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 10_000)]
        timeout: u64,
        /// Offset of the session header in the shared memory.
        #[arg(long, value_name = "OFFSET", default_value = "rw")]
        shm_offset: String,
        /// Print TAP.
        #[arg(long)]
        tap: bool,
    },

    /// Measure doorbell round trips against an `echo` peer.
    #[command(
        long_about = "\
The initiator: publishes a session in the header at --shm-offset, waits
(bounded by --connect-timeout) for an `echo` peer to accept it, checks the
data both ways, warms up (the first doorbell to a peer that just joined may
be dropped by QEMU, so warm-up doorbells are repeated until answered), then
runs --count round trips: write the sequence number, ring the peer, wait for
the answer. Every wait must return exactly one doorbell on the session's
vector with the matching sequence number: a lost, extra or out-of-order
event fails the run.

Modes: read (devices wait in a blocking read), poll (poll then read), spin
(no doorbells: both sides spin on the sequence numbers in shared memory,
the polling baseline). On a device, after the last round: a non-blocking
read must return EAGAIN and the vector's interrupt counter must have moved
by exactly --count (0 in spin mode).

Prints the round trips done, lost and spurious events, latency in µs
(min/p50/p90/p99/p99.9/max/mean) and the checks; exit status 1 on any
failure.",
        after_help = "Examples:\n  lincell ivshmem pingpong /dev/ivshmem0 --count 2000\n  lincell ivshmem pingpong /dev/ivshmem0 --peer 1 --vector 1 --mode poll --stop\n  lincell ivshmem pingpong --socket /tmp/ivshmem.sock --mode spin --count 10000"
    )]
    Pingpong {
        #[command(flatten)]
        target: TargetArgs,
        /// The responder's peer id (default: whoever accepts the session).
        #[arg(long)]
        peer: Option<u32>,
        /// Doorbell vector, both ways (default: 1 if the peer has two or
        /// more, else 0; lincell's layouts use vector 0 for state changes).
        #[arg(long)]
        vector: Option<u32>,
        /// Round trips to measure.
        #[arg(long, short = 'n', default_value_t = 1000)]
        count: u32,
        /// How both sides wait.
        #[arg(long, value_enum, default_value_t = Mode::Read)]
        mode: Mode,
        /// Limit for one round trip, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 5_000)]
        timeout: u64,
        /// Limit for a responder to accept and answer, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 60_000)]
        connect_timeout: u64,
        /// Ask the responder to exit afterwards.
        #[arg(long)]
        stop: bool,
        /// Offset of the session header in the shared memory.
        #[arg(long, value_name = "OFFSET", default_value = "rw")]
        shm_offset: String,
    },

    /// Check every error path of the device ABI (prints TAP).
    #[command(
        hide = true,
        long_about = "\
Exercise the /dev/ivshmemN ABI with good and bad input and print TAP: every
ioctl with wrong numbers, sizes, pointers and values, short and non-blocking
reads, mmap with bad offsets, lengths and flags. With --remove, also remove
the PCI device (sysfs `remove`) while a file and a mapping are open, and
check what every call returns afterwards. Used by tests/guest/ivshmem-abi.sh."
    )]
    AbiSelftest {
        /// The device.
        dev: PathBuf,
        /// Also remove the PCI device and check the file afterwards.
        #[arg(long)]
        remove: bool,
    },
}

/// Failure of a subcommand: `Check` exits 1, `Error` exits 2.
enum Fail {
    Check(String),
    Error(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Error(e)
    }
}

fn usage(msg: String) -> Fail {
    Fail::Error(io::Error::new(io::ErrorKind::InvalidInput, msg))
}

/// Runs `lincell ivshmem ...`.
pub(crate) fn run(args: Args) -> ExitCode {
    match dispatch(args.cmd, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Check(msg)) => {
            if !msg.is_empty() {
                eprintln!("lincell ivshmem: {msg}");
            }
            ExitCode::from(1)
        }
        Err(Fail::Error(e)) => {
            eprintln!("lincell ivshmem: {e}");
            ExitCode::from(2)
        }
    }
}

/// Parses `123`, `0x1f`, `64K`, `1M`, `2G`.
fn parse_num(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1 << 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    };
    n.ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a number (decimal, 0x-hex, K/M/G suffix)"))
}

fn parse_offset(s: &str, what: &str) -> Result<ShmOffset, Fail> {
    ShmOffset::parse(s, parse_num).map_err(|e| usage(format!("{what}: {e}")))
}

fn parse_usize(s: &str, what: &str) -> Result<usize, Fail> {
    parse_num(s)
        .and_then(|n| usize::try_from(n).map_err(|_| format!("`{s}` is too large")))
        .map_err(|e| usage(format!("{what}: {e}")))
}

fn parse_u32(s: &str, what: &str) -> Result<u32, Fail> {
    parse_num(s)
        .and_then(|n| u32::try_from(n).map_err(|_| format!("`{s}` does not fit in 32 bits")))
        .map_err(|e| usage(format!("{what}: {e}")))
}

/// Splits `[DEV] REST...`: with `--socket` every operand is part of REST.
/// `rest` is the allowed number of REST operands.
fn split_operands<'a>(
    operands: &'a [String],
    socket: Option<&Path>,
    rest: std::ops::RangeInclusive<usize>,
) -> Result<(Target, &'a [String]), Fail> {
    let (target, tail) = match socket {
        Some(s) => (Target::Socket(s.to_path_buf()), operands),
        None => {
            let (dev, tail) = operands
                .split_first()
                .ok_or_else(|| usage("DEV missing".into()))?;
            (Target::resolve(Some(Path::new(dev)), None, None)?, tail)
        }
    };
    if !rest.contains(&tail.len()) {
        return Err(usage(format!(
            "expected {} to {} operands after {}, got {}",
            rest.start(),
            rest.end(),
            if socket.is_some() {
                "--socket PATH"
            } else {
                "DEV"
            },
            tail.len()
        )));
    }
    Ok((target, tail))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn dispatch(cmd: Cmd, out: &mut dyn Write) -> Result<(), Fail> {
    match cmd {
        Cmd::List => list(out),
        Cmd::Info { target, json } => match target.target(Some(Path::new(DEFAULT_DEV)))? {
            Target::Device(p) => {
                let dev = Device::open(&p)?;
                let text = if json {
                    info_json(&p, dev.info())
                } else {
                    info_text(&p, dev.info())
                };
                write!(out, "{text}")?;
                Ok(())
            }
            Target::Socket(s) => {
                let ep = endpoint::PeerEndpoint::connect(&s)?;
                let (rw_off, rw_len) = endpoint::Endpoint::rw_section(&ep);
                let p = ep.peer();
                let peers: Vec<String> = p.peers().iter().map(u16::to_string).collect();
                if json {
                    writeln!(
                        out,
                        "{{\"socket\":{:?},\"own_id\":{},\"vectors\":{},\"shmem_size\":{},\"rw_offset\":{rw_off},\"rw_size\":{rw_len},\"peers\":[{}]}}",
                        s.display().to_string(),
                        p.id(),
                        p.vectors(),
                        p.shm().len(),
                        peers.join(",")
                    )?;
                } else {
                    writeln!(out, "socket: {}", s.display())?;
                    writeln!(out, "own id: {}", p.id())?;
                    writeln!(out, "vectors: {}", p.vectors())?;
                    writeln!(
                        out,
                        "shared memory: {} bytes ({})",
                        p.shm().len(),
                        human_size(p.shm().len() as u64)
                    )?;
                    writeln!(out, "r/w section: offset {rw_off:#x}, {rw_len} bytes")?;
                    writeln!(
                        out,
                        "other peers: {}",
                        if peers.is_empty() {
                            "none".into()
                        } else {
                            peers.join(" ")
                        }
                    )?;
                }
                Ok(())
            }
        },
        Cmd::Ring {
            operands,
            socket,
            count,
        } => {
            let (target, rest) = split_operands(&operands, socket.as_deref(), 1..=2)?;
            let peer = parse_u32(&rest[0], "PEER")?;
            let vector = rest
                .get(1)
                .map(|v| parse_u32(v, "VECTOR"))
                .transpose()?
                .unwrap_or(0);
            let mut ep = target.open(WaitMode::Poll)?;
            let start = Instant::now();
            for _ in 0..count {
                ep.ring(peer, vector)?;
            }
            if count == 1 {
                writeln!(
                    out,
                    "rang peer {peer} vector {vector} from {}",
                    ep.describe()
                )?;
            } else {
                let secs = start.elapsed().as_secs_f64();
                writeln!(
                    out,
                    "rang peer {peer} vector {vector} {count} times from {} in {secs:.2} s ({:.0}/s)",
                    ep.describe(),
                    count as f64 / secs.max(1e-9)
                )?;
            }
            Ok(())
        }
        Cmd::Wait {
            target,
            timeout,
            poll,
            nonblock,
        } => {
            let mode = if poll { WaitMode::Poll } else { WaitMode::Read };
            let mut ep = target.target(None)?.open(mode)?;
            if nonblock {
                return match ep.try_wait()? {
                    Some(ev) => {
                        writeln!(out, "{:#x}", ev.mask)?;
                        Ok(())
                    }
                    None => Err(Fail::Check("EAGAIN: no doorbell pending".into())),
                };
            }
            match ep.wait(u64::MAX, ms(timeout)) {
                Ok(ev) => {
                    writeln!(out, "{:#x}", ev.mask)?;
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    Err(Fail::Check(format!("timed out: {e}")))
                }
                Err(e) => Err(e.into()),
            }
        }
        Cmd::State { dev, value } => {
            let d = Device::open(&dev)?;
            match value {
                Some(v) => {
                    let v = parse_u32(&v, "VALUE")?;
                    d.set_state(v)?;
                    writeln!(out, "state set to {v}")?;
                    // The driver resets the state when the last user closes
                    // the device; say so rather than surprise.
                    writeln!(
                        out,
                        "note: the state returns to 0 when the last user closes {}",
                        dev.display()
                    )?;
                }
                None => writeln!(out, "{}", d.get_state()?)?,
            }
            Ok(())
        }
        Cmd::States {
            dev,
            watch,
            timeout,
        } => {
            let d = Device::open(&dev)?;
            match d.peer_states() {
                Ok(mut states) => {
                    for (i, s) in states.iter().enumerate() {
                        writeln!(out, "peer {i}: {s}")?;
                    }
                    if watch {
                        let deadline = Instant::now() + Duration::from_millis(timeout);
                        loop {
                            out.flush()?;
                            match d.poll_events(deadline) {
                                Ok(_) => {}
                                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                                Err(e) => return Err(e.into()),
                            }
                            let now = d.peer_states()?;
                            for (i, (old, new)) in states.iter().zip(&now).enumerate() {
                                if old != new {
                                    writeln!(out, "peer {i}: {old} -> {new}")?;
                                }
                            }
                            states = now;
                        }
                    }
                    Ok(())
                }
                Err(e) if dev::errno_of(&e) == Some(libc::EOPNOTSUPP) => Err(Fail::Error(io::Error::new(
                    e.kind(),
                    format!(
                        "{e}: this device has no state table (IVSHMEM_INFO_SECTIONS is {} in info.flags)",
                        if d.info().flags & uapi::INFO_SECTIONS != 0 { "set" } else { "clear" }
                    ),
                ))),
                Err(e) => Err(e.into()),
            }
        }
        Cmd::Counters { dev } => {
            let d = Device::open(&dev)?;
            let c = d.counters()?;
            if c.is_empty() {
                writeln!(out, "no vectors")?;
            }
            for (v, n) in c.iter().enumerate() {
                writeln!(out, "vector {v}: {n}")?;
            }
            Ok(())
        }
        Cmd::Peek {
            operands,
            socket,
            hex,
            wait_for,
            timeout,
        } => {
            let (target, rest) = split_operands(&operands, socket.as_deref(), 2..=2)?;
            let offset = parse_offset(&rest[0], "OFFSET")?;
            let len = parse_usize(&rest[1], "LEN")?;
            let ep = target.open(WaitMode::Poll)?;
            let offset = offset.resolve(ep.as_ref());
            let shm = ep.shm();
            let mut buf = vec![0u8; len];
            if let Some(want) = &wait_for {
                let deadline = Instant::now() + ms(timeout);
                let mut head = vec![0u8; want.len()];
                loop {
                    shm.load_bytes(offset, &mut head)?;
                    if head == want.as_bytes() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(Fail::Check(format!(
                            "timed out after {timeout} ms waiting for {want:?} at {offset:#x}; found {:?}",
                            String::from_utf8_lossy(&head)
                        )));
                    }
                    std::thread::sleep(ms(5));
                }
            }
            shm.load_bytes(offset, &mut buf)?;
            if hex {
                for (i, chunk) in buf.chunks(16).enumerate() {
                    let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                    writeln!(out, "{:08x}  {}", offset + i * 16, bytes.join(" "))?;
                }
            } else {
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                writeln!(out, "{}", String::from_utf8_lossy(&buf[..end]))?;
            }
            Ok(())
        }
        Cmd::Poke {
            operands,
            socket,
            no_nul,
        } => {
            let (target, rest) = split_operands(&operands, socket.as_deref(), 2..=2)?;
            let offset = parse_offset(&rest[0], "OFFSET")?;
            let mut data = rest[1].as_bytes().to_vec();
            if !no_nul {
                data.push(0);
            }
            let ep = target.open(WaitMode::Poll)?;
            let offset = offset.resolve(ep.as_ref());
            ep.shm().store_bytes(offset, &data)?;
            writeln!(out, "wrote {} bytes at {offset:#x}", data.len())?;
            Ok(())
        }
        Cmd::Echo {
            target,
            count,
            sessions,
            start_timeout,
            timeout,
            shm_offset,
            tap,
        } => {
            let offset = parse_offset(&shm_offset, "--shm-offset")?;
            let mut ep = target.target(None)?.open(WaitMode::Read)?;
            if !tap {
                writeln!(
                    out,
                    "echo: {} waiting for sessions ({offset:?})",
                    ep.describe()
                )?;
            }
            let o = pingpong::EchoOptions {
                count,
                sessions,
                start_timeout: ms(start_timeout),
                timeout: ms(timeout),
                offset,
                tap,
            };
            let sum = pingpong::echo(ep.as_mut(), &o, out)?;
            if sum.passed() {
                Ok(())
            } else {
                Err(Fail::Check(String::new()))
            }
        }
        Cmd::Pingpong {
            target,
            peer,
            vector,
            count,
            mode,
            timeout,
            connect_timeout,
            stop,
            shm_offset,
        } => {
            let offset = parse_offset(&shm_offset, "--shm-offset")?;
            let mut ep = target
                .target(None)?
                .open(mode.wait_mode().unwrap_or(WaitMode::Poll))?;
            let vector = vector.unwrap_or(if ep.vectors() >= 2 { 1 } else { 0 });
            let o = pingpong::PingOptions {
                peer,
                vector,
                count,
                mode,
                timeout: ms(timeout),
                connect_timeout: ms(connect_timeout),
                stop,
                offset,
            };
            let rep = pingpong::pingpong(ep.as_mut(), &o)?;
            pingpong::print_report(out, &rep, &o)?;
            if rep.passed() {
                Ok(())
            } else {
                Err(Fail::Check(String::new()))
            }
        }
        Cmd::AbiSelftest { dev, remove } => {
            if abi::selftest(&dev, remove, out)? {
                Ok(())
            } else {
                Err(Fail::Check(String::new()))
            }
        }
    }
}

/// `1 MiB`, `4 KiB`, `512 B`.
fn human_size(n: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

fn flag_names(flags: u32) -> String {
    let mut v = Vec::new();
    for (bit, name) in [
        (uapi::INFO_DOORBELL, "DOORBELL"),
        (uapi::INFO_ONESHOT, "ONESHOT"),
        (uapi::INFO_SECTIONS, "SECTIONS"),
    ] {
        if flags & bit != 0 {
            v.push(name.to_string());
        }
    }
    let known = uapi::INFO_DOORBELL | uapi::INFO_ONESHOT | uapi::INFO_SECTIONS;
    if flags & !known != 0 {
        v.push(format!("{:#x}", flags & !known));
    }
    if v.is_empty() {
        "none".into()
    } else {
        v.join("|")
    }
}

fn info_text(path: &Path, i: &DeviceInfo) -> String {
    let kind = match i.revision {
        1 => "QEMU ivshmem",
        2 => "ivshmem 2.0",
        _ => "unknown",
    };
    format!(
        "device: {}\n\
         revision: {} ({kind})\n\
         own id: {}\n\
         max peers: {}\n\
         vectors: {}\n\
         protocol: {:#06x}\n\
         flags: {:#x} ({})\n\
         shared memory: {} bytes ({})\n\
         state table: offset {:#x}, {} bytes\n\
         r/w section: offset {:#x}, {} bytes\n\
         output sections: offset {:#x}, {} bytes each\n",
        path.display(),
        i.revision,
        i.own_id,
        i.max_peers,
        i.vectors,
        i.protocol,
        i.flags,
        flag_names(i.flags),
        i.shmem_size,
        human_size(i.shmem_size),
        i.state_table_offset,
        i.state_table_size,
        i.rw_offset,
        i.rw_size,
        i.output_offset,
        i.output_size
    )
}

fn info_json(path: &Path, i: &DeviceInfo) -> String {
    format!(
        "{{\"device\":{:?},\"revision\":{},\"own_id\":{},\"max_peers\":{},\"vectors\":{},\"protocol\":{},\"flags\":{},\
         \"shmem_size\":{},\"state_table_offset\":{},\"state_table_size\":{},\"rw_offset\":{},\"rw_size\":{},\
         \"output_offset\":{},\"output_size\":{}}}\n",
        path.display().to_string(),
        i.revision,
        i.own_id,
        i.max_peers,
        i.vectors,
        i.protocol,
        i.flags,
        i.shmem_size,
        i.state_table_offset,
        i.state_table_size,
        i.rw_offset,
        i.rw_size,
        i.output_offset,
        i.output_size
    )
}

/// The PCI address of misc device `name` (`0000:00:04.0`), from sysfs.
pub(crate) fn pci_address(name: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/class/misc/{name}/device")).ok()?;
    link.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn list(out: &mut dyn Write) -> Result<(), Fail> {
    let mut names: Vec<String> = std::fs::read_dir("/dev")
        .map_err(|e| io::Error::new(e.kind(), format!("/dev: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("ivshmem")
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort_by_key(|n| n[7..].parse::<u64>().unwrap_or(u64::MAX));
    if names.is_empty() {
        writeln!(out, "no ivshmem devices (is ivshmem.ko loaded?)")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<10} {:<13} {:>3} {:>6} {:>7} {:>9}",
        "DEVICE", "PCI", "REV", "ID", "VECTORS", "SIZE"
    )?;
    for n in names {
        let pci = pci_address(&n).unwrap_or_else(|| "?".into());
        match Device::open(format!("/dev/{n}")) {
            Ok(d) => {
                let i = d.info();
                writeln!(
                    out,
                    "{n:<10} {pci:<13} {:>3} {:>6} {:>7} {:>9}",
                    i.revision,
                    i.own_id,
                    i.vectors,
                    human_size(i.shmem_size)
                )?;
            }
            Err(e) => writeln!(out, "{n:<10} {pci:<13} cannot open: {}", describe_error(&e))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[derive(Parser, Debug)]
    struct Top {
        #[command(subcommand)]
        cmd: TopCmd,
    }
    #[derive(Subcommand, Debug)]
    enum TopCmd {
        Ivshmem(Args),
    }

    fn parse(args: &[&str]) -> Result<Cmd, clap::Error> {
        let mut v = vec!["lincell", "ivshmem"];
        v.extend_from_slice(args);
        Top::try_parse_from(v).map(|t| match t.cmd {
            TopCmd::Ivshmem(a) => a.cmd,
        })
    }

    #[test]
    fn clap_definition_is_consistent() {
        Top::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_help_with_examples() {
        let mut top = Top::command();
        let ivshmem = top.find_subcommand_mut("ivshmem").unwrap();
        for sub in ivshmem.get_subcommands_mut() {
            if sub.is_hide_set() {
                continue;
            }
            let name = sub.get_name().to_string();
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains("Example"),
                "{name} --help has no example:\n{help}"
            );
            assert!(sub.get_long_about().is_some(), "{name} has no long help");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_num("4096"), Ok(4096));
        assert_eq!(parse_num("0x1f"), Ok(31));
        assert_eq!(parse_num("64K"), Ok(65536));
        assert_eq!(parse_num("1M"), Ok(1 << 20));
        assert_eq!(parse_num("0x10K"), Ok(16 << 10));
        assert!(parse_num("").is_err());
        assert!(parse_num("x").is_err());
        assert!(parse_num("99999999999999G").is_err());
    }

    #[test]
    fn ring_operands_with_dev_or_socket() {
        let Cmd::Ring {
            operands, socket, ..
        } = parse(&["ring", "/dev/ivshmem0", "3", "1"]).unwrap()
        else {
            panic!()
        };
        let (t, rest) = split_operands(&operands, socket.as_deref(), 1..=2)
            .ok()
            .unwrap();
        assert_eq!(t, Target::Device("/dev/ivshmem0".into()));
        assert_eq!(rest, ["3", "1"]);

        let Cmd::Ring {
            operands, socket, ..
        } = parse(&["ring", "--socket", "/s", "3"]).unwrap()
        else {
            panic!()
        };
        let (t, rest) = split_operands(&operands, socket.as_deref(), 1..=2)
            .ok()
            .unwrap();
        assert_eq!(t, Target::Socket("/s".into()));
        assert_eq!(rest, ["3"]);

        let Cmd::Ring {
            operands, socket, ..
        } = parse(&["ring", "--socket", "/s", "3", "1", "2"]).unwrap()
        else {
            panic!()
        };
        assert!(
            split_operands(&operands, socket.as_deref(), 1..=2).is_err(),
            "too many operands"
        );
        assert!(parse(&["ring"]).is_err());
    }

    #[test]
    fn pingpong_and_echo_options() {
        let Cmd::Pingpong {
            target,
            peer,
            vector,
            count,
            mode,
            stop,
            ..
        } = parse(&[
            "pingpong",
            "/dev/ivshmem0",
            "--peer",
            "1",
            "--vector",
            "1",
            "-n",
            "2000",
            "--mode",
            "poll",
            "--stop",
        ])
        .unwrap()
        else {
            panic!()
        };
        assert_eq!(target.dev.as_deref(), Some(Path::new("/dev/ivshmem0")));
        assert_eq!(
            (peer, vector, count, mode, stop),
            (Some(1), Some(1), 2000, Mode::Poll, true)
        );
        assert!(parse(&["pingpong", "/dev/ivshmem0", "--mode", "bogus"]).is_err());
        assert!(
            parse(&["pingpong", "/dev/ivshmem0", "--socket", "/s"]).is_err(),
            "DEV and --socket conflict"
        );

        let Cmd::Echo {
            target,
            tap,
            sessions,
            ..
        } = parse(&["echo", "--socket", "/s", "--tap", "--sessions", "2"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(target.socket.as_deref(), Some(Path::new("/s")));
        assert!(tap);
        assert_eq!(sessions, Some(2));
    }

    #[test]
    fn wait_and_state_options() {
        let Cmd::Wait {
            timeout,
            poll,
            nonblock,
            ..
        } = parse(&["wait", "/dev/ivshmem0", "--timeout", "5", "--poll"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((timeout, poll, nonblock), (5, true, false));
        assert!(parse(&["wait", "/dev/ivshmem0", "--poll", "--nonblock"]).is_err());
        let Cmd::State { value, .. } = parse(&["state", "/dev/ivshmem0", "0x10"]).unwrap() else {
            panic!()
        };
        assert_eq!(value.as_deref(), Some("0x10"));
        assert!(parse(&["abi-selftest", "/dev/ivshmem0", "--remove"]).is_ok());
    }

    #[test]
    fn info_formats() {
        let i = DeviceInfo {
            revision: 1,
            own_id: 2,
            max_peers: 65536,
            vectors: 2,
            flags: uapi::INFO_DOORBELL,
            shmem_size: 1 << 20,
            rw_size: 1 << 20,
            ..DeviceInfo::default()
        };
        let t = info_text(Path::new("/dev/ivshmem0"), &i);
        assert!(
            t.contains("revision: 1 (QEMU ivshmem)\nown id: 2\nmax peers: 65536\nvectors: 2\n"),
            "{t}"
        );
        assert!(t.contains("flags: 0x1 (DOORBELL)"), "{t}");
        assert!(t.contains("shared memory: 1048576 bytes (1 MiB)"), "{t}");
        let j = info_json(Path::new("/dev/ivshmem0"), &i);
        assert!(
            j.starts_with("{\"device\":\"/dev/ivshmem0\",\"revision\":1,\"own_id\":2,"),
            "{j}"
        );
        assert!(j.ends_with("\"output_size\":0}\n"), "{j}");
        assert_eq!(flag_names(0), "none");
        assert_eq!(
            flag_names(uapi::INFO_DOORBELL | uapi::INFO_SECTIONS | 0x100),
            "DOORBELL|SECTIONS|0x100"
        );
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(1000), "1000 B");
    }

    /// Runs one command line, returning its result and output.
    fn run_cmd(args: &[&str]) -> (Result<(), Fail>, String) {
        let mut out = Vec::new();
        let r = dispatch(parse(args).unwrap(), &mut out);
        (r, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn peek_and_poke_through_a_host_peer() {
        let server = endpoint::tests::TestServer::start(1);
        let sock = server.socket.to_string_lossy().into_owned();
        let (r, text) = run_cmd(&["poke", "--socket", &sock, "64K", "hello"]);
        assert!(r.is_ok());
        assert_eq!(text, "wrote 6 bytes at 0x10000\n");
        let ep = Target::Socket(server.socket.clone())
            .open(WaitMode::Poll)
            .unwrap();
        let mut b = [0u8; 6];
        ep.shm().load_bytes(64 << 10, &mut b).unwrap();
        assert_eq!(&b, b"hello\0");

        let (r, text) = run_cmd(&[
            "peek",
            "--socket",
            &sock,
            "0x10000",
            "5",
            "--wait-for",
            "hel",
            "--timeout",
            "1000",
        ]);
        assert!(r.is_ok());
        assert_eq!(text, "hello\n");
        // Without a layout header the R/W section is the whole region.
        let (r, text) = run_cmd(&["peek", &sock, "rw+64K", "8", "--hex"]);
        assert!(r.is_ok());
        assert_eq!(text, "00010000  68 65 6c 6c 6f 00 00 00\n");

        let (r, _) = run_cmd(&[
            "peek",
            "--socket",
            &sock,
            "0x10000",
            "5",
            "--wait-for",
            "bye",
            "--timeout",
            "50",
        ]);
        assert!(matches!(r, Err(Fail::Check(_))), "timed out");
        let (r, _) = run_cmd(&["peek", &sock, "2M", "5"]);
        assert!(matches!(r, Err(Fail::Error(_))), "out of bounds");
    }

    #[test]
    fn info_and_ring_through_host_peers() {
        let server = endpoint::tests::TestServer::start(2);
        let sock = server.socket.to_string_lossy().into_owned();
        let mut other = endpoint::PeerEndpoint::connect(&server.socket).unwrap();
        let (r, text) = run_cmd(&["info", "--socket", &sock]);
        assert!(r.is_ok());
        assert!(
            text.contains("vectors: 2\n") && text.contains("other peers: 0\n"),
            "{text}"
        );
        assert!(
            text.contains("r/w section: offset 0x0, 1048576 bytes"),
            "{text}"
        );
        let (r, text) = run_cmd(&["ring", "--socket", &sock, "0", "1"]);
        assert!(r.is_ok());
        assert!(
            text.starts_with("rang peer 0 vector 1 from host peer"),
            "{text}"
        );
        let ev = endpoint::Endpoint::wait(&mut other, u64::MAX, Duration::from_secs(5)).unwrap();
        assert_eq!(ev.mask, 0b10);
        let (r, _) = run_cmd(&["ring", "--socket", &sock, "0", "2"]);
        assert!(matches!(r, Err(Fail::Error(_))), "no vector 2");
        let (r, text) = run_cmd(&["wait", "--socket", &sock, "--timeout", "50"]);
        assert!(
            matches!(r, Err(Fail::Check(_))) && text.is_empty(),
            "nothing arrives: exit 1"
        );
    }
}
