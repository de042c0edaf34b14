// SPDX-License-Identifier: GPL-2.0

//! `lincell latency`: a cyclictest-like real-time loop across cells.
//!
//! The initiator wakes every `--interval-us` on an absolute
//! `CLOCK_MONOTONIC` deadline (as cyclictest does), sends a timestamped
//! message to the other cell through a [`channel`](lincell_shared::channel)
//! ring and waits for the answer; the responder answers every message at
//! once. Both run `SCHED_FIFO` with their memory locked. Where the rings
//! sit (each side's output section, or the R/W section) is [`rings`].
//!
//! Messages are 32 bytes, little-endian: `kind` (u32: 1 hello, 2 ping,
//! 3 pong, 4 stop), the sender's peer id (u32), `seq` (u64), the
//! initiator's send time (u64 ns) and the responder's receive time (u64 ns,
//! its own clock). Each side learns whom to ring from the other's hello.

mod rings;

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lincell_shared::channel::{ChannelError, Consumer, Geometry, Producer};
use lincell_shared::shmem::RawRegion;
use serde::Serialize;

use super::bench::Stats;
use super::cli::{number, shm_offset, Dev};
use super::endpoint::{Endpoint, ShmOffset, WaitMode};
use crate::cpu::run as placement;
use crate::error::{Error, Result};
use lincell_shared::cpu_isolate::cpuset::CpuSet;
pub(crate) use rings::Placement;
use rings::{Rings, Role};

/// Ring geometry of both directions.
const SLOTS: u32 = 64;
const SLOT_SIZE: u32 = 64;
/// Message kinds.
const HELLO: u32 = 1;
const PING: u32 = 2;
const PONG: u32 = 3;
const STOP: u32 = 4;
/// Message size.
const MSG: usize = 32;

/// How a side waits for the other's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mode {
    /// Spin on the ring (no doorbells).
    Spin,
    /// Sleep on the doorbell at once.
    Block,
    /// Spin for --spin-us, then sleep on the doorbell.
    SpinBlock,
}

/// Measure real-time round trips to another cell through a message channel.
#[derive(clap::Args, Debug)]
#[command(
    long_about = "\
A cyclictest-like loop across cells. The initiator (default) wakes every
--interval-us on an absolute CLOCK_MONOTONIC deadline, sends a timestamped
message to the responder (`lincell latency --respond`, in the other cell,
on the same ivshmem memory) through a lincell message channel, and waits
for the answer. Both sides lock their memory (mlockall), run SCHED_FIFO at
--priority, optionally pinned to --cpu (for an isolated CPU, start it with
`lincell run --cpus N --` or `lincell isolate N -- ...`).

The rings (--placement): by default each side writes its blocks into its
own output section, which the other side can read but not write (ivshmem
2.0, lincell's v1 layout); without output sections, or with --placement rw,
all go to the R/W section at --shm-offset. A responder with the default
looks in both places.

Waiting (--mode): spin on the ring, block on the doorbell, or spin for
--spin-us and then block (the receiver asks for a doorbell only when it
sleeps: a busy stream does not ring per message).

Reports, per run: round trips, lost answers, overruns (a round trip longer
than the interval, or a wake-up past the next deadline), the round-trip
time and the wake-up latency (deadline to wake, as cyclictest measures)
as min/avg/p50/p99/p99.9/max in µs, and a histogram (--hist-bucket-us wide
buckets up to --hist-max-us, then an overflow bucket). --json prints the
same as one JSON object (schema in Documentation/latency.md); --plot FILE
writes the round-trip histogram as an SVG chart (linear µs, log count).
--load runs `stress-ng --cpu` on the other CPUs meanwhile.

--compare-isolated CPU puts the product together: the same loop twice
under the same load, first pinned to a housekeeping CPU (the first other
online CPU), then on CPU isolated by cpu_isolate.ko and its cpuset
partition (`lincell isolate CPU --keep-irqs-of DEV -- ...`: the device's
interrupts are delivered on CPU too, unless --steer-irqs; released
afterwards), with
stress-ng on every CPU but CPU throughout (with --load); then a table of
both runs and their ratio. The responder must answer two runs
(`--respond --sessions 2`). With --plot FILE, each run's chart goes to
FILE with -housekeeping or -isolated before its extension; with --json, one
object holds both reports (Documentation/latency.md).

An answer missing for --timeout-ms ends the run with exit status 1 (the
responder died or stalled): the report covers what was measured.",
    after_help = "\
Examples:
  lincell latency --respond --socket /tmp/ivshmem.sock            (host cell)
  lincell latency /dev/ivshmem0 --duration 60 --plot rtt.svg     (guest cell)
  lincell isolate 3 --fifo 80 -- lincell latency /dev/ivshmem0 --cpu 3 --load --json
  lincell latency /dev/ivshmem0 --compare-isolated 1 --load --plot /tmp/rtt.svg"
)]
pub struct Args {
    #[command(flatten)]
    dev: Dev,
    /// Be the responder: answer every message until the initiator stops.
    #[arg(long)]
    respond: bool,
    /// How to wait for the other side.
    #[arg(long, value_enum, default_value_t = Mode::SpinBlock)]
    mode: Mode,
    /// With --mode spin-block: spin this long before sleeping.
    #[arg(long, value_name = "US", default_value_t = 50)]
    spin_us: u64,
    /// The period, in µs.
    #[arg(long, value_name = "US", default_value_t = 1000)]
    interval_us: u64,
    /// Round trips (default: --duration's worth).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Seconds to measure (with the default interval: 1000 per second).
    #[arg(long, value_name = "S", default_value_t = 10)]
    duration: u64,
    /// Pin to this CPU.
    #[arg(long, value_name = "CPU")]
    cpu: Option<usize>,
    /// SCHED_FIFO priority (0: keep the normal policy).
    #[arg(long, value_name = "PRIO", default_value_t = 80,
          value_parser = clap::value_parser!(u8).range(0..=99))]
    priority: u8,
    /// The doorbell vector (default: 1 if the device has two, else 0).
    #[arg(long, value_parser = number::<u32>)]
    vector: Option<u32>,
    /// Fail when an answer takes longer than this.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    timeout_ms: u64,
    /// How long to wait for the other side to appear.
    #[arg(long, value_name = "MS", default_value_t = 120_000)]
    connect_timeout_ms: u64,
    /// Where the rings are: each side's output section, or the R/W section.
    #[arg(long, value_enum, default_value_t = Placement::Auto)]
    placement: Placement,
    /// With the rings in the R/W section: where (bytes, or rw+N).
    #[arg(long, value_name = "OFFSET", default_value = "rw+0x1000", value_parser = shm_offset)]
    shm_offset: ShmOffset,
    /// Histogram bucket width, µs.
    #[arg(long, value_name = "US", default_value_t = 10)]
    hist_bucket_us: u64,
    /// Histogram range, µs (longer round trips go to the overflow bucket).
    #[arg(long, value_name = "US", default_value_t = 5000)]
    hist_max_us: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Write the round-trip histogram as an SVG chart.
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Load the other CPUs with stress-ng while measuring.
    #[arg(long)]
    load: bool,
    /// Responder: answer this many runs, then exit.
    #[arg(long, value_name = "N", default_value_t = 1)]
    sessions: u32,
    /// Run on a housekeeping CPU, then on CPU isolated, and compare.
    #[arg(long, value_name = "CPU", conflicts_with_all = ["respond", "cpu"])]
    compare_isolated: Option<usize>,
    /// With --compare-isolated: steer the device's interrupts off the
    /// isolated CPU like every other (default: keep them on it).
    #[arg(long, requires = "compare_isolated")]
    steer_irqs: bool,
}

