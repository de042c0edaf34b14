// SPDX-License-Identifier: GPL-2.0

//! One interface for both kinds of ivshmem peer: a guest's `/dev/ivshmemN`
//! and a host process connected to the ivshmem server.
//!
//! Every `lincell ivshmem` subcommand that rings, waits or touches shared
//! memory works through [`Endpoint`] and [`Shm`], so it runs unchanged in a
//! guest (`DEV`) and on the host (`--socket PATH`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ivshmem_peer::v2::V2Layout;
use ivshmem_peer::{eventfd, poll, Peer, SharedMemory};

use lincell_shared::ivshmem::uapi;
use lincell_shared::ivshmem::v1layout;
use lincell_shared::shmem::{RawRegion, SharedMemory as _};

use super::dev::{Device, IntervalTimer, Mapping};

/// The shared memory of an endpoint, which may be mapped in pieces.
///
/// The memory is written concurrently by other peers: words are loaded and
/// stored through the [`RawRegion`] that [`Shm::region_at`] finds (lincell's
/// one shared-memory interface), bytes are copied.
pub(crate) trait Shm {
    /// Size in bytes.
    fn size(&self) -> usize;
    /// The mapped memory holding the `len` bytes at `offset` (writable if
    /// `write`), and their offset in it.
    fn region_at(&self, offset: usize, len: usize, write: bool) -> io::Result<(&RawRegion, usize)>;
    /// Copies bytes out.
    fn load_bytes(&self, offset: usize, buf: &mut [u8]) -> io::Result<()>;
    /// Copies bytes in.
    fn store_bytes(&self, offset: usize, data: &[u8]) -> io::Result<()>;
}

impl Shm for SharedMemory {
    fn size(&self) -> usize {
        self.len()
    }
    fn region_at(&self, offset: usize, _: usize, _: bool) -> io::Result<(&RawRegion, usize)> {
        Ok((self.region(), offset))
    }
    fn load_bytes(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        self.read_bytes(offset, buf)
    }
    fn store_bytes(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        self.write_bytes(offset, data)
    }
}

/// Doorbells that arrived in one wait.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Events {
    /// Bit `v` set: vector `v` fired at least once.
    pub(crate) mask: u64,
    /// Rings counted. A device reports one per fired vector (it cannot
    /// tell coalesced interrupts apart); a host peer reports the eventfd
    /// counts, so two rings merged into one wake-up count 2.
    pub(crate) count: u64,
}

/// How a device endpoint waits for doorbells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitMode {
    /// Blocking `read(2)` (bounded by a per-thread interval timer).
    Read,
    /// `poll(2)` with a timeout, then `read(2)`.
    Poll,
}

