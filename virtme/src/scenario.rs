// SPDX-License-Identifier: GPL-2.0

//! A guest test: one script, one or more guests, optional shared devices.
//!
//! A guest test is a shell script under `tests/guest/` that prints TAP on
//! stdout. Lines of the form
//!
//! ```text
//! # lincell-vm: guests=a,b cpus=2 memory=1G timeout=180
//! # lincell-vm: ivshmem-plain=1M
//! # lincell-vm: ivshmem-doorbell=2:4M
//! # lincell-vm: host=tests/host/peer.sh
//! ```
//!
//! say how to run it (all keys optional):
//! - `guests`: names of the guests to boot at once, each running the script
//!   with `LINCELL_GUEST` set to its name (default: one guest, `guest`);
//! - `cpus`, `memory`: per guest (default 2, 1G);
//! - `timeout`: seconds for the whole scenario (default 240);
//! - `ivshmem-plain=SIZE`: one memory file shared by all guests of the
//!   scenario, attached to each as `-device ivshmem-plain`;
//! - `ivshmem-doorbell=VECTORS:SIZE`: starts the project's `ivshmem-server`
//!   on a private socket and attaches each guest as `-device
//!   ivshmem-doorbell` (interrupts between guests and host peers);
//! - `host=COMMAND`: a host-side peer started once the guests boot; its TAP
//!   output is counted like a guest's (env: `LINCELL_IVSHMEM_SOCKET`);
//! - `append=ARGS`: extra kernel command-line arguments (the rest of the
//!   line, e.g. `append=nohz_full=2-3 rcu_nocbs=2-3`), after the ones every
//!   guest gets ([`guest::DEFAULT_KERNEL_ARGS`]);
//! - `boot=NAME`: scripts naming the same boot share one boot of their
//!   guests (a TCG boot costs tens of seconds), run one after the other in
//!   file-name order, each with its own output, results and kernel log. Their
//!   other directives must be the same (timeouts add up) and none may have
//!   a host peer;
//! - `arch=x86_64,arm64`: the guest kinds ([`guest::Kind`]) the script runs
//!   on (default `x86_64`, the virtme-ng guest); `arm64` is QEMU's `virt`
//!   board, which `lincell-vm check --arm64 KDIR` boots;
//! - `disk=SIZE`: a fresh backing file of SIZE (`disk.img` in the
//!   scenario's directory) attached as QEMU's own `virtio-blk-pci` disk;
//!   host peers find it in `LINCELL_DISK` (the vdev-remote benchmark serves
//!   the same file);
//! - `ratio=ROW/ROW` (benchmarks, repeatable): see [`crate::bench`].
//!
//! Inside the guest each script runs through `virtme/guest-run.sh`, which
//! mounts debugfs, runs it with `LINCELL_OUT` pointing to a writable
//! directory, saves (and clears) the kernel log, and writes a `done` marker.
//! A script that never writes the marker did not finish: it or one before it
//! in the same boot hung, crashed, or the guest never booted. (The arm64
//! board has no directory shared with the host: `guest-run.sh` sends those
//! files, and those a script sends with `host_copy`, over its console.)

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::guest::{self, Exit, GuestSpec};

/// Name of the guest of a scenario that names none.
pub const DEFAULT_GUEST: &str = "guest";

/// Parsed `# lincell-vm:` directives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directives {
    /// Guest names.
    pub guests: Vec<String>,
    /// vCPUs per guest.
    pub cpus: u32,
    /// Memory per guest.
    pub memory: String,
    /// Time limit for the scenario.
    pub timeout: Duration,
    /// Size of a shared `ivshmem-plain` region, if any.
    pub ivshmem_plain: Option<u64>,
    /// `(vectors, size)` of an `ivshmem-doorbell` server, if any.
    pub ivshmem_doorbell: Option<(u32, u64)>,
    /// Host-side peer command, if any.
    pub host: Option<String>,
    /// Extra kernel arguments.
    pub append: Vec<String>,
    /// Name of the boot this script shares with others, if any.
    pub boot: Option<String>,
    /// The guest kinds it runs on ([`guest::Kind::arch`]).
    pub arch: Vec<String>,
    /// Size of a QEMU `virtio-blk-pci` disk, if any.
    pub disk: Option<u64>,
    /// Benchmark ratios, `(numerator row, denominator row)`.
    pub ratio: Vec<(String, String)>,
}

