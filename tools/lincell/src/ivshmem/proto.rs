// SPDX-License-Identifier: GPL-2.0

//! The ping-pong session header that `pingpong` (initiator) and `echo`
//! (responder) share in the ivshmem memory.
//!
//! 192 bytes at a fixed offset (`--shm-offset`, default: the start of the
//! R/W section, see [`super::endpoint::ShmOffset`]), 32-bit native-endian
//! fields (both sides run on the same machine):
//!
//! ```text
//! 0x00 magic "LCIV"   0x04 version (1)   0x08 nonce (session id, != 0)
//! 0x0c state          0x10 initiator id  0x14 responder id
//! 0x18 mode           0x1c vector        0x20 ping seq (initiator writes)
//! 0x24 pong seq (responder writes)       0x28 iterations
//! 0x2c ack (responder copies the nonce)  0x30 pongs sent  0x34 anomalies
//! 0x40..0x80 initiator payload           0x80..0xc0 responder payload
//! ```
//!
//! Session: the initiator clears the header, fills it in, writes `nonce`,
//! `state = REQUEST` and `magic` last. The responder checks the initiator's
//! payload, writes its id and payload, then `ack = nonce`, `state = READY`.
//! Every round the initiator writes `ping = i` then rings (or, in spin mode,
//! only writes); the responder copies it to `pong` and rings back. The
//! initiator ends with `state = DONE` (or `STOP`: the responder exits) and
//! one more doorbell so that a blocked responder wakes up and sees it.
//! Warm-up ("sync") rounds use sequence numbers with [`SYNC_BIT`] set and
//! may be repeated: a doorbell to a peer that the guest's QEMU has not
//! learned about yet is dropped, so the first one may be lost.

use std::io;
use std::sync::atomic::{fence, Ordering};

use lincell_shared::shmem::SharedMemory as _;

use super::endpoint::{Shm, WaitMode};

/// "LCIV" in memory order on little-endian machines.
pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"LCIV");
/// Header layout version.
pub(crate) const VERSION: u32 = 1;
/// Bytes the header occupies.
pub(crate) const HEADER_SIZE: usize = 0xc0;
/// Size of each payload.
pub(crate) const PAYLOAD_SIZE: usize = 0x40;
/// Marks warm-up sequence numbers.
pub(crate) const SYNC_BIT: u32 = 1 << 31;

/// Field offsets.
pub(crate) mod off {
    /// `MAGIC` once the header is valid.
    pub(crate) const MAGIC: usize = 0x00;
    /// Layout version.
    pub(crate) const VERSION: usize = 0x04;
    /// Session id chosen by the initiator.
    pub(crate) const NONCE: usize = 0x08;
    /// Session state (`State`).
    pub(crate) const STATE: usize = 0x0c;
    /// Initiator's peer id.
    pub(crate) const INITIATOR: usize = 0x10;
    /// Responder's peer id.
    pub(crate) const RESPONDER: usize = 0x14;
    /// `Mode`.
    pub(crate) const MODE: usize = 0x18;
    /// Doorbell vector used both ways.
    pub(crate) const VECTOR: usize = 0x1c;
    /// Last sequence number sent by the initiator.
    pub(crate) const PING: usize = 0x20;
    /// Last sequence number echoed by the responder.
    pub(crate) const PONG: usize = 0x24;
    /// Measured rounds planned.
    pub(crate) const ITERATIONS: usize = 0x28;
    /// The nonce, once the responder accepted the session.
    pub(crate) const ACK: usize = 0x2c;
    /// Pongs sent by the responder in this session.
    pub(crate) const PONGS: usize = 0x30;
    /// Unexpected events the responder saw in this session.
    pub(crate) const ANOMALIES: usize = 0x34;
    /// Initiator's payload.
    pub(crate) const INITIATOR_PAYLOAD: usize = 0x40;
    /// Responder's payload.
    pub(crate) const RESPONDER_PAYLOAD: usize = 0x80;
}

/// Session state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing going on.
    Idle = 0,
    /// The initiator asks for a responder.
    Request = 1,
    /// The responder accepted.
    Ready = 2,
    /// The initiator finished; the responder waits for the next session.
    Done = 3,
    /// The initiator finished and asks the responder to exit.
    Stop = 4,
}

impl State {
    /// Decodes a state word.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => State::Idle,
            1 => State::Request,
            2 => State::Ready,
            3 => State::Done,
            4 => State::Stop,
            _ => return None,
        })
    }
}

