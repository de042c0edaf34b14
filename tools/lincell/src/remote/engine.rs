// SPDX-License-Identifier: GPL-2.0

//! The transport engine: the virtio-over-ivshmem header (presentation of
//! device fields, the frontend's write transactions), the split virtqueues
//! and completions. It knows nothing of ivshmem peers or doorbells: it only
//! reads and writes the R/W section ([`Mem`]) and tells its caller which
//! frontend vectors to ring, so tests drive it directly.

use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::atomic::{fence, Ordering};

use lincell_shared::vdev::header::{
    self, feature, off, CONFIG_OFFSET, HEADER_AREA, MAX_CONFIG, REVISION,
};
use lincell_shared::vdev::shadow::{
    avail_ring_size, desc_table_size, used_entry, used_ring_size, VIRTQ_AVAIL_ALIGN,
    VIRTQ_DESC_ALIGN, VIRTQ_RING_IDX_OFFSET, VIRTQ_USED_ALIGN, VIRTQ_USED_ELEMENT_SIZE,
    VIRTQ_USED_ELEM_ID_OFFSET, VIRTQ_USED_ELEM_LEN_OFFSET,
};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::mem::{Mem, Section};
use crate::error::{Error, Result};

mod fault;
pub(crate) use fault::{Fault, Faulty, FAULT_AFTER};

/// Offset of `idx` in the avail and used rings, as a guest address offset.
// CAST: usize to u64 is lossless on the hosts lincell supports.
const RING_IDX_OFFSET: u64 = VIRTQ_RING_IDX_OFFSET as u64;

/// One descriptor chain of a queue, as handed to a device.
pub(crate) type Chain<'a> = DescriptorChain<&'a Mem>;

/// What a device did with one chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Done {
    /// Bytes written into the chain's device-writable buffers (the used
    /// `len`).
    pub(crate) written: u32,
    /// Total length of the chain's device-writable buffers (0 if the chain
    /// could not be parsed).
    pub(crate) writable: u32,
}

/// The used entry the engine publishes for a chain a [`Device`] handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Used {
    /// Head `head` with length `len`, through the queue's checks.
    Checked {
        /// The chain's head.
        head: u16,
        /// Bytes written.
        len: u32,
    },
    /// An entry written as is, without the queue's checks (fault
    /// injection).
    Raw {
        /// The id published.
        id: u32,
        /// The length published.
        len: u32,
    },
    /// As [`Used::Checked`], then the used index published `skew` entries
    /// ahead of the truth (fault injection).
    SkewedIndex {
        /// The chain's head.
        head: u16,
        /// Bytes written.
        len: u32,
        /// Entries the published index runs ahead.
        skew: u16,
    },
}

/// A virtio device model behind the transport.
pub(crate) trait Device {
    /// Virtio device id (2 block, 3 console).
    fn device_id(&self) -> u16;
    /// Device-specific feature bits offered (transport bits are added).
    fn features(&self) -> u64;
    /// Device config bytes (at most [`MAX_CONFIG`]).
    fn config(&self) -> Vec<u8>;
    /// Number of virtqueues.
    fn num_queues(&self) -> usize;
    /// Whether the device can consume a chain of queue `q` now (a console
    /// receive queue only when input is pending).
    fn can_take(&mut self, _q: usize) -> bool {
        true
    }
    /// Handles one chain of queue `q`. Must never panic, whatever the
    /// chain holds.
    fn handle(&mut self, q: usize, chain: Chain<'_>, mem: &Mem) -> Done;
    /// The used entry for chain `head` of queue `q` (of `size` entries),
    /// which [`Device::handle`] completed with `done`. Only fault injection
    /// ([`Faulty`]) publishes anything but the head and the bytes written.
    fn used(&mut self, _q: usize, head: u16, _size: u16, done: Done) -> Used {
        Used::Checked {
            head,
            len: done.written,
        }
    }
    /// A descriptor whose readability means the device has work of its own
    /// (a frame pending at a TAP): the runner wakes for it as for a
    /// doorbell. `None` (the default): doorbells and the tick only.
    fn wake_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// A line of counters for the log when the backend stops.
    fn report(&self) -> Option<String> {
        None
    }
    /// Makes completed writes durable (shutdown).
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// One line for the start-up summary.
    fn summary(&self) -> String;
}

/// Engine options.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Largest queue size offered (a power of two).
    pub(crate) queue_size: u16,
    /// Interrupt vectors of the backend (decides `queue_device_vector`).
    pub(crate) vectors: u32,
    /// Per-request tracing.
    pub(crate) verbose: bool,
}

