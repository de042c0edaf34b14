// SPDX-License-Identifier: GPL-2.0

//! cgroup v2 cpuset *isolated partitions* for the CPUs the module isolates.
//!
//! The module steers interrupts and kernel threads; what it cannot do from a
//! module (`housekeeping_update()` is not exported) a cpuset isolated
//! partition does: no load balancing onto the CPUs, user tasks kept off,
//! unbound workqueues re-homed. `lincell isolate` creates one partition
//! named `lincell-<cpus>` under the cgroup v2 root, and `lincell release`
//! removes it, before the module restores its snapshot (last in, first out).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Prefix of the partitions this tool creates.
const PREFIX: &str = "lincell-";

/// The cgroup v2 mount point, from `/proc/self/mounts`.
pub(crate) fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts_cgroup2(&mounts)
}

fn mounts_cgroup2(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
    })
}

/// The partition name for a cpulist (`2-3,6` → `lincell-2-3_6`).
pub(crate) fn name(cpus: &str) -> String {
    format!("{PREFIX}{}", cpus.replace(',', "_"))
}

/// What happened to the partition.
pub(crate) enum Outcome {
    /// Created and valid.
    Created {
        /// Its directory.
        path: PathBuf,
        /// The root's `cpuset.cpus.isolated` afterwards.
        isolated: String,
    },
    /// Not created, and why.
    Skipped(String),
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    fs::write(path, text).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {text:?} to {}: {e}", path.display()),
        )
    })
}

/// Creates an isolated partition for `cpus` (a cpulist), or explains why
/// not. Never fails the isolation itself: the module's part stands alone.
pub(crate) fn create(cpus: &str) -> Outcome {
    let Some(root) = cgroup2_root() else {
        return Outcome::Skipped(
            "no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup to get partitions)".into(),
        );
    };
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|c| c == "cpuset") {
        return Outcome::Skipped(format!(
            "the cpuset controller is not available in {} (kernel without CONFIG_CPUSETS, or bound to cgroup v1)",
            root.display()
        ));
    }
    if !root.join("cpuset.cpus.isolated").exists() {
        return Outcome::Skipped(
            "this kernel has no cpuset isolated partitions (cpuset.cpus.isolated missing)".into(),
        );
    }
    let dir = root.join(name(cpus));
    let result = (|| -> io::Result<String> {
        let subtree = fs::read_to_string(root.join("cgroup.subtree_control"))?;
        if !subtree.split_whitespace().any(|c| c == "cpuset") {
            write(&root.join("cgroup.subtree_control"), "+cpuset")?;
        }
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            r => r?,
        }
        write(&dir.join("cpuset.cpus"), cpus)?;
        write(&dir.join("cpuset.cpus.partition"), "isolated")?;
        // A partition that the kernel cannot honour reads back as
        // "isolated invalid (reason)".
        let state = fs::read_to_string(dir.join("cpuset.cpus.partition"))?;
        if state.trim() != "isolated" {
            return Err(io::Error::other(format!(
                "the kernel reports the partition as {:?}",
                state.trim()
            )));
        }
        Ok(fs::read_to_string(root.join("cpuset.cpus.isolated"))?
            .trim()
            .to_string())
    })();
    match result {
        Ok(isolated) => Outcome::Created {
            path: dir,
            isolated,
        },
        Err(e) => {
            let _ = remove_dir(&dir);
            Outcome::Skipped(format!("could not create {}: {e}", dir.display()))
        }
    }
}

fn remove_dir(dir: &Path) -> io::Result<()> {
    // Back to a member first, so the CPUs return to the parent at once.
    let _ = fs::write(dir.join("cpuset.cpus.partition"), "member");
    fs::remove_dir(dir)
}

/// Removes the partition for `cpus` (`None`: every lincell partition).
/// Returns the removed directories.
pub(crate) fn remove(cpus: Option<&str>) -> io::Result<Vec<PathBuf>> {
    let Some(root) = cgroup2_root() else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for d in list_in(&root)? {
        let matches = match cpus {
            Some(c) => d.file_name().and_then(|n| n.to_str()) == Some(name(c).as_str()),
            None => true,
        };
        if matches {
            remove_dir(&d)?;
            removed.push(d);
        }
    }
    Ok(removed)
}

/// The lincell partitions and their state (`cpuset.cpus.partition`).
pub(crate) fn list() -> Vec<(PathBuf, String)> {
    let Some(root) = cgroup2_root() else {
        return Vec::new();
    };
    list_in(&root)
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let state = fs::read_to_string(d.join("cpuset.cpus.partition")).unwrap_or_default();
            (d, state.trim().to_string())
        })
        .collect()
}

fn list_in(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(root)? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(PREFIX) && e.file_type()?.is_dir() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount() {
        let m = "proc /proc proc rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n";
        assert_eq!(mounts_cgroup2(m), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(mounts_cgroup2("proc /proc proc rw 0 0\n"), None);
    }

    #[test]
    fn partition_names_are_path_safe() {
        assert_eq!(name("2-3"), "lincell-2-3");
        assert_eq!(name("2-3,6"), "lincell-2-3_6");
    }
}
