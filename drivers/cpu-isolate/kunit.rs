// SPDX-License-Identifier: GPL-2.0

//! In-kernel tests of the shared cpu_isolate logic, run by KUnit at `insmod`.
//!
//! The host runs the same code under `cargo test`; these suites prove it
//! behaves the same when built by the kernel's toolchain, for the kernel's
//! target and with the kernel's overflow checks (no 128-bit division, no
//! panics on hostile input).

use kernel::prelude::*;

#[kunit_tests(lincell_cpu_isolate_cpulist)]
mod cpulist_tests {
    use crate::shared::cpu_isolate::cpulist::{parse, ParseError};
    use crate::shared::cpu_isolate::cpuset::{CpuSet, MAX_CPUS};
    use core::fmt::Write;

    /// Formats a set into a stack buffer.
    struct Buf {
        b: [u8; 64],
        n: usize,
    }

    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let dst = self
                .b
                .get_mut(self.n..self.n + s.len())
                .ok_or(core::fmt::Error)?;
            dst.copy_from_slice(s.as_bytes());
            self.n += s.len();
            Ok(())
        }
    }

    fn fmt(s: &CpuSet) -> Buf {
        let mut b = Buf { b: [0; 64], n: 0 };
        let _ = write!(b, "{s}");
        b
    }

    #[test]
    fn parses_and_formats_kernel_cpulists() {
        let s = parse(b"2-3,6\n");
        assert!(s.is_ok());
        let s = s.unwrap_or_default();
        assert_eq!(s.len(), 3);
        assert!(s.contains(2) && s.contains(3) && s.contains(6) && !s.contains(4));
        let b = fmt(&s);
        assert_eq!(&b.b[..b.n], b"2-3,6");
        let all = parse(b"0-1023").unwrap_or_default();
        assert_eq!(all.len(), MAX_CPUS);
        let b = fmt(&all);
        assert_eq!(&b.b[..b.n], b"0-1023");
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b"garbage"), Err(ParseError::Syntax { pos: 0 }));
        assert_eq!(parse(b"1,,2"), Err(ParseError::Syntax { pos: 2 }));
        assert_eq!(
            parse(b"3-2"),
            Err(ParseError::Reversed { first: 3, last: 2 })
        );
        assert_eq!(parse(b"1024"), Err(ParseError::TooLarge { cpu: 1024 }));
        assert_eq!(
            parse(b"99999999999999999999"),
            Err(ParseError::TooLarge { cpu: u32::MAX })
        );
        assert_eq!(
            parse(b"0-99999999999"),
            Err(ParseError::TooLarge { cpu: u32::MAX })
        );
    }

    #[test]
    fn duplicates_merge() {
        assert_eq!(
            parse(b"3,3,2-3"),
            Ok(CpuSet::range(2, 3).unwrap_or_default())
        );
    }
}

#[kunit_tests(lincell_cpu_isolate_mask)]
mod mask_tests {
    use crate::shared::cpu_isolate::cpulist::parse;
    use crate::shared::cpu_isolate::cpuset::CpuSet;
    use crate::shared::cpu_isolate::ledger::steered;

    fn c(s: &[u8]) -> CpuSet {
        parse(s).unwrap_or_default()
    }

    #[test]
    fn set_arithmetic() {
        let a = c(b"0-3");
        let b = c(b"2-3,100");
        assert_eq!(a.union(&b), c(b"0-3,100"));
        assert_eq!(a.intersection(&b), c(b"2-3"));
        assert_eq!(a.difference(&b), c(b"0-1"));
        assert!(c(b"2-3").is_subset(&a));
        assert!(!b.is_subset(&a));
        assert_eq!(CpuSet::below(4), a);
        assert_eq!(c(b"63-65").len(), 3);
    }

    #[test]
    fn steering_masks() {
        let (iso, hk, on) = (c(b"2-3"), c(b"0-1"), c(b"0-3"));
        assert_eq!(steered(&c(b"0-3"), &iso, &hk, &on), c(b"0-1"));
        assert_eq!(steered(&c(b"2"), &iso, &hk, &on), hk);
        assert_eq!(steered(&c(b"1,3"), &iso, &hk, &on), c(b"1"));
        assert_eq!(steered(&c(b"0"), &iso, &hk, &on), c(b"0"));
    }
}

