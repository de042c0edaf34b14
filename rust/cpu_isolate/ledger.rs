// SPDX-License-Identifier: GPL-2.0

//! The isolation state machine: which CPUs are isolated, by which request,
//! and whether a new request or a release is allowed.
//!
//! Each accepted `isolate` request becomes a *region* (its CPUs and mode).
//! Regions never overlap; a release names one region exactly (or all). The
//! module validates with [`Ledger::check_isolate`] / [`Ledger::check_release`],
//! applies the change to the system, and only then records it with
//! [`Ledger::add`] / [`Ledger::remove`], so a failed application leaves the
//! ledger as it was.
//!
//! Checks run in a fixed, documented order, so a request that is wrong in
//! several ways always gets the same errno:
//!
//! | # | refusal | errno |
//! |---|---|---|
//! | 1 | a CPU is not present (or `>= nr_cpu_ids`) | `ENODEV` |
//! | 2 | a CPU is already isolated | `EBUSY` |
//! | 3 | a CPU is not online | `ENODEV` |
//! | 4 | offline mode and a CPU cannot be hot-unplugged (the boot CPU) | `EPERM` |
//! | 5 | no online housekeeping CPU would be left | `ENOSPC` |
//! | 6 | too many regions | `ENOSPC` |
//! | 7 | an interrupt to keep is kept by another region | `EBUSY` |
//!
//! The module then checks each interrupt to keep against the kernel (it
//! exists: `ENOENT`; it can be moved: `EPERM`).

use core::fmt;

use super::cpuset::CpuSet;
use super::request::{IrqList, IsolateRequest, Mode, ReleaseRequest};

/// Largest number of regions active at once.
pub const MAX_REGIONS: usize = 32;

/// `errno` values used by the interface (from `asm-generic/errno-base.h`,
/// which every Linux architecture shares).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file or directory (nothing to release).
    pub const ENOENT: i32 = 2;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
}

/// What the system looks like when a request is checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// CPUs that are present.
    pub present: CpuSet,
    /// CPUs that are online.
    pub online: CpuSet,
    /// CPUs that can be hot-unplugged (`cpu_is_hotpluggable()`).
    pub hotpluggable: CpuSet,
    /// The kernel's housekeeping CPUs (boot-time `isolcpus=`/`nohz_full=`
    /// excluded), from `housekeeping_cpumask()`.
    pub housekeeping: CpuSet,
}

/// One active isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// Its CPUs.
    pub cpus: CpuSet,
    /// Its mode.
    pub mode: Mode,
    /// Interrupts delivered on its CPUs while it is active.
    pub irqs: IrqList,
}

impl From<&IsolateRequest> for Region {
    fn from(req: &IsolateRequest) -> Self {
        Region {
            cpus: req.cpus,
            mode: req.mode,
            irqs: req.irqs,
        }
    }
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A CPU is not present.
    NotPresent(u32),
    /// This CPU (the lowest of the overlap) is already isolated.
    Overlap(u32),
    /// A CPU is not online.
    NotOnline(u32),
    /// Offline mode asked for a CPU that cannot be unplugged.
    NotHotpluggable(u32),
    /// Nothing would be left to run the rest of the system.
    NoHousekeeping,
    /// [`MAX_REGIONS`] regions are active.
    TooManyRegions,
    /// Release of CPUs that no region holds.
    NotIsolated,
    /// Release that names part of a region, or more than one.
    NotARegion,
    /// This interrupt is already kept on another region's CPUs.
    IrqKept(u32),
    /// This interrupt does not exist (checked by the module).
    NoSuchIrq(u32),
    /// This interrupt cannot be moved: kernel-managed, per-CPU, or its chip
    /// cannot change affinity (checked by the module).
    IrqNotMovable(u32),
}

