// SPDX-License-Identifier: GPL-2.0

//! virtio-net (device id 1): queue 0 receiveq (frames to the guest),
//! queue 1 transmitq (frames from the guest), no control queue, one queue
//! pair. Frames go to and come from a [`Port`]: a TAP device
//! ([`tap::Tap`]) in the daemon, an in-memory port in the tests.
//!
//! Offered: `VIRTIO_NET_F_MAC` (the MAC in config space), `VIRTIO_NET_F_STATUS`
//! (link always up while the backend serves) and `VIRTIO_NET_F_MTU`. No
//! checksum or segmentation offload (`CSUM`, `GUEST_CSUM`, `*_TSO*`, `*_UFO`,
//! `MRG_RXBUF`) is offered: the guest checksums and segments in software,
//! and every receive chain holds a whole frame. A transmitted header that
//! asks for an offload anyway is a driver bug, and the frame is dropped.
//!
//! Every frame is preceded by the 12-byte `virtio_net_hdr_v1` (with
//! `VERSION_1` the header has `num_buffers` whether or not `MRG_RXBUF` is
//! negotiated). Everything the guest put in a chain is untrusted: short
//! chains, oversized frames, offload requests and unreadable buffers drop
//! the frame, count it in [`Stats`] and complete the chain; nothing panics.
//!
//! Policy ([`policy`]): a transmitted frame whose source address is not
//! the device's MAC is dropped and counted unless the MAC lock is off, and
//! an optional token bucket drops frames over a byte rate.
//!
//! Batching: the engine hands the device every available transmit chain
//! per wake-up (up to one ring), and fills receive chains while
//! [`Device::can_take`] finds a frame pending at the port (read ahead into
//! one frame buffer); the runner rings each used queue's vector once per
//! pass. While a frame waits for a receive buffer, the port is not polled
//! ([`Device::wake_fd`] is `None`): the guest's refill kick wakes the
//! backend instead.

pub(crate) mod policy;
pub(crate) mod tap;

use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::time::Instant;

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS, VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_S_LINK_UP,
};
use virtio_queue::{Reader, Writer};

use super::engine::{log, Chain, Device, Done};
use super::mem::Mem;
use crate::error::{Error, Result};

/// Size of `virtio_net_hdr_v1` (flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset, num_buffers).
pub(crate) const HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const HDR_NUM_BUFFERS: usize = 10;
/// Ethernet header: destination, source, EtherType.
pub(crate) const ETH_HLEN: usize = 14;
/// One 802.1Q tag, which a frame may carry beyond the MTU.
const VLAN_HLEN: usize = 4;
/// virtio-net config size: mac, status, max_virtqueue_pairs, mtu.
pub(crate) const CONFIG_LEN: usize = 12;
/// Smallest MTU (IPv4's minimum, and virtio_net's).
pub(crate) const MIN_MTU: u16 = 68;
/// Largest MTU (a frame and its header stay below 64 KiB).
pub(crate) const MAX_MTU: u16 = 65000;
/// Largest frame read from a port (the port's own limit is larger than
/// any frame a TAP hands out).
const PORT_BUF: usize = 1 << 16;
/// Frames a port may hand out that are too large or too short before
/// [`Device::can_take`] gives up for this pass.
const PORT_DROPS_PER_PASS: usize = 64;
/// Receive queue index.
pub(crate) const RX: usize = 0;
/// Transmit queue index.
pub(crate) const TX: usize = 1;

/// Where a virtio-net device's frames go and come from.
pub(crate) trait Port {
    /// Reads one pending frame into `buf` without blocking; `None`: none
    /// pending.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Sends one frame.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// A descriptor that is readable while frames are pending (`None`: the
    /// port has none, the runner polls it on its tick).
    fn fd(&self) -> Option<BorrowedFd<'_>>;
    /// For messages: `tap:lct0`.
    fn describe(&self) -> String;
}

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mac(pub(crate) [u8; 6]);

impl Mac {
    /// A locally administered unicast address derived from `seed` (the
    /// interface name), the same at every start: `02:6c:63:xx:xx:xx`.
    pub(crate) fn derived(seed: &str) -> Self {
        // FNV-1a.
        let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let b = h.to_le_bytes();
        Mac([0x02, 0x6c, 0x63, b[0], b[1], b[2]])
    }