/// An ivshmem peer: its id, doorbells and shared memory.
pub(crate) trait Endpoint {
    /// Own peer id.
    fn id(&self) -> u32;
    /// Number of interrupt vectors (0: no doorbells).
    fn vectors(&self) -> u32;
    /// A short description for messages (`/dev/ivshmem0`, `host peer 3`).
    fn describe(&self) -> String;
    /// Rings `vector` of peer `peer`.
    fn ring(&mut self, peer: u32, vector: u32) -> io::Result<()>;
    /// Waits up to `timeout` until a vector in `mask` fires; returns every
    /// vector seen fired meanwhile (possibly outside `mask` on a device,
    /// where one `read` reports them all). Fails with `TimedOut` when none
    /// fired in time.
    fn wait(&mut self, mask: u64, timeout: Duration) -> io::Result<Events>;
    /// Takes what is pending without waiting (`None`: nothing).
    fn try_wait(&mut self) -> io::Result<Option<Events>>;
    /// As [`Endpoint::wait`], but also returns as soon as `extra` is
    /// readable (or hung up), with the vectors that fired meanwhile (often
    /// none): for an event loop that serves another descriptor beside the
    /// doorbells (the vdev-remote backend's TAP device). The default waits
    /// in slices of at most a millisecond and looks at `extra` in between;
    /// both endpoints here poll `extra` together with their doorbells.
    fn wait_or(
        &mut self,
        mask: u64,
        timeout: Duration,
        extra: BorrowedFd<'_>,
    ) -> io::Result<Events> {
        let deadline = Instant::now() + timeout;
        loop {
            if poll::wait_readable(extra, Some(Duration::ZERO))? {
                return Ok(self.try_wait()?.unwrap_or_default());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait(mask, left.min(Duration::from_millis(1))) {
                Err(e) if e.kind() == io::ErrorKind::TimedOut && !left.is_zero() => {}
                r => return r,
            }
        }
    }
    /// The shared memory.
    fn shm(&self) -> &dyn Shm;
    /// Byte offset and size of the common read/write section: the whole
    /// region, or the R/W section when the memory has a section layout
    /// (ivshmem 2.0, or lincell's v1 layout header).
    fn rw_section(&self) -> (usize, usize);
    /// Every peer's output section, by peer id, as (offset, size), when
    /// the memory has a section layout with output sections (ivshmem 2.0,
    /// lincell's v1 layout); empty otherwise. The own one is writable
    /// through [`Endpoint::shm`], the others readable.
    fn output_sections(&self) -> Vec<(usize, usize)> {
        Vec::new()
    }
    /// The device, when this endpoint is one (for device-only checks).
    fn device(&self) -> Option<&Device> {
        None
    }
    /// Changes how a device waits (host peers always poll their eventfds).
    fn set_wait_mode(&mut self, _mode: WaitMode) -> io::Result<()> {
        Ok(())
    }
    /// Base address in this process and length of the R/W section (as
    /// [`Endpoint::rw_section`] locates it), when it is mapped read/write:
    /// for code that builds its own view of the section (the vdev-remote
    /// backend's guest memory). The pointer stays valid while `self` lives.
    fn rw_ptr(&self) -> Option<(*mut u8, usize)> {
        None
    }
    /// Every peer's state (the state table), when the memory has one.
    fn peer_states(&self) -> io::Result<Vec<u32>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: no state table", self.describe()),
        ))
    }
    /// Publishes the own state: the device does it on `/dev/ivshmemN`; a
    /// host peer stores its state-table entry and rings vector 0 of every
    /// other peer below `max_peers` (lincell's v1 layout state protocol).
    fn set_state(&mut self, _state: u32) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: no state table", self.describe()),
        ))
    }
}

/// Error for a wait that ran out of time.
fn timed_out(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what)
}

/// The mappings of a device's shared memory, addressed by offsets in the
/// whole region.
///
/// Without a section layout the whole region is one read/write mapping.
/// With one, the driver only maps within one section at a time and refuses
/// write access to read-only sections, so this holds: the R/W section and
/// the own output section read/write, the state table, the region before
/// the sections (the v1 layout header) and, up to [`MAPPED_PEERS`] peers,
/// the other peers' output sections read-only.
/// Other peers' output sections are mapped for the first this many peers.
const MAPPED_PEERS: u32 = 64;

pub(crate) struct DeviceShm {
    size: usize,
    maps: Vec<(usize, Mapping, bool)>,
}

impl DeviceShm {
    /// Maps what `dev` allows, as described above.
    pub(crate) fn map(dev: &Device) -> io::Result<Self> {
        let i = *dev.info();
        let size = usize::try_from(i.shmem_size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "shared memory larger than the address space",
            )
        })?;
        let us = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        let mut maps = Vec::new();
        if i.flags & uapi::INFO_SECTIONS == 0 {
            maps.push((0, dev.map_all()?, true));
            return Ok(DeviceShm { size, maps });
        }
        let ro = libc::PROT_READ;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let own_out = i.output_offset + u64::from(i.own_id) * i.output_size;
        let first = [i.state_table_offset, i.rw_offset, i.output_offset]
            .into_iter()
            .filter(|&o| o > 0)
            .min()
            .unwrap_or(0);
        let others = (0..i.max_peers.min(MAPPED_PEERS))
            .filter(|&p| p != i.own_id)
            .map(|p| {
                let off = i.output_offset + u64::from(p) * i.output_size;
                (off, i.output_size, ro, false)
            });
        // The last field: whether a failure to map is an error (the others'
        // output sections are an extra, for the channels that use them).
        let sections = [
            (0, first, ro, true),
            (i.state_table_offset, i.state_table_size, ro, true),
            (i.rw_offset, i.rw_size, rw, true),
            (own_out, i.output_size, rw, true),
        ];
        for (off, len, prot, needed) in sections.into_iter().chain(others) {
            if len == 0 {
                continue;
            }
            let m = match dev.mmap_raw(off, us(len), prot, libc::MAP_SHARED) {
                Err(_) if !needed => continue,
                r => r,
            }
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "{}: mmap {len} bytes at {off:#x}: {e}",
                        dev.path().display()
                    ),
                )
            })?;
            maps.push((us(off), m, prot == rw));
        }
        Ok(DeviceShm { size, maps })
    }

    /// The mapping holding `len` bytes at `offset`, and the offset in it.
    fn find(&self, offset: usize, len: usize, write: bool) -> io::Result<(&Mapping, usize)> {
        for (base, m, writable) in &self.maps {
            if offset >= *base
                && offset
                    .checked_add(len)
                    .is_some_and(|end| end <= base + m.len())
            {
                if write && !writable {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{len} bytes at {offset:#x} are in a read-only section"),
                    ));
                }
                return Ok((m, offset - base));
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{len} bytes at {offset:#x} are not inside one mapped section of the {:#x}-byte region", self.size),
        ))
    }
}

