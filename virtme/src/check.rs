// SPDX-License-Identifier: GPL-2.0

//! `lincell-vm check`: run every test layer and count the results.
//!
//! Layers, in order: host `cargo test` over the workspace; then each guest
//! test under `tests/guest/` (KUnit suites are collected by
//! `tests/guest/kunit.sh`, which loads every module). Each test case is
//! printed as it is counted, and the run ends with `N passed, N failed`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use lincell_ktap::{cargo, ktap, splat};

use crate::scenario::{script_name, GuestResult, Revision, Runner, DEFAULT_GUEST};

/// One counted test case.
#[derive(Debug, PartialEq, Eq)]
pub struct Case {
    /// Full name, `layer/scenario/guest/case`.
    pub name: String,
    /// Outcome.
    pub outcome: ktap::Outcome,
    /// Why it failed (empty when it passed).
    pub detail: String,
}

/// Running totals.
#[derive(Default, Debug)]
pub struct Totals {
    /// Passed cases.
    pub passed: usize,
    /// Failed cases.
    pub failed: usize,
    /// Skipped cases.
    pub skipped: usize,
    /// Names of failed cases, for the summary.
    pub failures: Vec<String>,
}

impl Totals {
    /// Counts and prints one case.
    pub fn record(&mut self, case: &Case) {
        let tag = match case.outcome {
            ktap::Outcome::Pass => {
                self.passed += 1;
                "ok  "
            }
            ktap::Outcome::Skip => {
                self.skipped += 1;
                "skip"
            }
            ktap::Outcome::Fail => {
                self.failed += 1;
                self.failures.push(case.name.clone());
                "FAIL"
            }
        };
        println!("{tag} {}", case.name);
        if case.outcome == ktap::Outcome::Fail {
            for line in case.detail.lines() {
                println!("       {line}");
            }
        }
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        let mut s = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            let _ = write!(s, ", {} skipped", self.skipped);
        }
        s
    }
}

