// SPDX-License-Identifier: GPL-2.0

//! A fixed-size set of CPU numbers and the mask arithmetic isolation needs.
//!
//! The kernel's `struct cpumask` is sized by `CONFIG_NR_CPUS` and needs the
//! kernel to operate on it; [`CpuSet`] is a plain `Copy` bitmap that the
//! shared logic (and the host tests) can reason about. The module converts at
//! its edge and refuses to load on machines with more than [`MAX_CPUS`]
//! possible CPUs, so the conversion never loses a CPU.

use core::fmt;

/// Largest number of CPUs a [`CpuSet`] holds (CPU numbers `0..MAX_CPUS`).
pub const MAX_CPUS: u32 = 1024;

const WORDS: usize = (MAX_CPUS / 64) as usize;

/// A set of CPU numbers below [`MAX_CPUS`].
///
/// Formats (`Display` and `Debug`) as a cpulist the way the kernel prints
/// one (`0-1,4`); the empty set formats as the empty string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSet {
    words: [u64; WORDS],
}

impl Default for CpuSet {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSet {
    /// The empty set.
    pub const fn new() -> Self {
        CpuSet { words: [0; WORDS] }
    }

    /// CPUs `first..=last`, or `None` if `last` is not below [`MAX_CPUS`] or
    /// the range is reversed.
    pub fn range(first: u32, last: u32) -> Option<Self> {
        let mut s = Self::new();
        s.insert_range(first, last).then_some(s)
    }

    /// CPUs `0..n` (e.g. every possible CPU number for `n = nr_cpu_ids`),
    /// clamped to [`MAX_CPUS`].
    pub fn below(n: u32) -> Self {
        match n.min(MAX_CPUS) {
            0 => Self::new(),
            n => Self::range(0, n - 1).unwrap_or_default(),
        }
    }

    /// A set with one CPU; `None` if `cpu` is not below [`MAX_CPUS`].
    pub fn single(cpu: u32) -> Option<Self> {
        let mut s = Self::new();
        s.insert(cpu).then_some(s)
    }

    const fn split(cpu: u32) -> (usize, u64) {
        ((cpu / 64) as usize, 1u64 << (cpu % 64))
    }

    /// Adds `cpu`; false (and no change) if it is not below [`MAX_CPUS`].
    pub fn insert(&mut self, cpu: u32) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        let (w, bit) = Self::split(cpu);
        self.words[w] |= bit;
        true
    }

    /// Adds `first..=last`; false (and no change) if the range is reversed or
    /// reaches [`MAX_CPUS`].
    pub fn insert_range(&mut self, first: u32, last: u32) -> bool {
        if first > last || last >= MAX_CPUS {
            return false;
        }
        // Word by word, so a 1024-CPU range costs 16 steps, not 1024.
        let mut cpu = first;
        while cpu <= last {
            let (w, _) = Self::split(cpu);
            let lo = cpu % 64;
            let hi = if last / 64 == cpu / 64 { last % 64 } else { 63 };
            let width = hi - lo + 1;
            let bits = if width == 64 {
                u64::MAX
            } else {
                ((1u64 << width) - 1) << lo
            };
            self.words[w] |= bits;
            cpu = (cpu / 64 + 1) * 64;
        }
        true
    }

    /// Removes `cpu` (no-op if absent or out of range).
    pub fn remove(&mut self, cpu: u32) {
        if cpu < MAX_CPUS {
            let (w, bit) = Self::split(cpu);
            self.words[w] &= !bit;
        }
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        if cpu >= MAX_CPUS {
            return false;
        }
        let (w, bit) = Self::split(cpu);
        self.words[w] & bit != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Lowest CPU in the set.
    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    /// `self ∪ other`.
    #[must_use]
    pub fn union(&self, other: &Self) -> Self {
        self.zip(other, |a, b| a | b)
    }

    /// `self ∩ other`.
    #[must_use]
    pub fn intersection(&self, other: &Self) -> Self {
        self.zip(other, |a, b| a & b)
    }

    /// `self \ other`.
    #[must_use]
    pub fn difference(&self, other: &Self) -> Self {
        self.zip(other, |a, b| a & !b)
    }

    /// Whether the two sets share a CPU.
    pub fn intersects(&self, other: &Self) -> bool {
        !self.intersection(other).is_empty()
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        self.difference(other).is_empty()
    }

    fn zip(&self, other: &Self, op: impl Fn(u64, u64) -> u64) -> Self {
        let mut out = Self::new();
        for (o, (a, b)) in out
            .words
            .iter_mut()
            .zip(self.words.iter().zip(other.words.iter()))
        {
            *o = op(*a, *b);
        }
        out
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            set: self,
            word: 0,
            rest: self.words[0],
        }
    }