/// One queue's configuration as the frontend wrote it.
#[derive(Debug)]
struct Vq {
    max: u16,
    size: u16,
    device_vector: u16,
    driver_vector: u16,
    desc: u64,
    avail: u64,
    used: u64,
    /// The live queue once enabled.
    queue: Option<Queue>,
}

impl Vq {
    fn new(max: u16, device_vector: u16) -> Self {
        Vq {
            max,
            size: max,
            device_vector,
            driver_vector: 0,
            desc: 0,
            avail: 0,
            used: 0,
            queue: None,
        }
    }

    fn reset(&mut self) {
        *self = Vq::new(self.max, self.device_vector);
    }
}

/// An enabled queue as the frontend configured it, for a bridge that hands
/// the rings to another process ([`Engine::enabled_queues`]). Addresses are
/// R/W-section offsets the engine checked (inside the section, aligned, past
/// the header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueSetup {
    /// Queue index.
    pub(crate) index: usize,
    /// Largest size offered.
    pub(crate) max: u16,
    /// Size the frontend chose.
    pub(crate) size: u16,
    /// Descriptor table.
    pub(crate) desc: u64,
    /// Avail (driver) ring.
    pub(crate) avail: u64,
    /// Used (device) ring.
    pub(crate) used: u64,
    /// Vector the frontend kicks (the backend's).
    pub(crate) device_vector: u16,
    /// Vector completions ring (the frontend's).
    pub(crate) driver_vector: u16,
}

/// Why a queue could not be enabled.
fn ring_error(
    what: &str,
    addr: u64,
    len: u64,
    align: u64,
    section: u64,
    header: u64,
) -> Option<String> {
    if addr % align != 0 {
        return Some(format!("{what} at {addr:#x} is not {align}-byte aligned"));
    }
    match addr.checked_add(len) {
        Some(end) if end <= section => {}
        _ => {
            return Some(format!(
                "{what} [{addr:#x}, +{len:#x}) is outside the {section:#x}-byte R/W section"
            ))
        }
    }
    if addr < header {
        return Some(format!(
            "{what} at {addr:#x} overlaps the virtio header (first {header:#x} bytes)"
        ));
    }
    None
}

/// The backend's transport state over one R/W section.
pub(crate) struct Engine<D: Device> {
    mem: Section,
    section: u64,
    dev: D,
    config: Vec<u8>,
    offered: u64,
    driver_features: u64,
    device_features_sel: u32,
    driver_features_sel: u32,
    queue_sel: u32,
    status: u32,
    queues: Vec<Vq>,
    opts: Options,
    /// Requests completed since start (for the log).
    pub(crate) requests: u64,
}

/// Logs a line to stderr.
pub(crate) fn log(msg: fmt::Arguments<'_>) {
    eprintln!("lincell remote: {msg}");
}

impl<D: Device> Engine<D> {
    /// An engine over `mem` (the whole R/W section) for `dev`.
    pub(crate) fn new(mem: Mem, dev: D, opts: Options) -> Result<Self> {
        use vm_memory::GuestMemoryBackend;
        let section = mem.last_addr().0.saturating_add(1);
        if section < HEADER_AREA as u64 {
            return Err(Error::Remote(format!(
                "the R/W section has {section} bytes; the virtio header needs at least {HEADER_AREA}"
            )));
        }
        if !opts.queue_size.is_power_of_two() {
            return Err(Error::Remote(format!(
                "queue size {} is not a power of two",
                opts.queue_size
            )));
        }
        let config = dev.config();
        if config.len() > MAX_CONFIG {
            return Err(Error::Remote(format!(
                "device config of {} bytes is too large",
                config.len()
            )));
        }
        let offered = (dev.features() | feature::REQUIRED | 1 << feature::ORDER_PLATFORM)
            & !feature::UNSUPPORTED;
        let queues = (0..dev.num_queues())
            .map(|i| {
                // Queue i is kicked on vector 1 + i when the backend has it,
                // else on vector 0 (which every wake-up handles anyway).
                let v = if u64::from(opts.vectors) > 1 + i as u64 {
                    u16::try_from(1 + i).unwrap_or(0)
                } else {
                    0
                };
                Vq::new(opts.queue_size, v)
            })
            .collect();
        Ok(Engine {
            mem: Section::new(mem)?,
            section,
            dev,
            config,
            offered,
            driver_features: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            status: 0,
            queues,
            opts,
            requests: 0,
        })
    }

