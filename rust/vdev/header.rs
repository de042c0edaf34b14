// SPDX-License-Identifier: GPL-2.0

//! The virtio-over-ivshmem register header (Jailhouse's `virtio_ivshmem`
//! wire layout), shared by the frontend (`vdev_remote.ko`) and the backend
//! (`lincell remote serve`).
//!
//! The header sits at offset 0 of the ivshmem R/W section. Every field is
//! little-endian and naturally aligned:
//!
//! ```text
//! 0x00 u32 revision            >= 1, written by the backend
//! 0x04 u32 size                bytes of header + device config (backend)
//! 0x08 u32 write_transaction   offset of the field the frontend just wrote; 0 = idle
//! 0x0c u32 device_features     window selected by device_features_sel (backend)
//! 0x10 u32 device_features_sel
//! 0x14 u32 driver_features     window selected by driver_features_sel
//! 0x18 u32 driver_features_sel
//! 0x1c u32 queue_sel
//! 0x20 u16 queue_size          backend: the maximum; frontend: what it uses
//! 0x22 u16 queue_device_vector backend: the vector the frontend rings to kick
//! 0x24 u16 queue_driver_vector frontend: the vector the backend rings on completion
//! 0x26 u16 queue_enable
//! 0x28 u64 queue_desc          offsets from the start of the R/W section
//! 0x30 u64 queue_driver
//! 0x38 u64 queue_device
//! 0x40 u8  config_event        backend sets bit 0 before ringing vector 0 for a config change
//! 0x41 u8  queue_event         backend sets bit 0 before ringing a shared queue vector
//! 0x42 u8[2] reserved
//! 0x44 u32 device_status
//! 0x48 u32 config_generation   odd while the backend updates the config
//! 0x4c ... device config       (size - 0x4c bytes)
//! ```
//!
//! The frontend writes a field in three steps: wait until
//! `write_transaction` is 0, store the field, store the field's offset into
//! `write_transaction`, ring the backend's vector 0. The backend applies the
//! write (for `queue_sel`, `*_features_sel` it updates the fields it
//! presents) and clears `write_transaction`. Peers are ready when their
//! ivshmem state is [`STATE_READY`]; a backend leaving that state breaks the
//! device.

/// ivshmem peer state of a ready frontend or backend.
pub const STATE_READY: u32 = 1;
/// Header revision this code speaks.
pub const REVISION: u32 = 1;
/// Bytes before the device config.
pub const CONFIG_OFFSET: usize = 0x4c;
/// Largest device config either side accepts (virtio-blk needs 0x3c,
/// virtio-console 0x0c, virtio-net 0x20).
pub const MAX_CONFIG: usize = 0x100;
/// Largest header (`size`) a frontend accepts.
pub const MAX_HEADER_SIZE: usize = CONFIG_OFFSET + MAX_CONFIG;
/// Bytes at the start of the R/W section that belong to the header: the
/// backend clears and owns them at start-up, and the frontend never places
/// bounce buffers or rings there.
pub const HEADER_AREA: usize = 4096;
const _: () = assert!(MAX_HEADER_SIZE <= HEADER_AREA);
/// ivshmem 2.0 protocol range of a virtio frontend: `0x8000 | device id`.
pub const PROTOCOL_VIRTIO_FRONTEND: u16 = 0x8000;
/// ivshmem 2.0 protocol range of a virtio backend: `0xc000 | device id`.
pub const PROTOCOL_VIRTIO_BACKEND: u16 = 0xc000;
/// Mask of the virtio device id in a protocol value.
pub const PROTOCOL_DEVICE_ID_MASK: u16 = 0x3fff;

