// SPDX-License-Identifier: GPL-2.0

//! One guest: a virtme-ng boot of the test kernel that runs one command.
//!
//! The guest is a child process group (`vng` → `virtme-run` → `qemu`), so a
//! guest that hangs or never boots is killed as a whole after its time limit
//! and reported as such; nothing it started outlives the harness.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How to boot one guest.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// Short name, used as the guest's hostname and in reports.
    pub name: String,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Memory, in QEMU's syntax (`1G`).
    pub memory: String,
    /// Extra QEMU arguments (devices).
    pub qemu_opts: Vec<String>,
    /// Kernel arguments after [`DEFAULT_KERNEL_ARGS`].
    pub kernel_args: Vec<String>,
    /// Shell command run inside the guest; its exit code is the guest's.
    pub command: String,
    /// Host directories the guest may write (same path inside).
    pub rw_dirs: Vec<PathBuf>,
    /// Echo the guest's console to our stderr, prefixed with its name.
    pub echo: bool,
}

/// How a guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The command in the guest exited with this code.
    Code(i32),
    /// The time limit passed; the guest was killed.
    TimedOut(Duration),
    /// The launcher died from a signal (e.g. someone killed QEMU).
    Signal(i32),
}

impl Exit {
    /// A sentence for reports.
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(0) => "exited normally".into(),
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::TimedOut(d) => format!("was killed after the {} s time limit", d.as_secs()),
            Exit::Signal(s) => format!("was killed by signal {s}"),
        }
    }
}

/// Result of one guest run.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Everything the launcher printed (console and command output).
    pub console: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// The `vng` program to run: `LINCELL_VNG` if set, else the one in the
/// project's venv (`$LINCELL_CACHE/venv`, default `~/.cache/lincell/venv`,
/// where `make setup` installs it), else `vng` from `PATH`.
fn vng_program() -> String {
    if let Ok(p) = std::env::var("LINCELL_VNG") {
        return p;
    }
    let cache = std::env::var_os("LINCELL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lincell")));
    match cache.map(|c| c.join("venv/bin/vng")) {
        Some(p) if p.exists() => p.display().to_string(),
        _ => "vng".into(),
    }
}

/// Kernel arguments every guest boots with:
/// - SLUB's red zones, poisoning and sanity checks (`slub_debug=FZP`;
///   CONFIG_SLUB_DEBUG is in the test kernel), so heap corruption becomes a
///   splat the harness fails on;
/// - KUnit runs lincell's suites only (`lincell_*`), not the kernel's own
///   built-in ones at every boot: they cost boot time under TCG, and one of
///   7.3's (`rust_spinlock_irq_condvar`) asserts that `SpinLockIrq` disables
///   interrupts, which it does not on PREEMPT_RT, so it WARNs at every boot
///   of the RT test kernel. The filter applies to module suites too, so
///   every lincell suite still runs when its module loads.
pub const DEFAULT_KERNEL_ARGS: &[&str] =
    &["slub_debug=FZP", "kunit.filter_glob=lincell_*", ROOT_FLAGS];

/// The 9p root filesystem's mount options: virtme-ng 1.42's own plus
/// `cache=loose` (the kernel takes the last `rootflags=`). Without a cache
/// every lookup is a round trip to QEMU's 9p server, about 5 ms under TCG:
/// `systemd-tmpfiles` alone, run by virtme-ng-init at every boot, made 2,900
/// such calls and took 17 s. The root is the host's, read-only, and does not
/// change under a test; the directories guests write (`--rwdir`) are
/// separate 9p mounts and stay uncached.
const ROOT_FLAGS: &str =
    "rootflags=version=9p2000.L,trans=virtio,access=any,msize=524288,cache=loose";

/// KVM hangs on the machines this project is developed on, so guests use TCG
/// unless the user asks for KVM with `LINCELL_KVM=1` and `/dev/kvm` is usable.
pub fn use_kvm() -> bool {
    std::env::var("LINCELL_KVM").is_ok_and(|v| v == "1")
        && std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
}

