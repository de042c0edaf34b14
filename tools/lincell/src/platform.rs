// SPDX-License-Identifier: GPL-2.0

//! `lincell platform`: this machine's virtualization and isolation hooks,
//! classified the way a system designer partitioning it needs them.
//!
//! Everything comes from files any Linux exposes (`/proc/cpuinfo`,
//! `/proc/interrupts`, `/proc/cmdline`, `/proc/filesystems`, sysfs, the
//! cgroup v2 root, and the kernel log when readable); [`Sources`] holds
//! them as text, so the classification ([`classify`]) is tested on the host
//! with other machines' files.

use std::fs;
use std::path::Path;

use clap::Args as ClapArgs;
use serde::Serialize;

use crate::error::{Error, Result};

/// Classify this machine's virtualization and isolation hooks (CPU, IOMMU, caches, interrupts, kernel).
#[derive(ClapArgs, Debug)]
#[command(
    long_about = "\
Classify what this machine offers for partitioning it into cells, from what
the running kernel exposes (no module needed; root reads a little more):

  cpu virtualization   VT-x (vmx) / AMD-V (svm) in the CPU flags; on arm64
                       whether the kernel was started at EL2 (kernel log)
  hypervisor           whether this kernel itself runs in a virtual machine
  iommu                IOMMU units (/sys/class/iommu) and, on x86, interrupt
                       remapping in use (IR- interrupt chips)
  cache/memory         resctrl (Intel RDT CAT/CDP/MBA, AMD QoS, arm64 MPAM)
  partitioning
  interrupt controller x2APIC / xAPIC with IO-APIC; GICv2/GICv3 and ITS
  sr-iov               PCI devices that can create virtual functions
  ivshmem              ivshmem devices (1af4:1110 v1, 110a:4106 v2) and
                       their drivers
  preemption           PREEMPT_RT, full, voluntary or none (and dynamic)
  isolation            nohz_full=, rcu_nocbs=, isolcpus= in force, cgroup v2
                       cpuset isolated partitions

Text by default; --json prints one JSON object with the same fields (a
field that cannot be known from here is null).",
    after_help = "\
Examples:
  lincell platform
  lincell platform --json | jq .iommu"
)]
pub struct Args {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// The text the classification reads; empty where a file is missing.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `uname -m`.
    pub arch: String,
    /// `uname -v` (the kernel's build string: `PREEMPT_RT`, `PREEMPT_DYNAMIC`).
    pub version: String,
    /// `/proc/cpuinfo`.
    pub cpuinfo: String,
    /// `/proc/interrupts`.
    pub interrupts: String,
    /// `/proc/cmdline`.
    pub cmdline: String,
    /// `/proc/filesystems`.
    pub filesystems: String,
    /// The kernel log, if this process may read it.
    pub kernel_log: Option<String>,
    /// `/sys/kernel/realtime` (`1` on PREEMPT_RT).
    pub realtime: String,
    /// `/sys/kernel/debug/sched/preempt` (`none voluntary (full)`), if
    /// debugfs is mounted.
    pub preempt_dynamic: Option<String>,
    /// `/sys/hypervisor/type`.
    pub hypervisor_type: String,
    /// `/sys/class/dmi/id/sys_vendor`.
    pub dmi_vendor: String,
    /// x86: the hypervisor's CPUID signature (leaf 0x40000000), if the
    /// CPU says one is present.
    pub cpuid_hypervisor: Option<String>,
    /// `/proc/device-tree/compatible` (NUL-separated; arm64 boards).
    pub dt_compatible: String,
    /// Entries of `/sys/class/iommu`.
    pub iommu_units: Vec<String>,
    /// Whether `/sys/fs/resctrl/info` exists (resctrl mounted).
    pub resctrl_mounted: bool,
    /// PCI functions: (address, vendor, device, driver, SR-IOV total VFs).
    pub pci: Vec<PciFunction>,
    /// `/sys/devices/system/cpu/{online,nohz_full,isolated}`.
    pub cpus_online: String,
    /// `/sys/devices/system/cpu/nohz_full`.
    pub nohz_full: String,
    /// `/sys/devices/system/cpu/isolated`.
    pub isolated: String,
    /// The cgroup v2 root's `cpuset.cpus.isolated`, if cpusets are there.
    pub cpuset_isolated: Option<String>,
    /// Top-level cgroups whose `cpuset.cpus.partition` is not `member`:
    /// (name, partition state, `cpuset.cpus.effective`).
    pub partitions: Vec<(String, String, String)>,
}

