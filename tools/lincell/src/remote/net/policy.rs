// SPDX-License-Identifier: GPL-2.0

//! What a virtio-net device lets its guest transmit: the device, not the
//! guest, decides.
//!
//! - **Source-MAC lock** (on by default, `--allow-any-mac` turns it off): a
//!   transmitted frame whose Ethernet source address is not the device's
//!   MAC is dropped and counted, so a cell cannot pose as another one (or
//!   as the host) on the link. Changing the address inside the guest
//!   (`ip link set dev X address ...`) therefore cuts it off.
//! - **Rate limit** (off by default, `--rate-limit BYTES_PER_S`): a token
//!   bucket over the bytes of the transmitted Ethernet frames (the virtio
//!   header not counted), refilled at the rate and holding at most the
//!   burst (`--rate-burst`, default [`default_burst`]). A frame larger
//!   than the tokens left is **dropped** and counted, like a policer
//!   (`tc ... police`): delaying it instead would hold the guest's transmit
//!   ring and need a timer in the event loop, and TCP adapts to drops.
//!
//! Receive (frames to the guest) is not limited.

#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use crate::error::{Error, Result};

/// Nanoseconds per second: the bucket counts tokens in byte-nanoseconds so
/// that no fraction of a byte is lost between two frames.
const NS: u128 = 1_000_000_000;

/// Smallest burst: two largest frames must fit, else a frame of the MTU
/// could never pass.
pub(crate) fn default_burst(rate: u64, max_frame: usize) -> u64 {
    // CAST: usize to u64 is lossless on every supported target.
    (rate / 10).max(2 * max_frame as u64)
}

/// A token bucket of `rate` bytes per second and `burst` bytes.
///
/// # Invariants
///
/// `tokens <= burst * NS`; `rate > 0`; `burst > 0`.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens in byte-nanoseconds.
    tokens: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: u64, burst: u64, now: Instant) -> Result<Self> {
        if rate == 0 || burst == 0 {
            return Err(Error::Usage(
                "a rate limit and its burst must be above 0 bytes".into(),
            ));
        }
        // INVARIANT: full, rate and burst checked above.
        Ok(TokenBucket {
            rate,
            burst,
            tokens: u128::from(burst) * NS,
            last: now,
        })
    }

    /// The rate in bytes per second.
    pub(crate) fn rate(&self) -> u64 {
        self.rate
    }

    /// The burst in bytes.
    pub(crate) fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `bytes` tokens at `now` if there are enough; a clock that went
    /// backwards adds nothing.
    pub(crate) fn take(&mut self, now: Instant, bytes: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = self.last.max(now);
        let cap = u128::from(self.burst) * NS;
        // Saturating: a long idle time fills the bucket at most.
        let add = elapsed.as_nanos().saturating_mul(u128::from(self.rate));
        // INVARIANT: capped at `burst * NS`.
        self.tokens = self.tokens.saturating_add(add).min(cap);
        let need = u128::from(bytes) * NS;
        if need > self.tokens {
            return false;
        }
        self.tokens -= need;
        true
    }

    /// How long until `bytes` tokens are there (for messages and tests).
    #[cfg(test)]
    pub(crate) fn wait_for(&self, bytes: u64) -> Duration {
        let need = (u128::from(bytes) * NS).saturating_sub(self.tokens);
        let ns = need.div_ceil(u128::from(self.rate));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// Why a transmitted frame is refused by the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source address is not the device's MAC.
    Spoofed,
    /// The rate limit's bucket is empty.
    RateLimited,
}

/// The transmit policy of one device.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Drop frames whose source is not the device's MAC.
    pub(crate) mac_lock: bool,
    /// The rate limit, if any.
    pub(crate) rate: Option<TokenBucket>,
}

impl Default for Policy {
    /// The MAC lock on, no rate limit.
    fn default() -> Self {
        Policy {
            mac_lock: true,
            rate: None,
        }
    }
}

impl Policy {
    /// Checks one Ethernet `frame` (at least [`super::ETH_HLEN`] bytes,
    /// else it is refused as spoofed) from a device of address `mac`, at
    /// `now`. The rate limit takes tokens only for frames that pass the
    /// lock.
    pub(crate) fn check(&mut self, mac: &[u8; 6], frame: &[u8], now: Instant) -> Option<Refusal> {
        if self.mac_lock && frame.get(6..12) != Some(&mac[..]) {
            return Some(Refusal::Spoofed);
        }
        if let Some(b) = &mut self.rate {
            // CAST: usize to u64 is lossless on every supported target.
            if !b.take(now, frame.len() as u64) {
                return Some(Refusal::RateLimited);
            }
        }
        None
    }

