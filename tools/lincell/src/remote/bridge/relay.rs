// SPDX-License-Identifier: GPL-2.0

//! The bridge's in-flight log, so that a vhost-user backend can be replaced
//! under a running guest without an I/O error.
//!
//! vhost-user's own answer, `VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD`, needs
//! the backend's help, and `qemu-storage-daemon`'s vhost-user-blk export
//! does not offer it (7.2 offers protocol features `0x8f2b`: no bit 12).
//! Without it a new backend only gets a ring index (`SET_VRING_BASE`),
//! which is not enough: the old backend completes requests out of order,
//! so the requests it left unanswered are not the avail entries from the
//! used index on.
//!
//! So the bridge keeps the log itself. It stands in the notification path
//! (not the data path): the backend's kick fd and call fd are eventfds of
//! the bridge, and a [`Relay`] thread forwards each doorbell of the
//! frontend to the backend and each completion signal of the backend to
//! the frontend, and before forwarding scans the shared split ring
//! ([`Tracker::scan`]): the heads made available and the heads used. The
//! heads seen in the avail ring and not yet in the used ring are the
//! requests in flight.
//!
//! The scan cannot miss an entry as long as it runs at least once per
//! `size` new avail entries: the driver only reuses a descriptor after an
//! interrupt, and every interrupt passes the relay, which scans first. A
//! lap it cannot rule out (more than `size` entries since the last scan)
//! marks the log unsynced ([`Tracker::synced`]) until the ring is idle
//! again (avail index = used index: nothing in flight, the log is empty
//! by definition); a backend lost meanwhile is not replaced transparently.
//!
//! When a new backend takes over ([`Tracker::hand_over`]), the bridge
//! rewrites the avail slots from the used index on with exactly the heads
//! in flight (the driver never reads these slots back, and never writes
//! below its own avail index) and gives the backend that used index as its
//! base: the new backend then executes precisely the requests the old one
//! left unanswered, once each, then the ones queued since. Requests the
//! old backend completed (used index published) but did not signal are
//! the driver's already: the bridge raises the frontend's interrupt once
//! after the hand-over so it reaps them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::error::{Error, Result};

use super::log;

/// One split virtqueue's rings in the bridge's mapping of the R/W section.
///
/// # Invariants
///
/// `base + avail .. + 4 + 2 * size` and `base + used .. + 4 + 8 * size` lie
/// inside one live shared mapping, 2- and 4-byte aligned respectively;
/// `size` is a power of two, at most 32768.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingView {
    base: usize,
    avail: usize,
    used: usize,
    size: u16,
}

// SAFETY: the view only does atomic accesses to shared memory that stays
// mapped while the bridge runs (the type invariant).
unsafe impl Send for RingView {}

impl RingView {
    /// The rings of a queue of `size` entries with its avail ring at
    /// section offset `avail` and its used ring at `used`, in a section of
    /// `len` bytes mapped at `base`.
    ///
    /// # Safety
    ///
    /// `base .. base + len` must stay mapped (shared, read-write) for as
    /// long as the view or a copy of it is used.
    pub(crate) unsafe fn new(
        base: *mut u8,
        len: usize,
        avail: u64,
        used: u64,
        size: u16,
    ) -> Result<Self> {
        let bad = |what: &str| Err(Error::Remote(format!("queue rings: {what}")));
        if size == 0 || !size.is_power_of_two() || size > 32768 {
            return bad("size not a power of two up to 32768");
        }
        let n = usize::from(size);
        let (Ok(avail), Ok(used)) = (usize::try_from(avail), usize::try_from(used)) else {
            return bad("address out of range");
        };
        let fits = |off: usize, bytes: usize| off.checked_add(bytes).is_some_and(|end| end <= len);
        if !fits(avail, 4 + 2 * n) || !fits(used, 4 + 8 * n) {
            return bad("outside the R/W section");
        }
        let base = base as usize;
        if (base + avail) % 2 != 0 || (base + used) % 4 != 0 {
            return bad("misaligned");
        }
        // INVARIANT: checked above; the mapping is the caller's promise.
        Ok(RingView {
            base,
            avail,
            used,
            size,
        })
    }

