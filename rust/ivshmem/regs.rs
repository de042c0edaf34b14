// SPDX-License-Identifier: GPL-2.0

//! The two ivshmem register models behind one interface.
//!
//! The driver talks to a device only through [`RegisterModel`]: peer id,
//! number of peers, doorbells, interrupt enable and the state register. The
//! models are written against [`RegisterBlock`], 32-bit accesses at byte
//! offsets of BAR0, so the same code drives a real BAR in the kernel and the
//! simulated device of [`super::sim`] in KUnit and host tests.

use super::doorbell::Doorbell;
use super::ident::Revision;

/// QEMU ivshmem (v1) BAR0 offsets.
pub mod v1 {
    /// Interrupt mask (INTx only).
    pub const INTR_MASK: usize = 0x00;
    /// Interrupt status (INTx only; reading clears).
    pub const INTR_STATUS: usize = 0x04;
    /// Own peer id, from the ivshmem server (0 without one).
    pub const IV_POSITION: usize = 0x08;
    /// Doorbell (write only).
    pub const DOORBELL: usize = 0x0c;
}

/// ivshmem 2.0 (v2) BAR0 offsets.
pub mod v2 {
    /// Own peer id.
    pub const ID: usize = 0x00;
    /// Number of peers, 2..=65536.
    pub const MAX_PEERS: usize = 0x04;
    /// Bit 0: interrupts enabled.
    pub const INT_CONTROL: usize = 0x08;
    /// Doorbell (write only).
    pub const DOORBELL: usize = 0x0c;
    /// Own state; a change raises vector 0 on all other peers.
    pub const STATE: usize = 0x10;
}

/// Bytes of BAR0 either model touches.
pub const BAR0_SIZE: usize = 0x14;

/// Aligned 32-bit register accesses at byte offsets below [`BAR0_SIZE`].
pub trait RegisterBlock {
    /// Reads the register at `offset`.
    fn read32(&self, offset: usize) -> u32;
    /// Writes the register at `offset`.
    fn write32(&self, offset: usize, value: u32);
}

/// What the driver needs from a register model.
pub trait RegisterModel: Sync {
    /// The revision this model drives.
    fn revision(&self) -> Revision;
    /// The local peer id.
    fn own_id(&self, regs: &dyn RegisterBlock) -> u32;
    /// Number of peers, if the device says (v1 does not).
    fn max_peers(&self, regs: &dyn RegisterBlock) -> Option<u32>;
    /// Rings a validated doorbell.
    fn ring(&self, regs: &dyn RegisterBlock, doorbell: Doorbell);
    /// Enables interrupt generation (no-op where there is no switch).
    fn enable_interrupts(&self, regs: &dyn RegisterBlock);
    /// Publishes the local state in the device; `false` when the device has
    /// no state register (v1: the driver keeps the state table itself).
    fn set_state(&self, regs: &dyn RegisterBlock, state: u32) -> bool;
}

/// QEMU ivshmem: IVPosition and Doorbell.
struct V1;

impl RegisterModel for V1 {
    fn revision(&self) -> Revision {
        Revision::V1
    }

    fn own_id(&self, regs: &dyn RegisterBlock) -> u32 {
        regs.read32(v1::IV_POSITION)
    }

    fn max_peers(&self, _regs: &dyn RegisterBlock) -> Option<u32> {
        None
    }

    fn ring(&self, regs: &dyn RegisterBlock, doorbell: Doorbell) {
        regs.write32(v1::DOORBELL, doorbell.register_value());
    }

    fn enable_interrupts(&self, _regs: &dyn RegisterBlock) {
        // MSI-X delivery needs no switch; IntrMask only gates INTx.
    }

    fn set_state(&self, _regs: &dyn RegisterBlock, _state: u32) -> bool {
        false
    }
}

/// ivshmem 2.0: the full register block.
struct V2;

impl RegisterModel for V2 {
    fn revision(&self) -> Revision {
        Revision::V2
    }

    fn own_id(&self, regs: &dyn RegisterBlock) -> u32 {
        regs.read32(v2::ID)
    }

    fn max_peers(&self, regs: &dyn RegisterBlock) -> Option<u32> {
        Some(regs.read32(v2::MAX_PEERS))
    }

    fn ring(&self, regs: &dyn RegisterBlock, doorbell: Doorbell) {
        regs.write32(v2::DOORBELL, doorbell.register_value());
    }

    fn enable_interrupts(&self, regs: &dyn RegisterBlock) {
        regs.write32(v2::INT_CONTROL, 1);
    }

    fn set_state(&self, regs: &dyn RegisterBlock, state: u32) -> bool {
        regs.write32(v2::STATE, state);
        true
    }
}

/// The register model of `revision`.
pub fn model(revision: Revision) -> &'static dyn RegisterModel {
    match revision {
        Revision::V1 => &V1,
        Revision::V2 => &V2,
    }
}
