#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make demo`: a guest and a host process share memory and doorbells
# through ivshmem (QEMU ivshmem-doorbell + the project's ivshmem-server);
# the guest loads the lincell modules and shows what they report.
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=300
# lincell-vm: host=target/debug/lincell ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 1
L=$LINCELL_ROOT/target/debug/lincell
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug

echo "== Loading the lincell modules (KUnit runs their suites now)"
for ko in "$LINCELL_ROOT"/drivers/*/*.ko; do
	echo "   insmod $(basename "$ko")"
	insmod "$ko" || exit 1
done
for r in /sys/kernel/debug/kunit/lincell_*/results; do
	echo "   $(basename "$(dirname "$r")"): $(grep -E '^# Totals' "$r" | sed 's/^# //')"
done

echo
echo "== ivshmem devices"
"$L" ivshmem list || exit 1
echo
"$L" ivshmem info /dev/ivshmem0 || exit 1

echo
echo "== Shared memory: write into the R/W section, read it back through a new mapping"
"$L" ivshmem poke /dev/ivshmem0 rw+0x1000 "hello from $(hostname)" || exit 1
"$L" ivshmem peek /dev/ivshmem0 rw+0x1000 24 || exit 1

echo
echo "== Doorbells: 1000 round trips guest -> host peer -> guest (blocking read)"
peer=$("$L" ivshmem info /dev/ivshmem0 | awk '/own id/ {print ($3 == 0) ? 1 : 0; exit}')
"$L" ivshmem pingpong /dev/ivshmem0 --peer "$peer" --vector 1 --count 1000 --mode read --stop || exit 1

echo
echo "== sysfs"
for d in /sys/bus/pci/devices/*/ivshmem; do
	echo "   $d: id=$(cat "$d/id") vectors=$(cat "$d/vectors") peer_states=$(cat "$d/peer_states")"
done

echo
echo "== CPU isolation: isolate CPU 1, measure noise with the housekeeping CPU loaded, release"
"$L" isolate 1 || exit 1
"$L" status
"$L" noise --duration-ms 1000 --load || exit 1
"$L" release 1 || exit 1
