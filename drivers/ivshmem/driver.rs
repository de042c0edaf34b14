// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: match, identify, set up interrupts and `/dev/ivshmemN`.

use kernel::{device::Core, pci, prelude::*, sync::Arc};

use crate::chardev::Chardev;
use crate::device::Shared;
use crate::irq::{raw_pci_dev, Vectors};
use crate::mmio::Regs;
use crate::sections::{self, Sections};
use crate::shared::ident::{self, Identity, Revision};
use crate::shared::regs::{self, BAR0_SIZE};
use crate::shared::uapi::{DeviceInfo, INFO_DOORBELL, INFO_ONESHOT, INFO_SECTIONS, MAX_VECTORS};
use crate::sysfs::SysfsGroup;

/// BAR holding the shared memory on both revisions (when present).
const SHMEM_BAR: u32 = 2;

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
    sections: Option<&Sections>,
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
            if protocol.is_virtio() {
                // virtio-over-ivshmem devices belong to vdev_remote.
                dev_dbg!(
                    pdev,
                    "protocol {:#06x} is virtio; leaving it to vdev_remote\n",
                    protocol.0
                );
                return Err(ENODEV);
            }

            pdev.enable_device_mem()?;
            pdev.set_master();
            let bar = pdev
                .iomap_region_sized::<BAR0_SIZE>(0, c"ivshmem")
                .inspect_err(|e| dev_err!(pdev, "cannot map the registers: {:?}\n", e))?;
            let model = regs::model(revision);

            let own_id = model.own_id(&Regs(&bar));
            let device_max_peers = model.max_peers(&Regs(&bar));
            // SAFETY: `pdev` is a bound PCI device.
            let msix = unsafe { kernel::bindings::pci_msix_vec_count(raw_pci_dev(pdev)) };
            let wanted = u32::try_from(msix).unwrap_or(0).min(MAX_VECTORS);
            let shmem_size = pdev.resource_len(SHMEM_BAR).unwrap_or(0);
            let shmem_phys = pdev.resource_start(SHMEM_BAR).unwrap_or(0);
            if shmem_size == 0 {
                dev_err!(pdev, "no shared memory in BAR{}\n", SHMEM_BAR);
                return Err(ENODEV);
            }

            let sections = match device_max_peers {
                Some(max) => sections::discover_v2(pdev, shmem_phys, shmem_size, own_id, max)?,
                None => sections::discover_v1(shmem_phys, shmem_size, own_id)?,
            };
            // QEMU's ivshmem does not say how many peers there are: the lincell
            // layout does; without one, any 16-bit peer id may exist.
            let max_peers = device_max_peers
                .or(sections.as_ref().map(|s| s.layout.max_peers()))
                .unwrap_or(1 << 16);

            // ivshmem 2.0 falls back to INTx without MSI-X; QEMU's ivshmem-plain
            // has no interrupts and its ivshmem-doorbell always has MSI-X.
            let mut vectors = Vectors::alloc(pdev, wanted, revision == Revision::V2);
            let nr_vectors = vectors.as_ref().map_or(0, Vectors::len);
            let info = device_info(
                revision,
                protocol.0,
                own_id,
                max_peers,
                nr_vectors,
                shmem_size,
                sections.as_ref(),
            );
            if vectors.as_ref().is_some_and(Vectors::is_intx) {
                model.enable_intx(&Regs(&bar));
            }
            model.enable_interrupts(&Regs(&bar));
            let regs = bar.into_devres()?;
            let shared = Arc::pin_init(
                Shared::new(info, model, regs, shmem_phys, sections),
                GFP_KERNEL,
            )?;
            if let Some(v) = vectors.as_mut() {
                v.request(&shared, c"ivshmem")?;
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
                shmem_size / 1024,
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
