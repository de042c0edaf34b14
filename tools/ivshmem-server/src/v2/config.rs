// SPDX-License-Identifier: GPL-2.0
//! The PCI configuration space of the ivshmem 2.0 function.
//!
//! ```text
//! 00 110a:4106   04 command/status   08 rev 0, class ff:PROTOCOL
//! 10 BAR0  registers, 32-bit memory, 4 KiB
//! 14 BAR1  MSI-X table (offset 0) and PBA (offset 800h), 32-bit memory, 4 KiB
//! 18 BAR2  shared memory, 64-bit prefetchable (with BAR3), a power of two
//! 34 capabilities pointer -> 40
//! 40 vendor capability (09h, 18h bytes)  -> 60
//! 60 MSI-X capability (11h)              -> end
//! ```
//!
//! Writes change only the bits a driver may change (command, BAR address
//! bits, interrupt line, MSI-X enable and function mask); everything else
//! is read-only, and writes to it are ignored, as on real hardware. The
//! vendor capability's privileged control byte belongs to whoever started
//! the device (`--one-shot`) and is read-only to the guest.

use lincell_shared::ivshmem::ident::{V2_CLASS_BASE, V2_DEVICE, V2_VENDOR};
use lincell_shared::ivshmem::layout::SectionSizes;
use lincell_shared::ivshmem::vendor_cap::{self, V2Capability};

use super::DeviceError;

/// Size of the configuration space (conventional PCI).
pub const CONFIG_SIZE: usize = 256;
/// Size of BAR0 (the registers) and BAR1 (MSI-X).
pub const REG_BAR_SIZE: u64 = 0x1000;
/// Offset of the MSI-X pending bit array in BAR1.
pub const MSIX_PBA_OFFSET: u64 = 0x800;
/// Most MSI-X vectors the device offers (table and PBA fit BAR1).
pub const MAX_VECTORS: u16 = 64;
/// Offset of the vendor capability.
pub const VENDOR_CAP: usize = 0x40;
/// Offset of the MSI-X capability.
pub const MSIX_CAP: usize = 0x60;

/// Configuration space offsets of the standard header used here.
mod hdr {
    pub(super) const VENDOR: usize = 0x00;
    pub(super) const DEVICE: usize = 0x02;
    pub(super) const COMMAND: usize = 0x04;
    pub(super) const STATUS: usize = 0x06;
    pub(super) const REVISION: usize = 0x08;
    pub(super) const PROG_IF: usize = 0x09;
    pub(super) const SUBCLASS: usize = 0x0a;
    pub(super) const CLASS: usize = 0x0b;
    pub(super) const CACHE_LINE: usize = 0x0c;
    pub(super) const LATENCY: usize = 0x0d;
    pub(super) const BAR0: usize = 0x10;
    pub(super) const BAR1: usize = 0x14;
    pub(super) const BAR2: usize = 0x18;
    pub(super) const SUBSYS_VENDOR: usize = 0x2c;
    pub(super) const SUBSYS_ID: usize = 0x2e;
    pub(super) const CAP_PTR: usize = 0x34;
    pub(super) const INT_LINE: usize = 0x3c;
    /// Status bit: the capability list exists.
    pub(super) const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Command bits a driver may set: memory space, bus master, INTx disable.
    pub(super) const COMMAND_WRITABLE: u16 = (1 << 1) | (1 << 2) | (1 << 10);
    /// BAR type: 64-bit, prefetchable memory.
    pub(super) const BAR_MEM64_PREFETCH: u32 = 0b1100;
}

/// PCI capability ID of MSI-X.
const CAP_ID_MSIX: u8 = 0x11;

/// What the configuration space describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigParams {
    /// Protocol (sub-class:prog-if).
    pub protocol: u16,
    /// MSI-X vectors, 1..=[`MAX_VECTORS`].
    pub vectors: u16,
    /// Size of BAR2 (a power of two, at least 4 KiB).
    pub bar2_size: u64,
    /// Section sizes for the vendor capability.
    pub sizes: SectionSizes,
    /// Privileged control bit 0.
    pub one_shot: bool,
}

