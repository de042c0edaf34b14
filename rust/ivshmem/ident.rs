// SPDX-License-Identifier: GPL-2.0

//! Which ivshmem device is this: revision and protocol from PCI identity.
//!
//! Two device families speak "ivshmem":
//! - QEMU's ivshmem (here called v1), `1af4:1110`, class `0500` (RAM), as
//!   `ivshmem-plain` (no interrupts) and `ivshmem-doorbell` (MSI-X);
//! - ivshmem 2.0 (v2, Jailhouse), `110a:4106`, class base `ff`, whose 16-bit
//!   sub-class:prog-if field names the protocol spoken over the memory.
//!
//! The driver matches both IDs, then asks [`identify`] what it got.

use core::fmt;

/// PCI vendor ID of QEMU's ivshmem (Red Hat / Qumranet).
pub const V1_VENDOR: u16 = 0x1af4;
/// PCI device ID of QEMU's ivshmem.
pub const V1_DEVICE: u16 = 0x1110;
/// PCI vendor ID of ivshmem 2.0 (Siemens).
pub const V2_VENDOR: u16 = 0x110a;
/// PCI device ID of ivshmem 2.0.
pub const V2_DEVICE: u16 = 0x4106;
/// PCI class base of ivshmem 2.0 devices (`ff`: unassigned class).
pub const V2_CLASS_BASE: u8 = 0xff;

/// Register model of a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revision {
    /// QEMU ivshmem: no state register, no sections, one flat BAR2.
    V1,
    /// ivshmem 2.0: state register, state table, R/W and output sections.
    V2,
}

impl Revision {
    /// The revision as a number, as the character device ABI reports it.
    pub const fn number(self) -> u32 {
        match self {
            Revision::V1 => 1,
            Revision::V2 => 2,
        }
    }
}

/// The 16-bit protocol of an ivshmem 2.0 device (0 on QEMU's ivshmem).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol(pub u16);

/// What a [`Protocol`] value means (ivshmem 2.0 specification, "Protocols").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolKind {
    /// `0000`: undefined; raw shared memory.
    Undefined,
    /// `0001`: ivshmem-net (virtual Ethernet).
    Net,
    /// `0002`–`3FFF`: reserved.
    Reserved,
    /// `4000`–`7FFF`: user-defined.
    User,
    /// `8000`–`BFFF`: virtio front-end; the low bits are the virtio device ID.
    VirtioFrontend {
        /// virtio device ID (2 = block, 3 = console, ...).
        device_id: u16,
    },
    /// `C000`–`FFFF`: virtio back-end; the low bits are the virtio device ID.
    VirtioBackend {
        /// virtio device ID.
        device_id: u16,
    },
}

impl Protocol {
    /// Classifies the protocol value.
    pub const fn kind(self) -> ProtocolKind {
        match self.0 {
            0x0000 => ProtocolKind::Undefined,
            0x0001 => ProtocolKind::Net,
            0x0002..=0x3fff => ProtocolKind::Reserved,
            0x4000..=0x7fff => ProtocolKind::User,
            0x8000..=0xbfff => ProtocolKind::VirtioFrontend {
                device_id: self.0 & 0x3fff,
            },
            _ => ProtocolKind::VirtioBackend {
                device_id: self.0 & 0x3fff,
            },
        }
    }

    /// True when the virtio-over-ivshmem front-end driver (vdev-remote), not
    /// the generic ivshmem driver, should own a device with this protocol:
    /// virtio front-ends only. A virtio *back-end* (`C000`–`FFFF`) is served
    /// by a program, through `/dev/ivshmemN` of the generic driver.
    pub const fn is_virtio_frontend(self) -> bool {
        matches!(self.0, 0x8000..=0xbfff)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#06x}", self.0)
    }
}

/// Identity of a supported device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Register model.
    pub revision: Revision,
    /// Protocol (always [`ProtocolKind::Undefined`] on v1).
    pub protocol: Protocol,
}

