// SPDX-License-Identifier: GPL-2.0

//! A guest test: one script, one or more guests, optional shared devices.
//!
//! A guest test is a shell script under `tests/guest/` that prints TAP on
//! stdout. Lines of the form
//!
//! ```text
//! # lincell-vm: guests=a,b cpus=2 memory=1G timeout=180
//! # lincell-vm: ivshmem-plain=1M
//! # lincell-vm: ivshmem-doorbell=2:4M
//! # lincell-vm: host=tests/host/peer.sh
//! ```
//!
//! say how to run it (all keys optional):
//! - `guests`: names of the guests to boot at once, each running the script
//!   with `LINCELL_GUEST` set to its name (default: one guest, `guest`);
//! - `cpus`, `memory`: per guest (default 2, 1G);
//! - `timeout`: seconds for the whole scenario (default 240);
//! - `ivshmem-plain=SIZE`: one memory file shared by all guests of the
//!   scenario, attached to each as `-device ivshmem-plain`;
//! - `ivshmem-doorbell=VECTORS:SIZE`: starts the project's `ivshmem-server`
//!   on a private socket and attaches each guest as `-device
//!   ivshmem-doorbell` (interrupts between guests and host peers);
//! - `ivshmem-side=VECTORS:SIZE`: a second QEMU `ivshmem-doorbell`
//!   device per guest, on an `ivshmem-server` of its own (socket
//!   `side/ivshmem.sock`, its log `side/ivshmem-server.log`), in every
//!   revision: also next to an ivshmem 2.0 device it stays QEMU's v1
//!   device. Host peers find its socket in `LINCELL_IVSHMEM_SIDE_SOCKET`.
//!   For doorbells beside a device that owns its whole memory (a
//!   vdev-remote disk: `vdev-chaos.sh`'s ping-pong); the scripts tell the
//!   two apart by size (`SIZE` must differ from the main device's);
//! - `ivshmem2=PEERS:RWSIZE[:OUTSIZE[:PROTOCOL]]`: an ivshmem 2.0 device
//!   ([`Ivshmem2`]): starts the device process (`ivshmem-server --v2`) with
//!   PEERS as Maximum Peers, an R/W section of RWSIZE, an output section of
//!   OUTSIZE per peer (default 0) and PROTOCOL (hex, the class code's
//!   sub-class and prog-if; default 0; sizes in whole 4 KiB pages), one
//!   vfio-user socket per guest, and
//!   boots every guest with QEMU 11 ([`guest::qemu11`]: Debian 12's QEMU has
//!   no `vfio-user-pci`; `make setup` installs it) and a `vfio-user-pci`
//!   device on its socket. Host peers join through the device process's
//!   socket (`LINCELL_IVSHMEM_SOCKET`), as with `ivshmem-doorbell`. Options:
//!   `ivshmem2-vectors=N` (MSI-X vectors per peer, default 1, like
//!   `ivshmem-server -n` and QEMU's `ivshmem-doorbell`), `ivshmem2-strict=1`
//!   (the state table and the other peers' output sections are not mapped
//!   into guests but served by the device process, which refuses writes to
//!   them), `ivshmem2-one-shot=1` (one-shot interrupt mode),
//!   `ivshmem2-backend=GUEST` (that guest's function gets the virtio
//!   back-end protocol, `0xc000 | ID`, of the front-end PROTOCOL `0x8000 |
//!   ID` the others get: a backend in a guest). x86_64 guests only; without
//!   `revisions=`, not together with `ivshmem-doorbell`;
//! - `revisions=v1,v2`: run the script once per ivshmem revision ([`Revision`]):
//!   v1 with its `ivshmem-doorbell` device as written, v2 with an ivshmem
//!   2.0 device instead — the script's `ivshmem2=` if it has one, else the
//!   one equivalent to its `ivshmem-doorbell=VECTORS:SIZE` under lincell's
//!   v1 layout ([`Ivshmem2::like_doorbell`]: same vectors, Maximum Peers,
//!   R/W and output section sizes), or to its `ivshmem-plain=SIZE` (the
//!   same with one vector: ivshmem 2.0 always has MSI-X). The v2 run's results are named
//!   `v2/NAME` (like the arm64 board's `arm64/NAME`; `--filter v2/` selects
//!   them all), its output goes under `<work>/v2/`. The arm64 board runs v1
//!   only (it has no QEMU 11). Needs `ivshmem-doorbell=` or `ivshmem-plain=`;
//! - `host=COMMAND`: a host-side peer started once the guests boot; its TAP
//!   output is counted like a guest's (env: `LINCELL_IVSHMEM_SOCKET`,
//!   `LINCELL_IVSHMEM_REV` as below, and with an ivshmem 2.0 device
//!   `LINCELL_IVSHMEM_V2_LAYOUT=MAX_PEERS:RW_SIZE:OUTPUT_SIZE`, which
//!   `lincell` and `ivshmem-peer` read to find the sections);
//! - `killed=GUEST[,GUEST]`: the host peer kills these guests (e.g. `pkill
//!   -KILL` of the QEMU whose command line holds `vfio-GUEST.sock` or the
//!   scenario directory): a killed guest's results are the TAP it printed
//!   first, plus `killed`, which fails if its script ran to its end. Its
//!   kernel log is lost with it. Needs `host=`;
//! - `append=ARGS`: extra kernel command-line arguments (the rest of the
//!   line, e.g. `append=nohz_full=2-3 rcu_nocbs=2-3`), after the ones every
//!   guest gets ([`guest::DEFAULT_KERNEL_ARGS`]);
//! - `boot=NAME`: scripts naming the same boot share one boot of their
//!   guests (a TCG boot costs tens of seconds), run one after the other in
//!   file-name order, each with its own output, results and kernel log. Their
//!   other directives must be the same (timeouts add up) and none may have
//!   a host peer;
//! - `arch=x86_64,arm64`: the guest kinds ([`guest::Kind`]) the script runs
//!   on (default `x86_64`, the virtme-ng guest); `arm64` is QEMU's `virt`
//!   board, which `lincell-vm check --arm64 KDIR` boots;
//! - `disk=SIZE`: a fresh backing file of SIZE (`disk.img` in the
//!   scenario's directory) attached as QEMU's own `virtio-blk-pci` disk;
//!   host peers find it in `LINCELL_DISK` (the vdev-remote benchmark serves
//!   the same file);
//! - `net=tap`: each guest also gets QEMU's own `virtio-net-pci` (the
//!   native baseline of network benchmarks) on a TAP device QEMU creates
//!   in the host's namespace ([`native_net`]: named `lcq` and 8 hex
//!   digits, unique per scenario and guest; MAC `52:54:00:6c:63:NN`, NN the
//!   guest's place in `guests=` from 01). Guests find their interface by
//!   the MAC in `LINCELL_NET_MAC`; the host peer finds the TAPs in
//!   `LINCELL_NET_TAPS` (`GUEST=IFNAME` separated by spaces), to move
//!   them into a namespace of its own, bridge or address them. A TAP goes
//!   away with its QEMU. Needs `host=` (nothing else attaches the TAPs);
//!   x86_64 guests;
//! - `ratio=ROW/ROW` (benchmarks, repeatable): see [`crate::bench`].
//!
//! A scenario with an ivshmem device gives its scripts (and its host peer)
//! `LINCELL_IVSHMEM_REV`: `2` with an ivshmem 2.0 device, `1` with QEMU's
//! ivshmem (`ivshmem-doorbell`, `ivshmem-plain`). A `revisions=` script is
//! the same script on both; where the revisions differ it asks, e.g.
//!
//! ```text
//! # lincell-vm: ivshmem-doorbell=2:1M revisions=v1,v2 cpus=2 timeout=300
//! dev=$(ls -d /sys/bus/pci/devices/*/ivshmem | head -1)
//! if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then
//!     grep -qx 0x4106 "$dev/../device" && echo "ok 1 - ivshmem 2.0 device"
//! else
//!     grep -qx 0x1110 "$dev/../device" && echo "ok 1 - ivshmem v1 device"
//! fi
//! ```
//!
//! (the arm64 board does not set it: `${LINCELL_IVSHMEM_REV:-1}`).
//!
//! Inside the guest each script runs through `virtme/guest-run.sh`, which
//! mounts debugfs, runs it with `LINCELL_OUT` pointing to a writable
//! directory, saves (and clears) the kernel log, and writes a `done` marker.
//! A script that never writes the marker did not finish: it or one before it
//! in the same boot hung, crashed, or the guest never booted. (The arm64
//! board has no directory shared with the host: `guest-run.sh` sends those
//! files, and those a script sends with `host_copy`, over its console.)

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::guest::{self, Exit, GuestSpec};

