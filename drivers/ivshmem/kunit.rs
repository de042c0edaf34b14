// SPDX-License-Identifier: GPL-2.0

//! In-kernel tests of the shared ivshmem logic, run by KUnit at `insmod`.
//!
//! The host runs the same code under `cargo test`; these suites prove it
//! behaves the same when built by the kernel's toolchain, for the kernel's
//! target and with the kernel's overflow checks.

use kernel::prelude::*;

#[kunit_tests(lincell_ivshmem_ident)]
mod ident_tests {
    use crate::shared::ivshmem::ident::{identify, IdentError, Protocol, ProtocolKind, Revision};

    #[test]
    fn qemu_device_is_v1() {
        let id = identify(0x1af4, 0x1110, 0x05_00_00);
        assert_eq!(id.map(|i| i.revision), Ok(Revision::V1));
    }

    #[test]
    fn v2_virtio_frontend_is_left_to_vdev_remote() {
        let id = identify(0x110a, 0x4106, 0xff_80_03).map(|i| i.protocol);
        assert_eq!(id, Ok(Protocol(0x8003)));
        assert_eq!(
            Protocol(0x8003).kind(),
            ProtocolKind::VirtioFrontend { device_id: 3 }
        );
        assert!(Protocol(0x8003).is_virtio_frontend());
        assert!(!Protocol(0x0001).is_virtio_frontend());
        assert!(!Protocol(0xc003).is_virtio_frontend());
    }

    #[test]
    fn foreign_devices_are_refused() {
        assert_eq!(
            identify(0x110a, 0x4106, 0x02_00_00),
            Err(IdentError::WrongClass)
        );
        assert_eq!(identify(0x10de, 0x1110, 0), Err(IdentError::UnknownDevice));
    }
}

#[kunit_tests(lincell_ivshmem_layout)]
mod layout_tests {
    use crate::shared::ivshmem::doorbell::{Doorbell, DoorbellError};
    use crate::shared::ivshmem::layout::{
        Access, Layout, LayoutError, Section, SectionKind, SectionSizes,
    };
    use kernel::prelude::*;

    const PAGE: u64 = kernel::page::PAGE_SIZE as u64;

    fn sizes(state_table: u64, rw: u64, output: u64) -> SectionSizes {
        SectionSizes {
            state_table,
            rw,
            output,
        }
    }

    #[test]
    fn sections_follow_each_other() -> Result {
        // Sizes are the device's; ones that are not page multiples are
        // refused, not rounded (that would move the later sections).
        assert_eq!(
            Layout::new(sizes(8, 3 * PAGE, 1), 2, 1, PAGE, 16 * PAGE),
            Err(LayoutError::NotPageMultiple)
        );
        let l =
            Layout::new(sizes(PAGE, 3 * PAGE, PAGE), 2, 1, PAGE, 16 * PAGE).map_err(|_| EINVAL)?;
        assert_eq!(
            l.state_table(),
            Section {
                offset: 0,
                len: PAGE
            }
        );
        assert_eq!(
            l.rw(),
            Section {
                offset: PAGE,
                len: 3 * PAGE
            }
        );
        assert_eq!(
            l.output(0),
            Some(Section {
                offset: 4 * PAGE,
                len: PAGE
            })
        );
        assert_eq!(
            l.own_output(),
            Section {
                offset: 5 * PAGE,
                len: PAGE
            }
        );
        assert_eq!(l.total(), 6 * PAGE);
        Ok(())
    }

    #[test]
    fn own_output_is_the_only_writable_output() -> Result {
        let l = Layout::new(sizes(PAGE, PAGE, PAGE), 3, 2, PAGE, 16 * PAGE).map_err(|_| EINVAL)?;
        assert_eq!(
            l.lookup(0, 4),
            Ok((SectionKind::StateTable, Access::ReadOnly))
        );
        assert_eq!(
            l.lookup(PAGE, PAGE),
            Ok((SectionKind::ReadWrite, Access::ReadWrite))
        );
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
            Err(LayoutError::NotPageMultiple)
        );
        assert_eq!(
            Layout::new(sizes(2 * PAGE, !(PAGE - 1), 0), 2, 0, PAGE, u64::MAX),
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
        assert_eq!(
            Doorbell::new(1, 3, 2, 4).map(|d| d.register_value()),
            Ok(0x0001_0003)
        );
        assert_eq!(Doorbell::new(2, 0, 2, 4), Err(DoorbellError::NoSuchPeer));
        assert_eq!(Doorbell::new(0, 4, 2, 4), Err(DoorbellError::NoSuchVector));
    }