/// One PCI function as sysfs shows it.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct PciFunction {
    /// `0000:00:03.0`.
    pub address: String,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// The bound driver's name.
    pub driver: Option<String>,
    /// `sriov_totalvfs`, for functions that have it.
    pub sriov_total_vfs: Option<u32>,
}

/// The classification; its JSON form is documented in `Documentation/platform.md`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Platform {
    /// Architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// Hardware support for running guests.
    pub cpu_virtualization: CpuVirtualization,
    /// The hypervisor this kernel runs under, or null on bare metal.
    pub hypervisor: Option<String>,
    /// IOMMU and interrupt remapping.
    pub iommu: Iommu,
    /// Cache and memory-bandwidth partitioning.
    pub cache_partitioning: CachePartitioning,
    /// Interrupt controller.
    pub interrupt_controller: String,
    /// PCI functions that can create virtual functions.
    pub sriov: Vec<PciFunction>,
    /// ivshmem devices.
    pub ivshmem: Vec<Ivshmem>,
    /// Kernel preemption model.
    pub preemption: String,
    /// CPU isolation in force.
    pub isolation: Isolation,
}

/// `cpu_virtualization`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CpuVirtualization {
    /// `vmx`, `svm`, `el2`, or null if none was found.
    pub kind: Option<String>,
    /// Whether a hypervisor could use it here (null: cannot tell).
    pub usable: Option<bool>,
}

/// `iommu`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Iommu {
    /// IOMMU units the kernel registered (`dmar0`, `smmu3.0x...`).
    pub units: Vec<String>,
    /// Interrupt remapping in use (x86: `IR-` chips); null where the
    /// interrupt chips do not say (arm64: the GIC ITS isolates MSIs).
    pub interrupt_remapping: Option<bool>,
}

/// `cache_partitioning`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CachePartitioning {
    /// The kernel supports resctrl.
    pub resctrl: bool,
    /// resctrl is mounted at `/sys/fs/resctrl`.
    pub mounted: bool,
    /// Cache allocation/partitioning features the CPU reports
    /// (`cat_l3`, `cat_l2`, `cdp_l3`, `mba`, `mpam`).
    pub features: Vec<String>,
}

/// `ivshmem[]`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Ivshmem {
    /// PCI address.
    pub address: String,
    /// 1 (QEMU `1af4:1110`) or 2 (ivshmem 2.0, `110a:4106`).
    pub revision: u8,
    /// The bound driver.
    pub driver: Option<String>,
}

/// `isolation`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Isolation {
    /// Online CPUs.
    pub online: String,
    /// `nohz_full=` CPUs (empty: none).
    pub nohz_full: String,
    /// `rcu_nocbs=` from the command line (empty: none).
    pub rcu_nocbs: String,
    /// `isolcpus=` CPUs (empty: none).
    pub isolcpus: String,
    /// CPUs in cgroup v2 cpuset isolated partitions (null: no cpusets).
    pub cpuset_isolated: Option<String>,
    /// Partitions: `name state cpus`.
    pub partitions: Vec<String>,
}

/// The flags of the first CPU (`flags` on x86, `Features` on arm64).
fn cpu_flags(cpuinfo: &str) -> Vec<&str> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "flags" | "Features").then_some(v)
        })
        .map(|v| v.split_whitespace().collect())
        .unwrap_or_default()
}

/// The value of `key=` on a kernel command line (the last one wins).
fn cmdline_value(cmdline: &str, key: &str) -> String {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .unwrap_or_default()
        .to_string()
}

