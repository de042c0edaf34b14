// SPDX-License-Identifier: GPL-2.0

//! `pingpong` (initiator) and `echo` (responder) over any two [`Endpoint`]s,
//! coordinated through the session header of [`super::proto`].
//!
//! Every wait is bounded: a peer that dies mid-session turns into a failure
//! naming the round and what was expected, never a hang.

use std::io::{self, Write};
use std::thread;
use std::time::{Duration, Instant};

use super::bench::Stats;
use super::endpoint::{Endpoint, Events, ShmOffset};
use super::proto::{self, off, Header, Mode, Request, Role, State, SYNC_BIT};

/// How long one warm-up doorbell is given before it is sent again.
const SYNC_RETRY: Duration = Duration::from_secs(1);
/// Spin iterations between two looks at the clock.
const SPIN_CHECK: u32 = 256;

/// What `pingpong` does.
#[derive(Clone, Debug)]
pub(crate) struct PingOptions {
    /// Responder's peer id (`None`: the one that accepts the session).
    pub(crate) peer: Option<u32>,
    /// Doorbell vector, both ways.
    pub(crate) vector: u32,
    /// Measured round trips.
    pub(crate) count: u32,
    /// How both sides wait.
    pub(crate) mode: Mode,
    /// Limit for one round trip.
    pub(crate) timeout: Duration,
    /// Limit for a responder to accept the session.
    pub(crate) connect_timeout: Duration,
    /// Ask the responder to exit afterwards.
    pub(crate) stop: bool,
    /// Where the session header is.
    pub(crate) offset: ShmOffset,
}

/// What `pingpong` found.
#[derive(Debug, Default)]
pub(crate) struct PingReport {
    /// Own id.
    pub(crate) initiator: u32,
    /// The responder's id.
    pub(crate) responder: u32,
    /// Round-trip times in nanoseconds, one per completed round.
    pub(crate) samples: Vec<u64>,
    /// Warm-up doorbells sent before the first answer.
    pub(crate) sync_attempts: u32,
    /// The responder's payload was read back intact.
    pub(crate) data_verified: bool,
    /// Post-run checks (device only): `(passed, description)`.
    pub(crate) checks: Vec<(bool, String)>,
    /// Why the run failed, if it did.
    pub(crate) failure: Option<String>,
}

impl PingReport {
    /// True when every round completed and every check passed.
    pub(crate) fn passed(&self) -> bool {
        self.failure.is_none() && self.checks.iter().all(|(ok, _)| *ok)
    }
}

/// Polls `cond` every `step` until it holds or `limit` passes.
fn poll_until(
    limit: Duration,
    step: Duration,
    mut cond: impl FnMut() -> io::Result<bool>,
) -> io::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if cond()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(step);
    }
}

/// Spins until `field` equals `want` or `limit` passes; true if it did.
fn spin_until(h: &Header<'_>, field: usize, want: u32, limit: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + limit;
    let mut n = 0u32;
    loop {
        if h.load(field)? == want {
            return Ok(true);
        }
        n = n.wrapping_add(1);
        if n % SPIN_CHECK == 0 && Instant::now() >= deadline {
            return Ok(false);
        }
        std::hint::spin_loop();
    }
}