    #[test]
    fn in_kernel_echo_requests_and_answers() {
        use crate::shared::ivshmem::doorbell::{EchoError, EchoRequest};
        assert_eq!(EchoRequest::parse(b"2\n"), Ok(EchoRequest::Peer(2)));
        assert_eq!(EchoRequest::parse(b"off\n"), Ok(EchoRequest::Off));
        assert_eq!(EchoRequest::parse(b"4294967296"), Err(EchoError::Syntax));
        // Not itself, not past the peers, not without a second vector.
        assert_eq!(
            EchoRequest::Peer(1).validate(1, 4, 2),
            Err(EchoError::BadPeer)
        );
        assert_eq!(
            EchoRequest::Peer(4).validate(1, 4, 2),
            Err(EchoError::BadPeer)
        );
        assert_eq!(
            EchoRequest::Peer(0).validate(1, 4, 1),
            Err(EchoError::NoVectors)
        );
        // The same vector back; never vector 0 (state changes).
        assert_eq!(
            EchoRequest::Peer(2)
                .answer(1, 4, 2)
                .map(|d| d.register_value()),
            Some(0x0002_0001)
        );
        assert_eq!(EchoRequest::Peer(2).answer(0, 4, 2), None);
    }
}

/// The v2 register model driven against the simulated ivshmem 2.0 device:
/// the paths QEMU cannot exercise, with the same code the driver runs.
#[kunit_tests(lincell_ivshmem_v2sim)]
mod v2sim_tests {
    use crate::shared::ivshmem::doorbell::Doorbell;
    use crate::shared::ivshmem::ident::Revision;
    use crate::shared::ivshmem::regs::{model, v2, RegisterBlock};
    use crate::shared::ivshmem::sim::Fabric;

    #[test]
    fn identity_registers() {
        let f: Fabric<3, 4> = Fabric::new();
        let m = model(Revision::V2);
        let p = f.peer(1).expect("peer 1 exists");
        assert_eq!(m.own_id(&p), 1);
        assert_eq!(m.max_peers(&p), Some(3));
        assert_eq!(p.read32(0x40), 0);
    }

    #[test]
    fn doorbells_need_an_enabled_present_target() {
        let f: Fabric<3, 2> = Fabric::new();
        let m = model(Revision::V2);
        let (Some(a), Some(b)) = (f.peer(0), f.peer(1)) else {
            panic!("peers 0 and 1 exist");
        };
        let d = Doorbell::new(1, 1, 3, 2).expect("valid doorbell");
        m.ring(&a, d);
        assert_eq!(f.delivered(1, 1), 0);
        m.enable_interrupts(&b);
        m.ring(&a, d);
        m.ring(&a, d);
        assert_eq!(f.delivered(1, 1), 2);
        f.disconnect(1);
        m.ring(&a, d);
        assert_eq!(f.delivered(1, 1), 2);
        assert_eq!(f.dropped(), 2);
    }

    #[test]
    fn state_changes_reach_every_other_peer_on_vector0() {
        let f: Fabric<4, 1> = Fabric::new();
        let m = model(Revision::V2);
        for id in 0..4 {
            m.enable_interrupts(&f.peer(id).expect("peer exists"));
        }
        let p2 = f.peer(2).expect("peer 2 exists");
        assert!(m.set_state(&p2, 1));
        assert!(m.set_state(&p2, 1));
        assert!(m.set_state(&p2, 3));
        assert_eq!(f.state_of(2), Some(3));
        assert_eq!(
            (f.delivered(0, 0), f.delivered(1, 0), f.delivered(3, 0)),
            (2, 2, 2)
        );
        assert_eq!(f.delivered(2, 0), 0);
        f.disconnect(2);
        assert_eq!(f.state_of(2), Some(0));
    }

    #[test]
    fn one_shot_mode_needs_reenable() {
        let f: Fabric<2, 1> = Fabric::new();
        f.set_one_shot(true);
        let m = model(Revision::V2);
        let (Some(a), Some(b)) = (f.peer(0), f.peer(1)) else {
            panic!("peers exist");
        };
        let d = Doorbell::new(1, 0, 2, 1).expect("valid doorbell");
        m.enable_interrupts(&b);
        m.ring(&a, d);
        assert_eq!(b.read32(v2::INT_CONTROL), 0);
        m.ring(&a, d);
        m.enable_interrupts(&b);
        m.ring(&a, d);
        assert_eq!(f.delivered(1, 0), 2);
    }
}

/// The v1 (QEMU ivshmem) register model on a register block that behaves
/// like QEMU's: IVPosition, Doorbell, IntrMask, IntrStatus (read clears).
#[kunit_tests(lincell_ivshmem_v1regs)]
mod v1regs_tests {
    use core::cell::Cell;

