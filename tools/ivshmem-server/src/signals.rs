// SPDX-License-Identifier: GPL-2.0
//! SIGINT/SIGTERM handling: set a flag that the event loop checks.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler; the server loop stops when it becomes true.
static STOP: AtomicBool = AtomicBool::new(false);

/// The handler: only an atomic store, which is async-signal-safe.
extern "C" fn on_signal(_signal: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Set on SIGUSR1: print the counters (`--v2`).
static DUMP: AtomicBool = AtomicBool::new(false);

/// The SIGUSR1 handler: only an atomic store.
extern "C" fn on_dump(_signal: libc::c_int) {
    DUMP.store(true, Ordering::SeqCst);
}

/// Installs a SIGUSR1 handler and returns the flag it sets.
pub fn install_dump() -> io::Result<&'static AtomicBool> {
    // SAFETY: sigaction is plain old data; all-zero means no flags and an
    // empty mask.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_dump as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = libc::SA_RESTART;
    // SAFETY: action is fully initialized and the handler is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(&DUMP)
}

/// Installs handlers for SIGINT and SIGTERM and returns the flag they set.
///
/// The handlers do not restart system calls, so a blocked `poll` returns
/// early and the loop notices the flag at once.
pub fn install() -> io::Result<&'static AtomicBool> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain old data; all-zero means no flags and an
        // empty mask.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: action is fully initialized and the handler is async-signal-safe.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(&STOP)
}