/// A message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Msg {
    kind: u32,
    id: u32,
    seq: u64,
    t_send: u64,
    t_resp: u64,
}

impl Msg {
    fn encode(&self) -> [u8; MSG] {
        let mut b = [0u8; MSG];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.id.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.t_send.to_le_bytes());
        b[24..32].copy_from_slice(&self.t_resp.to_le_bytes());
        b
    }

    /// A message from the other side (any bytes: a short one is `None`).
    fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; MSG] = b.get(..MSG)?.try_into().ok()?;
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Some(Msg {
            kind: u32_at(0),
            id: u32_at(4),
            seq: u64_at(8),
            t_send: u64_at(16),
            t_resp: u64_at(24),
        })
    }
}

/// `CLOCK_MONOTONIC` in ns.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // CAST: the monotonic clock is never negative.
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `deadline` (ns, `CLOCK_MONOTONIC`).
fn sleep_until(deadline: u64) {
    // CAST: nanoseconds of a monotonic clock fit both fields.
    let ts = libc::timespec {
        tv_sec: (deadline / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is valid; EINTR just ends the sleep early.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Locks memory, pins to `cpu`, and sets SCHED_FIFO `priority`.
fn go_realtime(cpu: Option<usize>, priority: u8) -> Result<()> {
    // SAFETY: no pointers involved.
    if unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) } != 0 {
        return Err(Error::io("mlockall", io::Error::last_os_error()));
    }
    if let Some(cpu) = cpu {
        let cpu =
            u32::try_from(cpu).map_err(|_| Error::Usage(format!("--cpu {cpu}: out of range")))?;
        let mut set = CpuSet::new();
        set.insert(cpu);
        placement::set_affinity(&set)?;
    }
    if priority > 0 {
        placement::set_policy(placement::Policy::Fifo(priority))?;
    }
    Ok(())
}

fn channel_err(what: &str, e: ChannelError) -> Error {
    Error::Failed(format!("{what}: {e}"))
}

/// One side's doorbell: the endpoint, whom and which vector to ring, and
/// how many rings it sent.
struct Side<'e> {
    ep: &'e mut dyn Endpoint,
    vector: u32,
    /// The other side's peer id, once its hello told it.
    peer: Option<u32>,
    spin: Duration,
    rings: u64,
}

impl<'e> Side<'e> {
    fn new(ep: &'e mut dyn Endpoint, vector: u32, spin_us: u64) -> Self {
        Side {
            ep,
            vector,
            peer: None,
            spin: Duration::from_micros(spin_us),
            rings: 0,
        }
    }

    fn ring_peer(&mut self) -> Result<()> {
        if let Some(p) = self.peer {
            self.ep.ring(p, self.vector)?;
            self.rings += 1;
        }
        Ok(())
    }