    use crate::shared::ivshmem::doorbell::Doorbell;
    use crate::shared::ivshmem::ident::Revision;
    use crate::shared::ivshmem::regs::{model, v1, RegisterBlock};

    struct Qemu {
        position: u32,
        mask: Cell<u32>,
        status: Cell<u32>,
        last_doorbell: Cell<Option<u32>>,
    }

    impl RegisterBlock for Qemu {
        fn read32(&self, offset: usize) -> u32 {
            match offset {
                v1::INTR_MASK => self.mask.get(),
                v1::INTR_STATUS => self.status.replace(0),
                v1::IV_POSITION => self.position,
                _ => 0,
            }
        }
        fn write32(&self, offset: usize, value: u32) {
            match offset {
                v1::INTR_MASK => self.mask.set(value),
                v1::DOORBELL => self.last_doorbell.set(Some(value)),
                _ => {}
            }
        }
    }

    fn qemu(position: u32) -> Qemu {
        Qemu {
            position,
            mask: Cell::new(0),
            status: Cell::new(0),
            last_doorbell: Cell::new(None),
        }
    }

    #[test]
    fn identity_comes_from_ivposition() {
        let m = model(Revision::V1);
        let q = qemu(5);
        assert_eq!(m.revision(), Revision::V1);
        assert_eq!(m.own_id(&q), 5);
        assert_eq!(m.max_peers(&q), None);
    }

    #[test]
    fn doorbell_and_state() {
        let m = model(Revision::V1);
        let q = qemu(0);
        m.ring(&q, Doorbell::new(2, 1, 8, 2).expect("valid doorbell"));
        assert_eq!(q.last_doorbell.get(), Some(0x0002_0001));
        // No state register: the driver keeps the v1 state table itself.
        assert!(!m.set_state(&q, 1));
        assert_eq!(q.last_doorbell.get(), Some(0x0002_0001));
    }

    #[test]
    fn intx_status_is_read_and_cleared() {
        let m = model(Revision::V1);
        let q = qemu(0);
        m.enable_intx(&q);
        assert_eq!(q.mask.get(), 1);
        assert!(!m.ack_intx(&q));
        q.status.set(1);
        assert!(m.ack_intx(&q));
        assert!(!m.ack_intx(&q));
    }
}

/// The v1 header handshake on kernel atomics, as the driver runs it.
#[kunit_tests(lincell_ivshmem_v1layout)]
mod v1layout_tests {
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU64, Ordering};

    use crate::shared::ivshmem::v1layout::{init_or_join, off, Header, V1Error, MAGIC_READY};
    use crate::shared::shmem::{RawRegion, SharedMemory};

    /// Runs `f` on sixty-four zeroed bytes of "shared memory", through the
    /// same `RawRegion` the driver puts over its mapping.
    fn with_mem(f: impl FnOnce(&RawRegion)) {
        let words = [const { AtomicU64::new(0) }; 8];
        // SAFETY: the 64 bytes of `words` outlive the region (both are
        // dropped when this function returns); they are only accessed
        // atomically, and `AtomicU64` is an `UnsafeCell`, so writing
        // through a pointer derived from the shared reference is allowed.
        let region = unsafe { RawRegion::new(NonNull::from(&words).cast::<u8>(), 64) };
        f(&region);
    }

    #[test]
    fn two_peers_agree_on_one_layout() {
        with_mem(|mem| {
            let first = Header::propose(1 << 20, 4096, 8).expect("1 MiB fits");
            let second = Header::propose(1 << 20, 4096, 2).expect("1 MiB fits");
            let a = init_or_join(mem, &first, || false);
            let b = init_or_join(mem, &second, || false);
            assert_eq!(a, Ok(first));
            assert_eq!(b, Ok(first));
            assert_eq!(
                mem.load::<u32>(off::MAGIC, Ordering::Acquire),
                Ok(MAGIC_READY)
            );
        });
    }

    #[test]
    fn corrupted_header_is_refused() {
        with_mem(|mem| {
            let p = Header::propose(1 << 20, 4096, 8).expect("1 MiB fits");
            assert!(init_or_join(mem, &p, || false).is_ok());
            assert_eq!(
                mem.store(off::MAX_PEERS, 0xffff_ffff_u32, Ordering::Release),
                Ok(())
            );
            assert_eq!(
                init_or_join(mem, &p, || false),
                Err(V1Error::BadField("max_peers"))
            );
            assert_eq!(
                mem.store(off::MAGIC, 0x1234_5678_u32, Ordering::Release),
                Ok(())
            );
            assert_eq!(init_or_join(mem, &p, || false), Err(V1Error::ForeignData));
        });
    }
}
