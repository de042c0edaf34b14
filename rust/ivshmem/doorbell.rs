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

#[cfg(test)]
mod tests {
    use super::*;

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
