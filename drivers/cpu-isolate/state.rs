// SPDX-License-Identifier: GPL-2.0

//! The module's state behind one mutex: isolation, the sampler, and the
//! message of the last refused request. Every sysfs operation locks it, so
//! requests are serialised; `sysfs.rs` turns text into calls on it.

use core::fmt::{self, Write};

use kernel::prelude::*;

use crate::isolation::{Failure, Isolator};
use crate::sampler::Sampler;
use crate::shared::cpu_isolate::request::{IsolateRequest, ReleaseRequest};
use crate::shim;

/// Length of the `last_error` message buffer.
const MESSAGE_LEN: usize = 200;

/// A fixed buffer that keeps what fits of a formatted message.
pub(crate) struct Message {
    buf: [u8; MESSAGE_LEN],
    len: usize,
}

impl Message {
    const fn new() -> Self {
        Message {
            buf: [0; MESSAGE_LEN],
            len: 0,
        }
    }

    /// The message text.
    pub(crate) fn as_str(&self) -> &str {
        // Only whole UTF-8 characters are copied in (see `write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let enc = c.encode_utf8(&mut tmp).as_bytes();
            let Some(dst) = self.buf.get_mut(self.len..self.len + enc.len()) else {
                return Ok(()); // Truncated: keep the head.
            };
            dst.copy_from_slice(enc);
            self.len += enc.len();
        }
        Ok(())
    }
}

/// Everything the module changes or measures.
pub(crate) struct State {
    pub(crate) isolator: Isolator,
    pub(crate) sampler: Sampler,
    pub(crate) last_error: Message,
}

impl State {
    /// Nothing isolated, no run.
    pub(crate) fn new() -> Self {
        State {
            isolator: Isolator::new(),
            sampler: Sampler::new(),
            last_error: Message::new(),
        }
    }

    /// Records and logs why `what` was refused; returns its errno.
    pub(crate) fn refuse(
        &mut self,
        what: fmt::Arguments<'_>,
        why: fmt::Arguments<'_>,
        err: Error,
    ) -> Error {
        self.last_error = Message::new();
        let _ = write!(self.last_error, "{what}: {why} (errno {})", -err.to_errno());
        pr_info!("{}\n", self.last_error.as_str());
        err
    }

    fn failure(&mut self, what: fmt::Arguments<'_>, f: Failure) -> Error {
        match f {
            Failure::Refused(r) => {
                let err = Error::from_errno(-r.errno());
                self.refuse(what, format_args!("{r}"), err)
            }
            Failure::Kernel {
                what: step,
                cpu: Some(cpu),
                err,
            } => self.refuse(what, format_args!("{step} for CPU {cpu}"), err),
            Failure::Kernel {
                what: step,
                cpu: None,
                err,
            } => self.refuse(what, format_args!("{step}"), err),
        }
    }

    /// Isolates, or records why not.
    pub(crate) fn isolate(&mut self, req: &IsolateRequest) -> Result {
        let busy = self.sampler.busy_cpus();
        if req.mode == crate::shared::cpu_isolate::request::Mode::Offline
            && busy.intersects(&req.cpus)
        {
            return Err(self.refuse(
                format_args!("isolate {} {}", req.cpus, req.mode.name()),
                format_args!(
                    "the sampler is running on CPUs {}",
                    busy.intersection(&req.cpus)
                ),
                EBUSY,
            ));
        }
        match self.isolator.isolate(req) {
            Ok(()) => {
                pr_info!("isolated CPUs {} ({})\n", req.cpus, req.mode.name());
                Ok(())
            }
            Err(f) => {
                Err(self.failure(format_args!("isolate {} {}", req.cpus, req.mode.name()), f))
            }
        }
    }

    /// Releases, or records why not.
    pub(crate) fn release(&mut self, req: &ReleaseRequest) -> Result {
        match self.isolator.release(req) {
            Ok(()) => {
                pr_info!(
                    "released; isolated now: {}\n",
                    self.isolator.ledger().isolated()
                );
                Ok(())
            }
            Err(f) => match req {
                ReleaseRequest::All => Err(self.failure(format_args!("release all"), f)),
                ReleaseRequest::Cpus(c) => Err(self.failure(format_args!("release {c}"), f)),
            },
        }
    }

    /// Starts the sampler, or records why not.
    pub(crate) fn start_sampler(&mut self) -> Result {
        let topo = shim::topology()?;
        let cpus = self.sampler.settings().cpus;
        self.sampler.start(&topo.online).map_err(|e| {
            let what = format_args!("sampler start on {cpus}");
            let limit = crate::sampler::MAX_CPUS_PER_RUN;
            match e {
                e if e == EBUSY => self.refuse(what, format_args!("a run is in progress"), e),
                e if e == ENODEV => self.refuse(what, format_args!("a CPU is not online"), e),
                e if e == EINVAL && cpus.is_empty() => {
                    self.refuse(what, format_args!("no CPUs set in sampler/cpus"), e)
                }
                e if e == EINVAL => {
                    self.refuse(what, format_args!("more than {limit} CPUs for one run"), e)
                }
                e => self.refuse(what, format_args!("could not start the threads"), e),
            }
        })
    }

    /// Undoes everything: stops the sampler, releases every isolation.
    pub(crate) fn teardown(&mut self) {
        self.sampler.stop();
        if let Err(f) = self.isolator.release(&ReleaseRequest::All) {
            let e = self.failure(format_args!("unload"), f);
            pr_err!("unload: release incomplete ({:?})\n", e);
        }
    }
}
