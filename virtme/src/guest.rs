// SPDX-License-Identifier: GPL-2.0

//! One guest: a boot of a test kernel that runs one command.
//!
//! Two kinds ([`Kind`]): an x86_64 virtme-ng guest, which sees the host's
//! root filesystem read-only and writes its results into `--rwdir`
//! directories; and the arm64 board, QEMU's emulated `virt` machine booting
//! a busybox initramfs (`scripts/arm64-board.sh` builds it), which has no
//! file system shared with the host and sends the files it writes for the
//! host over its console instead ([`ConsoleFiles`]).
//!
//! The guest is a child process group (`vng` → `virtme-run` → `qemu`, or
//! `qemu-system-aarch64`), so a guest that hangs or never boots is killed as
//! a whole after its time limit and reported as such; nothing it started
//! outlives the harness.

use std::fs;
use std::io::{self, BufRead as _, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What a guest boots: which kernel, on which machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An x86_64 virtme-ng guest (PC machine, 9p root: the host's).
    Vng,
    /// QEMU's arm64 `virt` board (GICv3 + ITS, PCIe) booting this busybox
    /// initramfs, which holds the modules, the tools and the guest scripts
    /// under `/lincell` (`scripts/arm64-board.sh`).
    Arm64 {
        /// The initramfs.
        initramfs: PathBuf,
    },
}

/// How to boot one guest.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// Short name, used as the guest's hostname and in reports.
    pub name: String,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Memory, in QEMU's syntax (`1G`).
    pub memory: String,
    /// Extra QEMU arguments (devices). A virtme-ng guest's reach QEMU
    /// through a shell (vng runs virtme-run with `sh -c`): an argument with
    /// characters the shell treats specially is quoted for it (see
    /// [`vfio_user_device`]).
    pub qemu_opts: Vec<String>,
    /// The QEMU a virtme-ng guest runs (`vng --qemu`), if not the system's
    /// (Debian 12's 7.2): [`qemu11`] for guests with an ivshmem 2.0 device.
    pub qemu: Option<PathBuf>,
    /// Kernel arguments after [`DEFAULT_KERNEL_ARGS`].
    pub kernel_args: Vec<String>,
    /// Shell command run inside a virtme-ng guest; its exit code is the
    /// guest's. (The arm64 board's initramfs runs what its kernel arguments
    /// say instead.)
    pub command: String,
    /// Host directories the guest may write (same path inside); the arm64
    /// board sends its files over the console into the first one.
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

/// The project's cache, as `scripts/lib.sh` defines it: `LINCELL_CACHE`,
/// else `~/.cache/lincell`.
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("LINCELL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lincell")))
}

/// The `vng` program to run: `LINCELL_VNG` if set, else the one in the
/// project's venv (`$LINCELL_CACHE/venv`, default `~/.cache/lincell/venv`,
/// where `make setup` installs it), else `vng` from `PATH`.
fn vng_program() -> String {
    if let Ok(p) = std::env::var("LINCELL_VNG") {
        return p;
    }
    match cache_dir().map(|c| c.join("venv/bin/vng")) {
        Some(p) if p.exists() => p.display().to_string(),
        _ => "vng".into(),
    }
}

/// The QEMU 11 tree `make setup` builds (`scripts/setup.sh`):
/// `LINCELL_QEMU11` if set, else `$LINCELL_CACHE/qemu-trixie`.
pub fn qemu11_tree() -> Option<PathBuf> {
    std::env::var_os("LINCELL_QEMU11")
        .map(PathBuf::from)
        .or_else(|| cache_dir().map(|c| c.join("qemu-trixie")))
}

/// The QEMU for guests with an ivshmem 2.0 device: QEMU 11 with
/// `vfio-user-pci` (Debian 12's 7.2 has none), run by the wrapper
/// `scripts/qemu11.sh` of the repository at `root` from the tree
/// [`qemu11_tree`].
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] if the tree is not there or not finished
/// (its stamp is written last), telling the user to run `make setup`.
pub fn qemu11(root: &Path) -> io::Result<PathBuf> {
    qemu11_in(root, qemu11_tree())
}

