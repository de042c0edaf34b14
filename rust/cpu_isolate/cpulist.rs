// SPDX-License-Identifier: GPL-2.0

//! Parsing cpulists (`2-3,6`), the syntax the kernel prints in
//! `/sys/devices/system/cpu/online` and `/proc/irq/*/smp_affinity_list`.
//!
//! The input comes from a sysfs write, so anything goes: the parser reads
//! bytes, never panics, never overflows, and gives a reason with a position.
//! Grammar (one trailing newline and surrounding blanks are ignored):
//!
//! ```text
//! list  := item ("," item)*
//! item  := cpu | cpu "-" cpu          first <= last
//! cpu   := [0-9]+                     below MAX_CPUS
//! ```
//!
//! Overlapping items and duplicates are accepted and merged, as the kernel's
//! `cpulist_parse()` does. Its stride form (`0-7:2/4`) is not accepted, nor
//! are signs, hex, or blanks inside the list.

use core::fmt;

use super::cpuset::{CpuSet, MAX_CPUS};

/// Why a string is not a cpulist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but blanks.
    Empty,
    /// Unexpected byte (or end of input) at this byte offset of the trimmed
    /// input.
    Syntax {
        /// Byte offset into the trimmed input.
        pos: usize,
    },
    /// `first-last` with `first > last`.
    Reversed {
        /// First CPU of the range.
        first: u32,
        /// Last CPU of the range.
        last: u32,
    },
    /// A CPU number at or above [`MAX_CPUS`] (saturated at `u32::MAX` when
    /// it does not even fit in 32 bits).
    TooLarge {
        /// The CPU number.
        cpu: u32,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty cpulist"),
            ParseError::Syntax { pos } => write!(f, "cpulist syntax error at byte {pos}"),
            ParseError::Reversed { first, last } => write!(f, "reversed range {first}-{last}"),
            ParseError::TooLarge { cpu } if *cpu == u32::MAX => {
                write!(f, "CPU number too large (limit {})", MAX_CPUS - 1)
            }
            ParseError::TooLarge { cpu } => {
                write!(f, "CPU {cpu} too large (limit {})", MAX_CPUS - 1)
            }
        }
    }
}

