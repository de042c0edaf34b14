#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The arm64 leg of `make check`: the modules cross-built for arm64, booted on
# QEMU's emulated `virt` board (TCG, GICv3 + ITS, PCIe) with an
# ivshmem-doorbell device on the project's ivshmem-server and a host
# `lincell ivshmem echo` peer; the guest (a busybox initramfs) runs
# tests/arm64/guest.sh.
#
#   scripts/arm64-check.sh KDIR   (KDIR: the arm64 kernel build, ARCH=arm64 scripts/kernel.sh)
#
# Writes $LINCELL_OUT/tap.txt (the guest's TAP/KTAP), dmesg.txt and the
# console log; exits with the guest script's status (lincell-vm check
# --external counts it like a guest). The modules are built in a copy of the
# tree (target/arm64/src) so the x86_64 build is not disturbed; the guest's
# tools are static AArch64 builds (target/aarch64-unknown-linux-musl).
set -u
kdir=${1:?usage: arm64-check.sh KDIR}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${LINCELL_OUT:-$root/target/lincell-vm/arm64}
work=$root/target/arm64
mkdir -p "$out" "$work"
: >"$out/tap.txt"
: >"$out/dmesg.txt"
fail() { echo "arm64-check: $*" >&2; exit 1; }
. "$root/scripts/lib.sh"

echo "==> arm64: modules" >&2
src=$work/src
mkdir -p "$src"
rsync -a --delete --exclude /target --exclude /.git --exclude '*.o' --exclude '*.ko' \
	--exclude '.*.cmd' --exclude '*.mod*' --exclude '*generated.rs' "$root/" "$src/"
make -C "$kdir" M="$src" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \
	KRUSTFLAGS=-Dwarnings KCFLAGS=-Werror modules >"$out/build.log" 2>&1 ||
	{ tail -n 30 "$out/build.log" >&2; fail "module build failed"; }

echo "==> arm64: tools (aarch64-unknown-linux-musl)" >&2
CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
	cargo build -q -p lincell --target aarch64-unknown-linux-musl --manifest-path "$root/Cargo.toml" \
	>"$out/cargo.log" 2>&1 || { tail -n 20 "$out/cargo.log" >&2; fail "cross build of lincell failed"; }
cargo build -q -p lincell -p ivshmem-server --manifest-path "$root/Cargo.toml" ||
	fail "host build failed"
busybox=$(bash "$root/scripts/arm64-busybox.sh") || fail "no arm64 busybox"

echo "==> arm64: initramfs" >&2
rd=$work/initramfs
rm -rf "$rd"
mkdir -p "$rd"/bin "$rd"/proc "$rd"/sys "$rd"/dev "$rd"/tmp "$rd"/lincell/target/debug "$rd"/lincell/virtme "$rd"/lincell/tests
cp "$busybox" "$rd/bin/busybox"
for d in "$src"/drivers/*/; do
	for ko in "$d"*.ko; do
		[ -e "$ko" ] || continue
		mkdir -p "$rd/lincell/drivers/$(basename "$d")"
		cp "$ko" "$rd/lincell/drivers/$(basename "$d")/"
	done
done
cp "$root/target/aarch64-unknown-linux-musl/debug/lincell" "$rd/lincell/target/debug/"
cp "$root/virtme/guest-lib.sh" "$rd/lincell/virtme/"
cp "$root/tests/arm64/guest.sh" "$rd/lincell/tests/"
cat >"$rd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LINCELL_ROOT=/lincell
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
echo "LINCELL-TAP-BEGIN"
sh /lincell/tests/guest.sh 2>/tmp/stderr
rc=$?
echo "LINCELL-TAP-END $rc"
echo "LINCELL-DMESG-BEGIN"
dmesg
echo "LINCELL-DMESG-END"
cat /tmp/stderr
poweroff -f
INIT
chmod +x "$rd/init"
(cd "$rd" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initramfs.cpio.gz"

echo "==> arm64: booting QEMU virt (TCG)" >&2
sock=$work/ivshmem.sock
rm -f "$sock"
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT INT TERM
"$root/target/debug/ivshmem-server" -F -S "$sock" -m "$work" -l 1M -n 2 2>"$out/server.log" &
pids="$pids $!"
i=0
while [ ! -S "$sock" ]; do
	i=$((i + 1)); [ $i -gt 100 ] && fail "ivshmem-server did not start"; sleep 0.1
done
timeout 600 qemu-system-aarch64 -M virt,gic-version=3,its=on -cpu cortex-a57 -smp 2 -m 1G \
	-nographic -no-reboot -nic none -kernel "$kdir/arch/arm64/boot/Image" -initrd "$work/initramfs.cpio.gz" \
	-append "console=ttyAMA0 rdinit=/init panic=-1 quiet loglevel=1 slub_debug=FZP kunit.filter_glob=lincell_*" \
	-chardev socket,path="$sock",id=ivs -device ivshmem-doorbell,chardev=ivs,vectors=2 \
	</dev/null >"$out/console.txt" 2>&1 &
qemu=$!
pids="$pids $qemu"
# The host peer joins once QEMU is connected (it learns about the guest then).
sleep 2
# After its 2 sessions, the same peer slot serves a 64 MiB disk to the
# guest's vdev_remote.
disk=$work/disk.img
rm -f "$disk" && truncate -s 64M "$disk"
(
	"$root/target/debug/lincell" ivshmem echo --socket "$sock" --sessions 2 --start-timeout 300000 \
		--timeout 30000 >"$out/echo.txt" 2>&1 || exit 1
	exec "$root/target/debug/lincell" remote serve --socket "$sock" --blk "$disk" 2>"$out/backend.log"
) &
pids="$pids $!"
wait $qemu
tr -d '\r' <"$out/console.txt" | sed -n '/^LINCELL-TAP-BEGIN/,/^LINCELL-TAP-END/p' | sed '1d;$d' >"$out/tap.txt"
tr -d '\r' <"$out/console.txt" | sed -n '/^LINCELL-DMESG-BEGIN/,/^LINCELL-DMESG-END/p' | sed '1d;$d' >"$out/dmesg.txt"
rc=$(tr -d '\r' <"$out/console.txt" | sed -n 's/^LINCELL-TAP-END //p')
[ -n "$rc" ] || { tail -n 20 "$out/console.txt" >&2; fail "the guest did not finish (see $out/console.txt)"; }
# The host's case: the bytes the guest wrote through its virtio disk are in
# the backing file (TAP appended as a second plan-less block is not valid:
# rewrite the plan to include it).
set -- $(sed -n 's/^# lincell-arm64-data //p' "$out/tap.txt")
if [ $# = 3 ] && [ "$(tail -c +$(($2 + 1)) "$disk" | head -c "$3" | sha256sum | cut -d' ' -f1)" = "$1" ]; then
	host="ok"
else
	host="not ok"
fi
n=$(sed -n 's/^1\.\.\([0-9]*\)$/\1/p' "$out/tap.txt" | tail -1)
if [ -n "$n" ]; then
	sed -i "s/^1\.\.$n\$/1..$((n + 1))/" "$out/tap.txt"
	echo "$host $((n + 1)) - the host's backing file holds the bytes the guest wrote" >>"$out/tap.txt"
fi
exit "$rc"