    fn u16_at(&self, off: usize) -> &AtomicU16 {
        // SAFETY: `off` is inside the rings and 2-aligned (the type
        // invariant and the callers' offsets); the mapping is live.
        unsafe { &*((self.base + off) as *const AtomicU16) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as `u16_at`, 4-aligned.
        unsafe { &*((self.base + off) as *const AtomicU32) }
    }

    /// Slot of ring position `pos`.
    fn slot(&self, pos: u16) -> usize {
        usize::from(pos & (self.size - 1))
    }

    /// The driver's avail index (acquire: the slots below it are written).
    fn avail_idx(&self) -> u16 {
        u16::from_le(self.u16_at(self.avail + 2).load(Ordering::Acquire))
    }

    fn avail_head(&self, pos: u16) -> u16 {
        u16::from_le(
            self.u16_at(self.avail + 4 + 2 * self.slot(pos))
                .load(Ordering::Relaxed),
        )
    }

    fn set_avail_head(&self, pos: u16, head: u16) {
        self.u16_at(self.avail + 4 + 2 * self.slot(pos))
            .store(head.to_le(), Ordering::Relaxed);
    }

    /// The device's used index (acquire: the elements below it are written).
    fn used_idx(&self) -> u16 {
        u16::from_le(self.u16_at(self.used + 2).load(Ordering::Acquire))
    }

    fn used_id(&self, pos: u16) -> u32 {
        u32::from_le(
            self.u32_at(self.used + 4 + 8 * self.slot(pos))
                .load(Ordering::Relaxed),
        )
    }
}

/// The requests in flight on one queue, from what the driver made
/// available and the device used.
#[derive(Debug)]
pub(crate) struct Tracker {
    ring: RingView,
    /// Avail position of each head in flight.
    pos: Vec<Option<u16>>,
    /// Avail entries below this were scanned.
    avail_seen: u16,
    /// Used elements below this were scanned.
    used_seen: u16,
    /// Per head: used elements of the current scan not matched yet by an
    /// avail entry ([`Tracker::scan`]). All zero between scans; allocated
    /// once, as the relay scans on every doorbell.
    early: Vec<u16>,
    /// The sum of `early`: whether any entry needs clearing.
    early_left: usize,
    /// The log is exact (no lap or nonsense since it was last empty).
    synced: bool,
    /// Times the log lost track (logged once each).
    lost: u64,
}

/// What a new backend is given for a queue ([`Tracker::hand_over`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HandOver {
    /// `SET_VRING_BASE`: the used index.
    pub(crate) base: u16,
    /// Requests the new backend executes again.
    pub(crate) resubmitted: usize,
}

impl Tracker {
    /// A log of a queue just handed out: both indices 0, nothing in flight.
    pub(crate) fn new(ring: RingView) -> Self {
        Tracker {
            ring,
            pos: vec![None; usize::from(ring.size)],
            avail_seen: 0,
            used_seen: 0,
            early: vec![0; usize::from(ring.size)],
            early_left: 0,
            synced: true,
            lost: 0,
        }
    }

    /// Whether the log holds exactly the requests in flight.
    pub(crate) fn synced(&self) -> bool {
        self.synced
    }

    fn lose(&mut self, why: std::fmt::Arguments<'_>) {
        if self.synced {
            self.lost += 1;
            log(format_args!(
                "in-flight log lost track ({why}); a backend lost before the queue is idle again fails the device"
            ));
        }
        self.synced = false;
    }

