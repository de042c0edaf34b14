#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Runs bindgen on a module's own C header with exactly the flags the kernel
# build used for its `kernel::bindings` (read back from the kernel's saved
# command, rust/bindings/.bindings_generated.rs.cmd), so the generated types
# have the layout the running kernel has.
#
# usage: module-bindgen.sh KDIR HEADER OUT [BINDGEN-OPTION...]
#   KDIR    the kernel build tree (O= directory)
#   HEADER  the module's header (absolute path)
#   OUT     the Rust file to write (absolute path)
# Extra options (allowlists, blocklists) go to bindgen before `--`.
set -euo pipefail
# bindgen and libclang as set up by scripts/setup.sh, unless already given.
. "$(dirname "$(readlink -f "$0")")/lib.sh"

kdir=$1 header=$2 out=$3
shift 3
saved="$kdir/rust/bindings/.bindings_generated.rs.cmd"
[ -r "$saved" ] || { echo "module-bindgen: $saved not found: is $kdir a Rust-enabled kernel build tree?" >&2; exit 1; }

# The saved line is `savedcmd_… := bindgen HEADER OPTIONS -o OUT -- CFLAGS ; sed …`.
line=$(sed -n 's/^savedcmd_[^ ]* := //p' "$saved")
line=${line%%; sed*}
tool=${line%% *}
opts=${line#* }
cflags=${opts#* -- }
opts=${opts%% -- *}
opts=${opts#* }                          # drop the kernel's input header
opts=$(sed -E "s/ -o [^ ]+//; s/[$][(]pound[)]/#/g" <<<"$opts") # its output; make's $(pound) is #
# The kernel's flags name its own dependency file and module; ours differ.
cflags=$(sed -E "s/-Wp,-MMD,[^ ]+//; s/-D(__)?KBUILD_[A-Z]+=[^ ]+//g" <<<"$cflags")

cd "$kdir"
tmp="$out.tmp"
# The options are the kernel's own, already shell-quoted in the saved line.
eval "\"\$tool\" \"\$header\" $opts \"\$@\" -o \"\$tmp\" -- $cflags"
sed -Ei 's/pub const RUST_CONST_HELPER_([a-zA-Z0-9_]*)/pub const \1/g' "$tmp"
mv "$tmp" "$out"
