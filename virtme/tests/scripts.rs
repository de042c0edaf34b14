// SPDX-License-Identifier: GPL-2.0

//! The repository's own guest scripts and benchmarks, read as the harness
//! reads them: every header parses, and the scripts that share a boot agree
//! on their directives for every revision they run on. (A script added to a
//! shared boot without the others' `revisions=` once broke the whole boot,
//! found only by a full guest run.)

use std::path::{Path, PathBuf};

use lincell_vm::scenario::{self, Directives, Revision};

fn scripts(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "sh"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_script_header_parses_and_shared_boots_agree() {
    for dir in ["tests/guest", "bench"] {
        let all = scripts(dir);
        assert!(!all.is_empty(), "no scripts in {dir}");
        for s in &all {
            scenario::read_directives(s).unwrap_or_else(|e| panic!("{}: {e}", s.display()));
        }
        for boot in scenario::group_by_boot(&all).unwrap() {
            let ds: Vec<Directives> = boot
                .iter()
                .map(|s| scenario::read_directives(s).unwrap())
                .collect();
            Directives::merge(&ds).unwrap_or_else(|e| panic!("{boot:?}: {e}"));
            for rev in [Revision::V1, Revision::V2] {
                let on: Vec<Directives> = ds
                    .iter()
                    .filter(|d| d.runs().contains(&rev))
                    .map(|d| d.resolve(rev))
                    .collect();
                if !on.is_empty() {
                    Directives::merge(&on).unwrap_or_else(|e| panic!("{boot:?} on {rev}: {e}"));
                }
            }
        }
    }
}

/// Every function the guest library defines is defined once it is
/// sourced, and every script parses. (A merge once left a `}` out of
/// `latency_dies`: the next functions were only defined when it ran, the
/// benchmarks calling them failed with "not found", and `latency_dies`
/// itself always passed.)
#[test]
fn the_guest_library_defines_its_functions_at_top_level_and_scripts_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = root.join("virtme/guest-lib.sh");
    let text = std::fs::read_to_string(&lib).unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("() {").map(|(n, _)| n))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect();
    assert!(names.len() > 20, "{names:?}");
    let check = format!(
        ". '{}' >/dev/null 2>&1; for f in {}; do type \"$f\" | grep -q 'is a shell function' || echo \"$f\"; done",
        lib.display(),
        names.join(" ")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &check])
        .env("LINCELL_ROOT", &root)
        .output()
        .unwrap();
    let missing = String::from_utf8_lossy(&out.stdout);
    assert!(
        missing.trim().is_empty(),
        "not defined after sourcing guest-lib.sh: {missing}"
    );
    for dir in ["tests/guest", "tests/host", "bench", "virtme"] {
        let dir_path = root.join(dir);
        for s in std::fs::read_dir(&dir_path).unwrap() {
            let p = s.unwrap().path();
            if p.extension().is_some_and(|x| x == "sh") {
                let st = std::process::Command::new("sh")
                    .arg("-n")
                    .arg(&p)
                    .status()
                    .unwrap();
                assert!(st.success(), "{} does not parse", p.display());
            }
        }
    }
}
