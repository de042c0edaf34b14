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
    pub fn region_write(
        &mut self,
        region: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<(), DeviceError> {
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
            let (first, end) = range(
                u64::from(start),
                usize::try_from(count).map_err(|_| DeviceError::BadIrq)?,
                u64::from(self.params.vectors),
            )
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
                let Some(at) = self.state_offset() else {
                    return;
                };
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
        self.fabric
            .memory()
            .region()
            .load(at, Ordering::Acquire)
            .ok()
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
            Protection::Strict => {
                matches!(self.layout.lookup(offset, len), Ok((_, Access::ReadWrite)))
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::RingError;
    use crate::v2::testutil::Rng;
    use ivshmem_peer::{eventfd, SharedMemory};
    use lincell_shared::ivshmem::layout::SectionSizes;
    use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
    use std::sync::Mutex;

    const PAGE: u64 = 4096;

    /// A fabric of `N` peer slots that records rings.
    struct TestFabric {
        shm: SharedMemory,
        present: Vec<bool>,
        rings: Mutex<Vec<(u16, u16)>>,
    }

    impl Fabric for TestFabric {
        fn ring(&self, target: u16, vector: u16) -> Result<(), RingError> {
            if !self
                .present
                .get(usize::from(target))
                .copied()
                .unwrap_or(false)
            {
                return Err(RingError::NoSuchPeer);
            }
            self.rings.lock().unwrap().push((target, vector));
            Ok(())
        }
        fn ring_others(&self, except: u16) {
            for (p, _) in self.present.iter().enumerate().filter(|(_, &on)| on) {
                let p = p as u16;
                if p != except {
                    self.rings.lock().unwrap().push((p, 0));
                }
            }
        }
        fn memory(&self) -> &SharedMemory {
            &self.shm
        }
    }

    fn memfd(len: u64) -> OwnedFd {
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe { libc::memfd_create(c"v2-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: freshly created descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscall on a valid fd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }, 0);
        fd
    }

    use std::os::fd::AsRawFd;

    fn params(protection: Protection, one_shot: bool) -> DeviceParams {
        let sizes = SectionSizes {
            state_table: PAGE,
            rw: 2 * PAGE,
            output: PAGE,
        };
        let layout = Layout::new(sizes, 3, 0, PAGE, u64::MAX).unwrap();
        DeviceParams {
            max_peers: 3,
            vectors: 2,
            protocol: 0x4001,
            one_shot,
            protection,
            layout,
            bar2_size: layout.total().next_power_of_two(),
            page_size: PAGE,
        }
    }

    fn setup(id: u16, p: DeviceParams) -> (Device<TestFabric>, Arc<TestFabric>, Arc<Stats>) {
        let fd = memfd(p.layout.total());
        let fabric = Arc::new(TestFabric {
            shm: SharedMemory::map(fd.as_fd()).unwrap(),
            present: vec![true, true, false],
            rings: Mutex::new(Vec::new()),
        });
        let stats = Arc::new(Stats::default());
        let dev = Device::new(id, p, fabric.clone(), stats.clone()).unwrap();
        (dev, fabric, stats)
    }

    fn rd(dev: &mut Device<TestFabric>, reg: usize) -> u32 {
        let mut b = [0u8; 4];
        dev.region_read(region::BAR0, reg as u64, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn wr(dev: &mut Device<TestFabric>, reg: usize, v: u32) {
        dev.region_write(region::BAR0, reg as u64, &v.to_le_bytes())
            .unwrap();
    }

    fn msix_fd() -> (File, OwnedFd) {
        let fd = eventfd::create().unwrap();
        eventfd::set_nonblocking(fd.as_fd()).unwrap();
        let dup = fd.try_clone().unwrap();
        // SAFETY: `dup` is an owned descriptor handed over to the File.
        (unsafe { File::from_raw_fd(dup.into_raw_fd()) }, fd)
    }

    #[test]
    fn registers_read_as_specified() {
        let (mut dev, _, _) = setup(1, params(Protection::MapAll, false));
        assert_eq!(rd(&mut dev, v2::ID), 1);
        assert_eq!(rd(&mut dev, v2::MAX_PEERS), 3);
        assert_eq!(rd(&mut dev, v2::INT_CONTROL), 0, "reset value 0");
        assert_eq!(rd(&mut dev, v2::DOORBELL), 0);
        assert_eq!(rd(&mut dev, v2::STATE), 0);
        assert_eq!(rd(&mut dev, 0x14), 0, "unbacked");
        assert_eq!(rd(&mut dev, 0xffc), 0, "unbacked");
        wr(&mut dev, v2::ID, 7);
        wr(&mut dev, v2::MAX_PEERS, 7);
        assert_eq!((rd(&mut dev, v2::ID), rd(&mut dev, v2::MAX_PEERS)), (1, 3));
        wr(&mut dev, v2::INT_CONTROL, 0xffff_ffff);
        assert_eq!(rd(&mut dev, v2::INT_CONTROL), 1, "only bit 0");
    }

    #[test]
    fn doorbells_route_to_present_targets_and_vectors() {
        let (mut dev, fabric, stats) = setup(0, params(Protection::MapAll, false));
        wr(&mut dev, v2::DOORBELL, 1 << 16 | 1);
        wr(&mut dev, v2::DOORBELL, 0);
        wr(&mut dev, v2::DOORBELL, 2 << 16);
        wr(&mut dev, v2::DOORBELL, 1 << 16 | 2);
        wr(&mut dev, v2::DOORBELL, 0xffff_ffff);
        assert_eq!(*fabric.rings.lock().unwrap(), vec![(1, 1), (0, 0)]);
        let s = stats.snapshot();
        assert_eq!((s.doorbells, s.dropped_doorbells), (2, 3));
    }

    #[test]
    fn state_write_fans_out_vector0_once_per_change() {
        let (mut dev, fabric, _) = setup(1, params(Protection::MapAll, false));
        wr(&mut dev, v2::STATE, 5);
        assert_eq!(rd(&mut dev, v2::STATE), 5);
        let mem = fabric.shm.region();
        assert_eq!(mem.load::<u32>(4, Ordering::Relaxed), Ok(5), "own entry");
        assert_eq!(mem.load::<u32>(0, Ordering::Relaxed), Ok(0));
        assert_eq!(*fabric.rings.lock().unwrap(), vec![(0, 0)]);
        wr(&mut dev, v2::STATE, 5);
        assert_eq!(
            fabric.rings.lock().unwrap().len(),
            1,
            "no change, no interrupt"
        );
        dev.reset();
        assert_eq!(rd(&mut dev, v2::STATE), 0, "reset clears the state");
        assert_eq!(
            fabric.rings.lock().unwrap().len(),
            2,
            "and the others hear it"
        );
    }

    #[test]
    fn reset_clears_interrupt_control_and_config() {
        let (mut dev, _, _) = setup(0, params(Protection::MapAll, false));
        wr(&mut dev, v2::INT_CONTROL, 1);
        dev.region_write(region::CONFIG, 4, &[0x06, 0]).unwrap();
        dev.reset();
        assert_eq!(rd(&mut dev, v2::INT_CONTROL), 0);
        let mut cmd = [0u8; 2];
        dev.region_read(region::CONFIG, 4, &mut cmd).unwrap();
        assert_eq!(cmd, [0, 0]);
    }

    #[test]
    fn msix_eventfds_and_gate() {
        let (mut dev, _, _) = setup(0, params(Protection::MapAll, true));
        let (f, r) = msix_fd();
        let fl = irqs::ACTION_TRIGGER | irqs::DATA_EVENTFD;
        dev.set_irqs(irqs::MSIX, fl, 1, 1, vec![f]).unwrap();
        let gate = dev.gate();
        assert_eq!(gate.deliver(1), super::super::irq::Delivery::Disabled);
        wr(&mut dev, v2::INT_CONTROL, 1);
        assert_eq!(gate.deliver(1), super::super::irq::Delivery::Raised);
        assert_eq!(rd(&mut dev, v2::INT_CONTROL), 0, "one-shot cleared it");
        assert_eq!(eventfd::try_read(r.as_fd()).unwrap(), Some(1));
        // Disable all, bad indices and ranges.
        dev.set_irqs(
            irqs::MSIX,
            irqs::ACTION_TRIGGER | irqs::DATA_NONE,
            0,
            0,
            vec![],
        )
        .unwrap();
        wr(&mut dev, v2::INT_CONTROL, 1);
        assert_eq!(gate.deliver(1), super::super::irq::Delivery::NoEventfd);
        assert!(dev.set_irqs(irqs::MSIX, fl, 2, 1, vec![]).is_err());
        assert!(dev
            .set_irqs(irqs::MSIX, fl, u32::MAX, u32::MAX, vec![])
            .is_err());
        assert!(dev.set_irqs(irqs::INTX, fl, 0, 1, vec![]).is_err());
        assert!(dev
            .set_irqs(
                irqs::INTX,
                irqs::DATA_NONE | irqs::ACTION_TRIGGER,
                0,
                0,
                vec![]
            )
            .is_ok());
        assert!(dev.set_irqs(irqs::MSIX, 0, 0, 1, vec![]).is_err());
    }

    #[test]
    fn map_areas_by_protection() {
        let (all, _, _) = setup(1, params(Protection::MapAll, false));
        assert_eq!(
            all.map_areas(),
            vec![MapArea {
                offset: 0,
                len: 6 * PAGE
            }]
        );
        let (strict, _, _) = setup(1, params(Protection::Strict, false));
        assert_eq!(
            strict.map_areas(),
            vec![
                MapArea {
                    offset: PAGE,
                    len: 2 * PAGE
                },
                MapArea {
                    offset: 4 * PAGE,
                    len: PAGE
                }
            ]
        );
    }

    #[test]
    fn strict_mode_refuses_foreign_sections() {
        let (mut dev, fabric, stats) = setup(1, params(Protection::Strict, false));
        let mem = fabric.shm.region();
        mem.store(0, 0xaa_u32, Ordering::Relaxed).unwrap();
        mem.store((3 * PAGE) as usize, 0xbb_u32, Ordering::Relaxed)
            .unwrap();
        let mut b = [0u8; 4];
        dev.region_read(region::BAR2, 0, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xaa, "state table readable");
        dev.region_read(region::BAR2, 3 * PAGE, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xbb, "peer 0's output readable");
        for offset in [0, 4, 3 * PAGE, 5 * PAGE, 6 * PAGE, 7 * PAGE + 4092] {
            dev.region_write(region::BAR2, offset, &[1, 2, 3, 4])
                .unwrap();
        }
        // Straddling the own output section's end.
        dev.region_write(region::BAR2, 5 * PAGE - 2, &[1, 2, 3, 4])
            .unwrap();
        assert_eq!(stats.snapshot().refused_writes, 7);
        assert_eq!(mem.load::<u32>(0, Ordering::Relaxed), Ok(0xaa));
        assert_eq!(
            mem.load::<u32>((3 * PAGE) as usize, Ordering::Relaxed),
            Ok(0xbb)
        );
        // Own sections are writable even when trapped.
        dev.region_write(region::BAR2, PAGE, &7u32.to_le_bytes())
            .unwrap();
        dev.region_write(region::BAR2, 4 * PAGE, &8u32.to_le_bytes())
            .unwrap();
        assert_eq!(mem.load::<u32>(PAGE as usize, Ordering::Relaxed), Ok(7));
        assert_eq!(
            mem.load::<u32>((4 * PAGE) as usize, Ordering::Relaxed),
            Ok(8)
        );
        assert_eq!(stats.snapshot().refused_writes, 7);
        // Padding after the sections reads 0; past BAR2 is an error.
        dev.region_read(region::BAR2, 7 * PAGE, &mut b).unwrap();
        assert_eq!(b, [0; 4]);
        assert_eq!(
            dev.region_read(region::BAR2, 8 * PAGE, &mut b),
            Err(DeviceError::OutOfRange)
        );
    }

    #[test]
    fn default_mode_allows_trapped_writes_inside_the_memory() {
        let (mut dev, fabric, stats) = setup(1, params(Protection::MapAll, false));
        dev.region_write(region::BAR2, 3 * PAGE, &9u32.to_le_bytes())
            .unwrap();
        assert_eq!(
            fabric
                .shm
                .region()
                .load::<u32>((3 * PAGE) as usize, Ordering::Relaxed),
            Ok(9)
        );
        dev.region_write(region::BAR2, 6 * PAGE, &9u32.to_le_bytes())
            .unwrap();
        assert_eq!(stats.snapshot().refused_writes, 1, "padding is not memory");
    }

    #[test]
    fn bad_regions_and_offsets_are_errors() {
        let (mut dev, _, stats) = setup(0, params(Protection::MapAll, false));
        let mut b = [0u8; 4];
        for r in [3, 4, 5, 6, 8, 9, u32::MAX] {
            assert_eq!(
                dev.region_read(r, 0, &mut b),
                Err(DeviceError::NoSuchRegion(r))
            );
            assert_eq!(
                dev.region_write(r, 0, &b),
                Err(DeviceError::NoSuchRegion(r))
            );
        }
        for r in [region::BAR0, region::BAR1, region::BAR2, region::CONFIG] {
            assert_eq!(
                dev.region_read(r, u64::MAX, &mut b),
                Err(DeviceError::OutOfRange)
            );
            assert_eq!(
                dev.region_write(r, u64::MAX - 2, &b),
                Err(DeviceError::OutOfRange)
            );
        }
        // Misaligned and odd-sized register accesses read 0, change nothing.
        dev.region_write(region::BAR0, 9, &[1, 0, 0, 0]).unwrap();
        dev.region_write(region::BAR0, 8, &[1, 0]).unwrap();
        dev.region_write(region::BAR0, 8, &[1, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        assert_eq!(rd(&mut dev, v2::INT_CONTROL), 0);
        let mut odd = [0xffu8; 3];
        dev.region_read(region::BAR0, 0, &mut odd).unwrap();
        assert_eq!(odd, [0; 3]);
        assert_eq!(stats.snapshot().bad_accesses, 4);
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Rng::new(0xfeed_beef);
        for protection in [Protection::MapAll, Protection::Strict] {
            let (mut dev, fabric, _) = setup(1, params(protection, true));
            for _ in 0..50_000 {
                let region = match rng.below(6) {
                    0 => region::BAR0,
                    1 => region::BAR1,
                    2 => region::BAR2,
                    3 => region::CONFIG,
                    _ => rng.next() as u32,
                };
                let offset = match rng.below(3) {
                    0 => rng.below(0x40),
                    1 => rng.below(0x10000),
                    _ => rng.next(),
                };
                let len = [0, 1, 2, 3, 4, 8, 16, 4096][rng.below(8) as usize];
                let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                match rng.below(10) {
                    0 => {
                        let mut out = vec![0u8; len];
                        let _ = dev.region_read(region, offset, &mut out);
                    }
                    1 => dev.reset(),
                    2 => {
                        let _ = dev.set_irqs(
                            rng.below(6) as u32,
                            rng.next() as u32,
                            rng.next() as u32,
                            rng.below(4) as u32,
                            vec![],
                        );
                    }
                    _ => {
                        let _ = dev.region_write(region, offset, &data);
                    }
                }
            }
            // Identity survives; the other peers' output section survives
            // in strict mode.
            assert_eq!(rd(&mut dev, v2::ID), 1);
            assert_eq!(rd(&mut dev, v2::MAX_PEERS), 3);
            let mut id = [0u8; 4];
            dev.region_read(region::CONFIG, 0, &mut id).unwrap();
            assert_eq!(id, [0x0a, 0x11, 0x06, 0x41]);
            if protection == Protection::Strict {
                let mut other = vec![0u8; PAGE as usize];
                fabric
                    .shm
                    .read_bytes(3 * PAGE as usize, &mut other)
                    .unwrap();
                assert!(other.iter().all(|&b| b == 0), "peer 0's output untouched");
            }
        }
    }
}