/// How both sides wait during a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Doorbells; a device waits in a blocking read(2).
    Read = 0,
    /// Doorbells; a device waits in poll(2), then reads.
    Poll = 1,
    /// No doorbells: both sides spin on the sequence counters in shared
    /// memory (the polling baseline).
    Spin = 2,
    /// Doorbells answered by the responder's kernel: ivshmem.ko's in-kernel
    /// echo rings back from its interrupt handler (the floor of a doorbell
    /// round trip); the initiator waits in a blocking read(2). The
    /// responder is `echo` on a device, as root
    Kernel = 3,
}

impl Mode {
    /// Decodes a mode word.
    pub(crate) fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Mode::Read,
            1 => Mode::Poll,
            2 => Mode::Spin,
            3 => Mode::Kernel,
            _ => return None,
        })
    }

    /// How a device waits in this mode (`None`: it spins).
    pub(crate) fn wait_mode(self) -> Option<WaitMode> {
        match self {
            Mode::Read | Mode::Kernel => Some(WaitMode::Read),
            Mode::Poll => Some(WaitMode::Poll),
            Mode::Spin => None,
        }
    }

    /// Lower-case name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Poll => "poll",
            Mode::Spin => "spin",
            Mode::Kernel => "kernel",
        }
    }
}

/// Which side wrote a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The pingpong side.
    Initiator,
    /// The echo side.
    Responder,
}

/// The payload `role` writes for session `nonce`: a readable prefix, then
/// bytes that depend on the nonce and their position, so that a stale,
/// torn or shifted copy is detected.
pub(crate) fn payload(role: Role, nonce: u32) -> [u8; PAYLOAD_SIZE] {
    let mut p = [0u8; PAYLOAD_SIZE];
    let tag = match role {
        Role::Initiator => "lincell ping",
        Role::Responder => "lincell pong",
    };
    let head = format!("{tag} {nonce:08x}:");
    let n = head.len().min(PAYLOAD_SIZE);
    p[..n].copy_from_slice(&head.as_bytes()[..n]);
    let seed = nonce.to_le_bytes();
    for (i, b) in p.iter_mut().enumerate().skip(n) {
        // CAST: i < 64.
        *b = seed[i % 4]
            ^ (i as u8).wrapping_mul(37)
            ^ if role == Role::Initiator { 0x5a } else { 0xa5 };
    }
    p
}

/// The session header at a fixed offset of some shared memory.
pub(crate) struct Header<'a> {
    shm: &'a dyn Shm,
    base: usize,
}

