// SPDX-License-Identifier: GPL-2.0

//! Interrupt vectors with one handler each: a thin RAII layer over the C
//! calls. MSI-X with every vector the device offers; ivshmem 2.0 devices
//! without MSI-X fall back to INTx with one vector, as the specification
//! allows.
//!
//! The 7.3 `pci::IrqVectorRegistration` hands out `IrqVector`s that borrow
//! it, which cannot be stored next to it in the driver data for a number of
//! vectors known only at probe time. This file owns both the allocation and
//! the handlers instead, and releases them in the right order on drop.
//!
//! What a vector does is the device's business ([`VectorHandler`]): ivshmem
//! has no interrupt status to read or acknowledge with MSI-X, so the MSI-X
//! handlers just call it; the INTx handler lets it ask the register model
//! whether the interrupt was ours.

use core::ffi::c_void;

use kernel::{bindings, device::Bound, pci, prelude::*, sync::Arc};

/// The C handler type.
type HandlerFn = unsafe extern "C" fn(i32, *mut c_void) -> bindings::irqreturn_t;

/// What a device does with its interrupts (hard-IRQ context).
///
/// `ivshmem.ko` counts them and wakes readers; `vdev_remote.ko` moves
/// completions from the shared rings.
pub(crate) trait VectorHandler: Send + Sync + 'static {
    /// MSI-X vector `vector` fired.
    fn vector(this: &Arc<Self>, vector: usize);
    /// The INTx line fired: acknowledge it at the device and handle vector
    /// 0 if it was ours; returns whether it was.
    fn intx(this: &Arc<Self>) -> bool;
    /// Whether the INTx line may be shared with other devices.
    fn intx_shareable(&self) -> bool;
}

/// Cookie handed to `request_irq`: which vector of which device.
struct Cookie<H> {
    handler: Arc<H>,
    vector: usize,
}

/// How the vectors are delivered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    MsiX,
    Intx,
}

/// The raw `pci_dev` behind a Rust PCI device.
///
/// The 7.3 abstraction keeps `as_raw()` private; `pci::Device` is
/// `repr(transparent)` over `Opaque<bindings::pci_dev>`, so the reference is
/// the C pointer.
pub(crate) fn raw_pci_dev(pdev: &pci::Device<Bound>) -> *mut bindings::pci_dev {
    core::ptr::from_ref(pdev)
        .cast::<bindings::pci_dev>()
        .cast_mut()
}

/// Allocated MSI-X vectors and their registered handlers.
///
/// # Invariants
///
/// `pdev` has `allocated` MSI-X vectors allocated, and vector `i` has a
/// handler registered with `cookies[i]` as its `dev_id` for every
/// `i < cookies.len() <= allocated`. Both stay valid until `drop`, which
/// frees the handlers before the vectors.
pub(crate) struct Vectors<H: VectorHandler> {
    pdev: *mut bindings::pci_dev,
    delivery: Delivery,
    allocated: usize,
    cookies: KVec<KBox<Cookie<H>>>,
}

// SAFETY: `Vectors` only touches `pdev` in `request` and `drop`, which the C
// API allows from any thread; the cookies are `Send` (an `Arc` and an index).
unsafe impl<H: VectorHandler> Send for Vectors<H> {}
// SAFETY: `Vectors` has no `&self` methods that touch shared state.
unsafe impl<H: VectorHandler> Sync for Vectors<H> {}

/// Hard-IRQ handler of every vector.
///
/// # Safety
///
/// Only called by the IRQ core with the `dev_id` registered in
/// [`Vectors::request`].
unsafe extern "C" fn handle_irq<H: VectorHandler>(
    _irq: i32,
    cookie: *mut c_void,
) -> bindings::irqreturn_t {
    // SAFETY: `cookie` is the `dev_id` we registered: a `Cookie<H>` in a
    // `KBox` that `Vectors` keeps alive until after `free_irq` returns.
    let cookie = unsafe { &*cookie.cast::<Cookie<H>>() };
    H::vector(&cookie.handler, cookie.vector);
    bindings::irqreturn::IRQ_HANDLED
}

/// INTx handler (ivshmem 2.0 without MSI-X): one vector, 0.
///
/// # Safety
///
/// As [`handle_irq`].
unsafe extern "C" fn handle_intx<H: VectorHandler>(
    _irq: i32,
    cookie: *mut c_void,
) -> bindings::irqreturn_t {
    // SAFETY: as in `handle_irq`.
    let cookie = unsafe { &*cookie.cast::<Cookie<H>>() };
    if H::intx(&cookie.handler) {
        bindings::irqreturn::IRQ_HANDLED
    } else {
        bindings::irqreturn::IRQ_NONE
    }
}