/// Name of the guest of a scenario that names none.
pub const DEFAULT_GUEST: &str = "guest";

/// Parsed `# lincell-vm:` directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directives {
    /// Guest names.
    pub guests: Vec<String>,
    /// vCPUs per guest.
    pub cpus: u32,
    /// Memory per guest.
    pub memory: String,
    /// Time limit for the scenario.
    pub timeout: Duration,
    /// Size of a shared `ivshmem-plain` region, if any.
    pub ivshmem_plain: Option<u64>,
    /// `(vectors, size)` of an `ivshmem-doorbell` server, if any.
    pub ivshmem_doorbell: Option<(u32, u64)>,
    /// `(vectors, size)` of a second `ivshmem-doorbell` server
    /// (`ivshmem-side=`), if any.
    pub ivshmem_side: Option<(u32, u64)>,
    /// An ivshmem 2.0 device (`ivshmem2=`), if any.
    pub ivshmem2: Option<Ivshmem2>,
    /// The ivshmem revisions a `revisions=` script runs on (empty: the
    /// script runs once, with the devices it names).
    pub revisions: Vec<Revision>,
    /// Host-side peer command, if any.
    pub host: Option<String>,
    /// Extra kernel arguments.
    pub append: Vec<String>,
    /// Name of the boot this script shares with others, if any.
    pub boot: Option<String>,
    /// The guest kinds it runs on ([`guest::Kind::arch`]).
    pub arch: Vec<String>,
    /// Size of a QEMU `virtio-blk-pci` disk, if any.
    pub disk: Option<u64>,
    /// Benchmark ratios, `(numerator row, denominator row)`.
    pub ratio: Vec<(String, String)>,
    /// Guests the host peer kills (`killed=`).
    pub killed: Vec<String>,
    /// QEMU's own virtio-net on a TAP per guest (`net=tap`).
    pub native_net: bool,
}

impl Directives {
    /// The directives of scripts sharing one boot: theirs, which must agree
    /// (but for timeouts, which add up, and the kinds they run on).
    pub fn merge(all: &[Directives]) -> Result<Directives, String> {
        let first = all.first().ok_or("no scripts")?;
        let mut merged = first.clone();
        merged.timeout = Duration::ZERO;
        for d in all {
            if d.host.is_some() && all.len() > 1 {
                return Err("a script with a host peer cannot share a boot".into());
            }
            // Each kind's boots are grouped on their own: the kinds
            // scripts run on may differ.
            let same = Directives {
                timeout: first.timeout,
                arch: first.arch.clone(),
                ..d.clone()
            };
            if &same != first {
                return Err(format!(
                    "scripts sharing boot `{}` differ in their directives",
                    first.boot.as_deref().unwrap_or("")
                ));
            }
            merged.timeout += d.timeout;
        }
        Ok(merged)
    }

    /// The runs the script asks for: its `revisions=`, or one run as
    /// written (reported as v1, the runner's default).
    pub fn runs(&self) -> Vec<Revision> {
        if self.revisions.is_empty() {
            vec![Revision::V1]
        } else {
            self.revisions.clone()
        }
    }

    /// The directives of the run on revision `rev`: for a `revisions=`
    /// script, v1 keeps its `ivshmem-doorbell` device and drops `ivshmem2=`,
    /// v2 swaps the doorbell device for its ivshmem 2.0 device (see
    /// `revisions=`). Other scripts run as written, whatever `rev`.
    pub fn resolve(&self, rev: Revision) -> Directives {
        let mut d = self.clone();
        if self.revisions.is_empty() {
            return d;
        }
        match rev {
            Revision::V1 => d.ivshmem2 = None,
            Revision::V2 => {
                // A plain device's v2 twin has one vector: ivshmem 2.0
                // always has MSI-X.
                let like = self
                    .ivshmem_doorbell
                    .or(self.ivshmem_plain.map(|size| (1, size)))
                    .map(|(vectors, size)| Ivshmem2::like_doorbell(vectors, size));
                d.ivshmem2 = self.ivshmem2.clone().or(like);
                d.ivshmem_doorbell = None;
                d.ivshmem_plain = None;
            }
        }
        d
    }

    /// The ivshmem revision the scenario's guests see (`LINCELL_IVSHMEM_REV`),
    /// if it has an ivshmem device.
    pub fn ivshmem_rev(&self) -> Option<Revision> {
        if self.ivshmem2.is_some() {
            Some(Revision::V2)
        } else if self.ivshmem_doorbell.is_some() || self.ivshmem_plain.is_some() {
            Some(Revision::V1)
        } else {
            None
        }
    }
}

/// An ivshmem revision, for `revisions=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Revision {
    /// QEMU's ivshmem (`1af4:1110`, `ivshmem-doorbell`), with lincell's v1
    /// layout.
    #[default]
    V1,
    /// ivshmem 2.0 (`110a:4106`): the device process behind QEMU 11's
    /// `vfio-user-pci`.
    V2,
}

impl Revision {
    /// Its number, as scripts see it in `LINCELL_IVSHMEM_REV`.
    pub fn number(self) -> u8 {
        match self {
            Revision::V1 => 1,
            Revision::V2 => 2,
        }
    }

    /// What the names of a `revisions=` script's results on this revision
    /// start with: nothing on v1 (the names tests always had), `v2/` on v2.
    pub fn prefix(self) -> &'static str {
        match self {
            Revision::V1 => "",
            Revision::V2 => "v2/",
        }
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.number())
    }
}

impl FromStr for Revision {
    type Err = String;

    /// `v1` or `v2` (also `1`, `2`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" | "1" => Ok(Revision::V1),
            "v2" | "2" => Ok(Revision::V2),
            _ => Err(format!("bad ivshmem revision `{s}` (v1 or v2)")),
        }
    }
}

/// An ivshmem 2.0 device: what the device process is started with
/// (`ivshmem2=` and its options, see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ivshmem2 {
    /// Maximum Peers (guests and host peers together).
    pub max_peers: u32,
    /// Size of the R/W section, in bytes (may be 0).
    pub rw_size: u64,
    /// Size of each peer's output section, in bytes (may be 0).
    pub output_size: u64,
    /// Protocol (the class code's sub-class and prog-if), e.g. `0x8002` for
    /// a virtio-over-ivshmem block frontend.
    pub protocol: u16,
    /// MSI-X vectors per peer.
    pub vectors: u32,
    /// Strict mode: the read-only parts are served, not mapped.
    pub strict: bool,
    /// One-shot interrupt mode.
    pub one_shot: bool,
    /// The guest whose function is the virtio back-end of the front-end
    /// `protocol` (`ivshmem2-backend=`): it gets [`Ivshmem2::backend_protocol`].
    pub backend: Option<String>,
}

/// Granule of lincell's v1 layout as x86_64 guests create it (their page
/// size), and what ivshmem 2.0 section sizes are multiples of.
const V1_GRANULE: u64 = 4096;
/// Maximum Peers of lincell's v1 layout (Documentation/ivshmem-v1-layout.md).
const V1_MAX_PEERS: u32 = 8;

impl Ivshmem2 {
    /// Default `ivshmem2-vectors`.
    pub const DEFAULT_VECTORS: u32 = 1;