/// The configuration space: current bytes and which bits are writable.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    initial: [u8; CONFIG_SIZE],
    bytes: [u8; CONFIG_SIZE],
    wmask: [u8; CONFIG_SIZE],
}

fn put16(b: &mut [u8; CONFIG_SIZE], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8; CONFIG_SIZE], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// The checked range `[offset, offset + len)` of a region of `size` bytes.
pub(crate) fn range(offset: u64, len: usize, size: u64) -> Result<(usize, usize), DeviceError> {
    let len64 = u64::try_from(len).map_err(|_| DeviceError::OutOfRange)?;
    let end = offset.checked_add(len64).ok_or(DeviceError::OutOfRange)?;
    if end > size {
        return Err(DeviceError::OutOfRange);
    }
    let start = usize::try_from(offset).map_err(|_| DeviceError::OutOfRange)?;
    Ok((start, start + len))
}

impl ConfigSpace {
    /// Builds the configuration space of a device with `params`.
    pub fn new(params: &ConfigParams) -> Result<Self, DeviceError> {
        if !(1..=MAX_VECTORS).contains(&params.vectors) {
            return Err(DeviceError::BadParameter("vectors must be 1..=64"));
        }
        if !params.bar2_size.is_power_of_two() || params.bar2_size < REG_BAR_SIZE {
            return Err(DeviceError::BadParameter(
                "BAR2 size must be a power of two of at least 4 KiB",
            ));
        }
        let mut b = [0u8; CONFIG_SIZE];
        let mut w = [0u8; CONFIG_SIZE];
        put16(&mut b, hdr::VENDOR, V2_VENDOR);
        put16(&mut b, hdr::DEVICE, V2_DEVICE);
        put16(&mut b, hdr::STATUS, hdr::STATUS_CAP_LIST);
        put16(&mut w, hdr::COMMAND, hdr::COMMAND_WRITABLE);
        b[hdr::REVISION] = 0;
        let [prog_if, subclass] = params.protocol.to_le_bytes();
        b[hdr::PROG_IF] = prog_if;
        b[hdr::SUBCLASS] = subclass;
        b[hdr::CLASS] = V2_CLASS_BASE;
        w[hdr::CACHE_LINE] = 0xff;
        w[hdr::LATENCY] = 0xff;
        // BAR0 and BAR1: 32-bit memory, address bits above the size writable.
        // CAST: REG_BAR_SIZE is 4 KiB.
        let reg_mask = !(REG_BAR_SIZE as u32 - 1);
        put32(&mut w, hdr::BAR0, reg_mask);
        put32(&mut w, hdr::BAR1, reg_mask);
        // BAR2/3: 64-bit prefetchable.
        put32(&mut b, hdr::BAR2, hdr::BAR_MEM64_PREFETCH);
        let mask64 = !(params.bar2_size - 1);
        // CAST: the low and high halves of a 64-bit mask.
        put32(&mut w, hdr::BAR2, (mask64 as u32) & !0xf);
        put32(&mut w, hdr::BAR2 + 4, (mask64 >> 32) as u32);
        put16(&mut b, hdr::SUBSYS_VENDOR, V2_VENDOR);
        put16(&mut b, hdr::SUBSYS_ID, V2_DEVICE);
        // CAST: capability offsets are below 256.
        b[hdr::CAP_PTR] = VENDOR_CAP as u8;
        w[hdr::INT_LINE] = 0xff;
        // Interrupt pin stays 0: with MSI-X the device has no INTx.

        let cap = V2Capability {
            sizes: params.sizes,
            base: None,
            one_shot: params.one_shot,
        }
        .encode(MSIX_CAP as u8)
        .map_err(|_| DeviceError::BadParameter("state table too large"))?;
        let cap_len = usize::from(vendor_cap::LEN_WITHOUT_BASE);
        b[VENDOR_CAP..VENDOR_CAP + cap_len].copy_from_slice(&cap[..cap_len]);

        b[MSIX_CAP] = CAP_ID_MSIX;
        b[MSIX_CAP + 1] = 0;
        // Message control: table size N-1; enable (15) and function mask
        // (14) writable.
        put16(&mut b, MSIX_CAP + 2, params.vectors - 1);
        put16(&mut w, MSIX_CAP + 2, 0xc000);
        // Table at BAR1 offset 0, PBA at BAR1 offset 800h (BIR 1).
        put32(&mut b, MSIX_CAP + 4, 1);
        // CAST: MSIX_PBA_OFFSET is 800h.
        put32(&mut b, MSIX_CAP + 8, MSIX_PBA_OFFSET as u32 | 1);

        Ok(Self {
            initial: b,
            bytes: b,
            wmask: w,
        })
    }