    /// Takes in the avail entries and used elements published since the
    /// last scan.
    ///
    /// The used range goes first, the avail range second, and a used head
    /// that is not in flight yet is counted as *early*: the driver may
    /// have collected a completion the scan has not seen, freed the head
    /// and offered it again, and the device may complete a head whose
    /// avail entry this scan has not taken in yet. Every used element
    /// below `u` (read before `a`) refers to an avail entry below `a`, so
    /// an early count left over after the avail range is nonsense.
    pub(crate) fn scan(&mut self) {
        let r = self.ring;
        let size = r.size;
        let u = r.used_idx();
        let a = r.avail_idx();
        let done = u.wrapping_sub(self.used_seen);
        if done > size {
            self.lose(format_args!(
                "{done} used elements since the last scan, ring of {size}"
            ));
        } else {
            let mut p = self.used_seen;
            while p != u {
                let id = r.used_id(p);
                let h = usize::try_from(id).ok().filter(|&h| h < usize::from(size));
                match h {
                    Some(h) if self.pos[h].is_some() => self.pos[h] = None,
                    Some(h) => {
                        // PANIC: `early` has `size` entries and `h < size`.
                        self.early[h] = self.early[h].saturating_add(1);
                        self.early_left += 1;
                    }
                    None => self.lose(format_args!("used id {id} out of range")),
                }
                p = p.wrapping_add(1);
            }
            if r.used_idx().wrapping_sub(self.used_seen) >= size && done > 0 {
                self.lose(format_args!("the used ring lapped the scan"));
            }
        }
        self.used_seen = u;
        let new = a.wrapping_sub(self.avail_seen);
        if new > size {
            self.lose(format_args!(
                "{new} avail entries since the last scan, ring of {size}"
            ));
        } else {
            let mut p = self.avail_seen;
            while p != a {
                let head = r.avail_head(p);
                let h = usize::from(head);
                match self.pos.get_mut(h) {
                    // Already used within this scan: not in flight.
                    Some(_) if self.early[h] > 0 => {
                        // PANIC: `early` and `pos` both have `size` entries.
                        self.early[h] -= 1;
                        self.early_left -= 1;
                    }
                    Some(slot @ None) => *slot = Some(p),
                    Some(Some(_)) if self.synced => {
                        self.lose(format_args!("head {head} made available twice"))
                    }
                    Some(slot) => *slot = Some(p),
                    None => self.lose(format_args!("head {head} out of range")),
                }
                p = p.wrapping_add(1);
            }
            // The driver may have written one slot past what it published
            // meanwhile: the slots read are good if that one is not theirs.
            // It needs a free descriptor for that, and has none while the
            // whole ring is in flight (a burst of a whole ring is no lap).
            let (avail_now, used_now) = (r.avail_idx(), r.used_idx());
            let full = avail_now == a && a.wrapping_sub(used_now) >= size;
            if avail_now.wrapping_sub(self.avail_seen) >= size && new > 0 && !full {
                self.lose(format_args!("the avail ring lapped the scan"));
            }
        }
        self.avail_seen = a;
        if self.early_left > 0 {
            // Rare (nonsense from the device, or an avail range skipped as
            // a lap): report the first, then clear them all for the next
            // scan.
            if self.synced {
                if let Some(h) = self.early.iter().position(|&n| n > 0) {
                    self.lose(format_args!("used id {h} was not in flight"));
                }
            }
            self.early.iter_mut().for_each(|n| *n = 0);
            self.early_left = 0;
        }
        if a == u {
            // Nothing in flight: the log is exact again.
            self.pos.iter_mut().for_each(|p| *p = None);
            self.synced = true;
        }
    }

    /// Requests in flight (exact only while [`Tracker::synced`]).
    pub(crate) fn in_flight(&self) -> usize {
        self.pos.iter().filter(|p| p.is_some()).count()
    }

    /// Prepares the ring for a new backend once the old one is gone: a
    /// last scan, then the heads in flight, oldest first, written to the
    /// avail slots from the used index on. `None` when the log is not
    /// exact (the caller fails the device instead).
    pub(crate) fn hand_over(&mut self) -> Option<HandOver> {
        self.scan();
        let outstanding = usize::from(self.avail_seen.wrapping_sub(self.used_seen));
        if !self.synced || self.in_flight() != outstanding {
            if self.synced {
                log(format_args!(
                    "in-flight log holds {} requests, the ring {outstanding}",
                    self.in_flight()
                ));
            }
            return None;
        }
        let mut heads: Vec<(u16, u16)> = self
            .pos
            .iter()
            .enumerate()
            .filter_map(|(h, p)| {
                // CAST: heads are below the ring size, at most 32768.
                p.map(|p| (self.avail_seen.wrapping_sub(p), h as u16))
            })
            .collect();
        // Oldest (largest age) first.
        heads.sort_by_key(|h| std::cmp::Reverse(h.0));
        for (k, (_, head)) in heads.iter().enumerate() {
            // CAST: k < outstanding <= size <= 32768.
            self.ring
                .set_avail_head(self.used_seen.wrapping_add(k as u16), *head);
        }
        // The new backend reads these slots after SET_VRING_* (a socket
        // round trip), but order them before anything that follows.
        fence(Ordering::SeqCst);
        Some(HandOver {
            base: self.used_seen,
            resubmitted: heads.len(),
        })
    }
}

/// One queue's doorbells as the relay forwards them.
pub(crate) struct RelayQueue {
    /// The bridge's ivshmem doorbell of the queue's kick vector.
    pub(crate) kick_in: OwnedFd,
    /// The frontend's ivshmem doorbell of the queue's completion vector.
    pub(crate) call_out: OwnedFd,
    /// The ring.
    pub(crate) ring: RingView,
}

