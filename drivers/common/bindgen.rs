// SPDX-License-Identifier: GPL-2.0

//! [`bindgen_module!`]: a module holding a module's own bindgen output
//! (`scripts/module-bindgen.sh`, run by its Kbuild file), with the lints
//! generated code cannot meet turned off in one place. Every module with a
//! C header of its own includes this file:
//!
//! ```ignore
//! #[macro_use]
//! #[path = "../common/bindgen.rs"]
//! mod bindgen;
//! ```

/// `bindgen_module!(vis name, "file_generated.rs")` declares module `name`
/// with the generated file inside; kernel types it names come from
/// `kernel::bindings`.
macro_rules! bindgen_module {
    ($(#[$meta:meta])* $vis:vis $name:ident, $file:literal) => {
        $(#[$meta])*
        #[allow(
            non_camel_case_types,
            non_upper_case_globals,
            non_snake_case,
            dead_code,
            unreachable_pub,
            missing_docs,
            clippy::all,
            clippy::pedantic,
            clippy::restriction,
            clippy::nursery,
            clippy::undocumented_unsafe_blocks,
            unsafe_op_in_unsafe_fn,
            // Kernel structs with zero-sized lockdep members
            // (`ref_tracker_dir`, in `task_struct` too) are passed by
            // pointer only; the lint cannot know.
            improper_ctypes
        )]
        $vis mod $name {
            use kernel::bindings::*;
            use kernel::ffi;
            use pin_init::MaybeZeroable;

            include!($file);
        }
    };
}
