#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The arm64 board's initramfs, for `lincell-vm check --arm64 KDIR` (which
# boots it on QEMU's emulated `virt` board, devices and host peers as each
# guest script's directives ask; virtme/src/guest.rs): the modules
# cross-built for arm64 against KDIR, the lincell CLI as a static AArch64
# build (aarch64-unknown-linux-musl), Debian's arm64 busybox, the guest
# scripts (tests/guest, virtme/guest-run.sh and guest-lib.sh) under
# /lincell, and an /init that runs what the harness names on the kernel
# command line, then powers the board off.
#
#   scripts/arm64-board.sh KDIR   (KDIR: the arm64 kernel build, ARCH=arm64 scripts/kernel.sh)
#
# Progress and build logs go to stderr and target/arm64/; the initramfs's
# path is the last line on stdout. The modules are built in a copy of the
# tree (target/arm64/src) so the x86_64 build is not disturbed.
set -u
kdir=${1:?usage: arm64-board.sh KDIR}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/target/arm64
mkdir -p "$work"
fail() { echo "arm64-board: $*" >&2; exit 1; }

echo "==> arm64: modules" >&2
src=$work/src
mkdir -p "$src"
rsync -a --delete --exclude /target --exclude /.git --exclude '*.o' --exclude '*.ko' \
	--exclude '.*.cmd' --exclude '*.mod*' --exclude '*generated.rs' "$root/" "$src/"
make -C "$kdir" M="$src" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \
	KRUSTFLAGS=-Dwarnings KCFLAGS=-Werror modules >"$work/build.log" 2>&1 ||
	{ tail -n 30 "$work/build.log" >&2; fail "module build failed"; }

echo "==> arm64: tools (aarch64-unknown-linux-musl)" >&2
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
	cargo build -q -p lincell --target aarch64-unknown-linux-musl --manifest-path "$root/Cargo.toml" \
	>"$work/cargo.log" 2>&1 || { tail -n 20 "$work/cargo.log" >&2; fail "cross build of lincell failed"; }
busybox=$(bash "$root/scripts/arm64-busybox.sh") || fail "no arm64 busybox"

echo "==> arm64: initramfs" >&2
rd=$work/initramfs
rm -rf "$rd"
mkdir -p "$rd"/bin "$rd"/sbin "$rd"/usr/bin "$rd"/usr/sbin "$rd"/proc "$rd"/sys "$rd"/dev "$rd"/tmp \
	"$rd"/lincell/target/debug "$rd"/lincell/virtme "$rd"/lincell/tests/guest
cp "$busybox" "$rd/bin/busybox"
for d in "$src"/drivers/*/; do
	for ko in "$d"*.ko; do
		[ -e "$ko" ] || continue
		mkdir -p "$rd/lincell/drivers/$(basename "$d")"
		cp "$ko" "$rd/lincell/drivers/$(basename "$d")/"
	done
done
for tool in lincell ivshmem-order cpu-isolate-fuzz; do
	cp "$root/target/aarch64-unknown-linux-musl/debug/$tool" "$rd/lincell/target/debug/"
done
cp "$root/virtme/guest-lib.sh" "$root/virtme/guest-run.sh" "$rd/lincell/virtme/"
cp "$root"/tests/guest/*.sh "$root"/tests/guest/*.lib "$rd/lincell/tests/guest/"
# The harness's kernel arguments reach /init as environment variables:
# lincell_guest (the guest's name) and lincell_run, a comma-separated list
# of SCRIPT:OUT (a script under /lincell; its output directory relative to
# the guest's, `.` for that directory itself).
cat >"$rd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
set --
for item in $(echo "${lincell_run:-}" | tr , ' '); do
	out=/tmp/out/${item#*:}
	[ "${item#*:}" = . ] && out=/tmp/out
	mkdir -p "$out"
	set -- "$@" "/lincell/${item%%:*}" "$out"
done
LINCELL_HOST_COPY=/tmp/out sh /lincell/virtme/guest-run.sh "${lincell_guest:-guest}" "$@"
poweroff -f
INIT
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initramfs.cpio.gz"
echo "$work/initramfs.cpio.gz"
