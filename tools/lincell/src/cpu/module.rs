// SPDX-License-Identifier: GPL-2.0

//! Client of `/sys/kernel/cpu_isolate/` (cpu_isolate.ko's sysfs interface,
//! `Documentation/cpu-isolate.md`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the module's directory is.
pub(crate) const SYSFS_DIR: &str = "/sys/kernel/cpu_isolate";

/// A write to cpu_isolate.ko's sysfs interface that failed, usually
/// because the module refused it.
#[derive(Debug)]
pub struct WriteError {
    /// What was written where.
    pub(crate) what: String,
    /// The OS error.
    pub(crate) err: io::Error,
    /// The module's explanation (`last_error`), if it gave one.
    pub(crate) message: Option<String>,
}

impl std::error::Error for WriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = errno_name(&self.err);
        match &self.message {
            Some(m) => write!(f, "{m} [{name}]"),
            None => write!(f, "{}: {} [{name}]", self.what, self.err),
        }
    }
}

/// The symbolic name of an errno the interface documents.
pub(crate) fn errno_name(err: &io::Error) -> String {
    let name = match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::ENODEV) => "ENODEV",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EACCES) => "EACCES",
        Some(n) => return format!("errno {n}"),
        None => return "error".into(),
    };
    name.into()
}

/// The loaded module's sysfs directory.
pub(crate) struct Module {
    dir: PathBuf,
}

impl Module {
    /// Opens the interface, or explains how to load the module.
    pub(crate) fn open() -> Result<Self> {
        Self::at(Path::new(SYSFS_DIR))
    }

    /// Opens the interface at `dir` (tests).
    pub(crate) fn at(dir: &Path) -> Result<Self> {
        if dir.join("isolate").exists() {
            Ok(Module {
                dir: dir.to_path_buf(),
            })
        } else {
            Err(Error::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: cpu_isolate.ko is not loaded (insmod drivers/cpu-isolate/cpu_isolate.ko)",
                    dir.display()
                ),
            )))
        }
    }

    /// Reads a file of the interface.
    pub(crate) fn read(&self, file: &str) -> io::Result<String> {
        fs::read_to_string(self.dir.join(file))
    }

    /// Writes `text` to `file` in one `write(2)`, as sysfs expects; on
    /// failure, attaches the module's `last_error`.
    pub(crate) fn write(&self, file: &str, text: &str) -> Result<(), WriteError> {
        let path = self.dir.join(file);
        let before = self.read("last_error").unwrap_or_default();
        let result = OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        result.map_err(|err| {
            let after = self.read("last_error").unwrap_or_default();
            let message =
                (after != before && !after.trim().is_empty()).then(|| after.trim().to_string());
            WriteError {
                what: format!("write {text:?} to {}", path.display()),
                err,
                message,
            }
        })
    }

    /// `status` as key/value pairs.
    pub(crate) fn status(&self) -> io::Result<BTreeMap<String, String>> {
        Ok(parse_status(&self.read("status")?))
    }
}

/// Parses `key=value` lines.
pub(crate) fn parse_status(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = parse_status("isolated=2-3\noffline=\nirqs_moved=5\njunk\n");
        assert_eq!(s["isolated"], "2-3");
        assert_eq!(s["offline"], "");
        assert_eq!(s["irqs_moved"], "5");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn errno_names() {
        assert_eq!(
            errno_name(&io::Error::from_raw_os_error(libc::EBUSY)),
            "EBUSY"
        );
        assert_eq!(
            errno_name(&io::Error::from_raw_os_error(libc::ENOSPC)),
            "ENOSPC"
        );
        assert_eq!(
            errno_name(&io::Error::from_raw_os_error(1000)),
            "errno 1000"
        );
    }

    #[test]
    fn missing_module_is_explained() {
        let e = Module::at(Path::new("/nonexistent/cpu_isolate"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not loaded"), "{e}");
    }
}
