// SPDX-License-Identifier: GPL-2.0

//! The sysfs interface, `/sys/kernel/cpu_isolate/` (ABI in
//! `Documentation/cpu-isolate.md`).
//!
//! sysfs rather than configfs: the kernel this project targets is built
//! without `CONFIG_CONFIGFS_FS`, and the interface is a handful of
//! commands and reports on one global object, not user-created objects,
//! which is what configfs is for. The kobject and its attribute tables live
//! in the C shim (sysfs has no Rust abstraction); every `show`/`store`
//! lands here, with the module's state locked.

use core::fmt::{self, Write};
use core::ptr::NonNull;
use kernel::ffi::{c_char, c_uint, c_void};

use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::page::PAGE_SIZE;
use kernel::prelude::*;
use kernel::sync::Mutex;

use crate::irq;
use crate::sampler::{self, Settings};
use crate::shared::cpu_isolate::cpulist;
use crate::shared::cpu_isolate::histogram::{bucket_floor_us, BUCKETS};
use crate::shared::cpu_isolate::request::{self, CommandError, SamplerCommand};
use crate::shim::{self, irq_flags, IrqScratch, SysfsOps};
use crate::state::State;

/// Attribute ids: `enum cpu_isolate_attr` (`shim.h`), under short names.
mod attr {
    pub(super) use crate::shim::ffi::{
        CPU_ISOLATE_ATTR_IRQS as IRQS, CPU_ISOLATE_ATTR_ISOLATE as ISOLATE,
        CPU_ISOLATE_ATTR_KTHREADS as KTHREADS, CPU_ISOLATE_ATTR_LAST_ERROR as LAST_ERROR,
        CPU_ISOLATE_ATTR_RELEASE as RELEASE, CPU_ISOLATE_ATTR_SAMPLER_CONTROL as SAMPLER_CONTROL,
        CPU_ISOLATE_ATTR_SAMPLER_CPUS as SAMPLER_CPUS,
        CPU_ISOLATE_ATTR_SAMPLER_DURATION_MS as SAMPLER_DURATION_MS,
        CPU_ISOLATE_ATTR_SAMPLER_RESULTS as SAMPLER_RESULTS,
        CPU_ISOLATE_ATTR_SAMPLER_THRESHOLD_NS as SAMPLER_THRESHOLD_NS,
        CPU_ISOLATE_ATTR_STATUS as STATUS,
    };
}

static OPS: SysfsOps = SysfsOps {
    show: Some(show),
    store: Some(store),
};

/// `/sys/kernel/cpu_isolate/`, removed on drop.
///
/// # Invariants
///
/// `kobj` was returned by `cpu_isolate_sysfs_create` and not destroyed yet.
pub(crate) struct SysfsDir {
    kobj: NonNull<bindings::kobject>,
}

// SAFETY: the kobject pointer is only used to destroy the directory, which
// may happen from any thread.
unsafe impl Send for SysfsDir {}
// SAFETY: `&SysfsDir` gives no access to the kobject.
unsafe impl Sync for SysfsDir {}

impl SysfsDir {
    /// Creates the directory; its files operate on `state`.
    ///
    /// # Safety
    ///
    /// `state` must outlive the returned value (the directory is removed,
    /// and running callbacks drained, when it drops).
    pub(crate) unsafe fn create(state: &Mutex<State>) -> Result<Self> {
        let ctx = core::ptr::from_ref(state).cast_mut().cast::<c_void>();
        // SAFETY: `OPS` is static; `ctx` stays valid for as long as the
        // directory exists, per this function's contract.
        let kobj = from_err_ptr(unsafe { shim::cpu_isolate_sysfs_create(&OPS, ctx) })?;
        // INVARIANT: just created.
        Ok(SysfsDir {
            // SAFETY: the shim returns a valid pointer or an ERR_PTR, never NULL.
            kobj: unsafe { NonNull::new_unchecked(kobj) },
        })
    }
}

impl Drop for SysfsDir {
    fn drop(&mut self) {
        // SAFETY: per the invariants; this waits for running callbacks.
        unsafe { shim::cpu_isolate_sysfs_destroy(self.kobj.as_ptr()) };
    }
}

/// Formats into the page sysfs gives a `show` callback, keeping room for a
/// truncation marker.
struct PageWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    truncated: bool,
}

const TRUNCATED: &[u8] = b"# truncated\n";

impl<'a> PageWriter<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        PageWriter {
            buf,
            len: 0,
            truncated: false,
        }
    }

    /// Bytes written, with the marker appended if something did not fit.
    fn finish(self) -> usize {
        let mut len = self.len;
        if self.truncated {
            if let Some(dst) = self.buf.get_mut(len..len + TRUNCATED.len()) {
                dst.copy_from_slice(TRUNCATED);
                len += TRUNCATED.len();
            }
        }
        len
    }
}

