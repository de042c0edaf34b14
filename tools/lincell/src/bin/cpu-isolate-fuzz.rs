// SPDX-License-Identifier: GPL-2.0

//! `cpu-isolate-fuzz`: random writes to `/sys/kernel/cpu_isolate/` while
//! CPUs go offline and online underneath.
//!
//! A tool of the test suite (`tests/guest/cpu-isolate-fuzz.sh`), kept out of
//! the `lincell` binary. Writer threads send one `write(2)` each to a random
//! writable attribute (`isolate`, `release`, `sampler/cpus`,
//! `sampler/duration_ms`, `sampler/threshold_ns`, `sampler/control`): half
//! of them text built from the commands' own grammar (cpulists, ranges,
//! modes, `all`, `start`/`stop`, numbers around the limits), half raw random
//! bytes of random length (NUL, high bytes, up to a page and beyond), and
//! read random report files in between. A hot-plug thread takes the
//! `--hotplug` CPUs offline and online behind the module's back. At the end
//! every CPU is brought online, the sampler stopped and `release all`
//! written, so the caller can compare the machine with its state before.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use lincell::rng::Rng;

/// Random writes to /sys/kernel/cpu_isolate while CPUs come and go.
#[derive(Parser, Debug)]
#[command(
    name = "cpu-isolate-fuzz",
    about = "Random writes to /sys/kernel/cpu_isolate while CPUs go offline and online",
    long_about = "\
Runs --threads writer threads that together make --writes single write(2)
calls to random writable files of /sys/kernel/cpu_isolate (half grammar-
based commands, half random bytes of random length) and read its report
files in between, for at most --seconds, while one more thread takes the
--hotplug CPUs offline and online through /sys/devices/system/cpu. Then it
brings every CPU online, stops the sampler and writes `release all`.

Prints `writes=N accepted=N reads=N hotplugs=N seconds=S` and one
`errno NAME=COUNT` line per errno seen. Exit status 0 unless the clean-up
failed (a CPU stayed offline, `release all` was refused, or the module's
`status` no longer reads back)."
)]
struct Args {
    /// Writes in total.
    #[arg(long, default_value_t = 4000)]
    writes: u64,
    /// Stop after this many seconds even if writes are left.
    #[arg(long, default_value_t = 90)]
    seconds: u64,
    /// Writer threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Seed of the random sequence (each thread derives its own).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// CPUs the hot-plug thread takes offline and online (cpulist; empty:
    /// none).
    #[arg(long, default_value = "")]
    hotplug: String,
    /// The module's sysfs directory.
    #[arg(long, default_value = "/sys/kernel/cpu_isolate")]
    dir: PathBuf,
    /// Append every accepted write and every hot-plug operation, with the
    /// milliseconds since the start, to FILE (to replay a failure).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

/// The `--log` file, shared by the threads.
struct Log {
    file: Option<Mutex<fs::File>>,
    start: Instant,
}

impl Log {
    fn new(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            Some(p) => Some(Mutex::new(fs::File::create(p)?)),
            None => None,
        };
        Ok(Log {
            file,
            start: Instant::now(),
        })
    }

    fn line(&self, what: &str, data: &[u8]) {
        if let Some(Ok(mut f)) = self.file.as_ref().map(|f| f.lock()) {
            let ms = self.start.elapsed().as_millis();
            let _ = writeln!(
                f,
                "{ms} {what} {:?} | {}",
                String::from_utf8_lossy(data),
                irq_affinities()
            );
        }
    }
}

