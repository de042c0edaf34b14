// SPDX-License-Identifier: GPL-2.0
//! One guest's ivshmem 2.0 function: the accesses QEMU forwards over
//! vfio-user, decoded and answered.
//!
//! The model is independent of the socket: [`Device`] takes region
//! accesses, resets and interrupt set-up as plain calls and reaches the
//! other peers only through [`Fabric`], so it is unit-tested without QEMU.
//! Every value comes from the guest (through QEMU) and is untrusted: bad
//! regions, offsets past a BAR, odd sizes and garbage values get an error
//! or are ignored, never a panic.

use std::fs::File;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use lincell_shared::ivshmem::doorbell::Doorbell;
use lincell_shared::ivshmem::layout::{Access, Layout};
use lincell_shared::ivshmem::regs::v2;
use lincell_shared::shmem::SharedMemory as _;

use super::config::{range, ConfigParams, ConfigSpace, REG_BAR_SIZE};
use super::irq::IrqGate;
use super::{DeviceError, Fabric, Stats};

/// vfio-user region indices (VFIO PCI numbering).
pub mod region {
    /// BAR0: registers.
    pub const BAR0: u32 = 0;
    /// BAR1: MSI-X table and PBA.
    pub const BAR1: u32 = 1;
    /// BAR2: shared memory.
    pub const BAR2: u32 = 2;
    /// PCI configuration space.
    pub const CONFIG: u32 = 7;
    /// Number of VFIO PCI regions.
    pub const COUNT: u32 = 9;
}

/// vfio IRQ indices and `SET_IRQS` flags (linux/vfio.h).
pub mod irqs {
    /// Legacy INTx.
    pub const INTX: u32 = 0;
    /// MSI-X.
    pub const MSIX: u32 = 2;
    /// Number of VFIO PCI interrupt indices.
    pub const COUNT: u32 = 5;
    /// No data: with count 0, disable; otherwise trigger.
    pub const DATA_NONE: u32 = 1 << 0;
    /// An array of booleans (the crate refuses these).
    pub const DATA_BOOL: u32 = 1 << 1;
    /// An array of eventfds.
    pub const DATA_EVENTFD: u32 = 1 << 2;
    /// Mask action.
    pub const ACTION_MASK: u32 = 1 << 3;
    /// Unmask action.
    pub const ACTION_UNMASK: u32 = 1 << 4;
    /// Trigger action.
    pub const ACTION_TRIGGER: u32 = 1 << 5;
}

/// How much of BAR2 a guest may map (issue 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// The whole shared memory is mapped read/write into the guest;
    /// read-only sections are read-only only towards guest user space
    /// (ivshmem.ko maps them so), not against the guest kernel.
    MapAll,
    /// Only the R/W section and the guest's own output section are mapped;
    /// the state table and other peers' output sections are served by the
    /// device process: reads answered from the memory, writes refused and
    /// counted.
    Strict,
}

/// The parameters every guest's function shares.
#[derive(Clone, Copy, Debug)]
pub struct DeviceParams {
    /// Max Peers.
    pub max_peers: u32,
    /// MSI-X vectors per peer.
    pub vectors: u16,
    /// Protocol (sub-class:prog-if).
    pub protocol: u16,
    /// One-shot interrupt mode.
    pub one_shot: bool,
    /// Mapping policy of BAR2.
    pub protection: Protection,
    /// The sections (seen from peer 0; [`Device`] re-bases it on its id).
    pub layout: Layout,
    /// Size of BAR2: the layout's total rounded up to a power of two.
    pub bar2_size: u64,
    /// Page size the section sizes are multiples of.
    pub page_size: u64,
}

/// A `[offset, offset + len)` range of BAR2 QEMU maps into the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapArea {
    /// Offset in BAR2 (and in the memory file).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// One guest's function.
#[derive(Debug)]
pub struct Device<F: Fabric> {
    id: u16,
    params: DeviceParams,
    /// The layout seen from this peer (own output section = `id`'s).
    layout: Layout,
    config: ConfigSpace,
    gate: Arc<IrqGate>,
    fabric: Arc<F>,
    stats: Arc<Stats>,
}