/// [`qemu11`] with the tree at `tree`.
fn qemu11_in(root: &Path, tree: Option<PathBuf>) -> io::Result<PathBuf> {
    let tree = tree.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "cannot find the QEMU 11 tree: neither LINCELL_QEMU11, LINCELL_CACHE nor HOME is set",
        )
    })?;
    if !tree.join(".lincell-qemu-version").is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "ivshmem 2.0 guests need QEMU 11 (vfio-user-pci), and {} holds none: \
                 run `make setup` (it installs it there, about 40 s)",
                tree.display()
            ),
        ));
    }
    Ok(root.join("scripts/qemu11.sh"))
}

/// The QEMU option that attaches a `vfio-user-pci` device served on the
/// UNIX socket `socket`, for [`GuestSpec::qemu_opts`]. Its `socket`
/// property is a structure, which only `-device`'s JSON form can give; the
/// JSON is single-quoted for the shell vng runs QEMU through.
///
/// # Errors
///
/// [`io::ErrorKind::InvalidInput`] for a path the quoting cannot carry
/// (quotes, backslashes, white space, not UTF-8) or one too long for a
/// UNIX socket address.
pub fn vfio_user_device(socket: &Path) -> io::Result<String> {
    let path = socket
        .to_str()
        .filter(|p| !p.contains(['\'', '"', '\\']) && !p.contains(char::is_whitespace))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: a vfio-user socket path may not hold quotes, backslashes or spaces",
                    socket.display()
                ),
            )
        })?;
    check_socket_path(socket)?;
    Ok(format!(
        r#"-device '{{"driver":"vfio-user-pci","socket":{{"type":"unix","path":"{path}"}}}}'"#
    ))
}

/// Longest UNIX socket path: `sun_path` holds 108 bytes with the NUL.
const SUN_PATH_MAX: usize = 107;

/// Fails for a path too long to be a UNIX socket's address (QEMU and the
/// ivshmem server would fail later, with less clear messages).
pub fn check_socket_path(socket: &Path) -> io::Result<()> {
    let len = socket.as_os_str().len();
    if len > SUN_PATH_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: {len} bytes is too long for a UNIX socket path (at most {SUN_PATH_MAX}); \
                 use a shorter --work directory",
                socket.display()
            ),
        ));
    }
    Ok(())
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
pub const DEFAULT_KERNEL_ARGS: &[&str] = &["slub_debug=FZP", "kunit.filter_glob=lincell_*"];

/// The 9p root filesystem's mount options (virtme-ng guests): virtme-ng 1.42's own plus
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
    if let Some(qemu) = &spec.qemu {
        args.push(format!("--qemu={}", qemu.display()));
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
        .chain([ROOT_FLAGS])
        .chain(spec.kernel_args.iter().map(String::as_str))
    {
        args.push(format!("--append={a}"));
    }
    args.push("--exec".into());
    args.push(spec.command.clone());
    args
}

/// The arm64 board's QEMU command line for `spec` (the kernel in `kdir`,
/// `initramfs` as its root). The initramfs's `/init` runs
/// `virtme/guest-run.sh` with the scripts `spec.kernel_args` name
/// (`lincell_run=`, see [`board_run_arg`]), then powers the board off.
pub fn board_command_line(kdir: &Path, initramfs: &Path, spec: &GuestSpec) -> Vec<String> {
    let mut append = vec![
        "console=ttyAMA0".to_string(),
        "rdinit=/init".into(),
        "panic=-1".into(),
        "quiet".into(),
        "loglevel=1".into(),
    ];
    append.extend(DEFAULT_KERNEL_ARGS.iter().map(|a| a.to_string()));
    append.extend(spec.kernel_args.iter().cloned());
    append.push(format!("lincell_guest={}", spec.name));
    let mut args: Vec<String> = [
        "-M",
        "virt,gic-version=3,its=on",
        "-cpu",
        "cortex-a57",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ]
    .map(String::from)
    .into();
    args.extend([
        "-smp".into(),
        spec.cpus.to_string(),
        "-m".into(),
        spec.memory.clone(),
        "-kernel".into(),
        kdir.join("arch/arm64/boot/Image").display().to_string(),
        "-initrd".into(),
        initramfs.display().to_string(),
        "-append".into(),
        append.join(" "),
    ]);
    // The device options are whole option strings; no path in them has a
    // space (the harness makes them).
    args.extend(
        spec.qemu_opts
            .iter()
            .flat_map(|o| o.split_whitespace().map(String::from)),
    );
    args
}

