// SPDX-License-Identifier: GPL-2.0

//! Parsing the sampler's `results` file (format version 1) and printing it
//! as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use crate::error::{Error, Result};

/// One CPU's line of the results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuNoise {
    pub(crate) cpu: u32,
    pub(crate) complete: bool,
    pub(crate) duration_ns: u64,
    pub(crate) loops: u64,
    pub(crate) threshold_ns: u64,
    pub(crate) noise_ns: u64,
    pub(crate) noise_per_sec_ns: u64,
    pub(crate) max_gap_ns: u64,
    pub(crate) gaps: u64,
    pub(crate) irqs: u64,
    pub(crate) softirqs: u64,
    /// Time in interrupt and softirq handlers.
    pub(crate) irq_time_ns: u64,
    /// Time the CPU gave to other tasks.
    pub(crate) thread_time_ns: u64,
    pub(crate) hist: Vec<u64>,
}

impl CpuNoise {
    /// Noise the OS caused (interrupt handlers, other tasks), per second.
    pub(crate) fn os_noise_per_sec_ns(&self) -> u64 {
        per_second(
            self.irq_time_ns.saturating_add(self.thread_time_ns),
            self.duration_ns,
        )
    }

    /// The rest of the noise (hardware, hypervisor), per second.
    pub(crate) fn hw_noise_per_sec_ns(&self) -> u64 {
        self.noise_per_sec_ns
            .saturating_sub(self.os_noise_per_sec_ns())
    }
}

fn per_second(ns: u64, duration_ns: u64) -> u64 {
    if duration_ns == 0 {
        return 0;
    }
    // CAST: display arithmetic; u64 -> f64 -> u64 loses nothing that matters here.
    (ns as f64 * 1e9 / duration_ns as f64) as u64
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Results {
    pub(crate) state: String,
    pub(crate) buckets_us: Vec<u64>,
    pub(crate) cpus: Vec<CpuNoise>,
}

/// A results file this tool cannot read (`results: WHY`).
fn bad(why: String) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("results: {why}"),
    ))
}

fn numbers(s: &str) -> Result<Vec<u64>> {
    s.split(',')
        .map(|n| n.parse().map_err(|_| bad(format!("bad number {n:?}"))))
        .collect()
}

/// Parses the results text.
pub(crate) fn parse(text: &str) -> Result<Results> {
    let mut r = Results::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version=") {
            if v != "1" {
                return Err(bad(format!(
                    "results format version {v}, this tool reads version 1"
                )));
            }
        } else if let Some(v) = line.strip_prefix("state=") {
            r.state = v.to_string();
        } else if let Some(v) = line.strip_prefix("buckets_us=") {
            r.buckets_us = numbers(v)?;
        } else if line.starts_with("cpu=") {
            let kv: BTreeMap<&str, &str> =
                line.split(' ').filter_map(|f| f.split_once('=')).collect();
            let num = |k: &str| -> Result<u64> {
                kv.get(k)
                    .ok_or_else(|| bad(format!("missing {k} in {line:?}")))?
                    .parse()
                    .map_err(|_| bad(format!("bad {k} in {line:?}")))
            };
            r.cpus.push(CpuNoise {
                cpu: u32::try_from(num("cpu")?).map_err(|_| bad("bad cpu".into()))?,
                complete: num("complete")? == 1,
                duration_ns: num("duration_ns")?,
                loops: num("loops")?,
                threshold_ns: num("threshold_ns")?,
                noise_ns: num("noise_ns")?,
                noise_per_sec_ns: num("noise_per_sec_ns")?,
                max_gap_ns: num("max_gap_ns")?,
                gaps: num("gaps")?,
                irqs: num("irqs")?,
                softirqs: num("softirqs")?,
                // Appended fields: absent from older modules.
                irq_time_ns: num("irq_time_ns").unwrap_or(0),
                thread_time_ns: num("thread_time_ns").unwrap_or(0),
                hist: numbers(kv.get("hist").ok_or_else(|| bad("missing hist".into()))?)?,
            });
        }
    }
    Ok(r)
}

/// A duration in nanoseconds, human-readable.
pub(crate) fn human_ns(ns: u64) -> String {
    // CAST: display only; f64 is exact far beyond any run length.
    let f = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} us", f / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", f / 1e6)
    } else {
        format!("{:.3} s", f / 1e9)
    }
}

