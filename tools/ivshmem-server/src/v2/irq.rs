// SPDX-License-Identifier: GPL-2.0
//! Raising a guest's interrupts: the Interrupt Control gate, the MSI-X
//! eventfds QEMU hands over, and the thread that forwards the guest's
//! server-side eventfds to them.
//!
//! Every peer's doorbells are eventfds (see [`crate::peers`]). For a guest,
//! nobody but this device reads them: [`forward`] waits on all of them and,
//! for each one that was rung, passes the interrupt through [`IrqGate`],
//! which drops it while the guest's Interrupt Control bit 0 is clear (the
//! specification drops, never latches, such events) and in one-shot mode
//! clears that bit on each delivery.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ivshmem_peer::{eventfd, poll};

use super::Stats;

/// What happened to one interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written to QEMU's eventfd of the vector.
    Raised,
    /// Dropped: interrupts are disabled (Interrupt Control bit 0 is 0).
    Disabled,
    /// Dropped: QEMU has not given an eventfd for this vector (MSI-X off,
    /// or the vector is unused).
    NoEventfd,
}

/// One guest's Interrupt Control register and MSI-X eventfds.
#[derive(Debug)]
pub struct IrqGate {
    enabled: AtomicBool,
    one_shot: bool,
    msix: Mutex<Vec<Option<File>>>,
}

impl IrqGate {
    /// A gate for `vectors` vectors, disabled, without eventfds.
    pub fn new(vectors: u16, one_shot: bool) -> Self {
        Self {
            enabled: AtomicBool::new(false),
            one_shot,
            msix: Mutex::new((0..vectors).map(|_| None).collect()),
        }
    }

    fn fds(&self) -> std::sync::MutexGuard<'_, Vec<Option<File>>> {
        self.msix.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interrupt Control bit 0.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Sets Interrupt Control bit 0.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Replaces the eventfds of vectors `start..start + count` with `fds`
    /// (in order; vectors beyond the descriptors given lose theirs).
    pub fn set_eventfds(
        &self,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> Result<(), super::DeviceError> {
        let mut table = self.fds();
        let (start, end) = super::config::range(
            u64::from(start),
            usize::try_from(count).map_err(|_| super::DeviceError::BadIrq)?,
            // CAST: a Vec length fits in u64.
            table.len() as u64,
        )
        .map_err(|_| super::DeviceError::BadIrq)?;
        if fds.len() > end - start {
            return Err(super::DeviceError::BadIrq);
        }
        let mut given = fds.into_iter();
        for slot in &mut table[start..end] {
            *slot = given.next();
        }
        Ok(())
    }

    /// Drops every MSI-X eventfd.
    pub fn clear_eventfds(&self) {
        self.fds().iter_mut().for_each(|s| *s = None);
    }

    /// Raises `vector` regardless of Interrupt Control (VFIO's loopback
    /// trigger).
    pub fn raise(&self, vector: usize) -> Delivery {
        match self.fds().get_mut(vector).and_then(Option::as_mut) {
            Some(f) => {
                // A full eventfd counter or a closed QEMU is not our
                // problem: the interrupt is as good as delivered.
                let _ = f.write(&1u64.to_ne_bytes());
                Delivery::Raised
            }
            None => Delivery::NoEventfd,
        }
    }

    /// Delivers a doorbell on `vector` if Interrupt Control allows it.
    pub fn deliver(&self, vector: usize) -> Delivery {
        let allowed = if self.one_shot {
            self.enabled.swap(false, Ordering::SeqCst)
        } else {
            self.enabled()
        };
        if !allowed {
            return Delivery::Disabled;
        }
        self.raise(vector)
    }
}

/// Forwards rings of the guest's eventfds `events` (vector `i` is
/// `events[i]`) through `gate` until `stop` is readable.
pub fn forward(events: Vec<OwnedFd>, stop: OwnedFd, gate: Arc<IrqGate>, stats: Arc<Stats>) {
    for fd in &events {
        if let Err(e) = eventfd::set_nonblocking(fd.as_fd()) {
            eprintln!("ivshmem-server: cannot forward a guest's interrupts: {e}");
            return;
        }
    }
    let mut fds: Vec<libc::pollfd> = std::iter::once(&stop)
        .chain(&events)
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        fds.iter_mut().for_each(|p| p.revents = 0);
        match poll::poll_fds(&mut fds, None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("ivshmem-server: interrupt forwarding stopped: {e}");
                return;
            }
        }
        if fds[0].revents != 0 {
            return;
        }
        for (vector, (p, fd)) in fds[1..].iter().zip(&events).enumerate() {
            if p.revents == 0 {
                continue;
            }
            if let Ok(Some(_)) = eventfd::try_read(fd.as_fd()) {
                stats.count_delivery(gate.deliver(vector));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    fn efd() -> (File, OwnedFd) {
        let fd = eventfd::create().unwrap();
        eventfd::set_nonblocking(fd.as_fd()).unwrap();
        let dup = fd.try_clone().unwrap();
        // SAFETY: `dup` is an owned descriptor handed over to the File.
        let file = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(dup)) };
        (file, fd)
    }

