// SPDX-License-Identifier: GPL-2.0
//! Tolerant parser for KTAP v1 and TAP 13/14, as KUnit and test scripts print it.
//!
//! The input is whatever the harness captured: a dmesg dump, a debugfs
//! `kunit/<suite>/results` file, or a guest script's stdout. Test output is
//! interleaved with unrelated log lines, so anything unrecognised is kept as
//! a diagnostic of the test that is running rather than being an error.
//!
//! Nesting is recovered from two signals, because neither is always there:
//! indentation (modern KUnit indents each level by four spaces, and a
//! subtest's own result line sits one level left of its header) and structure
//! (a subtest ends at a result line carrying its `# Subtest:` name, or once its
//! plan is complete; older debugfs files print everything unindented).
//!
//! Only leaf results are counted: a suite's own `ok 1 suite` line summarises
//! its cases and would count them twice. The suite line still matters where it
//! disagrees with its cases, and every structural gap (short plan, missing
//! result line) becomes a failure so that a crash can never look like a pass.

use crate::dmesg;
use std::mem;

/// Lines kept as diagnostics of one case. Unrelated kernel log lines also
/// land there, and only the last ones before a result are worth showing.
const MAX_DIAGNOSTICS: usize = 200;

/// What a test case reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// `ok` without a skip directive (`ok ... # TODO` too).
    Pass,
    /// `not ok`, or a result the parser had to assume (missing, truncated).
    Fail,
    /// `# SKIP` on `ok` or `not ok`, or `not ok ... # TODO` (expected failure).
    Skip,
}

/// One leaf test case: a KUnit case, or one parameter of a parameterised case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Dot-separated names of the enclosing subtests, e.g. `ivshmem_layout`
    /// or `suite.param_case`; empty for top-level plain TAP.
    pub suite: String,
    /// Name from the result line without TAP's optional `- `. Names the
    /// parser made up are in angle brackets: `<missing #3>`, `<suite>`.
    pub name: String,
    /// The verdict.
    pub outcome: Outcome,
    /// Non-result lines seen inside the case's block before its result line
    /// (KUnit `#` diagnostics, assertion details, interleaved kernel log),
    /// trimmed, at most the last 200.
    pub diagnostics: Vec<String>,
}

impl Case {
    /// `suite.name`, or just `name` when there is no suite.
    pub fn path(&self) -> String {
        join(&self.suite, &self.name)
    }
}

/// Everything [`parse`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Leaf test cases in output order.
    pub cases: Vec<Case>,
    /// Structural issues (short plans, truncated subtests, suites whose own
    /// verdict contradicts their cases). The failures they imply are already
    /// in [`Report::cases`].
    pub problems: Vec<String>,
}

impl Report {
    /// Number of passed cases.
    pub fn passed(&self) -> usize {
        self.count(Outcome::Pass)
    }

    /// Number of failed cases, including the ones the parser had to assume.
    pub fn failed(&self) -> usize {
        self.count(Outcome::Fail)
    }

    /// Number of skipped cases.
    pub fn skipped(&self) -> usize {
        self.count(Outcome::Skip)
    }

    /// The failed cases, in output order.
    pub fn failures(&self) -> impl Iterator<Item = &Case> + '_ {
        self.cases.iter().filter(|c| c.outcome == Outcome::Fail)
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.cases.iter().filter(|c| c.outcome == outcome).count()
    }
}

/// Parses every KTAP/TAP document found in `text`.
///
/// Never fails: unrecognised lines are diagnostics (inside a document) or
/// ignored (outside one), and structural damage is reported in
/// [`Report::problems`]. Text without any TAP yields an empty report.
pub fn parse(text: &str) -> Report {
    let mut parser = Parser::default();
    for raw in text.lines() {
        let body = dmesg::strip_prefix(raw);
        let trimmed = body.trim_start_matches([' ', '\t']);
        parser.line(body.len() - trimmed.len(), trimmed.trim_end());
    }
    parser.finish_document();
    parser.report
}

/// Lines that open or describe a (sub)test.
enum Header<'a> {
    Version,
    Subtest(&'a str),
    Plan(usize),
}

