// SPDX-License-Identifier: GPL-2.0

//! The start of probe, the same in both PCI drivers: enable the function,
//! map the registers (BAR0) and pick the register model, find the shared
//! memory (BAR2) and its sections, allocate the interrupt vectors and enable
//! interrupts at the device.
//!
//! Each driver identifies the function first (which one binds it depends on
//! the protocol) and goes on with what [`probe_device`] returns.

use kernel::{device::Core, pci, pci::DevresBar, prelude::*};

use super::irq::{raw_pci_dev, VectorHandler, Vectors};
use super::mmio::{Bar0, Regs};
use super::sections::{self, DeviceSections};
use crate::shared::ivshmem::ident::Revision;
use crate::shared::ivshmem::regs::{self, RegisterModel, BAR0_SIZE};

/// BAR holding the shared memory on both revisions (when present).
const SHMEM_BAR: u32 = 2;

/// The shared memory: BAR2.
#[derive(Clone, Copy)]
pub(crate) struct Shmem {
    /// Bus address.
    pub(crate) phys: u64,
    /// Size in bytes, never 0.
    pub(crate) size: u64,
}

/// What a driver asks of [`probe_device`].
pub(crate) struct ProbeParams {
    /// Name of the register region.
    pub(crate) name: &'static CStr,
    /// Most MSI-X vectors the driver uses.
    pub(crate) max_vectors: u32,
    /// `Some(reason)`: probe fails without interrupt vectors and logs the
    /// reason; `None`: it goes on without them (no doorbells).
    pub(crate) require_vectors: Option<&'static str>,
}

/// What [`probe_device`] set up.
pub(crate) struct Probed<H: VectorHandler, M> {
    /// The register model of the device's revision.
    pub(crate) model: &'static dyn RegisterModel,
    /// The registers, revoked on unbind.
    pub(crate) regs: DevresBar<BAR0_SIZE>,
    /// The own peer id, from the registers.
    pub(crate) own_id: u32,
    /// What the driver's `memory` callback kept of the shared memory.
    pub(crate) memory: M,
    /// The interrupt vectors, handlers not yet requested. Never `None` with
    /// [`ProbeParams::require_vectors`].
    pub(crate) vectors: Option<Vectors<H>>,
}

/// Runs the start of probe for a function of `revision`.
///
/// Once the shared memory and its sections are found, and before any
/// interrupt is set up, `memory` receives the sections (`None`: the device
/// has no usable layout), the shared memory and the number of peers the
/// registers report (ivshmem 2.0 only). It returns what the driver keeps of
/// them, or an error that fails probe.
pub(crate) fn probe_device<H: VectorHandler, M>(
    pdev: &pci::Device<Core<'_>>,
    revision: Revision,
    params: &ProbeParams,
    memory: impl FnOnce(Option<DeviceSections>, Shmem, Option<u32>) -> Result<M>,
) -> Result<Probed<H, M>> {
    pdev.enable_device_mem()?;
    pdev.set_master();
    let bar: Bar0<'_> = pdev
        .iomap_region_sized::<BAR0_SIZE>(0, params.name)
        .inspect_err(|e| dev_err!(pdev, "cannot map the registers: {:?}\n", e))?;
    let model = regs::model(revision);
    let own_id = model.own_id(&Regs(&bar));
    let device_max_peers = model.max_peers(&Regs(&bar));

    let shmem = Shmem {
        phys: pdev.resource_start(SHMEM_BAR).unwrap_or(0),
        size: pdev.resource_len(SHMEM_BAR).unwrap_or(0),
    };
    if shmem.size == 0 {
        dev_err!(pdev, "no shared memory in BAR{}\n", SHMEM_BAR);
        return Err(ENODEV);
    }
    let sections = match device_max_peers {
        Some(max) => sections::discover_v2(pdev, shmem.phys, shmem.size, own_id, max)?,
        None => sections::discover_v1(shmem.phys, shmem.size, own_id)?,
    };
    let memory = memory(sections, shmem, device_max_peers)?;

    // SAFETY: `pdev` is a bound PCI device.
    let msix = unsafe { kernel::bindings::pci_msix_vec_count(raw_pci_dev(pdev)) };
    let wanted = u32::try_from(msix).unwrap_or(0).min(params.max_vectors);
    // ivshmem 2.0 falls back to INTx without MSI-X; QEMU's ivshmem-plain has
    // no interrupts and its ivshmem-doorbell always has MSI-X.
    let vectors = Vectors::alloc(pdev, wanted, revision == Revision::V2);
    if let (None, Some(reason)) = (&vectors, params.require_vectors) {
        dev_err!(pdev, "no interrupt vectors: {}\n", reason);
        return Err(ENODEV);
    }
    if vectors.as_ref().is_some_and(Vectors::is_intx) {
        model.enable_intx(&Regs(&bar));
    }
    model.enable_interrupts(&Regs(&bar));
    Ok(Probed {
        model,
        regs: bar.into_devres()?,
        own_id,
        memory,
        vectors,
    })
}
