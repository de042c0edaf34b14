// SPDX-License-Identifier: GPL-2.0

//! `lincell isolate | release | status | noise`: cpu_isolate.ko from the
//! command line.
//!
//! - [`module`]: the sysfs client (errno names, the module's messages);
//! - [`cpuset`]: the cgroup v2 isolated partition that goes with an
//!   isolation;
//! - [`load`]: the load generator for `noise --load`;
//! - [`results`]: the sampler's results format and the table;
//! - [`irq`]: a device's interrupts, for `isolate --keep-irqs-of`;
//! - [`run`]: `lincell run` (and `isolate -- COMMAND`): a command placed in
//!   the partition, on the CPUs, with a real-time policy.

mod cpuset;
pub(crate) mod irq;
mod load;
mod module;
mod results;
pub(crate) mod run;

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use lincell_shared::cpu_isolate::cpulist;
use lincell_shared::cpu_isolate::cpuset::CpuSet;

use crate::error::{Error, Result};
pub(crate) use cpuset::cgroup2_root;
use module::Module;
pub use module::WriteError;

/// Isolate CPUs (cpu_isolate.ko): steer IRQs and kernel threads off them, optionally take them offline.
#[derive(Args, Debug)]
#[command(
    long_about = "\
Isolate CPUs with cpu_isolate.ko: move every movable interrupt and kernel
thread off them (kernel-managed and unmovable interrupts and per-CPU threads
stay, and are counted), then create a cgroup v2 cpuset isolated partition
lincell-CPUS for them, so that user tasks, load balancing and unbound
workqueues leave them too. The module snapshots what it moved; `lincell
release` restores exactly that.

With --offline the CPUs are also taken offline (a hand-off to another OS);
offline CPUs cannot belong to a partition, so none is created.

--keep-irqs-of DEVICE (and --keep-irq IRQ) do the opposite for the
interrupts of the real-time task's own device: they are delivered on the
isolated CPUs while the isolation lasts (and their handler threads run
there), so the task's wake-up does not cross CPUs; release restores their
affinity exactly. DEVICE is a character device node (/dev/ivshmem0), a PCI
address (0000:00:04.0) or a sysfs device directory; its interrupts are its
MSI/MSI-X vectors (msi_irqs/), else its legacy `irq`. Kernel-managed and
unmovable interrupts are refused (errno EPERM), as is an interrupt another
isolation keeps (EBUSY).

