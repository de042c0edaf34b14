// SPDX-License-Identifier: GPL-2.0
//! Command line (QEMU ivshmem-server compatible) and server configuration.

use std::path::PathBuf;

use clap::Parser;

/// Where the shared memory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryBacking {
    /// A POSIX shared memory object (`shm_open`), created if missing and
    /// removed when the server exits cleanly.
    ShmName(String),
    /// An unlinked file created in this directory (e.g. a hugetlbfs mount).
    Dir(PathBuf),
}

/// Everything [`Server::new`](crate::Server::new) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// UNIX socket the server listens on.
    pub socket_path: PathBuf,
    /// Backing of the shared memory.
    pub memory: MemoryBacking,
    /// Size of the shared memory in bytes.
    pub size: u64,
    /// Interrupt vectors (eventfds) per peer.
    pub vectors: u16,
    /// Log peers joining and leaving to stderr.
    pub verbose: bool,
}

const ABOUT: &str = "\
Share memory and doorbell interrupts between QEMU guests (ivshmem-doorbell
devices) and host processes.

ivshmem-server creates a shared memory region and listens on a UNIX socket
(a stale socket file left by an earlier run is replaced). Every client that
connects gets a peer id (the next free one in 0..65535, round robin; when
all are in use the client is refused), the memory's file descriptor, and one eventfd per
interrupt vector for itself and for every other peer. Ringing vector V of
peer P means writing to P's eventfd V. When a peer disconnects, its eventfds
are closed and the others are told.

If the memory holds lincell's v1 section layout (magic \"LCv1\", see
Documentation/ivshmem-v1-layout.md) and a departing peer's id is below its
max_peers, the server also clears that peer's state-table entry (if not
already 0) and rings vector 0 of every remaining peer, so that they learn a
peer that died without cleaning up has left. A guest departs when its QEMU
process closes the connection (exits or is killed); a guest kernel that
crashes or hangs inside a running QEMU stays connected, and its entry
stays as it was.

The memory is a POSIX shared memory object (-M, visible in /dev/shm, reused
if it exists) or an unlinked file in a directory (-m). Its size must be a
power of two and at least one page.

By default the server detaches into the background. SIGINT or SIGTERM stops
it, removing the socket, the pid file and the shared memory object.";

