// SPDX-License-Identifier: GPL-2.0

//! What to do after setting an affinity that the kernel may have taken
//! over in the meantime.
//!
//! cpu_isolate reads whether a kernel thread may be moved
//! (`PF_NO_SETAFFINITY` clear) or an interrupt is not kernel-managed, and
//! then sets its affinity with `set_cpus_allowed_ptr()` or
//! `irq_set_affinity()`. Neither setter checks that state again. The kernel
//! checks `PF_NO_SETAFFINITY` under its own lock only in
//! `sched_setaffinity()`, and managed interrupts only on the `/proc/irq`
//! path, and neither is exported to modules. So between the query and the
//! set, `kthread_bind()` of a new per-CPU thread, or a driver that frees an
//! interrupt and requests it again as managed, can make the thing the
//! kernel's to place, and the module's set then overwrites the kernel's
//! choice.
//!
//! The module narrows that gap. After a set that succeeded, it reads the
//! state and the mask again and asks [`after_set`]:
//!
//! - still movable: the change is the module's, and it records it;
//! - no longer movable, and the mask is still the one the module set: the
//!   set may have overwritten the kernel's mask, so the module puts back the
//!   mask it read before ([`AfterSet::PutBack`]) and does not record the
//!   change, so that a later release restores nothing it does not own;
//! - no longer movable, and the mask is another one: the kernel placed it
//!   after the module's set, and its choice stands ([`AfterSet::Theirs`]).
//!
//! # What remains open
//!
//! - If the kernel bound the thread (or set up the managed interrupt)
//!   *before* the module's set, the kernel's mask is lost: the put-back
//!   restores the mask the module read before the kernel's change, which
//!   is the best the module knows. For a per-CPU thread the kernel binds it
//!   again when it unparks it.
//! - If the state changes *after* the second read, nothing here sees it.
//!   The next reconcile does: it finds the flag or the managed state and
//!   forgets the thread or interrupt without touching it.
//! - If the kernel happens to pick exactly the mask the module set, the
//!   module cannot tell that from an overwrite and puts its old mask back.
//!
//! The window is therefore a few instructions wide, not closed. Only the
//! kernel's checked setters, called under its own lock, would close it.

use super::cpuset::CpuSet;

/// Why the module set an affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// To move the thread or interrupt off the isolated CPUs.
    Steer,
    /// To give it back its original affinity (after which it is forgotten).
    Restore,
}

impl Purpose {
    /// The purpose of a set that restores (`true`) or steers.
    pub fn of(restore: bool) -> Self {
        if restore {
            Purpose::Restore
        } else {
            Purpose::Steer
        }
    }
}

/// The verdict of [`after_set`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterSet {
    /// Still movable: the change is the module's, and it is recorded.
    Ours,
    /// It became the kernel's in between and still has the module's mask.
    /// Set this mask (the one read before the set) back, and do not
    /// record the change.
    PutBack(CpuSet),
    /// It became the kernel's, and its mask is the kernel's (or there is
    /// nothing better to put back). Leave it alone and forget it.
    Theirs,
}

/// Decides what happens after the module set `set` on a thread or
/// interrupt whose mask was `before` when it was found movable. `locked`
/// and `now` are read again after the set: `locked` is true if it can no
/// longer be moved (`PF_NO_SETAFFINITY`, a managed interrupt, or one that
/// is gone), `now` is its mask.
///
/// On [`Purpose::Restore`] there is never a put-back: the mask the module
/// set is the one the thread had before it was first steered, and putting
/// the steered mask back instead would leave the module's change on
/// something it no longer tracks.
///
/// # Examples
///
/// ```
/// use lincell_shared::cpu_isolate::cpulist::parse;
/// use lincell_shared::cpu_isolate::recheck::{after_set, AfterSet, Purpose};
///
/// let all = parse(b"0-3").unwrap();
/// let housekeeping = parse(b"0-1").unwrap();
/// // kthread_bind() ran between the check and the set: undo the set.
/// assert_eq!(
///     after_set(Purpose::Steer, &all, &housekeeping, true, &housekeeping),
///     AfterSet::PutBack(all)
/// );
/// ```
pub fn after_set(
    purpose: Purpose,
    before: &CpuSet,
    set: &CpuSet,
    locked: bool,
    now: &CpuSet,
) -> AfterSet {
    if !locked {
        AfterSet::Ours
    } else if purpose == Purpose::Steer && now == set && before != set {
        AfterSet::PutBack(*before)
    } else {
        AfterSet::Theirs
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpulist;
    use super::*;

    fn cpus(s: &str) -> CpuSet {
        cpulist::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn still_movable_is_ours_whatever_the_mask() {
        for purpose in [Purpose::Steer, Purpose::Restore] {
            for now in ["0-1", "0-3", "2"] {
                assert_eq!(
                    after_set(purpose, &cpus("0-3"), &cpus("0-1"), false, &cpus(now)),
                    AfterSet::Ours
                );
            }
        }
    }

    #[test]
    fn flag_appeared_with_our_mask_puts_the_old_one_back() {
        // A thread on all CPUs, steered to the housekeeping ones, bound
        // meanwhile: the mask is still ours, so the one before goes back.
        assert_eq!(
            after_set(
                Purpose::Steer,
                &cpus("0-3"),
                &cpus("0-1"),
                true,
                &cpus("0-1")
            ),
            AfterSet::PutBack(cpus("0-3"))
        );
    }

    #[test]
    fn flag_appeared_with_the_kernels_mask_is_left_alone() {
        // kthread_bind(3) after our set: the kernel's mask stands.
        assert_eq!(
            after_set(Purpose::Steer, &cpus("0-3"), &cpus("0-1"), true, &cpus("3")),
            AfterSet::Theirs
        );
    }

    #[test]
    fn a_restore_is_never_undone() {
        // Restoring 0-3 on a thread the kernel took over: the original
        // stays, the steered mask does not come back.
        for now in ["0-3", "2"] {
            assert_eq!(
                after_set(
                    Purpose::Restore,
                    &cpus("0-1"),
                    &cpus("0-3"),
                    true,
                    &cpus(now)
                ),
                AfterSet::Theirs
            );
        }
    }

    #[test]
    fn nothing_to_put_back_when_the_set_changed_nothing() {
        assert_eq!(
            after_set(
                Purpose::Steer,
                &cpus("0-1"),
                &cpus("0-1"),
                true,
                &cpus("0-1")
            ),
            AfterSet::Theirs
        );
    }

    #[test]
    fn every_case_of_a_small_universe_is_consistent() {
        // All masks over 3 CPUs: the verdict is Ours exactly when not
        // locked; a put-back always restores `before`, only when steering,
        // only when the mask is still the one set and differs from before.
        let masks: [CpuSet; 8] = core::array::from_fn(|bits| {
            let mut s = CpuSet::new();
            for cpu in 0..3 {
                if bits & (1 << cpu) != 0 {
                    s.insert(cpu);
                }
            }
            s
        });
        for purpose in [Purpose::Steer, Purpose::Restore] {
            for before in &masks {
                for set in &masks {
                    for now in &masks {
                        for locked in [false, true] {
                            let v = after_set(purpose, before, set, locked, now);
                            assert_eq!(v == AfterSet::Ours, !locked);
                            if let AfterSet::PutBack(m) = v {
                                assert_eq!(m, *before);
                                assert_eq!(purpose, Purpose::Steer);
                                assert!(now == set && before != set);
                            }
                        }
                    }
                }
            }
        }
    }
}
