// SPDX-License-Identifier: GPL-2.0

//! `lincell-vm`: boot lincell's test kernel in virtme-ng guests, run tests,
//! count results.
//!
//! Guests always run under TCG here (KVM hangs on the machines this project
//! is built on); `LINCELL_KVM=1` opts into KVM where it works.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use lincell_vm::{check, guest, scenario};

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
    },
    /// Run every test layer (host, KUnit, guest) and print `N passed, N failed`.
    Check {
        /// Skip the host `cargo test` layer.
        #[arg(long)]
        no_host: bool,
        /// Run only guest tests whose file name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Echo guest consoles to stderr while they run.
        #[arg(long, short)]
        verbose: bool,
        /// Scratch directory for guest output (default: target/lincell-vm).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Also run an external guest leg, `NAME=COMMAND` (repeatable): the
        /// command runs under `sh -c` with `LINCELL_OUT` set to its output
        /// directory, where it leaves `tap.txt` (the guest's TAP or KTAP) and
        /// `dmesg.txt`; its exit status is the guest script's. Counted like a
        /// guest test named NAME (`make check` runs the arm64 leg this way).
        #[arg(long, value_name = "NAME=COMMAND")]
        external: Vec<String>,
        /// Guest boots (and external legs) run at once. Each TCG guest keeps
        /// about one host core busy; the default is the number of host CPUs.
        #[arg(long, short, env = "LINCELL_JOBS")]
        jobs: Option<usize>,
    },
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
        Cmd::Scenario { script } => {
            let runner = scenario::Runner {
                kdir: require_kdir(cli.kdir)?,
                root: root.clone(),
                work: root.join("target/lincell-vm/scenario"),
                echo: true,
            };
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
            filter,
            verbose,
            work,
            external,
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
            };
            let mut scripts: Vec<PathBuf> = std::fs::read_dir(root.join("tests/guest"))
                .map_err(|e| format!("tests/guest: {e}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sh"))
                .filter(|p| {
                    filter.as_deref().is_none_or(|f| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().contains(f))
                    })
                })
                .collect();
            scripts.sort();
            // External legs first: they build before they boot (the arm64
            // leg cross-compiles), so they are the longest jobs.
            let mut work_items = Vec::new();
            for leg in &external {
                let (name, cmd) = leg
                    .split_once('=')
                    .ok_or_else(|| format!("--external {leg:?}: expected NAME=COMMAND"))?;
                work_items.push(check::Job::External(name.into(), cmd.into()));
            }
            work_items.extend(
                scenario::group_by_boot(&scripts)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(check::Job::Boot),
            );
            let parallel =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            println!(
                "--- guest: {} boots and legs, {parallel} at a time",
                work_items.len()
            );
            check::run_jobs(&runner, work_items, parallel, |report| {
                report.emit(&mut totals)
            });
            if !totals.failures.is_empty() {
                println!("--- failed:");
                for f in &totals.failures {
                    println!("  {f}");
                }
            }
            println!("{}", totals.summary());
            Ok(if totals.failed == 0 && totals.passed > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