/// Field offsets.
pub mod off {
    /// `revision` (u32).
    pub const REVISION: usize = 0x00;
    /// `size` (u32).
    pub const SIZE: usize = 0x04;
    /// `write_transaction` (u32).
    pub const WRITE_TRANSACTION: usize = 0x08;
    /// `device_features` (u32).
    pub const DEVICE_FEATURES: usize = 0x0c;
    /// `device_features_sel` (u32).
    pub const DEVICE_FEATURES_SEL: usize = 0x10;
    /// `driver_features` (u32).
    pub const DRIVER_FEATURES: usize = 0x14;
    /// `driver_features_sel` (u32).
    pub const DRIVER_FEATURES_SEL: usize = 0x18;
    /// `queue_sel` (u32).
    pub const QUEUE_SEL: usize = 0x1c;
    /// `queue_size` (u16).
    pub const QUEUE_SIZE: usize = 0x20;
    /// `queue_device_vector` (u16).
    pub const QUEUE_DEVICE_VECTOR: usize = 0x22;
    /// `queue_driver_vector` (u16).
    pub const QUEUE_DRIVER_VECTOR: usize = 0x24;
    /// `queue_enable` (u16).
    pub const QUEUE_ENABLE: usize = 0x26;
    /// `queue_desc` (u64).
    pub const QUEUE_DESC: usize = 0x28;
    /// `queue_driver` (u64): the avail ring.
    pub const QUEUE_DRIVER: usize = 0x30;
    /// `queue_device` (u64): the used ring.
    pub const QUEUE_DEVICE: usize = 0x38;
    /// `config_event` (u8).
    pub const CONFIG_EVENT: usize = 0x40;
    /// `queue_event` (u8).
    pub const QUEUE_EVENT: usize = 0x41;
    /// `device_status` (u32).
    pub const DEVICE_STATUS: usize = 0x44;
    /// `config_generation` (u32).
    pub const CONFIG_GENERATION: usize = 0x48;
}

/// Width in bytes of a field the frontend may write through a
/// `write_transaction`, or `None` if the offset names no such field (the
/// backend must ignore such a transaction). Offsets inside the device
/// config (`CONFIG_OFFSET..config_end`) are writable with any width of 1, 2,
/// 4 or 8 that stays inside the config; the backend checks that itself
/// because only it knows the width the frontend used.
pub const fn writable_field_width(offset: usize) -> Option<usize> {
    match offset {
        off::DEVICE_FEATURES_SEL
        | off::DRIVER_FEATURES
        | off::DRIVER_FEATURES_SEL
        | off::QUEUE_SEL
        | off::DEVICE_STATUS => Some(4),
        off::QUEUE_SIZE | off::QUEUE_DRIVER_VECTOR | off::QUEUE_ENABLE => Some(2),
        off::QUEUE_DESC | off::QUEUE_DRIVER | off::QUEUE_DEVICE => Some(8),
        _ => None,
    }
}

/// Feature bits the transport requires or forbids (bit numbers).
pub mod feature {
    /// `VIRTIO_RING_F_INDIRECT_DESC`.
    pub const INDIRECT_DESC: u32 = 28;
    /// `VIRTIO_RING_F_EVENT_IDX`.
    pub const EVENT_IDX: u32 = 29;
    /// `VIRTIO_F_VERSION_1`.
    pub const VERSION_1: u32 = 32;
    /// `VIRTIO_F_ACCESS_PLATFORM`: buffers are "DMA" addresses, here offsets
    /// into the R/W section.
    pub const ACCESS_PLATFORM: u32 = 33;
    /// `VIRTIO_F_RING_PACKED`.
    pub const RING_PACKED: u32 = 34;
    /// `VIRTIO_F_IN_ORDER`: the device may return a batch of buffers with
    /// one used entry (for the last), which the shadow ring, which
    /// validates and copies every used entry, does not implement.
    pub const IN_ORDER: u32 = 35;
    /// `VIRTIO_F_ORDER_PLATFORM`.
    pub const ORDER_PLATFORM: u32 = 36;
    /// `VIRTIO_F_NOTIFICATION_DATA`.
    pub const NOTIFICATION_DATA: u32 = 38;

    /// Features a backend must offer.
    pub const REQUIRED: u64 = 1 << VERSION_1 | 1 << ACCESS_PLATFORM;
    /// Transport features lincell's frontend does not implement (it copies
    /// split rings between private and shared memory, descriptor by
    /// descriptor), so it never accepts them even if offered.
    pub const UNSUPPORTED: u64 = 1 << INDIRECT_DESC
        | 1 << EVENT_IDX
        | 1 << RING_PACKED
        | 1 << IN_ORDER
        | 1 << NOTIFICATION_DATA;
}

