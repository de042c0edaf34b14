// SPDX-License-Identifier: GPL-2.0

//! The cold path of `make setup`, as a new user's machine takes it.
//!
//! A new machine has no `~/.cache`; the last release wrote a log beside the
//! cache before anything had created its parent and failed there in two
//! seconds. These tests run `scripts/setup.sh --dry-run` (every install
//! step taken as if nothing were installed, the same logs and directories
//! written, the install commands only printed) with the cache under
//! directories that do not exist yet, and check that it succeeds and writes
//! nothing outside the cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lincell-setup-cold-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("scratch directory");
    d
}

/// Every file (not directory) below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs the dry-run set-up with `home` as `$HOME` and, if given, `cache` as
/// `$LINCELL_CACHE`. The toolchain stays reachable: `RUSTUP_HOME` and
/// `CARGO_HOME` keep pointing at the real ones.
fn dry_run(home: &Path, cache: Option<&Path>) -> (bool, String) {
    let real_home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into());
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/setup.sh"))
        .arg("--dry-run")
        .env("HOME", home)
        .env(
            "RUSTUP_HOME",
            std::env::var_os("RUSTUP_HOME").unwrap_or_else(|| real_home.join(".rustup").into()),
        )
        .env(
            "CARGO_HOME",
            std::env::var_os("CARGO_HOME").unwrap_or_else(|| real_home.join(".cargo").into()),
        )
        .env_remove("LINCELL_CACHE");
    if let Some(c) = cache {
        cmd.env("LINCELL_CACHE", c);
    }
    let out = cmd.output().expect("run bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn assert_cold_run(scratch: &Path, home: &Path, cache: Option<&Path>, expected_cache: &Path) {
    assert!(!expected_cache.exists());
    let (ok, text) = dry_run(home, cache);
    assert!(
        ok,
        "setup.sh --dry-run failed on a machine without {}:\n{text}",
        expected_cache.display()
    );
    // Every install step ran (as a dry run), the long ones into their logs
    // inside the cache ...
    for step in [
        "rustup component add rust-src",
        "rustup target add",
        "python3 -m venv",
        "-m pip install",
    ] {
        assert!(text.contains(step), "no `{step}` step:\n{text}");
    }
    for (log, step) in [
        ("apt-install.log", "apt-get install"),
        ("bindgen-install.log", "cargo install"),
        (
            "qemu11-debootstrap.log",
            "debootstrap --variant=minbase trixie",
        ),
        ("qemu11-apt.log", "qemu_install"),
    ] {
        let logged = fs::read_to_string(expected_cache.join(log)).unwrap_or_default();
        assert!(
            logged.contains(&format!("dry run: {step}")),
            "{log} lacks `{step}`:\n{text}"
        );
    }
    assert!(text.contains("dry run complete"), "{text}");
    // ... and nothing was written elsewhere.
    let strays: Vec<_> = files_below(scratch)
        .into_iter()
        .filter(|p| !p.starts_with(expected_cache))
        .collect();
    assert!(
        strays.is_empty(),
        "setup.sh wrote outside {}: {strays:?}",
        expected_cache.display()
    );
}

#[test]
fn setup_on_a_machine_without_dot_cache() {
    let s = scratch("home");
    // $HOME exists but has no .cache: the default cache's parent is missing.
    let home = s.join("home");
    fs::create_dir(&home).unwrap();
    assert_cold_run(&s, &home, None, &home.join(".cache/lincell"));
    let _ = fs::remove_dir_all(&s);
}

#[test]
fn setup_with_lincell_cache_under_missing_directories() {
    let s = scratch("cache");
    let home = s.join("home-that-does-not-exist");
    let cache = s.join("no/such/parent/lincell");
    assert_cold_run(&s, &home, Some(&cache), &cache);
    let _ = fs::remove_dir_all(&s);
}

/// The class of bug, statically: no script names a path by appending to the
/// cache directory's own name (`$LINCELL_CACHE.log`, `${LINCELL_CACHE}-x`),
/// which lands in the cache's parent, a directory nothing creates.
#[test]
fn no_script_writes_beside_the_cache() {
    let mut scripts = Vec::new();
    for dir in ["scripts", "bench", "samples", "tests/host", "virtme"] {
        for e in fs::read_dir(repo().join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "sh") {
                scripts.push(e.path());
            }
        }
    }
    assert!(scripts.len() > 5, "found only {scripts:?}");
    let mut bad = Vec::new();
    for p in &scripts {
        let text = fs::read_to_string(p).unwrap();
        for (i, line) in text.lines().enumerate() {
            for pat in ["$LINCELL_CACHE", "${LINCELL_CACHE}"] {
                let mut rest = line;
                while let Some(at) = rest.find(pat) {
                    rest = &rest[at + pat.len()..];
                    let next = rest.chars().next();
                    // Allowed after the name: end, `/`, a quote, space, `)`, `;`, `:`, `}`.
                    if matches!(next, Some(c) if !matches!(c, '/' | '"' | '\'' | ' ' | ')' | ';' | ':' | '}'))
                    {
                        bad.push(format!("{}:{}: {line}", p.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "paths beside the cache directory:\n{}",
        bad.join("\n")
    );
}