A refusal prints the module's reason and errno (e.g. `CPU 2 is already
isolated (errno 16) [EBUSY]`) and exits with status 1.

With `-- COMMAND [ARGS...]`: isolate, run COMMAND there as `lincell run`
does (inside the partition, on the isolated CPUs, with --fifo/--rr if
given), wait for it, release the isolation (also when COMMAND fails or is
interrupted: SIGINT and SIGTERM go to COMMAND, not to lincell), and exit
with COMMAND's status (128 + N if signal N killed it). lincell's own report
lines then go to standard error: standard output is COMMAND's alone (e.g.
JSON for a pipe).",
    after_help = "\
Examples:
  lincell isolate 2-3
  lincell isolate 2-3,6 --no-cpuset
  lincell isolate 3 --offline
  lincell isolate 3 --fifo 80 -- cyclictest -a 3 -t1 -p 80 -m -D 60
  lincell isolate 1 --keep-irqs-of /dev/ivshmem0 -- lincell latency /dev/ivshmem0 --cpu 1"
)]
pub struct IsolateArgs {
    /// CPUs to isolate, as a cpulist (`2-3`, `2-3,6`).
    #[arg(value_parser = parse_cpus)]
    cpus: CpuSet,
    /// Offline hand-off: also take the CPUs offline (brought back on release).
    #[arg(long)]
    offline: bool,
    /// Do not create a cgroup v2 cpuset isolated partition for the CPUs.
    #[arg(long)]
    no_cpuset: bool,
    /// Deliver DEVICE's interrupts on the isolated CPUs (repeatable).
    #[arg(long, value_name = "DEVICE", conflicts_with = "offline")]
    keep_irqs_of: Vec<PathBuf>,
    /// Deliver interrupt IRQ on the isolated CPUs (repeatable).
    #[arg(long, value_name = "IRQ", conflicts_with = "offline")]
    keep_irq: Vec<u32>,
    /// With a COMMAND: run it SCHED_FIFO at this priority (1..=99).
    #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=99),
          conflicts_with = "rr", requires = "command")]
    fifo: Option<u8>,
    /// With a COMMAND: run it SCHED_RR at this priority (1..=99).
    #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=99),
          requires = "command")]
    rr: Option<u8>,
    /// A command to run on the isolated CPUs, after `--`; the isolation is
    /// released when it ends.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<std::ffi::OsString>,
}

/// Run a command on isolated CPUs: inside their cpuset partition, pinned, optionally real-time.
#[derive(Args, Debug)]
#[command(
    long_about = "\
Run COMMAND where an isolation put the CPUs. A cpuset isolated partition
admits only the tasks of its own cgroup, so a program started from a shell
that asks for an isolated CPU (taskset, cyclictest -a) is refused and runs
elsewhere (cyclictest: \"WARN: Could not set CPU affinity\"). lincell run
moves itself into the lincell partition that holds --cpus (the one
`lincell isolate` created), sets its CPU affinity to --cpus and, with
--fifo or --rr, a real-time policy, then executes COMMAND, which inherits
all three (and passes them on to its children).

If no lincell partition holds the CPUs (isolated with --no-cpuset, or not
isolated at all), only the affinity is set, with a warning. CPUs isolated
by a cpuset partition lincell did not create are refused with the cgroup
to join instead. Exit status: COMMAND's; 2 if it could not be started
(bad CPUs, no permission for the policy, command not found).",
    after_help = "\
Examples:
  lincell isolate 3 && lincell run --cpus 3 --fifo 80 -- cyclictest -a 3 -t1 -p 80 -m -D 60
  lincell run --cpus 2-3 -- taskset -pc $$"
)]
pub struct RunArgs {
    /// CPUs COMMAND may run on (a cpulist).
    #[arg(long, value_parser = parse_cpus)]
    cpus: CpuSet,
    /// Run it SCHED_FIFO at this priority (1..=99).
    #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=99),
          conflicts_with = "rr")]
    fifo: Option<u8>,
    /// Run it SCHED_RR at this priority (1..=99).
    #[arg(long, value_name = "PRIO", value_parser = clap::value_parser!(u8).range(1..=99))]
    rr: Option<u8>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<std::ffi::OsString>,
}

/// Release an isolation, restoring exactly what was there before.
#[derive(Args, Debug)]
#[command(
    long_about = "\
Release one earlier isolation, named by exactly the CPUs it isolated, or
every isolation with `all`: the cpuset partition goes first, then the module
moves interrupts and kernel threads back where they were and brings offline
CPUs back online (last in, first out). Prints what is still isolated.",
    after_help = "\
Examples:
  lincell release 2-3
  lincell release all"
)]
pub struct ReleaseArgs {
    /// CPUs of one earlier isolation (exactly as isolated), or `all`.
    #[arg(value_parser = parse_release)]
    cpus: Release,
}

/// Show what cpu_isolate.ko has isolated and moved.
#[derive(Args, Debug)]
#[command(
    long_about = "\
Show what cpu_isolate.ko reports: online, isolated, offline and housekeeping
CPUs, each isolation, how many interrupts and kernel threads it moved (and
could not), the cpuset partitions lincell created, the sampler's state and
the module's last refusal.",
    after_help = "\
Examples:
  lincell status
  lincell status -v"
)]
pub struct StatusArgs {
    /// Also list every interrupt and kernel thread the module moved.
    #[arg(long, short)]
    verbose: bool,
}

/// Measure per-CPU noise with cpu_isolate.ko's sampler (optionally under load).
#[derive(Args, Debug)]
#[command(
    long_about = "\
Measure how much the CPUs are disturbed: cpu_isolate.ko's sampler runs a
kernel thread on each measured CPU that reads the clock in a tight loop for
--duration-ms; a gap of at least --threshold-ns between two reads is noise.
Prints one line per CPU: noise per second, split into OS noise (time in
interrupt handlers and other tasks, from the kernel's accounting) and the
rest (SMIs, or the host in a virtual machine), the largest gap, the number
of noise gaps, interrupts and softirqs. When isolated and housekeeping CPUs
were both measured, a last line compares the worst of each.

The module refusing the sampler's parameters (e.g. a duration out of
1..=60000) exits with status 1.",
    after_help = "\
Examples:
  lincell noise
  lincell noise --cpus 0,2-3 --duration-ms 5000 --load --hist
  lincell noise --raw"
)]
pub struct NoiseArgs {
    /// CPUs to measure (default: the isolated CPUs and the first
    /// housekeeping CPU; every online CPU if nothing is isolated).
    #[arg(long, value_parser = parse_cpus)]
    cpus: Option<CpuSet>,
    /// How long to measure, milliseconds (1..=60000).
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Gaps at or above this many nanoseconds count as noise.
    #[arg(long, default_value_t = 5000)]
    threshold_ns: u64,
    /// Load the housekeeping CPUs meanwhile: a busy and a 100 µs timer thread
    /// per housekeeping CPU and a ping-pong pair (wake-up IPIs).
    #[arg(long)]
    load: bool,
    /// Print each CPU's histogram of gaps.
    #[arg(long)]
    hist: bool,
    /// Print the module's results file as is (stable format, version 1).
    #[arg(long)]
    raw: bool,
}

/// What `lincell release` releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    /// Every isolation.
    All,
    /// The isolation of exactly these CPUs.
    Cpus(CpuSet),
}

/// Parses a cpulist (clap value parser).
fn parse_cpus(text: &str) -> Result<CpuSet> {
    cpulist::parse(text.as_bytes()).map_err(|e| Error::Usage(format!("{text:?}: {e}")))
}

/// Parses `all` or a cpulist (clap value parser).
fn parse_release(text: &str) -> Result<Release> {
    if text.trim() == "all" {
        Ok(Release::All)
    } else {
        parse_cpus(text).map(Release::Cpus)
    }
}

fn set_of(status: &std::collections::BTreeMap<String, String>, key: &str) -> CpuSet {
    status
        .get(key)
        .and_then(|v| cpulist::parse(v.as_bytes()).ok())
        .unwrap_or_default()
}

/// Writes `text` to the module's `file`; a failure is the module's refusal
/// of `what`.
fn request(m: &Module, file: &str, text: &str, what: impl Into<String>) -> Result<()> {
    m.write(file, text).map_err(|source| Error::Refused {
        what: what.into(),
        source,
    })
}

/// The module's `isolate` command for `cpus` (`CPULIST [offline]
/// [irqs=IRQ,...]`, Documentation/cpu-isolate.md), duplicate IRQs dropped.
pub(crate) fn isolate_command(cpus: &CpuSet, offline: bool, irqs: &[u32]) -> String {
    let mut text = cpus.to_string();
    if offline {
        text.push_str(" offline");
    }
    if !irqs.is_empty() {
        text.push_str(" irqs=");
        text.push_str(&irq::list(irqs));
    }
    text
}