/// The kernel argument that tells the board's `/init` what to run: each
/// script (a path relative to the repository, as the initramfs holds it
/// under `/lincell`) and where its output goes, relative to the guest's
/// output directory (`.` for that directory itself). Linux hands an
/// argument it does not know to init as an environment variable.
pub fn board_run_arg(scripts: &[(String, String)]) -> String {
    let list: Vec<String> = scripts.iter().map(|(s, o)| format!("{s}:{o}")).collect();
    format!("lincell_run={}", list.join(","))
}

/// Files a guest without a shared file system sends to the host on its
/// console: the lines between `@@lincell-file-begin PATH` and
/// `@@lincell-file-end PATH` are PATH's contents (`virtme/guest-lib.sh`'s
/// `host_copy`), written under `dir` once the end line arrives (to a
/// temporary name, then renamed: a reader never sees half a file). PATH is
/// relative and may not leave `dir`.
pub struct ConsoleFiles {
    dir: PathBuf,
    open: Option<(PathBuf, String)>,
}

const FILE_BEGIN: &str = "@@lincell-file-begin ";
const FILE_END: &str = "@@lincell-file-end ";

impl ConsoleFiles {
    /// Files go under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        ConsoleFiles { dir, open: None }
    }

    /// Takes one console line; true if it belonged to a file (and is not
    /// console output).
    pub fn line(&mut self, line: &str) -> bool {
        if let Some(rel) = line.strip_prefix(FILE_BEGIN) {
            let rel = Path::new(rel.trim());
            let safe = rel.components().count() > 0
                && rel
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            self.open = safe.then(|| (self.dir.join(rel), String::new()));
            return true;
        }
        let Some((path, text)) = &mut self.open else {
            return false;
        };
        if line.starts_with(FILE_END) {
            let tmp = path.with_extension("console-tmp");
            let _ = path
                .parent()
                .map_or(Ok(()), fs::create_dir_all)
                .and_then(|()| fs::write(&tmp, text.as_bytes()))
                .and_then(|()| fs::rename(&tmp, &*path));
            self.open = None;
        } else {
            text.push_str(line);
            text.push('\n');
        }
        true
    }
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

/// Boots a guest of `kind`: a virtme-ng guest ([`spawn`]) or the arm64
/// board, whose console files go to its first `rw_dirs` directory.
pub fn spawn_kind(kind: &Kind, kdir: &Path, spec: &GuestSpec) -> io::Result<Running> {
    match kind {
        Kind::Vng => spawn(kdir, spec),
        Kind::Arm64 { initramfs } => {
            let files = spec.rw_dirs.first().cloned().map(ConsoleFiles::new);
            spawn_with(
                "qemu-system-aarch64",
                &board_command_line(kdir, initramfs, spec),
                spec,
                files,
            )
        }
    }
}

/// Time between two guest launches (see [`spawn`]).
const LAUNCH_SPACING: Duration = Duration::from_secs(2);

/// Starts `program` with `args` as the launcher of the guest `spec`.
pub fn spawn_program(program: &str, args: &[String], spec: &GuestSpec) -> io::Result<Running> {
    spawn_with(program, args, spec, None)
}