impl Refusal {
    /// The errno the interface returns for this refusal.
    pub const fn errno(&self) -> i32 {
        match self {
            Refusal::NotPresent(_) | Refusal::NotOnline(_) => errno::ENODEV,
            Refusal::Overlap(_) | Refusal::IrqKept(_) => errno::EBUSY,
            Refusal::NoSuchIrq(_) => errno::ENOENT,
            Refusal::IrqNotMovable(_) => errno::EPERM,
            Refusal::NotHotpluggable(_) => errno::EPERM,
            Refusal::NoHousekeeping | Refusal::TooManyRegions => errno::ENOSPC,
            Refusal::NotIsolated => errno::ENOENT,
            Refusal::NotARegion => errno::EINVAL,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotPresent(c) => write!(f, "CPU {c} is not present"),
            Refusal::Overlap(c) => write!(f, "CPU {c} is already isolated"),
            Refusal::NotOnline(c) => write!(f, "CPU {c} is not online"),
            Refusal::NotHotpluggable(c) => {
                write!(
                    f,
                    "CPU {c} cannot be taken offline (boot CPU or not hotpluggable)"
                )
            }
            Refusal::NoHousekeeping => f.write_str("no online housekeeping CPU would be left"),
            Refusal::TooManyRegions => write!(f, "too many isolations (limit {MAX_REGIONS})"),
            Refusal::NotIsolated => f.write_str("none of these CPUs is isolated"),
            Refusal::NotARegion => {
                f.write_str("not one isolation; release exactly what was isolated, or all")
            }
            Refusal::IrqKept(i) => write!(f, "IRQ {i} is already kept by another isolation"),
            Refusal::NoSuchIrq(i) => write!(f, "IRQ {i} does not exist"),
            Refusal::IrqNotMovable(i) => write!(
                f,
                "IRQ {i} cannot be moved (kernel-managed, per-CPU, or fixed by its chip)"
            ),
        }
    }
}

/// The active regions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    regions: [Option<Region>; MAX_REGIONS],
}

impl Ledger {
    /// No isolation.
    pub const fn new() -> Self {
        Ledger {
            regions: [None; MAX_REGIONS],
        }
    }

    /// Active regions, oldest first.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter().flatten()
    }

    /// Number of active regions.
    pub fn len(&self) -> usize {
        self.regions().count()
    }

    /// Whether nothing is isolated.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every isolated CPU.
    pub fn isolated(&self) -> CpuSet {
        self.regions().fold(CpuSet::new(), |a, r| a.union(&r.cpus))
    }

    /// CPUs taken offline by offline-mode regions.
    pub fn offline(&self) -> CpuSet {
        self.regions()
            .filter(|r| r.mode == Mode::Offline)
            .fold(CpuSet::new(), |a, r| a.union(&r.cpus))
    }

    /// CPUs left for everything else: online, housekeeping, not isolated.
    pub fn housekeeping(&self, topo: &Topology) -> CpuSet {
        topo.online
            .intersection(&topo.housekeeping)
            .difference(&self.isolated())
    }

    /// Checks a request against the system and the active regions (see the
    /// module documentation for the order of the checks).
    pub fn check_isolate(&self, topo: &Topology, req: &IsolateRequest) -> Result<(), Refusal> {
        if let Some(c) = req.cpus.difference(&topo.present).first() {
            return Err(Refusal::NotPresent(c));
        }
        if let Some(c) = req.cpus.intersection(&self.isolated()).first() {
            return Err(Refusal::Overlap(c));
        }
        if let Some(c) = req.cpus.difference(&topo.online).first() {
            return Err(Refusal::NotOnline(c));
        }
        if req.mode == Mode::Offline {
            if let Some(c) = req.cpus.difference(&topo.hotpluggable).first() {
                return Err(Refusal::NotHotpluggable(c));
            }
        }
        if self.housekeeping(topo).difference(&req.cpus).is_empty() {
            return Err(Refusal::NoHousekeeping);
        }
        if self.regions.iter().all(Option::is_some) {
            return Err(Refusal::TooManyRegions);
        }
        if let Some(&irq) = req
            .irqs
            .as_slice()
            .iter()
            .find(|&&irq| self.kept_on(irq).is_some())
        {
            return Err(Refusal::IrqKept(irq));
        }
        Ok(())
    }

    /// The CPUs of the region that keeps interrupt `irq`, if one does.
    pub fn kept_on(&self, irq: u32) -> Option<CpuSet> {
        self.regions()
            .find(|r| r.irqs.contains(irq))
            .map(|r| r.cpus)
    }

    /// Every kept interrupt with its region's CPUs.
    pub fn kept_irqs(&self) -> impl Iterator<Item = (u32, CpuSet)> + '_ {
        self.regions()
            .flat_map(|r| r.irqs.as_slice().iter().map(move |&irq| (irq, r.cpus)))
    }

    /// Records a region that [`Ledger::check_isolate`] accepted; returns
    /// its slot, so that a failed application can [`Ledger::remove`] it.
    pub fn add(&mut self, region: Region) -> Result<usize, Refusal> {
        let i = self
            .regions
            .iter()
            .position(Option::is_none)
            .ok_or(Refusal::TooManyRegions)?;
        self.regions[i] = Some(region);
        Ok(i)
    }

    /// The regions a release request names, as slot indices (highest first).
    /// `All` on an empty ledger is not an error (nothing to do).
    pub fn check_release(&self, req: &ReleaseRequest) -> Result<Selection, Refusal> {
        let mut sel = Selection::default();
        match req {
            ReleaseRequest::All => {
                for (i, r) in self.regions.iter().enumerate().rev() {
                    if r.is_some() {
                        sel.push(i);
                    }
                }
            }
            ReleaseRequest::Cpus(cpus) => {
                if !cpus.intersects(&self.isolated()) {
                    return Err(Refusal::NotIsolated);
                }
                let i = self
                    .regions
                    .iter()
                    .position(|r| r.is_some_and(|r| r.cpus == *cpus))
                    .ok_or(Refusal::NotARegion)?;
                sel.push(i);
            }
        }
        Ok(sel)
    }

    /// The region in slot `i`, if any.
    pub fn get(&self, i: usize) -> Option<Region> {
        self.regions.get(i).copied().flatten()
    }

    /// Forgets the region in slot `i` (after the module undid it).
    pub fn remove(&mut self, i: usize) -> Option<Region> {
        self.regions.get_mut(i).and_then(Option::take)
    }
}

