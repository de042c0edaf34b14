// SPDX-License-Identifier: GPL-2.0

//! The doorbell register value, shared by both revisions.
//!
//! Writing `target_id << 16 | vector` to the Doorbell register raises
//! `vector` on peer `target_id`. The device silently drops doorbells to absent
//! peers or disabled vectors, so the driver validates both before writing:
//! a user who asks for a peer or vector that cannot exist gets an error, not
//! a doorbell that vanishes.

use core::fmt;

/// A validated (peer, vector) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Doorbell {
    peer: u16,
    vector: u16,
}

/// Why a doorbell request is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoorbellError {
    /// `peer` is not below the device's maximum number of peers.
    NoSuchPeer,
    /// `vector` is not below the number of vectors the peers have.
    NoSuchVector,
}

impl fmt::Display for DoorbellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DoorbellError::NoSuchPeer => f.write_str("peer id out of range"),
            DoorbellError::NoSuchVector => f.write_str("vector out of range"),
        }
    }
}

impl Doorbell {
    /// Validates `peer < max_peers` and `vector < vectors`.
    ///
    /// `max_peers` and `vectors` are what the device reports; both fit in 17
    /// bits at most (65536 peers), so any `u32` is accepted and checked.
    pub fn new(
        peer: u32,
        vector: u32,
        max_peers: u32,
        vectors: u32,
    ) -> Result<Self, DoorbellError> {
        if peer >= max_peers.min(1 << 16) {
            return Err(DoorbellError::NoSuchPeer);
        }
        if vector >= vectors.min(1 << 16) {
            return Err(DoorbellError::NoSuchVector);
        }
        Ok(Doorbell {
            // CAST: both checked below 1 << 16 above.
            peer: peer as u16,
            vector: vector as u16,
        })
    }

    /// Target peer.
    pub const fn peer(self) -> u16 {
        self.peer
    }

    /// Vector raised on the target.
    pub const fn vector(self) -> u16 {
        self.vector
    }

    /// The value to write to the Doorbell register.
    pub const fn register_value(self) -> u32 {
        (self.peer as u32) << 16 | self.vector as u32
    }

    /// Decodes a Doorbell register value (used by the simulated device).
    pub const fn from_register_value(value: u32) -> Self {
        Doorbell {
            peer: (value >> 16) as u16,
            vector: (value & 0xffff) as u16,
        }
    }
}

/// What was written to the in-kernel echo's sysfs file (`ivshmem/echo`):
/// `off` (or `-1`) turns it off, a decimal peer id turns it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoRequest {
    /// Stop answering.
    Off,
    /// Answer every doorbell on vectors 1 and up by ringing this peer on
    /// the same vector.
    Peer(u32),
}

/// Why an echo request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EchoError {
    /// Neither `off`, `-1` nor a decimal number (surrounding white space
    /// and one trailing newline are fine).
    Syntax,
    /// The peer does not exist or is the device itself (which would ring
    /// itself from its own interrupt handler forever).
    BadPeer,
    /// The device has fewer than two vectors: vector 0 carries state
    /// changes, which are never echoed, so nothing could be.
    NoVectors,
}

impl EchoRequest {
    /// Parses what a user wrote.
    pub fn parse(input: &[u8]) -> Result<Self, EchoError> {
        let text = core::str::from_utf8(input)
            .map_err(|_| EchoError::Syntax)?
            .trim();
        match text {
            "off" | "-1" => Ok(EchoRequest::Off),
            _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
                .parse()
                .map(EchoRequest::Peer)
                .map_err(|_| EchoError::Syntax),
            _ => Err(EchoError::Syntax),
        }
    }

    /// Checks a request against the device: `own_id`, `max_peers` and
    /// `vectors` as it reports them.
    pub fn validate(self, own_id: u32, max_peers: u32, vectors: u32) -> Result<Self, EchoError> {
        match self {
            EchoRequest::Off => Ok(self),
            _ if vectors < 2 => Err(EchoError::NoVectors),
            EchoRequest::Peer(p)
                if p == own_id || Doorbell::new(p, 1, max_peers, vectors).is_err() =>
            {
                Err(EchoError::BadPeer)
            }
            EchoRequest::Peer(_) => Ok(self),
        }
    }