    /// The device model.
    pub(crate) fn device(&self) -> &D {
        &self.dev
    }

    /// The device model, mutably.
    pub(crate) fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Feature bits offered.
    pub(crate) fn offered(&self) -> u64 {
        self.offered
    }

    /// Size of the R/W section.
    pub(crate) fn section_len(&self) -> u64 {
        self.section
    }

    /// `queue_device_vector` of each queue.
    pub(crate) fn device_vectors(&self) -> Vec<u16> {
        self.queues.iter().map(|q| q.device_vector).collect()
    }

    /// The feature bits the driver wrote (accepted once FEATURES_OK is set).
    pub(crate) fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// The queues the frontend enabled.
    pub(crate) fn enabled_queues(&self) -> Vec<QueueSetup> {
        self.queues
            .iter()
            .enumerate()
            .filter(|(_, q)| q.queue.is_some())
            .map(|(index, q)| QueueSetup {
                index,
                max: q.max,
                size: q.size,
                desc: q.desc,
                avail: q.avail,
                used: q.used,
                device_vector: q.device_vector,
                driver_vector: q.driver_vector,
            })
            .collect()
    }

    /// Whether the driver set DRIVER_OK (and not FAILED).
    pub(crate) fn live(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 && self.status & VIRTIO_CONFIG_S_FAILED == 0
    }

    /// Header size: fixed part plus config.
    fn header_size(&self) -> usize {
        CONFIG_OFFSET + self.config.len()
    }

    /// Step (2) of the start-up: clears the header area, writes every
    /// backend field, and `revision` last (release).
    pub(crate) fn publish_header(&mut self) {
        self.reset_state();
        self.mem.header().store(off::REVISION, 0u32, Release);
        fence(Ordering::SeqCst);
        let _ = self.mem.write_slice(&[0u8; HEADER_AREA], GuestAddress(0));
        let _ = self
            .mem
            .write_slice(&self.config, GuestAddress(CONFIG_OFFSET as u64));
        // CAST: at most MAX_HEADER_SIZE.
        self.mem
            .header()
            .store(off::SIZE, self.header_size() as u32, Release);
        self.present_device_features();
        self.present_queue();
        fence(Ordering::SeqCst);
        self.mem.header().store(off::REVISION, REVISION, Release);
    }

    /// Forgets everything the driver negotiated (device reset, or the
    /// frontend left): queues off, features cleared, selectors 0.
    fn reset_state(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.driver_features = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.dev.reset();
    }

    /// The frontend left READY: disable everything and present a fresh
    /// device (it renegotiates from scratch when it comes back).
    pub(crate) fn detach(&mut self) {
        self.reset_state();
        for field in [
            off::DEVICE_STATUS,
            off::DEVICE_FEATURES_SEL,
            off::DRIVER_FEATURES_SEL,
            off::DRIVER_FEATURES,
            off::QUEUE_SEL,
        ] {
            self.mem.header().store(field, 0u32, Release);
        }
        self.present_device_features();
        self.present_queue();
        self.mem
            .header()
            .store(off::WRITE_TRANSACTION, 0u32, Release);
    }

    fn present_device_features(&self) {
        let v = match self.device_features_sel {
            // CAST: taking one 32-bit window.
            0 => self.offered as u32,
            1 => (self.offered >> 32) as u32,
            _ => 0,
        };
        self.mem.header().store(off::DEVICE_FEATURES, v, Release);
    }

