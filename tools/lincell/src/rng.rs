// SPDX-License-Identifier: GPL-2.0

//! [`Rng`]: the reproducible random numbers of the test tools (the chaos
//! peer, the fuzzer): xorshift64*, good enough for an attacker and the same
//! sequence for the same seed.

/// xorshift64*.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (0 is taken as 1: xorshift has no zero state).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    #[allow(
        clippy::should_implement_trait,
        reason = "not an iterator: it never ends"
    )]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        // CAST: an index into `items`.
        items[self.below(items.len() as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next(), b.next());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_eq!(Rng::new(0).next(), Rng::new(1).next());
        assert_eq!(Rng::new(3).below(0), 0);
    }
}
