// SPDX-License-Identifier: GPL-2.0

//! Lets the kernel's log macros print the errors of the shared logic, which
//! implement `core::fmt::Display` (the kernel formats through its own
//! `Display`). A crate adds its own error types with the same macro after
//! `mod common` (which is `#[macro_use]`).

/// Implements `kernel::fmt::Display` through `core::fmt::Display`.
macro_rules! kernel_display {
    ($($t:ty),*) => {$(
        impl kernel::fmt::Display for $t {
            fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
                core::fmt::Display::fmt(self, f)
            }
        }
    )*};
}

// The errors `sections.rs` and `mmio.rs` log, in both modules.
kernel_display!(
    crate::shared::shmem::AccessError,
    crate::shared::ivshmem::layout::LayoutError,
    crate::shared::ivshmem::v1layout::V1Error,
    crate::shared::ivshmem::vendor_cap::CapError
);