/// An `ok` / `not ok` line.
struct ResultLine<'a> {
    number: Option<usize>,
    name: &'a str,
    outcome: Outcome,
}

/// A test that can contain others: the document root or a `# Subtest:`.
#[derive(Default)]
struct Block {
    /// False only for a root that has not seen any TAP yet.
    started: bool,
    name: Option<String>,
    indent: Option<usize>,
    plan: Option<usize>,
    children: Vec<Node>,
    /// Diagnostics waiting for the next result line.
    pending: Vec<String>,
    /// From the block's own result line; `None` once closed means truncated.
    verdict: Option<Outcome>,
}

impl Block {
    fn is_fresh(&self) -> bool {
        self.name.is_none() && self.plan.is_none() && self.children.is_empty()
    }

    fn plan_done(&self) -> bool {
        self.plan.is_some_and(|n| self.children.len() >= n)
    }
}

/// A closed child of a block. Cases get their `suite` when flattened.
enum Node {
    Case(Case),
    Block(Block),
}

#[derive(Default)]
struct Parser {
    root: Block,
    /// Open subtests below the root, innermost last.
    nested: Vec<Block>,
    report: Report,
}

impl Parser {
    fn top(&mut self) -> &mut Block {
        self.nested.last_mut().unwrap_or(&mut self.root)
    }

    /// Indentation of the block enclosing the innermost open subtest.
    fn parent_indent(&self) -> Option<usize> {
        let mut enclosing = self.nested.iter().rev().skip(1).chain([&self.root]);
        enclosing.next().filter(|_| !self.nested.is_empty())?.indent
    }

    fn line(&mut self, indent: usize, text: &str) {
        if let Some(header) = parse_header(text) {
            self.header(indent, header);
        } else if let Some(result) = parse_result(text) {
            // A bare "ok" outside TAP is more likely prose than a result.
            if self.root.started || result.number.is_some() {
                self.result(indent, result);
            }
        } else if self.root.started && !text.is_empty() && !text.starts_with("# module:") {
            if text.starts_with("Bail out!") {
                self.report
                    .problems
                    .push(format!("test run bailed out: {text}"));
            }
            let pending = &mut self.top().pending;
            if pending.len() >= MAX_DIAGNOSTICS {
                pending.remove(0);
            }
            pending.push(text.to_owned());
        }
    }

    fn header(&mut self, indent: usize, header: Header<'_>) {
        // A header left of the open block: that block lost its result line.
        while self.top().indent.is_some_and(|i| indent < i) {
            self.close_truncated();
        }
        let depth = self.nested.len();
        let top = self.top();
        let same = top.indent == Some(indent);
        let attach = match header {
            _ if !top.started => true,
            Header::Plan(_) => same && top.plan.is_none(),
            _ => same && top.is_fresh(),
        };
        if attach {
            top.started = true;
            top.indent = Some(indent);
        } else if depth > 0 || !same || top.plan.is_some() && !top.plan_done() {
            // Deeper, or inside a test still expecting results: a subtest.
            let pending = mem::take(&mut top.pending);
            let (started, indent) = (true, Some(indent));
            self.nested.push(Block {
                started,
                indent,
                pending,
                ..Block::default()
            });
        } else {
            // Same level as a finished top-level document: the next document.
            self.finish_document();
            self.root.started = true;
            self.root.indent = Some(indent);
        }
        let top = self.top();
        match header {
            Header::Version => {}
            Header::Subtest(name) => top.name = Some(name.to_owned()),
            Header::Plan(n) => top.plan = Some(n),
        }
        self.finish_if_done();
    }

