// SPDX-License-Identifier: GPL-2.0

//! BAR0 register blocks of the two ivshmem revisions.
//!
//! Both revisions put their registers in BAR0 and only allow aligned 32-bit
//! accesses. Registers are added here as the driver starts using them.

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
    }
}
