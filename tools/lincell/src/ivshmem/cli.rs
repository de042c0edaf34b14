// SPDX-License-Identifier: GPL-2.0

//! The command line of `lincell ivshmem`: every subcommand's arguments and
//! help text, and the parsers of its numbers and offsets.
//!
//! Operands are typed here (clap value parsers), so a subcommand receives
//! numbers and offsets, never strings.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::endpoint::{ShmOffset, Target};
use super::proto::{Mode, SYNC_BIT};
use crate::error::{Error, Result};

/// The device used when `info` does not name one.
pub(crate) const DEFAULT_DEV: &str = "/dev/ivshmem0";

/// Arguments of `lincell ivshmem`.
#[derive(Parser, Debug)]
#[command(
    about = "Use ivshmem devices (/dev/ivshmemN) or join an ivshmem server as a host peer",
    long_about = "\
Use the shared memory and doorbells of lincell's ivshmem.ko devices.

In a guest, DEV is a character device of ivshmem.ko (/dev/ivshmem0, ...).
On the host, the same subcommands join the ivshmem server as a peer: give
the server's UNIX socket as DEV, or say so with --socket (`--socket PATH`).
Either way a peer has an id, a number of interrupt vectors, and the shared
memory; ringing vector V of peer P raises V there.

Numbers (peers, vectors, offsets, lengths) accept decimal, 0x-hex, and K/M/G
suffixes (64K = 65536, 0x10K = 16384).
An OFFSET may also be `rw` or `rw+N`: N bytes into the common read/write
section. Use that form when the memory has a section layout (ivshmem 2.0,
or the lincell v1 layout header that ivshmem.ko writes on QEMU devices):
there the region starts with read-only parts, and a host peer finds the
section by reading the same header.
A host peer of an `ivshmem-server --v2` device (ivshmem 2.0 for vfio-user
guests) cannot read the layout from the memory: give it in the environment
as LINCELL_IVSHMEM_V2_LAYOUT=MAX_PEERS:RW_SIZE:OUTPUT_SIZE (the server's
--max-peers, --rw-size, --output-size); then `rw+N` offsets and host-side
users of the state table (the vdev-remote backend, `lincell remote serve`)
use the ivshmem 2.0 sections and state table.

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
pub struct Args {
    #[command(subcommand)]
    pub(super) cmd: Cmd,
}

/// The subcommands; each variant's arguments are the struct it holds.
#[derive(Subcommand, Debug)]
pub(super) enum Cmd {
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
mmap offsets). With a socket, shows what a host peer sees: its id, vectors,
the size of the memory, the R/W section and the other peers.

DEV defaults to /dev/ivshmem0.",
        after_help = "Examples:\n  lincell ivshmem info\n  lincell ivshmem info /dev/ivshmem1 --json\n  lincell ivshmem info --socket /tmp/ivshmem.sock"
    )]
    Info(InfoArgs),

    /// Ring a doorbell: raise VECTOR (default 0) on peer PEER.
    #[command(
        override_usage = "lincell ivshmem ring [OPTIONS] DEV PEER [VECTOR]\n       lincell ivshmem ring [OPTIONS] --socket PATH PEER [VECTOR]",
        long_about = "\
Ring a doorbell: raise interrupt VECTOR (default 0) on peer PEER
(IVSHMEM_IOCTL_RING on a device; a write to the peer's eventfd as a host
peer). PEER may be the own id. A device refuses with EOPNOTSUPP when it has
no vectors (ivshmem-plain) and EINVAL for a peer or vector out of range.",
        after_help = "Examples:\n  lincell ivshmem ring /dev/ivshmem0 1\n  lincell ivshmem ring --socket /tmp/ivshmem.sock 0 1"
    )]
    Ring(RingArgs),

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
    Wait(WaitArgs),

    /// Get or set the own state (IVSHMEM_IOCTL_GET_STATE / SET_STATE).
    #[command(
        long_about = "\
Without VALUE, print the own state; with VALUE, set it. On ivshmem 2.0 the
state is published in the state table and other peers get vector 0; on
QEMU's ivshmem the driver keeps it locally. The state returns to 0 when the
last user closes the device.",
        after_help = "Examples:\n  lincell ivshmem state /dev/ivshmem0\n  lincell ivshmem state /dev/ivshmem0 1"
    )]
    State(StateArgs),

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
    States(StatesArgs),

    /// Print the per-vector interrupt counters (IVSHMEM_IOCTL_COUNTERS).
    #[command(
        long_about = "\
Print how many interrupts each vector received since the device was
probed (one line per vector).",
        after_help = "Example:\n  lincell ivshmem counters /dev/ivshmem0"
    )]
    Counters(CountersArgs),

    /// Read LEN bytes of shared memory at OFFSET (through mmap).
    #[command(
        override_usage = "lincell ivshmem peek [OPTIONS] DEV OFFSET LEN\n       lincell ivshmem peek [OPTIONS] --socket PATH OFFSET LEN",
        long_about = "\
Map the shared memory and print LEN bytes at OFFSET: as text up to the first
NUL byte, or as a hex dump with --hex. With --wait-for TEXT, first wait
(bounded by --timeout) until the memory at OFFSET starts with TEXT; exit
status 1 if it never does.",
        after_help = "Examples:\n  lincell ivshmem peek /dev/ivshmem0 rw+0x1000 64\n  lincell ivshmem peek /dev/ivshmem0 0 64 --hex\n  lincell ivshmem peek --socket /tmp/ivshmem.sock rw+64K 32 --wait-for hello --timeout 60000"
    )]
    Peek(PeekArgs),

    /// Write STRING into shared memory at OFFSET (through mmap).
    #[command(
        override_usage = "lincell ivshmem poke [OPTIONS] DEV OFFSET STRING\n       lincell ivshmem poke [OPTIONS] --socket PATH OFFSET STRING",
        long_about = "\
Map the shared memory and write the bytes of STRING at OFFSET, followed by
a NUL byte unless --no-nul is given.",
        after_help = "Examples:\n  lincell ivshmem poke /dev/ivshmem0 rw+0x1000 hello\n  lincell ivshmem poke --socket /tmp/ivshmem.sock rw+64K 'from the host'"
    )]
    Poke(PokeArgs),

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