/// Why a PCI function is not a supported ivshmem device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentError {
    /// Vendor/device pair is not an ivshmem device.
    UnknownDevice,
    /// `110a:4106` with a class other than `ff`: not an ivshmem 2.0 function.
    WrongClass,
}

impl fmt::Display for IdentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentError::UnknownDevice => f.write_str("not an ivshmem device"),
            IdentError::WrongClass => f.write_str("ivshmem 2.0 ID with a class other than ff"),
        }
    }
}

/// Identifies a device from its vendor and device IDs and its 24-bit class
/// code (`base << 16 | sub-class << 8 | prog-if`).
pub fn identify(vendor: u16, device: u16, class_code: u32) -> Result<Identity, IdentError> {
    match (vendor, device) {
        (V1_VENDOR, V1_DEVICE) => Ok(Identity {
            revision: Revision::V1,
            protocol: Protocol(0),
        }),
        (V2_VENDOR, V2_DEVICE) => {
            if (class_code >> 16) & 0xff != u32::from(V2_CLASS_BASE) {
                return Err(IdentError::WrongClass);
            }
            Ok(Identity {
                revision: Revision::V2,
                // CAST: masked to 16 bits.
                protocol: Protocol((class_code & 0xffff) as u16),
            })
        }
        _ => Err(IdentError::UnknownDevice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_is_undefined_protocol() {
        let id = identify(0x1af4, 0x1110, 0x05_00_00).unwrap();
        assert_eq!(id.revision, Revision::V1);
        assert_eq!(id.protocol.kind(), ProtocolKind::Undefined);
        assert!(!id.protocol.is_virtio_frontend());
    }

    #[test]
    fn v2_protocol_from_class() {
        let id = identify(0x110a, 0x4106, 0xff_80_02).unwrap();
        assert_eq!(id.revision, Revision::V2);
        assert_eq!(id.protocol, Protocol(0x8002));
        assert_eq!(
            id.protocol.kind(),
            ProtocolKind::VirtioFrontend { device_id: 2 }
        );
        assert!(id.protocol.is_virtio_frontend());
    }

    #[test]
    fn v2_wrong_class_rejected() {
        assert_eq!(
            identify(0x110a, 0x4106, 0x05_00_00),
            Err(IdentError::WrongClass)
        );
    }

    #[test]
    fn unknown_device_rejected() {
        assert_eq!(identify(0x8086, 0x1110, 0), Err(IdentError::UnknownDevice));
        assert_eq!(identify(0x1af4, 0x1000, 0), Err(IdentError::UnknownDevice));
    }

    #[test]
    fn protocol_ranges() {
        let k = |v| Protocol(v).kind();
        assert_eq!(k(0), ProtocolKind::Undefined);
        assert_eq!(k(1), ProtocolKind::Net);
        assert_eq!(k(0x3fff), ProtocolKind::Reserved);
        assert_eq!(k(0x4000), ProtocolKind::User);
        assert_eq!(k(0x7fff), ProtocolKind::User);
        assert_eq!(k(0x8003), ProtocolKind::VirtioFrontend { device_id: 3 });
        assert_eq!(
            k(0xbfff),
            ProtocolKind::VirtioFrontend { device_id: 0x3fff }
        );
        assert_eq!(k(0xc002), ProtocolKind::VirtioBackend { device_id: 2 });
        assert!(!Protocol(0x7fff).is_virtio_frontend());
        assert!(Protocol(0x8000).is_virtio_frontend());
        assert!(Protocol(0xbfff).is_virtio_frontend());
        // Back-end protocols get the generic driver (a backend program
        // needs /dev/ivshmemN), not vdev_remote, which takes none of them.
        assert!(!Protocol(0xc000).is_virtio_frontend());
        assert!(!Protocol(0xc002).is_virtio_frontend());
        assert!(!Protocol(0xffff).is_virtio_frontend());
    }
}