    /// Whether a frame's source may be this address: unicast, not zero.
    fn usable(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for Mac {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Usage(format!(
                "`{s}`: expected a MAC address like 02:00:00:00:00:01"
            ))
        };
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut m {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        let mac = Mac(m);
        if !mac.usable() {
            return Err(Error::Usage(format!(
                "`{s}`: a device's MAC must be unicast (first octet even) and not zero"
            )));
        }
        Ok(mac)
    }
}

/// Frame counters, logged when the backend stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Frames delivered to the guest.
    pub(crate) rx_frames: u64,
    /// Their bytes (without the virtio header).
    pub(crate) rx_bytes: u64,
    /// Frames dropped because the guest's receive chain was too short or
    /// unusable.
    pub(crate) rx_short_chain: u64,
    /// Frames from the port dropped as too large for the MTU or shorter
    /// than an Ethernet header.
    pub(crate) rx_bad_size: u64,
    /// Frames sent to the port.
    pub(crate) tx_frames: u64,
    /// Their bytes.
    pub(crate) tx_bytes: u64,
    /// Transmit chains dropped: unreadable, shorter than the header, a
    /// frame shorter than an Ethernet header or longer than the MTU allows.
    pub(crate) tx_bad_chain: u64,
    /// Transmit chains dropped because the header asked for an offload that
    /// was not offered.
    pub(crate) tx_bad_header: u64,
    /// Frames the port refused (full, down).
    pub(crate) tx_port_errors: u64,
    /// Frames dropped by the source-MAC lock.
    pub(crate) tx_spoofed: u64,
    /// Frames dropped by the rate limit.
    pub(crate) tx_rate_limited: u64,
}

/// Why a transmit header is refused.
fn header_error(hdr: &[u8; HDR_LEN]) -> Option<String> {
    let flags = u32::from(hdr[0]);
    let gso = u32::from(hdr[1]);
    if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        return Some(format!(
            "flags {flags:#x}: NEEDS_CSUM, but no checksum offload was offered"
        ));
    }
    if gso != VIRTIO_NET_HDR_GSO_NONE {
        return Some(format!(
            "gso_type {gso}, but no segmentation offload was offered"
        ));
    }
    None
}

/// A virtio-net device on a [`Port`].
pub(crate) struct Net<P: Port> {
    port: P,
    mac: Mac,
    mtu: u16,
    /// Length of the frame read ahead into `rx_buf`.
    pending: Option<usize>,
    rx_buf: Box<[u8]>,
    tx_buf: Vec<u8>,
    /// Whether a port error was logged (one line, then counted).
    warned_port: bool,
    policy: policy::Policy,
    /// Whether a refusal of each kind was logged (one line, then counted).
    warned_spoofed: bool,
    warned_rate: bool,
    stats: Stats,
    verbose: bool,
}