    fn present_queue(&self) {
        let m = self.mem.header();
        match self.queues.get(self.queue_sel as usize) {
            Some(q) => {
                m.store(off::QUEUE_SIZE, q.size, Release);
                m.store(off::QUEUE_DEVICE_VECTOR, q.device_vector, Release);
                m.store(off::QUEUE_DRIVER_VECTOR, q.driver_vector, Release);
                m.store(off::QUEUE_ENABLE, u16::from(q.queue.is_some()), Release);
                m.store(off::QUEUE_DESC, q.desc, Release);
                m.store(off::QUEUE_DRIVER, q.avail, Release);
                m.store(off::QUEUE_DEVICE, q.used, Release);
            }
            None => {
                for (o, w) in [
                    (off::QUEUE_SIZE, 2),
                    (off::QUEUE_DEVICE_VECTOR, 2),
                    (off::QUEUE_DRIVER_VECTOR, 2),
                    (off::QUEUE_ENABLE, 2),
                    (off::QUEUE_DESC, 8),
                    (off::QUEUE_DRIVER, 8),
                    (off::QUEUE_DEVICE, 8),
                ] {
                    if w == 2 {
                        m.store(o, 0u16, Release);
                    } else {
                        m.store(o, 0u64, Release);
                    }
                }
            }
        }
    }

    /// Applies a pending write transaction, if any; returns whether there
    /// was one. The transaction is always cleared.
    pub(crate) fn poll_transaction(&mut self) -> bool {
        let wt: u32 = self.mem.header().load(off::WRITE_TRANSACTION, Acquire);
        if wt == 0 {
            return false;
        }
        let o = wt as usize;
        match header::writable_field_width(o) {
            Some(w) => {
                let h = self.mem.header();
                let v = match w {
                    2 => u64::from(h.load::<u16>(o, Acquire)),
                    4 => u64::from(h.load::<u32>(o, Acquire)),
                    _ => h.load::<u64>(o, Acquire),
                };
                self.apply(o, v);
            }
            None if o >= CONFIG_OFFSET && o < self.header_size() => {
                if self.opts.verbose {
                    log(format_args!(
                        "config write at {:#x} ignored",
                        o - CONFIG_OFFSET
                    ));
                }
            }
            None => log(format_args!(
                "ignoring a write transaction for offset {wt:#x} (not a writable field)"
            )),
        }
        fence(Ordering::SeqCst);
        self.mem
            .header()
            .store(off::WRITE_TRANSACTION, 0u32, Release);
        true
    }

