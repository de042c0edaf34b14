// SPDX-License-Identifier: GPL-2.0

//! The error type of every `lincell` subcommand.
//!
//! Subcommands return [`Error`]; `main` (`src/main.rs`) prints it once,
//! after the subcommand's prefix (`lincell ivshmem: ...`), and turns its
//! variant into the exit status, the same for every subcommand:
//!
//! | status | variants | meaning |
//! |---|---|---|
//! | 0 | (none) | success; `remote serve`: stopped by SIGINT/SIGTERM |
//! | 1 | [`Error::Failed`], [`Error::Reported`], [`Error::Refused`], [`Error::Remote`] | the command ran and the answer is no: a check failed, a wait timed out, cpu_isolate.ko refused the request, the vdev-remote backend failed at run time |
//! | 2 | [`Error::Usage`], [`Error::Io`] | the command could not run: bad arguments, a missing device or module, a failing system call |
//! | N | [`Error::Exited`] | `isolate -- COMMAND`: COMMAND's own exit status (128 + the signal that killed it) |
//!
//! Command-line syntax errors never get here: clap reports them and exits
//! with status 2 as well.

use std::io;

use crate::cpu::WriteError;

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Arguments that parse but cannot be used: out of range, or not
    /// together (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// A system call, device, file or kernel interface failed or is
    /// missing; the message names it (exit status 2).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// cpu_isolate.ko refused a request: `what` was asked, `source` has the
    /// module's reason and errno (exit status 1).
    #[error("{what}: {source}")]
    Refused {
        /// The request, e.g. `isolate 2-3`.
        what: String,
        /// The failed write with the module's explanation.
        #[source]
        source: WriteError,
    },
    /// A check failed or a wait timed out (exit status 1).
    #[error("{0}")]
    Failed(String),
    /// A check failed and the output already says how: nothing more is
    /// printed (exit status 1).
    #[error("failed (see the output)")]
    Reported,
    /// A run-time error of `lincell remote`: the backend's device, shared
    /// memory or backing file, or what the frontend wrote (which the
    /// backend logs and survives) (exit status 1).
    #[error("{0}")]
    Remote(String),
    /// `isolate -- COMMAND`: COMMAND exited with this status, which
    /// becomes lincell's; nothing more is printed.
    #[error("the command exited with status {0}")]
    Exited(u8),
}

impl Error {
    /// An [`Error::Io`] whose message is `context: error`, with the
    /// error's kind.
    pub fn io(context: impl std::fmt::Display, error: io::Error) -> Self {
        Error::Io(io::Error::new(error.kind(), format!("{context}: {error}")))
    }
}

/// A [`Result`](std::result::Result) with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_context_keeps_the_kind() {
        let e = Error::io("/dev/x", io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(
            e.to_string(),
            "/dev/x: No such file or directory (os error 2)"
        );
        assert!(matches!(e, Error::Io(ref i) if i.kind() == io::ErrorKind::NotFound));
    }
}