impl<F: Fabric> Device<F> {
    /// The function of peer `id`.
    pub fn new(
        id: u16,
        params: DeviceParams,
        fabric: Arc<F>,
        stats: Arc<Stats>,
    ) -> Result<Self, DeviceError> {
        let total = params.layout.total();
        let pl = params.layout;
        let sizes = lincell_shared::ivshmem::layout::SectionSizes {
            state_table: pl.state_table().len,
            rw: pl.rw().len,
            output: pl.output(0).map_or(0, |s| s.len),
        };
        let layout = Layout::new(
            sizes,
            params.max_peers,
            u32::from(id),
            params.page_size,
            total,
        )
        .map_err(|_| DeviceError::BadParameter("peer id or layout invalid"))?;
        let config = ConfigSpace::new(&ConfigParams {
            protocol: params.protocol,
            vectors: params.vectors,
            bar2_size: params.bar2_size,
            sizes,
            one_shot: params.one_shot,
        })?;
        Ok(Self {
            id,
            params,
            layout,
            config,
            gate: Arc::new(IrqGate::new(params.vectors, params.one_shot)),
            fabric,
            stats,
        })
    }

    /// This guest's peer id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The interrupt gate, shared with the forwarding thread.
    pub fn gate(&self) -> Arc<IrqGate> {
        self.gate.clone()
    }

    /// The parts of BAR2 to map into the guest (the rest is trapped).
    pub fn map_areas(&self) -> Vec<MapArea> {
        let areas = match self.params.protection {
            Protection::MapAll => vec![MapArea {
                offset: 0,
                len: self.layout.total(),
            }],
            Protection::Strict => [self.layout.rw(), self.layout.own_output()]
                .into_iter()
                .map(|s| MapArea {
                    offset: s.offset,
                    len: s.len,
                })
                .collect(),
        };
        areas.into_iter().filter(|a| a.len != 0).collect()
    }

    /// A read of `data.len()` bytes at `offset` of `region`.
    pub fn region_read(
        &mut self,
        region: u32,
        offset: u64,
        data: &mut [u8],
    ) -> Result<(), DeviceError> {
        match region {
            region::CONFIG => self.config.read(offset, data),
            region::BAR0 => {
                range(offset, data.len(), REG_BAR_SIZE)?;
                let value = match register(offset, data.len()) {
                    Some(reg) => self.read_register(reg),
                    None => {
                        self.stats.count_bad_access();
                        0
                    }
                };
                fill(data, value);
                Ok(())
            }
            region::BAR1 => {
                // QEMU emulates the MSI-X table; the PBA (never pending
                // here) and the rest read as 0.
                range(offset, data.len(), REG_BAR_SIZE)?;
                data.fill(0);
                Ok(())
            }
            region::BAR2 => self.read_memory(offset, data),
            _ => Err(DeviceError::NoSuchRegion(region)),
        }
    }

