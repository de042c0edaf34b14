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
    /// Prepares legacy INTx delivery (used when there is no MSI-X).
    fn enable_intx(&self, regs: &dyn RegisterBlock);
    /// Acknowledges an INTx interrupt; `false` when it was not ours (the
    /// line may be shared). INTx has one vector: events count as vector 0.
    fn ack_intx(&self, regs: &dyn RegisterBlock) -> bool;
    /// Whether INTx may share its line: only with a status register that
    /// tells our interrupts from others'.
    fn intx_shareable(&self) -> bool;
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

    fn enable_intx(&self, regs: &dyn RegisterBlock) {
        regs.write32(v1::INTR_MASK, 1);
    }

    fn ack_intx(&self, regs: &dyn RegisterBlock) -> bool {
        // Reading IntrStatus clears it.
        regs.read32(v1::INTR_STATUS) != 0
    }

    fn intx_shareable(&self) -> bool {
        true
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

    fn enable_intx(&self, regs: &dyn RegisterBlock) {
        self.enable_interrupts(regs);
    }

    fn ack_intx(&self, _regs: &dyn RegisterBlock) -> bool {
        // The specification never sets the INTx status bit: an exclusive
        // line is ours, and the event state lives in shared memory.
        true
    }

    fn intx_shareable(&self) -> bool {
        false
    }
}

/// The register model of `revision`.
pub fn model(revision: Revision) -> &'static dyn RegisterModel {
    match revision {
        Revision::V1 => &V1,
        Revision::V2 => &V2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    /// A v1 register block: IntrMask, IntrStatus (read clears), IVPosition,
    /// Doorbell (records the last write).
    struct V1Regs {
        mask: Cell<u32>,
        status: Cell<u32>,
        doorbell: Cell<u32>,
    }

    impl RegisterBlock for V1Regs {
        fn read32(&self, offset: usize) -> u32 {
            match offset {
                v1::INTR_MASK => self.mask.get(),
                v1::INTR_STATUS => self.status.replace(0),
                v1::IV_POSITION => 7,
                _ => 0,
            }
        }
        fn write32(&self, offset: usize, value: u32) {
            match offset {
                v1::INTR_MASK => self.mask.set(value),
                v1::DOORBELL => self.doorbell.set(value),
                _ => {}
            }
        }
    }

    #[test]
    fn v1_intx_status_tells_ours_from_others() {
        let r = V1Regs {
            mask: Cell::new(0),
            status: Cell::new(0),
            doorbell: Cell::new(0),
        };
        let m = model(Revision::V1);
        m.enable_intx(&r);
        assert_eq!(r.mask.get(), 1);
        assert!(!m.ack_intx(&r), "no status: someone else's interrupt");
        r.status.set(1);
        assert!(m.ack_intx(&r));
        assert!(!m.ack_intx(&r), "reading cleared it");
        assert!(m.intx_shareable());
    }

    #[test]
    fn v1_identity_and_doorbell() {
        let r = V1Regs {
            mask: Cell::new(0),
            status: Cell::new(0),
            doorbell: Cell::new(0),
        };
        let m = model(Revision::V1);
        assert_eq!(
            (m.revision(), m.own_id(&r), m.max_peers(&r)),
            (Revision::V1, 7, None)
        );
        m.ring(&r, Doorbell::new(3, 1, 8, 2).unwrap());
        assert_eq!(r.doorbell.get(), 0x0003_0001);
        assert!(!m.set_state(&r, 1));
        assert!(!model(Revision::V2).intx_shareable());
    }
}