fn case(name: String, outcome: ktap::Outcome, detail: impl Into<String>) -> Case {
    Case {
        name,
        outcome,
        detail: detail.into(),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the guest saw just before the harness's deadline (guest-run.sh's
/// hang.txt): its running and uninterruptible tasks and their kernel
/// stacks, then the end of the kernel log (from a sysrq dump of blocked
/// tasks on, where there is one).
fn hang_report(report: &str) -> String {
    let Some((tasks, rest)) = report.split_once("\n# stacks\n") else {
        return String::new();
    };
    let (stacks, log) = rest.split_once("# dmesg\n").unwrap_or((rest, ""));
    let busy = tasks.lines().filter(|l| {
        let stat = l.split_whitespace().nth(1).unwrap_or("");
        l.starts_with('#')
            || stat.starts_with('D')
            || (stat.starts_with('R') && !l.contains(" ps -eo "))
    });
    let log: Vec<&str> = log.lines().collect();
    let from = log
        .iter()
        .position(|l| l.contains("Show Blocked State"))
        .unwrap_or(log.len().saturating_sub(30));
    let log = &log[from..log.len().min(from + 150)];
    format!(
        "\nthe guest just before the deadline (hang.txt: tasks running or in D state, their stacks, the kernel log):\n{}\n{}{}",
        busy.collect::<Vec<_>>().join("\n"),
        stacks,
        log.join("\n")
    )
}

/// Turns one guest's (or the host peer's) output into test cases.
pub fn evaluate(scenario: &str, r: &GuestResult) -> Vec<Case> {
    // A single unnamed guest adds nothing to the name.
    let prefix = if r.name == DEFAULT_GUEST {
        format!("guest/{scenario}")
    } else {
        format!("guest/{scenario}/{}", r.name)
    };
    let mut cases = Vec::new();
    let report = ktap::parse(&r.tap);
    for c in &report.cases {
        let name = if c.suite.is_empty() {
            format!("{prefix}/{}", c.name)
        } else {
            format!("{prefix}/{}.{}", c.suite, c.name)
        };
        cases.push(case(name, c.outcome, c.diagnostics.join("\n")));
    }
    for p in &report.problems {
        cases.push(case(
            format!("{prefix}/tap"),
            ktap::Outcome::Fail,
            p.clone(),
        ));
    }
    match r.script_exit {
        // Killed by the host peer, as the scenario says (`killed=`): its
        // TAP so far is its result; its kernel log died with it.
        None if r.killed => cases.push(case(
            format!("{prefix}/killed"),
            ktap::Outcome::Pass,
            "",
        )),
        Some(code) if r.killed => cases.push(case(
            format!("{prefix}/killed"),
            ktap::Outcome::Fail,
            format!(
                "{} was to be killed by the host peer, but its script ran to its end (exit code {code})",
                r.name
            ),
        )),
        None => cases.push(case(
            format!("{prefix}/finished"),
            ktap::Outcome::Fail,
            format!(
                "{} did not finish: it {} after {:.1} s (hung, crashed or never booted).\nlast output:\n{}{}",
                r.name,
                r.exit.describe(),
                r.elapsed.as_secs_f64(),
                tail(&r.console, 15),
                hang_report(&r.dmesg)
            ),
        )),
        Some(0) if report.cases.is_empty() => cases.push(case(
            format!("{prefix}/results"),
            ktap::Outcome::Fail,
            format!("the test printed no TAP results\nlast output:\n{}", tail(&r.console, 15)),
        )),
        Some(0) => {}
        Some(code) => cases.push(case(
            format!("{prefix}/exit-status"),
            ktap::Outcome::Fail,
            format!("the test script exited with code {code}\n{}", tail(&r.console, 10)),
        )),
    }
    // The kernel log must be free of warnings, BUGs and lockdep reports.
    if r.name != "host" && r.script_exit.is_some() {
        let splats = splat::find_splats(&r.dmesg);
        let detail = splats
            .iter()
            .map(|s| format!("dmesg line {}: {}", s.line_no, s.line))
            .collect::<Vec<_>>()
            .join("\n");
        let outcome = if splats.is_empty() {
            ktap::Outcome::Pass
        } else {
            ktap::Outcome::Fail
        };
        cases.push(case(format!("{prefix}/kernel-log-clean"), outcome, detail));
    }
    cases
}

/// Runs `cargo test` over the workspace and counts its results (every test
/// binary runs, also after one failed).
pub fn host_tests(root: &Path, totals: &mut Totals) {
    println!("--- host: cargo test --workspace");
    let out = Command::new("cargo")
        .args(["test", "--workspace", "--no-fail-fast", "--color", "never"])
        .current_dir(root)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            totals.record(&case(
                "host/cargo".into(),
                ktap::Outcome::Fail,
                format!("cannot run cargo: {e}"),
            ));
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = cargo::parse_cargo_test(&text);
    // One line per passing or ignored test, like the guest layers; failures
    // are recorded (and printed) below.
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... ok"))
        {
            println!("ok   host/{name}");
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... ignored"))
        {
            println!("skip host/{name}");
        }
    }
    println!(
        "host: {} passed, {} failed, {} ignored",
        t.passed, t.failed, t.ignored
    );
    totals.passed += t.passed;
    for name in &t.failed_names {
        totals.record(&case(format!("host/{name}"), ktap::Outcome::Fail, ""));
    }
    // Failures cargo counted but did not name (rare) still count.
    let unnamed = t.failed.saturating_sub(t.failed_names.len());
    totals.failed += unnamed;
    if !out.status.success() && t.failed == 0 {
        totals.record(&case(
            "host/cargo".into(),
            ktap::Outcome::Fail,
            format!(
                "cargo test failed before running tests:\n{}",
                tail(&text, 30)
            ),
        ));
    }
}

/// Every Rust file of the kernel modules and of the shared `no_std` code
/// (`drivers/`, `rust/`), sorted.
fn kernel_rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![root.join("drivers"), root.join("rust")];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && !p.to_string_lossy().ends_with("_generated.rs")
            {
                // bindgen's output is not ours to format (as `make
                // rustfmtcheck` skips the kernel's generated files).
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// One host gate: `program args` must succeed; counted as one case.
fn gate(root: &Path, name: &str, program: &str, args: &[String], totals: &mut Totals) {
    let out = Command::new(program).args(args).current_dir(root).output();
    let (outcome, detail) = match out {
        Ok(o) if o.status.success() => (ktap::Outcome::Pass, String::new()),
        Ok(o) => (
            ktap::Outcome::Fail,
            format!(
                "`{program} {}` failed:\n{}",
                args.join(" "),
                tail(
                    &format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                    40
                )
            ),
        ),
        Err(e) => (ktap::Outcome::Fail, format!("cannot run {program}: {e}")),
    };
    totals.record(&case(format!("host/{name}"), outcome, detail));
}

/// The style gates: Rust formatted with the kernel's settings
/// (`.rustfmt.toml`) on both sides, `rustfmt --check` over the kernel code
/// as `make rustfmtcheck` runs it, `cargo fmt --check` over the workspace,
/// and `cargo clippy` with warnings as errors.
pub fn style_gates(root: &Path, totals: &mut Totals) {
    println!("--- host: format and lint gates");
    let config = root.join(".rustfmt.toml").display().to_string();
    let mut args = vec![
        "--check".to_string(),
        "--color".into(),
        "never".into(),
        "--edition".into(),
        "2021".into(),
        "--config-path".into(),
        config,
    ];
    args.extend(
        kernel_rust_files(root)
            .iter()
            .map(|p| p.display().to_string()),
    );
    gate(root, "format/kernel-rustfmt", "rustfmt", &args, totals);
    gate(
        root,
        "format/cargo-fmt",
        "cargo",
        &[
            "fmt".into(),
            "--all".into(),
            "--check".into(),
            "--".into(),
            "--color".into(),
            "never".into(),
        ],
        totals,
    );
    let clippy = [
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ];
    gate(root, "clippy", "cargo", &clippy.map(String::from), totals);
}

/// What one guest job (a boot, or the arm64 build) produced: progress lines
/// to print and the cases to count, in order. Jobs run concurrently (see
/// [`run_jobs`]); their reports are printed whole, one after the other.
#[derive(Debug, Default)]
pub struct Report {
    /// Progress lines (`--- guest: ...`).
    pub lines: Vec<String>,
    /// The cases.
    pub cases: Vec<Case>,
}

impl Report {
    /// Prints the lines and counts the cases.
    pub fn emit(&self, totals: &mut Totals) {
        for l in &self.lines {
            println!("{l}");
        }
        for c in &self.cases {
            totals.record(c);
        }
    }
}

/// One unit of guest work for [`run_jobs`].
#[derive(Clone, Debug)]
pub enum Job {
    /// Guest scripts sharing one boot (often just one script), on the
    /// runner's guest kind.
    Boot(Vec<PathBuf>),
    /// The ivshmem 2.0 run of `revisions=` scripts sharing one boot
    /// ([`Runner::for_revision`]).
    V2Boot(Vec<PathBuf>),
    /// Build the arm64 board's modules, tools and initramfs, then queue
    /// its boots.
    BuildArm64(Arm64),
    /// Scripts sharing one boot of the arm64 board (queued by
    /// [`Job::BuildArm64`]).
    Arm64Boot(Vec<PathBuf>),
}

/// The arm64 leg: the board's kernel and what to boot on it.
#[derive(Clone, Debug)]
pub struct Arm64 {
    /// The arm64 kernel build directory.
    pub kdir: PathBuf,
    /// Its boots (see [`crate::scenario::group_by_boot`]).
    pub boots: Vec<Vec<PathBuf>>,
}

/// The x86_64 guests' jobs for `scripts` (those that run on x86_64): the
/// boots of every script as written or on v1 ([`Job::Boot`]), then the
/// ivshmem 2.0 boots of the `revisions=` scripts that name v2
/// ([`Job::V2Boot`]). With a filter, only the scripts whose run's name
/// (`NAME`, `v2/NAME`) contains it.
pub fn x86_jobs(scripts: &[PathBuf], filter: Option<&str>) -> std::io::Result<Vec<Job>> {
    let wanted = |rev: Revision, p: &Path| {
        filter.is_none_or(|f| format!("{}{}", rev.prefix(), script_name(p)).contains(f))
    };
    let mut by_rev = [Vec::new(), Vec::new()];
    for p in scripts {
        let runs = crate::scenario::read_directives(p)?.runs();
        for (rev, list) in [Revision::V1, Revision::V2].into_iter().zip(&mut by_rev) {
            if runs.contains(&rev) && wanted(rev, p) {
                list.push(p.clone());
            }
        }
    }
    let [v1, v2] = by_rev;
    let mut jobs: Vec<Job> = crate::scenario::group_by_boot(&v1)?
        .into_iter()
        .map(Job::Boot)
        .collect();
    jobs.extend(
        crate::scenario::group_by_boot(&v2)?
            .into_iter()
            .map(Job::V2Boot),
    );
    Ok(jobs)
}

/// The work of [`run_jobs`]: jobs waiting, and builds whose jobs are not
/// queued yet.
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    building: usize,
}

/// Runs `jobs`, at most `parallel` at a time, and hands each report to
/// `done` (on the calling thread) as it completes. Guests are CPU-bound
/// under TCG, one host core each at most of the time, so `parallel` is best
/// the number of host cores. A [`Job::BuildArm64`] queues the board's boots
/// first when it is done; until then idle workers wait for them.
pub fn run_jobs(runner: &Runner, jobs: Vec<Job>, parallel: usize, mut done: impl FnMut(Report)) {
    let queue = std::sync::Mutex::new(Queue {
        jobs: jobs.into_iter().collect(),
        building: 0,
    });
    let wake = std::sync::Condvar::new();
    let board: std::sync::OnceLock<Runner> = std::sync::OnceLock::new();
    let v2 = runner.for_revision(Revision::V2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            let tx = tx.clone();
            let (queue, wake, board, v2) = (&queue, &wake, &board, &v2);
            scope.spawn(move || {
                // The queue's lock is held only to take the next job.
                let next = || {
                    let mut q = queue.lock().ok()?;
                    loop {
                        if let Some(job) = q.jobs.pop_front() {
                            if matches!(job, Job::BuildArm64(_)) {
                                q.building += 1;
                            }
                            return Some(job);
                        }
                        if q.building == 0 {
                            return None;
                        }
                        q = wake.wait(q).ok()?;
                    }
                };
                while let Some(job) = next() {
                    let report = match job {
                        Job::Boot(scripts) => guest_boot(runner, &scripts),
                        Job::V2Boot(scripts) => guest_boot(v2, &scripts),
                        Job::Arm64Boot(scripts) => match board.get() {
                            Some(b) => guest_boot(b, &scripts),
                            None => Report::default(),
                        },
                        Job::BuildArm64(leg) => {
                            let (report, built) = build_arm64(runner, &leg.kdir);
                            if let Ok(mut q) = queue.lock() {
                                if let Some(b) = built {
                                    let _ = board.set(b);
                                    for boot in leg.boots.into_iter().rev() {
                                        q.jobs.push_front(Job::Arm64Boot(boot));
                                    }
                                }
                                q.building -= 1;
                            }
                            wake.notify_all();
                            report
                        }
                    };
                    if tx.send(report).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for report in rx {
            done(report);
        }
    });
}

/// Builds the arm64 board's initramfs (`scripts/arm64-board.sh`: the
/// modules cross-built against `kdir`, the tools for
/// aarch64-unknown-linux-musl, busybox) and returns the runner that boots
/// it, with the build counted as one case.
fn build_arm64(runner: &Runner, kdir: &Path) -> (Report, Option<Runner>) {
    let mut report = Report::default();
    let work = runner.work.join("arm64");
    let start = std::time::Instant::now();
    let run = Command::new("bash")
        .arg(runner.root.join("scripts/arm64-board.sh"))
        .arg(kdir)
        .current_dir(&runner.root)
        .output();
    report.lines.push(format!(
        "--- guest: arm64 board build (modules, tools, initramfs): {:.0} s",
        start.elapsed().as_secs_f64()
    ));
    let built = match run {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8_lossy(&o.stdout);
            out.lines()
                .last()
                .map(|l| PathBuf::from(l.trim()))
                .filter(|p| p.is_file())
                .ok_or_else(|| format!("the build printed no initramfs:\n{}", tail(&out, 10)))
        }
        Ok(o) => Err(tail(&String::from_utf8_lossy(&o.stderr), 30)),
        Err(e) => Err(format!("cannot run scripts/arm64-board.sh: {e}")),
    };
    let name = "guest/arm64/build".to_string();
    match built {
        Ok(initramfs) => {
            report
                .cases
                .push(case(name, ktap::Outcome::Pass, String::new()));
            let board = Runner {
                kdir: kdir.to_path_buf(),
                root: runner.root.clone(),
                work,
                echo: runner.echo,
                kind: crate::guest::Kind::Arm64 { initramfs },
                revision: Revision::V1,
            };
            (report, Some(board))
        }
        Err(e) => {
            report.cases.push(case(name, ktap::Outcome::Fail, e));
            (report, None)
        }
    }
}

/// Runs the guest scripts of one boot (one script, or several sharing a
/// `boot=`) and reports their cases.
pub fn guest_boot(runner: &Runner, scripts: &[PathBuf]) -> Report {
    let mut report = Report::default();
    // Test names say which board a script ran on, but for the x86_64
    // guests (the default), and which ivshmem revision a `revisions=`
    // script had, but for v1 (the names those tests always had).
    let board = match runner.kind {
        crate::guest::Kind::Vng => "",
        crate::guest::Kind::Arm64 { .. } => "arm64/",
    };
    let arch = format!("{board}{}", runner.revision.prefix());
    let names: Vec<String> = scripts
        .iter()
        .map(|s| format!("{arch}{}", script_name(s)))
        .collect();
    let label = names.join(" + ");
    let start = std::time::Instant::now();
    let outcome = runner.run_boot(scripts);
    report.lines.push(format!(
        "--- guest: {label}: {:.0} s",
        start.elapsed().as_secs_f64()
    ));
    match outcome {
        Ok(per_script) => {
            for (name, results) in &per_script {
                let name = format!("{arch}{name}");
                let times: Vec<String> = results
                    .iter()
                    .filter_map(|r| r.seconds.map(|t| format!("{} {t:.0} s", r.name)))
                    .collect();
                if !times.is_empty() {
                    report
                        .lines
                        .push(format!("--- guest: {name}: {}", times.join(", ")));
                }
                for r in results {
                    report.cases.extend(evaluate(&name, r));
                }
            }
        }
        Err(e) => report.cases.push(case(
            format!("guest/{label}"),
            ktap::Outcome::Fail,
            e.to_string(),
        )),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::Exit;
    use std::time::Duration;

    fn result(tap: &str, exit: Option<i32>, dmesg: &str) -> GuestResult {
        GuestResult {
            name: "a".into(),
            exit: Exit::Code(0),
            tap: tap.into(),
            dmesg: dmesg.into(),
            script_exit: exit,
            console: "booting\nlast line\n".into(),
            seconds: None,
            elapsed: Duration::from_secs(3),
            killed: false,
        }
    }

    fn outcomes(cases: &[Case]) -> Vec<(String, ktap::Outcome)> {
        cases.iter().map(|c| (c.name.clone(), c.outcome)).collect()
    }

    #[test]
    fn passing_guest_counts_cases_and_clean_log() {
        let r = result(
            "TAP version 13\n1..2\nok 1 - one\nok 2 - two\n",
            Some(0),
            "[ 0.1] hello\n",
        );
        let cases = evaluate("s", &r);
        assert_eq!(
            outcomes(&cases),
            [
                ("guest/s/a/one".to_string(), ktap::Outcome::Pass),
                ("guest/s/a/two".to_string(), ktap::Outcome::Pass),
                (
                    "guest/s/a/kernel-log-clean".to_string(),
                    ktap::Outcome::Pass
                ),
            ]
        );
    }

    #[test]
    fn unfinished_guest_shows_its_hang_report() {
        let report = "# 371.2 s after boot, 25 s before the harness's deadline\n\
                      PID STAT PRI PSR WCHAN ARGS\n\
                      1 S 19 0 do_wait sh guest-run.sh\n\
                      212 D 19 1 hvc_write grep -m1 hello /dev/hvc1\n\
                      230 R 19 0 - ps -eo pid,stat,pri,psr,wchan:32,args\n\
                      # stacks\n\
                      212 grep:\n\
                      [<0>] hvc_write+0x1c/0x80\n\
                      # dmesg\n\
                      [    1.0] booting\n\
                      [  370.0] sysrq: Show Blocked State\n\
                      [  370.1] task:grep state:D\n";
        let mut r = result("", None, report);
        r.exit = Exit::TimedOut(Duration::from_secs(5));
        let detail = &evaluate("s", &r)[0].detail;
        for shown in [
            "371.2 s after boot",
            "212 D 19 1 hvc_write",
            "Show Blocked State",
            "task:grep state:D",
        ] {
            assert!(detail.contains(shown), "{shown} not in {detail}");
        }
        for hidden in ["do_wait", "ps -eo", "1.0] booting"] {
            assert!(!detail.contains(hidden), "{hidden} in {detail}");
        }
        // Without a report, nothing is added.
        let mut r = result("", None, "");
        r.exit = Exit::TimedOut(Duration::from_secs(5));
        assert!(!evaluate("s", &r)[0].detail.contains("hang.txt"));
    }

    #[test]
    fn unfinished_guest_fails_with_reason() {
        let mut r = result("", None, "");
        r.exit = Exit::TimedOut(Duration::from_secs(5));
        let cases = evaluate("s", &r);
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].outcome, ktap::Outcome::Fail);
        assert!(
            cases[0].detail.contains("did not finish"),
            "{}",
            cases[0].detail
        );
        assert!(
            cases[0].detail.contains("5 s time limit"),
            "{}",
            cases[0].detail
        );
        assert!(cases[0].detail.contains("last line"));
    }

    #[test]
    fn splat_fails_kernel_log_case() {
        let r = result(
            "TAP version 13\n1..1\nok 1 - x\n",
            Some(0),
            "[ 1.0] WARNING: CPU: 0 PID: 1 at drivers/x.c:1 f+0x1/0x2\n",
        );
        let cases = evaluate("s", &r);
        let log = cases
            .iter()
            .find(|c| c.name.ends_with("kernel-log-clean"))
            .unwrap();
        assert_eq!(log.outcome, ktap::Outcome::Fail);
        assert!(log.detail.contains("WARNING: CPU"));
    }

    #[test]
    fn no_results_or_bad_exit_fail() {
        let cases = evaluate("s", &result("", Some(0), ""));
        assert!(cases
            .iter()
            .any(|c| c.name.ends_with("/results") && c.outcome == ktap::Outcome::Fail));
        let cases = evaluate(
            "s",
            &result("TAP version 13\n1..1\nok 1 - x\n", Some(3), ""),
        );
        assert!(cases
            .iter()
            .any(|c| c.name.ends_with("/exit-status") && c.outcome == ktap::Outcome::Fail));
    }

    #[test]
    fn a_killed_guest_must_not_finish() {
        let tap = "TAP version 13\n1..1\nok 1 - before the kill\n";
        let mut r = result(tap, None, "");
        r.killed = true;
        assert_eq!(
            outcomes(&evaluate("s", &r)),
            [
                ("guest/s/a/before the kill".to_string(), ktap::Outcome::Pass),
                ("guest/s/a/killed".to_string(), ktap::Outcome::Pass),
            ]
        );
        // It finished: the kill came too late or never.
        let mut r = result(tap, Some(0), "");
        r.killed = true;
        let cases = evaluate("s", &r);
        assert!(cases
            .iter()
            .any(|c| c.name.ends_with("/killed") && c.outcome == ktap::Outcome::Fail));
        // What it printed before still counts.
        let mut r = result("TAP version 13\n1..2\nok 1 - x\n", None, "");
        r.killed = true;
        assert!(evaluate("s", &r)
            .iter()
            .any(|c| c.name.ends_with("/tap") && c.outcome == ktap::Outcome::Fail));
    }

    #[test]
    fn revisions_scripts_get_a_v2_boot() {
        let dir = std::env::temp_dir().join(format!("lincell-vm-jobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, header: &str| {
            let p = dir.join(format!("{name}.sh"));
            std::fs::write(&p, format!("# lincell-vm: {header}\n")).unwrap();
            p
        };
        let scripts = [
            script("a-plain", "cpus=1"),
            script("b-both", "ivshmem-doorbell=2:1M revisions=v1,v2"),
            script("c-v2only", "ivshmem-doorbell=2:1M revisions=v2"),
            script("d-device", "ivshmem2=2:1M"),
        ];
        let names = |jobs: &[Job]| -> Vec<String> {
            jobs.iter()
                .map(|j| match j {
                    Job::Boot(s) => format!("v1 {}", script_name(&s[0])),
                    Job::V2Boot(s) => format!("v2 {}", script_name(&s[0])),
                    other => format!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(
            names(&x86_jobs(&scripts, None).unwrap()),
            [
                "v1 a-plain",
                "v1 b-both",
                "v1 d-device",
                "v2 b-both",
                "v2 c-v2only"
            ]
        );
        assert_eq!(
            names(&x86_jobs(&scripts, Some("v2/")).unwrap()),
            ["v2 b-both", "v2 c-v2only"]
        );
        assert_eq!(
            names(&x86_jobs(&scripts, Some("b-both")).unwrap()),
            ["v1 b-both", "v2 b-both"]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn summary_line() {
        let mut t = Totals {
            passed: 3,
            failed: 1,
            ..Totals::default()
        };
        assert_eq!(t.summary(), "3 passed, 1 failed");
        t.skipped = 2;
        assert_eq!(t.summary(), "3 passed, 1 failed, 2 skipped");
    }
}