impl Directives {
    /// The directives of scripts sharing one boot: theirs, which must agree
    /// (but for timeouts, which add up, and the kinds they run on).
    pub fn merge(all: &[Directives]) -> Result<Directives, String> {
        let first = all.first().ok_or("no scripts")?;
        let mut merged = first.clone();
        merged.timeout = Duration::ZERO;
        for d in all {
            if d.host.is_some() && all.len() > 1 {
                return Err("a script with a host peer cannot share a boot".into());
            }
            // Each kind's boots are grouped on their own: the kinds
            // scripts run on may differ.
            let same = Directives {
                timeout: first.timeout,
                arch: first.arch.clone(),
                ..d.clone()
            };
            if &same != first {
                return Err(format!(
                    "scripts sharing boot `{}` differ in their directives",
                    first.boot.as_deref().unwrap_or("")
                ));
            }
            merged.timeout += d.timeout;
        }
        Ok(merged)
    }
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            guests: vec![DEFAULT_GUEST.into()],
            cpus: 2,
            memory: "1G".into(),
            timeout: Duration::from_secs(240),
            ivshmem_plain: None,
            ivshmem_doorbell: None,
            host: None,
            append: Vec::new(),
            boot: None,
            arch: vec!["x86_64".into()],
            disk: None,
            ratio: Vec::new(),
        }
    }
}

/// The guest kinds `arch=` may name.
pub const ARCHES: &[&str] = &["x86_64", "arm64"];

/// Parses a size like `4096`, `64K`, `1M`, `2G`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad size `{s}` (expected e.g. 4096, 64K, 1M)"))
}

/// Reads the directives from a script's text.
pub fn parse_directives(text: &str) -> Result<Directives, String> {
    let mut d = Directives::default();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("# lincell-vm:") else {
            continue;
        };
        let rest = rest.trim();
        // `host=` takes the rest of the line (a command with spaces).
        if let Some(cmd) = rest.strip_prefix("host=") {
            d.host = Some(cmd.trim().to_string());
            continue;
        }
        // So does `append=` (kernel arguments).
        if let Some(args) = rest.strip_prefix("append=") {
            d.append.extend(args.split_whitespace().map(str::to_string));
            continue;
        }
        for item in rest.split_whitespace() {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("directive `{item}` is not key=value"))?;
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("bad number in `{item}`"))
            };
            match key {
                "guests" => {
                    d.guests = value.split(',').map(str::to_string).collect();
                    if d.guests.iter().any(|g| {
                        g.is_empty() || !g.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    }) {
                        return Err(format!("bad guest names in `{item}`"));
                    }
                }
                "cpus" => {
                    d.cpus = u32::try_from(num(value)?).map_err(|_| format!("bad `{item}`"))?
                }
                "memory" => d.memory = value.to_string(),
                "timeout" => d.timeout = Duration::from_secs(num(value)?),
                "boot" => {
                    if value.is_empty()
                        || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    {
                        return Err(format!("bad boot name in `{item}`"));
                    }
                    d.boot = Some(value.to_string());
                }
                "arch" => {
                    d.arch = value.split(',').map(str::to_string).collect();
                    if d.arch.iter().any(|a| !ARCHES.contains(&a.as_str())) {
                        return Err(format!("`{item}`: the kinds are {}", ARCHES.join(", ")));
                    }
                }
                "disk" => d.disk = Some(parse_size(value)?),
                "ratio" => {
                    let (n, m) = value
                        .split_once('/')
                        .filter(|(n, m)| !n.is_empty() && !m.is_empty())
                        .ok_or_else(|| format!("`{item}`: expected ROW/ROW"))?;
                    d.ratio.push((n.to_string(), m.to_string()));
                }
                "ivshmem-plain" => d.ivshmem_plain = Some(parse_size(value)?),
                "ivshmem-doorbell" => {
                    let (v, s) = value
                        .split_once(':')
                        .ok_or_else(|| format!("`{item}`: expected VECTORS:SIZE"))?;
                    let v = u32::try_from(num(v)?).map_err(|_| format!("bad `{item}`"))?;
                    d.ivshmem_doorbell = Some((v, parse_size(s)?));
                }
                _ => return Err(format!("unknown directive `{key}`")),
            }
        }
    }
    Ok(d)
}

