// SPDX-License-Identifier: GPL-2.0

//! Fault injection: [`Faulty`] wraps a [`Device`] and, after a number of
//! completions, makes the backend misbehave in one of the ways a frontend
//! must survive ([`Fault`]). The engine knows nothing of faults; it only
//! publishes the [`Used`] entry the device asks for.

use std::fmt;

use virtio_queue::Writer;

use super::{log, Chain, Device, Done, Mem, Used};

/// Completions before a `--fault` mode starts misbehaving, by default.
pub(crate) const FAULT_AFTER: u64 = 8;

/// How far ahead of the truth a [`Fault::BadUsedIndex`] publishes the used
/// index.
const USED_INDEX_SKEW: u16 = 1000;

/// Deliberate misbehaviour, to test the frontend's validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Fault {
    /// After 8 completions, publish a used index 1000 entries ahead.
    BadUsedIndex,
    /// After 8 completions, complete with an id >= the queue size.
    BadUsedId,
    /// After 8 completions, report a used length larger than the buffers.
    BadUsedLen,
    /// After 8 completions, stop completing anything (but stay ready).
    Stall,
    /// After 8 completions, complete every request as fully done without
    /// touching its buffers: the frontend must not hand the driver stale
    /// bytes of earlier I/O for the buffer bytes never written (a blk read
    /// then reads zeros, with a zero — OK — status byte).
    SkipData,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::BadUsedIndex => "bad-used-index",
            Fault::BadUsedId => "bad-used-id",
            Fault::BadUsedLen => "bad-used-len",
            Fault::Stall => "stall",
            Fault::SkipData => "skip-data",
        })
    }
}

/// A device that misbehaves with `fault` once `after` chains were
/// completed; with no fault it is the device itself.
pub(crate) struct Faulty<D> {
    inner: D,
    fault: Option<Fault>,
    after: u64,
    /// Chains completed so far.
    completed: u64,
}

impl<D: Device> Faulty<D> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: D, fault: Option<Fault>, after: u64) -> Self {
        Faulty {
            inner,
            fault,
            after,
            completed: 0,
        }
    }

    /// The wrapped device.
    #[cfg(test)]
    pub(crate) fn inner(&self) -> &D {
        &self.inner
    }

    /// Whether a stall fault stopped completions.
    fn stalled(&self) -> bool {
        self.fault == Some(Fault::Stall) && self.completed >= self.after
    }
}

impl<D: Device> Device for Faulty<D> {
    fn device_id(&self) -> u16 {
        self.inner.device_id()
    }

    fn features(&self) -> u64 {
        self.inner.features()
    }

    fn config(&self) -> Vec<u8> {
        self.inner.config()
    }

    fn num_queues(&self) -> usize {
        self.inner.num_queues()
    }

    fn can_take(&mut self, q: usize) -> bool {
        !self.stalled() && self.inner.can_take(q)
    }

    fn handle(&mut self, q: usize, chain: Chain<'_>, mem: &Mem) -> Done {
        if self.fault == Some(Fault::SkipData) && self.completed >= self.after {
            // Claim every writable byte as written, write none.
            let writable = Writer::new(mem, chain)
                .map(|w| u32::try_from(w.available_bytes()).unwrap_or(u32::MAX))
                .unwrap_or(0);
            return Done {
                written: writable,
                writable,
            };
        }
        self.inner.handle(q, chain, mem)
    }

    fn used(&mut self, q: usize, head: u16, size: u16, done: Done) -> Used {
        let fault = self.fault.filter(|_| self.completed >= self.after);
        self.completed += 1;
        if let Some(f) = fault {
            if self.completed == self.after + 1 {
                log(format_args!("fault {f} injected from now on"));
            }
        }
        match fault {
            Some(Fault::BadUsedId) => Used::Raw {
                id: u32::from(size) + u32::from(head),
                len: done.written,
            },
            Some(Fault::BadUsedLen) => Used::Raw {
                id: u32::from(head),
                len: done.writable.saturating_add(1),
            },
            Some(Fault::BadUsedIndex) => Used::SkewedIndex {
                head,
                len: done.written,
                skew: USED_INDEX_SKEW,
            },
            _ => self.inner.used(q, head, size, done),
        }
    }

    fn wake_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.wake_fd()
    }

    fn reset(&mut self) {
        self.inner.reset()
    }

    fn report(&self) -> Option<String> {
        self.inner.report()
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }

    fn summary(&self) -> String {
        self.inner.summary()
    }
}
