// SPDX-License-Identifier: GPL-2.0

//! `lincell isolate | release | status | noise`: cpu_isolate.ko from the
//! command line.
//!
//! - [`module`]: the sysfs client (errno names, the module's messages);
//! - [`cpuset`]: the cgroup v2 isolated partition that goes with an
//!   isolation;
//! - [`load`]: the load generator for `noise --load`;
//! - [`results`]: the sampler's results format and the table.

mod cpuset;
mod load;
mod module;
mod results;

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use lincell_shared::cpu_isolate::cpulist;
use lincell_shared::cpu_isolate::cpuset::CpuSet;

use module::Module;

/// Arguments of `lincell isolate`.
#[derive(Args, Debug)]
pub(crate) struct IsolateArgs {
    /// CPUs to isolate, as a cpulist (`2-3`, `2-3,6`).
    cpus: String,
    /// Offline hand-off: also take the CPUs offline (brought back on release).
    #[arg(long)]
    offline: bool,
    /// Do not create a cgroup v2 cpuset isolated partition for the CPUs.
    #[arg(long)]
    no_cpuset: bool,
}

/// Arguments of `lincell release`.
#[derive(Args, Debug)]
pub(crate) struct ReleaseArgs {
    /// CPUs of one earlier isolation (exactly as isolated), or `all`.
    cpus: String,
}

/// Arguments of `lincell status`.
#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    /// Also list every interrupt and kernel thread the module moved.
    #[arg(long, short)]
    verbose: bool,
}

/// Arguments of `lincell noise`.
#[derive(Args, Debug)]
pub(crate) struct NoiseArgs {
    /// CPUs to measure (default: the isolated CPUs and the first
    /// housekeeping CPU; every online CPU if nothing is isolated).
    #[arg(long)]
    cpus: Option<String>,
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

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("lincell: {msg}");
    ExitCode::from(2)
}

fn parse_cpus(text: &str) -> Result<CpuSet, String> {
    cpulist::parse(text.as_bytes()).map_err(|e| format!("{text:?}: {e}"))
}

fn set_of(status: &std::collections::BTreeMap<String, String>, key: &str) -> CpuSet {
    status
        .get(key)
        .and_then(|v| cpulist::parse(v.as_bytes()).ok())
        .unwrap_or_default()
}

/// `lincell isolate`.
pub(crate) fn isolate(a: IsolateArgs) -> ExitCode {
    let cpus = match parse_cpus(&a.cpus) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let m = match Module::open() {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let text = format!("{cpus}{}", if a.offline { " offline" } else { "" });
    if let Err(e) = m.write("isolate", &text) {
        eprintln!("lincell: isolate {text}: {e}");
        return ExitCode::from(1);
    }
    let status = m.status().unwrap_or_default();
    let get = |k: &str| status.get(k).cloned().unwrap_or_default();
    println!(
        "isolated {cpus}{}: {} IRQs moved ({} kernel-managed and {} unmovable stay), {} kernel threads moved ({} per-CPU threads pinned)",
        if a.offline { " and took them offline" } else { "" },
        get("irqs_moved"),
        get("irqs_managed"),
        get("irqs_unmovable"),
        get("kthreads_moved"),
        get("kthreads_pinned"),
    );
    if a.offline {
        println!("cpuset partition: not created: offline CPUs cannot belong to a partition (they are handed to another OS)");
    } else if a.no_cpuset {
        println!("cpuset partition: not created (--no-cpuset): user tasks and unbound workqueues may still run on {cpus}");
    } else {
        match cpuset::create(&cpus.to_string()) {
            cpuset::Outcome::Created { path, isolated } => {
                println!("cpuset partition: {} (isolated; kernel reports cpuset.cpus.isolated={isolated})", path.display())
            }
            cpuset::Outcome::Skipped(why) => println!(
                "cpuset partition: not created: {why}; user tasks and unbound workqueues may still run on {cpus}"
            ),
        }
    }
    ExitCode::SUCCESS
}

/// `lincell release`.
pub(crate) fn release(a: ReleaseArgs) -> ExitCode {
    let m = match Module::open() {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let (text, which) = if a.cpus.trim() == "all" {
        ("all".to_string(), None)
    } else {
        match parse_cpus(&a.cpus) {
            Ok(c) => (c.to_string(), Some(c.to_string())),
            Err(e) => return fail(e),
        }
    };
    // Last in, first out: the partition was created after the module
    // isolated, so it goes first and the module restores its snapshot.
    match cpuset::remove(which.as_deref()) {
        Ok(dirs) => {
            for d in dirs {
                println!("cpuset partition {} removed", d.display());
            }
        }
        Err(e) => eprintln!("lincell: warning: removing the cpuset partition: {e}"),
    }
    if let Err(e) = m.write("release", &text) {
        eprintln!("lincell: release {text}: {e}");
        return ExitCode::from(1);
    }
    let status = m.status().unwrap_or_default();
    println!(
        "released {text}; isolated now: {}",
        match status.get("isolated").map(String::as_str) {
            Some("") | None => "none",
            Some(s) => s,
        }
    );
    ExitCode::SUCCESS
}

/// `lincell status`.
pub(crate) fn status(a: StatusArgs) -> ExitCode {
    let m = match Module::open() {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let status = match m.status() {
        Ok(s) => s,
        Err(e) => return fail(format!("reading status: {e}")),
    };
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
    ExitCode::SUCCESS
}

/// `lincell noise`.
pub(crate) fn noise(a: NoiseArgs) -> ExitCode {
    let m = match Module::open() {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let status = m.status().unwrap_or_default();
    let isolated = set_of(&status, "isolated");
    let online = set_of(&status, "online");
    let housekeeping = set_of(&status, "housekeeping");
    let cpus = match &a.cpus {
        Some(t) => match parse_cpus(t) {
            Ok(c) => c,
            Err(e) => return fail(e),
        },
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
        if let Err(e) = m.write(file, &value) {
            return fail(format!("{file}: {e}"));
        }
    }
    let load = if a.load {
        let hk: Vec<u32> = housekeeping.iter().collect();
        if hk.is_empty() {
            return fail("--load: no housekeeping CPU to load");
        }
        match load::Load::start(&hk) {
            Ok(l) => {
                let n = hk.len();
                eprintln!(
                    "load: {n} busy + {n} timer threads and a ping-pong pair on housekeeping CPUs {housekeeping}"
                );
                // Let the load settle before measuring.
                thread::sleep(Duration::from_millis(200));
                Some(l)
            }
            Err(e) => return fail(format!("starting the load: {e}")),
        }
    } else {
        None
    };
    eprintln!(
        "measuring CPUs {cpus} for {} ms (threshold {} ns)...",
        a.duration_ms, a.threshold_ns
    );
    if let Err(e) = m.write("sampler/control", "start") {
        return fail(format!("starting the sampler: {e}"));
    }
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
    let text = match m.read("sampler/results") {
        Ok(t) => t,
        Err(e) => return fail(format!("reading results: {e}")),
    };
    if a.raw {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    let r = match results::parse(&text) {
        Ok(r) => r,
        Err(e) => return fail(format!("results: {e}")),
    };
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
    ExitCode::SUCCESS
}