A kernel-mode session (pingpong --mode kernel) is answered by ivshmem.ko
instead: echo turns the device's in-kernel echo on for the initiator (sysfs
ivshmem/echo, so root only, and a device with two or more vectors), which
rings it back from the interrupt handler; echo only watches the session
and turns the echo off at its end. Its round trips are the doorbells the
kernel answered (ivshmem/echo_count).

Ends after the initiator asks it to stop (pingpong --stop), after --count
round trips in total or --sessions sessions. A session that does not start
within --start-timeout, or an initiator silent for --timeout, is a failure
(exit status 1). With --tap, prints one TAP test per session and the plan
at the end.",
        after_help = "Examples:\n  lincell ivshmem echo --socket \"$LINCELL_IVSHMEM_SOCKET\" --tap\n  lincell ivshmem echo /dev/ivshmem0 --sessions 1 --start-timeout 120000"
    )]
    Echo(EchoArgs),

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
the polling baseline), kernel (the responder's kernel answers: ivshmem.ko's
in-kernel echo rings back from its interrupt handler, without a sequence
number, the floor of a doorbell round trip; the responder is `echo` on a
device, run as root). On a device, after the last round: a non-blocking
read must return EAGAIN and the vector's interrupt counter must have moved
by exactly --count (0 in spin mode).

Prints the round trips done, lost and spurious events, latency in µs
(min/p50/p90/p99/p99.9/max/mean) and the checks; exit status 1 on any
failure.",
        after_help = "Examples:\n  lincell ivshmem pingpong /dev/ivshmem0 --count 2000\n  lincell ivshmem pingpong /dev/ivshmem0 --peer 1 --vector 1 --mode poll --stop\n  lincell ivshmem pingpong --socket /tmp/ivshmem.sock --mode spin --count 10000"
    )]
    Pingpong(PingpongArgs),

    /// Measure how fast this CPU copies between the R/W section and its own RAM.
    #[command(
        override_usage = "lincell ivshmem copybench [OPTIONS] DEV\n       lincell ivshmem copybench [OPTIONS] --socket PATH",
        long_about = "\
Measure the copy rate between the shared memory's R/W section and the
process's own RAM, the floor of a bounce-buffer transport such as
vdev_remote (every byte of a request is copied once between the guest's
pages and the R/W section).

SIZE bytes at OFFSET into the R/W section are saved, then for each
--method three rates are measured for --seconds each, copying --chunk
bytes at a time: RAM to the section (what a write request costs the
guest), the section to RAM (a read request), and RAM to RAM (the same
copy without shared memory). The saved bytes are written back at the end,
so the bounce pool of a vdev-remote device that no frontend has attached
yet (the second half of the section) can be measured in place.

