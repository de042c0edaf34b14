// SPDX-License-Identifier: GPL-2.0
//! Kernel log lines that mean the kernel caught a bug ("splats").
//!
//! A run with such a line fails even if every test passed: a WARN or lockdep
//! report during a test is a bug the test did not check for. Most patterns
//! are anchored at the start of the message (after the dmesg prefix), which
//! is where the kernel prints them; that keeps words like "bug" inside
//! ordinary messages (`ACPI BIOS Warning (bug): ...`) and userspace faults
//! (`traps: foo[1] general protection fault ...`) from matching. Generic
//! prefixes such as `WARNING:` are deliberately broad: a false positive is
//! loud and gets allow-listed, a missed splat is silent.

use crate::dmesg;

/// One kernel log line reporting a bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splat {
    /// 1-based line number in the searched text.
    pub line_no: usize,
    /// The line without its dmesg prefix, trimmed.
    pub line: String,
    /// Short category, e.g. `warning`, `bug`, `kasan`, `lockdep`, `oops`.
    pub kind: &'static str,
}

/// Harmless messages that would otherwise match.
const HARMLESS: &[&str] = &[
    // Printed on normal boots under QEMU on eIBRS hosts: a config note, not a bug.
    "Unprivileged eBPF is enabled with eIBRS",
    // CONFIG_DEBUG_OBJECTS_SELFTEST reporting success.
    "ODEBUG: selftest passed",
];

/// Phrases specific enough to match anywhere in a message (several are
/// printed behind a subsystem prefix such as `watchdog: ` or `rcu: `).
const ANYWHERE: &[(&str, &str)] = &[
    ("possible circular locking dependency", "lockdep"),
    ("possible recursive locking detected", "lockdep"),
    ("inconsistent lock state", "lockdep"),
    ("possible irq lock inversion", "lockdep"),
    ("bad unlock balance detected", "lockdep"),
    ("suspicious RCU usage", "lockdep"),
    ("list_add corruption", "list-corruption"),
    ("list_del corruption", "list-corruption"),
    ("BUG: soft lockup", "lockup"),
    ("hard LOCKUP", "lockup"),
    ("rust_kernel: panicked", "rust-panic"),
    ("panicked at", "rust-panic"),
    ("new suspected memory leak", "kmemleak"),
];

/// Message starts; more specific entries come first.
const START: &[(&str, &str)] = &[
    ("BUG: KASAN", "kasan"),
    ("BUG: KFENCE", "kfence"),
    ("BUG: KCSAN", "kcsan"),
    ("BUG:", "bug"),
    ("kernel BUG at", "bug"),
    ("WARNING:", "warning"),
    ("Oops:", "oops"),
    ("Oops -", "oops"),
    ("Internal error: Oops", "oops"),
    ("Unable to handle kernel", "oops"),
    ("general protection fault", "gpf"),
    ("Kernel panic", "panic"),
    ("UBSAN:", "ubsan"),
    ("refcount_t:", "refcount"),
    ("ODEBUG:", "debugobjects"),
    ("INFO: possible", "lockdep"),
    ("INFO: trying to register non-static key", "lockdep"),
];

const CUT_HERE: &str = "------------[ cut here ]------------";

/// Lines after `cut here` in which the actual report is expected.
const CUT_WINDOW: usize = 3;

/// Returns the category of a kernel log line if it reports a bug.
///
/// `line` may still carry its dmesg prefix. The `cut here` marker alone is
/// not a report; [`find_splats`] handles it.
pub fn splat_kind(line: &str) -> Option<&'static str> {
    kind_of(dmesg::strip_prefix(line).trim())
}

/// [`splat_kind`] of a message already stripped of its prefix.
fn kind_of(msg: &str) -> Option<&'static str> {
    if HARMLESS.iter().any(|h| msg.contains(h)) {
        return None;
    }
    if msg.starts_with("INFO: task ") && msg.contains("blocked for more than") {
        return Some("hung-task");
    }
    if msg.contains("rcu") && msg.contains("detected stall") {
        return Some("rcu-stall");
    }
    // SLUB debugging (`slub_debug`): `BUG <cache> (<taint>): <what>`.
    if msg.starts_with("BUG ") && msg.contains(" (") && msg.contains("): ") {
        return Some("slub");
    }
    let anywhere = ANYWHERE.iter().find(|(p, _)| msg.contains(p));
    let start = || START.iter().find(|(p, _)| msg.starts_with(p));
    anywhere.or_else(start).map(|&(_, kind)| kind)
}

