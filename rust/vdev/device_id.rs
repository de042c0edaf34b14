// SPDX-License-Identifier: GPL-2.0

//! Which virtio device a backend may make the frontend register.
//!
//! The device type decides which guest driver binds (and so which kernel
//! code a backend gets to talk to): on QEMU's ivshmem it comes from the
//! backend itself (the v1 layout header's `protocol`), on ivshmem 2.0 from
//! the device's protocol. A hostile backend must not be able to bind
//! balloon, vsock, 9p or any driver lincell has not been tested with, so
//! only [`SUPPORTED`] types are accepted, and the `v1_device_id` module
//! parameter narrows that to one type when set.

use core::fmt;

use super::header::{PROTOCOL_DEVICE_ID_MASK, PROTOCOL_VIRTIO_FRONTEND};

/// virtio-net.
pub const NET: u32 = 1;
/// virtio-blk.
pub const BLK: u32 = 2;
/// virtio-console.
pub const CONSOLE: u32 = 3;
/// virtio-rng (not in [`SUPPORTED`]; named for the vhost-user bridge).
pub const RNG: u32 = 4;
/// virtio-vsock (not in [`SUPPORTED`]; named for the vhost-user bridge).
pub const VSOCK: u32 = 19;
/// virtio-fs (not in [`SUPPORTED`]; named for the vhost-user bridge).
pub const FS: u32 = 26;
/// The virtio device types the frontend registers.
pub const SUPPORTED: [u32; 3] = [NET, BLK, CONSOLE];

/// Why a device type was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceIdError {
    /// The protocol is not a virtio frontend's (`0x8000 | id`), and no
    /// `v1_device_id` stands in for a backend that announced nothing.
    NotAFrontend {
        /// The protocol value read.
        protocol: u32,
    },
    /// A virtio device type the frontend does not register.
    Unsupported {
        /// The device type.
        id: u32,
    },
    /// The backend announced a type other than the one `v1_device_id`
    /// allows.
    NotAllowed {
        /// What the backend announced.
        id: u32,
        /// What the module parameter allows.
        allowed: u32,
    },
}

impl fmt::Display for DeviceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceIdError::NotAFrontend { protocol } => write!(
                f,
                "protocol {protocol:#x} is not a virtio frontend's (set v1_device_id= if the backend cannot announce one)"
            ),
            DeviceIdError::Unsupported { id } => write!(
                f,
                "virtio device type {id} is not one the frontend registers (net 1, blk 2, console 3)"
            ),
            DeviceIdError::NotAllowed { id, allowed } => write!(
                f,
                "virtio device type {id} announced, but v1_device_id={allowed} allows only that type"
            ),
        }
    }
}

/// Whether the frontend registers virtio devices of type `id`.
pub fn is_supported(id: u32) -> bool {
    SUPPORTED.contains(&id)
}

/// The device type to register for a QEMU ivshmem backend that wrote
/// `protocol` in the v1 layout header, under module parameter `param`
/// (`v1_device_id`, 0 = unset).
pub fn from_v1_protocol(protocol: u32, param: u32) -> Result<u32, DeviceIdError> {
    let frontend =
        protocol & !u32::from(PROTOCOL_DEVICE_ID_MASK) == u32::from(PROTOCOL_VIRTIO_FRONTEND);
    let id = match (frontend, param) {
        (true, _) => protocol & u32::from(PROTOCOL_DEVICE_ID_MASK),
        (false, 0) => return Err(DeviceIdError::NotAFrontend { protocol }),
        (false, p) if protocol == 0 => p,
        (false, _) => return Err(DeviceIdError::NotAFrontend { protocol }),
    };
    check(id, param)
}

/// Checks a device type from any source against [`SUPPORTED`] and the
/// module parameter `param` (0 = no narrowing).
pub fn check(id: u32, param: u32) -> Result<u32, DeviceIdError> {
    if !is_supported(id) {
        return Err(DeviceIdError::Unsupported { id });
    }
    if param != 0 && id != param {
        return Err(DeviceIdError::NotAllowed { id, allowed: param });
    }
    Ok(id)
}

/// Whether the device owes an answer for every buffer on queue `index` of
/// a device of type `id` with `count` queues, so that a buffer it holds for
/// long means it stalled. Receive queues (the console's and net's even
/// queues) are not such queues: an idle device legitimately holds their
/// buffers until input arrives. virtio-net's control queue (the last one
/// when the count is odd) is a request queue.
pub fn queue_owes_answers(id: u32, index: u32, count: u32) -> bool {
    match id {
        CONSOLE => index % 2 == 1,
        NET => index % 2 == 1 || (count % 2 == 1 && index + 1 == count),
        _ => true,
    }
}

/// Whether the driver of a device of type `id` may kick and then spin
/// until its output buffer comes back: virtio_console's hvc output does
/// (`__send_to_port`, holding locks the interrupt path needs), so the
/// transport collects for it. virtio-net and virtio-blk never do.
pub fn driver_spins_on_output(id: u32) -> bool {
    id == CONSOLE
}