Methods: `libc` is the C library's memcpy (vector instructions);
`movsb` is `rep movsb`, the kernel's memcpy on x86_64 CPUs with FSRM;
`movq` is a loop of 8-byte moves, 32 bytes an iteration, the kernel's
memcpy (`memcpy_orig`) on x86_64 CPUs without FSRM. The bounce copies of
vdev_remote are the kernel's memcpy, so `movsb` or `movq` is what the
transport gets and `libc` what the CPU can do. On other architectures
`movsb` and `movq` are the C library's memcpy.

Prints one line per method:
  copy method=libc chunk=1048576 size=8388608 seconds=1.00
    to_shm_mb_per_s=X from_shm_mb_per_s=Y ram_mb_per_s=Z
(one line; MB = 10^6 bytes).",
        after_help = "Examples:\n  lincell ivshmem copybench /dev/ivshmem0\n  lincell ivshmem copybench /dev/ivshmem0 --chunk 4K --method movsb --seconds 2\n  lincell ivshmem copybench --socket /tmp/ivshmem.sock --offset 0 --size 1M"
    )]
    Copybench(CopybenchArgs),
}

/// How `copybench` copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CopyMethod {
    /// The C library's memcpy.
    Libc,
    /// `rep movsb` (x86_64; elsewhere the C library's memcpy).
    Movsb,
    /// A loop of 8-byte moves, 32 bytes an iteration, like the kernel's
    /// `memcpy_orig` (x86_64; elsewhere the C library's memcpy).
    Movq,
}

impl CopyMethod {
    /// The name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CopyMethod::Libc => "libc",
            CopyMethod::Movsb => "movsb",
            CopyMethod::Movq => "movq",
        }
    }
}

/// Arguments of `copybench`.
#[derive(clap::Args, Debug)]
pub(crate) struct CopybenchArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// Byte offset into the R/W section [default: half of the section].
    #[arg(long, value_parser = number::<usize>)]
    pub(crate) offset: Option<usize>,
    /// Bytes of the section to copy through, a multiple of --chunk
    /// [default: the rest of the section, at most 8 MiB].
    #[arg(long, value_parser = number::<usize>)]
    pub(crate) size: Option<usize>,
    /// Bytes per copy.
    #[arg(long, value_parser = number::<usize>, default_value = "1M")]
    pub(crate) chunk: usize,
    /// Seconds per direction and method.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) seconds: f64,
    /// Copy methods to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "libc,movsb,movq"
    )]
    pub(crate) method: Vec<CopyMethod>,
}

/// The `DEV` operand of the subcommands that work on a device or as a host
/// peer.
#[derive(clap::Args, Debug)]
pub(crate) struct Dev {
    /// The device (/dev/ivshmemN), or the ivshmem server's UNIX socket.
    #[arg(value_name = "DEV")]
    pub(crate) dev: PathBuf,
    /// DEV is the ivshmem server's socket: join it as a host peer
    ///
    /// Written before the path, as `--socket PATH`. Without it, a DEV that
    /// is a UNIX socket is joined as a host peer all the same, and any
    /// other DEV is opened as a device.
    #[arg(long)]
    pub(crate) socket: bool,
}

impl Dev {
    /// Where the subcommand talks to ivshmem.
    pub(crate) fn target(&self) -> Result<Target> {
        target(&self.dev, self.socket)
    }
}

/// `path` as a host peer's socket if `socket` (or if it is one), else as a
/// device.
fn target(path: &std::path::Path, socket: bool) -> Result<Target> {
    if socket {
        Ok(Target::Socket(path.to_path_buf()))
    } else {
        Ok(Target::resolve(Some(path), None, None)?)
    }
}

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub(crate) struct InfoArgs {
    /// The device (/dev/ivshmemN), or the ivshmem server's UNIX socket.
    #[arg(value_name = "DEV", default_value = DEFAULT_DEV)]
    pub(crate) dev: PathBuf,
    /// DEV is the ivshmem server's socket: join it as a host peer
    ///
    /// Written before the path, as `--socket PATH`. Without it, a DEV that
    /// is a UNIX socket is joined as a host peer all the same, and any
    /// other DEV is opened as a device.
    #[arg(long)]
    pub(crate) socket: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

impl InfoArgs {
    /// Where `info` looks.
    pub(crate) fn target(&self) -> Result<Target> {
        target(&self.dev, self.socket)
    }
}

/// Arguments of `ring`.
#[derive(clap::Args, Debug)]
pub(crate) struct RingArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// The peer to ring (the own id included).
    #[arg(value_parser = number::<u32>)]
    pub(crate) peer: u32,
    /// The vector to raise on it.
    #[arg(value_parser = number::<u32>, default_value = "0")]
    pub(crate) vector: u32,
    /// Ring N times back to back (an interrupt storm for large N).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub(crate) count: u64,
}