/// The interrupt chip names in `/proc/interrupts`.
fn irq_chips(interrupts: &str) -> Vec<&str> {
    let mut chips: Vec<&str> = interrupts
        .lines()
        .skip(1)
        .filter_map(|l| {
            // `N: counts... CHIP HWIRQ [edge|level] name`: the first field
            // after the counts that is not a number.
            l.split_whitespace()
                .skip(1)
                .find(|w| w.parse::<u64>().is_err())
        })
        .collect();
    chips.sort_unstable();
    chips.dedup();
    chips
}

/// A readable name for a CPUID hypervisor signature.
fn hypervisor_name(sig: &str) -> String {
    let sig = sig.trim_end_matches('\0');
    match sig {
        "TCGTCGTCGTCG" => "QEMU (TCG)".into(),
        "KVMKVMKVM" => "KVM".into(),
        "Microsoft Hv" => "Hyper-V".into(),
        "VMwareVMware" => "VMware".into(),
        "XenVMMXenVMM" => "Xen".into(),
        "ACRNACRNACRN" => "ACRN".into(),
        "Jailhouse" => "Jailhouse".into(),
        "bhyve bhyve" => "bhyve".into(),
        "" => "unknown".into(),
        other => other.escape_default().to_string(),
    }
}

/// x86: the hypervisor signature of CPUID leaf 0x40000000, if CPUID leaf
/// 1 says a hypervisor is present.
#[cfg(target_arch = "x86_64")]
fn cpuid_hypervisor() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    // CPUID exists on every x86_64 CPU; leaf 1 ECX bit 31: hypervisor.
    if __cpuid(1).ecx & (1 << 31) == 0 {
        return None;
    }
    let r = __cpuid(0x4000_0000);
    let bytes: Vec<u8> = [r.ebx, r.ecx, r.edx]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_hypervisor() -> Option<String> {
    None
}

fn cpulist_or_empty(s: &str) -> String {
    let s = s.trim();
    if s == "(null)" {
        String::new()
    } else {
        s.to_string()
    }
}

