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

const AFTER_HELP: &str = "\
Example:
  ivshmem-server -F -v -S /tmp/ivshmem_socket -l 16M -n 2
  qemu-system-x86_64 ... \\
      -chardev socket,path=/tmp/ivshmem_socket,id=ivs \\
      -device ivshmem-doorbell,chardev=ivs,vectors=2

  Start one QEMU per guest with the same -chardev path; host programs can join
  too (see the ivshmem-peer library). The vectors= of every device must match
  -n.

Exit status:
  0  stopped by SIGINT/SIGTERM (or, without -F, the server was started)
  1  the server could not start (socket, memory or pid file error)
  2  invalid command line";

/// Command-line options, the same as QEMU's ivshmem-server plus long forms.
#[derive(Debug, Parser)]
#[command(name = "ivshmem-server", about = ABOUT, after_help = AFTER_HELP, max_term_width = 80)]
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

    /// Memory size in bytes; suffixes K, M, G, T
    #[arg(short = 'l', long, value_name = "SIZE", default_value = "4M", value_parser = parse_size)]
    pub size: u64,

    /// Interrupt vectors per peer, 1 to 64
    #[arg(short = 'n', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub vectors: u16,
}

impl Cli {
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

/// Parses a memory size: decimal bytes with an optional `B`, `K`, `M`, `G`
/// or `T` suffix (binary multiples, any case). The result must be a power of
/// two of at least one page: the guest sees the memory as a PCI BAR, whose
/// size is a power of two, and it is mapped page by page.
pub fn parse_size(s: &str) -> Result<u64, String> {
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