/// Why a header cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// `revision` is 0 (backend not initialized) or unknown.
    BadRevision(u32),
    /// `size` is smaller than the fixed part, larger than
    /// [`MAX_HEADER_SIZE`] or larger than the section.
    BadSize(u32),
}

impl core::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HeaderError::BadRevision(r) => write!(f, "virtio header revision {r} (need >= 1)"),
            HeaderError::BadSize(s) => write!(f, "virtio header size {s:#x} out of range"),
        }
    }
}

/// Checks the two fields a frontend reads before anything else, as read
/// from shared memory, against a section of `section_len` bytes. Returns the
/// device config length.
pub fn check_header(revision: u32, size: u32, section_len: u64) -> Result<usize, HeaderError> {
    if revision < REVISION {
        return Err(HeaderError::BadRevision(revision));
    }
    // CAST: u32 to usize does not truncate on the targets lincell supports.
    let len = size as usize;
    if !(CONFIG_OFFSET..=MAX_HEADER_SIZE).contains(&len) || u64::from(size) > section_len {
        return Err(HeaderError::BadSize(size));
    }
    Ok(len - CONFIG_OFFSET)
}

/// Whether a config access of `len` bytes at config offset `offset` stays
/// inside a config of `config_len` bytes and has a width virtio uses.
pub fn config_access_ok(offset: usize, len: usize, config_len: usize) -> bool {
    matches!(len, 1 | 2 | 4 | 8) && offset.checked_add(len).is_some_and(|end| end <= config_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_jailhouse_layout() {
        assert_eq!(off::QUEUE_SIZE, 0x20);
        assert_eq!(off::QUEUE_DESC, 0x28);
        assert_eq!(off::CONFIG_EVENT, 0x40);
        assert_eq!(off::DEVICE_STATUS, 0x44);
        assert_eq!(off::CONFIG_GENERATION + 4, CONFIG_OFFSET);
    }

    #[test]
    fn writable_fields() {
        assert_eq!(writable_field_width(off::QUEUE_DESC), Some(8));
        assert_eq!(writable_field_width(off::QUEUE_ENABLE), Some(2));
        assert_eq!(writable_field_width(off::DEVICE_STATUS), Some(4));
        // Backend-owned fields and odd offsets are not frontend writes.
        for o in [
            off::REVISION,
            off::SIZE,
            off::WRITE_TRANSACTION,
            off::DEVICE_FEATURES,
            off::QUEUE_DEVICE_VECTOR,
            0x29,
            0x1000,
        ] {
            assert_eq!(writable_field_width(o), None, "offset {o:#x}");
        }
    }

    #[test]
    fn header_checks() {
        assert_eq!(check_header(1, 0x4c + 0x3c, 1 << 20), Ok(0x3c));
        assert_eq!(
            check_header(0, 0x88, 1 << 20),
            Err(HeaderError::BadRevision(0))
        );
        assert_eq!(
            check_header(1, 0x40, 1 << 20),
            Err(HeaderError::BadSize(0x40))
        );
        assert_eq!(
            check_header(1, 0x1000, 1 << 20),
            Err(HeaderError::BadSize(0x1000))
        );
        assert_eq!(check_header(1, 0x88, 0x80), Err(HeaderError::BadSize(0x88)));
        assert_eq!(
            check_header(1, u32::MAX, u64::MAX),
            Err(HeaderError::BadSize(u32::MAX))
        );
    }

    #[test]
    fn config_access() {
        assert!(config_access_ok(0, 8, 0x3c));
        assert!(config_access_ok(0x38, 4, 0x3c));
        assert!(!config_access_ok(0x39, 4, 0x3c));
        assert!(!config_access_ok(0, 3, 0x3c));
        assert!(!config_access_ok(usize::MAX, 1, 0x3c));
    }
}