/// What one guest (or the host peer) of a scenario produced.
#[derive(Debug)]
pub struct GuestResult {
    /// Guest name (`host` for the host peer).
    pub name: String,
    /// How it ended.
    pub exit: Exit,
    /// TAP printed by the test script.
    pub tap: String,
    /// The guest's kernel log (empty for the host peer).
    pub dmesg: String,
    /// The script's exit code if it ran to its end (the `done` marker), or
    /// `None` if the guest hung, crashed or never booted.
    pub script_exit: Option<i32>,
    /// Launcher output, for diagnosing a guest that did not finish.
    pub console: String,
    /// Seconds the script itself took, by the guest's clock (the boot and
    /// the other scripts of a shared boot not included), if it finished.
    pub seconds: Option<f64>,
    /// Wall time.
    pub elapsed: Duration,
}

/// A guest whose launcher died early without a word: no results, no
/// console output, no `done` marker, within 30 s.
fn launcher_failed(r: &GuestResult) -> bool {
    r.name != "host"
        && r.script_exit.is_none()
        && r.tap.is_empty()
        && r.console.trim().is_empty()
        && r.elapsed < Duration::from_secs(30)
        && matches!(r.exit, Exit::Code(_))
}

fn read_marker(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Everything needed to run scenarios.
pub struct Runner {
    /// Kernel build directory.
    pub kdir: PathBuf,
    /// Repository root (the guest sees it at the same path).
    pub root: PathBuf,
    /// Scratch directory for this run.
    pub work: PathBuf,
    /// Echo guest consoles to stderr.
    pub echo: bool,
    /// What the guests boot.
    pub kind: guest::Kind,
}

/// Kills a host helper process when dropped.
struct HostProcess(Child);

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The file name of a script without `.sh`: its scenario name.
pub fn script_name(script: &Path) -> String {
    script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a script's directives.
pub fn read_directives(script: &Path) -> io::Result<Directives> {
    let text = fs::read_to_string(script)?;
    parse_directives(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", script.display()),
        )
    })
}

/// Splits sorted `scripts` into boots: a script alone, or every script
/// naming the same `boot=` together (at the place of the first of them).
pub fn group_by_boot(scripts: &[PathBuf]) -> io::Result<Vec<Vec<PathBuf>>> {
    let mut boots: Vec<(Option<String>, Vec<PathBuf>)> = Vec::new();
    for s in scripts {
        let key = read_directives(s)?.boot;
        match boots.iter_mut().find(|(k, _)| key.is_some() && *k == key) {
            Some((_, group)) => group.push(s.clone()),
            None => boots.push((key, vec![s.clone()])),
        }
    }
    Ok(boots.into_iter().map(|(_, g)| g).collect())
}

impl Runner {
    /// Runs the scenario in `script`; one result per guest (plus the host
    /// peer, if any).
    pub fn run(&self, script: &Path) -> io::Result<Vec<GuestResult>> {
        let mut all = self.run_boot(&[script.to_path_buf()])?;
        Ok(all.pop().map(|(_, r)| r).unwrap_or_default())
    }

    /// Runs `scripts` in one boot of their guests (see `boot=`); for each
    /// script, its name and one result per guest (plus the host peer).
    pub fn run_boot(&self, scripts: &[PathBuf]) -> io::Result<Vec<(String, Vec<GuestResult>)>> {
        let results = self.run_once(scripts)?;
        match results
            .iter()
            .flat_map(|(_, r)| r)
            .find(|r| launcher_failed(r))
        {
            Some(r) => {
                // Seen on this machine kind, rarely: virtme-ng exits 255
                // within seconds, printing nothing, before the guest runs
                // anything. That is the launcher, not the test: run the
                // scenario once more, and say so.
                println!(
                    "--- note: {} {} after {:.1} s without any output; running the scenario again",
                    r.name,
                    r.exit.describe(),
                    r.elapsed.as_secs_f64()
                );
                self.run_once(scripts)
            }
            None => Ok(results),
        }
    }