/// Classifies `s`.
pub fn classify(s: &Sources) -> Platform {
    let flags = cpu_flags(&s.cpuinfo);
    let has = |f: &str| flags.contains(&f);
    let chips = irq_chips(&s.interrupts);
    let chip = |p: &str| chips.iter().any(|c| c.starts_with(p));
    let x86 = s.arch == "x86_64" || s.arch.starts_with('i');
    let log = s.kernel_log.as_deref();

    let cpu_virtualization = if has("vmx") || has("svm") {
        CpuVirtualization {
            kind: Some(if has("vmx") { "vmx" } else { "svm" }.into()),
            usable: Some(true),
        }
    } else if x86 {
        CpuVirtualization {
            kind: None,
            usable: Some(false),
        }
    } else {
        // arm64: usable by a hypervisor only if the kernel was entered at EL2.
        let el2 = log.map(|l| l.contains("started at EL2"));
        let el1 = log.map(|l| l.contains("started at EL1"));
        match (el2, el1) {
            (Some(true), _) => CpuVirtualization {
                kind: Some("el2".into()),
                usable: Some(true),
            },
            (_, Some(true)) => CpuVirtualization {
                kind: None,
                usable: Some(false),
            },
            _ => CpuVirtualization {
                kind: None,
                usable: None,
            },
        }
    };

    let dt_virt = s.dt_compatible.split('\0').any(|c| c == "linux,dummy-virt");
    let hypervisor = if let Some(sig) = &s.cpuid_hypervisor {
        Some(hypervisor_name(sig))
    } else if !s.hypervisor_type.trim().is_empty() {
        Some(s.hypervisor_type.trim().to_string())
    } else if dt_virt {
        Some("QEMU (virt board)".into())
    } else if has("hypervisor") || log.is_some_and(|l| l.contains("Hypervisor detected")) {
        let vendor = s.dmi_vendor.trim();
        Some(if vendor.is_empty() {
            "unknown".into()
        } else {
            vendor.into()
        })
    } else {
        match s.dmi_vendor.trim() {
            "QEMU" => Some("QEMU".into()),
            _ => None,
        }
    };

    let iommu = Iommu {
        units: s.iommu_units.clone(),
        interrupt_remapping: x86.then(|| chip("IR-")),
    };

    let mut features: Vec<String> = ["cat_l3", "cat_l2", "cdp_l3", "cdp_l2", "mba", "mpam"]
        .iter()
        .filter(|f| has(f))
        .map(|f| f.to_string())
        .collect();
    if !x86 && log.is_some_and(|l| l.contains("MPAM")) && !features.iter().any(|f| f == "mpam") {
        features.push("mpam".into());
    }
    let cache_partitioning = CachePartitioning {
        resctrl: s
            .filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some("resctrl")),
        mounted: s.resctrl_mounted,
        features,
    };

    let interrupt_controller = if x86 {
        let apic = if has("x2apic") { "x2APIC" } else { "xAPIC" };
        if chip("IO-APIC") || chip("IR-IO-APIC") {
            format!("{apic}, IO-APIC")
        } else {
            apic.into()
        }
    } else if chip("GICv3") {
        // The ITS shows as a chip only once an MSI uses it; its probe is
        // in the kernel log (`ITS@0x...`).
        if chip("ITS") || log.is_some_and(|l| l.contains("ITS@")) {
            "GICv3 with ITS".into()
        } else {
            "GICv3".into()
        }
    } else if chip("GIC") {
        "GICv2".into()
    } else {
        chips.first().map_or("unknown", |c| c).into()
    };

    let sriov = s
        .pci
        .iter()
        .filter(|f| f.sriov_total_vfs.is_some_and(|n| n > 0))
        .cloned()
        .collect();
    let ivshmem = s
        .pci
        .iter()
        .filter_map(|f| {
            let revision = match (f.vendor, f.device) {
                (0x1af4, 0x1110) => 1,
                (0x110a, 0x4106) => 2,
                _ => return None,
            };
            Some(Ivshmem {
                address: f.address.clone(),
                revision,
                driver: f.driver.clone(),
            })
        })
        .collect();

    let preemption = if s.realtime.trim() == "1" || s.version.contains("PREEMPT_RT") {
        "PREEMPT_RT".to_string()
    } else if let Some(d) = &s.preempt_dynamic {
        // `none voluntary (full) lazy`: the chosen one is in parentheses.
        let chosen = d
            .split_whitespace()
            .find_map(|w| w.strip_prefix('(')?.strip_suffix(')'))
            .unwrap_or("unknown");
        format!("{chosen} (dynamic)")
    } else if s.version.contains("PREEMPT_DYNAMIC") {
        "dynamic".into()
    } else if s.version.contains("PREEMPT") {
        "full".into()
    } else {
        "none or voluntary".into()
    };

    let isolation = Isolation {
        online: s.cpus_online.trim().to_string(),
        nohz_full: cpulist_or_empty(&s.nohz_full),
        rcu_nocbs: cmdline_value(&s.cmdline, "rcu_nocbs"),
        isolcpus: cpulist_or_empty(&s.isolated),
        cpuset_isolated: s.cpuset_isolated.as_ref().map(|c| c.trim().to_string()),
        partitions: s
            .partitions
            .iter()
            .map(|(n, st, c)| format!("{n} {st} {c}"))
            .collect(),
    };

    Platform {
        arch: s.arch.clone(),
        cpu_virtualization,
        hypervisor,
        iommu,
        cache_partitioning,
        interrupt_controller,
        sriov,
        ivshmem,
        preemption,
        isolation,
    }
}

fn read(path: impl AsRef<Path>) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn read_hex(path: &Path) -> u16 {
    u16::from_str_radix(read(path).trim().trim_start_matches("0x"), 16).unwrap_or(0)
}

fn uname() -> (String, String) {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Default::default();
    }
    let field = |f: &[libc::c_char]| {
        // CAST: a C char is a byte.
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (field(&u.machine), field(&u.version))
}

