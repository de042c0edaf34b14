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
