// SPDX-License-Identifier: GPL-2.0

//! Noise statistics of one sampler run on one CPU: the osnoise-style
//! figures (total noise, noise per second, largest single gap) and a log2
//! histogram of the gaps.
//!
//! The sampler thread reads the clock in a tight loop; the time between two
//! consecutive reads is a *gap*. Gaps at or above the threshold are *noise*:
//! something (an interrupt, a softirq, another thread, the hypervisor) took
//! the CPU away. Gaps below it are the loop's own cost and are only counted.
//!
//! Which part of the noise the OS caused is measured separately, from the
//! kernel's own accounting ([`thread_time`]): time spent in interrupt and
//! softirq handlers, and time the CPU gave to other tasks. The rest is
//! *hardware noise* (osnoise's term): SMIs, or in a virtual machine the
//! host taking the virtual CPU away.
//!
//! Histogram buckets are powers of two in microseconds: bucket 0 holds gaps
//! below 1 µs, bucket `k` (1..=14) holds `[2^(k-1), 2^k)` µs, and the last
//! bucket everything from 16384 µs up.

/// Number of histogram buckets.
pub const BUCKETS: usize = 16;

/// Bucket index of a gap of `ns` nanoseconds.
pub fn bucket_of(ns: u64) -> usize {
    let us = ns / 1000;
    if us == 0 {
        return 0;
    }
    // floor(log2(us)) + 1: 1 µs -> 1, 2..3 µs -> 2, 4..7 µs -> 3, ...
    // CAST: leading_zeros() <= 63 here, so the value is at most 64.
    let k = (64 - us.leading_zeros()) as usize;
    k.min(BUCKETS - 1)
}

/// Lower bound of bucket `i` in microseconds (0 for bucket 0); `None` for an
/// index past the last bucket.
pub fn bucket_floor_us(i: usize) -> Option<u64> {
    match i {
        0 => Some(0),
        i if i < BUCKETS => Some(1u64 << (i - 1)),
        _ => None,
    }
}

/// Counts of gaps per bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    counts: [u64; BUCKETS],
}

impl Histogram {
    /// Counts one gap of `ns` nanoseconds.
    pub fn add(&mut self, ns: u64) {
        let b = &mut self.counts[bucket_of(ns)];
        *b = b.saturating_add(1);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
    }

    /// The counts, bucket 0 first.
    pub fn counts(&self) -> &[u64; BUCKETS] {
        &self.counts
    }

    /// Total number of gaps counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// Noise statistics of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoiseStats {
    /// Gaps at or above this many nanoseconds are noise.
    pub threshold_ns: u64,
    /// Clock reads (loop iterations).
    pub loops: u64,
    /// Sum of all noise gaps, nanoseconds.
    pub noise_ns: u64,
    /// Largest single gap (noise or not), nanoseconds.
    pub max_gap_ns: u64,
    /// Number of noise gaps.
    pub gaps: u64,
    /// Histogram of the noise gaps.
    pub hist: Histogram,
}

impl NoiseStats {
    /// Empty statistics with the given threshold.
    pub fn new(threshold_ns: u64) -> Self {
        NoiseStats {
            threshold_ns,
            ..Default::default()
        }
    }

    /// Accounts for one gap between two consecutive clock reads.
    #[inline]
    pub fn record(&mut self, gap_ns: u64) {
        self.loops = self.loops.saturating_add(1);
        if gap_ns > self.max_gap_ns {
            self.max_gap_ns = gap_ns;
        }
        if gap_ns >= self.threshold_ns {
            self.noise_ns = self.noise_ns.saturating_add(gap_ns);
            self.gaps = self.gaps.saturating_add(1);
            self.hist.add(gap_ns);
        }
    }

    /// Noise per second of a run that lasted `duration_ns`.
    pub fn noise_per_sec_ns(&self, duration_ns: u64) -> u64 {
        per_second(self.noise_ns, duration_ns)
    }
}

/// Time the CPU gave to other tasks during a run of `duration_ns`, in
/// which the measuring thread itself ran `own_runtime_ns` and interrupt and
/// softirq handlers took `irq_ns` (the three add up to the run, as the
/// thread never sleeps). Saturates at 0: the scheduler updates a task's
/// runtime at ticks, so the thread's figure can lag by up to one tick.
pub fn thread_time(duration_ns: u64, own_runtime_ns: u64, irq_ns: u64) -> u64 {
    duration_ns
        .saturating_sub(own_runtime_ns)
        .saturating_sub(irq_ns)
}

/// `value * 1e9 / duration_ns` without 128-bit division (the kernel has
/// none): exact while `value * 1e9` fits in 64 bits (values below about
/// 18 s), otherwise both operands lose decimal digits until it fits.
/// Zero for a zero duration; saturates instead of overflowing.
pub fn per_second(value: u64, duration_ns: u64) -> u64 {
    const NS_PER_SEC: u64 = 1_000_000_000;
    let (mut v, mut d) = (value, duration_ns);
    loop {
        if d == 0 {
            return if v == 0 || duration_ns == 0 {
                0
            } else {
                u64::MAX
            };
        }
        if let Some(p) = v.checked_mul(NS_PER_SEC) {
            return p / d;
        }
        v /= 10;
        d /= 10;
    }
}

