// SPDX-License-Identifier: GPL-2.0
//! The prefix the kernel log puts in front of each message.
//!
//! Console and `dmesg` output look like `[    1.234567] msg`, with
//! `CONFIG_PRINTK_CALLER` `[    1.234567][    T1] msg`, and `dmesg -r` adds
//! a syslog level: `<6>[    1.234567] msg`. KUnit encodes nesting in the
//! indentation *after* that prefix, so exactly one separating space is
//! removed and the rest of the message is kept as is.

/// Returns `line` without its kernel log prefix (if any) and trailing `\r`.
///
/// Leading whitespace of the message itself is preserved. Bracketed text
/// that is not a timestamp or caller id (e.g. `[drm] ...`) is left alone.
pub fn strip_prefix(line: &str) -> &str {
    let line = line.trim_end_matches('\r');
    let mut rest = line;
    if let Some((level, after)) = line.strip_prefix('<').and_then(|s| s.split_once('>')) {
        if (1..=3).contains(&level.len()) && level.bytes().all(|b| b.is_ascii_digit()) {
            rest = after;
        }
    }
    let mut stripped = false;
    while let Some((inner, after)) = rest.strip_prefix('[').and_then(|s| s.split_once(']')) {
        if !is_stamp(inner.trim()) {
            break;
        }
        rest = after;
        stripped = true;
    }
    if stripped {
        rest.strip_prefix(' ').unwrap_or(rest)
    } else {
        rest
    }
}

/// `1.234567` (timestamp) or `T123` / `C0` (printk caller id).
fn is_stamp(s: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match s.strip_prefix(['T', 'C']) {
        Some(id) => !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        None => digits(s) && s.bytes().any(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::strip_prefix;

    #[test]
    fn strips_kernel_prefixes_but_keeps_indentation() {
        let cases = [
            ("[    1.234567] ok 1 a", "ok 1 a"),
            ("[    1.234567]     ok 1 a", "    ok 1 a"),
            ("[    0.000000][    T0] Linux version", "Linux version"),
            ("[   12.5][  C1] msg", "msg"),
            ("<6>[    1.000000] msg\r", "msg"),
            ("<4>msg", "msg"),
            ("[1.0]msg", "msg"),
            ("plain line", "plain line"),
            ("    # Subtest: s", "    # Subtest: s"),
            ("[drm] Initialized", "[drm] Initialized"),
            ("[ T] x", "[ T] x"),
            ("[...] x", "[...] x"),
            ("<abc>x", "<abc>x"),
            ("[    1.0", "[    1.0"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(strip_prefix(input), want, "input {input:?}");
        }
    }
}