/// Slot indices selected by [`Ledger::check_release`], in release order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    slots: [usize; MAX_REGIONS],
    len: usize,
}

impl Selection {
    fn push(&mut self, i: usize) {
        if let Some(s) = self.slots.get_mut(self.len) {
            *s = i;
            self.len += 1;
        }
    }

    /// The slots, in release order.
    pub fn slots(&self) -> &[usize] {
        &self.slots[..self.len]
    }
}

/// The affinity to give something (an IRQ, a kernel thread) whose affinity
/// was `original` before isolation: `original` without the isolated CPUs,
/// or all housekeeping CPUs if that leaves nothing online.
pub fn steered(
    original: &CpuSet,
    isolated: &CpuSet,
    housekeeping: &CpuSet,
    online: &CpuSet,
) -> CpuSet {
    let kept = original.difference(isolated);
    if kept.intersects(online) {
        kept
    } else {
        *housekeeping
    }
}

/// The affinity an interrupt or kernel thread whose affinity was `original`
/// before isolation must have now: `kept` (the CPUs of the region that
/// keeps it) if a region keeps it, else [`steered`] while its original
/// touches an isolated CPU; `None` once it must get its original back.
pub fn target(
    original: &CpuSet,
    kept: Option<&CpuSet>,
    isolated: &CpuSet,
    housekeeping: &CpuSet,
    online: &CpuSet,
) -> Option<CpuSet> {
    match kept {
        Some(cpus) => Some(*cpus),
        None if original.intersects(isolated) => {
            Some(steered(original, isolated, housekeeping, online))
        }
        None => None,
    }
}

/// The interrupt whose handler thread a kernel thread named `comm` is
/// (`irq/N-NAME`, the name the kernel gives threaded handlers), if it is
/// one. Such a thread follows its interrupt's affinity by itself.
pub fn irq_thread_of(comm: &[u8]) -> Option<u32> {
    let rest = comm.strip_prefix(b"irq/")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || end > 9 || rest[end] != b'-' {
        return None;
    }
    rest[..end].iter().try_fold(0u32, |v, &b| {
        v.checked_mul(10)?.checked_add(u32::from(b - b'0'))
    })
}