#[kunit_tests(lincell_cpu_isolate_histogram)]
mod histogram_tests {
    use crate::shared::cpu_isolate::histogram::{
        bucket_floor_us, bucket_of, per_second, thread_time, NoiseStats, BUCKETS,
    };

    #[test]
    fn buckets() {
        assert_eq!(bucket_of(999), 0);
        assert_eq!(bucket_of(1000), 1);
        assert_eq!(bucket_of(4000), 3);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_floor_us(BUCKETS - 1), Some(16384));
        assert_eq!(bucket_floor_us(BUCKETS), None);
    }

    #[test]
    fn noise_accounting() {
        let mut s = NoiseStats::new(5000);
        for gap in [100, 5000, 12_000, 300] {
            s.record(gap);
        }
        assert_eq!(
            (s.loops, s.gaps, s.noise_ns, s.max_gap_ns),
            (4, 2, 17_000, 12_000)
        );
        assert_eq!(thread_time(1000, 600, 100), 300);
        assert_eq!(s.hist.total(), 2);
    }

    #[test]
    fn per_second_without_u128() {
        assert_eq!(per_second(1_000, 2_000_000_000), 500);
        assert_eq!(per_second(60_000_000_000, 60_000_000_000), 1_000_000_000);
        assert_eq!(per_second(u64::MAX, 1), u64::MAX);
        assert_eq!(per_second(7, 0), 0);
    }
}

#[kunit_tests(lincell_cpu_isolate_ledger)]
mod ledger_tests {
    use kernel::prelude::*;

    use crate::shared::cpu_isolate::cpulist::parse;
    use crate::shared::cpu_isolate::cpuset::CpuSet;
    use crate::shared::cpu_isolate::ledger::{errno, Ledger, Refusal, Region, Topology};
    use crate::shared::cpu_isolate::request::{
        parse_isolate, IrqList, IsolateRequest, Mode, ReleaseRequest,
    };

    fn c(s: &[u8]) -> CpuSet {
        parse(s).unwrap_or_default()
    }

    fn four() -> Topology {
        Topology {
            present: c(b"0-3"),
            online: c(b"0-3"),
            hotpluggable: c(b"1-3"),
            housekeeping: c(b"0-3"),
        }
    }

    fn req(s: &[u8]) -> IsolateRequest {
        parse_isolate(s).unwrap_or(IsolateRequest {
            cpus: CpuSet::new(),
            mode: Mode::Steer,
            irqs: IrqList::new(),
        })
    }

    #[test]
    fn isolate_release_cycle() -> Result {
        let t = four();
        // The ledger is 4 KiB: keep it off the stack.
        let mut l = KBox::new(Ledger::new(), GFP_KERNEL)?;
        let r = req(b"2-3");
        assert_eq!(l.check_isolate(&t, &r), Ok(()));
        assert_eq!(
            l.add(Region {
                cpus: r.cpus,
                mode: r.mode,
                irqs: IrqList::new(),
            }),
            Ok(0)
        );
        assert_eq!(l.isolated(), c(b"2-3"));
        assert_eq!(l.housekeeping(&t), c(b"0-1"));
        let sel = l.check_release(&ReleaseRequest::Cpus(c(b"2-3")));
        assert!(sel.is_ok());
        for &i in sel.unwrap_or_default().slots() {
            assert!(l.remove(i).is_some());
        }
        assert!(l.is_empty());
        Ok(())
    }

    #[test]
    fn documented_refusals() -> Result {
        let t = four();
        let mut l = KBox::new(Ledger::new(), GFP_KERNEL)?;
        let e = |l: &Ledger, s: &[u8]| l.check_isolate(&t, &req(s)).map_err(|r| r.errno());
        assert_eq!(e(&l, b"0 offline"), Err(errno::EPERM));
        assert_eq!(e(&l, b"0-3"), Err(errno::ENOSPC));
        assert_eq!(e(&l, b"9"), Err(errno::ENODEV));
        assert_eq!(
            l.add(Region {
                cpus: c(b"2-3"),
                mode: Mode::Offline,
                irqs: IrqList::new(),
            }),
            Ok(0)
        );
        assert_eq!(e(&l, b"3"), Err(errno::EBUSY));
        assert_eq!(l.offline(), c(b"2-3"));
        assert_eq!(
            l.check_release(&ReleaseRequest::Cpus(c(b"2"))),
            Err(Refusal::NotARegion)
        );
        assert_eq!(
            l.check_release(&ReleaseRequest::Cpus(c(b"1")))
                .map_err(|r| r.errno()),
            Err(errno::ENOENT)
        );
        Ok(())
    }
}