/// Finds every splat in `log`, in order.
///
/// A `cut here` marker is reported only when no recognised report follows
/// within a few lines, so one WARN yields one splat but an unfamiliar report
/// after the marker is still caught.
pub fn find_splats(log: &str) -> Vec<Splat> {
    let mut splats = Vec::new();
    let mut cut: Option<Splat> = None;
    for (i, raw) in log.lines().enumerate() {
        let line_no = i + 1;
        let msg = dmesg::strip_prefix(raw).trim();
        let kind = kind_of(msg);
        if let Some(marker) = cut.take_if(|m| kind.is_some() || line_no > m.line_no + CUT_WINDOW) {
            if kind.is_none() {
                splats.push(marker);
            }
        }
        if let Some(kind) = kind {
            splats.push(Splat {
                line_no,
                line: msg.to_owned(),
                kind,
            });
        } else if msg == CUT_HERE {
            cut = Some(Splat {
                line_no,
                line: msg.to_owned(),
                kind: "cut-here",
            });
        }
    }
    splats.extend(cut);
    splats
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kind|message`, one per line.
    const REPORTS: &str = "\
warning|WARNING: CPU: 0 PID: 1 at drivers/ivshmem/ring.c:12 ring_push+0x1/0x2
bug|BUG: kernel NULL pointer dereference, address: 0000000000000008
bug|BUG: sleeping function called from invalid context at kernel/locking/mutex.c:283
kasan|BUG: KASAN: slab-out-of-bounds in ring_push+0x10/0x20
kfence|BUG: KFENCE: use-after-free read in foo
bug|kernel BUG at rust/helpers/bug.c:7!
oops|Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP
oops|Oops: 0002 [#1] PREEMPT SMP NOPTI
oops|Internal error: Oops: 0000000096000004 [#1] SMP
oops|Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000
gpf|general protection fault: 0000 [#1] SMP
panic|Kernel panic - not syncing: Fatal exception
lockdep|WARNING: possible circular locking dependency detected
lockdep|WARNING: possible recursive locking detected
lockdep|WARNING: inconsistent lock state
lockdep|INFO: possible irq lock inversion dependency detected
lockdep|WARNING: suspicious RCU usage
hung-task|INFO: task kworker/0:1:42 blocked for more than 120 seconds.
rcu-stall|rcu: INFO: rcu_sched detected stalls on CPUs/tasks:
rcu-stall|rcu: INFO: rcu_preempt detected stall on CPU
lockup|watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:99]
ubsan|UBSAN: array-index-out-of-bounds in drivers/ivshmem/ring.c:40:9
refcount|refcount_t: underflow; use-after-free.
rust-panic|rust_kernel: panicked at drivers/ivshmem/lib.rs:12:5:
list-corruption|list_add corruption. next->prev should be prev (ffff8880), but was 0000.
list-corruption|list_del corruption, ffff8880->next is LIST_POISON1 (dead000000000100)
debugobjects|ODEBUG: free active (active state 0) object: 00000000 object type: timer_list
kmemleak|kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
slub|BUG kmalloc-64 (Not tainted): Right Redzone overwritten
slub|BUG kmalloc-128 (Tainted: G           O       ): Poison overwritten
bug|BUG: Invalid wait context
bug|BUG: scheduling while atomic: kworker/0:1/42/0x00000002";

    /// Normal boot and test output, including near misses.
    const HARMLESS_LINES: &str = "\
ACPI BIOS Warning (bug): Incorrect checksum in table [BGRT] - 0x00, should be 0x5A
ACPI: \\_SB_.PCI0: BUG workaround enabled
workqueue: drm_fb_helper_damage_work hogged CPU for >10000us 4 times, consider switching to WQ_UNBOUND
Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!
x86/fpu: Supporting XSAVE feature 0x001: 'x87 floating point registers'
traps: a.out[123] general protection fault ip:401000 sp:7ffc error:0 in a.out
rcu: RCU CPU stall warnings timeout set to 21 (rcu_cpu_stall_timeout).
ODEBUG: selftest passed
    # ring_wraps: ASSERTION FAILED at drivers/ivshmem/ring.rs:12
    not ok 2 ring_wraps
Call Trace:
---[ end trace 0000000000000000 ]---
MDS: Vulnerable: Clear CPU buffers attempted, no microcode
BUG workaround (erratum 123) enabled

";

    #[test]
    fn recognises_bug_reports() {
        for row in REPORTS.lines() {
            let (kind, line) = row.split_once('|').unwrap();
            assert_eq!(splat_kind(line), Some(kind), "{line:?}");
            assert_eq!(
                splat_kind(&format!("[   12.345678] {line}")),
                Some(kind),
                "{line:?}"
            );
        }
    }

    #[test]
    fn ignores_harmless_lines() {
        for line in HARMLESS_LINES.lines() {
            assert_eq!(splat_kind(line), None, "{line:?}");
            assert_eq!(
                splat_kind(&format!("[    0.123456] {line}")),
                None,
                "{line:?}"
            );
        }
        assert!(find_splats(HARMLESS_LINES).is_empty());
    }

    #[test]
    fn finds_splats_with_line_numbers() {
        let log = "\
[    1.000000] ivshmem 0000:00:04.0: enabling device
[    1.100000] ------------[ cut here ]------------
[    1.100001] WARNING: CPU: 1 PID: 77 at drivers/ivshmem/ring.c:12 ring_push+0x1/0x2
[    1.100002] Modules linked in: lincell_ivshmem
[    1.100003] ---[ end trace 0000000000000000 ]---
[    2.000000] BUG: KASAN: use-after-free in ring_pop+0x2/0x3
";
        let splats = find_splats(log);
        let got: Vec<_> = splats.iter().map(|s| (s.line_no, s.kind)).collect();
        assert_eq!(got, [(3, "warning"), (6, "kasan")]);
        assert!(splats[0].line.starts_with("WARNING: CPU: 1 PID: 77 at"));
    }

    #[test]
    fn lone_cut_here_is_reported() {
        let log = "------------[ cut here ]------------\nfoo\nbar\nbaz\nqux\nBUG: x\n";
        let got: Vec<_> = find_splats(log)
            .iter()
            .map(|s| (s.line_no, s.kind))
            .collect();
        assert_eq!(got, [(1, "cut-here"), (6, "bug")]);
        let at_end = find_splats("[    1.0] ------------[ cut here ]------------\n");
        assert_eq!(at_end.len(), 1);
        assert_eq!(at_end[0].line, CUT_HERE);
    }

    #[test]
    fn clean_log_has_no_splats() {
        assert!(find_splats("").is_empty());
        assert!(find_splats("[    0.000000] Linux version 6.12\n[    1.0] Run /init\n").is_empty());
    }
}
