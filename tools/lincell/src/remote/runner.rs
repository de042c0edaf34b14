// SPDX-License-Identifier: GPL-2.0

//! The daemon loop over an ivshmem [`Endpoint`]: map, publish the header,
//! go READY, then find the frontend and serve it until SIGINT/SIGTERM.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lincell_shared::ivshmem::v1layout;
use lincell_shared::shmem::SharedMemory;
use lincell_shared::vdev::header::{PROTOCOL_VIRTIO_FRONTEND, STATE_READY};

use crate::error::{Error, Result};
use crate::ivshmem::endpoint::{Endpoint, PeerEndpoint};

use super::engine::{log, Device, Engine, Faulty, Options};
use super::mem::mem_from_raw;

/// Set by SIGINT/SIGTERM.
pub(super) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handlers (no `SA_RESTART`: waits return).
pub(super) fn catch_signals() -> io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; zeroed is a valid empty value.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: a valid sigaction; the handler only stores an atomic.
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Creates or joins lincell's v1 layout in a host peer's memory and writes
/// the protocol field.
pub(crate) fn prepare_v1(ep: &PeerEndpoint, device_id: u16) -> Result<()> {
    let shm = ep.peer().shm();
    let size = shm.len() as u64;
    if shm.len() < 2 * 4096 {
        return Err(Error::Remote(format!(
            "shared memory of {size} bytes is too small"
        )));
    }
    let header = shm.region();
    let proposal = v1layout::Header::propose(size, 4096, v1layout::DEFAULT_MAX_PEERS)
        .map_err(|e| Error::Remote(e.to_string()))?;
    let mut polls = 0;
    let h = v1layout::init_or_join(header, &proposal, || {
        polls += 1;
        std::thread::sleep(Duration::from_millis(10));
        polls < 100
    })
    .map_err(|e| Error::Remote(format!("lincell v1 layout: {e}")))?;
    let own = u32::from(ep.peer().id());
    h.layout(own, size).map_err(|e| {
        Error::Remote(format!(
            "lincell v1 layout ({} peers) has no place for own peer id {own}: {e}",
            h.max_peers
        ))
    })?;
    header
        .store(
            v1layout::off::PROTOCOL,
            u32::from(PROTOCOL_VIRTIO_FRONTEND | device_id),
            std::sync::atomic::Ordering::Release,
        )
        .map_err(|e| Error::Remote(format!("lincell v1 layout: {e}")))
}

/// The process's CPU time so far, for the stop line (is the backend the
/// bottleneck?).
fn cpu_time() -> String {
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into the live `u`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return "CPU time unknown".into();
    }
    // CAST: seconds as a float for display; the precision lost does not matter.
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    format!(
        "CPU time {:.2} s user + {:.2} s system",
        secs(u.ru_utime),
        secs(u.ru_stime)
    )
}

/// What the loop needs from the command line.
pub(crate) struct RunOptions {
    pub(crate) queue_size: u16,
    pub(crate) fault: Option<super::engine::Fault>,
    pub(crate) fault_after: u64,
    pub(crate) verbose: bool,
    /// Longest sleep between looks at the header.
    pub(crate) tick: Duration,
}

/// The lowest-numbered other peer whose state is READY.
pub(crate) fn find_frontend(states: &[u32], own: u32) -> Option<u32> {
    states
        .iter()
        .enumerate()
        .filter_map(|(i, &s)| {
            u32::try_from(i)
                .ok()
                .filter(|&p| p != own && s == STATE_READY)
        })
        .next()
}

