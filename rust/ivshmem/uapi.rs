// SPDX-License-Identifier: GPL-2.0

//! The `/dev/ivshmemN` user ABI, shared by the driver and the tools.
//!
//! This is the Rust twin of `include/uapi/lincell/ivshmem.h`; the host test
//! `abi_matches_c_header` compiles the header with the C compiler and checks
//! every size, offset and ioctl number against these definitions. The
//! contract is documented in `Documentation/ivshmem-abi.md`.
//!
//! All structures are `repr(C)`, naturally aligned, with explicit padding, so
//! their layout is the same on every 64-bit and 32-bit Linux target; values
//! are native-endian (they never leave the machine).

/// ioctl "type" byte of the ivshmem device (not used by any in-tree driver).
pub const IOC_MAGIC: u32 = 0xbe;

/// Highest number of interrupt vectors the driver handles per device
/// (QEMU's ivshmem-doorbell allows 64; `read` reports them as a `u64` mask).
pub const MAX_VECTORS: u32 = 64;

/// Device info flag: the device has interrupt vectors (doorbells work).
pub const INFO_DOORBELL: u32 = 1 << 0;
/// Device info flag: one-shot interrupt mode is on (v2); `read` re-enables
/// interrupts.
pub const INFO_ONESHOT: u32 = 1 << 1;
/// Device info flag: the section fields describe a state table, R/W and
/// output sections; when clear, the whole region is one R/W section.
pub const INFO_SECTIONS: u32 = 1 << 2;

/// `IVSHMEM_IOCTL_INFO`: what the device is and where its sections are.
///
/// Section offsets are byte offsets both in the shared memory and as `mmap`
/// offsets on the character device.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// 1 (QEMU ivshmem) or 2 (ivshmem 2.0).
    pub revision: u32,
    /// Own peer id.
    pub own_id: u32,
    /// Number of peers, including this one.
    pub max_peers: u32,
    /// Number of interrupt vectors (0 without interrupts).
    pub vectors: u32,
    /// Protocol (v2 class code low 16 bits; 0 on v1).
    pub protocol: u32,
    /// `INFO_*` flags.
    pub flags: u32,
    /// Size of the whole shared-memory region in bytes.
    pub shmem_size: u64,
    /// Offset of the state table.
    pub state_table_offset: u64,
    /// Size of the state table (0 when there is none).
    pub state_table_size: u64,
    /// Offset of the common R/W section.
    pub rw_offset: u64,
    /// Size of the R/W section.
    pub rw_size: u64,
    /// Offset of peer 0's output section; peer `n`'s is at
    /// `output_offset + n * output_size`.
    pub output_offset: u64,
    /// Size of one output section (0 when there are none).
    pub output_size: u64,
}

/// `IVSHMEM_IOCTL_RING`: raise `vector` on `peer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ring {
    /// Target peer id.
    pub peer: u32,
    /// Vector to raise.
    pub vector: u32,
}

/// Argument of the array ioctls (`PEER_STATES`, `COUNTERS`): a user buffer
/// of `count` elements. The driver fills `min(count, available)` elements
/// and writes the number available back into `count`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArrayArg {
    /// User address of the buffer.
    pub ptr: u64,
    /// Elements in the buffer (in), elements available (out).
    pub count: u32,
    /// Must be 0.
    pub reserved: u32,
}

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// The generic Linux `_IOC()` encoding (x86, arm64, riscv, ...).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    // CAST: every ABI structure is far below the 14-bit size limit.
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | (IOC_MAGIC << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
}

/// Fills a [`DeviceInfo`].
pub const IOCTL_INFO: u32 = ioc(IOC_READ, 0x00, core::mem::size_of::<DeviceInfo>());
/// Rings a doorbell ([`Ring`]).
pub const IOCTL_RING: u32 = ioc(IOC_WRITE, 0x01, core::mem::size_of::<Ring>());
/// Sets the own state (`u32`); peers get vector 0.
pub const IOCTL_SET_STATE: u32 = ioc(IOC_WRITE, 0x02, core::mem::size_of::<u32>());
/// Reads the own state (`u32`).
pub const IOCTL_GET_STATE: u32 = ioc(IOC_READ, 0x03, core::mem::size_of::<u32>());
/// Reads every peer's state (`u32` each) into an [`ArrayArg`] buffer.
pub const IOCTL_PEER_STATES: u32 =
    ioc(IOC_READ | IOC_WRITE, 0x04, core::mem::size_of::<ArrayArg>());
/// Reads the per-vector interrupt counters (`u64` each) into an
/// [`ArrayArg`] buffer.
pub const IOCTL_COUNTERS: u32 = ioc(IOC_READ | IOC_WRITE, 0x05, core::mem::size_of::<ArrayArg>());

/// Bytes `read()` returns: a `u64` mask of the vectors that fired since the
/// previous `read()` on the same open file.
pub const READ_SIZE: usize = core::mem::size_of::<u64>();

/// The vectors whose counters moved since `seen`, as a bit mask, and
/// `seen` brought up to date.
///
/// Both slices are indexed by vector; extra entries on either side are
/// ignored (the driver keeps [`MAX_VECTORS`] counters).
pub fn take_pending(counters: &[u64], seen: &mut [u64]) -> u64 {
    let mut mask = 0u64;
    for (v, (now, old)) in counters.iter().zip(seen.iter_mut()).enumerate().take(64) {
        if *now != *old {
            mask |= 1 << v;
            *old = *now;
        }
    }
    mask
}

/// True when some counter moved since `seen` (what `poll` reports).
pub fn any_pending(counters: &[u64], seen: &[u64]) -> bool {
    counters.iter().zip(seen).any(|(now, old)| now != old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_sizes_are_fixed() {
        assert_eq!(core::mem::size_of::<DeviceInfo>(), 80);
        assert_eq!(core::mem::align_of::<DeviceInfo>(), 8);
        assert_eq!(core::mem::size_of::<Ring>(), 8);
        assert_eq!(core::mem::size_of::<ArrayArg>(), 16);
    }

    #[test]
    fn ioctl_numbers_use_the_generic_encoding() {
        // _IOR(0xbe, 0, 80) and _IOW(0xbe, 1, 8), worked out by hand.
        assert_eq!(IOCTL_INFO, 0x8050_be00);
        assert_eq!(IOCTL_RING, 0x4008_be01);
        assert_eq!(IOCTL_SET_STATE, 0x4004_be02);
        assert_eq!(IOCTL_GET_STATE, 0x8004_be03);
        assert_eq!(IOCTL_PEER_STATES, 0xc010_be04);
        assert_eq!(IOCTL_COUNTERS, 0xc010_be05);
    }

    #[test]
    fn pending_mask_reports_each_moved_counter_once() {
        let mut seen = [0u64; 4];
        assert_eq!(take_pending(&[0, 2, 0, 1], &mut seen), 0b1010);
        assert_eq!(seen, [0, 2, 0, 1]);
        assert_eq!(take_pending(&[0, 2, 0, 1], &mut seen), 0);
        assert!(!any_pending(&[0, 2, 0, 1], &seen));
        assert!(any_pending(&[1, 2, 0, 1], &seen));
        assert_eq!(take_pending(&[1, 2, 0, 1], &mut seen), 0b0001);
    }

    #[test]
    fn pending_mask_covers_64_vectors_and_ignores_extra() {
        let counters = [1u64; 70];
        let mut seen = [0u64; 70];
        assert_eq!(take_pending(&counters, &mut seen), u64::MAX);
        assert_eq!(seen[63], 1);
        assert_eq!(seen[64], 0, "vectors past 63 are not tracked");
    }
}
