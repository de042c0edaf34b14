// SPDX-License-Identifier: GPL-2.0

//! `lincell-vm`: boot lincell's test kernel in virtme-ng guests, run tests,
//! count results.
//!
//! Guests always run under TCG here (KVM hangs on the machines this project
//! is built on); `LINCELL_KVM=1` opts into KVM where it works.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use lincell_vm::{bench, check, guest, scenario};

/// Boot lincell's test kernel in QEMU guests (virtme-ng, TCG) and run tests.
///
/// Guests see the host's root filesystem read-only, so the modules built in
/// the repository and the guest test scripts are used in place. The kernel
/// comes from the cached build that `make` prepares (`--kdir`, or the
/// LINCELL_KDIR environment variable).
#[derive(Parser, Debug)]
#[command(name = "lincell-vm", version, about, long_about)]
struct Cli {
    /// Kernel build directory (the O= directory holding arch/*/boot).
    #[arg(long, env = "LINCELL_KDIR", global = true)]
    kdir: Option<PathBuf>,

    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Boot one guest and run a shell command in it; exit with its status.
    ///
    /// Example: lincell-vm run --ivshmem-plain 1M -- 'insmod drivers/ivshmem/ivshmem.ko; dmesg | tail'
    Run {
        /// vCPUs.
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Guest memory (QEMU syntax).
        #[arg(long, default_value = "1G")]
        memory: String,
        /// Kill the guest after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Attach an ivshmem-plain device backed by a fresh file of this size (e.g. 1M).
        #[arg(long, value_name = "SIZE")]
        ivshmem_plain: Option<String>,
        /// Extra QEMU arguments (repeatable).
        #[arg(long = "qemu-opts", value_name = "ARGS")]
        qemu_opts: Vec<String>,
        /// Host directory the guest may write (repeatable).
        #[arg(long = "rwdir", value_name = "DIR")]
        rw_dirs: Vec<PathBuf>,
        /// Boot with QEMU 11 (scripts/qemu11.sh, installed by `make setup`;
        /// it has vfio-user-pci) instead of the system's QEMU.
        #[arg(long)]
        qemu11: bool,
        /// The command to run in the guest.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Run one scenario script (a guest test or a demo) with its devices and
    /// host peer, showing the guests' consoles; exit 0 if every guest's
    /// script and the host peer succeeded.
    ///
    /// The script's `# lincell-vm:` header says what to boot (see
    /// virtme/src/scenario.rs); `make demo` runs samples/demo.sh this way.
    Scenario {
        /// The script.
        script: PathBuf,
        /// For a script with `revisions=`: the ivshmem revision to run it on
        /// (v1: its ivshmem-doorbell device; v2: an ivshmem 2.0 device).
        #[arg(long, default_value_t = scenario::Revision::V1)]
        revision: scenario::Revision,
    },
    /// Run every test layer (host, KUnit, guest) and print `N passed, N failed`.
    Check {
        /// Skip the host `cargo test` layer.
        #[arg(long)]
        no_host: bool,
        #[command(flatten)]
        scripts: Scripts,
        /// Also run the guest tests whose `arch=` names arm64 on QEMU's
        /// arm64 `virt` board, booting the arm64 kernel built in this
        /// directory (its initramfs built first by scripts/arm64-board.sh).
        /// Their names start with `guest/arm64/`; `--filter arm64` selects
        /// them all.
        #[arg(long, value_name = "KDIR")]
        arm64: Option<PathBuf>,
        /// Guest boots run at once. Each TCG guest keeps about one host
        /// core busy; the default is the number of host CPUs.
        #[arg(long, short, env = "LINCELL_JOBS")]
        jobs: Option<usize>,
    },
    /// Run the benchmarks (bench/*.sh scenarios), one at a time, and print
    /// their results as tables, with the ratios against the baseline each
    /// measures in the same run (see virtme/src/bench.rs).
    ///
    /// The benchmarks' guests and host peers use release builds of the
    /// lincell CLI, built first. Results also go to <work>/results.txt,
    /// one KEY=VALUE per line; each benchmark's bar chart (baselines beside
    /// the project's figures) to target/bench/NAME.svg, and the .json files
    /// its guests wrote (fio's raw output) to target/bench/NAME/.
    Bench {
        #[command(flatten)]
        scripts: Scripts,
    },
}

/// Which scripts `check` and `bench` run, and how.
#[derive(clap::Args, Debug)]
struct Scripts {
    /// Run only the scripts whose name contains this (the arm64 board's
    /// are named `arm64/NAME`, the ivshmem 2.0 runs of `revisions=` scripts
    /// `v2/NAME`).
    #[arg(long)]
    filter: Option<String>,
    /// Echo guest consoles to stderr while they run.
    #[arg(long, short)]
    verbose: bool,
    /// Scratch directory for guest output (default: target/lincell-vm,
    /// for bench target/lincell-vm/bench).
    #[arg(long)]
    work: Option<PathBuf>,
}

/// The `*.sh` files of `dir` whose file name contains `filter` (all without
/// one), sorted.
fn scripts_in(dir: &Path, filter: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .filter(|p| {
            filter.is_none_or(|f| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(f))
            })
        })
        .collect();
    scripts.sort();
    Ok(scripts)
}