impl DeviceShm {
    /// The read/write mapping starting at `offset` of at least `len` bytes.
    fn rw_mapping_at(&self, offset: usize, len: usize) -> Option<&Mapping> {
        self.maps
            .iter()
            .find(|(base, m, writable)| *writable && *base == offset && m.len() >= len)
            .map(|(_, m, _)| m)
    }
}

impl Shm for DeviceShm {
    fn size(&self) -> usize {
        self.size
    }
    fn region_at(&self, offset: usize, len: usize, write: bool) -> io::Result<(&RawRegion, usize)> {
        let (m, o) = self.find(offset, len, write)?;
        Ok((m.region(), o))
    }
    fn load_bytes(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        let (m, o) = self.find(offset, buf.len(), false)?;
        m.read_bytes(o, buf)
    }
    fn store_bytes(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        let (m, o) = self.find(offset, data.len(), true)?;
        m.write_bytes(o, data)
    }
}

/// A guest's `/dev/ivshmemN` with its shared memory mapped.
pub(crate) struct DeviceEndpoint {
    dev: Device,
    map: DeviceShm,
    mode: WaitMode,
    /// Interrupts blocking reads so that they honour deadlines (read mode).
    timer: Option<IntervalTimer>,
}

impl DeviceEndpoint {
    /// Opens `path`, maps its shared memory, and waits in `mode`.
    pub(crate) fn open(path: &Path, mode: WaitMode) -> io::Result<Self> {
        let dev = Device::open(path)?;
        let map = DeviceShm::map(&dev)?;
        let timer = match mode {
            WaitMode::Read => Some(IntervalTimer::start(Duration::from_millis(250))?),
            WaitMode::Poll => None,
        };
        Ok(DeviceEndpoint {
            dev,
            map,
            mode,
            timer,
        })
    }
}

