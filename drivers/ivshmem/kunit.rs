// SPDX-License-Identifier: GPL-2.0

//! In-kernel tests of the shared ivshmem logic, run by KUnit at `insmod`.
//!
//! The host runs the same code under `cargo test`; these suites prove it
//! behaves the same when built by the kernel's toolchain, for the kernel's
//! target and with the kernel's overflow checks.

use kernel::prelude::*;

#[kunit_tests(lincell_ivshmem_ident)]
mod ident_tests {
    use crate::shared::ident::{identify, IdentError, Protocol, ProtocolKind, Revision};

    #[test]
    fn qemu_device_is_v1() {
        let id = identify(0x1af4, 0x1110, 0x05_00_00);
        assert_eq!(id.map(|i| i.revision), Ok(Revision::V1));
    }

    #[test]
    fn v2_virtio_frontend_is_left_to_vdev_remote() {
        let id = identify(0x110a, 0x4106, 0xff_80_03).map(|i| i.protocol);
        assert_eq!(id, Ok(Protocol(0x8003)));
        assert_eq!(Protocol(0x8003).kind(), ProtocolKind::VirtioFrontend { device_id: 3 });
        assert!(Protocol(0x8003).is_virtio());
        assert!(!Protocol(0x0001).is_virtio());
    }

    #[test]
    fn foreign_devices_are_refused() {
        assert_eq!(identify(0x110a, 0x4106, 0x02_00_00), Err(IdentError::WrongClass));
        assert_eq!(identify(0x10de, 0x1110, 0), Err(IdentError::UnknownDevice));
    }
}

#[kunit_tests(lincell_ivshmem_layout)]
mod layout_tests {
    use crate::shared::doorbell::{Doorbell, DoorbellError};
    use kernel::prelude::*;
    use crate::shared::layout::{Access, Layout, LayoutError, Section, SectionKind, SectionSizes};

    const PAGE: u64 = kernel::page::PAGE_SIZE as u64;

    fn sizes(state_table: u64, rw: u64, output: u64) -> SectionSizes {
        SectionSizes {
            state_table,
            rw,
            output,
        }
    }

    #[test]
    fn sections_follow_each_other_page_rounded() -> Result {
        let l = Layout::new(sizes(8, 3 * PAGE, 1), 2, 1, PAGE, 16 * PAGE).map_err(|_| EINVAL)?;
        assert_eq!(l.state_table(), Section { offset: 0, len: PAGE });
        assert_eq!(l.rw(), Section { offset: PAGE, len: 3 * PAGE });
        assert_eq!(l.output(0), Some(Section { offset: 4 * PAGE, len: PAGE }));
        assert_eq!(l.own_output(), Section { offset: 5 * PAGE, len: PAGE });
        assert_eq!(l.total(), 6 * PAGE);
        Ok(())
    }

    #[test]
    fn own_output_is_the_only_writable_output() -> Result {
        let l = Layout::new(sizes(PAGE, PAGE, PAGE), 3, 2, PAGE, 16 * PAGE).map_err(|_| EINVAL)?;
        assert_eq!(l.lookup(0, 4), Ok((SectionKind::StateTable, Access::ReadOnly)));
        assert_eq!(l.lookup(PAGE, PAGE), Ok((SectionKind::ReadWrite, Access::ReadWrite)));
        assert_eq!(
            l.lookup(2 * PAGE, PAGE),
            Ok((SectionKind::Output { peer: 0 }, Access::ReadOnly))
        );
        assert_eq!(
            l.lookup(4 * PAGE, PAGE),
            Ok((SectionKind::Output { peer: 2 }, Access::ReadWrite))
        );
        assert_eq!(l.lookup(PAGE - 1, 2), Err(LayoutError::NotInOneSection));
        assert_eq!(l.lookup(u64::MAX, 2), Err(LayoutError::NotInOneSection));
        Ok(())
    }

    #[test]
    fn hostile_sizes_are_rejected_without_overflow() {
        assert_eq!(
            Layout::new(sizes(u64::MAX, 0, 0), 2, 0, PAGE, u64::MAX),
            Err(LayoutError::Overflow)
        );
        assert_eq!(
            Layout::new(sizes(64 * PAGE, 0, 1 << 62), 65536, 0, PAGE, u64::MAX),
            Err(LayoutError::Overflow)
        );
        assert_eq!(
            Layout::new(sizes(PAGE, PAGE, 0), 2, 0, PAGE, PAGE),
            Err(LayoutError::TooLarge)
        );
        assert_eq!(
            Layout::new(sizes(PAGE, 0, 0), 2, 5, PAGE, PAGE),
            Err(LayoutError::BadOwnId)
        );
    }

    #[test]
    fn doorbell_value_and_bounds() {
        assert_eq!(Doorbell::new(1, 3, 2, 4).map(|d| d.register_value()), Ok(0x0001_0003));
        assert_eq!(Doorbell::new(2, 0, 2, 4), Err(DoorbellError::NoSuchPeer));
        assert_eq!(Doorbell::new(0, 4, 2, 4), Err(DoorbellError::NoSuchVector));
    }
}
