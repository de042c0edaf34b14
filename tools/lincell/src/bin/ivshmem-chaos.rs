// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-chaos`: a hostile host peer, for the hostile-peer tests.
//!
//! Joins an ivshmem server as one more peer and, for a given time, attacks
//! everyone on it the way a compromised cell could: stores random values of
//! random widths at random offsets of everything a peer can write on
//! ivshmem 2.0 — the whole R/W section (the virtio-over-ivshmem header, the
//! shared rings, the bounce pool), its own output section — flaps its own
//! state entry, rings random vectors of random peers, and now and then goes
//! quiet (a stall). Then it leaves. Prints what it did as `key=value`.
//! Given several servers it joins each, and every store or doorbell goes to
//! one of them at random (`vdev-chaos.sh`: the disk's and the one of a
//! doorbell ping-pong beside it).
//!
//! It spares what only QEMU's ivshmem lets a peer write: the lincell v1
//! layout header and the other peers' state entries. Wrecking the header is
//! a denial of service that no peer can undo (nobody can tell it from
//! another protocol's data) and that ivshmem 2.0 rules out (read-only).
//!
//! A tool of the test suite (`tests/guest/vdev-chaos.sh` through
//! `tests/host/vdev-backend.sh chaos`), kept out of the `lincell` binary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clap::Parser;
use ivshmem_peer::Peer;
use lincell::rng::Rng;
use lincell_shared::ivshmem::v1layout;
use lincell_shared::shmem::{RawRegion, SharedMemory as _};

/// A hostile ivshmem peer: random stores all over the shared memory,
/// random doorbells, stalls.
#[derive(Parser, Debug)]
#[command(
    name = "ivshmem-chaos",
    about = "A hostile ivshmem peer: random stores all over the shared memory, random doorbells, stalls",
    long_about = "\
Joins the ivshmem server at SOCKET (at each, if several are given, every
store and doorbell going to one of them at random) as a peer and, for
--duration-ms, stores
random 1/2/4/8-byte values at random offsets of the R/W section and of its
own output section of the lincell v1 layout (without one: of everything
after the first 8 KiB), with --focus-percent of them in the first 16 KiB
of the R/W section (the virtio header and the first shared ring); stores random
values into its own state entry every --ring-every stores and rings a
random vector of a random peer; pauses for 100-500 ms every --stall-every
stores. Deterministic for a given --seed (apart from timing).

Prints stores=N doorbells=N stalls=N seconds=S on exit. Exit status 0, or 2
if it cannot join the server."
)]
struct Args {
    /// The ivshmem servers' UNIX sockets.
    #[arg(required = true, value_name = "SOCKET")]
    sockets: Vec<PathBuf>,
    /// How long to attack, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    duration_ms: u64,
    /// Seed of the random sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Percent of the stores aimed at the start of the R/W area.
    #[arg(long, value_name = "PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=100))]
    focus_percent: u64,
    /// A doorbell every N stores (0: none).
    #[arg(long, value_name = "N", default_value_t = 64)]
    ring_every: u64,
    /// A stall every N stores (0: none).
    #[arg(long, value_name = "N", default_value_t = 200_000)]
    stall_every: u64,
}

/// Bytes at the start of the R/W section that focused stores aim at: the
/// virtio header page and the shared ring of the first queue.
const FOCUS_LEN: u64 = 0x4000;

/// What the chaos peer writes: byte ranges, and its own state entry.
struct Targets {
    /// Writable ranges (offset, length), the R/W section first.
    ranges: Vec<(u64, u64)>,
    /// Offset of the own state entry, if there is a state table.
    own_state: Option<u64>,
}