    /// The ivshmem 2.0 device whose sections are those lincell's v1 layout
    /// makes of an `ivshmem-doorbell=VECTORS:SIZE` device (x86_64 guests,
    /// 4 KiB granule; Documentation/ivshmem-v1-layout.md): 8 peers, output
    /// sections of `min(SIZE / 16, 64 KiB)` (0 below 1 MiB), the rest after
    /// the header and the state table as R/W section, VECTORS vectors,
    /// protocol 0. A script sees the same section sizes on both revisions.
    pub fn like_doorbell(vectors: u32, size: u64) -> Ivshmem2 {
        let down = |n: u64| n / V1_GRANULE * V1_GRANULE;
        let output_size = if size < 1 << 20 {
            0
        } else {
            down((size / 16).min(64 << 10))
        };
        // The header and the state table take one granule each.
        let rw_size = down(
            size.saturating_sub(2 * V1_GRANULE)
                .saturating_sub(u64::from(V1_MAX_PEERS) * output_size),
        );
        Ivshmem2 {
            max_peers: V1_MAX_PEERS,
            rw_size,
            output_size,
            protocol: 0,
            vectors,
            strict: false,
            one_shot: false,
            backend: None,
        }
    }

    /// Parses the value of `ivshmem2=`: `PEERS:RWSIZE[:OUTSIZE[:PROTOCOL]]`
    /// (the options at their defaults).
    pub fn parse(value: &str) -> Result<Ivshmem2, String> {
        let bad = |what: &str| {
            format!("`ivshmem2={value}`: {what} (expected PEERS:RWSIZE[:OUTSIZE[:PROTOCOL]])")
        };
        let parts: Vec<&str> = value.split(':').collect();
        if !(2..=4).contains(&parts.len()) {
            return Err(bad("wrong number of fields"));
        }
        let max_peers = parts[0]
            .parse::<u32>()
            .ok()
            .filter(|p| (1..=u32::from(u16::MAX)).contains(p))
            .ok_or_else(|| bad("PEERS must be 1 to 65535"))?;
        // Sections are whole pages (the device maps them into guests).
        let section = |s: &str| {
            let n = if s == "0" { 0 } else { parse_size(s)? };
            if n % V1_GRANULE != 0 {
                return Err(format!("`{s}` is not a multiple of 4096"));
            }
            Ok(n)
        };
        let rw_size = section(parts[1]).map_err(|e: String| bad(&e))?;
        let output_size = match parts.get(2) {
            Some(s) => section(s).map_err(|e| bad(&e))?,
            None => 0,
        };
        let protocol = match parts.get(3) {
            Some(s) => {
                let digits = s
                    .strip_prefix("0x")
                    .or_else(|| s.strip_prefix("0X"))
                    .unwrap_or(s);
                u16::from_str_radix(digits, 16)
                    .map_err(|_| bad("PROTOCOL must be 16-bit hex, e.g. 0x8002"))?
            }
            None => 0,
        };
        Ok(Ivshmem2 {
            max_peers,
            rw_size,
            output_size,
            protocol,
            vectors: Self::DEFAULT_VECTORS,
            strict: false,
            one_shot: false,
            backend: None,
        })
    }

    /// The protocol of the virtio back-end paired with the front-end
    /// `protocol` (`0x8000 | id` -> `0xc000 | id`, ivshmem 2.0's virtio
    /// classes), or `None` if `protocol` is no virtio front-end.
    pub fn backend_protocol(&self) -> Option<u16> {
        (self.protocol & 0xc000 == 0x8000).then_some(self.protocol | 0x4000)
    }

    /// The device process's arguments (after the program): host socket
    /// `socket`, its files in `dir`, one vfio-user socket per guest (the
    /// back-end guest's with its protocol).
    pub fn server_args(
        &self,
        dir: &Path,
        socket: &Path,
        vfio_sockets: &[(String, PathBuf)],
    ) -> Vec<String> {
        // -v: peers joining and leaving go to the log (ivshmem-server.log).
        let mut args: Vec<String> = vec![
            "--v2".into(),
            "-F".into(),
            "-v".into(),
            "-S".into(),
            socket.display().to_string(),
            "-m".into(),
            dir.display().to_string(),
            "--max-peers".into(),
            self.max_peers.to_string(),
            "-n".into(),
            self.vectors.to_string(),
            "--rw-size".into(),
            self.rw_size.to_string(),
            "--output-size".into(),
            self.output_size.to_string(),
            "--protocol".into(),
            format!("{:#06x}", self.protocol),
        ];
        if self.one_shot {
            args.push("--one-shot".into());
        }
        if self.strict {
            args.push("--strict".into());
        }
        for (guest, s) in vfio_sockets {
            args.push("--vfio-user".into());
            match self.backend_protocol() {
                Some(p) if self.backend.as_ref() == Some(guest) => {
                    args.push(format!("{},protocol={p:#06x}", s.display()))
                }
                _ => args.push(s.display().to_string()),
            }
        }
        args
    }
}

/// The vfio-user socket of guest `guest` of the scenario in `dir`.
pub fn vfio_socket(dir: &Path, guest: &str) -> PathBuf {
    dir.join(format!("vfio-{guest}.sock"))
}

/// The native network interface of guest number `index` (from 0) named
/// `guest` of the scenario in `dir` (`net=tap`): the name of the TAP QEMU
/// creates for it, the MAC of its `virtio-net-pci` and the QEMU options.
/// The TAP's name hashes this process, `dir` and `guest` (FNV-1a, 32
/// bits): scenarios run at once, here or by another harness, get their own.
pub fn native_net(dir: &Path, guest: &str, index: usize) -> (String, String, String) {
    let seed = format!("{}:{}:{guest}", std::process::id(), dir.display());
    let h = seed.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let tap = format!("lcq{h:08x}");
    // A scenario has a few guests; `% 255 + 1` keeps the octet from 01 to
    // ff whatever their number.
    let mac = format!("52:54:00:6c:63:{:02x}", index % 255 + 1);
    let opts = format!(
        "-netdev tap,id=lincellnet,ifname={tap},script=no,downscript=no \
         -device virtio-net-pci,netdev=lincellnet,mac={mac}"
    );
    (tap, mac, opts)
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            guests: vec![DEFAULT_GUEST.into()],
            cpus: 2,
            memory: "1G".into(),
            timeout: Duration::from_secs(240),
            ivshmem_plain: None,
            ivshmem_doorbell: None,
            ivshmem_side: None,
            ivshmem2: None,
            revisions: Vec::new(),
            host: None,
            append: Vec::new(),
            boot: None,
            arch: vec!["x86_64".into()],
            disk: None,
            ratio: Vec::new(),
            killed: Vec::new(),
            native_net: false,
        }
    }
}

/// The guest kinds `arch=` may name.
pub const ARCHES: &[&str] = &["x86_64", "arm64"];

/// Parses a size like `4096`, `64K`, `1M`, `2G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad size `{s}` (expected e.g. 4096, 64K, 1M)"))
}