/// The thin kernel layer: the C shim and the cpumask conversions, on the
/// running kernel.
#[kunit_tests(lincell_cpu_isolate_kernel)]
mod kernel_tests {
    use crate::kthread::{self, Kthread};
    use crate::kthreads;
    use crate::shared::cpu_isolate::cpuset::CpuSet;
    use crate::shared::cpu_isolate::recheck::{AfterSet, Purpose};
    use crate::shim;
    use kernel::prelude::*;

    #[test]
    fn topology_is_consistent() -> Result {
        let t = shim::topology()?;
        assert!(!t.online.is_empty());
        assert!(t.online.is_subset(&t.present));
        assert!(t.hotpluggable.is_subset(&t.present));
        assert!(!t.housekeeping.is_empty());
        Ok(())
    }

    #[test]
    fn cpumask_round_trip() -> Result {
        let online = shim::topology()?.online;
        let mask = shim::to_mask(&online)?;
        assert_eq!(shim::to_set(&mask), online);
        Ok(())
    }

    #[test]
    fn missing_irq_is_none() -> Result {
        let mut scratch = shim::IrqScratch::new()?;
        assert!(shim::irq_query(u32::MAX, &mut scratch).is_none());
        Ok(())
    }

    #[test]
    fn kthreadd_is_a_kernel_thread() -> Result {
        let tasks = shim::kthreads()?;
        assert!(tasks.iter().any(|t| t.pid() == 2));
        Ok(())
    }

    /// Sleeps until asked to stop.
    ///
    /// # Safety
    ///
    /// Only run as the function of a kthread (it waits for
    /// `kthread_should_stop()`).
    unsafe extern "C" fn idle_until_stopped(_data: *mut core::ffi::c_void) -> core::ffi::c_int {
        while !kthread::should_stop() {
            // SAFETY: process context (a kthread).
            unsafe { kernel::bindings::msleep(5) };
        }
        0
    }

    /// The kernel binds a thread (`kthread_bind`) between the module's
    /// check of `PF_NO_SETAFFINITY` and its `set_cpus_allowed_ptr()`,
    /// played with a thread bound before the set: the re-check after the
    /// set sees the flag and puts the mask read before back; a kernel mask
    /// set after the module's stands.
    #[test]
    fn a_thread_bound_meanwhile_is_not_ours() -> Result {
        let online = shim::topology()?.online;
        let mut cpus = online.iter();
        let (Some(first), Some(second)) = (cpus.next(), cpus.next()) else {
            // One CPU: nothing to steer to.
            return Ok(());
        };
        // SAFETY: the data pointer is never read; the function returns once
        // asked to stop, which dropping the guard does.
        let t = unsafe {
            Kthread::spawn_bound(
                idle_until_stopped,
                core::ptr::null_mut(),
                first,
                c"cpu_isolate_test",
            )
        }?;
        let task = t.task();
        assert!(shim::task_flags(task) & kernel::bindings::PF_NO_SETAFFINITY != 0);
        // What the module had read while the thread looked movable, and
        // the mask it then set, unchecked, over the kernel's binding.
        let before = online;
        let mut steered = CpuSet::new();
        steered.insert(second);
        shim::task_set_affinity(task, &steered)?;
        let (verdict, left) = kthreads::confirm_set(task, Purpose::Steer, &before, &steered)?;
        assert_eq!(verdict, AfterSet::PutBack(before));
        assert_eq!(left, before);
        assert_eq!(shim::task_affinity(task)?, before);
        // The kernel's mask came after the module's set: it stands.
        shim::task_set_affinity(task, &steered)?;
        let mut kernels = CpuSet::new();
        kernels.insert(first);
        shim::task_set_affinity(task, &kernels)?;
        let (verdict, left) = kthreads::confirm_set(task, Purpose::Steer, &before, &steered)?;
        assert_eq!(verdict, AfterSet::Theirs);
        assert_eq!(left, kernels);
        assert_eq!(shim::task_affinity(task)?, kernels);
        Ok(())
    }
}