/// `IRQ=cpulist` of every IRQ, for the log.
fn irq_affinities() -> String {
    let mut v: Vec<(u32, String)> = fs::read_dir("/proc/irq")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let irq = e.file_name().to_str()?.parse().ok()?;
            let a = fs::read_to_string(e.path().join("smp_affinity_list")).ok()?;
            Some((irq, a.trim().to_string()))
        })
        .collect();
    v.sort();
    v.iter()
        .map(|(i, a)| format!("{i}={a}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The files a write goes to.
const WRITABLE: &[&str] = &[
    "isolate",
    "release",
    "sampler/cpus",
    "sampler/duration_ms",
    "sampler/threshold_ns",
    "sampler/control",
];

/// The files a read goes to.
const READABLE: &[&str] = &[
    "isolate",
    "status",
    "irqs",
    "kthreads",
    "last_error",
    "sampler/cpus",
    "sampler/duration_ms",
    "sampler/threshold_ns",
    "sampler/control",
    "sampler/results",
];

/// A cpulist in the module's syntax, sometimes subtly wrong.
fn cpulist(rng: &mut Rng, cpus: u64) -> String {
    let mut s = String::new();
    for i in 0..=rng.below(3) {
        if i > 0 {
            s.push(if rng.below(20) == 0 { ';' } else { ',' });
        }
        let a = match rng.below(10) {
            0 => rng.next() % 5000,
            1 => 1023 + rng.below(3),
            _ => rng.below(cpus + 1),
        };
        match rng.below(4) {
            0 => s.push_str(&format!("{a}-{}", a + rng.below(3))),
            1 => s.push_str(&format!("{a}-{}", a.saturating_sub(1))),
            _ => s.push_str(&a.to_string()),
        }
    }
    if rng.below(30) == 0 {
        s.push_str(":2/4");
    }
    s
}

/// A number around the sampler's limits.
fn number(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => "0".into(),
        1 => (1 + rng.below(50)).to_string(),
        2 => "60001".into(),
        3 => "-1".into(),
        4 => "1000000001".into(),
        _ => format!("{}", rng.next()),
    }
}

/// What to write to `file`: grammar-based text or raw bytes.
fn payload(rng: &mut Rng, file: &str, cpus: u64) -> Vec<u8> {
    if rng.below(2) == 0 {
        let len = match rng.below(8) {
            0 => 0,
            1 => 4095 + rng.below(3) as usize,
            2 => 5000,
            _ => 1 + rng.below(40) as usize,
        };
        // CAST: a random byte.
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut s = match file {
        "isolate" => {
            let mut s = cpulist(rng, cpus);
            match rng.below(5) {
                0 => s.push_str(" offline"),
                1 => s.push_str(" steer"),
                2 => s.push_str(" bogus"),
                _ => {}
            }
            s
        }
        "release" => {
            if rng.below(3) == 0 {
                "all".into()
            } else {
                cpulist(rng, cpus)
            }
        }
        "sampler/cpus" => cpulist(rng, cpus),
        "sampler/control" => rng.pick(&["start", "stop", "start ", "restart", ""]).into(),
        _ => number(rng),
    };
    match rng.below(4) {
        0 => s.push('\n'),
        1 => s = format!("  {s}  "),
        _ => {}
    }
    s.into_bytes()
}

/// Writes `data` in one `write(2)`; `Ok` or the errno.
fn write_once(path: &Path, data: &[u8]) -> Result<(), i32> {
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?;
    match f.write(data) {
        Ok(n) if n == data.len() => Ok(()),
        // A store must consume the whole write: a short count is a bug,
        // reported as the pseudo-errno 0.
        Ok(_) => Err(0),
        Err(e) => Err(e.raw_os_error().unwrap_or(0)),
    }
}

/// The errno's name (`E123` for those not listed).
fn errno_name(e: i32) -> String {
    let known = [
        (libc::EINVAL, "EINVAL"),
        (libc::EBUSY, "EBUSY"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOENT, "ENOENT"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EPERM, "EPERM"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EIO, "EIO"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::EACCES, "EACCES"),
        (libc::E2BIG, "E2BIG"),
    ];
    if e == 0 {
        return "short-write".into();
    }
    known
        .iter()
        .find(|(n, _)| *n == e)
        .map_or_else(|| format!("E{e}"), |(_, s)| (*s).to_string())
}

/// Counters shared by the threads.
#[derive(Default)]
struct Stats {
    writes: AtomicU64,
    accepted: AtomicU64,
    reads: AtomicU64,
    hotplugs: AtomicU64,
    errnos: Mutex<BTreeMap<String, u64>>,
}

/// Parses a cpulist such as `2-3,5` (the test's own argument: trusted).
fn parse_cpus(list: &str) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.parse().map_err(|_| format!("bad cpulist `{list}`"))?;
        let b: u32 = b.parse().map_err(|_| format!("bad cpulist `{list}`"))?;
        v.extend(a..=b);
    }
    Ok(v)
}

fn online_path(cpu: u32) -> PathBuf {
    PathBuf::from(format!("/sys/devices/system/cpu/cpu{cpu}/online"))
}