/// The original to keep for something the module steered (an IRQ, a
/// kernel thread), on finding its affinity `current` where the module had
/// `applied` it.
///
/// If someone else changed it (an administrator, through
/// `/proc/irq/N/smp_affinity` or `taskset`), that choice is the new
/// original. But the kernel itself replaces an affinity whose CPUs have all
/// gone offline ("breaks" it, taking every online CPU); that is nobody's
/// choice, and the original stays. `online_then` are the CPUs that were
/// online when the module last saw `applied` in place, `went_offline` those
/// that went offline since: if every CPU of `applied` that was online then
/// went offline since, the kernel may have broken it (it cannot have
/// otherwise), and the original is kept.
pub fn original_after(
    original: &CpuSet,
    applied: &CpuSet,
    current: &CpuSet,
    online_then: &CpuSet,
    went_offline: &CpuSet,
) -> CpuSet {
    if current == applied || applied.intersection(online_then).is_subset(went_offline) {
        *original
    } else {
        *current
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpulist;
    use super::*;

    extern crate std;

    fn cpus(s: &str) -> CpuSet {
        cpulist::parse(s.as_bytes()).unwrap()
    }

    /// Four CPUs, all online, CPU 0 not hotpluggable: the guest tests' VM.
    fn four() -> Topology {
        Topology {
            present: cpus("0-3"),
            online: cpus("0-3"),
            hotpluggable: cpus("1-3"),
            housekeeping: cpus("0-3"),
        }
    }

    fn req(s: &str, mode: Mode) -> IsolateRequest {
        IsolateRequest {
            cpus: cpus(s),
            mode,
            irqs: IrqList::new(),
        }
    }

    fn irqs(list: &[u32]) -> IrqList {
        let mut l = IrqList::new();
        for &i in list {
            assert!(l.push(i));
        }
        l
    }

    #[test]
    fn kept_irqs_belong_to_one_region() {
        let mut l = Ledger::new();
        let t = four();
        let mut r = req("1", Mode::Steer);
        r.irqs = irqs(&[24, 25]);
        assert_eq!(l.check_isolate(&t, &r), Ok(()));
        l.add(Region::from(&r)).unwrap();
        assert_eq!(l.kept_on(24), Some(cpus("1")));
        assert_eq!(l.kept_on(26), None);
        let mut r2 = req("2", Mode::Steer);
        r2.irqs = irqs(&[26, 25]);
        assert_eq!(l.check_isolate(&t, &r2), Err(Refusal::IrqKept(25)));
        assert_eq!(Refusal::IrqKept(25).errno(), errno::EBUSY);
        r2.irqs = irqs(&[26]);
        let slot = l.add(Region::from(&r2)).unwrap();
        let all: std::vec::Vec<_> = l.kept_irqs().collect();
        assert_eq!(all, [(24, cpus("1")), (25, cpus("1")), (26, cpus("2"))]);
        l.remove(slot);
        assert_eq!(l.kept_on(26), None);
        // The CPU check comes first.
        let mut r3 = req("1", Mode::Steer);
        r3.irqs = irqs(&[24]);
        assert_eq!(l.check_isolate(&t, &r3), Err(Refusal::Overlap(1)));
    }

    #[test]
    fn targets_keep_steer_or_restore() {
        let (iso, hk, on) = (cpus("1"), cpus("0,2-3"), cpus("0-3"));
        let kept = cpus("1");
        assert_eq!(
            target(&cpus("0-3"), Some(&kept), &iso, &hk, &on),
            Some(kept)
        );
        // Kept even when its original never touched the isolated CPUs.
        assert_eq!(target(&cpus("0"), Some(&kept), &iso, &hk, &on), Some(kept));
        assert_eq!(
            target(&cpus("0-3"), None, &iso, &hk, &on),
            Some(cpus("0,2-3"))
        );
        assert_eq!(target(&cpus("1"), None, &iso, &hk, &on), Some(hk));
        assert_eq!(target(&cpus("2"), None, &iso, &hk, &on), None);
        assert_eq!(target(&cpus("0-3"), None, &CpuSet::new(), &on, &on), None);
    }

    #[test]
    fn irq_thread_names() {
        assert_eq!(irq_thread_of(b"irq/24-ivshmem0"), Some(24));
        assert_eq!(irq_thread_of(b"irq/9-acpi\0\0\0\0\0\0"), Some(9));
        assert_eq!(irq_thread_of(b"irq/123-s-virtio"), Some(123));
        for bad in [
            &b"irq/-x"[..],
            b"irq/24",
            b"irq/24x",
            b"irq/",
            b"kworker/0:1",
            b"ksoftirqd/1",
            b"irq/9999999999-x",
            b"IRQ/24-x",
        ] {
            assert_eq!(irq_thread_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn accepts_and_records() {
        let mut l = Ledger::new();
        let t = four();
        assert!(l.is_empty());
        assert_eq!(l.check_isolate(&t, &req("2-3", Mode::Steer)), Ok(()));
        l.add(Region {
            cpus: cpus("2-3"),
            mode: Mode::Steer,
            irqs: IrqList::new(),
        })
        .unwrap();
        assert_eq!(l.isolated(), cpus("2-3"));
        assert_eq!(l.housekeeping(&t), cpus("0-1"));
        assert_eq!(l.offline(), CpuSet::new());
        assert_eq!(l.check_isolate(&t, &req("1", Mode::Offline)), Ok(()));
        l.add(Region {
            cpus: cpus("1"),
            mode: Mode::Offline,
            irqs: IrqList::new(),
        })
        .unwrap();
        assert_eq!(l.offline(), cpus("1"));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn refusals_and_their_errnos() {
        let t = four();
        let mut l = Ledger::new();
        let e = |l: &Ledger, s, m| l.check_isolate(&t, &req(s, m)).map_err(|r| (r, r.errno()));
        assert_eq!(
            e(&l, "9", Mode::Steer),
            Err((Refusal::NotPresent(9), errno::ENODEV))
        );
        assert_eq!(
            e(&l, "0-3", Mode::Steer),
            Err((Refusal::NoHousekeeping, errno::ENOSPC))
        );
        assert_eq!(
            e(&l, "0", Mode::Offline),
            Err((Refusal::NotHotpluggable(0), errno::EPERM))
        );
        assert_eq!(e(&l, "0", Mode::Steer), Ok(()));
        l.add(Region {
            cpus: cpus("2-3"),
            mode: Mode::Steer,
            irqs: IrqList::new(),
        })
        .unwrap();
        assert_eq!(
            e(&l, "3", Mode::Steer),
            Err((Refusal::Overlap(3), errno::EBUSY))
        );
        assert_eq!(
            e(&l, "0-1", Mode::Steer),
            Err((Refusal::NoHousekeeping, errno::ENOSPC))
        );
        // Not present wins over overlap: the order is fixed.
        assert_eq!(
            e(&l, "3,9", Mode::Steer),
            Err((Refusal::NotPresent(9), errno::ENODEV))
        );
    }

    #[test]
    fn offline_cpus_are_not_online() {
        let mut t = four();
        t.online = cpus("0-2");
        let l = Ledger::new();
        assert_eq!(
            l.check_isolate(&t, &req("3", Mode::Steer)),
            Err(Refusal::NotOnline(3))
        );
        // An offline region's CPUs are busy, not "not online".
        let mut l = Ledger::new();
        l.add(Region {
            cpus: cpus("3"),
            mode: Mode::Offline,
            irqs: IrqList::new(),
        })
        .unwrap();
        assert_eq!(
            l.check_isolate(&t, &req("3", Mode::Steer)),
            Err(Refusal::Overlap(3))
        );
    }

    #[test]
    fn boot_isolated_cpus_are_not_housekeeping() {
        let mut t = four();
        t.housekeeping = cpus("0-1");
        let l = Ledger::new();
        assert_eq!(
            l.check_isolate(&t, &req("0-1", Mode::Steer)),
            Err(Refusal::NoHousekeeping)
        );
        assert_eq!(l.check_isolate(&t, &req("1-3", Mode::Steer)), Ok(()));
    }

    #[test]
    fn release_names_one_region_or_all() {
        let t = four();
        let mut l = Ledger::new();
        assert_eq!(
            l.check_release(&ReleaseRequest::All)
                .map(|s| s.slots().len()),
            Ok(0)
        );
        assert_eq!(
            l.check_release(&ReleaseRequest::Cpus(cpus("2"))),
            Err(Refusal::NotIsolated)
        );
        l.add(Region {
            cpus: cpus("2-3"),
            mode: Mode::Steer,
            irqs: IrqList::new(),
        })
        .unwrap();
        l.add(Region {
            cpus: cpus("1"),
            mode: Mode::Offline,
            irqs: IrqList::new(),
        })
        .unwrap();
        let partial = l
            .check_release(&ReleaseRequest::Cpus(cpus("2")))
            .unwrap_err();
        assert_eq!(
            (partial, partial.errno()),
            (Refusal::NotARegion, errno::EINVAL)
        );
        assert_eq!(
            l.check_release(&ReleaseRequest::Cpus(cpus("1-3"))),
            Err(Refusal::NotARegion)
        );
        let e = l
            .check_release(&ReleaseRequest::Cpus(cpus("0")))
            .unwrap_err();
        assert_eq!(e.errno(), errno::ENOENT);
        let one = l.check_release(&ReleaseRequest::Cpus(cpus("2-3"))).unwrap();
        assert_eq!(one.slots(), [0]);
        let all = l.check_release(&ReleaseRequest::All).unwrap();
        assert_eq!(all.slots(), [1, 0], "highest slot first");
        assert_eq!(l.remove(1).map(|r| r.mode), Some(Mode::Offline));
        assert_eq!(l.remove(1), None);
        assert_eq!(l.isolated(), cpus("2-3"));
        assert_eq!(l.housekeeping(&t), cpus("0-1"));
        l.remove(0);
        assert!(l.is_empty());
        assert_eq!(l.get(0), None);
    }

    #[test]
    fn region_slots_are_bounded() {
        let mut t = four();
        t.present = CpuSet::below(64);
        t.online = t.present;
        t.housekeeping = t.present;
        let mut l = Ledger::new();
        for c in 1..=MAX_REGIONS as u32 {
            let r = req(&std::format!("{c}"), Mode::Steer);
            assert_eq!(l.check_isolate(&t, &r), Ok(()));
            l.add(Region {
                cpus: r.cpus,
                mode: r.mode,
                irqs: IrqList::new(),
            })
            .unwrap();
        }
        let r = req("40", Mode::Steer);
        assert_eq!(l.check_isolate(&t, &r), Err(Refusal::TooManyRegions));
        assert_eq!(
            l.add(Region {
                cpus: r.cpus,
                mode: r.mode,
                irqs: IrqList::new(),
            }),
            Err(Refusal::TooManyRegions)
        );
        assert_eq!(l.remove(3).map(|r| r.cpus), Some(cpus("4")));
        assert_eq!(
            l.add(Region {
                cpus: r.cpus,
                mode: r.mode,
                irqs: IrqList::new(),
            }),
            Ok(3),
            "the freed slot is reused"
        );
    }

    #[test]
    fn steering_keeps_what_it_can() {
        let iso = cpus("2-3");
        let hk = cpus("0-1");
        let on = cpus("0-3");
        assert_eq!(steered(&cpus("0-3"), &iso, &hk, &on), cpus("0-1"));
        assert_eq!(steered(&cpus("1,3"), &iso, &hk, &on), cpus("1"));
        assert_eq!(
            steered(&cpus("2"), &iso, &hk, &on),
            hk,
            "only isolated CPUs: all housekeeping"
        );
        assert_eq!(steered(&cpus("0"), &iso, &hk, &on), cpus("0"), "untouched");
        // A mask whose remaining CPUs are all offline falls back too.
        assert_eq!(steered(&cpus("2,5"), &iso, &hk, &on), hk);
    }

    #[test]
    fn messages() {
        use std::string::ToString;
        assert_eq!(Refusal::Overlap(2).to_string(), "CPU 2 is already isolated");
        assert_eq!(
            Refusal::NotHotpluggable(0).to_string(),
            "CPU 0 cannot be taken offline (boot CPU or not hotpluggable)"
        );
    }

    #[test]
    fn hotplug_breaks_are_not_taken_for_a_choice() {
        let (orig, applied, all) = (cpus("0-3"), cpus("2-3"), cpus("0-3"));
        let none = CpuSet::new();
        // Untouched: the original stays.
        assert_eq!(original_after(&orig, &applied, &applied, &all, &none), orig);
        // An administrator's change, no hotplug: it is the new original.
        let admin = cpus("1");
        assert_eq!(original_after(&orig, &applied, &admin, &all, &none), admin);
        // Only CPU 3 went offline: the kernel had CPU 2 left, so it did not
        // break the affinity; the change is someone's choice.
        assert_eq!(
            original_after(&orig, &applied, &admin, &all, &cpus("3")),
            admin
        );
        // Both went offline (and maybe came back): the kernel broke it.
        let broken = cpus("0-1");
        assert_eq!(
            original_after(&orig, &applied, &broken, &all, &cpus("2-3")),
            orig
        );
        // CPU 3 was already offline when the module applied 2-3: CPU 2
        // going offline is enough for the kernel to break it.
        let then = cpus("0-2");
        assert_eq!(
            original_after(&orig, &applied, &broken, &then, &cpus("2")),
            orig
        );
    }
}