/// Runs the initiator side: handshake, warm-up, `count` measured rounds,
/// and (on a device) the after-checks: nothing pending, counters exact.
pub(crate) fn pingpong(ep: &mut dyn Endpoint, o: &PingOptions) -> io::Result<PingReport> {
    if o.count >= SYNC_BIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "count must be below 2^31",
        ));
    }
    if let Some(wm) = o.mode.wait_mode() {
        if o.vector >= ep.vectors() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} has {} vectors; vector {} does not exist",
                    ep.describe(),
                    ep.vectors(),
                    o.vector
                ),
            ));
        }
        ep.set_wait_mode(wm)?;
    }
    let mut rep = PingReport {
        initiator: ep.id(),
        ..PingReport::default()
    };
    let nonce = proto::new_nonce();
    let req = Request {
        nonce,
        initiator: ep.id(),
        mode: o.mode,
        vector: o.vector,
        iterations: o.count,
    };
    let bit = 1u64 << o.vector.min(63);
    let base = o.offset.resolve(ep);
    {
        let h = Header::new(ep.shm(), base)?;
        h.request(&req)?;
        if !poll_until(o.connect_timeout, Duration::from_millis(1), || {
            h.accepted(nonce)
        })? {
            rep.failure = Some(format!(
                "no responder accepted the session within {:?} (is `lincell ivshmem echo` running on the other side?)",
                o.connect_timeout
            ));
            h.store(off::STATE, State::Idle as u32)?;
            return Ok(rep);
        }
        rep.responder = h.load(off::RESPONDER)?;
        match h.payload_mismatch(Role::Responder, nonce)? {
            None => rep.data_verified = true,
            Some(e) => rep.failure = Some(format!("responder's data is wrong: {e}")),
        }
    }
    let peer = o.peer.unwrap_or(rep.responder);
    if peer != rep.responder {
        rep.failure = Some(format!(
            "--peer {peer} given, but peer {} accepted the session",
            rep.responder
        ));
    }
    if rep.failure.is_none() && o.mode != Mode::Spin {
        sync(ep, &mut rep, o, base, peer, bit)?;
    }
    // Leftovers of the warm-up must not count below.
    if rep.failure.is_none() && o.mode != Mode::Spin {
        thread::sleep(Duration::from_millis(20));
        let _ = ep.try_wait()?;
    }
    let before = match ep.device() {
        Some(d) => Some(d.counters()?),
        None => None,
    };
    if rep.failure.is_none() {
        rep.samples.reserve(o.count as usize);
        measure(ep, &mut rep, o, base, peer, bit)?;
    }
    // End the session and wake a responder blocked on its doorbell.
    {
        let h = Header::new(ep.shm(), base)?;
        h.store(
            off::STATE,
            if o.stop { State::Stop } else { State::Done } as u32,
        )?;
    }
    // Spinning responders and the kernel-mode one watch the header: no
    // wake-up (which a kernel echo would answer, one doorbell too many).
    if !matches!(o.mode, Mode::Spin | Mode::Kernel) {
        // The responder may be gone already (e.g. `echo --count`).
        let _ = ep.ring(peer, o.vector);
    }
    if rep.failure.is_none() {
        after_checks(ep, &mut rep, o, before.as_deref())?;
    }
    Ok(rep)
}