impl<'a> Header<'a> {
    /// The header at byte `base` of `shm`; it must be 4-byte aligned and fit.
    pub(crate) fn new(shm: &'a dyn Shm, base: usize) -> io::Result<Self> {
        if base % 4 != 0
            || base
                .checked_add(HEADER_SIZE)
                .is_none_or(|end| end > shm.size())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "session header at {base:#x} ({HEADER_SIZE} bytes) does not fit in {:#x} bytes of shared memory or is not 4-byte aligned",
                    shm.size()
                ),
            ));
        }
        Ok(Header { shm, base })
    }

    /// Loads a field; later loads and stores are ordered after it.
    pub(crate) fn load(&self, field: usize) -> io::Result<u32> {
        let (m, o) = self.shm.region_at(self.base + field, 4, false)?;
        let v = m.load(o, Ordering::Relaxed)?;
        fence(Ordering::Acquire);
        Ok(v)
    }

    /// Stores a field after every earlier load and store.
    pub(crate) fn store(&self, field: usize, value: u32) -> io::Result<()> {
        let (m, o) = self.shm.region_at(self.base + field, 4, true)?;
        fence(Ordering::Release);
        Ok(m.store(o, value, Ordering::Relaxed)?)
    }

    /// The session state (unknown values read as `Idle`).
    pub(crate) fn state(&self) -> io::Result<State> {
        Ok(State::from_u32(self.load(off::STATE)?).unwrap_or(State::Idle))
    }

    /// Writes `role`'s payload for `nonce`.
    pub(crate) fn write_payload(&self, role: Role, nonce: u32) -> io::Result<()> {
        let at = match role {
            Role::Initiator => off::INITIATOR_PAYLOAD,
            Role::Responder => off::RESPONDER_PAYLOAD,
        };
        self.shm.store_bytes(self.base + at, &payload(role, nonce))
    }

    /// Compares `role`'s payload with the one for `nonce`: `None` if they
    /// are equal, else where they differ.
    pub(crate) fn payload_mismatch(&self, role: Role, nonce: u32) -> io::Result<Option<String>> {
        let at = match role {
            Role::Initiator => off::INITIATOR_PAYLOAD,
            Role::Responder => off::RESPONDER_PAYLOAD,
        };
        let mut got = [0u8; PAYLOAD_SIZE];
        self.shm.load_bytes(self.base + at, &mut got)?;
        let want = payload(role, nonce);
        Ok(got
            .iter()
            .zip(want.iter())
            .position(|(a, b)| a != b)
            .map(|i| {
                format!(
                    "{role:?} payload differs at byte {i}: got {:02x?}, expected {:02x?}",
                    &got[i..(i + 8).min(PAYLOAD_SIZE)],
                    &want[i..(i + 8).min(PAYLOAD_SIZE)]
                )
            }))
    }

    /// Initiator: publishes a session request.
    pub(crate) fn request(&self, r: &Request) -> io::Result<()> {
        self.store(off::MAGIC, 0)?;
        self.store(off::STATE, State::Idle as u32)?;
        for f in [
            off::ACK,
            off::PING,
            off::PONG,
            off::PONGS,
            off::ANOMALIES,
            off::RESPONDER,
        ] {
            self.store(f, 0)?;
        }
        self.store(off::VERSION, VERSION)?;
        self.store(off::INITIATOR, r.initiator)?;
        self.store(off::MODE, r.mode as u32)?;
        self.store(off::VECTOR, r.vector)?;
        self.store(off::ITERATIONS, r.iterations)?;
        self.write_payload(Role::Initiator, r.nonce)?;
        self.store(off::NONCE, r.nonce)?;
        self.store(off::STATE, State::Request as u32)?;
        self.store(off::MAGIC, MAGIC)
    }

    /// Responder: the pending request, if there is a valid one whose nonce
    /// is not `served`.
    pub(crate) fn pending_request(&self, served: u32) -> io::Result<Option<Request>> {
        if self.load(off::MAGIC)? != MAGIC
            || self.load(off::VERSION)? != VERSION
            || self.state()? != State::Request
        {
            return Ok(None);
        }
        let nonce = self.load(off::NONCE)?;
        if nonce == 0 || nonce == served {
            return Ok(None);
        }
        let Some(mode) = Mode::from_u32(self.load(off::MODE)?) else {
            return Ok(None);
        };
        Ok(Some(Request {
            nonce,
            initiator: self.load(off::INITIATOR)?,
            mode,
            vector: self.load(off::VECTOR)?,
            iterations: self.load(off::ITERATIONS)?,
        }))
    }

    /// Responder: accepts the session `nonce` as peer `responder`.
    pub(crate) fn accept(&self, nonce: u32, responder: u32) -> io::Result<()> {
        self.store(off::RESPONDER, responder)?;
        self.write_payload(Role::Responder, nonce)?;
        self.store(off::ACK, nonce)?;
        self.store(off::STATE, State::Ready as u32)
    }

    /// Initiator: whether the responder accepted session `nonce`.
    pub(crate) fn accepted(&self, nonce: u32) -> io::Result<bool> {
        Ok(self.load(off::ACK)? == nonce && self.state()? == State::Ready)
    }
}

/// What an initiator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// Session id (non-zero).
    pub(crate) nonce: u32,
    /// Initiator's peer id.
    pub(crate) initiator: u32,
    /// How both sides wait.
    pub(crate) mode: Mode,
    /// Doorbell vector.
    pub(crate) vector: u32,
    /// Measured rounds.
    pub(crate) iterations: u32,
}