/// The fds a backend gets for one queue.
pub(crate) struct BackendFds {
    /// `SET_VRING_KICK`.
    pub(crate) kick: EventFd,
    /// `SET_VRING_CALL`.
    pub(crate) call: EventFd,
}

/// What the relay thread and the bridge share.
struct Shared {
    trackers: Mutex<Vec<Tracker>>,
    quit: AtomicBool,
}

/// The relay thread of the queues handed out.
pub(crate) struct Relay {
    shared: Arc<Shared>,
    /// Per queue: the eventfds the backends get (duplicates each time).
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    /// The frontend's doorbells (to raise its interrupt after a hand-over).
    call_outs: Vec<OwnedFd>,
    wake: EventFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Adds 1 to an eventfd (a doorbell or the backend's kick).
fn ring(fd: &impl AsRawFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: an 8-byte write from a live buffer to an open eventfd.
    let _ = unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), 8) };
}

/// Empties a nonblocking eventfd; whether it had been signalled.
fn drain(fd: &impl AsRawFd) -> bool {
    let mut b = [0u8; 8];
    // SAFETY: an 8-byte read into a live buffer.
    let n = unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    n == 8
}

/// The longest the relay sleeps without a doorbell (it scans then too).
const IDLE_SCAN: Duration = Duration::from_millis(20);

impl Relay {
    /// Starts relaying for `queues`.
    pub(crate) fn start(queues: Vec<RelayQueue>) -> Result<Self> {
        let mk = || EventFd::new(EFD_NONBLOCK).map_err(Error::from);
        let mut kicks = Vec::new();
        let mut calls = Vec::new();
        let mut call_outs = Vec::new();
        let mut trackers = Vec::new();
        let mut ins = Vec::new();
        for q in queues {
            set_nonblocking(&q.kick_in)?;
            kicks.push(mk()?);
            calls.push(mk()?);
            call_outs.push(q.call_out.try_clone()?);
            trackers.push(Tracker::new(q.ring));
            ins.push((q.kick_in, q.call_out));
        }
        let shared = Arc::new(Shared {
            trackers: Mutex::new(trackers),
            quit: AtomicBool::new(false),
        });
        let wake = mk()?;
        let t = RelayThread {
            shared: Arc::clone(&shared),
            ins,
            kicks: kicks
                .iter()
                .map(EventFd::try_clone)
                .collect::<io::Result<_>>()?,
            calls: calls
                .iter()
                .map(EventFd::try_clone)
                .collect::<io::Result<_>>()?,
            wake: wake.try_clone()?,
        };
        let thread = std::thread::Builder::new()
            .name("vhost-user relay".into())
            .spawn(move || t.run())?;
        Ok(Relay {
            shared,
            kicks,
            calls,
            call_outs,
            wake,
            thread: Some(thread),
        })
    }

    /// Fresh duplicates of queue `i`'s eventfds for a backend.
    pub(crate) fn backend_fds(&self, i: usize) -> Result<BackendFds> {
        let (Some(k), Some(c)) = (self.kicks.get(i), self.calls.get(i)) else {
            return Err(Error::Remote(format!("queue {i} is not relayed")));
        };
        Ok(BackendFds {
            kick: k.try_clone()?,
            call: c.try_clone()?,
        })
    }