/// [`spawn_program`], with the files the guest sends on its console (on the
/// launcher's stdout) written by `files`.
fn spawn_with(
    program: &str,
    args: &[String],
    spec: &GuestSpec,
    mut files: Option<ConsoleFiles>,
) -> io::Result<Running> {
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
        // Only stdout (the first stream) carries the console.
        let mut files = files.take();
        readers.push(thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut raw = Vec::new();
            // Lines, whatever bytes a console sends (a line that is not
            // UTF-8 must not stop the reader: the guest would block on a
            // full pipe).
            while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
                let mut line = String::from_utf8_lossy(&raw).into_owned();
                raw.clear();
                // A serial console ends its lines with \r\n.
                while line.ends_with(['\n', '\r']) {
                    line.pop();
                }
                if files.as_mut().is_some_and(|f| f.line(&line)) {
                    continue;
                }
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
            qemu: None,
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
    fn board_boots_the_initramfs_with_the_scripts_to_run() {
        let mut spec = spec();
        spec.cpus = 4;
        spec.kernel_args.push(board_run_arg(&[
            ("tests/guest/a.sh".into(), "a".into()),
            ("tests/guest/b.sh".into(), "b".into()),
        ]));
        let args = board_command_line(Path::new("/k"), Path::new("/i.cpio.gz"), &spec);
        let after = |flag: &str| {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1].clone()
        };
        assert_eq!(after("-kernel"), "/k/arch/arm64/boot/Image");
        assert_eq!(after("-initrd"), "/i.cpio.gz");
        assert_eq!(after("-smp"), "4");
        let append = after("-append");
        for a in [
            "console=ttyAMA0",
            "slub_debug=FZP",
            "nohz_full=1",
            "lincell_guest=a",
            "lincell_run=tests/guest/a.sh:a,tests/guest/b.sh:b",
        ] {
            assert!(append.split(' ').any(|w| w == a), "{a} in {append}");
        }
        // The device options, one argument each.
        assert_eq!(
            args[args.len() - 2..],
            ["-device", "ivshmem-plain,memdev=hm"]
        );
    }

    #[test]
    fn console_files_are_written_whole_and_stay_inside() {
        let dir = std::env::temp_dir().join(format!("lincell-vm-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut f = ConsoleFiles::new(dir.clone());
        assert!(!f.line("ok 1 - console output"));
        assert!(f.line("@@lincell-file-begin s/tap.txt"));
        assert!(f.line("ok 1 - x"));
        assert!(!dir.join("s/tap.txt").exists(), "not before its end");
        assert!(f.line("@@lincell-file-end s/tap.txt"));
        assert_eq!(
            std::fs::read_to_string(dir.join("s/tap.txt")).unwrap(),
            "ok 1 - x\n"
        );
        assert!(!f.line("after the file"));
        for bad in ["../evil", "/etc/evil", "./x"] {
            assert!(f.line(&format!("@@lincell-file-begin {bad}")));
            assert!(!f.line("text"), "{bad}: not a file");
        }
        assert!(f.line("@@lincell-file-begin empty"));
        assert!(f.line("@@lincell-file-end empty"));
        assert_eq!(std::fs::read_to_string(dir.join("empty")).unwrap(), "");
        let _ = std::fs::remove_dir_all(dir);
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
        assert!(
            !args.iter().any(|a| a.starts_with("--qemu=")),
            "the system's QEMU by default"
        );
    }

    #[test]
    fn command_line_runs_the_given_qemu() {
        let mut spec = spec();
        spec.qemu = Some(PathBuf::from("/r/scripts/qemu11.sh"));
        let args = command_line(Path::new("/k"), &spec);
        assert!(args.contains(&"--qemu=/r/scripts/qemu11.sh".to_string()));
    }

    #[test]
    fn vfio_user_device_is_json_quoted_for_the_shell() {
        assert_eq!(
            vfio_user_device(Path::new("/w/s/vfio-a.sock")).unwrap(),
            r#"-device '{"driver":"vfio-user-pci","socket":{"type":"unix","path":"/w/s/vfio-a.sock"}}'"#
        );
        for bad in [
            "/w/it's.sock",
            "/w/a b.sock",
            "/w/a\"b.sock",
            "/w/a\\b.sock",
        ] {
            let e = vfio_user_device(Path::new(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        let long = format!("/{}/vfio-a.sock", "d".repeat(100));
        let e = vfio_user_device(Path::new(&long)).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn missing_qemu11_tree_says_to_run_make_setup() {
        let dir = std::env::temp_dir().join(format!("lincell-vm-noqemu-{}", std::process::id()));
        let e = qemu11_in(Path::new("/r"), Some(dir.clone())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("make setup"), "{e}");
        // A tree without its stamp is unfinished: the same.
        std::fs::create_dir_all(&dir).unwrap();
        assert!(qemu11_in(Path::new("/r"), Some(dir.clone())).is_err());
        std::fs::write(dir.join(".lincell-qemu-version"), "1:11.1.3\n").unwrap();
        let q = qemu11_in(Path::new("/r"), Some(dir.clone())).unwrap();
        assert_eq!(q, Path::new("/r/scripts/qemu11.sh"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