    fn result(&mut self, indent: usize, result: ResultLine<'_>) {
        // Left of the parent too: this cannot be the innermost subtest's own
        // line, so that subtest lost it.
        while self.parent_indent().is_some_and(|p| indent < p) {
            self.close_truncated();
        }
        let depth = self.nested.len();
        let parent_indent = self.parent_indent();
        let top = self.top();
        if !top.started {
            top.started = true;
            top.indent = Some(indent);
        }
        let own = top.indent.unwrap_or(indent);
        // Indentation says nothing when a block sits at its parent's level
        // (old debugfs files); then a subtest ends with its own name, or once
        // its plan is complete if it has no name.
        let nested_by_indent = depth > 0 && parent_indent.is_some_and(|p| own > p);
        let closes = match &top.name {
            _ if indent != own => indent < own,
            _ if nested_by_indent => false,
            Some(name) => name == result.name,
            None => top.plan_done(),
        };
        if closes {
            self.close_top(result.name, result.outcome);
        } else {
            top.children.push(Node::Case(Case {
                suite: String::new(),
                name: result.name.to_owned(),
                outcome: result.outcome,
                diagnostics: mem::take(&mut top.pending),
            }));
            self.finish_if_done();
        }
    }

    /// The top block's own result line arrived.
    fn close_top(&mut self, name: &str, outcome: Outcome) {
        let top = self.top();
        top.name.get_or_insert_with(|| name.to_owned());
        top.verdict = Some(outcome);
        match self.nested.pop() {
            Some(block) => {
                self.top().children.push(Node::Block(block));
                self.finish_if_done();
            }
            None => self.finish_document(),
        }
    }

    /// The top block will never get its result line.
    fn close_truncated(&mut self) {
        match self.nested.pop() {
            Some(block) => self.top().children.push(Node::Block(block)),
            None => self.finish_document(),
        }
    }

    /// An unnamed top-level document has no result line of its own; it is
    /// over once its plan is, so later log lines are not its diagnostics.
    fn finish_if_done(&mut self) {
        if self.nested.is_empty() && self.root.name.is_none() && self.root.plan_done() {
            self.finish_document();
        }
    }

    /// Ends the current document, closing whatever is still open.
    fn finish_document(&mut self) {
        while let Some(block) = self.nested.pop() {
            self.top().children.push(Node::Block(block));
        }
        let root = mem::take(&mut self.root);
        if !root.started {
            return;
        }
        if root.name.is_some() {
            // A named root is a suite (debugfs style): it needs its own line.
            flatten_node("", Node::Block(root), &mut self.report);
        } else {
            flatten_block("", root, &mut self.report);
        }
    }
}

/// Appends the leaf cases below `node` to `report`; returns how many failed.
fn flatten_node(path: &str, node: Node, report: &mut Report) -> usize {
    let mut block = match node {
        Node::Case(case) => {
            let failed = case.outcome == Outcome::Fail;
            report.cases.push(Case {
                suite: path.to_owned(),
                ..case
            });
            return usize::from(failed);
        }
        Node::Block(block) => block,
    };
    let name = block.name.take().unwrap_or_else(|| "<unnamed>".to_owned());
    let inner = join(path, &name);
    let truncated = block.verdict.is_none();
    if truncated {
        report.problems.push(format!(
            "{inner}: subtest has no result line (output truncated?)"
        ));
    }
    let outcome = block.verdict.unwrap_or(Outcome::Fail);
    let diagnostics = mem::take(&mut block.pending);
    let mut leaf = Case {
        suite: path.to_owned(),
        name,
        outcome,
        diagnostics,
    };
    if block.children.is_empty() && block.plan.unwrap_or(0) == 0 {
        // Nothing inside (e.g. a parameterised case without parameters, or
        // `1..0`): the subtest's own verdict is the only one there is.
        return flatten_node(path, Node::Case(leaf), report);
    }
    let failures = flatten_block(&inner, block, report);
    if failures > 0 || outcome != Outcome::Fail {
        return failures;
    }
    // KUnit fails a suite whose init/exit failed even if every case passed;
    // that failure must be counted somewhere.
    if !truncated {
        report.problems.push(format!(
            "{inner}: reported not ok but none of its cases failed"
        ));
    }
    (leaf.suite, leaf.name) = (inner, "<suite>".to_owned());
    report.cases.push(leaf);
    1
}