/// Warm-up: rings until the responder answers (see [`proto`]).
fn sync(
    ep: &mut dyn Endpoint,
    rep: &mut PingReport,
    o: &PingOptions,
    base: Base,
    peer: u32,
    bit: u64,
) -> io::Result<()> {
    let deadline = Instant::now() + o.connect_timeout;
    loop {
        rep.sync_attempts += 1;
        let seq = SYNC_BIT | rep.sync_attempts;
        Header::new(ep.shm(), base)?.store(off::PING, seq)?;
        if let Err(e) = ep.ring(peer, o.vector) {
            rep.failure = Some(format!(
                "warm-up: cannot ring peer {peer} vector {}: {e}",
                o.vector
            ));
            return Ok(());
        }
        let retry_at = Instant::now() + SYNC_RETRY;
        while Instant::now() < retry_at {
            let left = retry_at.saturating_duration_since(Instant::now());
            match ep.wait(bit, left) {
                // The kernel echo answers without a pong number.
                Ok(_) if o.mode == Mode::Kernel => return Ok(()),
                Ok(_) if Header::new(ep.shm(), base)?.load(off::PONG)? == seq => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            rep.failure = Some(format!(
                "warm-up: peer {peer} never answered on vector {} ({} doorbells in {:?})",
                o.vector, rep.sync_attempts, o.connect_timeout
            ));
            return Ok(());
        }
    }
}

/// The measured rounds; stops at the first anomaly.
fn measure(
    ep: &mut dyn Endpoint,
    rep: &mut PingReport,
    o: &PingOptions,
    base: Base,
    peer: u32,
    bit: u64,
) -> io::Result<()> {
    for i in 1..=o.count {
        let t0;
        if o.mode == Mode::Spin {
            let h = Header::new(ep.shm(), base)?;
            t0 = Instant::now();
            h.store(off::PING, i)?;
            if !spin_until(&h, off::PONG, i, o.timeout)? {
                rep.failure = Some(format!(
                    "round {i}: no pong {i} within {:?} (pong is {}; the responder stopped?)",
                    o.timeout,
                    h.load(off::PONG)?
                ));
                return Ok(());
            }
        } else {
            Header::new(ep.shm(), base)?.store(off::PING, i)?;
            t0 = Instant::now();
            if let Err(e) = ep.ring(peer, o.vector) {
                rep.failure = Some(format!("round {i}: cannot ring peer {peer}: {e}"));
                return Ok(());
            }
            let ev = match ep.wait(bit, o.timeout) {
                Ok(ev) => ev,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    rep.failure = Some(format!(
                        "round {i}: lost doorbell: nothing on vector {} within {:?} (pong is {})",
                        o.vector,
                        o.timeout,
                        Header::new(ep.shm(), base)?.load(off::PONG)?
                    ));
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if ev
                != (Events {
                    mask: bit,
                    count: 1,
                })
            {
                rep.failure = Some(format!(
                    "round {i}: spurious event: got vectors {:#x} ({} rings), expected exactly one on vector {}",
                    ev.mask, ev.count, o.vector
                ));
                return Ok(());
            }
            let pong = Header::new(ep.shm(), base)?.load(off::PONG)?;
            if pong != i && o.mode != Mode::Kernel {
                rep.failure = Some(format!(
                    "round {i}: doorbell arrived but pong is {pong}, expected {i}"
                ));
                return Ok(());
            }
        }
        rep.samples
            .push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    Ok(())
}

/// After the run nothing may be pending and (on a device, whose counters
/// are `before`) the vector's interrupt counter must have moved by exactly
/// the number of pongs.
fn after_checks(
    ep: &mut dyn Endpoint,
    rep: &mut PingReport,
    o: &PingOptions,
    before: Option<&[u64]>,
) -> io::Result<()> {
    // Give a late, spurious interrupt the time to show up.
    thread::sleep(Duration::from_millis(50));
    // Vector 0 also carries state changes (lincell's state protocol; the
    // ivshmem-server rings it when a peer with a state leaves, as the
    // responder may right after the last round): when the run used another
    // vector, vector 0 is not part of the check.
    let state_vector = if o.vector != 0 { 1u64 } else { 0 };
    let pending = ep.try_wait()?.filter(|ev| ev.mask & !state_vector != 0);
    rep.checks.push(match pending {
        None => (
            true,
            "nonblocking read after the last round: EAGAIN (nothing pending)".into(),
        ),
        Some(ev) => (
            false,
            format!(
                "nonblocking read after the last round returned vectors {:#x}: spurious event",
                ev.mask
            ),
        ),
    });
    let (Some(dev), Some(before)) = (ep.device(), before) else {
        return Ok(());
    };
    let after = dev.counters()?;
    let v = o.vector as usize;
    let moved = after
        .get(v)
        .copied()
        .unwrap_or(0)
        .wrapping_sub(before.get(v).copied().unwrap_or(0));
    let expected = if o.mode == Mode::Spin {
        0
    } else {
        u64::from(o.count)
    };
    rep.checks.push((
        moved == expected,
        format!("counters[{v}] moved by {moved}, expected {expected}"),
    ));
    let others: u64 = after
        .iter()
        .zip(before)
        .enumerate()
        .filter(|(i, _)| *i != v && !(*i == 0 && state_vector != 0))
        .map(|(_, (a, b))| a.wrapping_sub(*b))
        .sum();
    rep.checks.push((
        others == 0,
        format!(
            "other vectors' counters moved by {others}, expected 0{}",
            if state_vector != 0 {
                " (vector 0, state changes, not counted)"
            } else {
                ""
            }
        ),
    ));
    Ok(())
}

/// Prints a report in the `pingpong` output format.
pub(crate) fn print_report(
    out: &mut dyn Write,
    rep: &PingReport,
    o: &PingOptions,
) -> io::Result<()> {
    writeln!(
        out,
        "pingpong: peer {} -> peer {}, vector {}, mode {}, {}/{} round trips, {} warm-up doorbell(s)",
        rep.initiator,
        rep.responder,
        o.vector,
        o.mode.name(),
        rep.samples.len(),
        o.count,
        rep.sync_attempts
    )?;
    if rep.data_verified {
        writeln!(
            out,
            "data: the responder's payload verified ({} bytes)",
            proto::PAYLOAD_SIZE
        )?;
    }
    let lost = o.count as usize - rep.samples.len();
    writeln!(
        out,
        "lost: {lost} spurious: {}",
        u32::from(
            rep.failure
                .as_deref()
                .is_some_and(|f| f.contains("spurious"))
        )
    )?;
    if let Some(st) = Stats::from_samples(&mut rep.samples.clone()) {
        writeln!(out, "{st}")?;
    }
    for (ok, what) in &rep.checks {
        writeln!(out, "check {}: {what}", if *ok { "ok" } else { "FAILED" })?;
    }
    match &rep.failure {
        Some(f) => writeln!(out, "FAILED: {f}"),
        None if rep.passed() => writeln!(out, "PASSED"),
        None => writeln!(out, "FAILED: a check failed"),
    }
}

/// What `echo` does.
#[derive(Clone, Debug)]
pub(crate) struct EchoOptions {
    /// Exit after this many measured pongs in total.
    pub(crate) count: Option<u64>,
    /// Exit after this many sessions.
    pub(crate) sessions: Option<u32>,
    /// Limit for the next session to start.
    pub(crate) start_timeout: Duration,
    /// Limit for the initiator's next ping within a session.
    pub(crate) timeout: Duration,
    /// Where the session header is (resolved again while waiting for a
    /// session: a guest driver may publish a section layout meanwhile).
    pub(crate) offset: ShmOffset,
    /// Print TAP (one test per session, plan at the end).
    pub(crate) tap: bool,
}

/// Byte offset of the session header in this session.
type Base = usize;

/// How one served session went.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Initiator's id.
    pub(crate) initiator: u32,
    /// Mode asked for.
    pub(crate) mode: Option<Mode>,
    /// Vector asked for.
    pub(crate) vector: u32,
    /// Rounds planned by the initiator.
    pub(crate) iterations: u32,
    /// Measured pongs sent.
    pub(crate) pongs: u64,
    /// Unexpected events (wrong vector, coalesced rings, repeated pings).
    pub(crate) anomalies: Vec<String>,
    /// Why the session failed, if it did.
    pub(crate) failure: Option<String>,
    /// The initiator asked us to exit.
    pub(crate) stop: bool,
}

impl Session {
    /// True when all planned rounds were answered without anomalies.
    pub(crate) fn passed(&self) -> bool {
        self.failure.is_none() && self.anomalies.is_empty()
    }

    /// One line describing the session.
    pub(crate) fn describe(&self) -> String {
        let mut s = format!(
            "session from peer {} (mode {}, vector {}): {}/{} round trips answered, {} anomalies, initiator's payload verified",
            self.initiator,
            self.mode.map_or("?", Mode::name),
            self.vector,
            self.pongs,
            self.iterations,
            self.anomalies.len()
        );
        if let Some(f) = &self.failure {
            s.push_str(": ");
            s.push_str(f);
        }
        s
    }
}

/// What `echo` did.
#[derive(Debug, Default)]
pub(crate) struct EchoSummary {
    /// Every session served.
    pub(crate) sessions: Vec<Session>,
    /// Why `echo` stopped before its end condition, if it did.
    pub(crate) failure: Option<String>,
}

impl EchoSummary {
    /// True when every session passed and the end was orderly.
    pub(crate) fn passed(&self) -> bool {
        self.failure.is_none() && self.sessions.iter().all(Session::passed)
    }
}

/// Runs the responder until `STOP`, `count` pongs or `sessions` sessions;
/// a session that does not start or stalls in time is a failure.
pub(crate) fn echo(
    ep: &mut dyn Endpoint,
    o: &EchoOptions,
    out: &mut dyn Write,
) -> io::Result<EchoSummary> {
    let mut sum = EchoSummary::default();
    let mut served = 0u32;
    let mut total = 0u64;
    if o.tap {
        writeln!(out, "TAP version 13")?;
    }
    let report = |out: &mut dyn Write, n: usize, s: &Session| -> io::Result<()> {
        if o.tap {
            for a in s.anomalies.iter().take(10) {
                writeln!(out, "# {a}")?;
            }
            writeln!(
                out,
                "{} {n} - {}",
                if s.passed() { "ok" } else { "not ok" },
                s.describe()
            )?;
        } else {
            writeln!(
                out,
                "echo: {} {}",
                if s.passed() { "ok" } else { "FAILED" },
                s.describe()
            )?;
            for a in s.anomalies.iter().take(10) {
                writeln!(out, "echo:   {a}")?;
            }
        }
        out.flush()
    };
    loop {
        let mut req = None;
        let mut base = 0;
        let found = poll_until(o.start_timeout, Duration::from_millis(1), || {
            base = o.offset.resolve(ep);
            // Before a guest publishes its layout the header may not fit.
            req = match Header::new(ep.shm(), base) {
                Ok(h) => h.pending_request(served)?,
                Err(_) => None,
            };
            Ok(req.is_some())
        })?;
        let Some(req) = req.filter(|_| found) else {
            sum.failure = Some(format!(
                "no session started within {:?} ({} served so far)",
                o.start_timeout,
                sum.sessions.len()
            ));
            break;
        };
        served = req.nonce;
        let s = serve(ep, o, base, &req, &mut total)?;
        let stop = s.stop;
        sum.sessions.push(s);
        if let Some(s) = sum.sessions.last() {
            report(out, sum.sessions.len(), s)?;
        }
        if stop
            || o.sessions.is_some_and(|n| sum.sessions.len() >= n as usize)
            || o.count.is_some_and(|n| total >= n)
        {
            break;
        }
    }
    if o.tap {
        if let Some(f) = &sum.failure {
            writeln!(out, "# {f}")?;
            writeln!(
                out,
                "not ok {} - echo ended in order",
                sum.sessions.len() + 1
            )?;
            writeln!(out, "1..{}", sum.sessions.len() + 1)?;
        } else {
            writeln!(out, "1..{}", sum.sessions.len())?;
        }
    } else {
        match &sum.failure {
            Some(f) => writeln!(out, "echo: FAILED: {f}")?,
            None => writeln!(
                out,
                "echo: {} session(s), {total} round trips answered",
                sum.sessions.len()
            )?,
        }
    }
    Ok(sum)
}

/// Serves one accepted session.
fn serve(
    ep: &mut dyn Endpoint,
    o: &EchoOptions,
    base: Base,
    req: &Request,
    total: &mut u64,
) -> io::Result<Session> {
    let mut s = Session {
        initiator: req.initiator,
        mode: Some(req.mode),
        vector: req.vector,
        iterations: req.iterations,
        ..Session::default()
    };
    if let Some(e) = Header::new(ep.shm(), base)?.payload_mismatch(Role::Initiator, req.nonce)? {
        s.failure = Some(format!("initiator's data is wrong: {e}"));
    }
    if req.mode != Mode::Spin && req.vector >= ep.vectors() {
        s.failure = Some(format!(
            "vector {} asked for, but {} has {}",
            req.vector,
            ep.describe(),
            ep.vectors()
        ));
        return Ok(s);
    }
    if req.mode == Mode::Kernel {
        return serve_kernel(ep, o, base, req, s, total);
    }
    if let Some(wm) = req.mode.wait_mode() {
        ep.set_wait_mode(wm)?;
        // Whatever arrived before the session is not part of it.
        let _ = ep.try_wait()?;
    }
    let h_accept = Header::new(ep.shm(), base)?;
    h_accept.accept(req.nonce, ep.id())?;
    let bit = 1u64 << req.vector.min(63);
    let mut last = 0u32;
    loop {
        // Wait for the next ping (or the end of the session).
        let mut ev = None;
        if req.mode == Mode::Spin {
            let h = Header::new(ep.shm(), base)?;
            let deadline = Instant::now() + o.timeout;
            let mut n = 0u32;
            while h.load(off::PING)? == last
                && h.state()? == State::Ready
                && h.load(off::NONCE)? == req.nonce
            {
                n = n.wrapping_add(1);
                if n % SPIN_CHECK == 0 && Instant::now() >= deadline {
                    s.failure = Some(format!(
                        "initiator silent for {:?} after {} pongs",
                        o.timeout, s.pongs
                    ));
                    return Ok(s);
                }
                std::hint::spin_loop();
            }
        } else {
            match ep.wait(u64::MAX, o.timeout) {
                Ok(e) => ev = Some(e),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    s.failure = Some(format!(
                        "initiator silent for {:?} after {} pongs",
                        o.timeout, s.pongs
                    ));
                    return Ok(s);
                }
                Err(e) => return Err(e),
            }
        }
        let h = Header::new(ep.shm(), base)?;
        let state = h.state()?;
        if h.load(off::NONCE)? != req.nonce || state != State::Ready {
            s.stop = state == State::Stop;
            if s.pongs != u64::from(req.iterations)
                && s.failure.is_none()
                && o.count.is_none_or(|n| *total < n)
            {
                s.failure = Some(format!(
                    "session ended after {} of {} round trips",
                    s.pongs, req.iterations
                ));
            }
            return Ok(s);
        }
        let ping = h.load(off::PING)?;
        let measured = ping & SYNC_BIT == 0;
        if let Some(e) = ev {
            if measured
                && e != (Events {
                    mask: bit,
                    count: 1,
                })
                && s.anomalies.len() < 1000
            {
                s.anomalies.push(format!(
                    "before ping {ping}: got vectors {:#x} ({} rings), expected one ring on vector {}",
                    e.mask, e.count, req.vector
                ));
            }
        }
        if ping == last {
            if measured && ev.is_some() && s.anomalies.len() < 1000 {
                s.anomalies
                    .push(format!("doorbell without a new ping (still {ping})"));
            }
            continue;
        }
        if measured
            && ping != last.wrapping_add(1)
            && last & SYNC_BIT == 0
            && s.anomalies.len() < 1000
        {
            s.anomalies
                .push(format!("ping jumped from {last} to {ping}"));
        }
        last = ping;
        h.store(off::PONG, ping)?;
        if measured {
            s.pongs += 1;
            *total += 1;
            h.store(off::PONGS, u32::try_from(s.pongs).unwrap_or(u32::MAX))?;
        }
        if req.mode != Mode::Spin {
            if let Err(e) = ep.ring(req.initiator, req.vector) {
                s.failure = Some(format!("cannot ring peer {} back: {e}", req.initiator));
                return Ok(s);
            }
        }
        if o.count.is_some_and(|n| *total >= n) {
            return Ok(s);
        }
    }
}

/// How often a [`Mode::Kernel`] responder looks at the session header.
const KERNEL_WATCH: Duration = Duration::from_millis(10);

/// Serves a [`Mode::Kernel`] session: ivshmem.ko answers the doorbells
/// from its interrupt handler. This process turns the in-kernel echo on
/// for the initiator, accepts, watches the header until the session ends
/// (the initiator silent for `o.timeout` is a failure), and turns the echo
/// off again whatever happened. The session's pongs are the doorbells the
/// kernel answered, up to the rounds planned (it answered the warm-up
/// too).
fn serve_kernel(
    ep: &mut dyn Endpoint,
    o: &EchoOptions,
    base: Base,
    req: &Request,
    mut s: Session,
    total: &mut u64,
) -> io::Result<Session> {
    let Some(dev) = ep.device() else {
        s.failure = Some(format!(
            "kernel mode needs ivshmem.ko's in-kernel echo, and {} is a host peer",
            ep.describe()
        ));
        return Ok(s);
    };
    let before = match dev.set_kernel_echo(Some(req.initiator)) {
        Ok(n) => n,
        Err(e) => {
            s.failure = Some(format!("cannot turn the in-kernel echo on: {e}"));
            return Ok(s);
        }
    };
    let watched = watch_kernel_session(ep, o, base, req, &mut s);
    let after = ep.device().map(|d| d.set_kernel_echo(None));
    watched?;
    let answered = match after {
        Some(Ok(n)) => n.saturating_sub(before),
        Some(Err(e)) => {
            s.failure = Some(format!("cannot turn the in-kernel echo off: {e}"));
            return Ok(s);
        }
        None => 0,
    };
    // Warm-up doorbells were answered too; the initiator checked every
    // round's single answer.
    s.pongs = answered.min(u64::from(req.iterations));
    *total += s.pongs;
    if answered < u64::from(req.iterations) && s.failure.is_none() {
        s.failure = Some(format!(
            "the in-kernel echo answered {answered} doorbells, fewer than the {} rounds",
            req.iterations
        ));
    }
    Ok(s)
}

/// Accepts a [`Mode::Kernel`] session and waits for its end.
fn watch_kernel_session(
    ep: &mut dyn Endpoint,
    o: &EchoOptions,
    base: Base,
    req: &Request,
    s: &mut Session,
) -> io::Result<()> {
    let h = Header::new(ep.shm(), base)?;
    h.accept(req.nonce, ep.id())?;
    let (mut last, mut since) = (h.load(off::PING)?, Instant::now());
    loop {
        thread::sleep(KERNEL_WATCH);
        let state = h.state()?;
        if h.load(off::NONCE)? != req.nonce || state != State::Ready {
            s.stop = state == State::Stop;
            return Ok(());
        }
        let ping = h.load(off::PING)?;
        if ping != last {
            (last, since) = (ping, Instant::now());
        } else if since.elapsed() >= o.timeout {
            s.failure = Some(format!("initiator silent for {:?}", o.timeout));
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivshmem::endpoint::tests::{wait_for_peer, TestServer};
    use crate::ivshmem::endpoint::PeerEndpoint;

    fn ping_opts(mode: Mode, count: u32) -> PingOptions {
        PingOptions {
            peer: None,
            vector: 1,
            count,
            mode,
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            stop: true,
            offset: ShmOffset::Abs(4096),
        }
    }

    fn echo_opts() -> EchoOptions {
        EchoOptions {
            count: None,
            sessions: None,
            start_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            offset: ShmOffset::Abs(4096),
            tap: true,
        }
    }

    /// A host↔host ping-pong through the Endpoint trait.
    fn host_pair(mode: Mode, count: u32) -> (PingReport, EchoSummary, String) {
        let server = TestServer::start(2);
        let mut a = PeerEndpoint::connect(&server.socket).unwrap();
        let mut b = PeerEndpoint::connect(&server.socket).unwrap();
        wait_for_peer(&mut a, b.id());
        wait_for_peer(&mut b, a.id());
        let responder = thread::spawn(move || {
            let mut out = Vec::new();
            let sum = echo(&mut b, &echo_opts(), &mut out).unwrap();
            (sum, String::from_utf8(out).unwrap())
        });
        let rep = pingpong(&mut a, &ping_opts(mode, count)).unwrap();
        let (sum, tap) = responder.join().unwrap();
        (rep, sum, tap)
    }

    #[test]
    fn host_to_host_doorbell_pingpong() {
        let (rep, sum, tap) = host_pair(Mode::Poll, 300);
        assert!(rep.passed(), "{rep:?}");
        assert_eq!(rep.samples.len(), 300);
        assert!(rep.sync_attempts >= 1);
        assert!(sum.passed(), "{sum:?}\n{tap}");
        assert_eq!(sum.sessions.len(), 1);
        assert_eq!(sum.sessions[0].pongs, 300);
        assert!(sum.sessions[0].stop);
        assert!(
            tap.starts_with("TAP version 13\nok 1 - session from peer"),
            "{tap}"
        );
        assert!(tap.ends_with("1..1\n"), "{tap}");
        let mut out = Vec::new();
        print_report(&mut out, &rep, &ping_opts(Mode::Poll, 300)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("300/300 round trips")
                && text.contains("lost: 0 spurious: 0")
                && text.ends_with("PASSED\n"),
            "{text}"
        );
    }

    #[test]
    fn host_to_host_spin_pingpong() {
        let (rep, sum, _) = host_pair(Mode::Spin, 1000);
        assert!(rep.passed(), "{rep:?}");
        assert_eq!(rep.samples.len(), 1000);
        assert_eq!(rep.sync_attempts, 0);
        assert!(sum.passed(), "{sum:?}");
    }

    #[test]
    fn pingpong_without_responder_fails_in_time() {
        let server = TestServer::start(2);
        let mut a = PeerEndpoint::connect(&server.socket).unwrap();
        let mut o = ping_opts(Mode::Read, 10);
        o.connect_timeout = Duration::from_millis(200);
        let t = Instant::now();
        let rep = pingpong(&mut a, &o).unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(!rep.passed());
        assert!(
            rep.failure
                .as_deref()
                .unwrap_or("")
                .contains("no responder"),
            "{rep:?}"
        );
    }

    #[test]
    fn echo_without_initiator_fails_in_time() {
        let server = TestServer::start(2);
        let mut b = PeerEndpoint::connect(&server.socket).unwrap();
        let mut o = echo_opts();
        o.start_timeout = Duration::from_millis(200);
        let mut out = Vec::new();
        let sum = echo(&mut b, &o, &mut out).unwrap();
        assert!(!sum.passed());
        let tap = String::from_utf8(out).unwrap();
        assert!(
            tap.contains("not ok 1 - echo ended in order") && tap.ends_with("1..1\n"),
            "{tap}"
        );
    }

    #[test]
    fn responder_dying_mid_session_is_a_lost_doorbell() {
        let server = TestServer::start(2);
        let mut a = PeerEndpoint::connect(&server.socket).unwrap();
        let mut b = PeerEndpoint::connect(&server.socket).unwrap();
        wait_for_peer(&mut a, b.id());
        let responder = thread::spawn(move || {
            let mut o = echo_opts();
            o.count = Some(5);
            echo(&mut b, &o, &mut Vec::new()).unwrap()
            // `b` disconnects here, after 5 pongs.
        });
        let mut o = ping_opts(Mode::Read, 50);
        o.timeout = Duration::from_millis(300);
        let rep = pingpong(&mut a, &o).unwrap();
        let sum = responder.join().unwrap();
        assert!(sum.passed(), "{sum:?}");
        assert_eq!(rep.samples.len(), 5);
        let f = rep.failure.unwrap_or_default();
        // Either the doorbell went unanswered, or the server already said
        // that the peer left.
        assert!(
            f.starts_with("round 6: lost doorbell") || f.starts_with("round 6: cannot ring peer"),
            "{f}"
        );
    }

    #[test]
    fn spurious_doorbell_is_detected() {
        let server = TestServer::start(2);
        let mut a = PeerEndpoint::connect(&server.socket).unwrap();
        let mut b = PeerEndpoint::connect(&server.socket).unwrap();
        let mut c = PeerEndpoint::connect(&server.socket).unwrap();
        wait_for_peer(&mut a, b.id());
        wait_for_peer(&mut c, a.id());
        let a_id = a.id();
        let responder = thread::spawn(move || {
            let mut o = echo_opts();
            o.timeout = Duration::from_secs(2);
            echo(&mut b, &o, &mut Vec::new()).unwrap()
        });
        // A third peer rings the initiator's vector 1 while it runs: some
        // round sees two rings, or a wake-up before its pong, or the check
        // after the last round finds it pending.
        let noise = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            c.ring(a_id, 1).unwrap();
        });
        let mut o = ping_opts(Mode::Read, 100_000);
        o.timeout = Duration::from_secs(2);
        let rep = pingpong(&mut a, &o).unwrap();
        noise.join().unwrap();
        let _ = responder.join().unwrap();
        assert!(
            !rep.passed(),
            "the extra doorbell went unnoticed: {} rounds",
            rep.samples.len()
        );
    }
}
