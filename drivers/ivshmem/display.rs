// SPDX-License-Identifier: GPL-2.0

//! Lets the kernel's log macros print the errors of the shared logic, which
//! implement `core::fmt::Display` (the kernel formats through its own
//! `Display`). `vdev_remote.ko` includes this file too (`#[macro_use]`) and
//! adds its own error types with the same macro.

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

// The errors `sections.rs` logs, in both modules.
kernel_display!(
    crate::shared::layout::LayoutError,
    crate::shared::v1layout::V1Error,
    crate::shared::vendor_cap::CapError
);