/// `lincell isolate`.
pub fn isolate(a: IsolateArgs) -> Result<()> {
    let cpus = a.cpus;
    // With a command, its standard output is its own (e.g. JSON for a
    // pipe): lincell's reports go to standard error.
    let to_stderr = !a.command.is_empty();
    let say = |msg: String| report(to_stderr, &msg);
    let mut irqs = a.keep_irq.clone();
    for dev in &a.keep_irqs_of {
        irqs.extend(irq::of_device(Path::new("/sys"), dev)?);
    }
    let m = Module::open()?;
    let text = isolate_command(&cpus, a.offline, &irqs);
    request(&m, "isolate", &text, format!("isolate {text}"))?;
    let status = m.status().unwrap_or_default();
    let get = |k: &str| status.get(k).cloned().unwrap_or_default();
    say(format!(
        "isolated {cpus}{}: {} IRQs moved ({} kernel-managed and {} unmovable stay), {} kernel threads moved ({} per-CPU threads pinned)",
        if a.offline { " and took them offline" } else { "" },
        get("irqs_moved"),
        get("irqs_managed"),
        get("irqs_unmovable"),
        get("kthreads_moved"),
        get("kthreads_pinned"),
    ));
    if !irqs.is_empty() {
        say(format!(
            "interrupts kept on {cpus}: {} ({} kept)",
            irq::list(&irqs),
            get("irqs_kept")
        ));
    }
    if a.offline {
        say("cpuset partition: not created: offline CPUs cannot belong to a partition (they are handed to another OS)".into());
    } else if a.no_cpuset {
        say(format!("cpuset partition: not created (--no-cpuset): user tasks and unbound workqueues may still run on {cpus}"));
    } else {
        match cpuset::create(&cpus.to_string()) {
            cpuset::Outcome::Created { path, isolated } => say(format!(
                "cpuset partition: {} (isolated; kernel reports cpuset.cpus.isolated={isolated})",
                path.display()
            )),
            cpuset::Outcome::Skipped(why) => say(format!(
                "cpuset partition: not created: {why}; user tasks and unbound workqueues may still run on {cpus}"
            )),
        }
    }
    if a.command.is_empty() {
        return Ok(());
    }
    let code = run_child(&cpus, run::Policy::from_options(a.fifo, a.rr), &a.command);
    release_reporting(Release::Cpus(cpus), to_stderr)?;
    match code? {
        0 => Ok(()),
        c => Err(Error::Exited(c)),
    }
}