/// Builds the launcher command line for `spec` booting the kernel in `kdir`.
pub fn command_line(kdir: &Path, spec: &GuestSpec) -> Vec<String> {
    let mut args = vec![
        "--run".to_string(),
        kdir.display().to_string(),
        // microvm has no PCI bus; ivshmem is a PCI device.
        "--disable-microvm".into(),
        "--name".into(),
        spec.name.clone(),
        "--cpus".into(),
        spec.cpus.to_string(),
        "--memory".into(),
        spec.memory.clone(),
    ];
    if !use_kvm() {
        args.push("--disable-kvm".into());
    }
    for d in &spec.rw_dirs {
        args.push(format!("--rwdir={}", d.display()));
    }
    if !spec.qemu_opts.is_empty() {
        args.push(format!("--qemu-opts={}", spec.qemu_opts.join(" ")));
    }
    for a in DEFAULT_KERNEL_ARGS
        .iter()
        .copied()
        .chain(spec.kernel_args.iter().map(String::as_str))
    {
        args.push(format!("--append={a}"));
    }
    args.push("--exec".into());
    args.push(spec.command.clone());
    args
}

/// A guest that is running.
pub struct Running {
    name: String,
    child: Child,
    start: Instant,
    console: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// Boots a guest; returns at once.
///
/// Launches are spaced [`LAUNCH_SPACING`] apart, also across the threads of
/// a parallel check: virtme-ng prepares shared state in the kernel's build
/// directory (`.virtme_mods`) at every start, and in the first parallel run
/// one launcher died at once without a word (cause not proven; the retry in
/// `scenario` covers it, the spacing makes two starts in one instant
/// impossible).
pub fn spawn(kdir: &Path, spec: &GuestSpec) -> io::Result<Running> {
    static LAST_LAUNCH: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST_LAUNCH.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = last.map(|t| LAUNCH_SPACING.saturating_sub(t.elapsed())) {
            thread::sleep(wait);
        }
        *last = Some(Instant::now());
    }
    spawn_program(&vng_program(), &command_line(kdir, spec), spec)
}

/// Time between two guest launches (see [`spawn`]).
const LAUNCH_SPACING: Duration = Duration::from_secs(2);

/// Starts `program` with `args` as the launcher of the guest `spec`.
pub fn spawn_program(program: &str, args: &[String], spec: &GuestSpec) -> io::Result<Running> {
    let mut cmd = Command::new(program);
    // vng runs its helpers (virtme-run, ...) from PATH: put its own
    // directory (the venv's bin) first.
    if let Some(dir) = Path::new(program)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a kill reaches QEMU too.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start {program}: {e}")))?;
    let console = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    let streams: [Option<Box<dyn io::Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn io::Read + Send>),
    ];
    for stream in streams.into_iter().flatten() {
        let console = Arc::clone(&console);
        let prefix = spec.echo.then(|| format!("[{}] ", spec.name));
        readers.push(thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = &prefix {
                    let _ = writeln!(io::stderr(), "{p}{line}");
                }
                if let Ok(mut c) = console.lock() {
                    c.push_str(&line);
                    c.push('\n');
                }
            }
        }));
    }
    Ok(Running {
        name: spec.name.clone(),
        child,
        start: Instant::now(),
        console,
        readers,
    })
}

impl Running {
    /// The guest's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Kills the guest's whole process group.
    pub fn kill(&mut self) {
        // SAFETY: kill(2) with a negative pid signals the process group we
        // created with process_group(0); it has no memory-safety preconditions.
        // CAST: pids fit in pid_t.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
    }