/// A fresh non-zero session id (time and process id mixed).
pub(crate) fn new_nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // CAST: truncation is the point (mixing bits).
    let x = (t as u32) ^ ((t >> 32) as u32).rotate_left(13) ^ std::process::id().rotate_left(7);
    if x == 0 {
        1
    } else {
        x
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lincell_shared::host::TestMemory;
    use lincell_shared::shmem::RawRegion;

    impl Shm for TestMemory {
        fn size(&self) -> usize {
            self.len()
        }
        fn region_at(&self, o: usize, _: usize, _: bool) -> io::Result<(&RawRegion, usize)> {
            Ok((self.region(), o))
        }
        fn load_bytes(&self, o: usize, buf: &mut [u8]) -> io::Result<()> {
            self.region().ptr(o, buf.len())?;
            buf.copy_from_slice(&self.slice(o, buf.len()));
            Ok(())
        }
        fn store_bytes(&self, o: usize, d: &[u8]) -> io::Result<()> {
            self.region().ptr(o, d.len())?;
            self.put(o, d);
            Ok(())
        }
    }

    fn mem(n: usize) -> TestMemory {
        TestMemory::new(n)
    }

    #[test]
    fn header_must_fit_and_be_aligned() {
        let m = mem(4096);
        assert!(Header::new(&m, 0).is_ok());
        assert!(Header::new(&m, 4096 - HEADER_SIZE).is_ok());
        assert!(Header::new(&m, 4096 - HEADER_SIZE + 4).is_err());
        assert!(Header::new(&m, 2).is_err());
        assert!(Header::new(&m, usize::MAX - 3).is_err());
    }

    #[test]
    fn magic_spells_lciv() {
        assert_eq!(MAGIC.to_le_bytes(), *b"LCIV");
    }

    #[test]
    fn request_accept_round_trip() {
        let m = mem(8192);
        let h = Header::new(&m, 4096).unwrap();
        assert_eq!(
            h.pending_request(0).unwrap(),
            None,
            "zeroed memory holds no request"
        );
        let r = Request {
            nonce: 0xabcd,
            initiator: 3,
            mode: Mode::Poll,
            vector: 1,
            iterations: 2000,
        };
        h.request(&r).unwrap();
        assert_eq!(m.slice(4096, 4), *b"LCIV");
        assert_eq!(h.pending_request(0).unwrap(), Some(r));
        assert_eq!(h.pending_request(0xabcd).unwrap(), None, "already served");
        assert_eq!(h.payload_mismatch(Role::Initiator, 0xabcd).unwrap(), None);
        assert!(h
            .payload_mismatch(Role::Initiator, 0xabce)
            .unwrap()
            .is_some());
        assert!(!h.accepted(0xabcd).unwrap());
        h.accept(0xabcd, 7).unwrap();
        assert!(h.accepted(0xabcd).unwrap());
        assert!(!h.accepted(0xabce).unwrap());
        assert_eq!(h.load(off::RESPONDER).unwrap(), 7);
        assert_eq!(h.payload_mismatch(Role::Responder, 0xabcd).unwrap(), None);
        assert_eq!(
            h.pending_request(0).unwrap(),
            None,
            "accepted, no longer pending"
        );
        // A new request clears the previous session's fields.
        h.store(off::PONG, 99).unwrap();
        h.request(&Request { nonce: 5, ..r }).unwrap();
        assert_eq!(h.load(off::PONG).unwrap(), 0);
        assert_eq!(h.load(off::ACK).unwrap(), 0);
    }

    #[test]
    fn corrupt_payload_is_located() {
        let m = mem(4096);
        let h = Header::new(&m, 0).unwrap();
        h.write_payload(Role::Responder, 42).unwrap();
        let byte = m.slice(off::RESPONDER_PAYLOAD + 50, 1)[0];
        m.put(off::RESPONDER_PAYLOAD + 50, &[byte ^ 1]);
        let e = h.payload_mismatch(Role::Responder, 42).unwrap().unwrap();
        assert!(e.contains("byte 50"), "{e}");
    }

    #[test]
    fn payloads_differ_by_role_and_nonce() {
        assert_ne!(payload(Role::Initiator, 1), payload(Role::Responder, 1));
        assert_ne!(payload(Role::Initiator, 1), payload(Role::Initiator, 2));
        assert!(payload(Role::Initiator, 0x1234).starts_with(b"lincell ping 00001234:"));
        assert_ne!(new_nonce(), 0);
    }

    #[test]
    fn states_and_modes_decode() {
        for s in [
            State::Idle,
            State::Request,
            State::Ready,
            State::Done,
            State::Stop,
        ] {
            assert_eq!(State::from_u32(s as u32), Some(s));
        }
        assert_eq!(State::from_u32(5), None);
        for m in [Mode::Read, Mode::Poll, Mode::Spin] {
            assert_eq!(Mode::from_u32(m as u32), Some(m));
        }
        assert_eq!(Mode::Spin.wait_mode(), None);
        assert_eq!(Mode::Read.wait_mode(), Some(WaitMode::Read));
    }
}