    /// Copies `data.len()` bytes at `offset` out of the configuration space.
    pub fn read(&self, offset: u64, data: &mut [u8]) -> Result<(), DeviceError> {
        // CAST: CONFIG_SIZE is 256.
        let (start, end) = range(offset, data.len(), CONFIG_SIZE as u64)?;
        data.copy_from_slice(&self.bytes[start..end]);
        Ok(())
    }

    /// Writes `data` at `offset`, changing only the writable bits.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        // CAST: CONFIG_SIZE is 256.
        let (start, end) = range(offset, data.len(), CONFIG_SIZE as u64)?;
        for (i, v) in (start..end).zip(data) {
            let m = self.wmask[i];
            self.bytes[i] = (self.bytes[i] & !m) | (v & m);
        }
        Ok(())
    }

    /// Back to the power-on values.
    pub fn reset(&mut self) {
        self.bytes = self.initial;
    }

    /// Whether the driver has enabled MSI-X.
    pub fn msix_enabled(&self) -> bool {
        self.bytes[MSIX_CAP + 3] & 0x80 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::testutil::Rng;

    fn params() -> ConfigParams {
        ConfigParams {
            protocol: 0x8002,
            vectors: 4,
            bar2_size: 1 << 20,
            sizes: SectionSizes {
                state_table: 0x1000,
                rw: 0x4000,
                output: 0x2000,
            },
            one_shot: true,
        }
    }

    fn r8(c: &ConfigSpace, at: usize) -> u8 {
        let mut b = [0u8; 1];
        c.read(at as u64, &mut b).unwrap();
        b[0]
    }

    fn r16(c: &ConfigSpace, at: usize) -> u16 {
        let mut b = [0u8; 2];
        c.read(at as u64, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    fn r32(c: &ConfigSpace, at: usize) -> u32 {
        let mut b = [0u8; 4];
        c.read(at as u64, &mut b).unwrap();
        u32::from_le_bytes(b)
    }

    fn w32(c: &mut ConfigSpace, at: usize, v: u32) {
        c.write(at as u64, &v.to_le_bytes()).unwrap();
    }

    #[test]
    fn identity_and_class() {
        let c = ConfigSpace::new(&params()).unwrap();
        assert_eq!((r16(&c, 0), r16(&c, 2)), (0x110a, 0x4106));
        assert_eq!(r8(&c, 8), 0, "revision 0");
        assert_eq!(r32(&c, 8) >> 8, 0xff_80_02, "class ff, protocol 8002");
        assert_eq!(r8(&c, 0x3d), 0, "no INTx pin");
        assert_ne!(r16(&c, 6) & (1 << 4), 0, "capability list");
    }

    #[test]
    fn bar_types_and_sizing() {
        let mut c = ConfigSpace::new(&params()).unwrap();
        for bar in [0x10, 0x14] {
            assert_eq!(r32(&c, bar), 0, "32-bit memory, not prefetchable");
            w32(&mut c, bar, 0xffff_ffff);
            assert_eq!(r32(&c, bar), 0xffff_f000, "4 KiB");
        }
        assert_eq!(r32(&c, 0x18) & 0xf, 0xc, "64-bit prefetchable");
        w32(&mut c, 0x18, 0xffff_ffff);
        w32(&mut c, 0x1c, 0xffff_ffff);
        assert_eq!(r32(&c, 0x18), 0xfff0_000c, "1 MiB");
        assert_eq!(r32(&c, 0x1c), 0xffff_ffff);
        for bar in [0x20, 0x24, 0x30] {
            w32(&mut c, bar, 0xffff_ffff);
            assert_eq!(r32(&c, bar), 0, "unimplemented BAR / ROM");
        }
        w32(&mut c, 0x18, 0xfe00_0000);
        w32(&mut c, 0x1c, 0x1);
        assert_eq!((r32(&c, 0x18), r32(&c, 0x1c)), (0xfe00_000c, 1));
        c.reset();
        assert_eq!(r32(&c, 0x18), 0xc);
    }

    #[test]
    fn capability_list_walk() {
        let c = ConfigSpace::new(&params()).unwrap();
        let mut found = Vec::new();
        let mut at = usize::from(r8(&c, 0x34));
        while at != 0 {
            assert!(found.len() < 48, "capability list loops");
            found.push((r8(&c, at), at));
            at = usize::from(r8(&c, at + 1));
        }
        assert_eq!(found, vec![(0x09, 0x40), (0x11, 0x60)]);
        let mut cap = [0u8; 0x20];
        c.read(0x40, &mut cap).unwrap();
        let v = vendor_cap::parse(&cap).unwrap();
        assert_eq!(v.sizes, params().sizes);
        assert_eq!((v.base, v.one_shot), (None, true));
        assert_eq!(r8(&c, 0x42), 0x18);
        // MSI-X: 4 vectors, table BIR 1 offset 0, PBA BIR 1 offset 800h.
        assert_eq!(r16(&c, 0x62) & 0x7ff, 3);
        assert_eq!(r32(&c, 0x64), 1);
        assert_eq!(r32(&c, 0x68), 0x801);
    }

    #[test]
    fn writable_bits_only() {
        let mut c = ConfigSpace::new(&params()).unwrap();
        c.write(4, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(r16(&c, 4), 0x0406);
        c.write(0x62, &0xffffu16.to_le_bytes()).unwrap();
        assert_eq!(r16(&c, 0x62), 0xc003);
        assert!(c.msix_enabled());
        // The vendor capability, IDs and class are read-only.
        let before: Vec<u8> = (0..0x60).map(|i| r8(&c, i)).collect();
        c.write(0x40, &[0xff; 0x20]).unwrap();
        c.write(0, &[0xff; 0x0c]).unwrap();
        let after: Vec<u8> = (0..0x60).map(|i| r8(&c, i)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn out_of_range_accesses_are_errors() {
        let mut c = ConfigSpace::new(&params()).unwrap();
        let mut b = [0u8; 4];
        assert_eq!(c.read(254, &mut b), Err(DeviceError::OutOfRange));
        assert_eq!(c.read(u64::MAX, &mut b), Err(DeviceError::OutOfRange));
        assert_eq!(c.write(256, &b), Err(DeviceError::OutOfRange));
        assert_eq!(c.write(u64::MAX - 1, &b), Err(DeviceError::OutOfRange));
        assert!(c.read(255, &mut b[..1]).is_ok());
        assert!(c.read(0, &mut []).is_ok());
    }

    #[test]
    fn random_writes_never_break_the_identity() {
        let mut rng = Rng::new(0x1234_5678);
        let mut c = ConfigSpace::new(&params()).unwrap();
        for _ in 0..20_000 {
            let offset = rng.below(300);
            let len = rng.below(12) as usize;
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = c.write(offset, &data);
            let mut out = vec![0u8; len];
            let _ = c.read(offset, &mut out);
        }
        assert_eq!(
            (r16(&c, 0), r16(&c, 2), r32(&c, 8) >> 8),
            (0x110a, 0x4106, 0xff_80_02)
        );
        assert_eq!(r8(&c, 0x34), 0x40);
        assert_eq!(r32(&c, 0x18) & 0xf, 0xc);
    }

    #[test]
    fn bad_parameters() {
        let mut p = params();
        p.vectors = 0;
        assert!(ConfigSpace::new(&p).is_err());
        p.vectors = 65;
        assert!(ConfigSpace::new(&p).is_err());
        p = params();
        p.bar2_size = 3 << 20;
        assert!(ConfigSpace::new(&p).is_err());
        p.bar2_size = 1024;
        assert!(ConfigSpace::new(&p).is_err());
    }
}