    /// For the start-up line: `MAC lock on, rate limit 1000000 B/s (burst 100000 B)`.
    pub(crate) fn describe(&self) -> String {
        let lock = if self.mac_lock {
            "source-MAC lock on"
        } else {
            "any source MAC allowed"
        };
        match &self.rate {
            Some(b) => format!(
                "{lock}, transmit limited to {} B/s (burst {} B)",
                b.rate(),
                b.burst()
            ),
            None => format!("{lock}, no rate limit"),
        }
    }
}

/// Parses a byte rate: a number of bytes per second with an optional
/// decimal suffix `k` (1000), `M` (10^6) or `G` (10^9).
pub(crate) fn parse_rate(s: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "`{s}`: expected bytes per second above 0, like 125000, 500k, 10M or 1G"
        ))
    };
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1_000),
        Some((i, 'M')) => (&s[..i], 1_000_000),
        Some((i, 'G')) => (&s[..i], 1_000_000_000),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    match n.checked_mul(mult) {
        Some(r) if r > 0 => Ok(r),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn rates_parse_with_decimal_suffixes() {
        assert_eq!(parse_rate("125000").unwrap(), 125_000);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("10M").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1G").unwrap(), 1_000_000_000);
        for bad in ["", "0", "k", "-1", "1.5M", "10T", "99999999999G", "1 M"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bucket_passes_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 3000, t0).unwrap();
        assert!(b.take(t0, 1500));
        assert!(b.take(t0, 1500));
        assert!(!b.take(t0, 1), "empty after the burst");
        assert_eq!(b.wait_for(500), 500 * MS);
        assert!(!b.take(t0 + 499 * MS, 500));
        // The refused attempt took nothing: 1 ms later 500 bytes are there.
        assert!(b.take(t0 + 500 * MS, 500));
        // A long idle time fills it to the burst, not beyond.
        assert!(b.take(t0 + 3600 * 1000 * MS, 3000));
        assert!(!b.take(t0 + 3600 * 1000 * MS, 1));
        // A clock going backwards adds nothing and does not panic.
        assert!(!b.take(t0, 1));
        assert!(TokenBucket::new(0, 1, t0).is_err());
        assert!(TokenBucket::new(1, 0, t0).is_err());
    }

    /// Randomized: over any sequence of frames and times, what passes never
    /// exceeds burst + rate * elapsed.
    #[test]
    fn bucket_never_passes_more_than_burst_plus_rate_times_time() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let rate = 1 + next() % 10_000_000;
            let burst = 1 + next() % 200_000;
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate, burst, t0).unwrap();
            let (mut t, mut passed) = (Duration::ZERO, 0u128);
            for _ in 0..500 {
                t += Duration::from_nanos(next() % 2_000_000);
                let n = next() % 70_000;
                if b.take(t0 + t, n) {
                    passed += u128::from(n);
                }
                let allowed = u128::from(burst) + t.as_nanos() * u128::from(rate) / NS;
                assert!(passed <= allowed, "{passed} > {allowed}");
            }
        }
    }

    #[test]
    fn lock_refuses_other_sources_and_short_frames() {
        let mac = [2, 0, 0, 0, 0, 1];
        let now = Instant::now();
        let mut p = Policy::default();
        let mut f = vec![0xffu8; 60];
        f[6..12].copy_from_slice(&mac);
        assert_eq!(p.check(&mac, &f, now), None);
        f[11] = 2;
        assert_eq!(p.check(&mac, &f, now), Some(Refusal::Spoofed));
        assert_eq!(p.check(&mac, &f[..10], now), Some(Refusal::Spoofed));
        p.mac_lock = false;
        assert_eq!(p.check(&mac, &f, now), None);
        // The rate limit applies to frames that pass the lock.
        p.mac_lock = true;
        p.rate = Some(TokenBucket::new(1, 100, now).unwrap());
        assert_eq!(p.check(&mac, &f, now), Some(Refusal::Spoofed));
        f[11] = 1;
        assert_eq!(p.check(&mac, &f, now), None, "60 of 100 tokens");
        assert_eq!(p.check(&mac, &f, now), Some(Refusal::RateLimited));
    }
}