/// virtio-net's `VIRTIO_NET_F_STATUS` feature bit: the config's `status`
/// field reports the link.
pub const NET_F_STATUS: u32 = 16;

/// Whether a failed device of type `id`, whose driver accepted `features`,
/// can be told that its link is down instead of being removed: virtio-net
/// with `VIRTIO_NET_F_STATUS`, whose driver turns the carrier off when a
/// config change shows a `status` without `VIRTIO_NET_S_LINK_UP` (a failed
/// device's config reads as zeros). Such a device is kept, link down, until
/// a backend is ready to replace it, so the interface stays while the
/// backend is away, as a cable pulled out would leave it. Other types, or
/// virtio-net without the feature, have no such state and are removed.
pub fn keeps_link_down(id: u32, features: u64) -> bool {
    id == NET && features & (1 << NET_F_STATUS) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_net_with_status_is_kept_link_down() {
        let status = 1u64 << NET_F_STATUS;
        assert!(keeps_link_down(NET, status));
        assert!(keeps_link_down(NET, status | 1 << 32 | 1 << 5));
        assert!(!keeps_link_down(NET, !status));
        assert!(!keeps_link_down(BLK, status));
        assert!(!keeps_link_down(CONSOLE, status));
        assert!(!keeps_link_down(0, u64::MAX));
    }

    #[test]
    fn only_the_console_driver_spins_on_output() {
        assert!(driver_spins_on_output(CONSOLE));
        assert!(!driver_spins_on_output(NET));
        assert!(!driver_spins_on_output(BLK));
        assert!(!driver_spins_on_output(0));
    }

    const VSOCK: u32 = 19;
    const BALLOON: u32 = 5;

    fn frontend(id: u32) -> u32 {
        u32::from(PROTOCOL_VIRTIO_FRONTEND) | id
    }

    #[test]
    fn supported_types_are_taken_from_the_announcement() {
        for id in SUPPORTED {
            assert_eq!(from_v1_protocol(frontend(id), 0), Ok(id));
        }
    }

    #[test]
    fn a_backend_cannot_bind_a_driver_lincell_does_not_support() {
        // The independent backend's finding: announcing virtio-vsock got
        // vmw_vsock_virtio_transport bound in the guest.
        for id in [0, VSOCK, BALLOON, 9, 0x3fff] {
            assert_eq!(
                from_v1_protocol(frontend(id), 0),
                Err(DeviceIdError::Unsupported { id }),
                "id {id}"
            );
        }
    }

    #[test]
    fn the_parameter_stands_in_for_a_missing_announcement() {
        assert_eq!(from_v1_protocol(0, BLK), Ok(BLK));
        assert_eq!(
            from_v1_protocol(0, 0),
            Err(DeviceIdError::NotAFrontend { protocol: 0 })
        );
        // ... but not for an unsupported type either.
        assert_eq!(
            from_v1_protocol(0, VSOCK),
            Err(DeviceIdError::Unsupported { id: VSOCK })
        );
    }

    #[test]
    fn the_parameter_narrows_what_a_backend_may_announce() {
        assert_eq!(from_v1_protocol(frontend(BLK), BLK), Ok(BLK));
        assert_eq!(
            from_v1_protocol(frontend(NET), BLK),
            Err(DeviceIdError::NotAllowed {
                id: NET,
                allowed: BLK
            })
        );
    }

    #[test]
    fn other_protocols_are_refused() {
        for protocol in [1, 0x4000, 0xc002, 0x1_8002, u32::MAX] {
            assert!(
                matches!(
                    from_v1_protocol(protocol, 0),
                    Err(DeviceIdError::NotAFrontend { .. })
                ),
                "{protocol:#x}"
            );
        }
        // A non-zero, non-frontend protocol is refused even with the
        // parameter set: the backend announced something else.
        assert!(from_v1_protocol(0xc002, BLK).is_err());
    }

    #[test]
    fn receive_queues_do_not_owe_answers() {
        // virtio-console: receiveq, transmitq, control rx, control tx, ...
        let console: [bool; 6] = core::array::from_fn(|i| queue_owes_answers(CONSOLE, i as u32, 6));
        assert_eq!(console, [false, true, false, true, false, true]);
        // virtio-net with one pair and a control queue: rx, tx, ctrl.
        let net: [bool; 3] = core::array::from_fn(|i| queue_owes_answers(NET, i as u32, 3));
        assert_eq!(net, [false, true, true]);
        // Two pairs, no control queue.
        let net: [bool; 4] = core::array::from_fn(|i| queue_owes_answers(NET, i as u32, 4));
        assert_eq!(net, [false, true, false, true]);
        // virtio-blk: every request is answered.
        assert!((0..4).all(|i| queue_owes_answers(BLK, i, 4)));
    }

    #[test]
    fn every_protocol_value_maps_to_a_supported_type_or_an_error() {
        for protocol in (0..=0x1_0000u32).step_by(7).chain([0x8001, 0x8002, 0x8003]) {
            for param in [0, 1, 2, 3, 19] {
                if let Ok(id) = from_v1_protocol(protocol, param) {
                    assert!(is_supported(id));
                    assert!(param == 0 || id == param);
                }
            }
        }
    }
}