impl Endpoint for DeviceEndpoint {
    fn id(&self) -> u32 {
        self.dev.info().own_id
    }
    fn vectors(&self) -> u32 {
        self.dev.info().vectors
    }
    fn describe(&self) -> String {
        format!("{} (peer {})", self.dev.path().display(), self.id())
    }
    fn ring(&mut self, peer: u32, vector: u32) -> io::Result<()> {
        self.dev.ring(peer, vector)
    }
    fn wait(&mut self, mask: u64, timeout: Duration) -> io::Result<Events> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0u64;
        while seen & mask == 0 {
            seen |= match self.mode {
                WaitMode::Read => self.dev.read_events(deadline)?,
                WaitMode::Poll => self.dev.poll_events(deadline)?,
            };
            if seen & mask == 0 && Instant::now() >= deadline {
                return Err(timed_out(format!(
                    "{}: no doorbell on vectors {mask:#x} within {timeout:?} (saw {seen:#x})",
                    self.dev.path().display()
                )));
            }
        }
        Ok(Events {
            mask: seen,
            count: u64::from(seen.count_ones()),
        })
    }
    fn try_wait(&mut self) -> io::Result<Option<Events>> {
        Ok(self.dev.try_read_events()?.map(|mask| Events {
            mask,
            count: u64::from(mask.count_ones()),
        }))
    }
    fn wait_or(
        &mut self,
        mask: u64,
        timeout: Duration,
        extra: BorrowedFd<'_>,
    ) -> io::Result<Events> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0u64;
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.dev.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: extra.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let left = deadline.saturating_duration_since(Instant::now());
            poll::poll_fds(&mut fds, Some(left))?;
            if fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!(
                        "{}: poll reports the device gone (revents {:#x})",
                        self.dev.path().display(),
                        fds[0].revents
                    ),
                ));
            }
            if fds[0].revents & libc::POLLIN != 0 {
                seen |= self.dev.try_read_events()?.unwrap_or(0);
            }
            if seen & mask != 0 || fds[1].revents != 0 {
                return Ok(Events {
                    mask: seen,
                    count: u64::from(seen.count_ones()),
                });
            }
            if left.is_zero() {
                return Err(timed_out(format!(
                    "{}: no doorbell on vectors {mask:#x} within {timeout:?} (saw {seen:#x})",
                    self.dev.path().display()
                )));
            }
        }
    }
    fn shm(&self) -> &dyn Shm {
        &self.map
    }
    fn rw_section(&self) -> (usize, usize) {
        let i = self.dev.info();
        (
            usize::try_from(i.rw_offset).unwrap_or(0),
            usize::try_from(i.rw_size).unwrap_or(0),
        )
    }
    fn output_sections(&self) -> Vec<(usize, usize)> {
        let i = self.dev.info();
        let us = |v: u64| usize::try_from(v).ok();
        if i.output_size == 0 {
            return Vec::new();
        }
        (0..i.max_peers)
            .map_while(|p| {
                let off = i.output_offset.checked_add(u64::from(p) * i.output_size)?;
                Some((us(off)?, us(i.output_size)?))
            })
            .collect()
    }
    fn device(&self) -> Option<&Device> {
        Some(&self.dev)
    }
    fn rw_ptr(&self) -> Option<(*mut u8, usize)> {
        let (off, len) = self.rw_section();
        let (off, len) = if len == 0 {
            (0, self.map.size)
        } else {
            (off, len)
        };
        self.map.rw_mapping_at(off, len).map(|m| (m.as_ptr(), len))
    }
    fn peer_states(&self) -> io::Result<Vec<u32>> {
        self.dev.peer_states()
    }
    fn set_state(&mut self, state: u32) -> io::Result<()> {
        self.dev.set_state(state)
    }
    fn set_wait_mode(&mut self, mode: WaitMode) -> io::Result<()> {
        if mode != self.mode {
            self.timer = None;
            if mode == WaitMode::Read {
                self.timer = Some(IntervalTimer::start(Duration::from_millis(250))?);
            }
            self.mode = mode;
        }
        Ok(())
    }
}

/// A host process connected to the ivshmem server as a peer.
pub(crate) struct PeerEndpoint {
    peer: Peer,
    socket: PathBuf,
    /// The ivshmem 2.0 layout of an `ivshmem-server --v2` device, from
    /// [`V2_LAYOUT_ENV`]; `None`: the lincell v1 layout header, if any.
    v2: Option<V2Layout>,
}

/// Environment variable that tells host peers the layout of an
/// `ivshmem-server --v2` device (the server protocol carries none):
/// `MAX_PEERS:RW_SIZE:OUTPUT_SIZE`, the numbers given to `--max-peers`,
/// `--rw-size` and `--output-size` (decimal, 0x-hex, K/M/G suffixes).
pub(crate) const V2_LAYOUT_ENV: &str = "LINCELL_IVSHMEM_V2_LAYOUT";

/// Parses a [`V2_LAYOUT_ENV`] value.
pub(crate) fn parse_v2_layout(s: &str) -> io::Result<V2Layout> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{V2_LAYOUT_ENV}={s:?}: expected MAX_PEERS:RW_SIZE:OUTPUT_SIZE, e.g. 3:64K:16K"
            ),
        )
    };
    let parts: Vec<&str> = s.split(':').collect();
    let [peers, rw, out] = parts[..] else {
        return Err(bad());
    };
    Ok(V2Layout {
        max_peers: super::cli::number::<u32>(peers).map_err(|_| bad())?,
        rw_size: super::cli::number::<u64>(rw).map_err(|_| bad())?,
        output_size: super::cli::number::<u64>(out).map_err(|_| bad())?,
    })
}

impl PeerEndpoint {
    /// Connects to the server at `socket`.
    pub(crate) fn connect(socket: &Path) -> io::Result<Self> {
        let peer = Peer::connect(socket)?;
        let v2 = match std::env::var(V2_LAYOUT_ENV) {
            Ok(v) if !v.is_empty() => {
                let layout = parse_v2_layout(&v)?;
                // Fail early when the numbers do not fit this memory.
                peer.v2(layout)?;
                Some(layout)
            }
            _ => None,
        };
        Ok(PeerEndpoint {
            peer,
            socket: socket.to_path_buf(),
            v2,
        })
    }