    fn run_once(&self, scripts: &[PathBuf]) -> io::Result<Vec<(String, Vec<GuestResult>)>> {
        let all = scripts
            .iter()
            .map(|s| read_directives(s))
            .collect::<io::Result<Vec<_>>>()?;
        let d =
            Directives::merge(&all).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let names: Vec<String> = scripts.iter().map(|s| script_name(s)).collect();
        // A lone script keeps the simple layout host peers rely on
        // (`<work>/<script>/<guest>`); a shared boot nests each script's
        // output under its guest's (`<work>/<boot>/<guest>/<script>`).
        let shared = scripts.len() > 1;
        let dir = self.work.join(match (&d.boot, shared) {
            (Some(b), true) => b.clone(),
            _ => names[0].clone(),
        });
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;

        let mut qemu_opts = Vec::new();
        if let Some(size) = d.ivshmem_plain {
            let mem = dir.join("ivshmem-plain.mem");
            fs::File::create(&mem)?.set_len(size)?;
            qemu_opts.push(format!(
                "-object memory-backend-file,size={size},share=on,mem-path={},id=lincellhm -device ivshmem-plain,memdev=lincellhm",
                mem.display()
            ));
        }
        let disk = dir.join("disk.img");
        if let Some(size) = d.disk {
            fs::File::create(&disk)?.set_len(size)?;
            qemu_opts.push(format!(
                "-drive file={},if=none,id=lincelldisk,format=raw -device virtio-blk-pci,drive=lincelldisk",
                disk.display()
            ));
        }
        let mut _server = None;
        let socket = dir.join("ivshmem.sock");
        if let Some((vectors, size)) = d.ivshmem_doorbell {
            _server = Some(self.start_server(&dir, &socket, vectors, size)?);
            qemu_opts.push(format!(
                "-chardev socket,path={},id=lincellivs -device ivshmem-doorbell,chardev=lincellivs,vectors={vectors}",
                socket.display()
            ));
        }

        let deadline = Instant::now() + d.timeout;
        let mut running = Vec::new();
        for name in &d.guests {
            let gdir = dir.join(name);
            let outs: Vec<PathBuf> = if shared {
                names.iter().map(|n| gdir.join(n)).collect()
            } else {
                vec![gdir.clone()]
            };
            let mut command = format!("sh {}/virtme/guest-run.sh {name}", self.root.display());
            // The board's: each script as the initramfs holds it, and its
            // output directory relative to the guest's.
            let mut board_run = Vec::new();
            for ((script, out), script_name) in scripts.iter().zip(&outs).zip(&names) {
                fs::create_dir_all(out)?;
                command.push_str(&format!(" {} {}", script.display(), out.display()));
                let rel = script.strip_prefix(&self.root).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not in the repository", script.display()),
                    )
                })?;
                let out_rel = if shared { script_name.as_str() } else { "." };
                board_run.push((rel.display().to_string(), out_rel.to_string()));
            }
            let mut kernel_args = d.append.clone();
            if matches!(self.kind, guest::Kind::Arm64 { .. }) {
                kernel_args.push(guest::board_run_arg(&board_run));
            }
            let spec = GuestSpec {
                name: name.clone(),
                cpus: d.cpus,
                memory: d.memory.clone(),
                qemu_opts: qemu_opts.clone(),
                kernel_args,
                command,
                rw_dirs: vec![gdir.clone()],
                echo: self.echo,
            };
            running.push((outs, guest::spawn_kind(&self.kind, &self.kdir, &spec)?));
        }

        let host = match &d.host {
            Some(cmd) => Some(self.start_host(cmd, &dir, &socket, d.disk.map(|_| &*disk))?),
            None => None,
        };

        let mut results: Vec<(String, Vec<GuestResult>)> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for (outs, g) in running {
            let name = g.name().to_string();
            let o = g.wait(deadline);
            for ((_, per_script), out) in results.iter_mut().zip(&outs) {
                per_script.push(GuestResult {
                    name: name.clone(),
                    exit: o.exit.clone(),
                    tap: fs::read_to_string(out.join("tap.txt")).unwrap_or_default(),
                    dmesg: fs::read_to_string(out.join("dmesg.txt")).unwrap_or_default(),
                    script_exit: read_marker(&out.join("done")),
                    console: o.console.clone(),
                    seconds: fs::read_to_string(out.join("seconds"))
                        .ok()
                        .and_then(|t| t.trim().parse().ok()),
                    elapsed: o.elapsed,
                });
            }
        }
        // A guest whose launcher died at once will be run again (see
        // `run_boot`): its host peer would only wait out the deadline for
        // it, so it is stopped now (dropping it kills it).
        let relaunch = results.iter().flat_map(|(_, r)| r).any(launcher_failed);
        if let Some(h) = host.filter(|_| !relaunch) {
            let r = self.wait_host(h, &dir, deadline);
            results[0].1.push(r);
        }
        Ok(results)
    }

    fn start_server(
        &self,
        dir: &Path,
        socket: &Path,
        vectors: u32,
        size: u64,
    ) -> io::Result<HostProcess> {
        let bin = self.root.join("target/debug/ivshmem-server");
        let child = Command::new(&bin)
            .args(["-F", "-S"])
            .arg(socket)
            .arg("-m")
            .arg(dir)
            .args(["-l", &size.to_string(), "-n", &vectors.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("ivshmem-server.log"))?)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot start {}: {e}", bin.display()))
            })?;
        // QEMU connects at start-up: wait until the socket exists.
        let until = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "ivshmem-server did not create its socket",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(HostProcess(child))
    }

    fn start_host(
        &self,
        cmd: &str,
        dir: &Path,
        socket: &Path,
        disk: Option<&Path>,
    ) -> io::Result<(HostProcess, Instant)> {
        let out = dir.join("host");
        fs::create_dir_all(&out)?;
        let mut command = Command::new("sh");
        if let Some(disk) = disk {
            command.env("LINCELL_DISK", disk);
        }
        let child = command
            .arg("-c")
            .arg(cmd)
            .current_dir(&self.root)
            .env("LINCELL_ROOT", &self.root)
            .env("LINCELL_OUT", &out)
            .env("LINCELL_IVSHMEM_SOCKET", socket)
            .stdin(Stdio::null())
            .stdout(fs::File::create(out.join("tap.txt"))?)
            .stderr(fs::File::create(out.join("stderr.txt"))?)
            .spawn()?;
        Ok((HostProcess(child), Instant::now()))
    }

    fn wait_host(
        &self,
        (mut h, start): (HostProcess, Instant),
        dir: &Path,
        deadline: Instant,
    ) -> GuestResult {
        let out = dir.join("host");
        let exit = loop {
            match h.0.try_wait() {
                Ok(Some(s)) => break Exit::Code(s.code().unwrap_or(-1)),
                Ok(None) if Instant::now() >= deadline => {
                    break Exit::TimedOut(deadline.saturating_duration_since(start));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(_) => break Exit::Code(-1),
            }
        };
        let script_exit = match exit {
            Exit::Code(c) => Some(c),
            _ => None,
        };
        GuestResult {
            name: "host".into(),
            exit,
            tap: fs::read_to_string(out.join("tap.txt")).unwrap_or_default(),
            dmesg: String::new(),
            script_exit,
            console: fs::read_to_string(out.join("stderr.txt")).unwrap_or_default(),
            seconds: None,
            elapsed: start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_silent_early_launcher_exit_is_retried() {
        let r = |tap: &str, console: &str, secs: u64, marker: Option<i32>| GuestResult {
            name: "guest".into(),
            exit: Exit::Code(255),
            tap: tap.into(),
            dmesg: String::new(),
            script_exit: marker,
            console: console.into(),
            seconds: None,
            elapsed: Duration::from_secs(secs),
        };
        assert!(launcher_failed(&r("", "", 12, None)));
        assert!(!launcher_failed(&r(
            "",
            "Kernel panic - not syncing",
            12,
            None
        )));
        assert!(!launcher_failed(&r("ok 1 - x\n", "", 12, None)));
        assert!(!launcher_failed(&r("", "", 300, None)));
        assert!(!launcher_failed(&r("", "", 12, Some(1))));
        let mut host = r("", "", 1, None);
        host.name = "host".into();
        assert!(!launcher_failed(&host));
    }

    #[test]
    fn defaults_without_directives() {
        assert_eq!(
            parse_directives("#!/bin/sh\necho hi\n").unwrap(),
            Directives::default()
        );
    }

    #[test]
    fn all_directives() {
        let d = parse_directives(
            "# lincell-vm: guests=a,b cpus=4 memory=2G timeout=99\n\
             # lincell-vm: ivshmem-plain=1M ivshmem-doorbell=2:4M\n\
             # lincell-vm: host=target/debug/peer --count 10\n",
        )
        .unwrap();
        assert_eq!(d.guests, ["a", "b"]);
        assert_eq!(d.cpus, 4);
        assert_eq!(d.memory, "2G");
        assert_eq!(d.timeout, Duration::from_secs(99));
        assert_eq!(d.ivshmem_plain, Some(1 << 20));
        assert_eq!(d.ivshmem_doorbell, Some((2, 4 << 20)));
        assert_eq!(d.host.as_deref(), Some("target/debug/peer --count 10"));
    }

    #[test]
    fn append_and_boot() {
        let d = parse_directives(
            "# lincell-vm: cpus=4 boot=iso timeout=100\n\
             # lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3\n",
        )
        .unwrap();
        assert_eq!(d.append, ["nohz_full=2-3", "rcu_nocbs=2-3"]);
        assert_eq!(d.boot.as_deref(), Some("iso"));
        let mut e = d.clone();
        e.timeout = Duration::from_secs(50);
        let m = Directives::merge(&[d.clone(), e.clone()]).unwrap();
        assert_eq!(m.timeout, Duration::from_secs(150));
        assert_eq!(m.cpus, 4);
        e.cpus = 2;
        assert!(
            Directives::merge(&[d.clone(), e]).is_err(),
            "different devices cannot share a boot"
        );
        let mut h = d.clone();
        h.host = Some("peer".into());
        assert!(
            Directives::merge(&[d, h]).is_err(),
            "host peers cannot share a boot"
        );
    }

    #[test]
    fn kinds_disk_and_ratios() {
        assert_eq!(Directives::default().arch, ["x86_64"]);
        let d = parse_directives(
            "# lincell-vm: arch=x86_64,arm64 disk=256M boot=b\n\
             # lincell-vm: ratio=read/spin ratio=poll/spin\n",
        )
        .unwrap();
        assert_eq!(d.arch, ["x86_64", "arm64"]);
        assert_eq!(d.disk, Some(256 << 20));
        assert_eq!(
            d.ratio,
            [
                ("read".into(), "spin".into()),
                ("poll".into(), "spin".into())
            ]
        );
        // Scripts sharing a boot may run on different kinds.
        let mut e = d.clone();
        e.arch = vec!["x86_64".into()];
        assert!(Directives::merge(&[d, e]).is_ok());
    }

    #[test]
    fn bad_directives_are_errors() {
        for bad in [
            "# lincell-vm: frobnicate=1",
            "# lincell-vm: cpus",
            "# lincell-vm: cpus=x",
            "# lincell-vm: ivshmem-plain=0",
            "# lincell-vm: ivshmem-plain=12Q",
            "# lincell-vm: ivshmem-doorbell=4M",
            "# lincell-vm: guests=a,,b",
            "# lincell-vm: guests=a;rm",
            "# lincell-vm: boot=",
            "# lincell-vm: boot=a/b",
            "# lincell-vm: arch=riscv",
            "# lincell-vm: disk=0",
            "# lincell-vm: ratio=read",
            "# lincell-vm: ratio=/spin",
        ] {
            assert!(parse_directives(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