/// The kernel log through `klogctl` (needs CAP_SYSLOG or a permissive
/// `dmesg_restrict`).
fn kernel_log() -> Option<String> {
    // SAFETY: SYSLOG_ACTION_SIZE_BUFFER (10) takes no buffer.
    let size = unsafe { libc::klogctl(10, std::ptr::null_mut(), 0) };
    let size = usize::try_from(size).ok().filter(|s| *s > 0)?;
    let mut buf = vec![0u8; size];
    // SAFETY: SYSLOG_ACTION_READ_ALL (3) writes at most `size` bytes.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), i32::try_from(size).ok()?) };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads every source from this machine.
pub fn gather() -> Sources {
    let (arch, version) = uname();
    let mut pci = Vec::new();
    if let Ok(dir) = fs::read_dir("/sys/bus/pci/devices") {
        for e in dir.flatten() {
            let p = e.path();
            pci.push(PciFunction {
                address: e.file_name().to_string_lossy().into_owned(),
                vendor: read_hex(&p.join("vendor")),
                device: read_hex(&p.join("device")),
                driver: fs::read_link(p.join("driver"))
                    .ok()
                    .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned())),
                sriov_total_vfs: read(p.join("sriov_totalvfs")).trim().parse().ok(),
            });
        }
    }
    pci.sort_by(|a, b| a.address.cmp(&b.address));
    let mut iommu_units: Vec<String> = fs::read_dir("/sys/class/iommu")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    iommu_units.sort();
    let root = crate::cpu::cgroup2_root();
    let cpuset_isolated = root
        .as_ref()
        .and_then(|r| fs::read_to_string(r.join("cpuset.cpus.isolated")).ok());
    let mut partitions = Vec::new();
    if let Some(r) = &root {
        for e in fs::read_dir(r).into_iter().flatten().flatten() {
            let state = read(e.path().join("cpuset.cpus.partition"));
            let state = state.trim();
            if !state.is_empty() && state != "member" {
                partitions.push((
                    e.file_name().to_string_lossy().into_owned(),
                    state.to_string(),
                    read(e.path().join("cpuset.cpus.effective"))
                        .trim()
                        .to_string(),
                ));
            }
        }
    }
    partitions.sort();
    Sources {
        arch,
        version,
        cpuinfo: read("/proc/cpuinfo"),
        interrupts: read("/proc/interrupts"),
        cmdline: read("/proc/cmdline"),
        filesystems: read("/proc/filesystems"),
        kernel_log: kernel_log(),
        realtime: read("/sys/kernel/realtime"),
        preempt_dynamic: fs::read_to_string("/sys/kernel/debug/sched/preempt").ok(),
        hypervisor_type: read("/sys/hypervisor/type"),
        dmi_vendor: read("/sys/class/dmi/id/sys_vendor"),
        cpuid_hypervisor: cpuid_hypervisor(),
        dt_compatible: read("/proc/device-tree/compatible"),
        iommu_units,
        resctrl_mounted: Path::new("/sys/fs/resctrl/info").exists(),
        pci,
        cpus_online: read("/sys/devices/system/cpu/online"),
        nohz_full: read("/sys/devices/system/cpu/nohz_full"),
        isolated: read("/sys/devices/system/cpu/isolated"),
        cpuset_isolated,
        partitions,
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "none"
    } else {
        s
    }
}

/// The text report.
pub fn render(p: &Platform) -> String {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<22}{v}\n"));
    line("architecture", p.arch.clone());
    line(
        "cpu virtualization",
        match (&p.cpu_virtualization.kind, p.cpu_virtualization.usable) {
            (Some(k), _) => format!("{k} (usable by a hypervisor)"),
            (None, Some(false)) => "none available to this kernel".into(),
            _ => "unknown (the kernel log is not readable)".into(),
        },
    );
    line(
        "hypervisor",
        p.hypervisor
            .clone()
            .map_or("none (bare metal)".into(), |h| {
                format!("{h} (this kernel is a guest)")
            }),
    );
    line("iommu", list(&p.iommu.units));
    line(
        "interrupt remapping",
        yes_no(p.iommu.interrupt_remapping).to_string(),
    );
    line(
        "cache partitioning",
        format!(
            "resctrl {}{}; features: {}",
            if p.cache_partitioning.resctrl {
                "supported"
            } else {
                "not in this kernel"
            },
            if p.cache_partitioning.mounted {
                " (mounted)"
            } else {
                ""
            },
            list(&p.cache_partitioning.features)
        ),
    );
    line("interrupt controller", p.interrupt_controller.clone());
    let sriov: Vec<String> = p
        .sriov
        .iter()
        .map(|f| format!("{} ({} VFs)", f.address, f.sriov_total_vfs.unwrap_or(0)))
        .collect();
    line("sr-iov", list(&sriov));
    let ivshmem: Vec<String> = p
        .ivshmem
        .iter()
        .map(|d| {
            format!(
                "{} v{} ({})",
                d.address,
                d.revision,
                d.driver.as_deref().unwrap_or("no driver")
            )
        })
        .collect();
    line("ivshmem", list(&ivshmem));
    line("preemption", p.preemption.clone());
    let i = &p.isolation;
    line("online cpus", i.online.clone());
    line("nohz_full", or_none(&i.nohz_full).into());
    line("rcu_nocbs", or_none(&i.rcu_nocbs).into());
    line("isolcpus", or_none(&i.isolcpus).into());
    line(
        "cpuset isolated",
        i.cpuset_isolated
            .as_deref()
            .map_or("no cgroup v2 cpusets".into(), |c| or_none(c).to_string()),
    );
    line("cpuset partitions", list(&i.partitions));
    out
}