    /// The connected peer.
    pub(crate) fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The ivshmem 2.0 layout this peer was given ([`V2_LAYOUT_ENV`]).
    pub(crate) fn v2_layout(&self) -> Option<V2Layout> {
        self.v2
    }

    /// Applies the server's news (peers joining or leaving).
    pub(crate) fn refresh(&mut self) -> io::Result<()> {
        self.peer.process_messages().map(drop).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("ivshmem server {}: {e}", self.socket.display()),
            )
        })
    }

    /// [`Endpoint::wait`], and with `extra` [`Endpoint::wait_or`].
    fn wait_with(
        &mut self,
        mask: u64,
        timeout: Duration,
        extra: Option<BorrowedFd<'_>>,
    ) -> io::Result<Events> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut fds = vec![libc::pollfd {
                fd: self.peer.server_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(x) = extra {
                fds.push(libc::pollfd {
                    fd: x.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            for v in 0..self.peer.vectors().min(64) {
                if mask & (1 << v) != 0 {
                    let fd = self.peer.own_event_fd(v)?;
                    fds.push(libc::pollfd {
                        fd: fd.as_fd().as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            poll::poll_fds(&mut fds, Some(left))?;
            if fds[0].revents != 0 {
                self.refresh()?;
            }
            let ev = self.collect(mask)?;
            let extra_ready = extra.is_some() && fds.get(1).is_some_and(|f| f.revents != 0);
            if ev.mask != 0 || extra_ready {
                return Ok(ev);
            }
            if left.is_zero() {
                return Err(timed_out(format!(
                    "{}: no doorbell on vectors {mask:#x} within {timeout:?}",
                    self.describe()
                )));
            }
        }
    }

    /// Reads every readable eventfd among `mask`.
    fn collect(&self, mask: u64) -> io::Result<Events> {
        let mut ev = Events::default();
        for v in 0..self.peer.vectors().min(64) {
            if mask & (1 << v) == 0 {
                continue;
            }
            let fd = self.peer.own_event_fd(v)?;
            if let Some(n) = eventfd::try_read(fd)? {
                ev.mask |= 1 << v;
                ev.count += n;
            }
        }
        Ok(ev)
    }
}

impl Endpoint for PeerEndpoint {
    fn id(&self) -> u32 {
        u32::from(self.peer.id())
    }
    fn vectors(&self) -> u32 {
        u32::try_from(self.peer.vectors()).unwrap_or(u32::MAX)
    }
    fn describe(&self) -> String {
        format!("host peer {} on {}", self.peer.id(), self.socket.display())
    }
    fn ring(&mut self, peer: u32, vector: u32) -> io::Result<()> {
        let p = u16::try_from(peer).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("peer id {peer} is not 16-bit"),
            )
        })?;
        // CAST: u32 to usize is lossless on Linux targets.
        let v = vector as usize;
        match self.peer.ring(p, v) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Perhaps it joined after our last look: catch up, retry once.
                self.refresh()?;
                self.peer.ring(p, v)
            }
            r => r,
        }
    }
    fn wait(&mut self, mask: u64, timeout: Duration) -> io::Result<Events> {
        self.wait_with(mask, timeout, None)
    }
    fn wait_or(
        &mut self,
        mask: u64,
        timeout: Duration,
        extra: BorrowedFd<'_>,
    ) -> io::Result<Events> {
        self.wait_with(mask, timeout, Some(extra))
    }
    fn try_wait(&mut self) -> io::Result<Option<Events>> {
        let ev = self.collect(u64::MAX)?;
        Ok((ev.mask != 0).then_some(ev))
    }
    fn shm(&self) -> &dyn Shm {
        self.peer.shm()
    }
    fn rw_section(&self) -> (usize, usize) {
        if let Some(view) = self.v2.and_then(|l| self.peer.v2(l).ok()) {
            let rw = view.rw();
            if let (Ok(o), Ok(n)) = (usize::try_from(rw.offset), usize::try_from(rw.len)) {
                return (o, n);
            }
        }
        v1_rw_section(self.peer.shm().region())
    }
    fn output_sections(&self) -> Vec<(usize, usize)> {
        let shm = self.peer.shm().region();
        let (layout, base) = match self.v2.and_then(|l| self.peer.v2(l).ok()) {
            Some(view) => (*view.layout(), 0),
            None => match v1_header(shm)
                .and_then(|h| Some((h.layout(0, shm.len() as u64).ok()?, h.granule)))
            {
                Some(l) => l,
                None => return Vec::new(),
            },
        };
        (0..layout.max_peers())
            .map_while(|p| {
                let s = layout.output(p)?;
                let off = usize::try_from(base.checked_add(s.offset)?).ok()?;
                Some((off, usize::try_from(s.len).ok()?))
            })
            .filter(|&(_, len)| len > 0)
            .collect()
    }
    fn rw_ptr(&self) -> Option<(*mut u8, usize)> {
        let (off, len) = self.rw_section();
        if off.checked_add(len)? > self.peer.shm().len() {
            return None;
        }
        // SAFETY: `off + len` is inside the mapping (checked above).
        Some((unsafe { self.peer.shm().as_ptr().add(off) }, len))
    }
    fn peer_states(&self) -> io::Result<Vec<u32>> {
        if let Some(l) = self.v2 {
            return self.peer.v2(l)?.states();
        }
        let shm = self.peer.shm().region();
        let (table, max_peers) = v1_state_table(shm).ok_or_else(no_v1_layout)?;
        (0..max_peers)
            .map(|p| Ok(shm.load(table + 4 * p as usize, Ordering::Acquire)?))
            .collect()
    }
    fn set_state(&mut self, state: u32) -> io::Result<()> {
        if let Some(l) = self.v2 {
            self.refresh()?;
            return self.peer.v2(l)?.set_state(state).map(drop);
        }
        let shm = self.peer.shm().region();
        let (table, max_peers) = v1_state_table(shm).ok_or_else(no_v1_layout)?;
        let own = self.id();
        if own >= max_peers {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("own peer id {own} has no state-table entry (max_peers {max_peers})"),
            ));
        }
        // CAST: own < max_peers <= 1024.
        shm.store(table + 4 * own as usize, state, Ordering::Relaxed)?;
        std::sync::atomic::fence(Ordering::SeqCst);
        self.refresh()?;
        for p in self.peer.peers() {
            if u32::from(p) != own && u32::from(p) < max_peers {
                self.ring(u32::from(p), 0)?;
            }
        }
        Ok(())
    }
}