/// `part / whole` in parts per million (0 when `whole` is 0), saturating.
pub fn ppm(part: u64, whole: u64) -> u64 {
    per_second(part, whole) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log2_microseconds() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(999), 0);
        assert_eq!(bucket_of(1000), 1);
        assert_eq!(bucket_of(1999), 1);
        assert_eq!(bucket_of(2000), 2);
        assert_eq!(bucket_of(3999), 2);
        assert_eq!(bucket_of(4000), 3);
        assert_eq!(bucket_of(8_191_999), 13);
        assert_eq!(bucket_of(8_192_000), 14);
        assert_eq!(bucket_of(16_383_999), 14);
        assert_eq!(bucket_of(16_384_000), 15);
        assert_eq!(bucket_of(u64::MAX), 15);
    }

    #[test]
    fn bucket_floors_match_bucket_of() {
        assert_eq!(bucket_floor_us(0), Some(0));
        assert_eq!(bucket_floor_us(1), Some(1));
        assert_eq!(bucket_floor_us(15), Some(16384));
        assert_eq!(bucket_floor_us(16), None);
        for i in 0..BUCKETS {
            let floor = bucket_floor_us(i).unwrap() * 1000;
            assert_eq!(bucket_of(floor), i);
            if i > 0 {
                assert_eq!(bucket_of(floor - 1), i - 1);
            }
        }
    }

    #[test]
    fn histogram_add_merge_total() {
        let mut h = Histogram::default();
        h.add(500);
        h.add(1500);
        h.add(1600);
        assert_eq!(h.counts()[0], 1);
        assert_eq!(h.counts()[1], 2);
        let mut g = Histogram::default();
        g.add(20_000_000_000);
        g.merge(&h);
        assert_eq!(g.total(), 4);
        assert_eq!(g.counts()[15], 1);
    }

    #[test]
    fn record_separates_noise_from_loop_cost() {
        let mut s = NoiseStats::new(5000);
        for gap in [100, 200, 4999, 5000, 12_000, 300] {
            s.record(gap);
        }
        assert_eq!(s.loops, 6);
        assert_eq!(s.gaps, 2);
        assert_eq!(s.noise_ns, 17_000);
        assert_eq!(s.max_gap_ns, 12_000);
        assert_eq!(s.hist.total(), 2);
        assert_eq!(s.hist.counts()[bucket_of(5000)], 1);
        assert_eq!(s.hist.counts()[bucket_of(12_000)], 1);
    }

    #[test]
    fn max_gap_counts_gaps_below_threshold() {
        let mut s = NoiseStats::new(u64::MAX);
        s.record(7);
        assert_eq!((s.max_gap_ns, s.gaps, s.noise_ns), (7, 0, 0));
    }

    #[test]
    fn thread_time_is_what_is_left() {
        assert_eq!(
            thread_time(1_000_000_000, 700_000_000, 50_000_000),
            250_000_000
        );
        assert_eq!(
            thread_time(1_000, 1_200, 0),
            0,
            "runtime lagging a tick saturates"
        );
        assert_eq!(thread_time(1_000, 900, 200), 0);
        assert_eq!(thread_time(0, 0, 0), 0);
    }

    #[test]
    fn per_second_is_exact_when_it_fits() {
        assert_eq!(per_second(0, 0), 0);
        assert_eq!(per_second(5, 0), 0);
        assert_eq!(per_second(1_000, 1_000_000_000), 1_000);
        assert_eq!(per_second(1_000, 2_000_000_000), 500);
        assert_eq!(per_second(250_000_000, 500_000_000), 500_000_000);
        assert_eq!(
            per_second(u64::MAX / 1_000_000_000, 1_000_000_000),
            u64::MAX / 1_000_000_000
        );
    }

    #[test]
    fn per_second_scales_down_instead_of_overflowing() {
        // 60 s of noise in a 60 s run: one second per second.
        assert_eq!(per_second(60_000_000_000, 60_000_000_000), 1_000_000_000);
        // 30 s in 60 s.
        assert_eq!(per_second(30_000_000_000, 60_000_000_000), 500_000_000);
        // A huge value over a tiny duration saturates.
        assert_eq!(per_second(u64::MAX, 1), u64::MAX);
        assert_eq!(per_second(u64::MAX, u64::MAX), 1_000_000_000);
    }

    #[test]
    fn ppm_of_a_run() {
        assert_eq!(ppm(1_000, 1_000_000_000), 1);
        assert_eq!(ppm(0, 0), 0);
        assert_eq!(ppm(1, 1), 1_000_000);
    }
}
