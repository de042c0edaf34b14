// SPDX-License-Identifier: GPL-2.0

//! `lincell run`: start a command where an isolation put the CPUs.
//!
//! A cpuset isolated partition admits only the tasks in its cgroup: a task
//! outside it that asks for an isolated CPU (`taskset`, `cyclictest -a`)
//! gets `EINVAL` and keeps running elsewhere. `lincell run` does the three
//! steps in order, in its own process, and then `exec`s the command, which
//! inherits all three: join the lincell partition that holds the CPUs
//! (`cgroup.procs`), set the CPU affinity (`sched_setaffinity`), and set
//! the real-time policy (`sched_setscheduler`, `SCHED_FIFO`/`SCHED_RR`).

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use lincell_shared::cpu_isolate::cpulist;
use lincell_shared::cpu_isolate::cpuset::CpuSet;

use super::cpuset;
use crate::error::{Error, Result};

/// A real-time scheduling policy and its priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// `SCHED_FIFO`.
    Fifo(u8),
    /// `SCHED_RR`.
    Rr(u8),
}

impl Policy {
    /// From the `--fifo`/`--rr` options (clap keeps them exclusive).
    pub(crate) fn from_options(fifo: Option<u8>, rr: Option<u8>) -> Option<Self> {
        fifo.map(Policy::Fifo).or(rr.map(Policy::Rr))
    }

    /// The same options again, for a child `lincell run`.
    pub(crate) fn to_args(self) -> [String; 2] {
        match self {
            Policy::Fifo(p) => ["--fifo".into(), p.to_string()],
            Policy::Rr(p) => ["--rr".into(), p.to_string()],
        }
    }

    fn raw(self) -> (libc::c_int, u8) {
        match self {
            Policy::Fifo(p) => (libc::SCHED_FIFO, p),
            Policy::Rr(p) => (libc::SCHED_RR, p),
        }
    }
}

/// Moves the calling process into the lincell partition that holds every
/// CPU of `cpus`, if there is one; `false` if none does.
fn join_partition(cpus: &CpuSet) -> Result<bool> {
    for (dir, state) in cpuset::list() {
        let Ok(text) = fs::read_to_string(dir.join("cpuset.cpus.effective")) else {
            continue;
        };
        let Ok(held) = cpulist::parse(text.trim().as_bytes()) else {
            continue;
        };
        if state != "isolated" || !cpus.is_subset(&held) {
            continue;
        }
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, std::process::id().to_string())
            .map_err(|e| Error::io(format!("cannot join {}", procs.display()), e))?;
        return Ok(true);
    }
    // CPUs isolated by a partition lincell did not make cannot be reached
    // from here: say so rather than fail with a bare EINVAL.
    if let Some(root) = cpuset::cgroup2_root() {
        let isolated = fs::read_to_string(root.join("cpuset.cpus.isolated")).unwrap_or_default();
        if let Ok(isolated) = cpulist::parse(isolated.trim().as_bytes()) {
            let taken = cpus.intersection(&isolated);
            if !taken.is_empty() {
                return Err(Error::Usage(format!(
                    "CPUs {taken} belong to a cpuset isolated partition that lincell did not create; \
                     join its cgroup (echo $$ > DIR/cgroup.procs) and use taskset/chrt"
                )));
            }
        }
    }
    Ok(false)
}

/// Sets the calling thread's CPU affinity to `cpus`.
pub(crate) fn set_affinity(cpus: &CpuSet) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in cpus.iter() {
        let cpu = cpu as usize;
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(Error::Usage(format!(
                "CPU {cpu} is beyond what this tool can name"
            )));
        }
        // SAFETY: `cpu` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(Error::io(
            format!(
                "cannot run on CPUs {cpus} (offline, not present, or outside this process's cpuset)"
            ),
            e,
        ));
    }
    Ok(())
}

/// Sets the calling thread's scheduling policy.
pub(crate) fn set_policy(policy: Policy) -> Result<()> {
    let (raw, prio) = policy.raw();
    // musl's sched_param has more (reserved) fields than glibc's.
    // SAFETY: sched_param is plain data; zeroed is a valid value.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = libc::c_int::from(prio);
    // SAFETY: `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, raw, &param) } != 0 {
        let e = io::Error::last_os_error();
        return Err(Error::io(
            format!(
                "cannot set {policy:?} (needs CAP_SYS_NICE or an RLIMIT_RTPRIO that allows it)"
            ),
            e,
        ));
    }
    Ok(())
}

/// Places the calling process (partition, affinity, policy) and replaces
/// it with `command`; returns only on failure.
pub(crate) fn exec(cpus: &CpuSet, policy: Option<Policy>, command: &[OsString]) -> Result<()> {
    let (program, args) = command.split_first().ok_or_else(|| {
        Error::Usage("no command to run (lincell run --cpus LIST -- COMMAND ...)".into())
    })?;
    if !join_partition(cpus)? {
        eprintln!(
            "lincell run: no isolated cpuset partition holds CPUs {cpus} (`lincell isolate {cpus}` makes one): \
             setting the CPU affinity only"
        );
    }
    set_affinity(cpus)?;
    if let Some(p) = policy {
        set_policy(p)?;
    }
    let e = Command::new(program).args(args).exec();
    Err(Error::io(
        format!("cannot run {}", program.to_string_lossy()),
        e,
    ))
}

/// The exit status to report for a child that ended with `status`: its
/// code, or 128 + the signal that killed it (as shells do).
pub(crate) fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_through_their_options() {
        assert_eq!(Policy::from_options(Some(80), None), Some(Policy::Fifo(80)));
        assert_eq!(Policy::from_options(None, Some(5)), Some(Policy::Rr(5)));
        assert_eq!(Policy::from_options(None, None), None);
        assert_eq!(Policy::Fifo(80).to_args(), ["--fifo", "80"]);
        assert_eq!(Policy::Rr(5).to_args(), ["--rr", "5"]);
    }

    #[test]
    fn child_statuses_map_like_a_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(libc::SIGKILL)),
            137
        );
    }

    #[test]
    fn an_empty_command_is_a_usage_error() {
        let e = exec(&CpuSet::new(), None, &[]).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
    }
}
