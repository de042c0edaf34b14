#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install everything lincell needs on a Debian 12 (x86_64) machine, idempotently:
# a second run checks each piece, skips what is there and says so.
#
#   Debian packages    build (flex, bison, bc, libelf-dev, ...) and VMs (QEMU, udev)
#   rustup rust-src    the kernel builds `core` and `alloc` from it
#   bindgen-cli        pinned ($BINDGEN_VERSION), via `cargo install`
#   venv               $LINCELL_CACHE/venv: virtme-ng + the libclang wheel
#
# Needs root for apt (it is the machine's only system change).  Nothing here
# touches the system's apt sources: the kernel source comes from a private
# sources list (scripts/kernel.sh).
#
#   scripts/setup.sh             install what is missing
#   scripts/setup.sh --dry-run   take every install step as if nothing were
#                                installed, writing the same logs and
#                                directories, but print each install command
#                                instead of running it (the cold path, tested
#                                by `make check`: virtme/tests/setup_cold.rs)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

DRY_RUN=0
case ${1:-} in
"") ;;
--dry-run) DRY_RUN=1 ;;
-h | --help) sed -n '4,/^set -euo/p' "$0" | sed '$d; s/^#//; s/^ //'; exit 0 ;;
*) die "unknown argument: $1 (try --help)" ;;
esac

# An install command: run it, or in a dry run only say it (its output still
# goes wherever the caller redirected it, so the same files get written).
act() {
	if [ $DRY_RUN -eq 1 ]; then
		note "dry run: $*"
	else
		"$@"
	fi
}
# In a dry run every piece counts as missing, so every install path runs.
present() { [ $DRY_RUN -eq 0 ] && "$@"; }

# Everything this script writes (logs, the venv) lives under the cache, which
# may not exist yet on a new machine (nor may its parent, ~/.cache).
mkdir -p "$LINCELL_CACHE"
changed=0

APT_PACKAGES=(
	# Kernel build.
	bc bison flex cpio kmod libelf-dev libssl-dev rsync xz-utils zstd
	python3-venv
	# VMs: QEMU (TCG), and udev so virtme-ng finds its script ports in the
	# guest (without it the guest's output and exit code are lost).
	qemu-system-x86 udev busybox-static
	# The arm64 leg: cross GCC for the kernel and modules, QEMU's virt board.
	gcc-aarch64-linux-gnu qemu-system-arm
	# The field's own instruments, run in the guests (which see the host's
	# root filesystem): cyclictest, and stress-ng for load.
	rt-tests stress-ng
)

step "Debian packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
	present dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	note "all ${#APT_PACKAGES[@]} present"
else
	note "installing: ${missing[*]} (about 1 minute)"
	[ "$(id -u)" -eq 0 ] || [ $DRY_RUN -eq 1 ] || die "need root to install Debian packages: ${missing[*]}"
	act apt-get update -qq
	DEBIAN_FRONTEND=noninteractive act apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >"$LINCELL_CACHE/apt-install.log" 2>&1 ||
		{ tail -n 20 "$LINCELL_CACHE/apt-install.log"; die "apt-get install failed"; }
	changed=1
fi

step "Rust toolchain"
command -v rustup >/dev/null || die "rustup not found (the machine's Rust toolchain comes from rustup)"
if present rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
	note "rust-src present ($(rustc --version))"
else
	note "adding rust-src (about 30 s)"
	act rustup component add rust-src
	changed=1
fi

# Static AArch64 builds of the tools for the arm64 guest (linked by rust-lld).
if present rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-musl; then
	note "rust target aarch64-unknown-linux-musl present"
else
	note "adding the rust target aarch64-unknown-linux-musl (about 30 s)"
	act rustup target add aarch64-unknown-linux-musl
	changed=1
fi

if present command -v bindgen >/dev/null && bindgen --version | grep -q " $BINDGEN_VERSION\$"; then
	note "bindgen $BINDGEN_VERSION present"
else
	note "cargo install bindgen-cli $BINDGEN_VERSION (about 2 minutes)"
	run_logged "$LINCELL_CACHE/bindgen-install.log" \
		act cargo install --locked bindgen-cli --version "$BINDGEN_VERSION"
	changed=1
fi

step "Python venv (virtme-ng, libclang)"
present [ -x "$LINCELL_VENV/bin/python" ] || { act python3 -m venv "$LINCELL_VENV"; changed=1; }
want=("virtme-ng==$VIRTME_NG_VERSION" "libclang==$LIBCLANG_WHEEL_VERSION")
installed=$("$LINCELL_VENV/bin/python" -m pip list --format=freeze 2>/dev/null || true)
if present grep -qxF "virtme-ng==$VIRTME_NG_VERSION" <<<"$installed" &&
	grep -qxF "libclang==$LIBCLANG_WHEEL_VERSION" <<<"$installed"; then
	note "virtme-ng $VIRTME_NG_VERSION and libclang $LIBCLANG_WHEEL_VERSION present"
else
	note "pip install ${want[*]} (about 30 s)"
	act "$LINCELL_VENV/bin/python" -m pip install -q "${want[@]}"
	changed=1
fi
[ $DRY_RUN -eq 1 ] || lincell_libclang_path >/dev/null || die "libclang.so not found in $LINCELL_VENV"

step "KVM"
# KVM guests hang on this machine kind; the harness always uses TCG unless
# LINCELL_KVM=1 is set and /dev/kvm works.
if [ -w /dev/kvm ]; then
	note "/dev/kvm exists; lincell still uses TCG by default (LINCELL_KVM=1 to try KVM)"
else
	note "no usable /dev/kvm: TCG"
fi

if [ $DRY_RUN -eq 1 ]; then
	step "Set-up: dry run complete (nothing was installed)"
elif [ $changed -eq 0 ]; then
	step "Set-up: nothing to do, everything was already installed"
else
	step "Set-up complete"
fi