/// The scripts among `scripts` that run on the guest kind `arch`.
fn for_arch(scripts: &[PathBuf], arch: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for s in scripts {
        let d = scenario::read_directives(s).map_err(|e| e.to_string())?;
        if d.arch.iter().any(|a| a == arch) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn repo_root() -> PathBuf {
    // The binary lives in <root>/target/<profile>/; the manifest dir is
    // <root>/virtme. Prefer the latter, it survives moving the binary.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn require_kdir(kdir: Option<PathBuf>) -> Result<PathBuf, String> {
    let kdir = kdir.ok_or("no kernel: pass --kdir or set LINCELL_KDIR (make does)")?;
    if !kdir.join("arch").exists() {
        return Err(format!(
            "{} is not a kernel build directory",
            kdir.display()
        ));
    }
    Ok(kdir)
}

/// A benchmark script's first comment line after the SPDX tag: what it
/// measures.
fn script_summary(script: &Path) -> String {
    std::fs::read_to_string(script)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .find(|l| !l.starts_with("SPDX") && !l.starts_with("lincell-vm:"))
        .unwrap_or("")
        .to_string()
}

/// The failed cases, the closing `N passed, N failed` line, and the exit
/// status it means.
fn finish(totals: &check::Totals) -> ExitCode {
    if !totals.failures.is_empty() {
        println!("--- failed:");
        for f in &totals.failures {
            println!("  {f}");
        }
    }
    println!("{}", totals.summary());
    if totals.failed == 0 && totals.passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lincell-vm: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, String> {
    let root = repo_root();
    match cli.command {
        Cmd::Run {
            cpus,
            memory,
            timeout,
            ivshmem_plain,
            mut qemu_opts,
            rw_dirs,
            qemu11,
            command,
        } => {
            let kdir = require_kdir(cli.kdir)?;
            let scratch = root.join("target/lincell-vm/run");
            std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
            if let Some(size) = ivshmem_plain {
                let size = scenario::parse_size(&size)?;
                let mem = scratch.join("ivshmem-plain.mem");
                std::fs::File::create(&mem)
                    .and_then(|f| f.set_len(size))
                    .map_err(|e| format!("{}: {e}", mem.display()))?;
                qemu_opts.push(format!(
                    "-object memory-backend-file,size={size},share=on,mem-path={},id=lincellhm -device ivshmem-plain,memdev=lincellhm",
                    mem.display()
                ));
            }
            let spec = guest::GuestSpec {
                name: "lincell".into(),
                cpus,
                memory,
                qemu_opts,
                qemu: if qemu11 {
                    Some(guest::qemu11(&root).map_err(|e| e.to_string())?)
                } else {
                    None
                },
                kernel_args: Vec::new(),
                command: command.join(" "),
                rw_dirs,
                echo: true,
            };
            let g = guest::spawn(&kdir, &spec).map_err(|e| e.to_string())?;
            let o = g.wait(Instant::now() + Duration::from_secs(timeout));
            match o.exit {
                guest::Exit::Code(c) => Ok(ExitCode::from(u8::try_from(c).unwrap_or(1))),
                other => Err(format!("the guest {}", other.describe())),
            }
        }
        Cmd::Scenario { script, revision } => {
            let runner = scenario::Runner {
                kdir: require_kdir(cli.kdir)?,
                root: root.clone(),
                work: root.join("target/lincell-vm/scenario"),
                echo: true,
                kind: guest::Kind::Vng,
                revision: scenario::Revision::V1,
            }
            .for_revision(revision);
            let results = runner.run(&script).map_err(|e| e.to_string())?;
            let mut ok = true;
            for r in &results {
                if r.name == "host" && !r.tap.is_empty() {
                    println!("--- host peer output:\n{}", r.tap.trim_end());
                }
                if r.script_exit != Some(0) {
                    ok = false;
                    eprintln!("lincell-vm: {} {}", r.name, r.exit.describe());
                }
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::Check {
            no_host,
            scripts:
                Scripts {
                    filter,
                    verbose,
                    work,
                },
            arm64,
            jobs,
        } => {
            let kdir = require_kdir(cli.kdir)?;
            let work = work.unwrap_or_else(|| root.join("target/lincell-vm"));
            let mut totals = check::Totals::default();
            if !no_host {
                check::host_tests(&root, &mut totals);
                check::style_gates(&root, &mut totals);
            }
            let runner = scenario::Runner {
                kdir,
                root: root.clone(),
                work,
                echo: verbose,
                kind: guest::Kind::Vng,
                revision: scenario::Revision::V1,
            };
            let scripts = scripts_in(&root.join("tests/guest"), None)?;
            let matches = |prefix: &str, p: &PathBuf| {
                filter
                    .as_deref()
                    .is_none_or(|f| format!("{prefix}{}", scenario::script_name(p)).contains(f))
            };
            let mut work_items = Vec::new();
            // The arm64 board first: it builds before it boots, and its
            // boots come first once it is built (they are the longest).
            if let Some(kdir64) = arm64 {
                let board: Vec<PathBuf> = for_arch(&scripts, "arm64")?
                    .into_iter()
                    .filter(|p| matches("arm64/", p))
                    .collect();
                if !board.is_empty() {
                    let boots = scenario::group_by_boot(&board).map_err(|e| e.to_string())?;
                    work_items.push(check::Job::BuildArm64(check::Arm64 {
                        kdir: require_kdir(Some(kdir64))?,
                        boots,
                    }));
                }
            }
            let x86 = for_arch(&scripts, "x86_64")?;
            work_items.extend(check::x86_jobs(&x86, filter.as_deref()).map_err(|e| e.to_string())?);
            let parallel =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            println!(
                "--- guest: {} boots and builds, {parallel} at a time",
                work_items.len()
            );
            check::run_jobs(&runner, work_items, parallel, |report| {
                report.emit(&mut totals)
            });
            Ok(finish(&totals))
        }
        Cmd::Bench {
            scripts:
                Scripts {
                    filter,
                    verbose,
                    work,
                },
        } => {
            let runner = scenario::Runner {
                kdir: require_kdir(cli.kdir)?,
                root: root.clone(),
                work: work.unwrap_or_else(|| root.join("target/lincell-vm/bench")),
                echo: verbose,
                kind: guest::Kind::Vng,
                revision: scenario::Revision::V1,
            };
            println!("==> building lincell (release): a debug build would measure the debug build");
            let built = std::process::Command::new("cargo")
                .args(["build", "--release", "--quiet", "-p", "lincell"])
                .current_dir(&root)
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !built.success() {
                return Err("cargo build --release -p lincell failed".into());
            }
            let mut totals = check::Totals::default();
            let mut figures = String::new();
            for script in scripts_in(&root.join("bench"), None)? {
                let d = scenario::read_directives(&script).map_err(|e| e.to_string())?;
                let about = script_summary(&script);
                // A `revisions=` benchmark runs on each revision, one after
                // the other; the v2 run's figures are named `v2/NAME`.
                for rev in d.runs() {
                    let script_name = scenario::script_name(&script);
                    let name = format!("{}{script_name}", rev.prefix());
                    if filter.as_deref().is_some_and(|f| !name.contains(f)) {
                        continue;
                    }
                    let runner = runner.for_revision(rev);
                    println!("==> {name}: {about} (at most {} s)", d.timeout.as_secs());
                    let start = Instant::now();
                    let report = check::guest_boot(&runner, std::slice::from_ref(&script));
                    for c in &report.cases {
                        totals.record(c);
                    }
                    // Figures come from the guests, in order, and after them
                    // the host peer.
                    let dir = runner.work.join(&script_name);
                    let tap = d
                        .guests
                        .iter()
                        .map(|g| dir.join(g))
                        .chain([dir.join("host")])
                        .map(|d| std::fs::read_to_string(d.join("tap.txt")).unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("\n");
                    let groups = bench::tables(&bench::parse(&tap), &d.ratio);
                    println!(
                        "\n{name} ({:.0} s):\n{}",
                        start.elapsed().as_secs_f64(),
                        bench::render(&groups)
                    );
                    figures.push_str(&bench::key_values(&name, &groups));
                    // The chart and the guests' raw JSON (fio's), under
                    // target/bench/.
                    let out = root.join("target/bench");
                    let flat = name.replace('/', "-");
                    let chart = out.join(format!("{flat}.svg"));
                    std::fs::create_dir_all(&out)
                        .and_then(|()| {
                            std::fs::write(
                                &chart,
                                bench::svg(&format!("{name}: {about}"), &groups, &d.ratio),
                            )
                        })
                        .map_err(|e| format!("{}: {e}", chart.display()))?;
                    println!("--- chart: {}", chart.display());
                    for g in &d.guests {
                        let raw = out.join(&flat);
                        for json in std::fs::read_dir(dir.join(g))
                            .into_iter()
                            .flatten()
                            .flatten()
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "json"))
                        {
                            let file = json
                                .file_name()
                                .map(|f| f.to_string_lossy().into_owned())
                                .unwrap_or_default();
                            let to = raw.join(format!("{g}-{file}"));
                            std::fs::create_dir_all(&raw)
                                .and_then(|()| std::fs::copy(&json, &to))
                                .map_err(|e| format!("{}: {e}", to.display()))?;
                            println!("--- raw: {}", to.display());
                        }
                    }
                }
            }
            let file = runner.work.join("results.txt");
            std::fs::create_dir_all(&runner.work)
                .and_then(|()| std::fs::write(&file, &figures))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!("--- results: {}", file.display());
            Ok(finish(&totals))
        }
    }
}
