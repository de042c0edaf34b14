// SPDX-License-Identifier: GPL-2.0

//! The text commands written to the module's sysfs files, parsed into typed
//! requests. Everything here sees raw user bytes.
//!
//! - `isolate`: `CPULIST [MODE]`, `MODE` one of `steer` (default) or
//!   `offline`;
//! - `release`: `CPULIST` (exactly one earlier isolation) or `all`;
//! - `sampler/control`: `start` or `stop`;
//! - numeric settings: a decimal number within documented bounds.

use core::fmt;

use super::cpulist::{self, ParseError};
use super::cpuset::CpuSet;

/// How CPUs are isolated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The CPUs stay online; movable IRQs and kernel threads are steered off.
    Steer,
    /// As `Steer`, then the CPUs are taken offline (hand-off to another OS,
    /// as Jailhouse does for a cell) and brought back online on release.
    Offline,
}

impl Mode {
    /// The keyword used in the interface.
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Steer => "steer",
            Mode::Offline => "offline",
        }
    }
}

/// A parsed `isolate` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsolateRequest {
    /// CPUs to isolate.
    pub cpus: CpuSet,
    /// How.
    pub mode: Mode,
}

/// A parsed `release` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseRequest {
    /// Every active isolation.
    All,
    /// The isolation of exactly these CPUs.
    Cpus(CpuSet),
}

/// A parsed `sampler/control` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerCommand {
    /// Start a run with the current settings.
    Start,
    /// Stop a running run (its partial results are kept).
    Stop,
}

/// Why a command was not understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// The CPU list is malformed.
    Cpulist(ParseError),
    /// An unknown keyword or trailing text.
    Keyword,
    /// A number that is malformed or outside `min..=max`.
    Number {
        /// Smallest accepted value.
        min: u64,
        /// Largest accepted value.
        max: u64,
    },
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Cpulist(e) => e.fmt(f),
            CommandError::Keyword => f.write_str("unknown keyword"),
            CommandError::Number { min, max } => write!(f, "expected a number in {min}..={max}"),
        }
    }
}

/// Splits off the first blank-separated word of trimmed input.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    let s = cpulist::trim(s);
    match s.iter().position(|b| matches!(b, b' ' | b'\t')) {
        Some(i) => (&s[..i], cpulist::trim(&s[i..])),
        None => (s, &[]),
    }
}

/// Parses `CPULIST [steer|offline]`.
pub fn parse_isolate(s: &[u8]) -> Result<IsolateRequest, CommandError> {
    let (list, rest) = split_word(s);
    let cpus = cpulist::parse(list).map_err(CommandError::Cpulist)?;
    let mode = match rest {
        b"" | b"steer" => Mode::Steer,
        b"offline" => Mode::Offline,
        _ => return Err(CommandError::Keyword),
    };
    Ok(IsolateRequest { cpus, mode })
}

/// Parses `CPULIST` or `all`.
pub fn parse_release(s: &[u8]) -> Result<ReleaseRequest, CommandError> {
    match cpulist::trim(s) {
        b"all" => Ok(ReleaseRequest::All),
        list => cpulist::parse(list)
            .map(ReleaseRequest::Cpus)
            .map_err(CommandError::Cpulist),
    }
}

/// Parses `start` or `stop`.
pub fn parse_sampler_command(s: &[u8]) -> Result<SamplerCommand, CommandError> {
    match cpulist::trim(s) {
        b"start" => Ok(SamplerCommand::Start),
        b"stop" => Ok(SamplerCommand::Stop),
        _ => Err(CommandError::Keyword),
    }
}

/// Parses a decimal number in `min..=max`.
pub fn parse_number(s: &[u8], min: u64, max: u64) -> Result<u64, CommandError> {
    let err = CommandError::Number { min, max };
    let s = cpulist::trim(s);
    if s.is_empty() || s.len() > 20 {
        return Err(err);
    }
    let mut v: u64 = 0;
    for b in s {
        if !b.is_ascii_digit() {
            return Err(err);
        }
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(err)?;
    }
    if v < min || v > max {
        return Err(err);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpus(s: &str) -> CpuSet {
        cpulist::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn isolate_commands() {
        assert_eq!(
            parse_isolate(b"2-3\n"),
            Ok(IsolateRequest {
                cpus: cpus("2-3"),
                mode: Mode::Steer
            })
        );
        assert_eq!(
            parse_isolate(b"2-3 offline\n"),
            Ok(IsolateRequest {
                cpus: cpus("2-3"),
                mode: Mode::Offline
            })
        );
        assert_eq!(
            parse_isolate(b" 1\t steer "),
            Ok(IsolateRequest {
                cpus: cpus("1"),
                mode: Mode::Steer
            })
        );
        assert_eq!(parse_isolate(b"2-3 offline x"), Err(CommandError::Keyword));
        assert_eq!(parse_isolate(b"2-3 OFFLINE"), Err(CommandError::Keyword));
        assert_eq!(
            parse_isolate(b"offline"),
            Err(CommandError::Cpulist(ParseError::Syntax { pos: 0 }))
        );
        assert_eq!(
            parse_isolate(b""),
            Err(CommandError::Cpulist(ParseError::Empty))
        );
        assert_eq!(
            parse_isolate(b"\n"),
            Err(CommandError::Cpulist(ParseError::Empty))
        );
    }

    #[test]
    fn release_commands() {
        assert_eq!(parse_release(b"all\n"), Ok(ReleaseRequest::All));
        assert_eq!(parse_release(b"2-3"), Ok(ReleaseRequest::Cpus(cpus("2-3"))));
        assert!(parse_release(b"al").is_err());
        assert!(parse_release(b"all 2").is_err());
        assert_eq!(
            parse_release(b""),
            Err(CommandError::Cpulist(ParseError::Empty))
        );
    }

    #[test]
    fn sampler_commands() {
        assert_eq!(parse_sampler_command(b"start\n"), Ok(SamplerCommand::Start));
        assert_eq!(parse_sampler_command(b"stop"), Ok(SamplerCommand::Stop));
        assert_eq!(parse_sampler_command(b"go"), Err(CommandError::Keyword));
    }

    #[test]
    fn numbers_are_bounded() {
        assert_eq!(parse_number(b"1000\n", 1, 60_000), Ok(1000));
        assert_eq!(parse_number(b"1", 1, 1), Ok(1));
        let e = Err(CommandError::Number {
            min: 1,
            max: 60_000,
        });
        for bad in [
            &b""[..],
            b"0",
            b"60001",
            b"-1",
            b"1e3",
            b"12 3",
            b"99999999999999999999",
            b"184467440737095516160",
        ] {
            assert_eq!(parse_number(bad, 1, 60_000), e, "{bad:?}");
        }
        assert_eq!(
            parse_number(b"18446744073709551615", 0, u64::MAX),
            Ok(u64::MAX)
        );
    }
}
