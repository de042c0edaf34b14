// SPDX-License-Identifier: GPL-2.0

//! One interface over the two register models.
//!
//! The rest of the driver asks a `&dyn RegisterModel` for the peer id, rings
//! doorbells and sets the state, and never looks at the revision.

use kernel::{io::Io, prelude::*};

use crate::driver::Bar0;
use crate::regs::{v1, v2};
use crate::shared::doorbell::Doorbell;
use crate::shared::ident::Revision;

/// What the driver needs from a register block.
pub(crate) trait RegisterModel: Sync {
    /// The local peer id.
    fn own_id(&self, bar: &Bar0<'_>) -> u32;
    /// Number of peers the device connects, if it says.
    fn max_peers(&self, bar: &Bar0<'_>) -> Option<u32>;
    /// Rings a validated doorbell.
    fn ring(&self, bar: &Bar0<'_>, doorbell: Doorbell);
    /// Enables interrupt generation (no-op where the device has no switch).
    fn enable_interrupts(&self, bar: &Bar0<'_>);
    /// Publishes the local state; `false` if the device has no state register.
    fn set_state(&self, bar: &Bar0<'_>, state: u32) -> bool;
}

/// QEMU ivshmem: IVPosition and Doorbell only.
struct V1;

impl RegisterModel for V1 {
    fn own_id(&self, bar: &Bar0<'_>) -> u32 {
        bar.read(v1::IV_POSITION).id().into()
    }

    fn max_peers(&self, _bar: &Bar0<'_>) -> Option<u32> {
        None
    }

    fn ring(&self, bar: &Bar0<'_>, doorbell: Doorbell) {
        bar.write_reg(v1::DOORBELL::zeroed().with_value(doorbell.register_value()));
    }

    fn enable_interrupts(&self, _bar: &Bar0<'_>) {
        // MSI-X delivery needs no switch; IntrMask only gates INTx.
    }

    fn set_state(&self, _bar: &Bar0<'_>, _state: u32) -> bool {
        false
    }
}

/// ivshmem 2.0: the full register block.
struct V2;

impl RegisterModel for V2 {
    fn own_id(&self, bar: &Bar0<'_>) -> u32 {
        bar.read(v2::ID).id().into()
    }

    fn max_peers(&self, bar: &Bar0<'_>) -> Option<u32> {
        Some(bar.read(v2::MAX_PEERS).count().into())
    }

    fn ring(&self, bar: &Bar0<'_>, doorbell: Doorbell) {
        bar.write_reg(v2::DOORBELL::zeroed().with_value(doorbell.register_value()));
    }

    fn enable_interrupts(&self, bar: &Bar0<'_>) {
        bar.write_reg(v2::INT_CONTROL::zeroed().with_enable(true));
    }

    fn set_state(&self, bar: &Bar0<'_>, state: u32) -> bool {
        bar.write_reg(v2::STATE::zeroed().with_value(state));
        true
    }
}

/// The register model of `revision`.
pub(crate) fn model(revision: Revision) -> &'static dyn RegisterModel {
    match revision {
        Revision::V1 => &V1,
        Revision::V2 => &V2,
    }
}
