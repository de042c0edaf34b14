// SPDX-License-Identifier: GPL-2.0

//! The text commands written to the module's sysfs files, parsed into typed
//! requests. Everything here sees raw user bytes.
//!
//! - `isolate`: `CPULIST [MODE] [irqs=IRQ,IRQ...]`, `MODE` one of `steer`
//!   (default) or `offline`; `irqs=` (steer mode only) names up to
//!   [`MAX_KEPT_IRQS`] interrupts to deliver on the isolated CPUs (an RT
//!   task's own device) instead of steering them off;
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

/// Largest number of interrupts one isolation can keep.
pub const MAX_KEPT_IRQS: usize = 8;

/// The interrupts an isolation keeps on its CPUs: distinct IRQ numbers, in
/// the order given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqList {
    irqs: [u32; MAX_KEPT_IRQS],
    len: usize,
}

impl IrqList {
    /// No interrupt.
    pub const fn new() -> Self {
        IrqList {
            irqs: [0; MAX_KEPT_IRQS],
            len: 0,
        }
    }

    /// The IRQ numbers.
    pub fn as_slice(&self) -> &[u32] {
        &self.irqs[..self.len]
    }

    /// Whether `irq` is in the list.
    pub fn contains(&self, irq: u32) -> bool {
        self.as_slice().contains(&irq)
    }

    /// Adds `irq`; false if it is already there or the list is full.
    pub fn push(&mut self, irq: u32) -> bool {
        if self.contains(irq) || self.len == MAX_KEPT_IRQS {
            return false;
        }
        self.irqs[self.len] = irq;
        self.len += 1;
        true
    }
}

impl fmt::Display for IrqList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, irq) in self.as_slice().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{irq}")?;
        }
        Ok(())
    }
}

/// Parses the value of `irqs=`: comma-separated decimal IRQ numbers (at
/// most [`MAX_KEPT_IRQS`], no duplicates, each below 2^31).
fn parse_irqs(s: &[u8]) -> Result<IrqList, CommandError> {
    let mut list = IrqList::new();
    for item in s.split(|&b| b == b',') {
        let irq = parse_number(item, 0, i32::MAX as u64).map_err(|_| CommandError::Irqs)?;
        // In range by the bound above.
        if !list.push(irq as u32) {
            return Err(CommandError::Irqs);
        }
    }
    Ok(list)
}

/// A parsed `isolate` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsolateRequest {
    /// CPUs to isolate.
    pub cpus: CpuSet,
    /// How.
    pub mode: Mode,
    /// Interrupts to deliver on `cpus` while isolated (steer mode).
    pub irqs: IrqList,
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
    /// `irqs=` malformed (not decimal numbers, a duplicate, more than
    /// [`MAX_KEPT_IRQS`]).
    Irqs,
    /// `irqs=` with `offline` mode (an offline CPU takes no interrupt).
    IrqsOffline,
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
            CommandError::Irqs => write!(
                f,
                "irqs= takes up to {MAX_KEPT_IRQS} distinct decimal IRQ numbers, comma-separated"
            ),
            CommandError::IrqsOffline => f.write_str("irqs= needs steer mode, not offline"),
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

/// Parses `CPULIST [steer|offline] [irqs=IRQ,IRQ...]`.
pub fn parse_isolate(s: &[u8]) -> Result<IsolateRequest, CommandError> {
    let (list, mut rest) = split_word(s);
    let cpus = cpulist::parse(list).map_err(CommandError::Cpulist)?;
    let mut mode = Mode::Steer;
    let (word, after) = split_word(rest);
    match word {
        b"steer" => rest = after,
        b"offline" => (mode, rest) = (Mode::Offline, after),
        _ => {}
    }
    let mut irqs = IrqList::new();
    let (word, after) = split_word(rest);
    if let Some(value) = word.strip_prefix(b"irqs=") {
        if mode == Mode::Offline {
            return Err(CommandError::IrqsOffline);
        }
        irqs = parse_irqs(value)?;
        rest = after;
    }
    if !rest.is_empty() {
        return Err(CommandError::Keyword);
    }
    Ok(IsolateRequest { cpus, mode, irqs })
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

    extern crate std;

    fn cpus(s: &str) -> CpuSet {
        cpulist::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn isolate_commands() {
        assert_eq!(
            parse_isolate(b"2-3\n"),
            Ok(IsolateRequest {
                cpus: cpus("2-3"),
                mode: Mode::Steer,
                irqs: IrqList::new(),
            })
        );
        assert_eq!(
            parse_isolate(b"2-3 offline\n"),
            Ok(IsolateRequest {
                cpus: cpus("2-3"),
                mode: Mode::Offline,
                irqs: IrqList::new(),
            })
        );
        assert_eq!(
            parse_isolate(b" 1\t steer "),
            Ok(IsolateRequest {
                cpus: cpus("1"),
                mode: Mode::Steer,
                irqs: IrqList::new(),
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
    fn isolate_with_kept_irqs() {
        let r = parse_isolate(b"1 irqs=24,25\n").unwrap();
        assert_eq!((r.cpus, r.mode), (cpus("1"), Mode::Steer));
        assert_eq!(r.irqs.as_slice(), &[24, 25]);
        assert_eq!(std::format!("{}", r.irqs), "24,25");
        let r = parse_isolate(b"2-3 steer irqs=7").unwrap();
        assert_eq!(r.irqs.as_slice(), &[7]);
        assert!(r.irqs.contains(7) && !r.irqs.contains(8));
        let r = parse_isolate(b"1 irqs=0,1,2,3,4,5,6,7").unwrap();
        assert_eq!(r.irqs.as_slice().len(), MAX_KEPT_IRQS);
        for bad in [
            &b"1 irqs="[..],
            b"1 irqs=24,",
            b"1 irqs=,24",
            b"1 irqs=24,24",
            b"1 irqs=0x18",
            b"1 irqs=-1",
            b"1 irqs=2147483648",
            b"1 irqs=0,1,2,3,4,5,6,7,8",
        ] {
            assert_eq!(parse_isolate(bad), Err(CommandError::Irqs), "{bad:?}");
        }
        assert_eq!(
            parse_isolate(b"1 offline irqs=24"),
            Err(CommandError::IrqsOffline)
        );
        assert_eq!(
            parse_isolate(b"1 irqs=24 steer"),
            Err(CommandError::Keyword)
        );
        assert_eq!(parse_isolate(b"1 irqs=24 x"), Err(CommandError::Keyword));
        assert_eq!(parse_isolate(b"1 irqs=24 25"), Err(CommandError::Keyword));
        assert_eq!(parse_isolate(b"1 IRQS=24"), Err(CommandError::Keyword));
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
