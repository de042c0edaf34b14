# SPDX-License-Identifier: GPL-2.0
# Common settings for lincell's scripts; sourced, never run.
#
# Everything the project downloads or builds lives under $LINCELL_CACHE
# (default ~/.cache/lincell), never in the repository, so a fresh clone stays
# clean and a second clone reuses the same kernel build.

LINCELL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LINCELL_CACHE=${LINCELL_CACHE:-$HOME/.cache/lincell}

# The kernel we build against: Debian's linux-source-7.3 package.  If this
# exact version has left the archive, scripts/kernel.sh takes the newest 7.3.x
# and says so.
KERNEL_SERIES=7.3
KERNEL_PKG=linux-source-$KERNEL_SERIES
KERNEL_PKG_VERSION=${KERNEL_PKG_VERSION:-7.3.4-1~bpo13+1}

# Pinned tools.
BINDGEN_VERSION=0.73.0
VIRTME_NG_VERSION=1.42
LIBCLANG_WHEEL_VERSION=18.1.1

LINCELL_VENV=$LINCELL_CACHE/venv
LINCELL_APT=$LINCELL_CACHE/apt

# The Debian mirror every download uses (the kernel source, the QEMU 11 tree).
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# QEMU 11 for the guests with an ivshmem 2.0 device (vfio-user-pci needs
# QEMU >= 10.1; Debian 12 has 7.2): a Debian trixie tree with
# trixie-backports' qemu-system-x86, built by scripts/setup.sh and run from
# outside the tree by scripts/qemu11.sh. The stamp holds the package version
# and is written last: a tree without it is not finished. (The harness finds
# the tree the same way: $LINCELL_QEMU11, else $LINCELL_CACHE/qemu-trixie.)
LINCELL_QEMU11=${LINCELL_QEMU11:-$LINCELL_CACHE/qemu-trixie}
LINCELL_QEMU11_STAMP=$LINCELL_QEMU11/.lincell-qemu-version

export PATH="$HOME/.cargo/bin:$LINCELL_VENV/bin:$PATH"

# libclang for bindgen comes from the PyPI wheel (Debian 12's clang is too old).
lincell_libclang_path() {
	local d
	for d in "$LINCELL_VENV"/lib/python3*/site-packages/clang/native; do
		[ -e "$d/libclang.so" ] && { echo "$d"; return 0; }
	done
	return 1
}
if LIBCLANG_PATH=$(lincell_libclang_path); then
	export LIBCLANG_PATH
fi

# Progress output: what is happening and how long it usually takes.
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a long command with its output in a log file, printing a heartbeat so
# the user sees it is alive; on failure show the end of the log.
run_logged() {
	local log=$1; shift
	local start=$SECONDS
	"$@" >"$log" 2>&1 &
	local pid=$! ticks=0
	# Poll every second (a quick command costs no fixed wait), say something
	# every 30.
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		ticks=$((ticks + 1))
		[ $((ticks % 30)) -eq 0 ] && kill -0 "$pid" 2>/dev/null &&
			note "... still working ($((SECONDS - start)) s; log: $log)"
	done
	if ! wait "$pid"; then
		tail -n 40 "$log" >&2
		die "failed: $* (full log: $log)"
	fi
	note "done in $((SECONDS - start)) s"
}