    fn selected(&mut self) -> Option<&mut Vq> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Applies the frontend's write of `v` to the field at `o`.
    fn apply(&mut self, o: usize, v: u64) {
        // CAST: the width was read for the field, so v fits its type.
        let v32 = v as u32;
        let v16 = v as u16;
        if self.opts.verbose {
            log(format_args!(
                "frontend wrote {v:#x} to header offset {o:#x}"
            ));
        }
        match o {
            off::DEVICE_FEATURES_SEL => {
                self.device_features_sel = v32;
                self.present_device_features();
            }
            off::DRIVER_FEATURES_SEL => self.driver_features_sel = v32,
            off::DRIVER_FEATURES => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features =
                    self.driver_features & !(0xffff_ffff_u64 << shift) | u64::from(v32) << shift;
            }
            off::QUEUE_SEL => {
                self.queue_sel = v32;
                self.present_queue();
            }
            off::QUEUE_SIZE => {
                if let Some(q) = self.selected() {
                    q.size = v16;
                }
            }
            off::QUEUE_DRIVER_VECTOR => {
                if let Some(q) = self.selected() {
                    q.driver_vector = v16;
                }
            }
            off::QUEUE_DESC => {
                if let Some(q) = self.selected() {
                    q.desc = v;
                }
            }
            off::QUEUE_DRIVER => {
                if let Some(q) = self.selected() {
                    q.avail = v;
                }
            }
            off::QUEUE_DEVICE => {
                if let Some(q) = self.selected() {
                    q.used = v;
                }
            }
            off::QUEUE_ENABLE => self.enable_queue(v16 != 0),
            off::DEVICE_STATUS => self.set_status(v32),
            _ => {}
        }
    }

    fn set_status(&mut self, status: u32) {
        if status == 0 {
            if self.status != 0 {
                log(format_args!("driver reset the device"));
            }
            self.reset_state();
            self.present_device_features();
            self.present_queue();
            return;
        }
        let mut status = status;
        if status & VIRTIO_CONFIG_S_FEATURES_OK != 0
            && self.status & VIRTIO_CONFIG_S_FEATURES_OK == 0
        {
            let f = self.driver_features;
            if f & !self.offered != 0 || f & 1 << feature::VERSION_1 == 0 {
                log(format_args!(
                    "refusing driver features {f:#x} (offered {:#x}; VERSION_1 required)",
                    self.offered
                ));
                status &= !VIRTIO_CONFIG_S_FEATURES_OK;
                self.mem.header().store(off::DEVICE_STATUS, status, Release);
            } else {
                log(format_args!("features negotiated: {f:#x}"));
            }
        }
        if status & VIRTIO_CONFIG_S_DRIVER_OK != 0 && self.status & VIRTIO_CONFIG_S_DRIVER_OK == 0 {
            let enabled = self.queues.iter().filter(|q| q.queue.is_some()).count();
            log(format_args!(
                "driver ready (status {status:#x}, {enabled} of {} queues enabled)",
                self.queues.len()
            ));
        }
        if status & VIRTIO_CONFIG_S_FAILED != 0 && self.status & VIRTIO_CONFIG_S_FAILED == 0 {
            log(format_args!("driver marked the device FAILED"));
        }
        self.status = status;
    }

    fn enable_queue(&mut self, on: bool) {
        let qi = self.queue_sel as usize;
        let section = self.section;
        let header = self.header_size() as u64;
        let mem = Mem::clone(&self.mem);
        let Some(q) = self.queues.get_mut(qi) else {
            log(format_args!(
                "frontend enabled queue {qi}, which does not exist"
            ));
            self.mem.header().store(off::QUEUE_ENABLE, 0u16, Release);
            return;
        };
        if !on {
            q.queue = None;
            return;
        }
        let err = if q.size == 0 || !q.size.is_power_of_two() || q.size > q.max {
            Some(format!(
                "size {} (must be a power of two <= {})",
                q.size, q.max
            ))
        } else {
            let parts = [
                (
                    "descriptor table",
                    q.desc,
                    desc_table_size(q.size),
                    VIRTQ_DESC_ALIGN,
                ),
                (
                    "avail ring",
                    q.avail,
                    avail_ring_size(q.size),
                    VIRTQ_AVAIL_ALIGN,
                ),
                (
                    "used ring",
                    q.used,
                    used_ring_size(q.size),
                    VIRTQ_USED_ALIGN,
                ),
            ];
            parts.into_iter().find_map(|(what, addr, len, align)| {
                // CAST: usize to u64 is lossless on the hosts lincell supports.
                ring_error(what, addr, len as u64, align as u64, section, header)
            })
        };
        let queue = match err {
            Some(e) => Err(Error::Remote(e)),
            None => Self::make_queue(q, &mem),
        };
        match queue {
            Ok(queue) => {
                q.queue = Some(queue);
                if self.opts.verbose {
                    log(format_args!(
                        "queue {qi} enabled: size {}, desc {:#x}, avail {:#x}, used {:#x}, driver vector {}",
                        q.size, q.desc, q.avail, q.used, q.driver_vector
                    ));
                }
            }
            Err(e) => {
                log(format_args!("refusing to enable queue {qi}: {e}"));
                q.queue = None;
                self.mem.header().store(off::QUEUE_ENABLE, 0u16, Release);
            }
        }
    }

    fn make_queue(q: &Vq, mem: &Mem) -> Result<Queue> {
        let mut queue = Queue::new(q.max).map_err(remote)?;
        queue.try_set_size(q.size).map_err(remote)?;
        queue
            .try_set_desc_table_address(GuestAddress(q.desc))
            .map_err(remote)?;
        queue
            .try_set_avail_ring_address(GuestAddress(q.avail))
            .map_err(remote)?;
        queue
            .try_set_used_ring_address(GuestAddress(q.used))
            .map_err(remote)?;
        queue.set_ready(true);
        if !queue.is_valid(mem) {
            return Err(Error::Remote("rings are not accessible".into()));
        }
        Ok(queue)
    }

    /// Processes every enabled queue; returns the frontend vectors to ring
    /// (after `queue_event` was set), without duplicates.
    pub(crate) fn process_queues(&mut self) -> Vec<u16> {
        let mut ring = Vec::new();
        if !self.live() {
            return ring;
        }
        for qi in 0..self.queues.len() {
            if self.process_queue(qi) {
                let v = self.queues[qi].driver_vector;
                if !ring.contains(&v) {
                    ring.push(v);
                }
            }
        }
        if !ring.is_empty() {
            fence(Ordering::SeqCst);
            self.mem.header().store(off::QUEUE_EVENT, 1u8, Release);
        }
        ring
    }

    /// Processes queue `qi`; returns whether used entries were added.
    fn process_queue(&mut self, qi: usize) -> bool {
        let mem = Mem::clone(&self.mem);
        let mut added = false;
        // At most one ring's worth per call, so one queue cannot starve
        // the rest (or spin on a hostile avail index).
        let budget = self.queues[qi].queue.as_ref().map_or(0, |q| q.size());
        for _ in 0..budget {
            if !self.dev.can_take(qi) {
                break;
            }
            let Some(queue) = self.queues[qi].queue.as_mut() else {
                break;
            };
            let chain = match queue.iter(&mem) {
                Ok(mut it) => it.next(),
                Err(e) => {
                    log(format_args!(
                        "queue {qi}: {e} (avail index corrupt?); queue disabled until re-enabled"
                    ));
                    self.queues[qi].queue = None;
                    break;
                }
            };
            let Some(chain) = chain else {
                break;
            };
            let head = chain.head_index();
            let done = self.dev.handle(qi, chain, &mem);
            self.complete(qi, head, done, &mem);
            added = true;
        }
        added
    }

    /// Puts the used entry the device asks for.
    fn complete(&mut self, qi: usize, head: u16, done: Done, mem: &Mem) {
        self.requests += 1;
        let Some(queue) = self.queues[qi].queue.as_mut() else {
            return;
        };
        let r = match self.dev.used(qi, head, queue.size(), done) {
            Used::Checked { head, len } => queue.add_used(mem, head, len).map_err(remote),
            Used::Raw { id, len } => raw_used(queue, mem, id, len),
            Used::SkewedIndex { head, len, skew } => {
                queue.add_used(mem, head, len).map_err(remote).map(|()| {
                    let idx = queue.next_used().wrapping_add(skew);
                    let _ = mem.store(
                        idx.to_le(),
                        GuestAddress(queue.used_ring() + RING_IDX_OFFSET),
                        Ordering::Release,
                    );
                })
            }
        };
        if let Err(e) = r {
            log(format_args!(
                "queue {qi}: cannot complete chain {head}: {e}"
            ));
        }
    }
}

