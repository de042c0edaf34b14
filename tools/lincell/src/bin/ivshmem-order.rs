// SPDX-License-Identifier: GPL-2.0

//! `ivshmem-order`: memory ordering on real CPUs through a real mapping.
//!
//! Host tests cannot show that a barrier is missing: the CPU they run on
//! executes one thread's accesses in order. This tool streams
//! sequence-numbered records from a producer thread on one CPU to a
//! consumer thread on another through a single-producer/single-consumer
//! ring in the R/W section of `/dev/ivshmemN`, with the orderings the
//! project's peers use (record fields `Relaxed`, the index that publishes
//! them `Release`, the index read before the fields `Acquire`; the same for
//! the way back), and checks every record. A guest with two vCPUs runs the
//! threads in parallel (QEMU's TCG gives each vCPU a host thread); on the
//! arm64 board the memory model is weak, so a missing barrier shows up as a
//! record read before its fields arrived.
//!
//! A tool of the test suite (`tests/guest/ivshmem-order.sh`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Instant;

use clap::Parser;
use lincell::ivshmem::dev::Device;
use lincell_shared::shmem::{RawRegion, SharedMemory};

/// Streams checked records between two CPUs through /dev/ivshmemN.
#[derive(Parser, Debug)]
#[command(
    name = "ivshmem-order",
    about = "Stream sequence-numbered records between two CPUs through an ivshmem ring and check each",
    long_about = "\
Maps the first 64 KiB of the R/W section of DEV and runs a producer thread
pinned to --producer-cpu and a consumer thread pinned to --consumer-cpu.
The producer writes --records records (sequence number, its square and a
checksum, each a separate 8-byte store) into a 256-slot ring and publishes
each with a release store of the head index; the consumer reads the head
with acquire, then the fields, checks them, and hands the slot back with a
release store of the tail. Prints records=N bad=N seconds=S; exit status 1
if any record was wrong, 2 on an error."
)]
struct Args {
    /// The device (/dev/ivshmemN).
    dev: PathBuf,
    /// Records to stream.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// CPU of the producer.
    #[arg(long, default_value_t = 0)]
    producer_cpu: usize,
    /// CPU of the consumer.
    #[arg(long, default_value_t = 1)]
    consumer_cpu: usize,
}

/// Ring layout in the mapping: the indexes on their own cache lines, then
/// the slots.
const HEAD: usize = 0;
const TAIL: usize = 64;
const SLOTS_AT: usize = 128;
const SLOTS: u64 = 256;
const SLOT_SIZE: usize = 32;
const SALT: u64 = 0x9e37_79b9_7f4a_7c15;

fn slot(i: u64) -> usize {
    // CAST: `i % SLOTS` is below 256.
    SLOTS_AT + (i % SLOTS) as usize * SLOT_SIZE
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET and sched_setaffinity
    // only touch it and the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "ivshmem-order: cannot pin to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

fn produce(r: &RawRegion, records: u64) -> Result<(), String> {
    let e = |e: lincell_shared::shmem::AccessError| e.to_string();
    for seq in 1..=records {
        // Wait for room: the consumer's tail, acquired, orders our reuse of
        // the slot after its reads of it.
        while seq - 1 - u64::from(r.load::<u32>(TAIL, Acquire).map_err(e)?) >= SLOTS {
            std::hint::spin_loop();
        }
        let at = slot(seq);
        r.store(at, seq, Relaxed).map_err(e)?;
        r.store(at + 8, seq.wrapping_mul(seq), Relaxed).map_err(e)?;
        r.store(at + 16, seq ^ SALT, Relaxed).map_err(e)?;
        // CAST: the index wraps at 32 bits, as the tail's does.
        r.store(HEAD, seq as u32, Release).map_err(e)?;
    }
    Ok(())
}

fn consume(r: &RawRegion, records: u64) -> Result<u64, String> {
    let e = |e: lincell_shared::shmem::AccessError| e.to_string();
    let mut bad = 0;
    let mut seq = 1u64;
    while seq <= records {
        // CAST: comparing 32-bit wrapping indexes.
        let head = r.load::<u32>(HEAD, Acquire).map_err(e)?;
        while seq as u32 != head.wrapping_add(1) && seq <= records {
            let at = slot(seq);
            let (a, b, c) = (
                r.load::<u64>(at, Relaxed).map_err(e)?,
                r.load::<u64>(at + 8, Relaxed).map_err(e)?,
                r.load::<u64>(at + 16, Relaxed).map_err(e)?,
            );
            if a != seq || b != seq.wrapping_mul(seq) || c != seq ^ SALT {
                if bad < 5 {
                    eprintln!("ivshmem-order: record {seq}: read {a} {b:#x} {c:#x}");
                }
                bad += 1;
            }
            // CAST: as above.
            r.store(TAIL, seq as u32, Release).map_err(e)?;
            seq += 1;
        }
        std::hint::spin_loop();
    }
    Ok(bad)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dev = match Device::open(&args.dev) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ivshmem-order: {e}");
            return ExitCode::from(2);
        }
    };
    let map = match dev.map(dev.info().rw_offset, 64 << 10) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("ivshmem-order: {e}");
            return ExitCode::from(2);
        }
    };
    let r = map.region();
    for off in [HEAD, TAIL] {
        if r.store(off, 0u32, Release).is_err() {
            eprintln!("ivshmem-order: the mapping is too small");
            return ExitCode::from(2);
        }
    }
    let start = Instant::now();
    let (records, pcpu, ccpu) = (args.records, args.producer_cpu, args.consumer_cpu);
    let result = std::thread::scope(|s| {
        let consumer = s.spawn(move || {
            pin(ccpu);
            consume(r, records)
        });
        pin(pcpu);
        let produced = produce(r, records);
        (produced, consumer.join())
    });
    let secs = start.elapsed().as_secs_f64();
    match result {
        (Ok(()), Ok(Ok(bad))) => {
            println!("records={records} bad={bad} seconds={secs:.1}");
            if bad == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        (Err(e), _) | (_, Ok(Err(e))) => {
            eprintln!("ivshmem-order: {e}");
            ExitCode::from(2)
        }
        (_, Err(_)) => ExitCode::from(2),
    }
}