/// Flattens the children of `block` under `path` and checks its plan.
fn flatten_block(path: &str, block: Block, report: &mut Report) -> usize {
    let seen = block.children.len();
    let mut failures: usize = block
        .children
        .into_iter()
        .map(|c| flatten_node(path, c, report))
        .sum();
    let Some(planned) = block.plan.filter(|&n| n != seen) else {
        return failures;
    };
    let label = if path.is_empty() { "top level" } else { path };
    report
        .problems
        .push(format!("{label}: planned {planned} tests but saw {seen}"));
    for n in seen + 1..=planned {
        let (suite, name) = (path.to_owned(), format!("<missing #{n}>"));
        report.cases.push(Case {
            suite,
            name,
            outcome: Outcome::Fail,
            diagnostics: Vec::new(),
        });
        failures += 1;
    }
    failures
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn parse_header(text: &str) -> Option<Header<'_>> {
    if text.starts_with("KTAP version ") || text.starts_with("TAP version ") {
        return Some(Header::Version);
    }
    if let Some(name) = text.strip_prefix("# Subtest:") {
        return Some(Header::Subtest(name.trim()));
    }
    let rest = text.strip_prefix("1..")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (count, tail) = rest.split_at(digits);
    let tail = tail.trim_start();
    if !(tail.is_empty() || tail.starts_with('#')) {
        return None;
    }
    count.parse().ok().map(Header::Plan)
}

fn parse_result(text: &str) -> Option<ResultLine<'_>> {
    let (ok, rest) = match text.strip_prefix("not ok") {
        Some(rest) => (false, rest),
        None => (true, text.strip_prefix("ok")?),
    };
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None; // "okay", "ok,"
    }
    let rest = rest.trim_start();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, rest) = rest.split_at(digits);
    if digits > 0 && !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None; // "ok 1x"
    }
    let (name, directive) = split_directive(rest);
    let name = name.trim();
    let name = if name == "-" {
        ""
    } else {
        name.strip_prefix("- ").unwrap_or(name).trim_start()
    };
    let outcome = if starts_with_ci(directive, "SKIP") || !ok && starts_with_ci(directive, "TODO") {
        Outcome::Skip
    } else if ok {
        Outcome::Pass
    } else {
        Outcome::Fail
    };
    Some(ResultLine {
        number: number.parse().ok(),
        name,
        outcome,
    })
}

/// Splits `name # SKIP reason`. Only a `#` that starts a word and is followed
/// by a directive counts, so parameter descriptions such as `case #1` survive.
fn split_directive(text: &str) -> (&str, &str) {
    for (i, _) in text.match_indices('#') {
        let directive = text[i + 1..].trim_start();
        let starts_word = i == 0 || text[..i].ends_with([' ', '\t']);
        if starts_word && (starts_with_ci(directive, "SKIP") || starts_with_ci(directive, "TODO")) {
            return (&text[..i], directive);
        }
    }
    (text, "")
}