/// Reads the directives from a script's text.
pub fn parse_directives(text: &str) -> Result<Directives, String> {
    let mut d = Directives::default();
    // The `ivshmem2-*` options, applied to `ivshmem2=` at the end (they
    // may come before it).
    let mut v2_vectors = None;
    let mut v2_strict = None;
    let mut v2_one_shot = None;
    let mut v2_backend = None;
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("# lincell-vm:") else {
            continue;
        };
        let rest = rest.trim();
        // `host=` takes the rest of the line (a command with spaces).
        if let Some(cmd) = rest.strip_prefix("host=") {
            d.host = Some(cmd.trim().to_string());
            continue;
        }
        // So does `append=` (kernel arguments).
        if let Some(args) = rest.strip_prefix("append=") {
            d.append.extend(args.split_whitespace().map(str::to_string));
            continue;
        }
        for item in rest.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("directive `{item}` is not key=value"))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad number in `{item}`"))
            };
            match key {
                "guests" => {
                    d.guests = value.split(',').map(str::to_string).collect();
                    if d.guests.iter().any(|g| {
                        g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    }) {
                        return Err(format!("bad guest names in `{item}`"));
                    }
                }
                "cpus" => {
                    d.cpus = u32::try_from(num(value)?).map_err(|_| format!("bad `{item}`"))?
                }
                "memory" => d.memory = value.to_string(),
                "timeout" => d.timeout = Duration::from_secs(num(value)?),
                "boot" => {
                    if value.is_empty()
                        || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        return Err(format!("bad boot name in `{item}`"));
                    }
                    d.boot = Some(value.to_string());
                }
                "arch" => {
                    d.arch = value.split(',').map(str::to_string).collect();
                    if d.arch.iter().any(|a| !ARCHES.contains(&a.as_str())) {
                        return Err(format!("`{item}`: the kinds are {}", ARCHES.join(", ")));
                    }
                }
                "disk" => d.disk = Some(parse_size(value)?),
                "killed" => d.killed = value.split(',').map(str::to_string).collect(),
                "net" => {
                    if value != "tap" {
                        return Err(format!("`{item}`: the only kind is `net=tap`"));
                    }
                    d.native_net = true;
                }
                "ratio" => {
                    let (n, m) = value
                        .split_once('/')
                        .filter(|(n, m)| !n.is_empty() && !m.is_empty())
                        .ok_or_else(|| format!("`{item}`: expected ROW/ROW"))?;
                    d.ratio.push((n.to_string(), m.to_string()));
                }
                "ivshmem-plain" => d.ivshmem_plain = Some(parse_size(value)?),
                "ivshmem-doorbell" => {
                    let (v, s) = value
                        .split_once(':')
                        .ok_or_else(|| format!("`{item}`: expected VECTORS:SIZE"))?;
                    let v = u32::try_from(num(v)?).map_err(|_| format!("bad `{item}`"))?;
                    d.ivshmem_doorbell = Some((v, parse_size(s)?));
                }
                "ivshmem-side" => {
                    let (v, s) = value
                        .split_once(':')
                        .ok_or_else(|| format!("`{item}`: expected VECTORS:SIZE"))?;
                    let v = u32::try_from(num(v)?).map_err(|_| format!("bad `{item}`"))?;
                    d.ivshmem_side = Some((v, parse_size(s)?));
                }
                "ivshmem2" => d.ivshmem2 = Some(Ivshmem2::parse(value)?),
                "ivshmem2-vectors" => {
                    let n = u32::try_from(num(value)?)
                        .ok()
                        .filter(|n| (1..=64).contains(n))
                        .ok_or_else(|| format!("`{item}`: 1 to 64 vectors"))?;
                    v2_vectors = Some(n);
                }
                "ivshmem2-strict" => v2_strict = Some(flag(item, value)?),
                "ivshmem2-one-shot" => v2_one_shot = Some(flag(item, value)?),
                "ivshmem2-backend" => v2_backend = Some(value.to_string()),
                "revisions" => {
                    d.revisions = value
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<Vec<Revision>, _>>()
                        .map_err(|e| format!("`{item}`: {e}"))?;
                    let mut sorted = d.revisions.clone();
                    sorted.sort();
                    sorted.dedup();
                    if sorted.len() != d.revisions.len() {
                        return Err(format!("`{item}`: a revision twice"));
                    }
                }
                _ => return Err(format!("unknown directive `{key}`")),
            }
        }
    }
    match &mut d.ivshmem2 {
        Some(dev) => {
            dev.vectors = v2_vectors.unwrap_or(dev.vectors);
            dev.strict = v2_strict.unwrap_or(dev.strict);
            dev.one_shot = v2_one_shot.unwrap_or(dev.one_shot);
            if let Some(g) = v2_backend {
                if dev.backend_protocol().is_none() {
                    return Err(format!(
                        "`ivshmem2-backend={g}`: the device's protocol {:#06x} is no virtio \
                         front-end (0x8000 | device ID)",
                        dev.protocol
                    ));
                }
                if !d.guests.contains(&g) {
                    return Err(format!(
                        "`ivshmem2-backend={g}`: no guest `{g}` (see `guests=`)"
                    ));
                }
                dev.backend = Some(g);
            }
        }
        None if v2_vectors.is_some()
            || v2_strict.is_some()
            || v2_one_shot.is_some()
            || v2_backend.is_some() =>
        {
            return Err("the `ivshmem2-*` options need `ivshmem2=`".into());
        }
        None => {}
    }
    if let Some((_, size)) = d.ivshmem_side {
        let main = d.ivshmem_doorbell.map(|(_, s)| s).or(d.ivshmem_plain);
        if main.is_none_or(|m| m == size) {
            return Err(
                "`ivshmem-side=` needs a main device (`ivshmem-doorbell=` or `ivshmem-plain=`) \
                 of another size: scripts tell the two apart by size"
                    .into(),
            );
        }
    }
    if let Some(g) = d.killed.iter().find(|g| !d.guests.contains(g)) {
        return Err(format!("`killed={g}`: no guest `{g}` (see `guests=`)"));
    }
    if !d.killed.is_empty() && d.host.is_none() {
        return Err("`killed=` needs a host peer (`host=`) to kill the guest".into());
    }
    if d.native_net && d.host.is_none() {
        return Err("`net=tap` needs a host peer (`host=`) to attach the TAPs".into());
    }
    if d.native_net && d.arch.iter().any(|a| a != "x86_64") {
        return Err("`net=tap` guests are x86_64 only".into());
    }
    if d.revisions.is_empty() {
        if d.ivshmem2.is_some() && d.ivshmem_doorbell.is_some() {
            return Err(
                "`ivshmem2=` with `ivshmem-doorbell=`: a guest gets one of them \
                 (`revisions=v1,v2` runs the script once with each)"
                    .into(),
            );
        }
        if d.ivshmem2.is_some() && d.arch.iter().any(|a| a != "x86_64") {
            return Err("`ivshmem2=` guests are x86_64 only (QEMU 11)".into());
        }
    } else if d.ivshmem_doorbell.is_none() && d.ivshmem_plain.is_none() {
        return Err(
            "`revisions=` needs a v1 device, `ivshmem-doorbell=` or `ivshmem-plain=`".into(),
        );
    }
    Ok(d)
}

/// The value of a boolean directive: `1` or `0`.
fn flag(item: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" => Ok(true),
        "0" => Ok(false),
        _ => Err(format!("`{item}`: expected 1 or 0")),
    }
}

/// What one guest (or the host peer) of a scenario produced.
#[derive(Debug)]
pub struct GuestResult {
    /// Guest name (`host` for the host peer).
    pub name: String,
    /// How it ended.
    pub exit: Exit,
    /// TAP printed by the test script.
    pub tap: String,
    /// The guest's kernel log (empty for the host peer).
    pub dmesg: String,
    /// The script's exit code if it ran to its end (the `done` marker), or
    /// `None` if the guest hung, crashed or never booted.
    pub script_exit: Option<i32>,
    /// Launcher output, for diagnosing a guest that did not finish.
    pub console: String,
    /// Seconds the script itself took, by the guest's clock (the boot and
    /// the other scripts of a shared boot not included), if it finished.
    pub seconds: Option<f64>,
    /// Wall time.
    pub elapsed: Duration,
    /// The host peer was to kill this guest (`killed=`): it must not finish.
    pub killed: bool,
}

/// A guest whose launcher died early without a word: no results, no
/// console output, no `done` marker, within 30 s.
fn launcher_failed(r: &GuestResult) -> bool {
    r.name != "host"
        && r.script_exit.is_none()
        && r.tap.is_empty()
        && r.console.trim().is_empty()
        && r.elapsed < Duration::from_secs(30)
        && matches!(r.exit, Exit::Code(_))
}