    /// A write of `data` at `offset` of `region`.
    pub fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        match region {
            region::CONFIG => self.config.write(offset, data),
            region::BAR0 => {
                range(offset, data.len(), REG_BAR_SIZE)?;
                match register(offset, data.len()) {
                    Some(reg) => {
                        let mut v = [0u8; 4];
                        v.copy_from_slice(&data[..4]);
                        self.write_register(reg, u32::from_le_bytes(v));
                    }
                    None => self.stats.count_bad_access(),
                }
                Ok(())
            }
            region::BAR1 => {
                range(offset, data.len(), REG_BAR_SIZE)?;
                self.stats.count_bad_access();
                Ok(())
            }
            region::BAR2 => self.write_memory(offset, data),
            _ => Err(DeviceError::NoSuchRegion(region)),
        }
    }

    /// Device reset: configuration space to power-on values, interrupts
    /// disabled, own state 0 (the others see the change on vector 0).
    pub fn reset(&mut self) {
        self.config.reset();
        self.gate.set_enabled(false);
        self.write_register(v2::STATE, 0);
    }

    /// `SET_IRQS` from QEMU.
    pub fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> Result<(), DeviceError> {
        if index != irqs::MSIX {
            // No INTx, MSI, error or request interrupts: only "disable
            // everything" is accepted there.
            return if count == 0 && fds.is_empty() {
                Ok(())
            } else {
                Err(DeviceError::BadIrq)
            };
        }
        if flags & (irqs::ACTION_MASK | irqs::ACTION_UNMASK) != 0 {
            // QEMU masks MSI-X vectors in its own emulated table.
            return Ok(());
        }
        if flags & irqs::ACTION_TRIGGER == 0 {
            return Err(DeviceError::BadIrq);
        }
        if flags & irqs::DATA_EVENTFD != 0 {
            self.gate.set_eventfds(start, count, fds)
        } else if flags & irqs::DATA_NONE != 0 {
            if count == 0 {
                self.gate.clear_eventfds();
                return Ok(());
            }
            let (first, end) = range(u64::from(start), usize::try_from(count).map_err(|_| DeviceError::BadIrq)?, u64::from(self.params.vectors))
                .map_err(|_| DeviceError::BadIrq)?;
            for v in first..end {
                self.gate.raise(v);
            }
            Ok(())
        } else {
            Err(DeviceError::BadIrq)
        }
    }

    /// Value of the register at `reg` (one of [`v2`]'s offsets, or another
    /// aligned offset in BAR0).
    fn read_register(&self, reg: usize) -> u32 {
        match reg {
            v2::ID => u32::from(self.id),
            // Max Peers is at most 65536, below u32::MAX.
            v2::MAX_PEERS => self.params.max_peers,
            v2::INT_CONTROL => u32::from(self.gate.enabled()),
            v2::STATE => self.state_entry().unwrap_or(0),
            // Doorbell is write-only; unbacked offsets read 0.
            _ => 0,
        }
    }

    fn write_register(&mut self, reg: usize, value: u32) {
        match reg {
            v2::INT_CONTROL => self.gate.set_enabled(value & 1 != 0),
            v2::DOORBELL => self.doorbell(Doorbell::from_register_value(value)),
            v2::STATE => {
                let Some(at) = self.state_offset() else { return };
                let mem = self.fabric.memory().region();
                let old = mem.load::<u32>(at, Ordering::Acquire).unwrap_or(0);
                if old == value {
                    return;
                }
                if mem.store(at, value, Ordering::Release).is_err() {
                    return;
                }
                // The new state is visible before any peer's interrupt.
                fence(Ordering::SeqCst);
                self.fabric.ring_others(self.id);
            }
            // ID and Max Peers are read-only; unbacked offsets ignore writes.
            _ => {}
        }
    }

    fn doorbell(&self, d: Doorbell) {
        let ok = u32::from(d.peer()) < self.params.max_peers
            && d.vector() < self.params.vectors
            && self.fabric.ring(d.peer(), d.vector()).is_ok();
        // Memory writes before the doorbell are visible to the target: the
        // guest's store reached the shared pages before QEMU forwarded the
        // register write, and the eventfd write orders the rest.
        self.stats.count_doorbell(ok);
    }

    fn state_offset(&self) -> Option<usize> {
        self.layout
            .state_offset(u32::from(self.id))
            .and_then(|o| usize::try_from(o).ok())
    }

    fn state_entry(&self) -> Option<u32> {
        let at = self.state_offset()?;
        self.fabric.memory().region().load(at, Ordering::Acquire).ok()
    }

    /// A trapped read of BAR2: answered from the memory; the padding after
    /// the last section reads 0.
    fn read_memory(&self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        let (start, end) = range(offset, data.len(), self.params.bar2_size)?;
        data.fill(0);
        let total = usize::try_from(self.layout.total()).map_err(|_| DeviceError::OutOfRange)?;
        let mem_end = end.min(total);
        if start < mem_end {
            self.fabric
                .memory()
                .read_bytes(start, &mut data[..mem_end - start])
                .map_err(|_| DeviceError::OutOfRange)?;
        }
        Ok(())
    }

    /// A trapped write of BAR2: stored if this guest may write there (its
    /// own sections, or anything in [`Protection::MapAll`] mode), otherwise
    /// refused and counted. Refused writes are not errors towards QEMU (a
    /// real device would also just drop them).
    fn write_memory(&self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        let (start, _) = range(offset, data.len(), self.params.bar2_size)?;
        // CAST: a slice length fits in u64.
        let len = data.len() as u64;
        let allowed = match self.params.protection {
            Protection::MapAll => offset
                .checked_add(len)
                .is_some_and(|end| end <= self.layout.total()),
            Protection::Strict => matches!(
                self.layout.lookup(offset, len),
                Ok((_, Access::ReadWrite))
            ),
        };
        if !allowed || data.is_empty() {
            self.stats.count_refused(self.id, offset, len);
            return Ok(());
        }
        self.fabric
            .memory()
            .write_bytes(start, data)
            .map_err(|_| DeviceError::OutOfRange)
    }
}

/// The register an access means: registers are aligned 32-bit words (the
/// specification allows no other access). Offsets at or above
/// [`BAR0_SIZE`](lincell_shared::ivshmem::regs::BAR0_SIZE) are unbacked: they read 0 and ignore writes.
fn register(offset: u64, len: usize) -> Option<usize> {
    let reg = usize::try_from(offset).ok()?;
    (len == 4 && reg % 4 == 0).then_some(reg)
}

/// Fills `data` with the little-endian bytes of `value` (a 4-byte read).
fn fill(data: &mut [u8], value: u32) {
    data.fill(0);
    for (d, v) in data.iter_mut().zip(value.to_le_bytes()) {
        *d = v;
    }
}
