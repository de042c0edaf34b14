// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: match, identify, set up interrupts and `/dev/ivshmemN`.

use kernel::{device::Core, pci, prelude::*, sync::Arc};

use crate::chardev::Chardev;
use crate::common::irq::{raw_pci_dev, Vectors};
use crate::common::mmio::ShmemWindow;
use crate::common::probe::{self, ProbeParams, Probed};
use crate::common::sections::DeviceSections;
use crate::device::Shared;
use crate::shared::ivshmem::ident::{self, Identity, Revision};
use crate::shared::ivshmem::uapi::{
    DeviceInfo, INFO_DOORBELL, INFO_ONESHOT, INFO_SECTIONS, MAX_VECTORS,
};
use crate::sysfs::SysfsGroup;

/// The start of probe: doorbells are optional (QEMU's `ivshmem-plain` has
/// none).
const PROBE: ProbeParams = ProbeParams {
    name: c"ivshmem",
    max_vectors: MAX_VECTORS,
    require_vectors: None,
};

/// Per-device state, alive while the driver is bound.
///
/// Field order is drop order: the sysfs attributes go first (their removal
/// waits for readers, who look at this struct), then the character device
/// (no new opens), then the interrupt handlers, then our reference to the
/// shared state (open files may keep it longer).
#[pin_data]
pub(crate) struct IvshmemDevice {
    _sysfs: SysfsGroup,
    #[pin]
    chardev: Chardev,
    vectors: Option<Vectors<Shared>>,
    shared: Arc<Shared>,
}

impl IvshmemDevice {
    /// The state shared with open files.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
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

/// What `IVSHMEM_IOCTL_INFO` reports for a device.
fn device_info(
    revision: Revision,
    protocol: u16,
    own_id: u32,
    max_peers: u32,
    vectors: usize,
    shmem_size: u64,
    sections: Option<&DeviceSections>,
) -> DeviceInfo {
    let mut info = DeviceInfo {
        revision: revision.number(),
        own_id,
        max_peers,
        // CAST: at most MAX_VECTORS.
        vectors: vectors as u32,
        protocol: protocol.into(),
        flags: if vectors > 0 { INFO_DOORBELL } else { 0 },
        shmem_size,
        ..DeviceInfo::default()
    };
    match sections {
        Some(s) => {
            let l = &s.layout;
            info.flags |= INFO_SECTIONS | if s.one_shot { INFO_ONESHOT } else { 0 };
            info.state_table_offset = s.base + l.state_table().offset;
            info.state_table_size = l.state_table().len;
            info.rw_offset = s.base + l.rw().offset;
            info.rw_size = l.rw().len;
            let out0 = l.output(0).map_or(0, |o| o.offset);
            info.output_offset = s.base + out0;
            info.output_size = l.own_output().len;
        }
        None => info.rw_size = shmem_size,
    }
    info
}

impl pci::Driver for IvshmemDriver {
    type IdInfo = ();
    type Data<'bound> = IvshmemDevice;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            let Identity { revision, protocol } = ident::identify(
                pdev.vendor_id().as_raw(),
                pdev.device_id(),
                pdev.pci_class().as_raw(),
            )
            .map_err(|_| ENODEV)?;
            if protocol.is_virtio_frontend() {
                // virtio-over-ivshmem frontends belong to vdev_remote.
                dev_dbg!(
                    pdev,
                    "protocol {:#06x} is a virtio frontend; leaving it to vdev_remote\n",
                    protocol.0
                );
                return Err(ENODEV);
            }

            let Probed {
                model,
                regs,
                own_id,
                memory: (sections, shmem, max_peers),
                mut vectors,
            } = probe::probe_device(pdev, revision, &PROBE, |sections, shmem, device_max| {
                // QEMU's ivshmem does not say how many peers there are: the
                // lincell layout does; without one, any 16-bit peer id may
                // exist.
                let max_peers = device_max
                    .or(sections.as_ref().map(|s| s.layout.max_peers()))
                    .unwrap_or(1 << 16);
                Ok((sections, shmem, max_peers))
            })?;
            let nr_vectors = vectors.as_ref().map_or(0, Vectors::len);
            let info = device_info(
                revision,
                protocol.0,
                own_id,
                max_peers,
                nr_vectors,
                shmem.size,
                sections.as_ref(),
            );
            let memtype = usize::try_from(shmem.size)
                .ok()
                .and_then(|len| ShmemWindow::new(shmem.phys, len).ok());
            if memtype.is_none() {
                dev_warn!(
                    pdev,
                    "cannot map the shared memory write-back; user mappings may be uncached\n"
                );
            }
            let shared = Arc::pin_init(
                Shared::new(info, model, regs, shmem.phys, sections, memtype),
                GFP_KERNEL,
            )?;
            if let Some(v) = vectors.as_mut() {
                v.request(&shared, c"ivshmem")?;
            }
            if revision == Revision::V2 {
                // The State register is this function's: whatever an earlier
                // driver, or a guest writing it directly, left there is not
                // ours. Start from 0, as the local state does.
                let mut users = shared.users.lock();
                shared.publish_state(&mut users, 0)?;
            }

            // SAFETY: `raw_pci_dev` is valid while bound; `dev` is its embedded
            // `struct device`, the parent of our misc device.
            let parent = unsafe { &raw mut (*raw_pci_dev(pdev)).dev };
            let chardev = Chardev::new(parent, shared.clone())?;
            let layout = if info.flags & INFO_SECTIONS != 0 {
                "sections"
            } else {
                "no sections"
            };
            dev_info!(
                pdev,
                "ivshmem v{}: peer {} of {}, {} vectors, {} KiB shared memory, {}\n",
                revision.number(),
                own_id,
                max_peers,
                nr_vectors,
                shmem.size / 1024,
                layout
            );
            Ok(try_pin_init!(IvshmemDevice {
                _sysfs: SysfsGroup::new(pdev)?,
                chardev <- chardev,
                vectors,
                shared,
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        dev_dbg!(pdev, "unbinding {:?}\n", this.chardev.name());
        // Wake blocked readers and revoke user mappings before the device
        // (and its BAR) can go away.
        this.shared.kill();
    }
}
