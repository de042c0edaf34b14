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
#   QEMU 11            $LINCELL_CACHE/qemu-trixie: a Debian trixie tree
#                      (debootstrap) with trixie-backports' qemu-system-x86,
#                      for the guests with an ivshmem 2.0 device (vfio-user-pci);
#                      run by scripts/qemu11.sh
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
	# qemu-storage-daemon (a vhost-user-blk backend for the bridge's test);
	# qemu-system-x86 pulls it in already, named here for what it is used.
	qemu-system-common
	# QEMU 11 (vfio-user-pci) comes in a Debian trixie tree of its own.
	debootstrap
	# The arm64 leg: cross GCC for the kernel and modules, QEMU's virt board.
	gcc-aarch64-linux-gnu qemu-system-arm
	# The field's own instruments, run in the guests (which see the host's
	# root filesystem): cyclictest and rtla (osnoise, timerlat), fio for
	# the disks, iperf3 for the networks, and stress-ng for load.
	rt-tests rtla fio iperf3 stress-ng
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

step "QEMU 11 (vfio-user-pci, for ivshmem 2.0 guests)"
# Debian 12's QEMU (7.2) has no vfio-user-pci. Debian trixie-backports'
# qemu-system-x86 does; it goes into a minimal trixie tree under the cache
# (debootstrap, then apt inside the tree), which scripts/qemu11.sh runs from
# outside through the tree's own loader. The system's apt sources are not
# touched. The tree is built under a temporary name and renamed once its
# QEMU has been checked, so an interrupted run never leaves a tree that
# looks finished; the next run starts that one again.
qemu_partial=$LINCELL_QEMU11.partial

# Lazily unmounts whatever an interrupted debootstrap left mounted below
# $1 (its /proc, /sys), deepest first, so removing the tree cannot reach
# into them.
unmount_below() {
	awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m"; done
}

# The tree's apt source for trixie-backports (beside the trixie one
# debootstrap wrote), trusted like that one: by the keyring in the tree.
backports_source() {
	cat >"$1/etc/apt/sources.list.d/trixie-backports.sources" <<-EOF
		Types: deb
		URIs: $DEBIAN_MIRROR
		Suites: trixie-backports
		Components: main
	EOF
}

# apt inside the tree: the backports index, then QEMU (no recommends: no
# GUI, no audio servers), then the downloaded packages dropped (100 MB).
#
# Then the tree is made QEMU's own "bundle": run through the tree's loader,
# QEMU's executable directory is the tree's library directory, and a
# `qemu-bundle` there is where QEMU looks for its modules and firmware
# before the paths it was built with. Without it a module the tree lacks
# (QEMU 11's opengl and spice modules are only recommended) is looked up in
# the host's /usr/lib/x86_64-linux-gnu/qemu, where Debian 12's QEMU 7.2
# keeps its own: QEMU refuses them and `-device help` aborts.
qemu_install() {
	local env=(env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8)
	chroot "$1" "${env[@]}" apt-get update -q &&
		chroot "$1" "${env[@]}" apt-get install -y -q --no-install-recommends \
			-t trixie-backports qemu-system-x86 &&
		chroot "$1" apt-get clean &&
		ln -sfn ../../.. "$1/usr/lib/x86_64-linux-gnu/qemu-bundle"
}

# The tree's QEMU runs from outside it (the wrapper) and has vfio-user-pci.
qemu_verify() {
	local help
	help=$(LINCELL_QEMU11=$1 "$LINCELL_ROOT/scripts/qemu11.sh" -device help) ||
		die "the QEMU in $1 does not run (scripts/qemu11.sh -device help failed)"
	grep -q '"vfio-user-pci"' <<<"$help" ||
		die "the QEMU in $1 has no vfio-user-pci device"
}

if present [ -f "$LINCELL_QEMU11_STAMP" ]; then
	note "QEMU $(cat "$LINCELL_QEMU11_STAMP") present ($LINCELL_QEMU11)"
else
	note "debootstrap trixie + qemu-system-x86 from trixie-backports into $LINCELL_QEMU11"
	note "(about 40 s and 350 MB; logs: $LINCELL_CACHE/qemu11-*.log)"
	[ "$(id -u)" -eq 0 ] || [ $DRY_RUN -eq 1 ] || die "need root to build the QEMU 11 tree (debootstrap, chroot)"
	if [ -e "$qemu_partial" ]; then
		note "removing the unfinished tree of an interrupted run"
		act unmount_below "$qemu_partial"
		act rm -rf "$qemu_partial"
	fi
	run_logged "$LINCELL_CACHE/qemu11-debootstrap.log" \
		act debootstrap --variant=minbase trixie "$qemu_partial" "$DEBIAN_MIRROR"
	act backports_source "$qemu_partial"
	run_logged "$LINCELL_CACHE/qemu11-apt.log" act qemu_install "$qemu_partial"
	act qemu_verify "$qemu_partial"
	if [ $DRY_RUN -eq 0 ]; then
		chroot "$qemu_partial" dpkg-query -W -f='${Version}\n' qemu-system-x86 \
			>"$qemu_partial/$(basename "$LINCELL_QEMU11_STAMP")"
		rm -rf "$LINCELL_QEMU11"
		mv "$qemu_partial" "$LINCELL_QEMU11"
		note "QEMU $(cat "$LINCELL_QEMU11_STAMP") in $LINCELL_QEMU11 ($(du -sh "$LINCELL_QEMU11" | cut -f1))"
	fi
	changed=1
fi

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