/// An error of the virtqueue or memory crates as an [`Error::Remote`].
fn remote(e: impl fmt::Display) -> Error {
    Error::Remote(e.to_string())
}

/// Writes a used element without the checks of `add_used` ([`Used::Raw`]).
fn raw_used(queue: &mut Queue, mem: &Mem, id: u32, len: u32) -> Result<()> {
    let size = queue.size();
    let slot = usize::from(queue.next_used() % size);
    let base = queue.used_ring();
    let mut elem = [0u8; VIRTQ_USED_ELEMENT_SIZE];
    elem[VIRTQ_USED_ELEM_ID_OFFSET..][..4].copy_from_slice(&id.to_le_bytes());
    elem[VIRTQ_USED_ELEM_LEN_OFFSET..][..4].copy_from_slice(&len.to_le_bytes());
    // CAST: usize to u64 is lossless on the hosts lincell supports.
    let at = base + used_entry(0, slot) as u64;
    mem.write_slice(&elem, GuestAddress(at)).map_err(remote)?;
    let next = queue.next_used().wrapping_add(1);
    queue.set_next_used(next);
    fence(Ordering::Release);
    mem.store(
        next.to_le(),
        GuestAddress(base + RING_IDX_OFFSET),
        Ordering::Release,
    )
    .map_err(remote)
}