fn starts_with_ci(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `P|F|S path` line per case, so expectations read like the input.
    fn summary(report: &Report) -> String {
        let letter = |o| match o {
            Outcome::Pass => 'P',
            Outcome::Fail => 'F',
            Outcome::Skip => 'S',
        };
        report
            .cases
            .iter()
            .map(|c| format!("{} {}\n", letter(c.outcome), c.path()))
            .collect()
    }

    /// Boot-time KUnit (lib/kunit/test.c) with a failure, a skip and a
    /// parameterised case.
    const MODERN: &str = "\
KTAP version 1
1..2
    KTAP version 1
    # Subtest: ivshmem_layout
    # module: lincell_ivshmem
    1..3
    ok 1 header_fits_in_bar
    # ring_wraps: ASSERTION FAILED at drivers/ivshmem/ring.rs:12
    Expected head == tail, but
        head == 3 (0x3)
        tail == 4 (0x4)
    not ok 2 ring_wraps
    ok 3 doorbell_offset # SKIP no ivshmem device
# ivshmem_layout: pass:1 fail:1 skip:1 total:3
# Totals: pass:1 fail:1 skip:1 total:3
not ok 1 ivshmem_layout
    KTAP version 1
    # Subtest: example
    1..2
        KTAP version 1
        # Subtest: example_params_test
        ok 1 example value 3 # SKIP unsupported
        ok 2 example value 2
        not ok 3 example value 1
    # example_params_test: pass:1 fail:1 skip:1 total:3
    not ok 1 example_params_test
    ok 2 example_simple_test
# example: pass:1 fail:1 skip:0 total:2
# Totals: pass:2 fail:2 skip:1 total:5
not ok 2 example
";

    const MODERN_CASES: &str = "\
P ivshmem_layout.header_fits_in_bar
F ivshmem_layout.ring_wraps
S ivshmem_layout.doorbell_offset
S example.example_params_test.example value 3
P example.example_params_test.example value 2
F example.example_params_test.example value 1
P example.example_simple_test
";

    #[test]
    fn modern_nested_kunit() {
        let report = parse(MODERN);
        assert_eq!(summary(&report), MODERN_CASES);
        assert_eq!(
            (report.passed(), report.failed(), report.skipped()),
            (3, 2, 2)
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let failed = report.failures().next().unwrap();
        assert_eq!(failed.suite, "ivshmem_layout");
        let why = "# ring_wraps: ASSERTION FAILED at drivers/ivshmem/ring.rs:12\n\
                   Expected head == tail, but\nhead == 3 (0x3)\ntail == 4 (0x4)";
        assert_eq!(failed.diagnostics.join("\n"), why);
        assert!(report.cases[0].diagnostics.is_empty());
    }

    #[test]
    fn dmesg_prefixes_and_interleaved_log_lines() {
        let mut log =
            String::from("[    0.000000] Linux version 6.12.0\n[    0.1] ok, not a result\n");
        for (i, line) in MODERN.lines().enumerate() {
            log += &format!("[    1.{i:06}] {line}\n");
            if i % 5 == 2 {
                log += &format!("[    1.{i:06}] ivshmem 0000:00:04.0: enabling device\n");
            }
        }
        log += "[    2.000000] Run /init as init process\n";
        let report = parse(&log);
        assert_eq!(summary(&report), MODERN_CASES);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(
            report.cases[0].diagnostics,
            ["ivshmem 0000:00:04.0: enabling device"]
        );
        // The document ended with its plan; later boot messages belong to nothing.
        assert!(report.cases[6].diagnostics.is_empty());
    }

    #[test]
    fn debugfs_results_unindented() {
        let text = "\
KTAP version 1
# Subtest: ivshmem_layout
# module: lincell_ivshmem
1..2
ok 1 header_fits_in_bar
# ring_wraps: EXPECTATION FAILED at drivers/ivshmem/ring.rs:40
not ok 2 ring_wraps
# ivshmem_layout: pass:1 fail:1 skip:0 total:2
# Totals: pass:1 fail:1 skip:0 total:2
not ok 1 ivshmem_layout
";
        let report = parse(text);
        assert_eq!(
            summary(&report),
            "P ivshmem_layout.header_fits_in_bar\nF ivshmem_layout.ring_wraps\n"
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.cases[1].diagnostics.len(), 1);
    }

    #[test]
    fn debugfs_unindented_parameterised_case() {
        let text = "KTAP version 1\n# Subtest: s\n1..2\nKTAP version 1\n# Subtest: p\n\
                    ok 1 v1\nnot ok 2 v2 # SKIP n/a\nok 1 p\nok 2 c\nok 1 s\n";
        let report = parse(text);
        assert_eq!(summary(&report), "P s.p.v1\nS s.p.v2\nP s.c\n");
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn old_tap14_format_with_dashes() {
        let text = "TAP version 14\n1..1\n    # Subtest: example\n    1..2\n    ok 1 - simple\n\
                    \x20   ok 2 - skippy # SKIP skipped\nok 1 - example\n";
        let report = parse(text);
        assert_eq!(summary(&report), "P example.simple\nS example.skippy\n");
        assert!(report.problems.is_empty());
    }

    #[test]
    fn kunit_results_then_a_tap_document() {
        // The arm64 leg prints debugfs results of each suite, then its own TAP.
        let text = "KTAP version 1\n# Subtest: s\n1..1\nok 1 a\nok 1 s\n\
                    KTAP version 1\n# Subtest: t\n1..2\nok 1 b\nnot ok 2 c\nnot ok 1 t\n\
                    TAP version 13\n1..2\nok 1 - e2e one\nok 2 - e2e two\n";
        let report = parse(text);
        assert_eq!(
            summary(&report),
            "P s.a\nP t.b\nF t.c\nP e2e one\nP e2e two\n"
        );
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    #[test]
    fn plain_tap_from_guest_script() {
        let text = "starting\nTAP version 13\n1..3\nok 1 - name\nnot ok 2 - other\n\
                    ok 3 - third # SKIP no device\ndone\n";
        let report = parse(text);
        assert_eq!(summary(&report), "P name\nF other\nS third\n");
        assert!(report.cases.iter().all(|c| c.suite.is_empty()));
        assert!(report.problems.is_empty());
    }

    #[test]
    fn truncated_suite_counts_missing_cases_as_failures() {
        let text =
            "[    2.0]     KTAP version 1\n[    2.1]     # Subtest: crashy\n[    2.2]     1..5\n\
                    [    2.3]     ok 1 first\n[    2.4]     ok 2 second\n\
                    [    2.5] BUG: kernel NULL pointer dereference, address: 0000000000000008\n";
        let report = parse(text);
        let want = "P crashy.first\nP crashy.second\n\
                    F crashy.<missing #3>\nF crashy.<missing #4>\nF crashy.<missing #5>\n";
        assert_eq!(summary(&report), want);
        let problems = [
            "crashy: subtest has no result line (output truncated?)",
            "crashy: planned 5 tests but saw 2",
        ];
        assert_eq!(report.problems, problems);
    }

    #[test]
    fn truncated_inside_nested_document() {
        let text = "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: a\n    1..1\n    ok 1 x\nok 1 a\n\
                    \x20   KTAP version 1\n    # Subtest: b\n    ok 1 y\n";
        let report = parse(text);
        assert_eq!(summary(&report), "P a.x\nP b.y\nF b.<suite>\n");
        assert_eq!(
            report.problems,
            ["b: subtest has no result line (output truncated?)"]
        );
    }

    #[test]
    fn suite_not_ok_with_passing_cases_is_a_failure() {
        let report =
            parse("KTAP version 1\n# Subtest: s\n1..1\nok 1 a\n# s: init failed\nnot ok 1 s\n");
        assert_eq!(summary(&report), "P s.a\nF s.<suite>\n");
        assert_eq!(
            report.problems,
            ["s: reported not ok but none of its cases failed"]
        );
        assert_eq!(report.cases[1].diagnostics, ["# s: init failed"]);
    }

    #[test]
    fn more_results_than_planned() {
        let report = parse("TAP version 13\n# Subtest: s\n1..1\nok 1 a\nok 2 b\nok 1 s\n");
        assert_eq!(summary(&report), "P s.a\nP s.b\n");
        assert_eq!(report.problems, ["s: planned 1 tests but saw 2"]);
    }

    #[test]
    fn one_document_per_module_with_wrapper() {
        let doc = |s: &str| {
            format!("KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: {s}\n    1..1\n    ok 1 t\nok 1 {s}\n")
        };
        let report = parse(&format!("{}unrelated\n{}", doc("one"), doc("two")));
        assert_eq!(summary(&report), "P one.t\nP two.t\n");
        assert!(report.problems.is_empty());
    }

    #[test]
    fn empty_and_tapless_input() {
        for text in ["", "\n\n", "[    0.0] Linux version\nok then\nnot okay\n"] {
            assert_eq!(parse(text), Report::default(), "{text:?}");
        }
    }

    #[test]
    fn top_level_short_plan_and_bail_out() {
        let report = parse("TAP version 13\n1..3\nok 1 a\nBail out! no disk\n");
        assert_eq!(summary(&report), "P a\nF <missing #2>\nF <missing #3>\n");
        let problems = [
            "test run bailed out: Bail out! no disk",
            "top level: planned 3 tests but saw 1",
        ];
        assert_eq!(report.problems, problems);
    }

    #[test]
    fn trailing_plan_zero_plan_and_lost_header() {
        assert_eq!(summary(&parse("ok 1 a\nok 2 b\n1..2\n")), "P a\nP b\n");
        assert_eq!(
            parse("KTAP version 1\n1..0 # SKIP nothing here\n"),
            Report::default()
        );
        // The document header scrolled out of the log: the suite line still closes it.
        assert_eq!(
            summary(&parse("    ok 1 a\n    not ok 2 b\nnot ok 1 s\n")),
            "P s.a\nF s.b\n"
        );
    }

    #[test]
    fn empty_subtest_is_its_own_case() {
        let text = "KTAP version 1\n# Subtest: s\n1..2\n    KTAP version 1\n    # Subtest: p\n    # p: no params\n\
                    ok 1 p # SKIP no parameters\nok 2 q\nok 1 s\n";
        let report = parse(text);
        assert_eq!(summary(&report), "S s.p\nP s.q\n");
        assert_eq!(report.cases[0].diagnostics, ["# p: no params"]);
    }

    #[test]
    fn case_named_like_its_suite_under_indentation() {
        let text = "KTAP version 1\n1..1\n    # Subtest: dup\n    1..1\n    ok 1 dup\nok 1 dup\n";
        assert_eq!(summary(&parse(text)), "P dup.dup\n");
    }

    #[test]
    fn diagnostics_are_capped() {
        let mut text = String::from("TAP version 13\n1..1\n");
        for i in 0..MAX_DIAGNOSTICS + 5 {
            text += &format!("line {i}\n");
        }
        let report = parse(&(text + "not ok 1 noisy\n"));
        let diagnostics = &report.cases[0].diagnostics;
        assert_eq!(diagnostics.len(), MAX_DIAGNOSTICS);
        assert_eq!(diagnostics[0], "line 5");
    }

    #[test]
    fn result_line_syntax() {
        // line | number | name | outcome
        let table = "\
ok 1 name|1|name|Pass
not ok 12 - name with spaces|12|name with spaces|Fail
ok 3 case #1|3|case #1|Pass
ok 3 x # skip lower case|3|x|Skip
not ok 4 x # SKIP|4|x|Skip
not ok 5 x # TODO later|5|x|Skip
ok 6 x # TODO later|6|x|Pass
not ok 7 x # TIMEOUT 45 seconds|7|x # TIMEOUT 45 seconds|Fail
ok|||Pass
not ok 2 -|2||Fail";
        for row in table.lines() {
            let [line, number, name, outcome] = row.split('|').collect::<Vec<_>>()[..] else {
                panic!("{row}")
            };
            let got = parse_result(line).unwrap_or_else(|| panic!("{line:?}"));
            let got = format!(
                "{}|{}|{:?}",
                got.number.map(|n| n.to_string()).unwrap_or_default(),
                got.name,
                got.outcome
            );
            assert_eq!(got, format!("{number}|{name}|{outcome}"), "{line:?}");
        }
        for line in ["ok 1x", "okay", "not okay", "ok, fine", "nok 1"] {
            assert!(parse_result(line).is_none(), "{line:?}");
        }
    }

    #[test]
    fn header_line_syntax() {
        assert!(matches!(
            parse_header("KTAP version 1"),
            Some(Header::Version)
        ));
        assert!(matches!(
            parse_header("TAP version 13"),
            Some(Header::Version)
        ));
        assert!(matches!(
            parse_header("# Subtest: a b "),
            Some(Header::Subtest("a b"))
        ));
        assert!(matches!(parse_header("1..7"), Some(Header::Plan(7))));
        assert!(matches!(
            parse_header("1..0 # SKIP why"),
            Some(Header::Plan(0))
        ));
        for line in ["1..", "1..2x", "1..2 3", "# Subtests", "KTAP"] {
            assert!(parse_header(line).is_none(), "{line:?}");
        }
    }
}
