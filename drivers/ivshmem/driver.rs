// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: match, identify, map the registers, report.

use kernel::{device::Core, io::Io, pci, prelude::*};

use crate::regs::{self, BAR0_SIZE};
use crate::shared::ident::{self, Identity, Revision};

/// BAR0: the register block.
type Bar0<'bound> = pci::Bar<'bound, BAR0_SIZE>;

/// BAR holding the shared memory on both revisions (when present).
const SHMEM_BAR: u32 = 2;

/// Per-device state, alive while the driver is bound.
pub(crate) struct IvshmemDevice<'bound> {
    _bar: Bar0<'bound>,
}

/// The driver type registered with the PCI core.
pub(crate) struct IvshmemDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <IvshmemDriver as pci::Driver>::IdInfo,
    [
        (
            pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, ident::V1_DEVICE as u32),
            ()
        ),
        (
            pci::DeviceId::from_id(pci::Vendor::SIEMENS, ident::V2_DEVICE as u32),
            ()
        ),
    ]
);

/// Reads the local peer id with the register model of `revision`.
fn own_id(bar: &Bar0<'_>, revision: Revision) -> u32 {
    match revision {
        Revision::V1 => bar.read(regs::v1::IV_POSITION).id().into(),
        Revision::V2 => bar.read(regs::v2::ID).id().into(),
    }
}

impl pci::Driver for IvshmemDriver {
    type IdInfo = ();
    type Data<'bound> = IvshmemDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let Identity { revision, protocol } = ident::identify(
            pdev.vendor_id().as_raw(),
            pdev.device_id(),
            pdev.pci_class().as_raw(),
        )
        .map_err(|_| ENODEV)?;
        if protocol.is_virtio() {
            // virtio-over-ivshmem devices belong to vdev_remote.
            dev_dbg!(pdev, "protocol {:#06x} is virtio; leaving it to vdev_remote\n", protocol.0);
            return Err(ENODEV);
        }

        pdev.enable_device_mem()?;
        let bar = pdev
            .iomap_region_sized::<BAR0_SIZE>(0, c"ivshmem")
            .inspect_err(|e| dev_err!(pdev, "cannot map the registers: {:?}\n", e))?;

        let id = own_id(&bar, revision);
        let shmem_kib = pdev.resource_len(SHMEM_BAR).unwrap_or(0) / 1024;
        if revision == Revision::V2 {
            let max_peers: u32 = bar.read(regs::v2::MAX_PEERS).count().into();
            dev_info!(
                pdev,
                "ivshmem v2: peer {} of {}, protocol {:#06x}, {} KiB shared memory\n",
                id,
                max_peers,
                protocol.0,
                shmem_kib
            );
        } else {
            dev_info!(pdev, "ivshmem v1: peer {}, {} KiB shared memory\n", id, shmem_kib);
        }

        Ok(IvshmemDevice { _bar: bar })
    }
}
