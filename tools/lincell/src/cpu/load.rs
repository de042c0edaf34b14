// SPDX-License-Identifier: GPL-2.0

//! A load generator for the housekeeping CPUs during a noise measurement:
//! busy threads (CPU hogs), timer threads (a 100 µs sleep loop: hrtimer
//! interrupts), and a ping-pong pair (cross-CPU wake-ups: rescheduling
//! IPIs).
//!
//! The threads' affinity is the whole housekeeping set, so the scheduler
//! spreads them as it would any work (the cpuset partition `lincell isolate`
//! creates would confine them there anyway). What still reaches the
//! isolated CPUs because of this load (interrupts, IPIs, kernel threads
//! woken on its behalf) is what the sampler shows.

use std::hint::black_box;
use std::io;
use std::mem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Restricts the calling thread to `cpus`.
fn confine(cpus: &[u32]) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for &cpu in cpus {
        let cpu = usize::try_from(cpu).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: `set` is a valid cpu_set_t; CPU_SET ignores CPUs beyond it.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is valid for the size passed; pid 0 is this thread.
    let r = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A load thread's body; it returns when the flag is set.
type Body = Box<dyn FnOnce(&AtomicBool) + Send>;

/// Running load; stops (and joins its threads) on drop.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts, on `cpus` (not empty), one busy and one timer thread per CPU
    /// and one ping-pong pair.
    pub(crate) fn start(cpus: &[u32]) -> io::Result<Self> {
        if cpus.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut bodies: Vec<(&str, Body)> = Vec::new();
        for _ in cpus {
            bodies.push((
                "load-busy",
                Box::new(|stop| {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                        }
                    }
                }),
            ));
            bodies.push((
                "load-timer",
                Box::new(|stop| {
                    while !stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_micros(100));
                    }
                }),
            ));
        }
        // Every message wakes a thread that sleeps, usually on another CPU.
        let (to_b, from_a) = mpsc::channel::<()>();
        let (to_a, from_b) = mpsc::channel::<()>();
        bodies.push((
            "load-ping",
            Box::new(move |stop| {
                while !stop.load(Ordering::Relaxed)
                    && to_b.send(()).is_ok()
                    && from_b.recv().is_ok()
                {}
            }),
        ));
        bodies.push((
            "load-pong",
            Box::new(move |_| {
                while from_a.recv().is_ok() {
                    if to_a.send(()).is_err() {
                        break;
                    }
                }
            }),
        ));

        let stop = Arc::new(AtomicBool::new(false));
        // Dropping `load` on an error below stops what already runs.
        let mut load = Load {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        for (name, body) in bodies {
            let stop = stop.clone();
            let ready = ready_tx.clone();
            let cpus = cpus.to_vec();
            load.threads
                .push(thread::Builder::new().name(name.into()).spawn(move || {
                    let confined = confine(&cpus);
                    let ok = confined.is_ok();
                    let _ = ready.send(confined);
                    // The receiver waits until every sender is gone.
                    drop(ready);
                    if ok {
                        body(&stop);
                    }
                })?);
        }
        drop(ready_tx);
        // Every thread reports whether it could be confined.
        for r in ready_rx.iter() {
            r?;
        }
        Ok(load)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_and_stops_on_cpu_0() {
        let load = Load::start(&[0]).unwrap();
        thread::sleep(Duration::from_millis(20));
        drop(load);
    }

    #[test]
    fn refuses_no_cpus() {
        assert!(Load::start(&[]).is_err());
    }
}