    /// The doorbell that answers one on `vector`, if it is echoed: vector 0
    /// (state changes) and vectors the device does not have are not.
    pub fn answer(self, vector: u32, max_peers: u32, vectors: u32) -> Option<Doorbell> {
        match self {
            EchoRequest::Peer(p) if vector != 0 => {
                Doorbell::new(p, vector, max_peers, vectors).ok()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_parse_and_validate() {
        assert_eq!(EchoRequest::parse(b"3\n"), Ok(EchoRequest::Peer(3)));
        assert_eq!(EchoRequest::parse(b"  12 "), Ok(EchoRequest::Peer(12)));
        assert_eq!(EchoRequest::parse(b"off\n"), Ok(EchoRequest::Off));
        assert_eq!(EchoRequest::parse(b"-1"), Ok(EchoRequest::Off));
        for bad in [
            &b""[..],
            b"\n",
            b"+3",
            b"-2",
            b"3 4",
            b"0x3",
            b"99999999999",
            b"on",
            b"\xff",
        ] {
            assert_eq!(EchoRequest::parse(bad), Err(EchoError::Syntax), "{bad:?}");
        }
        let v = |r: EchoRequest| r.validate(1, 4, 2);
        assert_eq!(v(EchoRequest::Peer(0)), Ok(EchoRequest::Peer(0)));
        assert_eq!(v(EchoRequest::Peer(1)), Err(EchoError::BadPeer));
        assert_eq!(v(EchoRequest::Peer(4)), Err(EchoError::BadPeer));
        assert_eq!(v(EchoRequest::Off), Ok(EchoRequest::Off));
        assert_eq!(
            EchoRequest::Peer(0).validate(1, 4, 1),
            Err(EchoError::NoVectors)
        );
        assert_eq!(EchoRequest::Off.validate(1, 4, 0), Ok(EchoRequest::Off));
    }

    #[test]
    fn echo_answers_on_the_same_vector_never_on_0() {
        let e = EchoRequest::Peer(2);
        assert_eq!(e.answer(1, 4, 3), Doorbell::new(2, 1, 4, 3).ok());
        assert_eq!(e.answer(2, 4, 3), Doorbell::new(2, 2, 4, 3).ok());
        assert_eq!(e.answer(0, 4, 3), None);
        assert_eq!(e.answer(3, 4, 3), None);
        assert_eq!(EchoRequest::Off.answer(1, 4, 3), None);
    }

    #[test]
    fn encodes_peer_high_vector_low() {
        let d = Doorbell::new(3, 1, 4, 2).unwrap();
        assert_eq!(d.register_value(), 0x0003_0001);
        assert_eq!(Doorbell::from_register_value(0x0003_0001), d);
    }

    #[test]
    fn bounds_are_exclusive() {
        assert_eq!(Doorbell::new(4, 0, 4, 2), Err(DoorbellError::NoSuchPeer));
        assert_eq!(Doorbell::new(0, 2, 4, 2), Err(DoorbellError::NoSuchVector));
        assert_eq!(Doorbell::new(0, 0, 4, 0), Err(DoorbellError::NoSuchVector));
        assert!(Doorbell::new(3, 1, 4, 2).is_ok());
    }

    #[test]
    fn huge_limits_are_clamped_to_16_bits() {
        assert_eq!(
            Doorbell::new(0x1_0000, 0, u32::MAX, 1),
            Err(DoorbellError::NoSuchPeer)
        );
        let d = Doorbell::new(0xffff, 0xffff, u32::MAX, u32::MAX).unwrap();
        assert_eq!(d.register_value(), 0xffff_ffff);
    }

    #[test]
    fn roundtrip_all_small_pairs() {
        for peer in 0..16 {
            for vector in 0..16 {
                let d = Doorbell::new(peer, vector, 16, 16).unwrap();
                assert_eq!(Doorbell::from_register_value(d.register_value()), d);
                assert_eq!((u32::from(d.peer()), u32::from(d.vector())), (peer, vector));
            }
        }
    }
}