/// A report line of `isolate`/`release`: on standard output, or on
/// standard error while a command's output is on standard output.
fn report(to_stderr: bool, msg: &str) {
    if to_stderr {
        eprintln!("{msg}");
    } else {
        println!("{msg}");
    }
}

/// Runs `lincell run` for `command` as a child and waits for it; SIGINT
/// and SIGTERM meanwhile are the child's alone (the terminal sends them to
/// both; a `kill` of lincell is passed on), so the caller always releases.
fn run_child(
    cpus: &CpuSet,
    policy: Option<run::Policy>,
    command: &[std::ffi::OsString],
) -> Result<u8> {
    let me = std::env::current_exe().map_err(|e| Error::io("cannot find the lincell binary", e))?;
    let mut c = std::process::Command::new(me);
    c.arg("run").arg("--cpus").arg(cpus.to_string());
    if let Some(p) = policy {
        c.args(p.to_args());
    }
    let mut child = c
        .arg("--")
        .args(command)
        .spawn()
        .map_err(|e| Error::io("cannot start lincell run", e))?;
    let forward = crate::sys::ForwardSignals::to(child.id())?;
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for the command", e));
    drop(forward);
    Ok(run::exit_code(status?))
}

/// `lincell run`.
pub fn run(a: RunArgs) -> Result<()> {
    run::exec(&a.cpus, run::Policy::from_options(a.fifo, a.rr), &a.command)
}

/// `lincell release`.
pub fn release(a: ReleaseArgs) -> Result<()> {
    release_reporting(a.cpus, false)
}

/// Releases `cpus`, reporting as [`report`] does.
fn release_reporting(cpus: Release, to_stderr: bool) -> Result<()> {
    let m = Module::open()?;
    let (text, which) = match cpus {
        Release::All => ("all".to_string(), None),
        Release::Cpus(c) => (c.to_string(), Some(c.to_string())),
    };
    // Last in, first out: the partition was created after the module
    // isolated, so it goes first and the module restores its snapshot.
    match cpuset::remove(which.as_deref()) {
        Ok(dirs) => {
            for d in dirs {
                report(
                    to_stderr,
                    &format!("cpuset partition {} removed", d.display()),
                );
            }
        }
        Err(e) => eprintln!("lincell: warning: removing the cpuset partition: {e}"),
    }
    request(&m, "release", &text, format!("release {text}"))?;
    let status = m.status().unwrap_or_default();
    report(
        to_stderr,
        &format!(
            "released {text}; isolated now: {}",
            match status.get("isolated").map(String::as_str) {
                Some("") | None => "none",
                Some(s) => s,
            }
        ),
    );
    Ok(())
}

/// `lincell status`.
pub fn status(a: StatusArgs) -> Result<()> {
    let m = Module::open()?;
    let status = m.status().map_err(|e| Error::io("reading status", e))?;
    let get = |k: &str| match status.get(k).map(String::as_str) {
        Some("") | None => "none".to_string(),
        Some(v) => v.to_string(),
    };
    println!("online:        {}", get("online"));
    println!("isolated:      {}", get("isolated"));
    println!("offline:       {}", get("offline"));
    println!("housekeeping:  {}", get("housekeeping"));
    for r in m.read("isolate").unwrap_or_default().lines() {
        println!("  isolation:   {r}");
    }
    println!(
        "IRQs:          {} moved, {} kernel-managed, {} unmovable, {} failed",
        get("irqs_moved"),
        get("irqs_managed"),
        get("irqs_unmovable"),
        get("irqs_failed")
    );
    println!(
        "kthreads:      {} moved, {} pinned per-CPU, {} failed",
        get("kthreads_moved"),
        get("kthreads_pinned"),
        get("kthreads_failed")
    );
    let parts = cpuset::list();
    if parts.is_empty() {
        println!("partitions:    none");
    }
    for (d, state) in parts {
        println!("partition:     {} ({state})", d.display());
    }
    println!("sampler:       {}", get("sampler"));
    let last = m.read("last_error").unwrap_or_default();
    if !last.trim().is_empty() {
        println!("last refusal:  {}", last.trim());
    }
    if a.verbose {
        print!("{}", m.read("irqs").unwrap_or_default());
        print!("{}", m.read("kthreads").unwrap_or_default());
    }
    Ok(())
}