const V2_HELP: &str = "\
ivshmem 2.0 mode (--v2):
  With --v2 the process is also an ivshmem 2.0 PCI device (110a:4106,
  revision 0, class ff, sub-class:prog-if = --protocol) for QEMU >= 10.1
  guests, attached with vfio-user-pci to one of the --vfio-user sockets.
  Every socket serves one guest at a time; when that QEMU exits or dies,
  the guest's peer leaves and the socket accepts the next QEMU (a new
  peer). Guests and host peers (clients of -S, speaking the protocol
  above) take ids from one space, the next free id below --max-peers, when
  they connect; every socket exists once the server is ready. A socket
  given as PATH,protocol=0xNNNN gives its guest that protocol instead of
  --protocol (e.g. 0x8002 for a virtio-blk frontend, 0xc002 for its
  backend in another guest).

  The memory (-m or -M; -l is not used) holds, in this order: the state
  table (4 bytes per peer, rounded up to a page), the R/W section
  (--rw-size, writable by all), and one output section per peer
  (--output-size each, writable only by its owner). Sizes must be
  multiples of the page size; the memory is exactly their sum. A guest
  sees BAR0 (registers: ID, Max Peers, Interrupt Control, Doorbell,
  State), BAR1 (MSI-X, -n vectors), BAR2 (the memory, rounded up to a
  power of two) and the vendor capability with the section sizes and the
  one-shot bit (--one-shot).

  Doorbells: a guest's Doorbell write (target << 16 | vector) rings the
  target's eventfd; writes to absent peers or vectors are dropped. A ring
  of a guest's eventfd (by a host peer or another guest) raises its MSI-X
  vector if its Interrupt Control bit 0 is set, else it is dropped; with
  --one-shot each delivery clears that bit. A guest's State write stores
  its state-table entry and, if it changed, rings vector 0 of every other
  peer. When a peer leaves (QEMU exits or crashes, a host peer
  disconnects), its entry is cleared and, if it was not 0, vector 0 of
  every other peer rings. A device reset clears Interrupt Control and the
  guest's state.

  Host peers do not learn the layout from the server (the protocol is
  QEMU's, unchanged): give them the same --max-peers, --rw-size and
  --output-size (ivshmem_peer::v2::V2Layout). A host peer sets its state by
  writing its own state-table entry and ringing vector 0 of every other
  peer, as the device does for guests.

  Protection: by default the whole memory is mapped read/write into every
  guest; the state table and other peers' output sections are read-only
  only towards guest user space (ivshmem.ko maps them read-only), not
  against the guest kernel. With --strict only the R/W section and the
  guest's own output section are mapped; the rest of BAR2 is trapped:
  reads are answered from the memory, writes are refused, counted and
  logged (the first, then every 1024th). SIGUSR1 prints the counters
  (doorbells, delivered and dropped interrupts, refused writes) to
  stderr. Guest accesses are untrusted: bad offsets and sizes get errors,
  never a crash of the server.";

const AFTER_HELP: &str = "\
Example:
  ivshmem-server -F -v -S /tmp/ivshmem_socket -l 16M -n 2
  qemu-system-x86_64 ... \\
      -chardev socket,path=/tmp/ivshmem_socket,id=ivs \\
      -device ivshmem-doorbell,chardev=ivs,vectors=2

  Start one QEMU per guest with the same -chardev path; host programs can join
  too (see the ivshmem-peer library). The vectors= of every device must match
  -n.

  ivshmem-server --v2 -F -S /tmp/ivs -m /dev/shm --max-peers 3 -n 2 \\
      --rw-size 1M --output-size 64K --vfio-user /tmp/g0 --vfio-user /tmp/g1
  qemu-system-x86_64 -M q35 ... \\
      -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"type\":\"unix\",\"path\":\"/tmp/g0\"}}'

Exit status:
  0  stopped by SIGINT/SIGTERM (or, without -F, the server was started)
  1  the server could not start (socket, memory or pid file error)
  2  invalid command line";

/// Command-line options, the same as QEMU's ivshmem-server plus long forms.
#[derive(Debug, Parser)]
#[command(name = "ivshmem-server", about = ABOUT, long_about = long_about(), after_help = AFTER_HELP, max_term_width = 80)]
pub struct Cli {
    /// Print a line for every peer that connects or leaves
    #[arg(short, long)]
    pub verbose: bool,

    /// Stay in the foreground instead of daemonizing
    #[arg(short = 'F', long)]
    pub foreground: bool,

    /// Write the server's pid to PATH; removed on exit
    #[arg(short, long, value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// UNIX socket to listen on
    #[arg(
        short = 'S',
        long,
        value_name = "PATH",
        default_value = "/tmp/ivshmem_socket"
    )]
    pub socket: PathBuf,

    /// POSIX shared memory object to use
    #[arg(short = 'M', long, value_name = "NAME", default_value = "ivshmem")]
    pub shm_name: String,

    /// Use an unlinked file in DIR instead of -M
    #[arg(short = 'm', long, value_name = "DIR", conflicts_with = "shm_name")]
    pub shm_dir: Option<PathBuf>,

    /// Memory size in bytes; suffixes K, M, G, T (not with --v2)
    #[arg(short = 'l', long, value_name = "SIZE", default_value = "4M", value_parser = parse_size,
          conflicts_with = "v2")]
    pub size: u64,

    /// Interrupt vectors per peer, 1 to 64
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub vectors: u16,

    /// Be an ivshmem 2.0 device for vfio-user guests too (see above)
    #[arg(long)]
    pub v2: bool,

    /// ivshmem 2.0 Max Peers (ids 0..N-1), 2 to 65536
    #[arg(long, value_name = "N", default_value_t = 2, requires = "v2",
          value_parser = clap::value_parser!(u32).range(2..=65536))]
    pub max_peers: u32,

    /// ivshmem 2.0 R/W section size, a page multiple (may be 0)
    #[arg(long, value_name = "SIZE", default_value = "0", requires = "v2", value_parser = parse_section_size)]
    pub rw_size: u64,

    /// ivshmem 2.0 output section size per peer, a page multiple (may be 0)
    #[arg(long, value_name = "SIZE", default_value = "0", requires = "v2", value_parser = parse_section_size)]
    pub output_size: u64,

    /// ivshmem 2.0 protocol (sub-class:prog-if), e.g. 0x8002
    #[arg(long, value_name = "0xNNNN", default_value = "0", requires = "v2", value_parser = parse_protocol)]
    pub protocol: u16,

    /// vfio-user socket for one guest; repeat for more guests
    ///
    /// PATH may end in ",protocol=0xNNNN": that guest's function gets this
    /// protocol instead of --protocol (e.g. a virtio frontend/backend pair).
    #[arg(long = "vfio-user", value_name = "PATH[,protocol=P]", requires = "v2",
          value_parser = parse_endpoint)]
    pub vfio_user: Vec<crate::v2::EndpointSpec>,

    /// ivshmem 2.0 one-shot interrupt mode (privileged control bit 0)
    #[arg(long, requires = "v2")]
    pub one_shot: bool,

    /// Map only a guest's own sections; trap and refuse writes to the rest
    #[arg(long, requires = "v2")]
    pub strict: bool,
}

