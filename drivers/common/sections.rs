// SPDX-License-Identifier: GPL-2.0

//! Finding the section layout of a device at probe time.
//!
//! ivshmem 2.0 describes its sections in the vendor capability; QEMU's
//! ivshmem has none, so lincell peers agree on a header in the shared memory
//! (`shared::ivshmem::v1layout`). Either way the result is a validated `Layout` plus a
//! kernel mapping of the state table. A device whose layout cannot be
//! established still works, as one flat R/W region without states.

use core::sync::atomic::Ordering;

use kernel::{
    bindings,
    device::Bound,
    pci,
    prelude::*,
    time::{delay::fsleep, Delta},
};

use super::irq::raw_pci_dev;
use super::mmio::ShmemWindow;
use crate::shared::ivshmem::doorbell::Doorbell;
use crate::shared::ivshmem::layout::Layout;
use crate::shared::ivshmem::regs::{RegisterBlock, RegisterModel};
use crate::shared::ivshmem::v1layout::{self, Header};
use crate::shared::ivshmem::vendor_cap;

/// A device's sections: the validated layout and the mapped state table.
pub(crate) struct DeviceSections {
    /// The validated layout (offsets relative to `base`).
    pub(crate) layout: Layout,
    /// Offset of the layout in the shared memory (v1: after the header).
    pub(crate) base: u64,
    /// The state table, mapped.
    pub(crate) states: ShmemWindow,
    /// One-shot interrupt mode is on (v2): the device disables interrupts
    /// on each delivery and `read` enables them again.
    pub(crate) one_shot: bool,
}

impl DeviceSections {
    /// The state table entry of `peer`, read from shared memory.
    pub(crate) fn state_of(&self, peer: u32) -> Option<u32> {
        let off = self.layout.state_offset(peer)?;
        Some(
            self.states
                .fallback()
                .load(usize::try_from(off).ok()?, Ordering::Acquire),
        )
    }

    /// Writes the own entry of the state table (v1 peers keep it themselves).
    pub(crate) fn write_own_state(&self, state: u32) {
        if let Some(off) = self.layout.state_offset(self.layout.own_id()) {
            if let Ok(off) = usize::try_from(off) {
                self.states.fallback().store(off, state, Ordering::Release);
            }
        }
    }

    /// Publishes the own state: through the State register on ivshmem 2.0;
    /// on QEMU's ivshmem, which has none, by writing the own table entry and
    /// ringing vector 0 on every other peer (`vectors` 0: no doorbells).
    pub(crate) fn publish_state(
        &self,
        model: &dyn RegisterModel,
        regs: &dyn RegisterBlock,
        state: u32,
        vectors: u32,
    ) {
        if model.set_state(regs, state) {
            return;
        }
        self.write_own_state(state);
        if vectors > 0 {
            let own = self.layout.own_id();
            let max = self.layout.max_peers();
            for peer in (0..max).filter(|&p| p != own) {
                if let Ok(d) = Doorbell::new(peer, 0, max, vectors) {
                    model.ring(regs, d);
                }
            }
        }
    }

    fn map_states(layout: Layout, base: u64, shmem_phys: u64, one_shot: bool) -> Result<Self> {
        let st = layout.state_table();
        let len = usize::try_from(st.len).map_err(|_| EINVAL)?;
        let phys = shmem_phys.checked_add(base + st.offset).ok_or(EINVAL)?;
        Ok(DeviceSections {
            layout,
            base,
            states: ShmemWindow::new(phys, len)?,
            one_shot,
        })
    }
}

/// QEMU ivshmem: join or create the lincell header at the start of BAR2.
pub(crate) fn discover_v1(
    shmem_phys: u64,
    shmem_len: u64,
    own_id: u32,
) -> Result<Option<DeviceSections>> {
    let page = kernel::page::PAGE_SIZE as u64;
    let proposal = match Header::propose(shmem_len, page, v1layout::DEFAULT_MAX_PEERS) {
        Ok(p) => p,
        Err(e) => {
            pr_info!("ivshmem: no v1 sections: {}\n", e);
            return Ok(None);
        }
    };
    // CAST: one page.
    let header_map = ShmemWindow::new(shmem_phys, page as usize)?;
    // A peer that claimed the memory writes a few words; give it 1 s.
    let mut polls = 0;
    let joined = v1layout::init_or_join(header_map.region(), &proposal, || {
        polls += 1;
        fsleep(Delta::from_millis(10));
        polls < 100
    });
    let header = match joined.and_then(|h| h.layout(own_id, shmem_len).map(|l| (h, l))) {
        Ok(h) => h,
        Err(e) => {
            pr_warn!(
                "ivshmem: shared memory has no usable lincell layout: {}\n",
                e
            );
            return Ok(None);
        }
    };
    let (header, layout) = header;
    DeviceSections::map_states(layout, header.granule, shmem_phys, false).map(Some)
}

/// Reads the vendor capability bytes of an ivshmem 2.0 function.
fn read_vendor_cap(pdev: &pci::Device<Bound>) -> Option<[u8; 0x20]> {
    let raw = raw_pci_dev(pdev);
    // SAFETY: `raw` is a bound PCI device.
    let pos = unsafe { bindings::pci_find_capability(raw, i32::from(vendor_cap::CAP_ID_VENDOR)) };
    if pos == 0 {
        return None;
    }
    let mut bytes = [0u8; 0x20];
    for (i, b) in bytes.iter_mut().enumerate() {
        // CAST: config space offsets fit in an int.
        let at = i32::from(pos) + i as i32;
        // SAFETY: `raw` is bound; `b` is a valid output location; reads past
        // config space fail and leave 0.
        unsafe { bindings::pci_read_config_byte(raw, at, b) };
    }
    Some(bytes)
}

/// ivshmem 2.0: the sections the vendor capability describes.
pub(crate) fn discover_v2(
    pdev: &pci::Device<Bound>,
    shmem_phys: u64,
    shmem_len: u64,
    own_id: u32,
    max_peers: u32,
) -> Result<Option<DeviceSections>> {
    let Some(bytes) = read_vendor_cap(pdev) else {
        dev_warn!(pdev.as_ref(), "no vendor capability; no sections\n");
        return Ok(None);
    };
    let cap = match vendor_cap::parse(&bytes) {
        Ok(c) => c,
        Err(e) => {
            dev_warn!(pdev.as_ref(), "vendor capability: {}\n", e);
            return Ok(None);
        }
    };
    let page = kernel::page::PAGE_SIZE as u64;
    match Layout::new(cap.sizes, max_peers, own_id, page, shmem_len) {
        Ok(layout) => DeviceSections::map_states(layout, 0, shmem_phys, cap.one_shot).map(Some),
        Err(e) => {
            dev_warn!(
                pdev.as_ref(),
                "sections do not fit the shared memory: {}\n",
                e
            );
            Ok(None)
        }
    }
}
