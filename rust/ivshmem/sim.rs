// SPDX-License-Identifier: GPL-2.0

//! A simulated ivshmem 2.0 device, for tests.
//!
//! QEMU has no ivshmem 2.0 device, so the v2 paths of the driver are
//! exercised against this model of the specification: `N` peers share a
//! state table; each peer has the BAR0 register block (ID, Maximum Peers,
//! Interrupt Control, Doorbell, State) and `V` interrupt vectors. It follows
//! the rules the specification gives the hypervisor:
//!
//! - doorbells to absent peers, to disabled targets or to vectors the target
//!   does not have are dropped, not latched;
//! - writing a *different* value to State copies it into the state table and
//!   raises vector 0 on every other connected peer;
//! - in one-shot mode, delivering an interrupt clears the target's enable;
//! - a peer that disconnects reads as state 0 in the table;
//! - reads of unbacked offsets return 0, writes to them are ignored.
//!
//! Single-threaded (`Cell`s): KUnit and host tests drive it step by step.

use core::cell::Cell;

use super::doorbell::Doorbell;
use super::regs::{v2, RegisterBlock};

/// `N` peers with `V` vectors each on one simulated shared-memory region.
pub struct Fabric<const N: usize, const V: usize> {
    connected: [Cell<bool>; N],
    state_table: [Cell<u32>; N],
    int_enabled: [Cell<bool>; N],
    one_shot: Cell<bool>,
    delivered: [[Cell<u32>; V]; N],
    dropped: Cell<u32>,
}

impl<const N: usize, const V: usize> Default for Fabric<N, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize, const V: usize> Fabric<N, V> {
    /// A fabric with every peer connected, interrupts disabled, states 0.
    pub fn new() -> Self {
        Fabric {
            connected: core::array::from_fn(|_| Cell::new(true)),
            state_table: core::array::from_fn(|_| Cell::new(0)),
            int_enabled: core::array::from_fn(|_| Cell::new(false)),
            one_shot: Cell::new(false),
            delivered: core::array::from_fn(|_| core::array::from_fn(|_| Cell::new(0))),
            dropped: Cell::new(0),
        }
    }

    /// The register block of peer `id` (`None` if `id >= N`).
    pub fn peer(&self, id: usize) -> Option<Peer<'_, N, V>> {
        (id < N).then_some(Peer { fabric: self, id })
    }

    /// Sets the one-shot interrupt mode (the privileged control bit).
    pub fn set_one_shot(&self, on: bool) {
        self.one_shot.set(on);
    }

    /// Disconnects peer `id`: its state table entry reads 0 and doorbells to
    /// it are dropped.
    pub fn disconnect(&self, id: usize) {
        if let (Some(c), Some(s)) = (self.connected.get(id), self.state_table.get(id)) {
            c.set(false);
            s.set(0);
        }
    }

    /// The state table entry of `id` (what peers read from shared memory).
    pub fn state_of(&self, id: usize) -> Option<u32> {
        self.state_table.get(id).map(Cell::get)
    }

    /// Interrupts delivered to `id` on `vector` so far.
    pub fn delivered(&self, id: usize, vector: usize) -> u32 {
        self.delivered
            .get(id)
            .and_then(|v| v.get(vector))
            .map_or(0, Cell::get)
    }

    /// Interrupts dropped (absent or disabled target, missing vector).
    pub fn dropped(&self) -> u32 {
        self.dropped.get()
    }

    fn deliver(&self, target: usize, vector: usize) {
        let ok = self.connected.get(target).is_some_and(Cell::get)
            && self.int_enabled.get(target).is_some_and(Cell::get)
            && vector < V;
        if !ok {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        let slot = &self.delivered[target][vector];
        slot.set(slot.get().wrapping_add(1));
        if self.one_shot.get() {
            self.int_enabled[target].set(false);
        }
    }
}

/// One peer's view: its BAR0 register block.
pub struct Peer<'a, const N: usize, const V: usize> {
    fabric: &'a Fabric<N, V>,
    id: usize,
}

