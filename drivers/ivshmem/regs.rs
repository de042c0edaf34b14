// SPDX-License-Identifier: GPL-2.0

//! BAR0 register blocks of the two ivshmem revisions.
//!
//! Both revisions put their registers in BAR0 and only allow aligned 32-bit
//! accesses. `hal.rs` hides which block a device has.

use kernel::io::register;

/// Bytes of BAR0 the driver touches (through the v2 State register).
pub(crate) const BAR0_SIZE: usize = 0x14;

/// QEMU ivshmem registers.
pub(crate) mod v1 {
    use super::register;

    register! {
        /// Own peer id assigned by the ivshmem server (0 for ivshmem-plain).
        pub(crate) IV_POSITION(u32) @ 0x08 {
            /// Peer id.
            31:0 id;
        }

        /// Doorbell: raise `vector` on peer `peer`.
        pub(crate) DOORBELL(u32) @ 0x0c {
            /// `peer << 16 | vector`, see `shared::doorbell`.
            31:0 value;
        }
    }
}

/// ivshmem 2.0 registers.
pub(crate) mod v2 {
    use super::register;

    register! {
        /// Own peer id, unique among the connected peers.
        pub(crate) ID(u32) @ 0x00 {
            /// Peer id.
            31:0 id;
        }

        /// Maximum number of peers, including this one (2..=65536).
        pub(crate) MAX_PEERS(u32) @ 0x04 {
            /// Number of peers.
            31:0 count;
        }

        /// Interrupt control.
        pub(crate) INT_CONTROL(u32) @ 0x08 {
            /// Interrupt generation enabled (cleared on delivery in one-shot mode).
            0:0 enable => bool;
        }

        /// Doorbell: raise `vector` on peer `peer`.
        pub(crate) DOORBELL(u32) @ 0x0c {
            /// `peer << 16 | vector`, see `shared::doorbell`.
            31:0 value;
        }

        /// Own state; a change raises vector 0 on every other peer.
        pub(crate) STATE(u32) @ 0x10 {
            /// State value, meaning defined by the protocol.
            31:0 value;
        }
    }
}