/// Serves `dev` over `ep` until a signal; `Err` is a runtime error.
pub(crate) fn serve<D: Device>(mut ep: Box<dyn Endpoint>, dev: D, opts: &RunOptions) -> Result<()> {
    catch_signals().map_err(|e| Error::Remote(format!("signals: {e}")))?;
    let (rw_off, _) = ep.rw_section();
    let (ptr, len) = ep.rw_ptr().ok_or_else(|| {
        Error::Remote(format!(
            "{}: the R/W section is not mapped read/write",
            ep.describe()
        ))
    })?;
    // SAFETY: the section stays mapped while `ep` lives; `mem` (and the
    // engine holding it) is dropped before `ep` at the end of this function.
    let mem = unsafe { mem_from_raw(ptr, len)? };
    // Fault injection (`--fault`) wraps the device; without it the wrapper
    // is transparent.
    let dev = Faulty::new(dev, opts.fault, opts.fault_after);
    let mut engine = Engine::new(
        mem,
        dev,
        Options {
            queue_size: opts.queue_size,
            vectors: ep.vectors(),
            verbose: opts.verbose,
        },
    )?;
    engine.publish_header();
    ep.set_state(STATE_READY)
        .map_err(|e| Error::Remote(format!("cannot set own state READY: {e}")))?;
    let own = ep.id();
    let states = ep.peer_states().unwrap_or_default();
    let mut frontend = find_frontend(&states, own);
    log(format_args!(
        "{}: {} vectors, R/W section at {rw_off:#x} ({:#x} bytes)",
        ep.describe(),
        ep.vectors(),
        engine.section_len()
    ));
    log(format_args!(
        "{}; features {:#x}; queue size {}, kick vectors {:?}{}",
        engine.device().summary(),
        engine.offered(),
        opts.queue_size,
        engine.device_vectors(),
        opts.fault
            .map(|f| format!("; FAULT {f}"))
            .unwrap_or_default()
    ));
    match frontend {
        Some(f) => log(format_args!("ready (own id {own}); frontend is peer {f}")),
        None => log(format_args!("ready (own id {own}); waiting for a frontend")),
    }
    let mut warned_ring = false;
    // For the stop line: how much batching there was.
    let (mut wakeups, mut rings) = (0u64, 0u64);
    let result = loop {
        if STOP.load(Ordering::SeqCst) {
            break Ok(());
        }
        // One thread, one event loop: the doorbells and, while the device
        // wants it, its own descriptor (a TAP with a frame pending).
        let wake = frontend
            .filter(|_| engine.live())
            .and_then(|_| engine.device().wake_fd());
        let woke = match wake {
            Some(fd) => ep.wait_or(u64::MAX, opts.tick, fd),
            None => ep.wait(u64::MAX, opts.tick),
        };
        match woke {
            Ok(_) => wakeups += 1,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => break Err(Error::Remote(format!("wait: {e}"))),
        }
        let states = match ep.peer_states() {
            Ok(s) => s,
            Err(e) => break Err(Error::Remote(format!("peer states: {e}"))),
        };
        let now = find_frontend(&states, own);
        if now != frontend {
            match (frontend, now) {
                (Some(old), _) => {
                    log(format_args!(
                        "frontend peer {old} left READY (state {}); queues disabled",
                        states.get(old as usize).copied().unwrap_or(0)
                    ));
                    engine.detach();
                    if let Some(n) = now {
                        log(format_args!("frontend is now peer {n}"));
                    }
                }
                (None, Some(n)) => log(format_args!("frontend peer {n} is READY")),
                (None, None) => {}
            }
            frontend = now;
        }
        while engine.poll_transaction() {}
        let Some(f) = frontend else {
            continue;
        };
        for v in engine.process_queues() {
            rings += 1;
            if let Err(e) = ep.ring(f, u32::from(v)) {
                if !warned_ring {
                    log(format_args!("cannot ring frontend {f} vector {v}: {e}"));
                    warned_ring = true;
                }
            }
        }
    };
    if let Err(e) = engine.device_mut().sync() {
        log(format_args!("fdatasync: {e}"));
    }
    if let Some(r) = engine.device().report() {
        log(format_args!("{r}"));
    }
    let requests = engine.requests;
    drop(engine);
    if let Err(e) = ep.set_state(0) {
        log(format_args!("cannot clear own state: {e}"));
    }
    log(format_args!(
        "stopped after {requests} requests: {wakeups} wake-ups, {rings} doorbells to the frontend, {}",
        cpu_time()
    ));
    result
}
