// SPDX-License-Identifier: GPL-2.0

//! The PCI driver: ivshmem 2.0 virtio frontends by ID, QEMU ivshmem through
//! `driver_override`.

use kernel::{device::Core, pci, prelude::*, sync::Arc};

use crate::common::irq::{raw_pci_dev, Vectors};
use crate::common::mmio::ShmemWindow;
use crate::common::probe::{self, ProbeParams, Probed};
use crate::common::sections::DeviceSections;
use crate::link::{Link, LinkParts};
use crate::shared::ivshmem::ident::{self, Identity, ProtocolKind};
use crate::shared::vdev::device_id;
use crate::shared::vdev::header::{HEADER_AREA, PROTOCOL_DEVICE_ID_MASK};

/// Most interrupt vectors used (one for config + one per queue).
const MAX_VECTORS: u32 = 1 + crate::link::MAX_QUEUES as u32;
/// The start of probe: a virtio transport cannot work without doorbells.
const PROBE: ProbeParams = ProbeParams {
    name: c"vdev_remote",
    max_vectors: MAX_VECTORS,
    require_vectors: Some("a virtio transport needs doorbells"),
};
/// Smallest R/W section: the header page plus room for rings and buffers.
const MIN_RW: usize = HEADER_AREA + (64 << 10);

/// What the link needs of the shared memory, checked before interrupts are
/// set up.
struct Memory {
    /// The sections, which a virtio transport cannot do without.
    sections: DeviceSections,
    /// The R/W section, mapped.
    rw: ShmemWindow,
    /// The lincell v1 layout header, mapped (QEMU's ivshmem only).
    v1_header: Option<ShmemWindow>,
}

/// Stops the link's work once the interrupt handlers are gone.
struct LinkOwner(Arc<Link>);

impl Drop for LinkOwner {
    fn drop(&mut self) {
        self.0.stop_work();
    }
}

/// Per-device driver data. Declaration order is drop order: the handlers
/// go first, then the work items are flushed.
#[pin_data]
pub(crate) struct VdevRemoteDevice {
    _vectors: Vectors<Link>,
    link: LinkOwner,
}

/// The driver type registered with the PCI core.
pub(crate) struct VdevRemoteDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <VdevRemoteDriver as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::SIEMENS, ident::V2_DEVICE as u32),
        ()
    )]
);

impl pci::Driver for VdevRemoteDriver {
    type IdInfo = ();
    type Data<'bound> = VdevRemoteDevice;

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
            let v2 = revision == ident::Revision::V2;
            // ivshmem 2.0 says what it carries; QEMU's ivshmem is bound by
            // driver_override and the backend announces the device id.
            let device_id = match protocol.kind() {
                ProtocolKind::VirtioFrontend { .. } => {
                    let id = u32::from(protocol.0 & PROTOCOL_DEVICE_ID_MASK);
                    device_id::check(id, 0).map_err(|e| {
                        dev_err!(pdev, "protocol {:#06x}: {}\n", protocol.0, e);
                        ENODEV
                    })?
                }
                _ if v2 => {
                    dev_info!(
                        pdev,
                        "protocol {:#06x} is not a virtio frontend\n",
                        protocol.0
                    );
                    return Err(ENODEV);
                }
                _ => 0,
            };

            let Probed {
                model,
                regs,
                own_id,
                memory:
                    Memory {
                        sections,
                        rw,
                        v1_header,
                    },
                vectors,
            } = probe::probe_device(pdev, revision, &PROBE, |sections, shmem, _| {
                let Some(sections) = sections else {
                    dev_err!(
                        pdev,
                        "no section layout: virtio needs a state table and an R/W section\n"
                    );
                    return Err(ENODEV);
                };
                let rw = sections.layout.rw();
                let rw_len = usize::try_from(rw.len).map_err(|_| EINVAL)?;
                if rw_len < MIN_RW {
                    dev_err!(
                        pdev,
                        "R/W section of {} bytes is too small (need {})\n",
                        rw_len,
                        MIN_RW
                    );
                    return Err(ENODEV);
                }
                let rw_phys = shmem.phys + sections.base + rw.offset;
                let rw = ShmemWindow::new(rw_phys, rw_len)?;
                let v1_header = if v2 {
                    None
                } else {
                    Some(ShmemWindow::new(shmem.phys, kernel::page::PAGE_SIZE)?)
                };
                Ok(Memory {
                    sections,
                    rw,
                    v1_header,
                })
            })?;
            // `probe_device` fails without vectors (`require_vectors`).
            let Some(mut vectors) = vectors else {
                return Err(ENODEV);
            };
            // CAST: at most MAX_VECTORS.
            let nr_vectors = vectors.len() as u32;
            let rw_len = rw.len();
            let vendor = u32::from(pdev.subsystem_vendor_id());
            let link = Arc::pin_init(
                Link::new(LinkParts {
                    pdev: raw_pci_dev(pdev),
                    model,
                    regs,
                    sections,
                    rw,
                    v1_header,
                    vectors: nr_vectors,
                    device_id,
                    vendor_id: vendor,
                })?,
                GFP_KERNEL,
            )?;
            if let Err(e) = vectors.request(&link, c"vdev_remote") {
                // The handlers that were requested may have queued work:
                // free them, then stop the work, before failing the probe.
                drop(vectors);
                link.stop_work();
                return Err(e);
            }
            dev_info!(
                pdev,
                "virtio-over-ivshmem frontend: ivshmem v{}, peer {}, {} vectors, {} KiB R/W section; waiting for a backend\n",
                revision.number(),
                own_id,
                nr_vectors,
                rw_len / 1024
            );
            Link::start(&link);
            Ok(try_pin_init!(VdevRemoteDevice {
                _vectors: vectors,
                link: LinkOwner(link)
            }))
        })
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        this.link.0.shutdown();
    }
}