/// `lincell platform`.
pub fn run(a: Args) -> Result<()> {
    use std::io::Write as _;
    let p = classify(&gather());
    let text = if a.json {
        let mut t = serde_json::to_string_pretty(&p)
            .map_err(|e| Error::Failed(format!("cannot encode the report: {e}")))?;
        t.push('\n');
        t
    } else {
        render(&p)
    };
    match std::io::stdout().write_all(text.as_bytes()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| Error::io("stdout", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x86_tcg_guest() -> Sources {
        Sources {
            arch: "x86_64".into(),
            version: "#1 SMP PREEMPT_RT Debian 7.3.4".into(),
            cpuinfo: "processor\t: 0\nflags\t\t: fpu vme de pse x2apic hypervisor\n".into(),
            interrupts: "           CPU0       CPU1\n  0:         41          0   IO-APIC   2-edge      timer\n 24:          0          0   PCI-MSI-0000:00:03.0   0-edge      ivshmem\nLOC:      10241       9876   Local timer interrupts\n".into(),
            cmdline: "console=ttyS0 nohz_full=2-3 rcu_nocbs=2-3".into(),
            filesystems: "nodev\tsysfs\nnodev\tcgroup2\n".into(),
            realtime: "1\n".into(),
            dmi_vendor: "QEMU\n".into(),
            cpuid_hypervisor: Some("TCGTCGTCGTCG".into()),
            pci: vec![PciFunction {
                address: "0000:00:03.0".into(),
                vendor: 0x1af4,
                device: 0x1110,
                driver: Some("ivshmem".into()),
                sriov_total_vfs: None,
            }],
            cpus_online: "0-3\n".into(),
            nohz_full: "2-3\n".into(),
            isolated: "\n".into(),
            cpuset_isolated: Some("\n".into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_x86_tcg_guest() {
        let p = classify(&x86_tcg_guest());
        assert_eq!(p.cpu_virtualization.kind, None);
        assert_eq!(p.cpu_virtualization.usable, Some(false));
        assert_eq!(p.hypervisor.as_deref(), Some("QEMU (TCG)"));
        assert_eq!(p.iommu.interrupt_remapping, Some(false));
        assert_eq!(p.interrupt_controller, "x2APIC, IO-APIC");
        assert_eq!(p.preemption, "PREEMPT_RT");
        assert_eq!(p.ivshmem.len(), 1);
        assert_eq!(p.ivshmem[0].revision, 1);
        assert_eq!(p.isolation.nohz_full, "2-3");
        assert_eq!(p.isolation.rcu_nocbs, "2-3");
        assert_eq!(p.isolation.isolcpus, "");
        assert_eq!(p.isolation.cpuset_isolated.as_deref(), Some(""));
        assert!(!p.cache_partitioning.resctrl);
        let text = render(&p);
        assert!(
            text.contains("preemption            PREEMPT_RT\n"),
            "{text}"
        );
        assert!(
            text.contains("ivshmem               0000:00:03.0 v1 (ivshmem)\n"),
            "{text}"
        );
    }

    #[test]
    fn a_bare_metal_server_with_vtx_iommu_and_rdt() {
        let mut s = x86_tcg_guest();
        s.cpuinfo = "flags\t: vmx x2apic cat_l3 cdp_l3 mba\n".into();
        s.dmi_vendor = "Dell Inc.".into();
        s.cpuid_hypervisor = None;
        s.iommu_units = vec!["dmar0".into(), "dmar1".into()];
        s.interrupts = "  CPU0\n 0: 1 IR-IO-APIC 2-edge timer\n".into();
        s.filesystems = "nodev\tresctrl\n".into();
        s.realtime = String::new();
        s.version = "#1 SMP PREEMPT_DYNAMIC".into();
        s.preempt_dynamic = Some("none voluntary (full) lazy\n".into());
        s.pci.push(PciFunction {
            address: "0000:3b:00.0".into(),
            vendor: 0x8086,
            device: 0x1572,
            driver: Some("i40e".into()),
            sriov_total_vfs: Some(64),
        });
        let p = classify(&s);
        assert_eq!(p.cpu_virtualization.kind.as_deref(), Some("vmx"));
        assert_eq!(p.hypervisor, None);
        assert_eq!(p.iommu.units, ["dmar0", "dmar1"]);
        assert_eq!(p.iommu.interrupt_remapping, Some(true));
        assert_eq!(p.interrupt_controller, "x2APIC, IO-APIC");
        assert_eq!(p.cache_partitioning.features, ["cat_l3", "cdp_l3", "mba"]);
        assert!(p.cache_partitioning.resctrl);
        assert_eq!(p.preemption, "full (dynamic)");
        assert_eq!(p.sriov.len(), 1);
    }

    #[test]
    fn an_arm64_virt_board() {
        let s = Sources {
            arch: "aarch64".into(),
            version: "#1 SMP".into(),
            cpuinfo: "Features\t: fp asimd evtstrm\n".into(),
            interrupts: "  CPU0 CPU1\n 11: 5 6 GICv3 27 Level arch_timer\n".into(),
            // No MSI in use: only the log knows the ITS.
            kernel_log: Some(
                "ITS@0x08080000: allocated 8192 Devices\nCPU: All CPU(s) started at EL1\n".into(),
            ),
            dt_compatible: "linux,dummy-virt\0".into(),
            pci: vec![PciFunction {
                address: "0000:00:02.0".into(),
                vendor: 0x110a,
                device: 0x4106,
                driver: None,
                sriov_total_vfs: None,
            }],
            ..Default::default()
        };
        let p = classify(&s);
        assert_eq!(p.cpu_virtualization.usable, Some(false));
        assert_eq!(p.interrupt_controller, "GICv3 with ITS");
        assert_eq!(p.iommu.interrupt_remapping, None);
        assert_eq!(p.ivshmem[0].revision, 2);
        assert_eq!(p.preemption, "none or voluntary");
        assert_eq!(p.hypervisor.as_deref(), Some("QEMU (virt board)"));
        let mut el2 = s.clone();
        el2.kernel_log = Some("CPU: All CPU(s) started at EL2\n".into());
        assert_eq!(
            classify(&el2).cpu_virtualization.kind.as_deref(),
            Some("el2")
        );
        let mut unknown = s;
        unknown.kernel_log = None;
        assert_eq!(classify(&unknown).cpu_virtualization.usable, None);
    }

    #[test]
    fn json_has_every_documented_field() {
        let v = serde_json::to_value(classify(&x86_tcg_guest())).unwrap();
        for k in [
            "arch",
            "cpu_virtualization",
            "hypervisor",
            "iommu",
            "cache_partitioning",
            "interrupt_controller",
            "sriov",
            "ivshmem",
            "preemption",
            "isolation",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["isolation"]["nohz_full"], "2-3");
    }

    #[test]
    fn command_line_values() {
        assert_eq!(
            cmdline_value("a rcu_nocbs=1 b rcu_nocbs=2-3", "rcu_nocbs"),
            "2-3"
        );
        assert_eq!(cmdline_value("rcu_nocbsx=1", "rcu_nocbs"), "");
    }
}