fn writer(args: &Args, seed: u64, quota: u64, deadline: Instant, stats: &Stats, log: &Log) {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get() as u64);
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 8192];
    for _ in 0..quota {
        if Instant::now() > deadline {
            break;
        }
        let file = rng.pick(WRITABLE);
        let data = payload(&mut rng, file, cpus);
        stats.writes.fetch_add(1, Relaxed);
        match write_once(&args.dir.join(file), &data) {
            Ok(()) => {
                stats.accepted.fetch_add(1, Relaxed);
                log.line(file, &data);
            }
            Err(e) => {
                if let Ok(mut m) = stats.errnos.lock() {
                    *m.entry(errno_name(e)).or_default() += 1;
                }
            }
        }
        for _ in 0..rng.below(3) {
            let path = args.dir.join(rng.pick(READABLE));
            if let Ok(mut f) = fs::File::open(path) {
                // CAST: a random read size below the buffer's.
                let n = 1 + rng.below(buf.len() as u64 - 1) as usize;
                let _ = f.read(&mut buf[..n]);
                stats.reads.fetch_add(1, Relaxed);
            }
        }
    }
}

fn hotplugger(cpus: &[u32], seed: u64, stop: &AtomicBool, stats: &Stats, log: &Log) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) && !cpus.is_empty() {
        let cpu = rng.pick(cpus);
        let value = if rng.below(2) == 0 { "0" } else { "1" };
        if write_once(&online_path(cpu), value.as_bytes()).is_ok() {
            stats.hotplugs.fetch_add(1, Relaxed);
            log.line(&format!("cpu{cpu}/online"), value.as_bytes());
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
    }
}

/// Puts everything back; the failures it could not repair.
fn clean_up(args: &Args, hotplug: &[u32]) -> Vec<String> {
    let mut failures = Vec::new();
    for &cpu in hotplug {
        let path = online_path(cpu);
        // A CPU the module took offline comes back with `release all`.
        let _ = write_once(&path, b"1");
    }
    // Refused when no run is in progress; either way none may be left.
    let _ = write_once(&args.dir.join("sampler/control"), b"stop");
    match fs::read_to_string(args.dir.join("sampler/control")) {
        Ok(s) if s.trim() != "running" => {}
        other => failures.push(format!("sampler after stop: {other:?}")),
    }
    if let Err(e) = write_once(&args.dir.join("release"), b"all") {
        failures.push(format!("release all: {}", errno_name(e)));
    }
    for &cpu in hotplug {
        let path = online_path(cpu);
        let _ = write_once(&path, b"1");
        match fs::read_to_string(&path) {
            Ok(s) if s.trim() == "1" => {}
            other => failures.push(format!("CPU {cpu} is not online again: {other:?}")),
        }
    }
    match fs::read_to_string(args.dir.join("status")) {
        Ok(s) if s.lines().any(|l| l == "isolated=") => {}
        other => failures.push(format!("status after release all: {other:?}")),
    }
    failures
}

fn main() -> ExitCode {
    let args = Arc::new(Args::parse());
    let hotplug = match parse_cpus(&args.hotplug) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            eprintln!("cpu-isolate-fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    let log = match Log::new(args.log.as_deref()) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!("cpu-isolate-fuzz: --log: {e}");
            return ExitCode::from(2);
        }
    };
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);

    let plug = {
        let (hotplug, stop, stats, log) =
            (hotplug.clone(), stop.clone(), stats.clone(), log.clone());
        let seed = args.seed ^ 0x9e37_79b9;
        std::thread::spawn(move || hotplugger(&hotplug, seed, &stop, &stats, &log))
    };
    let threads = args.threads.max(1);
    let writers: Vec<_> = (0..threads)
        .map(|i| {
            let (args, stats, log) = (args.clone(), stats.clone(), log.clone());
            let quota = args.writes / u64::from(threads)
                + u64::from(u64::from(i) < args.writes % u64::from(threads));
            let seed = args.seed.wrapping_mul(1 + u64::from(i)) ^ u64::from(i);
            std::thread::spawn(move || writer(&args, seed, quota, deadline, &stats, &log))
        })
        .collect();
    for w in writers {
        let _ = w.join();
    }
    stop.store(true, Relaxed);
    let _ = plug.join();

    let failures = clean_up(&args, &hotplug);
    println!(
        "writes={} accepted={} reads={} hotplugs={} seconds={:.1}",
        stats.writes.load(Relaxed),
        stats.accepted.load(Relaxed),
        stats.reads.load(Relaxed),
        stats.hotplugs.load(Relaxed),
        start.elapsed().as_secs_f64()
    );
    if let Ok(m) = stats.errnos.lock() {
        for (name, n) in m.iter() {
            println!("errno {name}={n}");
        }
    }
    for f in &failures {
        eprintln!("cpu-isolate-fuzz: {f}");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
