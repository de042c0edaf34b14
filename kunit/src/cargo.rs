// SPDX-License-Identifier: GPL-2.0
//! Totals of a `cargo test` run.
//!
//! `cargo test` runs one libtest binary per target plus the doctests, and each
//! prints its own `test result:` summary; the totals are their sums. A binary
//! that dies (signal, abort, OOM) prints `running N tests` and never a
//! summary, so that is counted separately instead of silently vanishing.

/// Sums over all `test result:` lines of a `cargo test` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CargoTotals {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests marked `#[ignore]` (and not run).
    pub ignored: usize,
    /// Benchmarks measured.
    pub measured: usize,
    /// Tests excluded by a name filter.
    pub filtered_out: usize,
    /// Number of `test result:` lines, i.e. test binaries that finished.
    pub summaries: usize,
    /// Test binaries that printed `running N tests` but no `test result:`.
    pub incomplete: usize,
    /// Names from `test <name> ... FAILED` lines, in output order.
    pub failed_names: Vec<String>,
}

impl CargoTotals {
    /// True when something ran to completion and nothing failed or died.
    pub fn is_success(&self) -> bool {
        self.failed == 0 && self.incomplete == 0 && self.summaries > 0
    }
}

/// Parses the (stdout + stderr) text of `cargo test`.
pub fn parse_cargo_test(text: &str) -> CargoTotals {
    let mut totals = CargoTotals::default();
    let mut running = false;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("running ") {
            let mut words = rest.split_whitespace();
            let count = words.next().is_some_and(|w| w.parse::<usize>().is_ok());
            if count && matches!(words.next(), Some("test" | "tests")) && words.next().is_none() {
                totals.incomplete += usize::from(running);
                running = true;
            }
        } else if let Some(rest) = line.strip_prefix("test result: ") {
            running = false;
            totals.summaries += 1;
            add_summary(&mut totals, rest);
        } else if let Some(rest) = line.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" ... FAILED") {
                totals.failed_names.push(name.to_owned());
            }
        }
    }
    totals.incomplete += usize::from(running);
    totals
}

/// Adds `ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ...`.
fn add_summary(totals: &mut CargoTotals, summary: &str) {
    for part in summary.split(';') {
        // The first part also carries the verdict ("ok." / "FAILED.").
        let mut words = part
            .split_whitespace()
            .skip_while(|w| w.parse::<usize>().is_err());
        let Some(count) = words.next().and_then(|w| w.parse::<usize>().ok()) else {
            continue;
        };
        let field = match words.next() {
            Some("passed") => &mut totals.passed,
            Some("failed") => &mut totals.failed,
            Some("ignored") => &mut totals.ignored,
            Some("measured") => &mut totals.measured,
            Some("filtered") => &mut totals.filtered_out,
            _ => continue,
        };
        *field += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "\
   Compiling lincell-ktap v0.1.0 (/work/main/kunit)
    Finished `test` profile [unoptimized + debuginfo] target(s) in 1.23s
     Running unittests src/lib.rs (target/debug/deps/lincell_ktap-0123456789abcdef)

running 3 tests
test ktap::tests::a ... ok
test ring::tests::wraps ... FAILED
test slow ... ignored, takes a minute

failures:

---- ring::tests::wraps stdout ----
thread 'ring::tests::wraps' panicked at src/ring.rs:9:5:
assertion `left == right` failed

failures:
    ring::tests::wraps

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.01s

     Running tests/peer.rs (target/debug/deps/peer-fedcba9876543210)

running 1 test
test connects ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests lincell

running 2 tests
test src/lib.rs - parse (line 10) ... FAILED
test src/lib.rs - Report (line 3) ... ok

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.30s

error: 2 targets failed:
    `--lib`
    `--doc`
";

    #[test]
    fn sums_all_binaries_and_doctests() {
        let totals = parse_cargo_test(OUTPUT);
        let want = CargoTotals {
            passed: 3,
            failed: 2,
            ignored: 1,
            measured: 0,
            filtered_out: 2,
            summaries: 3,
            incomplete: 0,
            failed_names: vec![
                "ring::tests::wraps".into(),
                "src/lib.rs - parse (line 10)".into(),
            ],
        };
        assert_eq!(totals, want);
        assert!(!totals.is_success());
    }

    #[test]
    fn all_green() {
        let totals = parse_cargo_test(
            "running 12 tests\ntest result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n",
        );
        assert_eq!((totals.passed, totals.failed, totals.ignored), (12, 0, 1));
        assert!(totals.is_success());
    }

    #[test]
    fn crashed_binary_is_incomplete() {
        let text = "running 2 tests\ntest a ... ok\nerror: test failed\nCaused by: (signal: 11, SIGSEGV)\n\
                    running 1 test\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
                    running 4 tests\n";
        let totals = parse_cargo_test(text);
        assert_eq!(
            (totals.passed, totals.incomplete, totals.summaries),
            (1, 2, 1)
        );
        assert!(!totals.is_success());
    }

    #[test]
    fn nothing_ran() {
        let totals = parse_cargo_test("error[E0425]: cannot find value `x`\n");
        assert_eq!(totals, CargoTotals::default());
        assert!(!totals.is_success());
        // Prose that merely starts with the same words is not a binary.
        assert_eq!(
            parse_cargo_test("running all tests now\ntest foo\n").incomplete,
            0
        );
    }
}