impl Write for PageWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len().saturating_sub(TRUNCATED.len() + self.len);
        if s.len() > room || self.truncated {
            self.truncated = true;
            return Err(fmt::Error);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// `show` for every attribute.
///
/// # Safety
///
/// `ctx` is the `&Mutex<State>` given to [`SysfsDir::create`]; `buf` is the
/// `PAGE_SIZE` buffer sysfs passes.
unsafe extern "C" fn show(ctx: *mut c_void, id: c_uint, buf: *mut c_char) -> isize {
    // SAFETY: per this function's contract.
    let state = unsafe { &*ctx.cast::<Mutex<State>>() };
    // SAFETY: sysfs passes a writable buffer of PAGE_SIZE bytes.
    let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), PAGE_SIZE) };
    let mut w = PageWriter::new(page);
    let result = {
        let guard = state.lock();
        format(&guard, id, &mut w)
    };
    match result {
        // A formatting error only means the page is full.
        // CAST: at most PAGE_SIZE bytes, or a small negative errno.
        Ok(()) | Err(Shown::Full) => w.finish() as isize,
        Err(Shown::Errno(e)) => e.to_errno() as isize,
    }
}

/// `store` for every attribute.
///
/// # Safety
///
/// `ctx` as for [`show`]; `buf` holds `len` readable bytes.
unsafe extern "C" fn store(ctx: *mut c_void, id: c_uint, buf: *const c_char, len: usize) -> isize {
    // SAFETY: per this function's contract.
    let state = unsafe { &*ctx.cast::<Mutex<State>>() };
    // SAFETY: sysfs passes `len` readable bytes.
    let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    let mut guard = state.lock();
    match parse_and_apply(&mut guard, id, input) {
        // CAST: sysfs writes are at most PAGE_SIZE bytes; errnos are small.
        Ok(()) => len as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Why a `show` stopped.
enum Shown {
    Full,
    Errno(Error),
}

impl From<fmt::Error> for Shown {
    fn from(_: fmt::Error) -> Self {
        Shown::Full
    }
}

fn format(state: &State, id: u32, w: &mut PageWriter<'_>) -> Result<(), Shown> {
    let iso = &state.isolator;
    match id {
        attr::ISOLATE => {
            for r in iso.ledger().regions() {
                write!(w, "{} {}", r.cpus, r.mode.name())?;
                if !r.irqs.as_slice().is_empty() {
                    write!(w, " irqs={}", r.irqs)?;
                }
                writeln!(w)?;
            }
        }
        attr::STATUS => {
            let topo = shim::topology().map_err(Shown::Errno)?;
            let ledger = iso.ledger();
            let i = iso.irqs().counts();
            let k = iso.kthreads().counts();
            writeln!(w, "isolated={}", ledger.isolated())?;
            writeln!(w, "offline={}", ledger.offline())?;
            writeln!(w, "housekeeping={}", ledger.housekeeping(&topo))?;
            writeln!(w, "online={}", topo.online)?;
            writeln!(w, "regions={}", ledger.len())?;
            writeln!(w, "irqs_moved={}", i.moved)?;
            writeln!(w, "irqs_kept={}", i.kept)?;
            writeln!(w, "irqs_managed={}", i.managed)?;
            writeln!(w, "irqs_unmovable={}", i.unmovable)?;
            writeln!(w, "irqs_failed={}", i.failed)?;
            writeln!(w, "kthreads_moved={}", k.moved)?;
            writeln!(w, "kthreads_pinned={}", k.pinned)?;
            writeln!(w, "kthreads_failed={}", k.failed)?;
            writeln!(w, "sampler={}", state.sampler.state().name())?;
        }
        attr::IRQS => {
            let mut scratch = IrqScratch::new().map_err(Shown::Errno)?;
            for l in iso.irqs().report() {
                write!(w, "irq={} state={}", l.irq, l.state.name())?;
                if let irq::State::Failed(errno) = l.state {
                    write!(w, " errno={errno}")?;
                }
                if let Some(o) = l.original {
                    write!(w, " original={o}")?;
                }
                // Live values: a deferred move shows once it has happened.
                match shim::irq_query(l.irq, &mut scratch) {
                    Some(q) => {
                        write!(w, " affinity={} effective={}", q.affinity, q.effective)?;
                        // The chip moves it at its next interrupt.
                        let pending = q.flags & irq_flags::PENDING != 0;
                        writeln!(w, "{}", if pending { " pending" } else { "" })?;
                    }
                    None => writeln!(w, " gone")?,
                }
            }
        }
        attr::KTHREADS => {
            for s in iso.kthreads().steered() {
                let comm = s.comm();
                let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
                let name = core::str::from_utf8(&comm[..end]).unwrap_or("?");
                write!(
                    w,
                    "pid={} comm={} original={} affinity={}",
                    s.pid(),
                    name,
                    s.original,
                    s.applied
                )?;
                if s.error != 0 {
                    write!(w, " errno={}", s.error)?;
                }
                writeln!(w)?;
            }
        }
        attr::LAST_ERROR => {
            let m = state.last_error.as_str();
            if !m.is_empty() {
                writeln!(w, "{m}")?;
            }
        }
        attr::SAMPLER_CPUS => writeln!(w, "{}", state.sampler.settings().cpus)?,
        attr::SAMPLER_DURATION_MS => writeln!(w, "{}", state.sampler.settings().duration_ms)?,
        attr::SAMPLER_THRESHOLD_NS => writeln!(w, "{}", state.sampler.settings().threshold_ns)?,
        attr::SAMPLER_CONTROL => writeln!(w, "{}", state.sampler.state().name())?,
        attr::SAMPLER_RESULTS => format_results(state, w)?,
        _ => return Err(Shown::Errno(EINVAL)),
    }
    Ok(())
}

/// The `sampler/results` format (version 1): see the ABI document.
fn format_results(state: &State, w: &mut PageWriter<'_>) -> fmt::Result {
    writeln!(w, "version=1")?;
    writeln!(w, "state={}", state.sampler.state().name())?;
    write!(w, "buckets_us=")?;
    for i in 0..BUCKETS {
        let sep = if i == 0 { "" } else { "," };
        write!(w, "{sep}{}", bucket_floor_us(i).unwrap_or(0))?;
    }
    writeln!(w)?;
    state.sampler.results(|r| {
        let s = &r.stats;
        write!(
            w,
            "cpu={} complete={} duration_ns={} loops={} threshold_ns={} noise_ns={} \
             noise_per_sec_ns={} max_gap_ns={} gaps={} irqs={} softirqs={} irq_time_ns={} thread_time_ns={} hist=",
            r.cpu,
            u8::from(r.complete),
            r.duration_ns,
            s.loops,
            s.threshold_ns,
            s.noise_ns,
            s.noise_per_sec_ns(r.duration_ns),
            s.max_gap_ns,
            s.gaps,
            r.irqs,
            r.softirqs,
            r.irq_time_ns,
            r.thread_time_ns,
        )?;
        for (i, c) in s.hist.counts().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(w, "{sep}{c}")?;
        }
        writeln!(w)
    })
}

fn parse_and_apply(state: &mut State, id: u32, input: &[u8]) -> Result {
    let bad = |state: &mut State, what: &str, e: CommandError| {
        let text = core::str::from_utf8(cpulist::trim(input)).unwrap_or("(not UTF-8)");
        state.refuse(
            format_args!("{what} {text:.40}"),
            format_args!("{e}"),
            EINVAL,
        )
    };
    match id {
        attr::ISOLATE => {
            let req = request::parse_isolate(input).map_err(|e| bad(state, "isolate", e))?;
            state.isolate(&req)
        }
        attr::RELEASE => {
            let req = request::parse_release(input).map_err(|e| bad(state, "release", e))?;
            state.release(&req)
        }
        attr::SAMPLER_CPUS => {
            let cpus = cpulist::parse(input)
                .map_err(|e| bad(state, "sampler cpus", CommandError::Cpulist(e)))?;
            let s = Settings {
                cpus,
                ..*state.sampler.settings()
            };
            state.sampler.set(s)
        }
        attr::SAMPLER_DURATION_MS => {
            let v = request::parse_number(input, 1, sampler::MAX_DURATION_MS)
                .map_err(|e| bad(state, "sampler duration_ms", e))?;
            let s = Settings {
                duration_ms: v,
                ..*state.sampler.settings()
            };
            state.sampler.set(s)
        }
        attr::SAMPLER_THRESHOLD_NS => {
            let v = request::parse_number(input, 1, sampler::MAX_THRESHOLD_NS)
                .map_err(|e| bad(state, "sampler threshold_ns", e))?;
            let s = Settings {
                threshold_ns: v,
                ..*state.sampler.settings()
            };
            state.sampler.set(s)
        }
        attr::SAMPLER_CONTROL => {
            match request::parse_sampler_command(input).map_err(|e| bad(state, "sampler", e))? {
                SamplerCommand::Start => state.start_sampler(),
                SamplerCommand::Stop => {
                    state.sampler.stop();
                    Ok(())
                }
            }
        }
        _ => Err(EINVAL),
    }
}
