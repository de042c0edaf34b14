// SPDX-License-Identifier: GPL-2.0

//! The frontend's view of the backend's `config_generation`.
//!
//! The virtio core reads device config in a loop until two generation
//! reads around it agree (`__virtio_cread_many`). The generation is a field
//! a peer writes, so a hostile backend could keep that loop, and the task
//! in it (a driver's probe holding the transport's attach lock), going for
//! ever by changing the field at every read. [`GenerationWatch`] bounds it:
//! a generation that keeps changing for longer than a limit fails the
//! backend, and from then on the watch reports one constant, so the core's
//! loop ends whatever the memory holds.

/// What the transport should do with a generation it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Report this value to the virtio core.
    Report(u32),
    /// The backend's generation has not held still for the limit: fail the
    /// backend and report this (constant) value.
    Fail(u32),
}

/// Tracks the generations reported to the virtio core.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenerationWatch {
    /// The value last reported.
    last: u32,
    /// Since when (ns) every read has differed from the one before.
    unstable_since: Option<i64>,
    /// The backend was failed: `last` is reported from now on.
    frozen: bool,
}

impl GenerationWatch {
    /// A watch for a freshly attached backend.
    pub const fn new() -> Self {
        GenerationWatch {
            last: 0,
            unstable_since: None,
            frozen: false,
        }
    }

    /// The backend is dead (failed elsewhere): report a constant.
    pub fn freeze(&mut self) {
        self.frozen = true;
        self.unstable_since = None;
    }

    /// The value to report once the backend is dead.
    pub fn constant(&self) -> u32 {
        self.last
    }

    /// Takes an even generation `value` read at `now_ns`; `limit_ns` is how
    /// long the value may keep changing at every read.
    pub fn observe(&mut self, value: u32, now_ns: i64, limit_ns: i64) -> Verdict {
        if self.frozen {
            return Verdict::Report(self.last);
        }
        if value == self.last {
            self.unstable_since = None;
            return Verdict::Report(value);
        }
        match self.unstable_since {
            None => self.unstable_since = Some(now_ns),
            Some(since) if now_ns.saturating_sub(since) > limit_ns => {
                self.freeze();
                return Verdict::Fail(self.last);
            }
            Some(_) => {}
        }
        self.last = value;
        Verdict::Report(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: i64 = 2_000_000_000;

    /// What the virtio core does: generation, read, generation, until the
    /// two agree; returns the number of rounds, or `None` after `max`.
    fn core_read_loop(
        watch: &mut GenerationWatch,
        mut memory: impl FnMut() -> u32,
        clock: &mut i64,
        step_ns: i64,
        max: u32,
    ) -> (Option<u32>, bool) {
        let mut failed = false;
        let mut read = |w: &mut GenerationWatch, clock: &mut i64| {
            *clock += step_ns;
            match w.observe(memory(), *clock, LIMIT) {
                Verdict::Report(v) => v,
                Verdict::Fail(v) => {
                    failed = true;
                    v
                }
            }
        };
        for round in 1..=max {
            let a = read(watch, clock);
            let b = read(watch, clock);
            if a == b {
                return (Some(round), failed);
            }
        }
        (None, failed)
    }

    #[test]
    fn a_stable_generation_is_reported_as_is() {
        let mut w = GenerationWatch::new();
        let mut clock = 0;
        let (rounds, failed) = core_read_loop(&mut w, || 6, &mut clock, 1000, 10);
        assert_eq!(
            rounds,
            Some(1),
            "0 -> 6 counts as one change, then it holds"
        );
        assert!(!failed);
        assert_eq!(w.observe(6, clock + 1, LIMIT), Verdict::Report(6));
    }

    #[test]
    fn one_config_change_costs_one_extra_round() {
        let mut w = GenerationWatch::new();
        assert_eq!(w.observe(2, 10, LIMIT), Verdict::Report(2));
        assert_eq!(w.observe(2, 20, LIMIT), Verdict::Report(2));
        // Much later the backend changes its config once.
        assert_eq!(w.observe(4, 10 * LIMIT, LIMIT), Verdict::Report(4));
        assert_eq!(w.observe(4, 10 * LIMIT + 5, LIMIT), Verdict::Report(4));
    }

    #[test]
    fn a_generation_that_changes_at_every_read_ends_the_loop_after_the_limit() {
        // The hostile backend: +2 between any two reads, for ever.
        let mut w = GenerationWatch::new();
        let mut g = 0u32;
        let mut clock = 0;
        let (rounds, failed) = core_read_loop(
            &mut w,
            || {
                g = g.wrapping_add(2);
                g
            },
            &mut clock,
            1000, // 1 us per read
            10_000_000,
        );
        let rounds = rounds.expect("the core's loop must end");
        assert!(failed, "the backend must be failed");
        // It ended just after the limit: 2 reads a round, 1 us each.
        let rounds_for_limit = (LIMIT / 2000) as u32;
        assert!(
            (rounds_for_limit..rounds_for_limit + 3).contains(&rounds),
            "{rounds} rounds"
        );
        // Frozen: whatever the memory says now, one value.
        let c = w.constant();
        assert_eq!(w.observe(12345678, clock + 1, LIMIT), Verdict::Report(c));
        assert_eq!(w.observe(2, clock + 2, LIMIT), Verdict::Report(c));
    }

    #[test]
    fn a_frozen_watch_reports_a_constant() {
        let mut w = GenerationWatch::new();
        assert_eq!(w.observe(8, 1, LIMIT), Verdict::Report(8));
        w.freeze();
        for v in [10, 12, 0, 8, u32::MAX - 1] {
            assert_eq!(w.observe(v, 2, LIMIT), Verdict::Report(8));
        }
    }

    #[test]
    fn changes_slower_than_every_read_never_fail() {
        // A generation that changes every other read (a backend updating
        // its config often but finishing each update) keeps resetting the
        // window: two equal reads in a row.
        let mut w = GenerationWatch::new();
        let mut n = 0u32;
        for i in 0..100_000i64 {
            n += 1;
            let value = (n / 2) * 2;
            let v = w.observe(value, i * 1_000_000, LIMIT);
            assert!(matches!(v, Verdict::Report(_)), "read {i}: {v:?}");
        }
    }

    #[test]
    fn the_clock_going_backwards_does_not_fail_a_backend() {
        let mut w = GenerationWatch::new();
        assert_eq!(w.observe(2, 100, LIMIT), Verdict::Report(2));
        assert_eq!(w.observe(4, i64::MIN, LIMIT), Verdict::Report(4));
    }
}