/// The per-CPU table; `role` names each CPU (isolated, housekeeping, ...).
pub(crate) fn table(r: &Results, role: impl Fn(u32) -> String, hist: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>4}  {:<13} {:>9} {:>10} {:>12} {:>12} {:>12} {:>10} {:>6} {:>7} {:>8}",
        "CPU",
        "role",
        "duration",
        "loops",
        "noise/s",
        "(os)",
        "(hw)",
        "max gap",
        "gaps",
        "irqs",
        "softirqs"
    );
    for c in &r.cpus {
        let _ = writeln!(
            out,
            "{:>4}  {:<13} {:>9} {:>10} {:>12} {:>12} {:>12} {:>10} {:>6} {:>7} {:>8}{}",
            c.cpu,
            role(c.cpu),
            human_ns(c.duration_ns),
            c.loops,
            format!("{}/s", human_ns(c.noise_per_sec_ns)),
            format!("{}/s", human_ns(c.os_noise_per_sec_ns())),
            format!("{}/s", human_ns(c.hw_noise_per_sec_ns())),
            human_ns(c.max_gap_ns),
            c.gaps,
            c.irqs,
            c.softirqs,
            if c.complete { "" } else { "  (stopped early)" },
        );
    }
    if hist {
        for c in &r.cpus {
            let _ = writeln!(
                out,
                "\nCPU {} gaps >= {} (histogram):",
                c.cpu,
                human_ns(c.threshold_ns)
            );
            for (i, n) in c.hist.iter().enumerate().filter(|(_, n)| **n > 0) {
                let lo = r.buckets_us.get(i).copied().unwrap_or(0);
                let range = match r.buckets_us.get(i + 1) {
                    Some(hi) => format!("[{lo}, {hi}) us"),
                    None => format!(">= {lo} us"),
                };
                let _ = writeln!(out, "  {range:>18}  {n}");
            }
        }
    }
    out
}

/// `a / b` as a ratio string, guarding against zero.
pub(crate) fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        if a == 0 {
            "1.0 (both zero)".into()
        } else {
            "inf (isolated value is zero)".into()
        }
    } else {
        // CAST: display only.
        format!("{:.1}", a as f64 / b as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "version=1\nstate=done\nbuckets_us=0,1,2,4\n\
        cpu=2 complete=1 duration_ns=300000555 loops=232921 threshold_ns=5000 noise_ns=107107365 \
        noise_per_sec_ns=357023889 max_gap_ns=3373641 gaps=361 irqs=258 softirqs=79 \
        irq_time_ns=7107365 thread_time_ns=92892635 hist=0,0,8,6\n\
        cpu=3 complete=0 duration_ns=1000 loops=1 threshold_ns=5000 noise_ns=0 \
        noise_per_sec_ns=0 max_gap_ns=10 gaps=0 irqs=0 softirqs=0 hist=0,0,0,0\n";

    #[test]
    fn parses_version_1() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.state, "done");
        assert_eq!(r.buckets_us, [0, 1, 2, 4]);
        assert_eq!(r.cpus.len(), 2);
        assert_eq!(r.cpus[0].cpu, 2);
        assert_eq!(r.cpus[0].max_gap_ns, 3_373_641);
        assert_eq!(r.cpus[0].hist, [0, 0, 8, 6]);
        assert!(r.cpus[0].complete && !r.cpus[1].complete);
        assert_eq!(
            (r.cpus[0].irq_time_ns, r.cpus[0].thread_time_ns),
            (7_107_365, 92_892_635)
        );
        assert_eq!(r.cpus[1].irq_time_ns, 0, "absent appended fields read as 0");
        assert_eq!(r.cpus[0].os_noise_per_sec_ns(), 333_332_716);
        assert_eq!(r.cpus[0].hw_noise_per_sec_ns(), 357_023_889 - 333_332_716);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        assert!(parse("version=2\n").is_err());
        assert!(parse("cpu=1 complete=1\n").is_err());
        assert!(parse("buckets_us=1,x\n").is_err());
    }

    #[test]
    fn table_and_units() {
        let r = parse(SAMPLE).unwrap();
        let t = table(
            &r,
            |c| {
                if c == 2 {
                    "isolated".into()
                } else {
                    "housekeeping".into()
                }
            },
            true,
        );
        assert!(t.contains("357.02 ms/s"), "{t}");
        assert!(t.contains("(stopped early)"));
        assert!(t.contains("[2, 4) us"));
        assert!(t.contains(">= 4 us"));
        assert_eq!(human_ns(999), "999 ns");
        assert_eq!(human_ns(1_500), "1.5 us");
        assert_eq!(human_ns(2_000_000_000), "2.000 s");
        assert_eq!(ratio(10, 4), "2.5");
        assert_eq!(ratio(0, 0), "1.0 (both zero)");
    }
}