    /// Waits for the guest to end, killing it once `deadline` has passed.
    pub fn wait(mut self, deadline: Instant) -> Outcome {
        let exit = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    break match (status.code(), status.signal()) {
                        (Some(c), _) => Exit::Code(c),
                        (None, Some(s)) => Exit::Signal(s),
                        (None, None) => Exit::Code(-1),
                    };
                }
                Ok(None) if Instant::now() >= deadline => {
                    self.kill();
                    let _ = self.child.wait();
                    break Exit::TimedOut(deadline.saturating_duration_since(self.start));
                }
                Ok(None) => thread::sleep(Duration::from_millis(100)),
                Err(_) => {
                    self.kill();
                    let _ = self.child.wait();
                    break Exit::Code(-1);
                }
            }
        };
        // Whatever the launcher forked may still hold the pipes; make sure the
        // group is gone so the readers see EOF.
        self.kill();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let console = self.console.lock().map(|c| c.clone()).unwrap_or_default();
        Outcome {
            exit,
            console,
            elapsed: self.start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GuestSpec {
        GuestSpec {
            name: "a".into(),
            cpus: 2,
            memory: "1G".into(),
            qemu_opts: vec!["-device ivshmem-plain,memdev=hm".into()],
            kernel_args: vec!["nohz_full=1".into()],
            command: "true".into(),
            rw_dirs: vec![PathBuf::from("/tmp/out")],
            echo: false,
        }
    }

    /// A stand-in launcher: `sh -c SCRIPT`.
    fn fake(script: &str, limit: Duration) -> Outcome {
        let args = ["-c".to_string(), script.to_string()];
        spawn_program("sh", &args, &spec())
            .unwrap()
            .wait(Instant::now() + limit)
    }

    #[test]
    fn hanging_guest_is_killed_at_the_deadline() {
        let args = ["-c".to_string(), "echo booting; sleep 600".to_string()];
        let running = spawn_program("sh", &args, &spec()).unwrap();
        // However loaded the machine, the launcher gets to print first.
        let until = Instant::now() + Duration::from_secs(30);
        while !running.console.lock().unwrap().contains("booting") && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = running.wait(Instant::now() + Duration::from_millis(300));
        assert!(matches!(o.exit, Exit::TimedOut(_)), "{:?}", o.exit);
        assert!(o.elapsed < Duration::from_secs(40), "{:?}", o.elapsed);
        assert!(o.console.contains("booting"));
        assert!(o.exit.describe().contains("time limit"));
    }

    #[test]
    fn whole_process_group_dies_with_the_guest() {
        let dir = std::env::temp_dir().join(format!("lincell-vm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        // Like vng -> qemu: the launcher's child keeps running.
        let script = format!(
            "sleep 600 & echo $! > {}.tmp && mv {0}.tmp {0}; wait",
            pidfile.display()
        );
        let args = ["-c".to_string(), script];
        let running = spawn_program("sh", &args, &spec()).unwrap();
        // Wait (bounded) until the grandchild exists, however loaded the
        // machine is, then let the deadline pass at once.
        let until = Instant::now() + Duration::from_secs(30);
        while !pidfile.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = std::fs::read_to_string(&pidfile).expect("the fake launcher started its child");
        let o = running.wait(Instant::now());
        assert!(matches!(o.exit, Exit::TimedOut(_)));
        // SIGKILL lands asynchronously: within a few seconds the grandchild
        // is gone, or a zombie waiting for its new parent to reap it.
        let dead = || {
            std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
                .map_or(true, |s| s.contains(") Z ") || s.contains(") X "))
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !dead() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(dead(), "grandchild {pid} survived");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn killed_guest_reports_the_signal() {
        let o = fake("echo up; kill -9 $$", Duration::from_secs(30));
        assert_eq!(o.exit, Exit::Signal(9));
        assert!(o.exit.describe().contains("signal 9"));
    }

    #[test]
    fn exit_code_is_passed_through() {
        let o = fake("exit 3", Duration::from_secs(30));
        assert_eq!(o.exit, Exit::Code(3));
    }

    #[test]
    fn command_line_has_tcg_pci_and_devices() {
        let spec = spec();
        let args = command_line(Path::new("/k"), &spec);
        assert_eq!(&args[..2], ["--run", "/k"]);
        assert!(args.contains(&"--disable-microvm".to_string()));
        if !use_kvm() {
            assert!(args.contains(&"--disable-kvm".to_string()));
        }
        assert!(args.contains(&"--rwdir=/tmp/out".to_string()));
        assert!(args.contains(&"--qemu-opts=-device ivshmem-plain,memdev=hm".to_string()));
        assert!(args.contains(&"--append=slub_debug=FZP".to_string()));
        assert!(args.contains(&"--append=nohz_full=1".to_string()));
        assert_eq!(args[args.len() - 2..], ["--exec", "true"]);
    }
}