/// Arguments of `wait`.
#[derive(clap::Args, Debug)]
pub(crate) struct WaitArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// Give up after MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub(crate) timeout: u64,
    /// Wait with poll(2) instead of a blocking read(2) (devices).
    #[arg(long)]
    pub(crate) poll: bool,
    /// Do not wait: report what is pending now (a non-blocking read).
    #[arg(long, conflicts_with = "poll")]
    pub(crate) nonblock: bool,
}

/// Arguments of `state`.
#[derive(clap::Args, Debug)]
pub(crate) struct StateArgs {
    /// The device.
    pub(crate) dev: PathBuf,
    /// New state (decimal or 0x-hex).
    #[arg(value_parser = number::<u32>)]
    pub(crate) value: Option<u32>,
}

/// Arguments of `states`.
#[derive(clap::Args, Debug)]
pub(crate) struct StatesArgs {
    /// The device.
    pub(crate) dev: PathBuf,
    /// Follow state changes (vector 0) after printing the table.
    #[arg(long)]
    pub(crate) watch: bool,
    /// With --watch: stop after MS milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 3_600_000)]
    pub(crate) timeout: u64,
}

/// Arguments of `counters`.
#[derive(clap::Args, Debug)]
pub(crate) struct CountersArgs {
    /// The device.
    pub(crate) dev: PathBuf,
}

/// Arguments of `peek`.
#[derive(clap::Args, Debug)]
pub(crate) struct PeekArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// Where to read: a byte offset in the region, or `rw+N`.
    #[arg(value_parser = shm_offset)]
    pub(crate) offset: ShmOffset,
    /// How many bytes to read.
    #[arg(value_parser = number::<usize>)]
    pub(crate) len: usize,
    /// Print a hex dump.
    #[arg(long)]
    pub(crate) hex: bool,
    /// Wait until the memory at OFFSET starts with TEXT.
    #[arg(long, value_name = "TEXT")]
    pub(crate) wait_for: Option<String>,
    /// Limit for --wait-for, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub(crate) timeout: u64,
}

/// Arguments of `poke`.
#[derive(clap::Args, Debug)]
pub(crate) struct PokeArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// Where to write: a byte offset in the region, or `rw+N`.
    #[arg(value_parser = shm_offset)]
    pub(crate) offset: ShmOffset,
    /// The text to write.
    #[arg(value_name = "STRING")]
    pub(crate) string: String,
    /// Do not write a terminating NUL byte.
    #[arg(long)]
    pub(crate) no_nul: bool,
}

/// Arguments of `echo`.
#[derive(clap::Args, Debug)]
pub(crate) struct EchoArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// Exit after N round trips in total.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
    /// Exit after N sessions.
    #[arg(long, value_name = "N")]
    pub(crate) sessions: Option<u32>,
    /// Limit for the (next) session to start, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 120_000)]
    pub(crate) start_timeout: u64,
    /// Limit for the initiator's next ping within a session, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub(crate) timeout: u64,
    /// Offset of the session header in the shared memory.
    #[arg(long, value_name = "OFFSET", default_value = "rw", value_parser = shm_offset)]
    pub(crate) shm_offset: ShmOffset,
    /// Print TAP.
    #[arg(long)]
    pub(crate) tap: bool,
}

/// Arguments of `pingpong`.
#[derive(clap::Args, Debug)]
pub(crate) struct PingpongArgs {
    #[command(flatten)]
    pub(crate) dev: Dev,
    /// The responder's peer id (default: whoever accepts the session).
    #[arg(long, value_parser = number::<u32>)]
    pub(crate) peer: Option<u32>,
    /// Doorbell vector, both ways (default: 1 if the peer has two or
    /// more, else 0; lincell's layouts use vector 0 for state changes).
    #[arg(long, value_parser = number::<u32>)]
    pub(crate) vector: Option<u32>,
    /// Round trips to measure (below 2^31).
    #[arg(long, short = 'n', default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(..i64::from(SYNC_BIT)))]
    pub(crate) count: u32,
    /// How both sides wait.
    #[arg(long, value_enum, default_value_t = Mode::Read)]
    pub(crate) mode: Mode,
    /// Limit for one round trip, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5_000)]
    pub(crate) timeout: u64,
    /// Limit for a responder to accept and answer, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub(crate) connect_timeout: u64,
    /// Ask the responder to exit afterwards.
    #[arg(long)]
    pub(crate) stop: bool,
    /// Offset of the session header in the shared memory.
    #[arg(long, value_name = "OFFSET", default_value = "rw", value_parser = shm_offset)]
    pub(crate) shm_offset: ShmOffset,
}