    /// Maximal runs of consecutive CPUs, ascending, as `(first, last)`.
    pub fn ranges(&self) -> Ranges<'_> {
        Ranges {
            cpus: self.iter(),
            pending: None,
        }
    }
}

/// Iterator over the CPUs of a [`CpuSet`], ascending.
pub struct Iter<'a> {
    set: &'a CpuSet,
    word: usize,
    rest: u64,
}

impl Iterator for Iter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            if self.rest != 0 {
                let bit = self.rest.trailing_zeros();
                self.rest &= self.rest - 1;
                // CAST: word < WORDS = 16, so the product fits in u32.
                return Some(self.word as u32 * 64 + bit);
            }
            self.word += 1;
            self.rest = *self.set.words.get(self.word)?;
        }
    }
}

/// Iterator over the maximal runs of a [`CpuSet`].
pub struct Ranges<'a> {
    cpus: Iter<'a>,
    pending: Option<u32>,
}

impl Iterator for Ranges<'_> {
    type Item = (u32, u32);

    fn next(&mut self) -> Option<(u32, u32)> {
        let first = self.pending.take().or_else(|| self.cpus.next())?;
        let mut last = first;
        for cpu in self.cpus.by_ref() {
            if cpu == last + 1 {
                last = cpu;
            } else {
                self.pending = Some(cpu);
                break;
            }
        }
        Some((first, last))
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (first, last)) in self.ranges().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::{format, string::ToString, vec::Vec};

    fn set(cpus: &[u32]) -> CpuSet {
        let mut s = CpuSet::new();
        for &c in cpus {
            assert!(s.insert(c));
        }
        s
    }

    #[test]
    fn insert_contains_remove() {
        let mut s = CpuSet::new();
        assert!(s.is_empty());
        assert!(s.insert(0) && s.insert(63) && s.insert(64) && s.insert(MAX_CPUS - 1));
        assert!(!s.insert(MAX_CPUS));
        assert!(!s.insert(u32::MAX));
        assert_eq!(s.len(), 4);
        assert!(s.contains(63) && s.contains(64) && !s.contains(65));
        assert!(!s.contains(MAX_CPUS) && !s.contains(u32::MAX));
        s.remove(63);
        s.remove(u32::MAX);
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 64, MAX_CPUS - 1]);
        assert_eq!(s.first(), Some(0));
    }

    #[test]
    fn ranges_cross_word_boundaries() {
        for (first, last) in [
            (0, 0),
            (0, 63),
            (0, 64),
            (60, 70),
            (63, 64),
            (0, MAX_CPUS - 1),
            (5, 200),
        ] {
            let r = CpuSet::range(first, last).unwrap();
            assert_eq!(r.len(), last - first + 1, "{first}-{last}");
            assert_eq!(
                r.iter().collect::<Vec<_>>(),
                (first..=last).collect::<Vec<_>>()
            );
            assert_eq!(r.ranges().collect::<Vec<_>>(), [(first, last)]);
        }
        assert_eq!(CpuSet::range(3, 2), None);
        assert_eq!(CpuSet::range(0, MAX_CPUS), None);
        assert_eq!(CpuSet::below(0), CpuSet::new());
        assert_eq!(CpuSet::below(4), set(&[0, 1, 2, 3]));
        assert_eq!(CpuSet::below(u32::MAX).len(), MAX_CPUS);
    }

    #[test]
    fn arithmetic() {
        let a = set(&[0, 1, 2, 3]);
        let b = set(&[2, 3, 100]);
        assert_eq!(a.union(&b), set(&[0, 1, 2, 3, 100]));
        assert_eq!(a.intersection(&b), set(&[2, 3]));
        assert_eq!(a.difference(&b), set(&[0, 1]));
        assert_eq!(b.difference(&a), set(&[100]));
        assert!(a.intersects(&b));
        assert!(!set(&[0]).intersects(&set(&[1])));
        assert!(set(&[2, 3]).is_subset(&a));
        assert!(!b.is_subset(&a));
        assert!(CpuSet::new().is_subset(&CpuSet::new()));
    }

    #[test]
    fn formats_like_the_kernel() {
        assert_eq!(CpuSet::new().to_string(), "");
        assert_eq!(set(&[2, 3, 6]).to_string(), "2-3,6");
        assert_eq!(set(&[0, 1]).to_string(), "0-1");
        assert_eq!(set(&[0, 2, 4]).to_string(), "0,2,4");
        assert_eq!(set(&[63, 64, 65, 1023]).to_string(), "63-65,1023");
        assert_eq!(format!("{:?}", set(&[1])), "CpuSet(1)");
    }
}