/// The long description: the protocol, then the `--v2` mode.
fn long_about() -> String {
    format!("{ABOUT}\n\n{V2_HELP}")
}

impl Cli {
    /// The `--v2` device configuration these options describe.
    pub fn v2_config(&self) -> crate::v2::V2Config {
        crate::v2::V2Config {
            socket_path: self.socket.clone(),
            memory: match &self.shm_dir {
                Some(dir) => MemoryBacking::Dir(dir.clone()),
                None => MemoryBacking::ShmName(self.shm_name.clone()),
            },
            max_peers: self.max_peers,
            vectors: self.vectors,
            rw_size: self.rw_size,
            output_size: self.output_size,
            protocol: self.protocol,
            one_shot: self.one_shot,
            strict: self.strict,
            endpoints: self.vfio_user.clone(),
            verbose: self.verbose,
        }
    }

    /// The server configuration these options describe.
    pub fn config(&self) -> Config {
        Config {
            socket_path: self.socket.clone(),
            memory: match &self.shm_dir {
                Some(dir) => MemoryBacking::Dir(dir.clone()),
                None => MemoryBacking::ShmName(self.shm_name.clone()),
            },
            size: self.size,
            vectors: self.vectors,
            verbose: self.verbose,
        }
    }
}

/// Parses a `--vfio-user` value: a path, optionally followed by
/// `,protocol=0xNNNN`.
pub fn parse_endpoint(s: &str) -> Result<crate::v2::EndpointSpec, String> {
    let (path, protocol) = match s.rsplit_once(",protocol=") {
        Some((path, p)) => (path, Some(parse_protocol(p)?)),
        None => (s, None),
    };
    if path.is_empty() {
        return Err(format!("invalid --vfio-user '{s}': empty path"));
    }
    Ok(crate::v2::EndpointSpec {
        path: path.into(),
        protocol,
    })
}

/// Parses a protocol number: `0x` hexadecimal or decimal, 16 bits.
pub fn parse_protocol(s: &str) -> Result<u16, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse::<u16>(),
    };
    parsed.map_err(|_| format!("invalid protocol '{s}': expected a 16-bit number such as 0x8002"))
}

/// Parses an ivshmem 2.0 section size: like [`parse_size`], but 0 is
/// allowed and the size must be a multiple of the page size instead of a
/// power of two.
pub fn parse_section_size(s: &str) -> Result<u64, String> {
    let value = parse_bytes(s)?;
    let page = crate::v2::page_size();
    if value % page != 0 {
        return Err(format!(
            "size '{s}' ({value} bytes) is not a multiple of the page size ({page} bytes)"
        ));
    }
    Ok(value)
}

/// Parses a memory size: decimal bytes with an optional `B`, `K`, `M`, `G`
/// or `T` suffix (binary multiples, any case). The result must be a power of
/// two of at least one page: the guest sees the memory as a PCI BAR, whose
/// size is a power of two, and it is mapped page by page.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let value = parse_bytes(s)?;
    // SAFETY: sysconf takes no pointers.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if value < page {
        return Err(format!(
            "size '{s}' is smaller than one page ({page} bytes)"
        ));
    }
    if !value.is_power_of_two() {
        return Err(format!("size '{s}' ({value} bytes) is not a power of two"));
    }
    Ok(value)
}

/// Decimal bytes with an optional binary-multiple suffix, below 2^63.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'B') => (&s[..s.len() - 1], 0),
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        Some(b'T') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid size '{s}': expected a number of bytes with an optional K, M, G or T suffix, e.g. 4M"
        ));
    }
    let too_big = || format!("size '{s}' is too large");
    let value = digits
        .parse::<u64>()
        .map_err(|_| too_big())?
        .checked_mul(1 << shift)
        .filter(|&v| i64::try_from(v).is_ok())
        .ok_or_else(too_big)?;
    Ok(value)
}