impl<H: VectorHandler> Vectors<H> {
    /// Allocates up to `wanted` MSI-X vectors, or with `intx_fallback` one
    /// INTx vector when the device has no MSI-X. Returns `None` when there
    /// are no interrupts (e.g. `ivshmem-plain`) or allocation fails (logged).
    pub(crate) fn alloc(
        pdev: &pci::Device<Bound>,
        wanted: u32,
        intx_fallback: bool,
    ) -> Option<Self> {
        let raw = raw_pci_dev(pdev);
        let (delivery, n) = if wanted > 0 {
            // SAFETY: `raw` is a bound PCI device (we are in probe).
            let n =
                unsafe { bindings::pci_alloc_irq_vectors(raw, 1, wanted, bindings::PCI_IRQ_MSIX) };
            (Delivery::MsiX, n)
        } else if intx_fallback {
            // SAFETY: as above.
            let n = unsafe { bindings::pci_alloc_irq_vectors(raw, 1, 1, bindings::PCI_IRQ_INTX) };
            (Delivery::Intx, n)
        } else {
            return None;
        };
        match usize::try_from(n) {
            // INVARIANT: `n` vectors are allocated, no handler yet.
            Ok(allocated) if allocated > 0 => Some(Vectors {
                pdev: raw,
                delivery,
                allocated,
                cookies: KVec::new(),
            }),
            _ => {
                dev_warn!(
                    pdev.as_ref(),
                    "no interrupt vectors ({}); doorbells disabled\n",
                    n
                );
                None
            }
        }
    }

    /// True when delivery is legacy INTx.
    pub(crate) fn is_intx(&self) -> bool {
        self.delivery == Delivery::Intx
    }

    /// Number of allocated vectors.
    pub(crate) fn len(&self) -> usize {
        self.allocated
    }

    /// Registers `handler` on every vector.
    pub(crate) fn request(&mut self, handler: &Arc<H>, name: &'static CStr) -> Result {
        for vector in self.cookies.len()..self.allocated {
            let cookie = KBox::new(
                Cookie {
                    handler: handler.clone(),
                    vector,
                },
                GFP_KERNEL,
            )?;
            // CAST: `vector < allocated <= MAX_VECTORS`.
            // SAFETY: `pdev` has `allocated` vectors and `vector < allocated`.
            let irq = unsafe { bindings::pci_irq_vector(self.pdev, vector as u32) };
            let irq = u32::try_from(irq).map_err(|_| EINVAL)?;
            let dev_id = core::ptr::from_ref::<Cookie<H>>(&cookie)
                .cast_mut()
                .cast::<c_void>();
            // Reserve the slot first so that a failing push cannot leave a
            // registered handler without its cookie.
            self.cookies.reserve(1, GFP_KERNEL)?;
            let (handler_fn, flags) = match self.delivery {
                Delivery::MsiX => (handle_irq::<H> as HandlerFn, 0),
                Delivery::Intx if handler.intx_shareable() => {
                    (handle_intx::<H> as HandlerFn, bindings::IRQF_SHARED)
                }
                Delivery::Intx => (handle_intx::<H> as HandlerFn, 0),
            };
            // CAST: IRQF_* flags fit an unsigned long.
            let flags = flags as usize;
            // SAFETY: both handlers match the C handler type; `dev_id`
            // points into a `KBox` we keep until after `free_irq`; the name is
            // a static C string.
            kernel::error::to_result(unsafe {
                bindings::request_irq(irq, Some(handler_fn), flags, name.as_char_ptr(), dev_id)
            })?;
            // INVARIANT: vector `vector` now has the handler for this cookie.
            self.cookies.push(cookie, GFP_KERNEL)?;
        }
        Ok(())
    }
}

impl<H: VectorHandler> Drop for Vectors<H> {
    fn drop(&mut self) {
        for (vector, cookie) in self.cookies.iter().enumerate() {
            let dev_id = core::ptr::from_ref::<Cookie<H>>(cookie)
                .cast_mut()
                .cast::<c_void>();
            // SAFETY: by the type invariant vector `vector` is allocated and
            // has our handler registered with `dev_id`; `free_irq` waits for
            // running handlers, so the cookie is unused once it returns.
            unsafe {
                let irq = bindings::pci_irq_vector(self.pdev, vector as u32);
                if let Ok(irq) = u32::try_from(irq) {
                    bindings::free_irq(irq, dev_id);
                }
            }
        }
        // SAFETY: by the type invariant the vectors are allocated, and no
        // handler is registered any more.
        unsafe { bindings::pci_free_irq_vectors(self.pdev) };
    }
}