/// Parses a number: decimal or `0x` hexadecimal, with an optional `K`,
/// `M` or `G` suffix (times 2^10, 2^20, 2^30): `4096`, `0x1f`, `64K`,
/// `0x10K`. A clap value parser for any unsigned type up to 64 bits.
pub(crate) fn number<T: TryFrom<u64>>(s: &str) -> Result<T> {
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
    let n = n.ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| {
        Error::Usage(format!(
            "`{s}` is not a number (decimal, 0x-hex, K/M/G suffix)"
        ))
    })?;
    T::try_from(n).map_err(|_| {
        Error::Usage(format!(
            "`{s}` does not fit in {} bits",
            8 * std::mem::size_of::<T>()
        ))
    })
}

/// Parses an OFFSET: a [`number`], `rw`, or `rw+N` (N bytes into the R/W
/// section). A clap value parser.
pub(crate) fn shm_offset(s: &str) -> Result<ShmOffset> {
    if s == "rw" {
        return Ok(ShmOffset::Rw(0));
    }
    match s.strip_prefix("rw+") {
        Some(rest) => number(rest).map(ShmOffset::Rw),
        None => number(s).map(ShmOffset::Abs),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

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

    pub(crate) fn parse(args: &[&str]) -> std::result::Result<Cmd, clap::Error> {
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
        let n = |s| number::<u64>(s).ok();
        assert_eq!(n("4096"), Some(4096));
        assert_eq!(n("0x1f"), Some(31));
        assert_eq!(n("0X1F"), Some(31));
        assert_eq!(n("64K"), Some(65536));
        assert_eq!(n("64k"), Some(65536));
        assert_eq!(n("1M"), Some(1 << 20));
        assert_eq!(n("2G"), Some(2 << 30));
        assert_eq!(n("0x10K"), Some(16 << 10));
        assert_eq!(n(""), None);
        assert_eq!(n("x"), None);
        assert_eq!(n("99999999999999G"), None);
        assert_eq!(number::<u32>("0xffffffff").ok(), Some(u32::MAX));
        let e = number::<u32>("4294967296").unwrap_err().to_string();
        assert_eq!(e, "`4294967296` does not fit in 32 bits");
        let e = number::<u32>("x").unwrap_err().to_string();
        assert_eq!(e, "`x` is not a number (decimal, 0x-hex, K/M/G suffix)");
    }

    #[test]
    fn offsets() {
        assert_eq!(shm_offset("rw").ok(), Some(ShmOffset::Rw(0)));
        assert_eq!(shm_offset("rw+0x3000").ok(), Some(ShmOffset::Rw(0x3000)));
        assert_eq!(shm_offset("rw+64K").ok(), Some(ShmOffset::Rw(64 << 10)));
        assert_eq!(shm_offset("0x10000").ok(), Some(ShmOffset::Abs(0x10000)));
        assert_eq!(shm_offset("64K").ok(), Some(ShmOffset::Abs(64 << 10)));
        assert_eq!(shm_offset("0").ok(), Some(ShmOffset::Abs(0)));
        for bad in ["rw+", "rwx", "rw+x", "bogus", "-1", "rw-4"] {
            assert!(shm_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ring_with_dev_or_socket() {
        let Cmd::Ring(a) = parse(&["ring", "/dev/ivshmem0", "3", "1"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            a.dev.target().unwrap(),
            Target::Device("/dev/ivshmem0".into())
        );
        assert_eq!((a.peer, a.vector, a.count), (3, 1, 1));

        let Cmd::Ring(a) = parse(&["ring", "--socket", "/s", "0x3", "--count", "5"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.dev.target().unwrap(), Target::Socket("/s".into()));
        assert_eq!(
            (a.peer, a.vector, a.count),
            (3, 0, 5),
            "VECTOR defaults to 0"
        );

        assert!(
            parse(&["ring", "--socket", "/s", "3", "1", "2"]).is_err(),
            "too many operands"
        );
        assert!(parse(&["ring"]).is_err());
        assert!(parse(&["ring", "--socket", "/s"]).is_err(), "PEER missing");
        assert!(parse(&["ring", "/dev/ivshmem0", "x"]).is_err());
        assert!(parse(&["ring", "/dev/ivshmem0", "4294967296"]).is_err());
        let Cmd::Ring(a) = parse(&["ring", "/dev/ivshmem0", "1K"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.peer, 1024, "numbers take suffixes");
    }

    #[test]
    fn peek_and_poke_operands() {
        let Cmd::Peek(a) = parse(&["peek", "/dev/ivshmem0", "rw+0x1000", "64", "--hex"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.dev.dev, Path::new("/dev/ivshmem0"));
        assert_eq!((a.offset, a.len, a.hex), (ShmOffset::Rw(0x1000), 64, true));
        let Cmd::Peek(a) = parse(&[
            "peek",
            "--socket",
            "/s",
            "rw+64K",
            "32",
            "--wait-for",
            "hello",
            "--timeout",
            "60000",
        ])
        .unwrap() else {
            panic!()
        };
        assert!(a.dev.socket);
        assert_eq!((a.offset, a.len), (ShmOffset::Rw(64 << 10), 32));
        assert_eq!((a.wait_for.as_deref(), a.timeout), (Some("hello"), 60000));
        assert!(parse(&["peek", "--socket", "/s", "0x10000"]).is_err());
        assert!(parse(&["peek", "/s", "rw+", "5"]).is_err());
        assert!(parse(&["peek", "/s", "0", "x"]).is_err());

        let Cmd::Poke(a) = parse(&["poke", "/dev/ivshmem0", "rw+64K", "from guest a"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (a.offset, a.string.as_str(), a.no_nul),
            (ShmOffset::Rw(64 << 10), "from guest a", false)
        );
        assert!(
            parse(&["poke", "/dev/ivshmem0", "0"]).is_err(),
            "STRING missing"
        );
    }

    #[test]
    fn pingpong_and_echo_options() {
        let Cmd::Pingpong(a) = parse(&[
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
        .unwrap() else {
            panic!()
        };
        assert_eq!(a.dev.dev, Path::new("/dev/ivshmem0"));
        assert_eq!(
            (a.peer, a.vector, a.count, a.mode, a.stop, a.shm_offset),
            (Some(1), Some(1), 2000, Mode::Poll, true, ShmOffset::Rw(0))
        );
        assert!(parse(&["pingpong", "/dev/ivshmem0", "--mode", "bogus"]).is_err());
        assert!(parse(&["pingpong", "/dev/ivshmem0", "--count", "2147483648"]).is_err());
        assert!(parse(&["pingpong", "--socket", "/s", "--shm-offset", "rw+x"]).is_err());
        assert!(
            parse(&["pingpong", "/dev/ivshmem0", "--socket", "/s"]).is_err(),
            "one DEV only"
        );
        assert!(parse(&["pingpong"]).is_err(), "DEV missing");

        let Cmd::Echo(a) = parse(&["echo", "--socket", "/s", "--tap", "--sessions", "2"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.dev.target().unwrap(), Target::Socket("/s".into()));
        assert!(a.tap);
        assert_eq!(a.sessions, Some(2));
        let Cmd::Echo(a) = parse(&["echo", "/d", "--shm-offset", "0x2000"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.shm_offset, ShmOffset::Abs(0x2000));
    }

    #[test]
    fn info_wait_and_state_options() {
        let Cmd::Info(a) = parse(&["info"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.target().unwrap(), Target::Device(DEFAULT_DEV.into()));
        let Cmd::Info(a) = parse(&["info", "--socket", "/s", "--json"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.target().unwrap(), Target::Socket("/s".into()));
        assert!(a.json);

        let Cmd::Wait(a) = parse(&["wait", "/dev/ivshmem0", "--timeout", "5", "--poll"]).unwrap()
        else {
            panic!()
        };
        assert_eq!((a.timeout, a.poll, a.nonblock), (5, true, false));
        assert!(parse(&["wait", "/dev/ivshmem0", "--poll", "--nonblock"]).is_err());
        let Cmd::State(a) = parse(&["state", "/dev/ivshmem0", "0x10"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.value, Some(16));
        let Cmd::State(a) = parse(&["state", "/dev/ivshmem0"]).unwrap() else {
            panic!()
        };
        assert_eq!(a.value, None);
    }
}
