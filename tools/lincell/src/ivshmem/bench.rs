// SPDX-License-Identifier: GPL-2.0

//! Latency statistics for `lincell ivshmem pingpong`.

use std::fmt;

/// Summary of a set of round-trip times (nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stats {
    /// Number of samples.
    pub(crate) count: usize,
    /// Smallest sample.
    pub(crate) min: u64,
    /// Median (nearest rank).
    pub(crate) p50: u64,
    /// 90th percentile (nearest rank).
    pub(crate) p90: u64,
    /// 99th percentile (nearest rank).
    pub(crate) p99: u64,
    /// 99.9th percentile (nearest rank).
    pub(crate) p999: u64,
    /// Largest sample.
    pub(crate) max: u64,
    /// Arithmetic mean.
    pub(crate) mean: f64,
}

/// The `p`-th percentile (0 < p <= 100) of sorted `samples`, nearest-rank
/// method: the smallest sample with at least `p`% of samples at or below it.
///
/// # Panics
///
/// Never: an empty slice gives 0.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // CAST: the rank is between 1 and len, far below 2^52.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Stats {
    /// Summarizes `samples` (sorted in place); `None` when empty.
    pub(crate) fn from_samples(samples: &mut [u64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Some(Stats {
            count: samples.len(),
            min: samples[0],
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            p999: percentile(samples, 99.9),
            max: samples[samples.len() - 1],
            // CAST: a mean for display; precision loss is irrelevant.
            mean: sum as f64 / samples.len() as f64,
        })
    }
}

/// Nanoseconds as microseconds with one decimal.
pub(crate) fn us(ns: u64) -> String {
    // CAST: display only.
    format!("{:.1}", ns as f64 / 1000.0)
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency_us: min {} p50 {} p90 {} p99 {} p99.9 {} max {} mean {:.1} (n={})",
            us(self.min),
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.p999),
            us(self.max),
            self.mean / 1000.0,
            self.count
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s: Vec<u64> = (1..=100).rev().collect();
        let st = Stats::from_samples(&mut s).unwrap();
        assert_eq!(
            (st.min, st.p50, st.p90, st.p99, st.p999, st.max),
            (1, 50, 90, 99, 100, 100)
        );
        assert!((st.mean - 50.5).abs() < 1e-9);
        assert_eq!(st.count, 100);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
        assert_eq!(percentile(&[1, 2], 50.0), 1);
        assert_eq!(percentile(&[1, 2], 50.1), 2);
        assert!(Stats::from_samples(&mut []).is_none());
    }

    #[test]
    fn outliers_show_in_the_tail_only() {
        let mut s = vec![10_000u64; 1000];
        s[3] = 5_000_000;
        let st = Stats::from_samples(&mut s).unwrap();
        assert_eq!(st.p50, 10_000);
        assert_eq!(st.p99, 10_000);
        assert_eq!(st.max, 5_000_000);
        let line = st.to_string();
        assert!(
            line.contains("p50 10.0 ") && line.contains("max 5000.0 "),
            "{line}"
        );
    }
}