impl Targets {
    /// From the lincell v1 layout in `region`, if there is one.
    fn of(region: &RawRegion, own_id: u16) -> Targets {
        let len = region.len() as u64;
        let layout = v1layout::Header::read(region)
            .and_then(|h| Ok((h.granule, h.layout(u32::from(own_id), len)?)));
        match layout {
            Ok((base, l)) => {
                let mut ranges = vec![(base + l.rw().offset, l.rw().len)];
                if let Some(o) = l.output(u32::from(own_id)).filter(|o| o.len > 0) {
                    ranges.push((base + o.offset, o.len));
                }
                Targets {
                    ranges,
                    own_state: l.state_offset(u32::from(own_id)).map(|o| base + o),
                }
            }
            Err(_) => Targets {
                ranges: vec![(0x2000.min(len), len.saturating_sub(0x2000))],
                own_state: None,
            },
        }
    }
}

/// One server under attack: the peer that joined it and what it writes.
struct Victim {
    peer: Peer,
    targets: Targets,
    /// The R/W section (offset, length).
    rw: (u64, u64),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut victims = Vec::new();
    for socket in &args.sockets {
        let peer = match Peer::connect(socket) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("ivshmem-chaos: cannot join {}: {e}", socket.display());
                return ExitCode::from(2);
            }
        };
        let targets = Targets::of(peer.shm().region(), peer.id());
        let Some(&rw) = targets.ranges.first().filter(|r| r.1 >= 8) else {
            eprintln!(
                "ivshmem-chaos: nothing writable to attack on {}",
                socket.display()
            );
            return ExitCode::from(2);
        };
        victims.push(Victim { peer, targets, rw });
    }
    let mut rng = Rng::new(args.seed);
    let (mut stores, mut doorbells, mut stalls) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let limit = Duration::from_millis(args.duration_ms);
    while start.elapsed() < limit {
        // CAST: an index into `victims`.
        let victim = &victims[rng.below(victims.len() as u64) as usize];
        let (peer, targets, (rw_start, rw_len)) = (&victim.peer, &victim.targets, victim.rw);
        let region = peer.shm().region();
        let width = 1u64 << rng.below(4);
        let (at, len) = if rng.below(100) < args.focus_percent {
            (rw_start, rw_len.min(FOCUS_LEN))
        } else {
            // CAST: an index into `ranges`.
            targets.ranges[rng.below(targets.ranges.len() as u64) as usize]
        };
        // Aligned, as every access of the peers is, and inside the range.
        let off = at + (rng.below(len) & !(width - 1)).min(len - width);
        let off = usize::try_from(off).unwrap_or(0);
        let v = rng.next();
        // CAST: truncating the random value to the store's width.
        let r = match width {
            1 => region.store(off, v as u8, Relaxed),
            2 => region.store(off, v as u16, Relaxed),
            4 => region.store(off, v as u32, Relaxed),
            _ => region.store(off, v, Relaxed),
        };
        if r.is_ok() {
            stores += 1;
        }
        if args.ring_every > 0 && stores % args.ring_every == 0 {
            if let Some(own) = targets.own_state.and_then(|o| usize::try_from(o).ok()) {
                // A flapping state: READY (1), 0, or garbage.
                // CAST: a small random value.
                let _ = region.store(
                    own,
                    [1, 0, rng.next() as u32][rng.below(3) as usize],
                    Relaxed,
                );
            }
        }
        if args.ring_every > 0 && stores % args.ring_every == 0 {
            let peers = peer.peers();
            if !peers.is_empty() && peer.vectors() > 0 {
                // CAST: an index into `peers`.
                let target = peers[rng.below(peers.len() as u64) as usize];
                // CAST: a vector number below the count.
                let vector = rng.below(peer.vectors() as u64) as usize;
                if peer.ring(target, vector).is_ok() {
                    doorbells += 1;
                }
            }
        }
        if args.stall_every > 0 && stores % args.stall_every == 0 {
            std::thread::sleep(Duration::from_millis(100 + rng.below(400)));
            stalls += 1;
        }
    }
    println!(
        "stores={stores} doorbells={doorbells} stalls={stalls} seconds={:.1}",
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