    /// The next message, waiting as `mode` says, within `timeout`; `None`
    /// if none came, or the sender created the ring anew (attach again).
    fn receive(
        &mut self,
        rx: &mut Consumer<'_, RawRegion, RawRegion>,
        mode: Mode,
        timeout: Duration,
    ) -> Result<Option<Msg>> {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match rx.try_recv(&mut buf) {
                Ok(r) => {
                    if r.notify {
                        self.ring_peer()?;
                    }
                    return Ok(Msg::decode(&buf[..r.len]));
                }
                Err(ChannelError::Empty) => {}
                // The sender created its ring again: a new session.
                Err(ChannelError::Reset) => return Ok(None),
                Err(e) => return Err(channel_err("receiving", e)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Ok(None);
            }
            let block = match mode {
                Mode::Spin => false,
                Mode::Block => true,
                Mode::SpinBlock => waited >= self.spin,
            };
            if !block {
                std::hint::spin_loop();
                continue;
            }
            if rx.prepare_wait().map_err(|e| channel_err("receiving", e))? {
                let left = timeout
                    .saturating_sub(start.elapsed())
                    .max(Duration::from_millis(1));
                match self.ep.wait(1 << self.vector, left) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
                    Err(e) => return Err(e.into()),
                }
                rx.finish_wait().map_err(|e| channel_err("receiving", e))?;
            }
        }
    }

    /// Sends `m`, ringing the other side if it sleeps.
    fn send(&mut self, tx: &mut Producer<'_, RawRegion, RawRegion>, m: &Msg) -> Result<()> {
        let sent = tx
            .try_send(&m.encode())
            .map_err(|e| channel_err("sending", e))?;
        if sent.notify {
            self.ring_peer()?;
        }
        Ok(())
    }
}

/// Latency figures in µs.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Figures {
    min: f64,
    avg: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Figures {
    fn from(samples: &mut [u64]) -> Option<Self> {
        let s = Stats::from_samples(samples)?;
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Figures {
            min: us(s.min),
            avg: s.mean / 1000.0,
            p50: us(s.p50),
            p99: us(s.p99),
            p999: us(s.p999),
            max: us(s.max),
        })
    }
}

/// The histogram of round trips.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Histogram {
    bucket_us: u64,
    counts: Vec<u64>,
    overflow: u64,
}

impl Histogram {
    fn new(bucket_us: u64, max_us: u64, samples: &[u64]) -> Self {
        let bucket_us = bucket_us.max(1);
        let n = max_us.div_ceil(bucket_us).max(1) as usize;
        let mut counts = vec![0u64; n];
        let mut overflow = 0;
        for &ns in samples {
            let b = (ns / 1000 / bucket_us) as usize;
            match counts.get_mut(b) {
                Some(c) => *c += 1,
                None => overflow += 1,
            }
        }
        Histogram {
            bucket_us,
            counts,
            overflow,
        }
    }
}

/// The initiator's report (the `--json` schema, `Documentation/latency.md`).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    version: u32,
    mode: Mode,
    placement: Placement,
    interval_us: u64,
    cpu: Option<usize>,
    priority: u8,
    load: bool,
    count: u64,
    received: u64,
    lost: u64,
    overruns: u64,
    doorbells_sent: u64,
    rtt_us: Option<Figures>,
    wake_us: Option<Figures>,
    histogram: Histogram,
    error: Option<String>,
}

/// Keeps stress-ng running on the other CPUs; killed on drop.
struct Load(Child);

impl Load {
    fn start(skip: Option<usize>, seconds: u64) -> Result<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let others: Vec<String> = (0..n)
            .filter(|c| Some(*c) != skip)
            .map(|c| c.to_string())
            .collect();
        let mut c = Command::new("stress-ng");
        c.arg("--cpu").arg(others.len().max(1).to_string());
        if !others.is_empty() && skip.is_some() {
            c.arg("--taskset").arg(others.join(","));
        }
        let child = c
            .args(["--timeout", &format!("{}s", seconds + 5), "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                Error::io(
                    "--load: cannot start stress-ng (Debian package stress-ng)",
                    e,
                )
            })?;
        Ok(Load(child))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `lincell latency`.
pub fn run(a: Args) -> Result<()> {
    let mut ep = a.dev.target()?.open(WaitMode::Poll)?;
    let vector = a.vector.unwrap_or(if ep.vectors() >= 2 { 1 } else { 0 });
    if ep.vectors() <= vector && a.mode != Mode::Spin {
        return Err(Error::Usage(format!(
            "{} has {} vectors: --mode spin, or a device with doorbells",
            ep.describe(),
            ep.vectors()
        )));
    }
    if a.respond {
        return respond(ep.as_mut(), &a, vector);
    }
    if let Some(cpu) = a.compare_isolated {
        drop(ep);
        return compare(&a, cpu);
    }
    let rep = initiate(ep.as_mut(), &a, vector)?;
    let mut out = io::stdout().lock();
    if a.json {
        let text = serde_json::to_string_pretty(&rep)
            .map_err(|e| Error::Failed(format!("cannot encode the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", render(&rep))?;
    }
    if let Some(path) = &a.plot {
        std::fs::write(path, svg(&rep))
            .map_err(|e| Error::io(format!("--plot {}", path.display()), e))?;
    }
    match &rep.error {
        Some(e) => Err(Error::Failed(e.clone())),
        None => Ok(()),
    }
}

/// The arguments that make a child `lincell latency` run the loop as `a`
/// says (but for the CPU, the load, the plot and the comparison).
fn child_args(a: &Args) -> Vec<String> {
    let mut v = vec!["latency".to_string()];
    if a.dev.socket {
        v.push("--socket".into());
    }
    v.push(a.dev.dev.display().to_string());
    let mode = match a.mode {
        Mode::Spin => "spin",
        Mode::Block => "block",
        Mode::SpinBlock => "spin-block",
    };
    let count = a
        .count
        .unwrap_or(a.duration * 1_000_000 / a.interval_us.max(1));
    for (k, val) in [
        ("--mode", mode.to_string()),
        ("--spin-us", a.spin_us.to_string()),
        ("--interval-us", a.interval_us.to_string()),
        ("--count", count.to_string()),
        ("--priority", a.priority.to_string()),
        ("--timeout-ms", a.timeout_ms.to_string()),
        ("--connect-timeout-ms", a.connect_timeout_ms.to_string()),
        ("--placement", a.placement.name().to_string()),
        ("--shm-offset", a.shm_offset.to_string()),
        ("--hist-bucket-us", a.hist_bucket_us.to_string()),
        ("--hist-max-us", a.hist_max_us.to_string()),
    ] {
        v.push(k.into());
        v.push(val);
    }
    if let Some(vector) = a.vector {
        v.push("--vector".into());
        v.push(vector.to_string());
    }
    v.push("--json".into());
    v
}

/// `FILE` with `-TAG` before its extension (`rtt.svg` -> `rtt-TAG.svg`).
fn tagged(path: &std::path::Path, tag: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{tag}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{tag}"),
    };
    path.with_file_name(name)
}

/// One run of the comparison: its JSON report (the child's stdout).
fn compare_run(mut cmd: Command, what: &str) -> Result<serde_json::Value> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io(format!("cannot run the {what} loop"), e))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        Error::Failed(format!(
            "the {what} run printed no report ({}; exit {}): {}",
            e,
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    })?;
    Ok(report)
}