/// Trims blanks (space, tab, newline) at both ends, as sysfs input usually
/// ends with the newline `echo` adds.
pub fn trim(s: &[u8]) -> &[u8] {
    let blank = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = s.iter().position(|b| !blank(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !blank(b)).map_or(start, |p| p + 1);
    s.get(start..end).unwrap_or(&[])
}

/// Parses a cpulist (see the module documentation for the grammar).
pub fn parse(input: &[u8]) -> Result<CpuSet, ParseError> {
    let s = trim(input);
    if s.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut set = CpuSet::new();
    let mut pos = 0;
    loop {
        let first = number(s, &mut pos)?;
        let last = if s.get(pos) == Some(&b'-') {
            pos += 1;
            number(s, &mut pos)?
        } else {
            first
        };
        if first > last {
            return Err(ParseError::Reversed { first, last });
        }
        if last >= MAX_CPUS {
            return Err(ParseError::TooLarge { cpu: last });
        }
        set.insert_range(first, last);
        match s.get(pos) {
            None => return Ok(set),
            Some(b',') => pos += 1,
            Some(_) => return Err(ParseError::Syntax { pos }),
        }
    }
}

/// Reads a decimal number at `*pos`, saturating at `u32::MAX` (reported as
/// [`ParseError::TooLarge`] by the caller's range check).
fn number(s: &[u8], pos: &mut usize) -> Result<u32, ParseError> {
    let start = *pos;
    let mut value: u32 = 0;
    while let Some(d) = s.get(*pos).filter(|b| b.is_ascii_digit()) {
        value = value.saturating_mul(10).saturating_add(u32::from(d - b'0'));
        *pos += 1;
    }
    if *pos == start {
        return Err(ParseError::Syntax { pos: start });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;
    use std::{string::ToString, vec::Vec};

    fn p(s: &str) -> Result<Vec<u32>, ParseError> {
        parse(s.as_bytes()).map(|s| s.iter().collect())
    }

    #[test]
    fn accepts_what_the_kernel_prints() {
        assert_eq!(p("2-3,6"), Ok([2, 3, 6].to_vec()));
        assert_eq!(p("0"), Ok([0].to_vec()));
        assert_eq!(p("0-3\n"), Ok([0, 1, 2, 3].to_vec()));
        assert_eq!(p("  1 \n"), Ok([1].to_vec()));
        assert_eq!(p("1023"), Ok([1023].to_vec()));
        assert_eq!(p("007"), Ok([7].to_vec()));
        assert_eq!(p("0-0"), Ok([0].to_vec()));
    }

    #[test]
    fn duplicates_and_overlaps_merge() {
        assert_eq!(p("3,3,3"), Ok([3].to_vec()));
        assert_eq!(p("1-4,2-3,4"), Ok([1, 2, 3, 4].to_vec()));
        assert_eq!(p("6,2-3"), Ok([2, 3, 6].to_vec()));
    }

    #[test]
    fn garbage_is_a_syntax_error_with_position() {
        for (s, pos) in [
            ("abc", 0),
            ("-1", 0),
            ("+1", 0),
            ("1,", 2),
            (",1", 0),
            ("1,,2", 2),
            ("1-", 2),
            ("1--2", 2),
            ("1 2", 1),
            ("1, 2", 2),
            ("0x3", 1),
            ("2-3:1/2", 3),
            ("1\n2", 1),
            ("1\0", 1),
            ("é", 0),
        ] {
            assert_eq!(p(s), Err(ParseError::Syntax { pos }), "{s:?}");
        }
    }

    #[test]
    fn empty_input() {
        for s in ["", " ", "\n", " \t\r\n"] {
            assert_eq!(p(s), Err(ParseError::Empty), "{s:?}");
        }
    }

    #[test]
    fn reversed_and_huge_ranges() {
        assert_eq!(p("3-2"), Err(ParseError::Reversed { first: 3, last: 2 }));
        assert_eq!(p("1024"), Err(ParseError::TooLarge { cpu: 1024 }));
        assert_eq!(p("0-1024"), Err(ParseError::TooLarge { cpu: 1024 }));
        assert_eq!(
            p("0-4294967295"),
            Err(ParseError::TooLarge { cpu: u32::MAX })
        );
        assert_eq!(
            p("99999999999999999999999999"),
            Err(ParseError::TooLarge { cpu: u32::MAX })
        );
        assert_eq!(
            p("4294967296-1"),
            Err(ParseError::Reversed {
                first: u32::MAX,
                last: 1
            })
        );
        assert_eq!(p("0-1023").map(|v| v.len()), Ok(1024));
    }

    #[test]
    fn round_trips_through_display() {
        for s in ["0", "2-3,6", "0-1023", "1,3,5-9,64-127,1000"] {
            assert_eq!(parse(s.as_bytes()).unwrap().to_string(), s);
        }
    }

    #[test]
    fn messages() {
        assert_eq!(ParseError::Empty.to_string(), "empty cpulist");
        assert_eq!(
            ParseError::TooLarge { cpu: 2000 }.to_string(),
            "CPU 2000 too large (limit 1023)"
        );
    }

    /// Every byte string up to length 3 over a hostile alphabet, plus a
    /// deterministic pseudo-random sweep of longer ones: the parser never
    /// panics, and what it accepts re-parses to the same set from its
    /// canonical form.
    #[test]
    fn fuzz_never_panics_and_round_trips() {
        let alphabet = b"0129-, \n:/x\xff";
        let check = |input: &[u8]| {
            if let Ok(set) = parse(input) {
                assert!(!set.is_empty());
                let canon = set.to_string();
                assert_eq!(parse(canon.as_bytes()), Ok(set), "{input:?}");
            }
        };
        for a in alphabet {
            check(&[*a]);
            for b in alphabet {
                check(&[*a, *b]);
                for c in alphabet {
                    check(&[*a, *b, *c]);
                }
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut buf = [0u8; 24];
            // xorshift64: reproducible without a dependency.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            for (i, b) in buf.iter_mut().enumerate().take(len) {
                *b = alphabet[((x >> (i % 8 * 8)) as usize + i) % alphabet.len()];
            }
            check(&buf[..len]);
        }
    }
}