/// Error for state operations on memory without lincell's v1 layout.
fn no_v1_layout() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "shared memory has no lincell v1 layout, hence no state table",
    )
}

/// Offset of the state table and `max_peers` of lincell's v1 layout in a
/// host peer's memory `shm`, if it holds a valid one.
pub(crate) fn v1_state_table(shm: &RawRegion) -> Option<(usize, u32)> {
    let h = v1_header(shm)?;
    let l = h.layout(0, shm.len() as u64).ok()?;
    let off = usize::try_from(h.granule + l.state_table().offset).ok()?;
    Some((off, h.max_peers))
}

/// lincell's v1 layout header of a host peer's memory `shm`, if it holds a
/// published, valid one.
fn v1_header(shm: &RawRegion) -> Option<v1layout::Header> {
    if v1layout::is_published(shm) != Ok(true) {
        return None;
    }
    v1layout::Header::read(shm).ok()
}

/// The R/W section of memory seen from the host: after lincell's v1
/// layout header if a guest driver published one, else the whole region.
pub(crate) fn v1_rw_section(shm: &RawRegion) -> (usize, usize) {
    let whole = (0, shm.len());
    let Some(h) = v1_header(shm) else {
        return whole;
    };
    let Ok(l) = h.layout(0, shm.len() as u64) else {
        return whole;
    };
    let rw = l.rw();
    match (
        usize::try_from(h.granule + rw.offset),
        usize::try_from(rw.len),
    ) {
        (Ok(o), Ok(n)) => (o, n),
        _ => whole,
    }
}

/// An offset in the shared memory: absolute, or relative to the R/W
/// section (written `rw` or `rw+OFFSET` on the command line, see
/// `cli::shm_offset`), which is where peers may write when the memory has a
/// section layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ShmOffset {
    /// Bytes from the start of the region.
    Abs(usize),
    /// Bytes from the start of the R/W section.
    Rw(usize),
}

impl std::fmt::Display for ShmOffset {
    /// As the command line takes it (`4096`, `rw+0x1000`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShmOffset::Abs(o) => write!(f, "{o}"),
            ShmOffset::Rw(o) => write!(f, "rw+{o:#x}"),
        }
    }
}

impl ShmOffset {
    /// The absolute offset on `ep`.
    pub(crate) fn resolve(self, ep: &dyn Endpoint) -> usize {
        match self {
            ShmOffset::Abs(o) => o,
            ShmOffset::Rw(o) => ep.rw_section().0.saturating_add(o),
        }
    }
}