impl<P: Port> Net<P> {
    /// A device with address `mac` and `mtu` on `port`.
    pub(crate) fn new(port: P, mac: Mac, mtu: u16, verbose: bool) -> Result<Self> {
        if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
            return Err(Error::Usage(format!(
                "MTU {mtu} is outside {MIN_MTU}..={MAX_MTU}"
            )));
        }
        if !mac.usable() {
            return Err(Error::Usage(format!("MAC {mac} is not a unicast address")));
        }
        Ok(Net {
            port,
            mac,
            mtu,
            pending: None,
            rx_buf: vec![0u8; PORT_BUF].into_boxed_slice(),
            tx_buf: Vec::with_capacity(usize::from(mtu) + ETH_HLEN + VLAN_HLEN),
            warned_port: false,
            policy: policy::Policy::default(),
            warned_spoofed: false,
            warned_rate: false,
            stats: Stats::default(),
            verbose,
        })
    }

    /// The device with transmit `policy` instead of the default (MAC lock
    /// on, no rate limit).
    pub(crate) fn with_policy(mut self, policy: policy::Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The largest frame, for the rate limit's default burst.
    pub(crate) fn max_frame_len(mtu: u16) -> usize {
        usize::from(mtu) + ETH_HLEN + VLAN_HLEN
    }

    /// The counters so far.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// Largest frame (Ethernet header and one VLAN tag beyond the MTU).
    fn max_frame(&self) -> usize {
        Self::max_frame_len(self.mtu)
    }

    /// Counts (and logs once per kind) a frame the policy refused.
    fn refused(&mut self, why: policy::Refusal, head: u16) {
        let src = self
            .tx_buf
            .get(6..12)
            .and_then(|s| <[u8; 6]>::try_from(s).ok())
            .map(|m| Mac(m).to_string())
            .unwrap_or_default();
        let (warned, what) = match why {
            policy::Refusal::Spoofed => {
                self.stats.tx_spoofed += 1;
                (
                    &mut self.warned_spoofed,
                    format!("source {src} is not the device's MAC {}", self.mac),
                )
            }
            policy::Refusal::RateLimited => {
                self.stats.tx_rate_limited += 1;
                (&mut self.warned_rate, "over the rate limit".to_string())
            }
        };
        if !*warned || self.verbose {
            log(format_args!(
                "net: tx chain {head}: {} bytes, {what}; dropped (further drops of this kind are only counted)",
                self.tx_buf.len()
            ));
            *warned = true;
        }
    }

    fn port_error(&mut self, what: &str, e: &io::Error) {
        if !self.warned_port {
            log(format_args!(
                "net: {} {what}: {e} (further errors are only counted)",
                self.port.describe()
            ));
            self.warned_port = true;
        }
    }

    /// Reads frames from the port until one of a usable size is pending
    /// (bounded per pass); returns whether one is.
    fn fill_pending(&mut self) -> bool {
        if self.pending.is_some() {
            return true;
        }
        for _ in 0..PORT_DROPS_PER_PASS {
            match self.port.recv(&mut self.rx_buf) {
                Ok(Some(n)) if (ETH_HLEN..=self.max_frame()).contains(&n) => {
                    self.pending = Some(n);
                    return true;
                }
                Ok(Some(n)) => {
                    self.stats.rx_bad_size += 1;
                    if self.verbose {
                        log(format_args!(
                            "net: {}-byte frame from {} dropped (MTU {})",
                            n,
                            self.port.describe(),
                            self.mtu
                        ));
                    }
                }
                Ok(None) => return false,
                Err(e) => {
                    self.port_error("read", &e);
                    return false;
                }
            }
        }
        false
    }

    /// Receive: the pending frame into `chain`.
    fn receive(&mut self, chain: Chain<'_>, mem: &Mem) -> Done {
        let head = chain.head_index();
        let Some(n) = self.pending.take() else {
            // The engine only hands a receive chain after `can_take`.
            return Done::default();
        };
        let mut w = match Writer::new(mem, chain) {
            Ok(w) => w,
            Err(e) => {
                self.stats.rx_short_chain += 1;
                log(format_args!(
                    "net: rx chain {head}: bad buffers ({e}); frame dropped"
                ));
                return Done::default();
            }
        };
        let writable = u32::try_from(w.available_bytes()).unwrap_or(u32::MAX);
        let need = HDR_LEN + n;
        if w.available_bytes() < need {
            self.stats.rx_short_chain += 1;
            if self.verbose {
                log(format_args!(
                    "net: rx chain {head} holds {writable} bytes, the {n}-byte frame needs {need}; dropped"
                ));
            }
            return Done {
                written: 0,
                writable,
            };
        }
        let mut hdr = [0u8; HDR_LEN];
        hdr[HDR_NUM_BUFFERS..].copy_from_slice(&1u16.to_le_bytes());
        let frame = self.rx_buf.get(..n).unwrap_or_default();
        if w.write_all(&hdr).and_then(|()| w.write_all(frame)).is_err() {
            self.stats.rx_short_chain += 1;
            log(format_args!(
                "net: rx chain {head}: copy failed; frame dropped"
            ));
            return Done {
                written: 0,
                writable,
            };
        }
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += n as u64;
        if self.verbose {
            log(format_args!(
                "net: {n}-byte frame to the guest (chain {head})"
            ));
        }
        Done {
            // CAST: need <= writable, which fits a u32.
            written: u32::try_from(need).unwrap_or(writable).min(writable),
            writable,
        }
    }

    /// Transmit: the frame in `chain` to the port.
    fn transmit(&mut self, chain: Chain<'_>, mem: &Mem) -> Done {
        let head = chain.head_index();
        // Transmit chains should have no writable part; report it if one
        // does (the used length stays 0).
        let writable = Writer::new(mem, chain.clone())
            .map(|w| u32::try_from(w.available_bytes()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let done = Done {
            written: 0,
            writable,
        };
        let mut r = match Reader::new(mem, chain) {
            Ok(r) => r,
            Err(e) => {
                self.stats.tx_bad_chain += 1;
                log(format_args!(
                    "net: tx chain {head}: bad buffers ({e}); dropped"
                ));
                return done;
            }
        };
        let total = r.available_bytes();
        let frame_len = total.saturating_sub(HDR_LEN);
        if total < HDR_LEN + ETH_HLEN || frame_len > self.max_frame() {
            self.stats.tx_bad_chain += 1;
            if self.verbose || total < HDR_LEN {
                log(format_args!(
                    "net: tx chain {head} of {total} bytes: not a header and a frame of {ETH_HLEN}..={} bytes; dropped",
                    self.max_frame()
                ));
            }
            return done;
        }
        let mut hdr = [0u8; HDR_LEN];
        if r.read_exact(&mut hdr).is_err() {
            self.stats.tx_bad_chain += 1;
            return done;
        }
        if let Some(why) = header_error(&hdr) {
            self.stats.tx_bad_header += 1;
            log(format_args!("net: tx chain {head}: {why}; dropped"));
            return done;
        }
        self.tx_buf.clear();
        self.tx_buf.resize(frame_len, 0);
        if r.read_exact(&mut self.tx_buf).is_err() {
            self.stats.tx_bad_chain += 1;
            return done;
        }
        if let Some(why) = self.policy.check(&self.mac.0, &self.tx_buf, Instant::now()) {
            self.refused(why, head);
            return done;
        }
        match self.port.send(&self.tx_buf) {
            Ok(()) => {
                self.stats.tx_frames += 1;
                self.stats.tx_bytes += frame_len as u64;
                if self.verbose {
                    log(format_args!(
                        "net: {frame_len}-byte frame from the guest (chain {head})"
                    ));
                }
            }
            Err(e) => {
                self.stats.tx_port_errors += 1;
                self.port_error("write", &e);
            }
        }
        done
    }
}

impl<P: Port> Device for Net<P> {
    fn device_id(&self) -> u16 {
        // CAST: virtio device ids are small.
        VIRTIO_ID_NET as u16
    }

    fn features(&self) -> u64 {
        1u64 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS | 1 << VIRTIO_NET_F_MTU
    }

    fn config(&self) -> Vec<u8> {
        let mut c = vec![0u8; CONFIG_LEN];
        c[0..6].copy_from_slice(&self.mac.0);
        // CAST: the link-up bit is bit 0.
        c[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.to_le_bytes());
        c
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn can_take(&mut self, q: usize) -> bool {
        match q {
            RX => self.fill_pending(),
            TX => true,
            _ => false,
        }
    }

    fn handle(&mut self, q: usize, chain: Chain<'_>, mem: &Mem) -> Done {
        match q {
            RX => self.receive(chain, mem),
            _ => self.transmit(chain, mem),
        }
    }

    fn wake_fd(&self) -> Option<BorrowedFd<'_>> {
        if self.pending.is_some() {
            None
        } else {
            self.port.fd()
        }
    }

    fn reset(&mut self) {
        self.pending = None;
    }

    fn report(&self) -> Option<String> {
        let s = self.stats;
        Some(format!(
            "net: to the guest {} frames ({} bytes), dropped {} (short chain) + {} (size); \
             from the guest {} frames ({} bytes), dropped {} (bad chain) + {} (offload header) + {} (port) \
             + {} (source MAC) + {} (rate limit)",
            s.rx_frames,
            s.rx_bytes,
            s.rx_short_chain,
            s.rx_bad_size,
            s.tx_frames,
            s.tx_bytes,
            s.tx_bad_chain,
            s.tx_bad_header,
            s.tx_port_errors,
            s.tx_spoofed,
            s.tx_rate_limited
        ))
    }

    fn summary(&self) -> String {
        format!(
            "virtio-net on {}: MAC {}, MTU {}, link up, {}",
            self.port.describe(),
            self.mac,
            self.mtu,
            self.policy.describe()
        )
    }
}