    /// The logs, locked (the relay waits meanwhile).
    pub(crate) fn trackers(&self) -> MutexGuard<'_, Vec<Tracker>> {
        self.shared
            .trackers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a hand-over: kicks the new backend (requests to resubmit and
    /// those queued meanwhile) and raises the frontend's interrupt
    /// (completions the old backend published but did not signal).
    pub(crate) fn nudge(&self) {
        self.kicks.iter().for_each(ring);
        self.call_outs.iter().for_each(ring);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.quit.store(true, Ordering::SeqCst);
        ring(&self.wake);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    // SAFETY: fcntl on an open fd.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if fl < 0 || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error().into());
    }
    Ok(())
}

/// The relay thread's own handles.
struct RelayThread {
    shared: Arc<Shared>,
    /// Per queue: the kick doorbell in, the frontend's doorbell out.
    ins: Vec<(OwnedFd, OwnedFd)>,
    kicks: Vec<EventFd>,
    calls: Vec<EventFd>,
    wake: EventFd,
}

impl RelayThread {
    fn run(self) {
        let n = self.ins.len();
        let mut fds: Vec<libc::pollfd> = self
            .ins
            .iter()
            .map(|(k, _)| k.as_fd().as_raw_fd())
            .chain(self.calls.iter().map(AsRawFd::as_raw_fd))
            .chain(std::iter::once(self.wake.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // CAST: a handful of fds.
        let nfds = fds.len() as libc::nfds_t;
        // CAST: 20 ms fits a c_int.
        let idle = IDLE_SCAN.as_millis() as libc::c_int;
        while !self.shared.quit.load(Ordering::SeqCst) {
            // SAFETY: `fds` is a live array of `nfds` pollfds.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), nfds, idle) };
            if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                log(format_args!("relay: poll: {}", io::Error::last_os_error()));
                std::thread::sleep(IDLE_SCAN);
            }
            let mut trackers = self
                .shared
                .trackers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (i, t) in trackers.iter_mut().enumerate() {
                let kicked = drain(&self.ins[i].0);
                let called = drain(&self.calls[i]);
                // Scan before forwarding: the driver reuses descriptors
                // only after the interrupt, the device serves only what it
                // was kicked for or polls itself.
                t.scan();
                if kicked {
                    ring(&self.kicks[i]);
                }
                if called {
                    ring(&self.ins[i].1);
                }
            }
            drop(trackers);
            drain(&self.wake);
            fds.iter_mut().take(2 * n + 1).for_each(|p| p.revents = 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue of `size` in a private buffer: avail ring at 0, used ring
    /// at 4096.
    struct Fake {
        buf: Vec<u64>,
        size: u16,
    }

    impl Fake {
        fn new(size: u16) -> Self {
            Fake {
                buf: vec![0; 8192 / 8],
                size,
            }
        }
        fn view(&mut self) -> RingView {
            // SAFETY: the buffer outlives every use in a test.
            unsafe { RingView::new(self.buf.as_mut_ptr().cast(), 8192, 0, 4096, self.size) }
                .expect("view")
        }
        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the Vec<u64>'s storage as bytes.
            unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr().cast(), 8192) }
        }
        fn avail_idx(&mut self) -> u16 {
            u16::from_le_bytes([self.bytes()[2], self.bytes()[3]])
        }
        fn used_idx(&mut self) -> u16 {
            u16::from_le_bytes([self.bytes()[4098], self.bytes()[4099]])
        }
        /// The driver makes `head` available.
        fn offer(&mut self, head: u16) {
            let a = self.avail_idx();
            let s = 4 + 2 * usize::from(a & (self.size - 1));
            self.bytes()[s..s + 2].copy_from_slice(&head.to_le_bytes());
            self.bytes()[2..4].copy_from_slice(&a.wrapping_add(1).to_le_bytes());
        }
        fn avail_slot(&mut self, pos: u16) -> u16 {
            let s = 4 + 2 * usize::from(pos & (self.size - 1));
            u16::from_le_bytes([self.bytes()[s], self.bytes()[s + 1]])
        }
        /// The device completes `head`.
        fn complete(&mut self, head: u16) {
            let u = self.used_idx();
            let s = 4096 + 4 + 8 * usize::from(u & (self.size - 1));
            self.bytes()[s..s + 4].copy_from_slice(&u32::from(head).to_le_bytes());
            self.bytes()[4098..4100].copy_from_slice(&u.wrapping_add(1).to_le_bytes());
        }
    }

    #[test]
    fn out_of_order_completions_hand_over_exactly_the_rest() {
        let mut f = Fake::new(8);
        let mut t = Tracker::new(f.view());
        for h in [3, 5, 1, 7] {
            f.offer(h);
        }
        t.scan();
        // The backend completes the two newest first, then dies.
        f.complete(7);
        f.complete(1);
        assert_eq!(t.in_flight(), 4);
        let h = t.hand_over().expect("synced");
        assert_eq!(
            h,
            HandOver {
                base: 2,
                resubmitted: 2
            }
        );
        // Avail positions 2 and 3 now hold the two unanswered heads,
        // oldest first: what the new backend reads from base 2.
        assert_eq!((f.avail_slot(2), f.avail_slot(3)), (3, 5));
        // The new backend completes them; the driver adds one more.
        f.complete(5);
        f.complete(3);
        f.offer(1);
        t.scan();
        assert!(t.synced());
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn wraps_around_u16() {
        let mut f = Fake::new(4);
        let mut t = Tracker::new(f.view());
        for i in 0..70_000u32 {
            // CAST: heads cycle through 0..4.
            let h = (i % 4) as u16;
            f.offer(h);
            t.scan();
            f.complete(h);
            if i % 3 == 0 {
                t.scan();
            }
        }
        f.offer(2);
        let h = t.hand_over().expect("synced");
        assert_eq!(h.resubmitted, 1);
        assert_eq!(f.avail_slot(h.base), 2);
    }

    #[test]
    fn a_lap_unsyncs_until_idle() {
        let mut f = Fake::new(4);
        let mut t = Tracker::new(f.view());
        f.offer(0);
        t.scan();
        // Five entries behind the scan's back on a ring of four.
        for h in [1, 2, 3] {
            f.offer(h);
            f.complete(h);
        }
        f.complete(0);
        for h in [0, 1] {
            f.offer(h);
        }
        t.scan();
        assert!(!t.synced());
        assert!(t.hand_over().is_none());
        f.complete(0);
        f.complete(1);
        t.scan();
        assert!(t.synced());
        assert_eq!(t.hand_over().map(|h| h.resubmitted), Some(0));
    }

    #[test]
    fn a_head_reused_before_the_scan_saw_its_completion_stays_synced() {
        // What a busy queue does all the time: the driver collects a
        // completion whose doorbell the relay has not handled yet, and
        // offers the head again at once.
        let mut f = Fake::new(8);
        let mut t = Tracker::new(f.view());
        f.offer(0);
        f.offer(1);
        t.scan();
        f.complete(0);
        f.offer(0);
        t.scan();
        assert!(t.synced());
        assert_eq!(t.in_flight(), 2);
        // And a head completed before the scan took in its avail entry.
        f.offer(2);
        f.complete(2);
        t.scan();
        assert!(t.synced());
        assert_eq!(t.in_flight(), 2);
        let h = t.hand_over().expect("synced");
        assert_eq!(h.resubmitted, 2);
        // Oldest first: head 1 (position 1), then head 0 (position 2).
        assert_eq!((f.avail_slot(h.base), f.avail_slot(h.base + 1)), (1, 0));
    }

    #[test]
    fn a_burst_of_a_whole_ring_is_no_lap() {
        let mut f = Fake::new(4);
        let mut t = Tracker::new(f.view());
        for h in [2, 0, 3, 1] {
            f.offer(h);
        }
        t.scan();
        assert!(t.synced());
        assert_eq!(t.in_flight(), 4);
        assert_eq!(t.hand_over().map(|h| h.resubmitted), Some(4));
    }

    #[test]
    fn nonsense_from_the_ring_unsyncs() {
        let mut f = Fake::new(4);
        let mut t = Tracker::new(f.view());
        f.offer(9);
        t.scan();
        assert!(!t.synced());
        let mut f = Fake::new(4);
        let mut t = Tracker::new(f.view());
        f.offer(1);
        f.offer(3);
        t.scan();
        f.complete(2);
        t.scan();
        assert!(!t.synced());
    }

    #[test]
    fn an_early_count_left_over_does_not_carry_into_the_next_scan() {
        let mut f = Fake::new(4);
        let mut t = Tracker::new(f.view());
        f.offer(1);
        t.scan();
        // The device "completes" head 2, never offered: a leftover early
        // count, reported; the ring is idle by its indices (1, 1).
        f.complete(2);
        t.scan();
        assert!(t.synced());
        assert_eq!(t.in_flight(), 0);
        // Head 2 offered for real is in flight, not matched with the stale
        // count of the last scan.
        f.offer(2);
        t.scan();
        assert!(t.synced());
        assert_eq!(t.in_flight(), 1);
    }

    #[test]
    fn rings_outside_the_section_are_refused() {
        let mut buf = vec![0u64; 128];
        let p: *mut u8 = buf.as_mut_ptr().cast();
        // SAFETY: the views are not used.
        unsafe {
            assert!(RingView::new(p, 1024, 0, 512, 3).is_err());
            assert!(RingView::new(p, 1024, 1010, 512, 8).is_err());
            assert!(RingView::new(p, 1024, 0, 1000, 8).is_err());
            assert!(RingView::new(p, 1024, 1, 512, 8).is_err());
            assert!(RingView::new(p, 1024, 0, 512, 8).is_ok());
        }
    }
}