/// `--compare-isolated CPU`: the loop on a housekeeping CPU, then on CPU
/// isolated (through `lincell isolate CPU -- lincell latency ...`), under
/// the same load, and the comparison.
fn compare(a: &Args, cpu: usize) -> Result<()> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .map_err(|e| Error::io("/sys/devices/system/cpu/online", e))?;
    let online = lincell_shared::cpu_isolate::cpulist::parse(text.trim().as_bytes())
        .map_err(|e| Error::Failed(format!("/sys/devices/system/cpu/online: {e}")))?;
    let Ok(cpu32) = u32::try_from(cpu) else {
        return Err(Error::Usage(format!(
            "--compare-isolated {cpu}: no such CPU"
        )));
    };
    if !online.contains(cpu32) {
        return Err(Error::Usage(format!(
            "--compare-isolated {cpu}: CPU {cpu} is not online ({online})"
        )));
    }
    let Some(housekeeping) = online.iter().find(|&c| c != cpu32) else {
        return Err(Error::Usage(format!(
            "--compare-isolated {cpu}: no other CPU online to compare with"
        )));
    };
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find this program", e))?;
    let args = child_args(a);
    let count = a
        .count
        .unwrap_or(a.duration * 1_000_000 / a.interval_us.max(1));
    let seconds = count * a.interval_us.max(1) / 1_000_000;
    // One load for both runs, on every CPU but the one to isolate (and so
    // on the housekeeping CPU the first run shares with it).
    let _load = if a.load {
        Some(Load::start(Some(cpu), 2 * seconds + 60)?)
    } else {
        None
    };
    let plot = |tag: &str| a.plot.as_ref().map(|p| tagged(p, tag));
    let mut first = Command::new(&exe);
    first.args(&args).arg("--cpu").arg(housekeeping.to_string());
    if let Some(p) = plot("housekeeping") {
        first.arg("--plot").arg(p);
    }
    eprintln!("latency: run 1 of 2: CPU {housekeeping} (housekeeping)");
    let hk = compare_run(first, "housekeeping")?;
    let mut second = Command::new(&exe);
    second.args(["isolate", &cpu.to_string()]);
    let keep_irqs = !a.steer_irqs && !a.dev.socket && is_char_device(&a.dev.dev);
    if keep_irqs {
        second.arg("--keep-irqs-of").arg(&a.dev.dev);
    }
    second
        .arg("--")
        .arg(&exe)
        .args(&args)
        .arg("--cpu")
        .arg(cpu.to_string());
    if let Some(p) = plot("isolated") {
        second.arg("--plot").arg(p);
    }
    eprintln!(
        "latency: run 2 of 2: CPU {cpu} (isolated by cpu_isolate{}, then released)",
        if keep_irqs {
            ", the device's interrupts kept on it"
        } else {
            ""
        }
    );
    let iso = compare_run(second, "isolated")?;
    let mut out = io::stdout().lock();
    if a.json {
        let both = serde_json::json!({
            "version": 1,
            "housekeeping_cpu": housekeeping,
            "isolated_cpu": cpu,
            "irqs_kept": keep_irqs,
            "load": a.load,
            "housekeeping": hk,
            "isolated": iso,
        });
        let text = serde_json::to_string_pretty(&both)
            .map_err(|e| Error::Failed(format!("cannot encode the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        write!(
            out,
            "{}",
            render_comparison(&hk, &iso, housekeeping, cpu, a.load)
        )?;
        if let (Some(h), Some(i)) = (plot("housekeeping"), plot("isolated")) {
            writeln!(out, "plots: {} {}", h.display(), i.display())?;
        }
    }
    match [&hk, &iso]
        .iter()
        .find_map(|r| r.get("error").and_then(|e| e.as_str()))
    {
        Some(e) => Err(Error::Failed(e.to_string())),
        None => Ok(()),
    }
}

/// Whether `p` is a character device node (an ivshmem device, not a
/// server's socket).
fn is_char_device(p: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

/// The comparison table of two JSON reports.
pub(crate) fn render_comparison(
    hk: &serde_json::Value,
    iso: &serde_json::Value,
    hk_cpu: u32,
    iso_cpu: usize,
    load: bool,
) -> String {
    let num = |r: &serde_json::Value, path: &[&str]| -> Option<f64> {
        path.iter().try_fold(r, |v, k| v.get(k))?.as_f64()
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "RT loop across cells: housekeeping CPU {hk_cpu} vs CPU {iso_cpu} isolated by cpu_isolate{}",
        if load {
            format!(", stress-ng on every CPU but {iso_cpu}")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "{:<18} {:>14} {:>14} {:>18}",
        "", "housekeeping", "isolated", "housekeeping/iso"
    );
    let rows: [(&str, &[&str]); 10] = [
        ("round trips", &["received"]),
        ("lost", &["lost"]),
        ("overruns", &["overruns"]),
        ("rtt p50 µs", &["rtt_us", "p50"]),
        ("rtt p99 µs", &["rtt_us", "p99"]),
        ("rtt p99.9 µs", &["rtt_us", "p999"]),
        ("rtt max µs", &["rtt_us", "max"]),
        ("wake p50 µs", &["wake_us", "p50"]),
        ("wake p99 µs", &["wake_us", "p99"]),
        ("wake max µs", &["wake_us", "max"]),
    ];
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"));
    for (name, path) in rows {
        let (h, i) = (num(hk, path), num(iso, path));
        let ratio = match (h, i) {
            (Some(h), Some(i)) if i > 0.0 && path.len() == 2 => format!("{:.2}", h / i),
            _ => String::new(),
        };
        let _ = writeln!(s, "{name:<18} {:>14} {:>14} {ratio:>18}", cell(h), cell(i));
    }
    // The histograms, coarsely: round trips per range.
    let (hh, ih) = (coarse_histogram(hk), coarse_histogram(iso));
    for ((label, h), (_, i)) in hh.iter().zip(&ih) {
        let _ = writeln!(s, "{:<18} {h:>14} {i:>14}", format!("rtt {label}"));
    }
    s
}

/// Upper edges (µs) of the ranges [`coarse_histogram`] sums into.
const COARSE_EDGES_US: [u64; 6] = [100, 200, 500, 1000, 2000, 5000];

/// A report's round-trip histogram summed into the [`COARSE_EDGES_US`]
/// ranges (and the rest): `(label, count)`; empty if it has none.
fn coarse_histogram(r: &serde_json::Value) -> Vec<(String, u64)> {
    let h = &r["histogram"];
    let (Some(width), Some(counts)) = (h["bucket_us"].as_u64(), h["counts"].as_array()) else {
        return Vec::new();
    };
    let mut sums = vec![0u64; COARSE_EDGES_US.len() + 1];
    for (i, c) in counts.iter().enumerate() {
        // CAST: a bucket index.
        let start = i as u64 * width;
        let slot = COARSE_EDGES_US
            .iter()
            .position(|&e| start < e)
            .unwrap_or(COARSE_EDGES_US.len());
        sums[slot] += c.as_u64().unwrap_or(0);
    }
    sums[COARSE_EDGES_US.len()] += h["overflow"].as_u64().unwrap_or(0);
    let mut out = Vec::new();
    let mut low = 0;
    for (i, n) in sums.into_iter().enumerate() {
        let label = match COARSE_EDGES_US.get(i) {
            Some(&e) => {
                let l = format!("{low}-{e} µs");
                low = e;
                l
            }
            None => format!(">= {low} µs"),
        };
        out.push((label, n));
    }
    out
}

fn initiate(ep: &mut dyn Endpoint, a: &Args, vector: u32) -> Result<Report> {
    let interval = a.interval_us.max(1) * 1000;
    let count = a
        .count
        .unwrap_or(a.duration * 1_000_000 / a.interval_us.max(1));
    let geo = Geometry::new(SLOTS, SLOT_SIZE).map_err(|e| channel_err("rings", e))?;
    let me = ep.id();
    // SAFETY: `rings` is dropped at the end of this function, before the
    // caller's `ep`.
    let rings = &unsafe { Rings::locate(ep, a.placement, a.shm_offset) }?;
    let (my_producer, my_consumer) = rings.mine(Role::Initiator);
    let (unbound, unbound_at) = rings.unbound();
    // CAST: any 32 bits of the clock make a fresh epoch.
    let epoch = (now_ns() as u32) | 1;
    let mut tx = Producer::create(rings.own(), my_producer, unbound, unbound_at, geo, epoch)
        .map_err(|e| channel_err("creating the ring", e))?;
    let connect = Duration::from_millis(a.connect_timeout_ms);
    let mut side = Side::new(ep, vector, a.spin_us);
    // The hello carries this ring's epoch, which the responder's hello
    // echoes: a ring left by an earlier responder is not taken for its.
    let hello = Msg {
        kind: HELLO,
        id: me,
        t_send: u64::from(epoch),
        ..Msg::default()
    };
    side.send(&mut tx, &hello)?;
    let until = Instant::now() + connect;
    let (mut rx, answer) = 'found: loop {
        // Every place the responder may answer from (one in the R/W
        // section; each other peer's output section).
        for link in rings.links(Role::Initiator) {
            let Ok(mut rx) =
                Consumer::attach(link.theirs, link.their_producer, rings.own(), my_consumer)
            else {
                continue;
            };
            if let Ok(Some(m)) = side.receive(&mut rx, Mode::Spin, Duration::from_millis(10)) {
                if m.kind == HELLO && m.t_send == u64::from(epoch) {
                    tx.rebind(link.theirs, link.their_consumer)
                        .map_err(|e| channel_err("binding the ring", e))?;
                    break 'found (rx, m);
                }
            }
        }
        // Stale, not there yet, or re-created meanwhile: look again.
        if Instant::now() >= until {
            return Err(Error::Failed(format!(
                "waiting for the responder (lincell latency --respond): no hello within {} ms",
                a.connect_timeout_ms
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    side.peer = Some(answer.id);
    let _load = if a.load {
        Some(Load::start(a.cpu, count * interval / 1_000_000_000)?)
    } else {
        None
    };
    go_realtime(a.cpu, a.priority)?;

    let timeout = Duration::from_millis(a.timeout_ms);
    // CAST: the sample vectors are pre-sized for a run that fits in memory.
    let mut rtt = Vec::with_capacity(count as usize);
    let mut wake = Vec::with_capacity(count as usize);
    let (mut lost, mut overruns, mut error) = (0, 0, None);
    let mut next = now_ns() + interval;
    for seq in 0..count {
        sleep_until(next);
        let woke = now_ns();
        wake.push(woke.saturating_sub(next));
        let ping = Msg {
            kind: PING,
            id: me,
            seq,
            t_send: woke,
            t_resp: 0,
        };
        if let Err(e) = side.send(&mut tx, &ping) {
            error = Some(e.to_string());
            break;
        }
        // Answers to earlier pings are skipped.
        let answer = loop {
            match side.receive(&mut rx, a.mode, timeout) {
                Ok(Some(m)) if m.kind == PONG && m.seq < seq => continue,
                r => break r,
            }
        };
        match answer {
            Ok(Some(m)) if m.kind == PONG && m.seq == seq => {
                let t = now_ns() - woke;
                rtt.push(t);
                if t > interval {
                    overruns += 1;
                }
            }
            Ok(Some(m)) => {
                error = Some(format!(
                    "unexpected message (kind {}, seq {}) for ping {seq}",
                    m.kind, m.seq
                ));
                break;
            }
            Ok(None) => {
                lost += 1;
                error = Some(format!(
                    "no answer to ping {seq} within {} ms: the responder died or stalled",
                    a.timeout_ms
                ));
                break;
            }
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
        next += interval;
        let now = now_ns();
        if now > next {
            // Missed deadlines are skipped, and counted.
            let missed = (now - next) / interval + 1;
            overruns += missed;
            next += missed * interval;
        }
    }
    if error.is_none() {
        let _ = side.send(
            &mut tx,
            &Msg {
                kind: STOP,
                id: me,
                ..Msg::default()
            },
        );
    }
    let histogram = Histogram::new(a.hist_bucket_us, a.hist_max_us, &rtt);
    Ok(Report {
        version: 1,
        mode: a.mode,
        placement: rings.placement(),
        interval_us: a.interval_us,
        cpu: a.cpu,
        priority: a.priority,
        load: a.load,
        count,
        received: rtt.len() as u64,
        lost,
        overruns,
        doorbells_sent: side.rings,
        rtt_us: Figures::from(&mut rtt),
        wake_us: Figures::from(&mut wake),
        histogram,
        error,
    })
}

fn respond(ep: &mut dyn Endpoint, a: &Args, vector: u32) -> Result<()> {
    let geo = Geometry::new(SLOTS, SLOT_SIZE).map_err(|e| channel_err("rings", e))?;
    let me = ep.id();
    go_realtime(a.cpu, a.priority)?;
    let connect = Duration::from_millis(a.connect_timeout_ms);
    // Between pings the initiator sleeps an interval: allow plenty.
    let idle = Duration::from_millis(a.timeout_ms.max(10_000));
    let mut side = Side::new(ep, vector, a.spin_us);
    for session in 0..a.sessions {
        // Each initiator creates its ring anew (a new epoch) and says hello
        // with that epoch: a ring left by an earlier one is not answered.
        let until = Instant::now() + connect;
        let mut attempt = 0u32;
        let (rings, link, hello) = 'found: loop {
            // With --placement auto, every other attempt looks in the R/W
            // section: the initiator chose (it may have said rw).
            let want = match a.placement {
                Placement::Auto if attempt % 2 == 1 => Placement::Rw,
                p => p,
            };
            attempt = attempt.wrapping_add(1);
            // Located on every attempt: the sections move when a guest's
            // driver writes lincell's v1 layout header after this peer
            // joined.
            // SAFETY: `rings` is dropped with this session, before `ep`.
            let rings = unsafe { Rings::locate(&*side.ep, want, a.shm_offset) }?;
            let (_, my_consumer) = rings.mine(Role::Responder);
            for (i, link) in rings.links(Role::Responder).iter().enumerate() {
                match Consumer::attach(link.theirs, link.their_producer, rings.own(), my_consumer) {
                    Ok(mut rx) => {
                        if let Ok(Some(m)) =
                            side.receive(&mut rx, Mode::Spin, Duration::from_millis(10))
                        {
                            if m.kind == HELLO && m.t_send == u64::from(rx.epoch()) {
                                break 'found (rings, i, m);
                            }
                        }
                    }
                    Err(ChannelError::NotReady | ChannelError::Corrupt { .. }) => {}
                    Err(e) => return Err(channel_err("waiting for an initiator", e)),
                }
            }
            if Instant::now() >= until {
                return Err(Error::Failed(format!(
                    "session {session}: no hello from an initiator (lincell latency DEV) within {} ms",
                    a.connect_timeout_ms
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let links = rings.links(Role::Responder);
        let link = &links[link];
        let (my_producer, my_consumer) = rings.mine(Role::Responder);
        // Attached again for good: the hello is read a second time.
        let mut rx = Consumer::attach(link.theirs, link.their_producer, rings.own(), my_consumer)
            .map_err(|e| channel_err("attaching", e))?;
        let _ = side.receive(&mut rx, Mode::Spin, Duration::from_millis(10))?;
        side.peer = Some(hello.id);
        eprintln!(
            "lincell latency: session {session}: initiator peer {}",
            hello.id
        );
        // CAST: any 32 bits of the clock make a fresh epoch.
        let epoch = (now_ns() as u32) | 1;
        let mut tx = Producer::create(
            rings.own(),
            my_producer,
            link.theirs,
            link.their_consumer,
            geo,
            epoch,
        )
        .map_err(|e| channel_err("creating the ring", e))?;
        // Echo the initiator's epoch: this hello answers that initiator.
        let answer = Msg {
            kind: HELLO,
            id: me,
            t_send: hello.t_send,
            ..Msg::default()
        };
        side.send(&mut tx, &answer)?;
        let mut answered = 0u64;
        loop {
            match side.receive(&mut rx, a.mode, idle)? {
                Some(m) if m.kind == PING => {
                    let pong = Msg {
                        kind: PONG,
                        id: me,
                        seq: m.seq,
                        t_send: m.t_send,
                        t_resp: now_ns(),
                    };
                    side.send(&mut tx, &pong)?;
                    answered += 1;
                }
                Some(m) if m.kind == STOP => break,
                Some(m) => {
                    return Err(Error::Failed(format!(
                        "session {session}: unexpected message kind {}",
                        m.kind
                    )))
                }
                None => {
                    return Err(Error::Failed(format!(
                        "session {session}: the initiator went silent after {answered} pings"
                    )))
                }
            }
        }
        eprintln!("lincell latency: session {session}: answered {answered} pings");
    }
    Ok(())
}

fn fmt_figures(f: &Option<Figures>) -> String {
    match f {
        Some(f) => format!(
            "min {:.1}  avg {:.1}  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            f.min, f.avg, f.p50, f.p99, f.p999, f.max
        ),
        None => "none".into(),
    }
}

/// The text report.
pub(crate) fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "mode {:?}, interval {} µs, cpu {}, {}{}",
        r.mode,
        r.interval_us,
        r.cpu.map_or("any".into(), |c| c.to_string()),
        match r.priority {
            0 => "normal policy".to_string(),
            p => format!("SCHED_FIFO {p}"),
        },
        if r.load { ", loaded" } else { "" }
    );
    let _ = writeln!(
        s,
        "round trips: {} of {}, lost {}, overruns {}, doorbells sent {}",
        r.received, r.count, r.lost, r.overruns, r.doorbells_sent
    );
    let _ = writeln!(s, "rtt_us:  {}", fmt_figures(&r.rtt_us));
    let _ = writeln!(s, "wake_us: {}", fmt_figures(&r.wake_us));
    let _ = writeln!(s, "histogram (rtt, {} µs buckets):", r.histogram.bucket_us);
    for (i, c) in r
        .histogram
        .counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
    {
        let _ = writeln!(s, "  {:>6} µs  {c}", i as u64 * r.histogram.bucket_us);
    }
    if r.histogram.overflow > 0 {
        let _ = writeln!(
            s,
            "  >={:>4} µs  {}",
            r.histogram.counts.len() as u64 * r.histogram.bucket_us,
            r.histogram.overflow
        );
    }
    if let Some(e) = &r.error {
        let _ = writeln!(s, "error: {e}");
    }
    s
}

/// The round-trip histogram as an SVG chart: linear µs, log count.
pub(crate) fn svg(r: &Report) -> String {
    let (w, h, left, bottom, top) = (800.0_f64, 400.0_f64, 60.0, 40.0, 30.0);
    let h_plot = h - bottom - top;
    let w_plot = w - left - 20.0;
    let mut counts = r.histogram.counts.clone();
    counts.push(r.histogram.overflow);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let ymax = max.log10().ceil().max(1.0);
    let bw = w_plot / counts.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">"
    );
    let _ = writeln!(s, "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"20\" font-family=\"sans-serif\" font-size=\"14\" text-anchor=\"middle\">lincell latency: round trips ({} of {}, mode {:?}, interval {} µs)</text>",
        w / 2.0, r.received, r.count, r.mode, r.interval_us
    );
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let bh = ((c as f64).log10() + 1.0) / (ymax + 1.0) * h_plot;
        let x = left + i as f64 * bw;
        let fill = if i + 1 == counts.len() {
            "#c0392b"
        } else {
            "#2c7fb8"
        };
        let _ = writeln!(
            s,
            "<rect x=\"{x:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{fill}\"/>",
            h - bottom - bh,
            bw.max(0.5)
        );
    }
    // Axes, decades on the count axis, µs ticks.
    let _ = writeln!(
        s,
        "<path d=\"M{left} {top} V{} H{}\" stroke=\"black\" fill=\"none\"/>",
        h - bottom,
        w - 20.0
    );
    for d in 0..=(ymax as u32) {
        let y = h - bottom - (f64::from(d) + 1.0) / (ymax + 1.0) * h_plot;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{y:.1}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"end\">1e{d}</text>",
            left - 5.0
        );
    }
    let span = r.histogram.counts.len() as u64 * r.histogram.bucket_us;
    for k in 0..=4u64 {
        let x = left + w_plot * (k as f64 / 5.0) * (counts.len() - 1) as f64 / counts.len() as f64;
        let _ = writeln!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            h - bottom + 15.0,
            span * k / 5
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"12\" text-anchor=\"middle\">round trip (µs); last bar: at least {span} µs</text>",
        w / 2.0,
        h - 8.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_short_ones_are_refused() {
        let m = Msg {
            kind: PONG,
            id: 3,
            seq: 1 << 40,
            t_send: 5,
            t_resp: 6,
        };
        assert_eq!(Msg::decode(&m.encode()), Some(m));
        assert_eq!(Msg::decode(&[0; 31]), None);
        assert_eq!(m.encode()[..8], [3, 0, 0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn histogram_buckets_and_overflow() {
        let h = Histogram::new(10, 50, &[0, 9_999, 10_000, 49_999, 50_000, 1_000_000]);
        assert_eq!(h.counts, [2, 1, 0, 0, 1]);
        assert_eq!(h.overflow, 2);
    }

    fn report() -> Report {
        let mut rtt = vec![500_000, 600_000, 700_000, 12_000_000];
        Report {
            version: 1,
            mode: Mode::SpinBlock,
            placement: Placement::Output,
            interval_us: 1000,
            cpu: Some(3),
            priority: 80,
            load: false,
            count: 4,
            received: 4,
            lost: 0,
            overruns: 1,
            doorbells_sent: 8,
            histogram: Histogram::new(10, 5000, &rtt),
            rtt_us: Figures::from(&mut rtt),
            wake_us: None,
            error: None,
        }
    }

    #[test]
    fn json_schema_fields() {
        let v = serde_json::to_value(report()).unwrap();
        for k in [
            "version",
            "mode",
            "placement",
            "interval_us",
            "cpu",
            "priority",
            "load",
            "count",
            "received",
            "lost",
            "overruns",
            "doorbells_sent",
            "rtt_us",
            "wake_us",
            "histogram",
            "error",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["mode"], "spin-block");
        assert_eq!(v["placement"], "output");
        assert_eq!(v["rtt_us"]["max"], 12000.0);
        assert_eq!(v["histogram"]["overflow"], 1);
    }

    #[test]
    fn the_comparison_reads_both_reports_and_divides() {
        let hk = serde_json::to_value(report()).unwrap();
        let mut iso = hk.clone();
        iso["rtt_us"]["p99"] = serde_json::json!(300.0);
        iso["rtt_us"]["max"] = serde_json::Value::Null;
        let t = render_comparison(&hk, &iso, 0, 1, true);
        assert!(t.starts_with(
            "RT loop across cells: housekeeping CPU 0 vs CPU 1 isolated by cpu_isolate, stress-ng on every CPU but 1\n"
        ));
        let row = |name: &str| {
            t.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in\n{t}"))
                .split_whitespace()
                .skip(name.split_whitespace().count())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        // rtt p99 of report() is 12000 µs (nearest rank of 4 samples).
        assert_eq!(row("rtt p99 µs"), ["12000.0", "300.0", "40.00"]);
        // A figure missing on one side: shown as -, no ratio.
        assert_eq!(row("rtt max µs"), ["12000.0", "-"]);
        // Counts get no ratio.
        assert_eq!(row("round trips"), ["4.0", "4.0"]);
        // The histogram, coarsely: 500, 600, 700 µs and 12 ms (overflow).
        assert_eq!(row("rtt 500-1000 µs"), ["3", "3"]);
        assert_eq!(row("rtt 0-100 µs"), ["0", "0"]);
        assert_eq!(row("rtt >= 5000 µs"), ["1", "1"]);
    }

    #[test]
    fn comparison_children_get_the_loop_s_arguments() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: Args,
        }
        let a = Cli::parse_from([
            "x",
            "/dev/ivshmem0",
            "--compare-isolated",
            "1",
            "--mode",
            "block",
            "--count",
            "500",
            "--load",
        ])
        .a;
        let args = child_args(&a).join(" ");
        assert!(
            args.starts_with("latency /dev/ivshmem0 --mode block "),
            "{args}"
        );
        assert!(args.contains("--count 500 "), "{args}");
        assert!(args.contains("--shm-offset rw+0x1000 "), "{args}");
        assert!(args.ends_with(" --json"), "{args}");
        assert!(
            !args.contains("--load") && !args.contains("--compare"),
            "{args}"
        );
        let again = Cli::parse_from(
            std::iter::once("x".to_string()).chain(child_args(&a).into_iter().skip(1)),
        )
        .a;
        assert_eq!(
            (again.count, again.mode, again.shm_offset),
            (Some(500), Mode::Block, a.shm_offset)
        );
        assert_eq!(
            tagged(std::path::Path::new("/tmp/rtt.svg"), "isolated"),
            PathBuf::from("/tmp/rtt-isolated.svg")
        );
        assert_eq!(
            tagged(std::path::Path::new("rtt"), "x"),
            PathBuf::from("rtt-x")
        );
    }

    #[test]
    fn the_plot_is_one_svg_element_with_balanced_tags() {
        let s = svg(&report());
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>\n"));
        let opens =
            s.matches("<rect").count() + s.matches("<text").count() + s.matches("<path").count();
        let closes = s.matches("/>").count() + s.matches("</text>").count();
        assert_eq!(opens, closes);
        assert!(s.contains("fill=\"#c0392b\""), "the overflow bar is drawn");
    }
}