fn read_marker(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Everything needed to run scenarios.
#[derive(Clone, Debug)]
pub struct Runner {
    /// Kernel build directory.
    pub kdir: PathBuf,
    /// Repository root (the guest sees it at the same path).
    pub root: PathBuf,
    /// Scratch directory for this run.
    pub work: PathBuf,
    /// Echo guest consoles to stderr.
    pub echo: bool,
    /// What the guests boot.
    pub kind: guest::Kind,
    /// The revision `revisions=` scripts run on ([`Directives::resolve`]).
    pub revision: Revision,
}

/// Kills a host helper process when dropped.
struct HostProcess(Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the server `server` (its log `dir/ivshmem-server.log`) has
/// created every socket of `sockets` (QEMU connects at start-up); fails at
/// once if it exits, with the end of its log.
fn wait_for_sockets(
    mut server: HostProcess,
    dir: &Path,
    sockets: &[PathBuf],
) -> io::Result<HostProcess> {
    let log = dir.join("ivshmem-server.log");
    let until = Instant::now() + Duration::from_secs(10);
    while let Some(missing) = sockets.iter().find(|s| !s.exists()) {
        let tail = || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(10)..].join("\n")
        };
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(io::Error::other(format!(
                "ivshmem-server exited ({status}) before creating {}:\n{}",
                missing.display(),
                tail()
            )));
        }
        if Instant::now() > until {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "ivshmem-server did not create {} within 10 s:\n{}",
                    missing.display(),
                    tail()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// The file name of a script without `.sh`: its scenario name.
pub fn script_name(script: &Path) -> String {
    script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a script's directives.
pub fn read_directives(script: &Path) -> io::Result<Directives> {
    let text = fs::read_to_string(script)?;
    parse_directives(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", script.display()),
        )
    })
}

/// Splits sorted `scripts` into boots: a script alone, or every script
/// naming the same `boot=` together (at the place of the first of them).
pub fn group_by_boot(scripts: &[PathBuf]) -> io::Result<Vec<Vec<PathBuf>>> {
    let mut boots: Vec<(Option<String>, Vec<PathBuf>)> = Vec::new();
    for s in scripts {
        let key = read_directives(s)?.boot;
        match boots.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, group)) => group.push(s.clone()),
            None => boots.push((key, vec![s.clone()])),
        }
    }
    Ok(boots.into_iter().map(|(_, g)| g).collect())
}

impl Runner {
    /// The runner of `revisions=` scripts on `rev`: the same guests, on
    /// `rev`, with their output under `<work>/v2` for v2 (both revisions of
    /// a script may run at once).
    pub fn for_revision(&self, rev: Revision) -> Runner {
        let mut r = self.clone();
        r.revision = rev;
        if rev != Revision::V1 {
            r.work = self.work.join(rev.to_string());
        }
        r
    }

    /// Runs the scenario in `script`; one result per guest (plus the host
    /// peer, if any).
    pub fn run(&self, script: &Path) -> io::Result<Vec<GuestResult>> {
        let mut all = self.run_boot(&[script.to_path_buf()])?;
        Ok(all.pop().map(|(_, r)| r).unwrap_or_default())
    }

    /// Runs `scripts` in one boot of their guests (see `boot=`); for each
    /// script, its name and one result per guest (plus the host peer).
    pub fn run_boot(&self, scripts: &[PathBuf]) -> io::Result<Vec<(String, Vec<GuestResult>)>> {
        let results = self.run_once(scripts)?;
        match results
            .iter()
            .flat_map(|(_, r)| r)
            .find(|r| launcher_failed(r))
        {
            Some(r) => {
                // Seen on this machine kind, rarely: virtme-ng exits 255
                // within seconds, printing nothing, before the guest runs
                // anything. That is the launcher, not the test: run the
                // scenario once more, and say so.
                println!(
                    "--- note: {} {} after {:.1} s without any output; running the scenario again",
                    r.name,
                    r.exit.describe(),
                    r.elapsed.as_secs_f64()
                );
                self.run_once(scripts)
            }
            None => Ok(results),
        }
    }