    #[test]
    fn interrupt_control_gates_delivery() {
        let gate = IrqGate::new(2, false);
        let (f, r) = efd();
        gate.set_eventfds(1, 1, vec![f]).unwrap();
        assert_eq!(gate.deliver(1), Delivery::Disabled);
        gate.set_enabled(true);
        assert_eq!(gate.deliver(1), Delivery::Raised);
        assert_eq!(gate.deliver(1), Delivery::Raised);
        assert_eq!(eventfd::try_read(r.as_fd()).unwrap(), Some(2));
        assert_eq!(gate.deliver(0), Delivery::NoEventfd);
        assert_eq!(gate.deliver(7), Delivery::NoEventfd);
    }

    #[test]
    fn one_shot_clears_the_enable_bit() {
        let gate = IrqGate::new(1, true);
        let (f, r) = efd();
        gate.set_eventfds(0, 1, vec![f]).unwrap();
        gate.set_enabled(true);
        assert_eq!(gate.deliver(0), Delivery::Raised);
        assert!(!gate.enabled());
        assert_eq!(gate.deliver(0), Delivery::Disabled);
        gate.set_enabled(true);
        assert_eq!(gate.deliver(0), Delivery::Raised);
        assert_eq!(eventfd::try_read(r.as_fd()).unwrap(), Some(2));
    }

    #[test]
    fn bad_eventfd_ranges_are_refused() {
        let gate = IrqGate::new(2, false);
        assert!(gate.set_eventfds(2, 1, vec![]).is_err());
        assert!(gate.set_eventfds(u32::MAX, 2, vec![]).is_err());
        assert!(gate.set_eventfds(0, 3, vec![]).is_err());
        let (a, _ra) = efd();
        assert!(
            gate.set_eventfds(0, 0, vec![a]).is_err(),
            "more fds than count"
        );
        assert!(gate.set_eventfds(0, 2, vec![]).is_ok());
    }

    #[test]
    fn forwarder_delivers_until_stopped() {
        let gate = Arc::new(IrqGate::new(2, false));
        let stats = Arc::new(Stats::default());
        let (f, r) = efd();
        gate.set_eventfds(1, 1, vec![f]).unwrap();
        gate.set_enabled(true);
        let events: Vec<OwnedFd> = (0..2).map(|_| eventfd::create().unwrap()).collect();
        let ring = events[1].try_clone().unwrap();
        let stop = eventfd::create().unwrap();
        let stop_ring = stop.try_clone().unwrap();
        let t = {
            let (gate, stats) = (gate.clone(), stats.clone());
            std::thread::spawn(move || forward(events, stop, gate, stats))
        };
        eventfd::signal(ring.as_fd()).unwrap();
        assert!(poll::wait_readable(r.as_fd(), Some(std::time::Duration::from_secs(5))).unwrap());
        assert_eq!(eventfd::try_read(r.as_fd()).unwrap(), Some(1));
        eventfd::signal(stop_ring.as_fd()).unwrap();
        t.join().unwrap();
        assert_eq!(stats.snapshot().delivered, 1);
    }
}