/// Where a subcommand talks to ivshmem: a device node, or the server socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/dev/ivshmemN` in a guest.
    Device(PathBuf),
    /// The ivshmem server's UNIX socket, joined as a host peer.
    Socket(PathBuf),
}

impl Target {
    /// Chooses from a `DEV` operand and a `--socket` option: the socket if
    /// given, else `DEV` (a UNIX socket given as `DEV` is joined as a host
    /// peer too), else `default` if any.
    pub(crate) fn resolve(
        dev: Option<&Path>,
        socket: Option<&Path>,
        default: Option<&Path>,
    ) -> io::Result<Self> {
        use std::os::unix::fs::FileTypeExt;
        if let Some(s) = socket {
            return Ok(Target::Socket(s.to_path_buf()));
        }
        let dev = dev.or(default).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no device: give DEV (e.g. /dev/ivshmem0) or --socket PATH",
            )
        })?;
        let is_socket = std::fs::metadata(dev).is_ok_and(|m| m.file_type().is_socket());
        Ok(if is_socket {
            Target::Socket(dev.to_path_buf())
        } else {
            Target::Device(dev.to_path_buf())
        })
    }

    /// Opens the endpoint; `mode` matters for devices only.
    pub(crate) fn open(&self, mode: WaitMode) -> io::Result<Box<dyn Endpoint>> {
        Ok(match self {
            Target::Device(p) => Box::new(DeviceEndpoint::open(p, mode)?),
            Target::Socket(s) => Box::new(PeerEndpoint::connect(s)?),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn v2_layout_from_the_environment_syntax() {
        assert_eq!(
            parse_v2_layout("3:64K:0x4000").unwrap(),
            V2Layout {
                max_peers: 3,
                rw_size: 64 << 10,
                output_size: 0x4000
            }
        );
        for bad in [
            "",
            "3",
            "3:64K",
            "3:64K:16K:1",
            "x:1:1",
            "3:1:-1",
            "99999999999:0:0",
        ] {
            assert!(parse_v2_layout(bad).is_err(), "{bad:?}");
        }
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::{self, JoinHandle};

    use ivshmem_server::{Config, MemoryBacking, Server};

    /// An ivshmem server on a temporary socket, run by a thread until dropped.
    pub(crate) struct TestServer {
        pub(crate) dir: PathBuf,
        pub(crate) socket: PathBuf,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<io::Result<()>>>,
    }

    impl TestServer {
        pub(crate) fn start(vectors: u16) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "lincell-ivshmem-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let config = Config {
                socket_path: dir.join("sock"),
                memory: MemoryBacking::Dir(dir.clone()),
                size: 1 << 20,
                vectors,
                verbose: false,
            };
            let mut server = Server::new(&config).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = thread::spawn(move || server.run_until(&flag));
            TestServer {
                dir,
                socket: config.socket_path,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Waits until `ep` knows peer `other`.
    pub(crate) fn wait_for_peer(ep: &mut PeerEndpoint, other: u32) {
        let until = Instant::now() + Duration::from_secs(5);
        while !ep.peer().peers().contains(&(other as u16)) {
            assert!(Instant::now() < until, "peer {other} never appeared");
            ep.refresh().unwrap();
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn host_peers_ring_each_other_and_share_memory() {
        let server = TestServer::start(2);
        let mut a = PeerEndpoint::connect(&server.socket).unwrap();
        let mut b = PeerEndpoint::connect(&server.socket).unwrap();
        wait_for_peer(&mut a, b.id());
        assert_eq!(a.vectors(), 2);
        assert_ne!(a.id(), b.id());

        a.shm().store_bytes(4096, b"from a").unwrap();
        let mut buf = [0u8; 6];
        b.shm().load_bytes(4096, &mut buf).unwrap();
        assert_eq!(&buf, b"from a");
        let (m, o) = b.shm().region_at(8, 4, true).unwrap();
        m.store(o, 0x1234_5678_u32, Ordering::Release).unwrap();
        let (m, o) = a.shm().region_at(8, 4, false).unwrap();
        assert_eq!(m.load::<u32>(o, Ordering::Acquire), Ok(0x1234_5678));

        a.ring(b.id(), 1).unwrap();
        assert_eq!(
            b.wait(0b10, Duration::from_secs(5)).unwrap(),
            Events {
                mask: 0b10,
                count: 1
            }
        );
        assert!(
            b.try_wait().unwrap().is_none(),
            "nothing left after the wait"
        );

        // Two rings before the wake-up coalesce into one eventfd count of 2.
        a.ring(b.id(), 0).unwrap();
        a.ring(b.id(), 0).unwrap();
        assert_eq!(
            b.wait(u64::MAX, Duration::from_secs(5)).unwrap(),
            Events { mask: 1, count: 2 }
        );

        let t = Instant::now();
        let e = b.wait(u64::MAX, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t.elapsed() >= Duration::from_millis(50));

        assert!(a.ring(999, 0).is_err(), "unknown peer");
        assert!(a.ring(b.id(), 2).is_err(), "no vector 2");
    }

    #[test]
    fn wait_or_wakes_for_the_extra_descriptor_and_for_doorbells() {
        use std::io::{Read, Write};
        use std::os::fd::{FromRawFd, OwnedFd};
        let server = TestServer::start(2);
        let mut a = PeerEndpoint::connect(&server.socket).unwrap();
        let mut b = PeerEndpoint::connect(&server.socket).unwrap();
        wait_for_peer(&mut a, b.id());
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both are new descriptors nothing else owns.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (mut r, mut w) = (std::fs::File::from(r), std::fs::File::from(w));
        // Nothing: times out.
        let e = b
            .wait_or(u64::MAX, Duration::from_millis(30), r.as_fd())
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        // The descriptor readable: returns at once with no vector.
        w.write_all(b"x").unwrap();
        let t = Instant::now();
        let ev = b
            .wait_or(u64::MAX, Duration::from_secs(5), r.as_fd())
            .unwrap();
        assert_eq!(ev.mask, 0);
        assert!(t.elapsed() < Duration::from_secs(1));
        r.read_exact(&mut [0u8; 1]).unwrap();
        // A doorbell still wakes it, with its vector.
        a.ring(b.id(), 1).unwrap();
        let ev = b
            .wait_or(u64::MAX, Duration::from_secs(5), r.as_fd())
            .unwrap();
        assert_eq!(ev.mask, 0b10);
    }

    #[test]
    fn host_sees_the_r_w_section_of_a_v1_layout() {
        let server = TestServer::start(1);
        let ep = PeerEndpoint::connect(&server.socket).unwrap();
        assert_eq!(
            ep.rw_section(),
            (0, 1 << 20),
            "zeroed memory: the whole region"
        );
        // What a guest driver publishes for 1 MiB and 8 peers.
        let h = v1layout::Header::propose(1 << 20, 4096, 8).unwrap();
        v1layout::init_or_join(ep.peer.shm().region(), &h, || false).unwrap();
        assert_eq!(
            &{
                let mut b = [0u8; 4];
                ep.shm().load_bytes(0, &mut b).unwrap();
                b
            },
            b"LCv1"
        );
        let l = h.layout(0, 1 << 20).unwrap();
        assert_eq!(
            ep.rw_section(),
            (4096 + l.rw().offset as usize, l.rw().len as usize)
        );
        assert_eq!(ep.rw_section().0, 8192);
        // A header that does not validate: the whole region again.
        ep.peer
            .shm()
            .region()
            .store(v1layout::off::VERSION, 9_u32, Ordering::Release)
            .unwrap();
        assert_eq!(ep.rw_section(), (0, 1 << 20));
    }

    #[test]
    fn targets_resolve_sockets_and_devices() {
        let server = TestServer::start(1);
        assert_eq!(
            Target::resolve(Some(Path::new("/dev/ivshmem3")), None, None).unwrap(),
            Target::Device("/dev/ivshmem3".into())
        );
        assert_eq!(
            Target::resolve(Some(&server.socket), None, None).unwrap(),
            Target::Socket(server.socket.clone())
        );
        assert_eq!(
            Target::resolve(
                None,
                Some(Path::new("/x.sock")),
                Some(Path::new("/dev/ivshmem0"))
            )
            .unwrap(),
            Target::Socket("/x.sock".into())
        );
        assert_eq!(
            Target::resolve(None, None, Some(Path::new("/dev/ivshmem0"))).unwrap(),
            Target::Device("/dev/ivshmem0".into())
        );
        assert!(Target::resolve(None, None, None).is_err());
        let ep = Target::Socket(server.socket.clone())
            .open(WaitMode::Poll)
            .unwrap();
        assert_eq!(ep.shm().size(), 1 << 20);
        assert!(ep.describe().starts_with("host peer"));
    }
}