    fn run_once(&self, scripts: &[PathBuf]) -> io::Result<Vec<(String, Vec<GuestResult>)>> {
        let all = scripts
            .iter()
            .map(|s| read_directives(s))
            .collect::<io::Result<Vec<_>>>()?;
        let d = Directives::merge(&all)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            .resolve(self.revision);
        // Before anything starts: QEMU 11 for an ivshmem 2.0 device.
        let qemu = match (&d.ivshmem2, &self.kind) {
            (None, _) => None,
            (Some(_), guest::Kind::Vng) => Some(guest::qemu11(&self.root)?),
            (Some(_), guest::Kind::Arm64 { .. }) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the arm64 board has no ivshmem 2.0 device (no QEMU 11 for it)",
                ))
            }
        };
        let names: Vec<String> = scripts.iter().map(|s| script_name(s)).collect();
        // A lone script keeps the simple layout host peers rely on
        // (`<work>/<script>/<guest>`); a shared boot nests each script's
        // output under its guest's (`<work>/<boot>/<guest>/<script>`).
        let shared = scripts.len() > 1;
        let dir = self.work.join(match (&d.boot, shared) {
            (Some(b), true) => b.clone(),
            _ => names[0].clone(),
        });
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;

        let mut qemu_opts = Vec::new();
        if let Some(size) = d.ivshmem_plain {
            let mem = dir.join("ivshmem-plain.mem");
            fs::File::create(&mem)?.set_len(size)?;
            qemu_opts.push(format!(
                "-object memory-backend-file,size={size},share=on,mem-path={},id=lincellhm -device ivshmem-plain,memdev=lincellhm",
                mem.display()
            ));
        }
        let disk = dir.join("disk.img");
        if let Some(size) = d.disk {
            fs::File::create(&disk)?.set_len(size)?;
            qemu_opts.push(format!(
                "-drive file={},if=none,id=lincelldisk,format=raw -device virtio-blk-pci,drive=lincelldisk",
                disk.display()
            ));
        }
        let mut _server = None;
        let socket = dir.join("ivshmem.sock");
        if let Some((vectors, size)) = d.ivshmem_doorbell {
            _server = Some(self.start_server(&dir, &socket, vectors, size)?);
            qemu_opts.push(format!(
                "-chardev socket,path={},id=lincellivs -device ivshmem-doorbell,chardev=lincellivs,vectors={vectors}",
                socket.display()
            ));
        }
        if let Some(dev) = &d.ivshmem2 {
            _server = Some(self.start_device(&dir, &socket, dev, &d.guests)?);
        }
        let mut _side_server = None;
        let side_dir = dir.join("side");
        let side_socket = side_dir.join("ivshmem.sock");
        if let Some((vectors, size)) = d.ivshmem_side {
            fs::create_dir_all(&side_dir)?;
            _side_server = Some(self.start_server(&side_dir, &side_socket, vectors, size)?);
            qemu_opts.push(format!(
                "-chardev socket,path={},id=lincellivside -device ivshmem-doorbell,chardev=lincellivside,vectors={vectors}",
                side_socket.display()
            ));
        }
        let rev_env = d
            .ivshmem_rev()
            .map(|r| format!("env LINCELL_IVSHMEM_REV={} ", r.number()))
            .unwrap_or_default();

        let deadline = Instant::now() + d.timeout;
        // The same moment by the clock the guests' `date` shows (their RTC
        // starts from the host's): guest-run.sh's hang report comes just
        // before it.
        let epoch_deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |t| (t + d.timeout).as_secs());
        let mut running = Vec::new();
        let mut taps = Vec::new();
        for (index, name) in d.guests.iter().enumerate() {
            let gdir = dir.join(name);
            let outs: Vec<PathBuf> = if shared {
                names.iter().map(|n| gdir.join(n)).collect()
            } else {
                vec![gdir.clone()]
            };
            let mut guest_opts = qemu_opts.clone();
            let mut net_env = String::new();
            if d.native_net {
                let (tap, mac, opts) = native_net(&dir, name, index);
                guest_opts.push(opts);
                net_env = format!("env LINCELL_NET_MAC={mac} ");
                taps.push(format!("{name}={tap}"));
            }
            let mut command = format!(
                "env LINCELL_DEADLINE={epoch_deadline} {rev_env}{net_env}sh {}/virtme/guest-run.sh {name}",
                self.root.display()
            );
            // The board's: each script as the initramfs holds it, and its
            // output directory relative to the guest's.
            let mut board_run = Vec::new();
            for ((script, out), script_name) in scripts.iter().zip(&outs).zip(&names) {
                fs::create_dir_all(out)?;
                command.push_str(&format!(" {} {}", script.display(), out.display()));
                let rel = script.strip_prefix(&self.root).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not in the repository", script.display()),
                    )
                })?;
                let out_rel = if shared { script_name.as_str() } else { "." };
                board_run.push((rel.display().to_string(), out_rel.to_string()));
            }
            let mut kernel_args = d.append.clone();
            if matches!(self.kind, guest::Kind::Arm64 { .. }) {
                kernel_args.push(guest::board_run_arg(&board_run));
            }
            if d.ivshmem2.is_some() {
                guest_opts.push(guest::vfio_user_device(&vfio_socket(&dir, name))?);
            }
            let spec = GuestSpec {
                name: name.clone(),
                cpus: d.cpus,
                memory: d.memory.clone(),
                qemu_opts: guest_opts,
                qemu: qemu.clone(),
                kernel_args,
                command,
                rw_dirs: vec![gdir.clone()],
                echo: self.echo,
            };
            running.push((outs, guest::spawn_kind(&self.kind, &self.kdir, &spec)?));
        }

        let host = match &d.host {
            Some(cmd) => Some(self.start_host(cmd, &dir, &socket, &d, &taps)?),
            None => None,
        };

        let mut results: Vec<(String, Vec<GuestResult>)> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for (outs, g) in running {
            let name = g.name().to_string();
            let o = g.wait(deadline);
            for ((_, per_script), out) in results.iter_mut().zip(&outs) {
                per_script.push(GuestResult {
                    name: name.clone(),
                    exit: o.exit.clone(),
                    tap: fs::read_to_string(out.join("tap.txt")).unwrap_or_default(),
                    // A script that did not finish has no log of its own, but
                    // may have guest-run.sh's hang report.
                    dmesg: fs::read_to_string(out.join("dmesg.txt"))
                        .or_else(|_| fs::read_to_string(out.join("hang.txt")))
                        .unwrap_or_default(),
                    script_exit: read_marker(&out.join("done")),
                    console: o.console.clone(),
                    seconds: fs::read_to_string(out.join("seconds"))
                        .ok()
                        .and_then(|t| t.trim().parse().ok()),
                    elapsed: o.elapsed,
                    killed: d.killed.contains(&name),
                });
            }
        }
        // A guest whose launcher died at once will be run again (see
        // `run_boot`): its host peer would only wait out the deadline for
        // it, so it is stopped now (dropping it kills it).
        let relaunch = results.iter().flat_map(|(_, r)| r).any(launcher_failed);
        if let Some(h) = host.filter(|_| !relaunch) {
            let r = self.wait_host(h, &dir, deadline);
            results[0].1.push(r);
        }
        Ok(results)
    }

    fn start_server(
        &self,
        dir: &Path,
        socket: &Path,
        vectors: u32,
        size: u64,
    ) -> io::Result<HostProcess> {
        let (size, vectors) = (size.to_string(), vectors.to_string());
        let args: [&std::ffi::OsStr; 10] = [
            "-F".as_ref(),
            "-v".as_ref(),
            "-S".as_ref(),
            socket.as_os_str(),
            "-m".as_ref(),
            dir.as_os_str(),
            "-l".as_ref(),
            size.as_ref(),
            "-n".as_ref(),
            vectors.as_ref(),
        ];
        let child = self.spawn_server(dir, args)?;
        wait_for_sockets(child, dir, &[socket.to_path_buf()])
    }

    /// Starts the project's `ivshmem-server` with `args`, its stderr in
    /// `DIR/ivshmem-server.log` (both device kinds).
    fn spawn_server<S: AsRef<std::ffi::OsStr>>(
        &self,
        dir: &Path,
        args: impl IntoIterator<Item = S>,
    ) -> io::Result<HostProcess> {
        let bin = self.root.join("target/debug/ivshmem-server");
        let child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("ivshmem-server.log"))?)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", bin.display()))
            })?;
        Ok(HostProcess(child))
    }

    /// Starts the ivshmem 2.0 device process for `guests` (`ivshmem-server
    /// --v2`, [`Ivshmem2::server_args`]) and waits for its sockets.
    fn start_device(
        &self,
        dir: &Path,
        socket: &Path,
        dev: &Ivshmem2,
        guests: &[String],
    ) -> io::Result<HostProcess> {
        let vfio: Vec<(String, PathBuf)> = guests
            .iter()
            .map(|g| (g.clone(), vfio_socket(dir, g)))
            .collect();
        for (_, s) in &vfio {
            guest::check_socket_path(s)?;
        }
        guest::check_socket_path(socket)?;
        let child = self.spawn_server(dir, dev.server_args(dir, socket, &vfio))?;
        let mut all = vec![socket.to_path_buf()];
        all.extend(vfio.into_iter().map(|(_, s)| s));
        wait_for_sockets(child, dir, &all)
    }

    /// Starts the host peer `cmd` of the scenario in `dir` with directives
    /// `d` (its environment: see the module documentation); `taps` are the
    /// `GUEST=IFNAME` of `net=tap`.
    fn start_host(
        &self,
        cmd: &str,
        dir: &Path,
        socket: &Path,
        d: &Directives,
        taps: &[String],
    ) -> io::Result<(HostProcess, Instant)> {
        let out = dir.join("host");
        fs::create_dir_all(&out)?;
        let mut command = Command::new("sh");
        if !taps.is_empty() {
            command.env("LINCELL_NET_TAPS", taps.join(" "));
        }
        if d.disk.is_some() {
            command.env("LINCELL_DISK", dir.join("disk.img"));
        }
        if let Some(rev) = d.ivshmem_rev() {
            command.env("LINCELL_IVSHMEM_REV", rev.number().to_string());
        }
        if d.ivshmem_side.is_some() {
            command.env("LINCELL_IVSHMEM_SIDE_SOCKET", dir.join("side/ivshmem.sock"));
        }
        // Host peers of an ivshmem 2.0 device learn its sections from the
        // command line it was started with (the server protocol has none).
        if let Some(v2) = &d.ivshmem2 {
            command.env(
                "LINCELL_IVSHMEM_V2_LAYOUT",
                format!("{}:{}:{}", v2.max_peers, v2.rw_size, v2.output_size),
            );
        }
        let child = command
            .arg("-c")
            .arg(cmd)
            .current_dir(&self.root)
            .env("LINCELL_ROOT", &self.root)
            .env("LINCELL_OUT", &out)
            .env("LINCELL_IVSHMEM_SOCKET", socket)
            .stdin(Stdio::null())
            .stdout(fs::File::create(out.join("tap.txt"))?)
            .stderr(fs::File::create(out.join("stderr.txt"))?)
            .spawn()?;
        Ok((HostProcess(child), Instant::now()))
    }

    fn wait_host(
        &self,
        (mut h, start): (HostProcess, Instant),
        dir: &Path,
        deadline: Instant,
    ) -> GuestResult {
        let out = dir.join("host");
        let exit = loop {
            match h.0.try_wait() {
                Ok(Some(s)) => break Exit::Code(s.code().unwrap_or(-1)),
                Ok(None) if Instant::now() >= deadline => {
                    break Exit::TimedOut(deadline.saturating_duration_since(start));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(_) => break Exit::Code(-1),
            }
        };
        let script_exit = match exit {
            Exit::Code(c) => Some(c),
            _ => None,
        };
        GuestResult {
            name: "host".into(),
            exit,
            tap: fs::read_to_string(out.join("tap.txt")).unwrap_or_default(),
            dmesg: String::new(),
            script_exit,
            console: fs::read_to_string(out.join("stderr.txt")).unwrap_or_default(),
            seconds: None,
            elapsed: start.elapsed(),
            killed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_silent_early_launcher_exit_is_retried() {
        let r = |tap: &str, console: &str, secs: u64, marker: Option<i32>| GuestResult {
            name: "guest".into(),
            exit: Exit::Code(255),
            tap: tap.into(),
            dmesg: String::new(),
            script_exit: marker,
            console: console.into(),
            seconds: None,
            elapsed: Duration::from_secs(secs),
            killed: false,
        };
        assert!(launcher_failed(&r("", "", 12, None)));
        assert!(!launcher_failed(&r(
            "",
            "Kernel panic - not syncing",
            12,
            None
        )));
        assert!(!launcher_failed(&r("ok 1 - x\n", "", 12, None)));
        assert!(!launcher_failed(&r("", "", 300, None)));
        assert!(!launcher_failed(&r("", "", 12, Some(1))));
        let mut host = r("", "", 1, None);
        host.name = "host".into();
        assert!(!launcher_failed(&host));
    }

    #[test]
    fn defaults_without_directives() {
        assert_eq!(
            parse_directives("#!/bin/sh\necho hi\n").unwrap(),
            Directives::default()
        );
    }

    #[test]
    fn side_device_needs_a_main_device_of_another_size() {
        let d = parse_directives(
            "# lincell-vm: ivshmem-doorbell=4:16M ivshmem-side=2:1M revisions=v1,v2\n",
        )
        .unwrap();
        assert_eq!(d.ivshmem_side, Some((2, 1 << 20)));
        // Both revisions keep it (v2: next to the ivshmem 2.0 device).
        assert_eq!(d.resolve(Revision::V1).ivshmem_side, Some((2, 1 << 20)));
        let v2 = d.resolve(Revision::V2);
        assert_eq!(v2.ivshmem_side, Some((2, 1 << 20)));
        assert!(v2.ivshmem2.is_some() && v2.ivshmem_doorbell.is_none());
        for bad in [
            "# lincell-vm: ivshmem-side=2:1M",
            "# lincell-vm: ivshmem-doorbell=2:1M ivshmem-side=2:1M",
            "# lincell-vm: ivshmem-doorbell=2:4M ivshmem-side=2",
        ] {
            assert!(parse_directives(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn all_directives() {
        let d = parse_directives(
            "# lincell-vm: guests=a,b cpus=4 memory=2G timeout=99\n\
             # lincell-vm: ivshmem-plain=1M ivshmem-doorbell=2:4M\n\
             # lincell-vm: host=target/debug/peer --count 10\n",
        )
        .unwrap();
        assert_eq!(d.guests, ["a", "b"]);
        assert_eq!(d.cpus, 4);
        assert_eq!(d.memory, "2G");
        assert_eq!(d.timeout, Duration::from_secs(99));
        assert_eq!(d.ivshmem_plain, Some(1 << 20));
        assert_eq!(d.ivshmem_doorbell, Some((2, 4 << 20)));
        assert_eq!(d.host.as_deref(), Some("target/debug/peer --count 10"));
    }

    #[test]
    fn append_and_boot() {
        let d = parse_directives(
            "# lincell-vm: cpus=4 boot=iso timeout=100\n\
             # lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3\n",
        )
        .unwrap();
        assert_eq!(d.append, ["nohz_full=2-3", "rcu_nocbs=2-3"]);
        assert_eq!(d.boot.as_deref(), Some("iso"));
        let mut e = d.clone();
        e.timeout = Duration::from_secs(50);
        let m = Directives::merge(&[d.clone(), e.clone()]).unwrap();
        assert_eq!(m.timeout, Duration::from_secs(150));
        assert_eq!(m.cpus, 4);
        e.cpus = 2;
        assert!(
            Directives::merge(&[d.clone(), e]).is_err(),
            "different devices cannot share a boot"
        );
        let mut h = d.clone();
        h.host = Some("peer".into());
        assert!(
            Directives::merge(&[d, h]).is_err(),
            "host peers cannot share a boot"
        );
    }

    #[test]
    fn kinds_disk_and_ratios() {
        assert_eq!(Directives::default().arch, ["x86_64"]);
        let d = parse_directives(
            "# lincell-vm: arch=x86_64,arm64 disk=256M boot=b\n\
             # lincell-vm: ratio=read/spin ratio=poll/spin\n",
        )
        .unwrap();
        assert_eq!(d.arch, ["x86_64", "arm64"]);
        assert_eq!(d.disk, Some(256 << 20));
        assert_eq!(
            d.ratio,
            [
                ("read".into(), "spin".into()),
                ("poll".into(), "spin".into())
            ]
        );
        // Scripts sharing a boot may run on different kinds.
        let mut e = d.clone();
        e.arch = vec!["x86_64".into()];
        assert!(Directives::merge(&[d, e]).is_ok());
    }

    #[test]
    fn native_net_per_guest() {
        let d =
            parse_directives("# lincell-vm: guests=a,b net=tap\n# lincell-vm: host=sh peer.sh\n")
                .unwrap();
        assert!(d.native_net);
        assert!(!Directives::default().native_net);
        let dir = Path::new("/tmp/x");
        let (ta, ma, oa) = native_net(dir, "a", 0);
        let (tb, mb, _) = native_net(dir, "b", 1);
        assert_ne!(ta, tb, "each guest its own TAP");
        assert_eq!(
            native_net(dir, "a", 0).0,
            ta,
            "the same name for the same guest"
        );
        assert_ne!(native_net(Path::new("/tmp/y"), "a", 0).0, ta);
        // IFNAMSIZ: 15 characters and the NUL.
        assert!(ta.len() <= 15 && ta.starts_with("lcq"));
        assert_eq!(
            (ma.as_str(), mb.as_str()),
            ("52:54:00:6c:63:01", "52:54:00:6c:63:02")
        );
        assert!(oa.contains(&format!("ifname={ta},")) && oa.contains("mac=52:54:00:6c:63:01"));
    }

    #[test]
    fn bad_directives_are_errors() {
        for bad in [
            "# lincell-vm: frobnicate=1",
            "# lincell-vm: cpus",
            "# lincell-vm: cpus=x",
            "# lincell-vm: ivshmem-plain=0",
            "# lincell-vm: ivshmem-plain=12Q",
            "# lincell-vm: ivshmem-doorbell=4M",
            "# lincell-vm: guests=a,,b",
            "# lincell-vm: guests=a;rm",
            "# lincell-vm: boot=",
            "# lincell-vm: boot=a/b",
            "# lincell-vm: arch=riscv",
            "# lincell-vm: disk=0",
            "# lincell-vm: ratio=read",
            "# lincell-vm: net=tap",
            "# lincell-vm: net=user\n# lincell-vm: host=sh peer.sh",
            "# lincell-vm: net=tap arch=arm64\n# lincell-vm: host=sh peer.sh",
            "# lincell-vm: ratio=/spin",
            "# lincell-vm: ivshmem2=3",
            "# lincell-vm: ivshmem2=0:1M",
            "# lincell-vm: ivshmem2=65536:1M",
            "# lincell-vm: ivshmem2=x:1M",
            "# lincell-vm: ivshmem2=2:1Q",
            "# lincell-vm: ivshmem2=2:1000",
            "# lincell-vm: ivshmem2=2:1M:6K",
            "# lincell-vm: ivshmem2=2:1M:64K:0x10000",
            "# lincell-vm: ivshmem2=2:1M:64K:zz",
            "# lincell-vm: ivshmem2=2:1M:64K:0x8002:9",
            "# lincell-vm: ivshmem2=2:1M ivshmem2-vectors=0",
            "# lincell-vm: ivshmem2=2:1M ivshmem2-vectors=65",
            "# lincell-vm: ivshmem2=2:1M ivshmem2-strict=yes",
            "# lincell-vm: ivshmem2-strict=1",
            "# lincell-vm: ivshmem2-one-shot=1 ivshmem-doorbell=2:1M",
            "# lincell-vm: ivshmem2=2:1M ivshmem-doorbell=2:1M",
            "# lincell-vm: ivshmem2=2:1M arch=x86_64,arm64",
            "# lincell-vm: revisions=v1,v2",
            "# lincell-vm: revisions=v1,v2 disk=1M",
            "# lincell-vm: revisions=v3 ivshmem-doorbell=2:1M",
            "# lincell-vm: revisions=v1,v1 ivshmem-doorbell=2:1M",
            "# lincell-vm: revisions= ivshmem-doorbell=2:1M",
            "# lincell-vm: guests=a,b ivshmem2=2:1M ivshmem2-backend=a",
            "# lincell-vm: guests=a,b ivshmem2=2:1M:0:0x8002 ivshmem2-backend=c",
            "# lincell-vm: guests=a,b ivshmem2-backend=a",
            "# lincell-vm: guests=a,b killed=b",
            "# lincell-vm: guests=a,b killed=c\n# lincell-vm: host=true",
        ] {
            assert!(parse_directives(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ivshmem2_device_and_its_options() {
        let d = parse_directives("# lincell-vm: ivshmem2=3:1M guests=a,b\n").unwrap();
        assert_eq!(
            d.ivshmem2,
            Some(Ivshmem2 {
                max_peers: 3,
                rw_size: 1 << 20,
                output_size: 0,
                protocol: 0,
                vectors: Ivshmem2::DEFAULT_VECTORS,
                strict: false,
                one_shot: false,
                backend: None,
            })
        );
        assert_eq!(d.ivshmem_rev(), Some(Revision::V2));
        // The options may come before the device, on another line.
        let d = parse_directives(
            "# lincell-vm: ivshmem2-strict=1 ivshmem2-vectors=4\n\
             # lincell-vm: ivshmem2=2:1M:64K:0x8002 ivshmem2-one-shot=1\n",
        )
        .unwrap();
        let dev = d.ivshmem2.unwrap();
        assert_eq!(
            (dev.max_peers, dev.rw_size, dev.output_size, dev.protocol),
            (2, 1 << 20, 64 << 10, 0x8002)
        );
        assert_eq!((dev.vectors, dev.strict, dev.one_shot), (4, true, true));
        // Hex with or without 0x; sections may be empty.
        let dev = Ivshmem2::parse("16:0:4096:8001").unwrap();
        assert_eq!(
            (dev.rw_size, dev.output_size, dev.protocol),
            (0, 4096, 0x8001)
        );
        assert_eq!(
            parse_directives("# lincell-vm: ivshmem2=2:1M ivshmem2-strict=0")
                .unwrap()
                .ivshmem2
                .map(|d| d.strict),
            Some(false)
        );
    }

    #[test]
    fn ivshmem2_server_command_line() {
        let mut dev = Ivshmem2::parse("3:1M:64K:0x8002").unwrap();
        dev.vectors = 2;
        let dir = Path::new("/w/s");
        let socks = ["a", "b"].map(|g| (g.to_string(), vfio_socket(dir, g)));
        assert_eq!(
            dev.server_args(dir, &dir.join("ivshmem.sock"), &socks)
                .join(" "),
            "--v2 -F -v -S /w/s/ivshmem.sock -m /w/s --max-peers 3 -n 2 \
             --rw-size 1048576 --output-size 65536 --protocol 0x8002 \
             --vfio-user /w/s/vfio-a.sock --vfio-user /w/s/vfio-b.sock"
        );
        // The back-end guest's function gets the back-end protocol.
        dev.backend = Some("b".into());
        let args = dev.server_args(dir, &dir.join("ivshmem.sock"), &socks);
        assert_eq!(
            args[args.len() - 3..],
            [
                "/w/s/vfio-a.sock",
                "--vfio-user",
                "/w/s/vfio-b.sock,protocol=0xc002"
            ]
        );
        dev.backend = None;
        dev.strict = true;
        dev.one_shot = true;
        dev.protocol = 0;
        let args = dev.server_args(dir, &dir.join("ivshmem.sock"), &socks[..1]);
        assert_eq!(
            args[args.len() - 6..],
            [
                "--protocol",
                "0x0000",
                "--one-shot",
                "--strict",
                "--vfio-user",
                "/w/s/vfio-a.sock"
            ]
        );
    }

    #[test]
    fn backend_guests_and_killed_guests() {
        let d = parse_directives(
            "# lincell-vm: guests=a,b ivshmem2-backend=a ivshmem2=2:16M:0:0x8002\n\
             # lincell-vm: killed=b\n# lincell-vm: host=sh x.sh\n",
        )
        .unwrap();
        let dev = d.ivshmem2.unwrap();
        assert_eq!(dev.backend.as_deref(), Some("a"));
        assert_eq!(dev.backend_protocol(), Some(0xc002));
        assert_eq!(d.killed, ["b"]);
        assert_eq!(
            Ivshmem2::parse("2:1M:0:0x4001").unwrap().backend_protocol(),
            None
        );
        assert_eq!(
            Ivshmem2::parse("2:1M:0:0xc001").unwrap().backend_protocol(),
            None
        );
    }

    #[test]
    fn revisions_run_the_script_on_each() {
        let d =
            parse_directives("# lincell-vm: ivshmem-doorbell=2:1M revisions=v1,v2 guests=a,b\n")
                .unwrap();
        assert_eq!(d.runs(), [Revision::V1, Revision::V2]);
        let v1 = d.resolve(Revision::V1);
        assert_eq!(v1.ivshmem_doorbell, Some((2, 1 << 20)));
        assert_eq!(v1.ivshmem2, None);
        assert_eq!(v1.ivshmem_rev(), Some(Revision::V1));
        let v2 = d.resolve(Revision::V2);
        assert_eq!(v2.ivshmem_doorbell, None);
        assert_eq!(v2.ivshmem2, Some(Ivshmem2::like_doorbell(2, 1 << 20)));
        assert_eq!(v2.ivshmem_rev(), Some(Revision::V2));
        assert_eq!(v2.guests, ["a", "b"]);
        // A script's own ivshmem2= is its v2 device.
        let d = parse_directives(
            "# lincell-vm: ivshmem-doorbell=4:16M revisions=v1,v2\n\
             # lincell-vm: ivshmem2=3:1M ivshmem2-strict=1\n",
        )
        .unwrap();
        let v2 = d.resolve(Revision::V2).ivshmem2.unwrap();
        assert_eq!((v2.max_peers, v2.strict), (3, true));
        assert_eq!(d.resolve(Revision::V1).ivshmem2, None);
        // Scripts without revisions= run as written.
        let plain = parse_directives("# lincell-vm: ivshmem-doorbell=2:1M\n").unwrap();
        assert_eq!(plain.runs(), [Revision::V1]);
        assert_eq!(plain.resolve(Revision::V2), plain);
        assert_eq!(Directives::default().ivshmem_rev(), None);
        // Only v2, and the arm64 board (which runs v1) is fine.
        let d = parse_directives(
            "# lincell-vm: ivshmem-doorbell=2:1M revisions=v2 arch=x86_64,arm64\n",
        )
        .unwrap();
        assert_eq!(d.runs(), [Revision::V2]);
        // A plain device's twin: one vector.
        let d = parse_directives("# lincell-vm: ivshmem-plain=1M revisions=v1,v2\n").unwrap();
        assert_eq!(d.resolve(Revision::V1).ivshmem_plain, Some(1 << 20));
        let v2 = d.resolve(Revision::V2);
        assert_eq!(v2.ivshmem_plain, None);
        assert_eq!(v2.ivshmem2, Some(Ivshmem2::like_doorbell(1, 1 << 20)));
    }

    #[test]
    fn doorbell_equivalent_has_the_v1_layout_sections() {
        // 1 MiB: 64 KiB outputs for 8 peers, the rest after header and
        // state table (4 KiB each) is R/W.
        let d = Ivshmem2::like_doorbell(2, 1 << 20);
        assert_eq!(d.max_peers, 8);
        assert_eq!(d.output_size, 64 << 10);
        assert_eq!(d.rw_size, (1 << 20) - 8192 - 8 * (64 << 10));
        assert_eq!(d.vectors, 2);
        assert_eq!((d.protocol, d.strict, d.one_shot), (0, false, false));
        // Below 1 MiB: no output sections.
        let d = Ivshmem2::like_doorbell(1, 512 << 10);
        assert_eq!((d.output_size, d.rw_size), (0, (512 << 10) - 8192));
        // Outputs are at most 64 KiB.
        assert_eq!(Ivshmem2::like_doorbell(4, 16 << 20).output_size, 64 << 10);
    }

    #[test]
    fn revision_names() {
        assert_eq!("v2".parse(), Ok(Revision::V2));
        assert_eq!("1".parse(), Ok(Revision::V1));
        assert!("v3".parse::<Revision>().is_err());
        assert_eq!(Revision::V2.to_string(), "v2");
        assert_eq!((Revision::V1.prefix(), Revision::V2.prefix()), ("", "v2/"));
        assert_eq!(Revision::default(), Revision::V1);
    }

    #[test]
    fn v2_runner_writes_beside_the_v1_one() {
        let r = Runner {
            kdir: "/k".into(),
            root: "/r".into(),
            work: "/w".into(),
            echo: false,
            kind: guest::Kind::Vng,
            revision: Revision::V1,
        };
        let v2 = r.for_revision(Revision::V2);
        assert_eq!(
            (v2.work.as_path(), v2.revision),
            (Path::new("/w/v2"), Revision::V2)
        );
        assert_eq!(r.for_revision(Revision::V1).work, Path::new("/w"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
