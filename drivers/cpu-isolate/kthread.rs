// SPDX-License-Identifier: GPL-2.0

//! A kernel thread bound to one CPU, stopped when its guard drops.
//!
//! The kernel has no Rust abstraction for kthreads; this is the smallest
//! RAII wrapper the sampler needs around the exported calls
//! (`kthread_create_on_node`, `kthread_bind`, `wake_up_process`,
//! `kthread_stop_put`).

use core::ffi::{c_int, c_void};
use core::ptr::NonNull;

use kernel::bindings;
use kernel::error::from_err_ptr;
use kernel::prelude::*;

/// The entry point of a kthread: `fn(data) -> exit code`.
pub(crate) type ThreadFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// A running (or finished) kernel thread.
///
/// # Invariants
///
/// `task` is a kthread created by [`Kthread::spawn_bound`] on which this
/// guard holds one task reference; it has not been stopped.
pub(crate) struct Kthread {
    task: NonNull<bindings::task_struct>,
}

// SAFETY: the guard only holds a counted task reference; stopping a kthread
// may happen from any thread.
unsafe impl Send for Kthread {}
// SAFETY: no method takes `&self` and touches the task.
unsafe impl Sync for Kthread {}

impl Kthread {
    /// Creates a kthread named `name/cpu`, bound to `cpu`, running
    /// `f(data)`, and wakes it up.
    ///
    /// # Safety
    ///
    /// `data` must stay valid for `f` until the returned guard is dropped:
    /// dropping it stops the thread and waits for `f` to return. `f` must
    /// return once `kthread_should_stop()` is true.
    pub(crate) unsafe fn spawn_bound(
        f: ThreadFn,
        data: *mut c_void,
        cpu: u32,
        name: &CStr,
    ) -> Result<Self> {
        // SAFETY: `f` and `data` are valid per this function's contract; the
        // format string takes one string and one unsigned int, as passed.
        let raw = unsafe {
            bindings::kthread_create_on_node(
                Some(f),
                data,
                bindings::NUMA_NO_NODE,
                c"%s/%u".as_char_ptr(),
                name.as_char_ptr(),
                cpu,
            )
        };
        let task = from_err_ptr(raw)?;
        // SAFETY: `task` is a freshly created kthread that has not run yet,
        // which is what `kthread_bind` requires; taking a reference keeps the
        // task_struct alive even if `f` returns before we stop it, as
        // `kthread_stop_put` expects.
        unsafe {
            bindings::kthread_bind(task, cpu);
            bindings::get_task_struct(task);
            bindings::wake_up_process(task);
        }
        // INVARIANT: created above, one reference held, not stopped.
        Ok(Kthread {
            // SAFETY: `from_err_ptr` returned a non-error pointer, and
            // kthread_create_on_node never returns NULL.
            task: unsafe { NonNull::new_unchecked(task) },
        })
    }
}

impl Kthread {
    /// The thread.
    pub(crate) fn task(&self) -> &kernel::task::Task {
        // SAFETY: `Task` is a transparent wrapper of `task_struct`, and the
        // guard holds a reference on the task (the invariants), so it lives
        // at least as long as the returned borrow of `self`.
        unsafe { &*self.task.as_ptr().cast::<kernel::task::Task>() }
    }
}

impl Drop for Kthread {
    fn drop(&mut self) {
        // SAFETY: per the invariants, a kthread we hold a reference on and
        // have not stopped; this stops it, waits for its function to return,
        // and puts our reference.
        unsafe { bindings::kthread_stop_put(self.task.as_ptr()) };
    }
}

/// Whether the current kthread has been asked to stop.
pub(crate) fn should_stop() -> bool {
    // SAFETY: called only from the kthreads this module creates.
    unsafe { bindings::kthread_should_stop() }
}