impl<const N: usize, const V: usize> RegisterBlock for Peer<'_, N, V> {
    fn read32(&self, offset: usize) -> u32 {
        let f = self.fabric;
        match offset {
            // CAST: peer ids and counts below 65536 in any sane test.
            v2::ID => self.id as u32,
            v2::MAX_PEERS => N as u32,
            v2::INT_CONTROL => u32::from(f.int_enabled[self.id].get()),
            v2::STATE => f.state_table[self.id].get(),
            // Doorbell reads are undefined; unbacked offsets read 0.
            _ => 0,
        }
    }

    fn write32(&self, offset: usize, value: u32) {
        let f = self.fabric;
        match offset {
            v2::INT_CONTROL => f.int_enabled[self.id].set(value & 1 != 0),
            v2::DOORBELL => {
                let d = Doorbell::from_register_value(value);
                f.deliver(usize::from(d.peer()), usize::from(d.vector()));
            }
            v2::STATE => {
                let old = f.state_table[self.id].replace(value);
                if old != value {
                    for other in (0..N).filter(|&p| p != self.id) {
                        f.deliver(other, 0);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ident::Revision;
    use super::super::regs::model;
    use super::*;

    #[test]
    fn doorbell_reaches_enabled_target_only() {
        let f: Fabric<3, 2> = Fabric::new();
        let m = model(Revision::V2);
        let (a, b) = (f.peer(0).unwrap(), f.peer(1).unwrap());
        m.ring(&a, Doorbell::new(1, 1, 3, 2).unwrap());
        assert_eq!(
            (f.delivered(1, 1), f.dropped()),
            (0, 1),
            "disabled target drops"
        );
        m.enable_interrupts(&b);
        m.ring(&a, Doorbell::new(1, 1, 3, 2).unwrap());
        assert_eq!(f.delivered(1, 1), 1);
        f.disconnect(1);
        m.ring(&a, Doorbell::new(1, 1, 3, 2).unwrap());
        assert_eq!(
            (f.delivered(1, 1), f.dropped()),
            (1, 2),
            "absent peer drops"
        );
    }

    #[test]
    fn state_change_raises_vector0_on_others_once() {
        let f: Fabric<3, 2> = Fabric::new();
        let m = model(Revision::V2);
        for id in 0..3 {
            m.enable_interrupts(&f.peer(id).unwrap());
        }
        let a = f.peer(0).unwrap();
        assert!(m.set_state(&a, 1));
        assert_eq!(f.state_of(0), Some(1));
        assert_eq!(
            (f.delivered(1, 0), f.delivered(2, 0), f.delivered(0, 0)),
            (1, 1, 0)
        );
        m.set_state(&a, 1);
        assert_eq!(f.delivered(1, 0), 1, "same value: no interrupt");
    }

    #[test]
    fn one_shot_clears_enable_on_delivery() {
        let f: Fabric<2, 1> = Fabric::new();
        let m = model(Revision::V2);
        f.set_one_shot(true);
        let (a, b) = (f.peer(0).unwrap(), f.peer(1).unwrap());
        m.enable_interrupts(&b);
        m.ring(&a, Doorbell::new(1, 0, 2, 1).unwrap());
        m.ring(&a, Doorbell::new(1, 0, 2, 1).unwrap());
        assert_eq!((f.delivered(1, 0), f.dropped()), (1, 1));
        assert_eq!(b.read32(v2::INT_CONTROL), 0);
    }

    #[test]
    fn registers_read_as_the_spec_says() {
        let f: Fabric<4, 1> = Fabric::new();
        let m = model(Revision::V2);
        let p = f.peer(2).unwrap();
        assert_eq!(m.own_id(&p), 2);
        assert_eq!(m.max_peers(&p), Some(4));
        assert_eq!(p.read32(0x100), 0);
        assert!(f.peer(4).is_none());
        assert_eq!(f.state_of(9), None);
    }

    #[test]
    fn v1_model_has_no_state_register() {
        let f: Fabric<2, 1> = Fabric::new();
        let m = model(Revision::V1);
        assert!(!m.set_state(&f.peer(0).unwrap(), 5));
        assert_eq!(m.max_peers(&f.peer(0).unwrap()), None);
    }
}