/// `lincell noise`.
pub fn noise(a: NoiseArgs) -> Result<()> {
    let m = Module::open()?;
    let status = m.status().unwrap_or_default();
    let isolated = set_of(&status, "isolated");
    let online = set_of(&status, "online");
    let housekeeping = set_of(&status, "housekeeping");
    let cpus = match a.cpus {
        Some(c) => c,
        None if isolated.is_empty() => online,
        None => {
            let mut c = isolated.intersection(&online);
            if let Some(h) = housekeeping.first() {
                c.insert(h);
            }
            c
        }
    };
    for (file, value) in [
        ("sampler/cpus", cpus.to_string()),
        ("sampler/duration_ms", a.duration_ms.to_string()),
        ("sampler/threshold_ns", a.threshold_ns.to_string()),
    ] {
        request(&m, file, &value, file)?;
    }
    let load = if a.load {
        let hk: Vec<u32> = housekeeping.iter().collect();
        if hk.is_empty() {
            return Err(Error::Usage("--load: no housekeeping CPU to load".into()));
        }
        let l = load::Load::start(&hk).map_err(|e| Error::io("starting the load", e))?;
        let n = hk.len();
        eprintln!(
            "load: {n} busy + {n} timer threads and a ping-pong pair on housekeeping CPUs {housekeeping}"
        );
        // Let the load settle before measuring.
        thread::sleep(Duration::from_millis(200));
        Some(l)
    } else {
        None
    };
    eprintln!(
        "measuring CPUs {cpus} for {} ms (threshold {} ns)...",
        a.duration_ms, a.threshold_ns
    );
    request(&m, "sampler/control", "start", "starting the sampler")?;
    let deadline = Instant::now() + Duration::from_millis(a.duration_ms) + Duration::from_secs(60);
    loop {
        let state = m.read("sampler/control").unwrap_or_default();
        if matches!(state.trim(), "done" | "stopped") {
            break;
        }
        if Instant::now() > deadline {
            let _ = m.write("sampler/control", "stop");
            eprintln!("lincell: the sampler did not finish in time; stopped it");
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    drop(load);
    let text = m
        .read("sampler/results")
        .map_err(|e| Error::io("reading results", e))?;
    if a.raw {
        print!("{text}");
        return Ok(());
    }
    let r = results::parse(&text)?;
    let role = |c: u32| {
        if isolated.contains(c) {
            "isolated".to_string()
        } else if housekeeping.contains(c) {
            "housekeeping".to_string()
        } else {
            "other".to_string()
        }
    };
    print!("{}", results::table(&r, role, a.hist));
    // The headline figure: isolated against housekeeping, same run.
    let worst = |want: bool| {
        r.cpus
            .iter()
            .filter(|c| isolated.contains(c.cpu) == want)
            .max_by_key(|c| c.noise_per_sec_ns)
            .cloned()
    };
    if let (Some(i), Some(h)) = (worst(true), worst(false)) {
        println!(
            "housekeeping/isolated: noise per second {} (CPU {} vs {}), OS noise per second {}, max gap {}",
            results::ratio(h.noise_per_sec_ns, i.noise_per_sec_ns),
            h.cpu,
            i.cpu,
            results::ratio(h.os_noise_per_sec_ns(), i.os_noise_per_sec_ns()),
            results::ratio(h.max_gap_ns, i.max_gap_ns),
        );
        println!("(os: time in interrupt handlers and other tasks, from the kernel's accounting; hw: the rest of the noise, i.e. SMI or hypervisor)");
    }
    Ok(())
}
