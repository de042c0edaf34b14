#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The arm64 leg, inside the emulated board (QEMU virt, busybox initramfs,
# scripts/arm64-check.sh): load every module (KUnit runs their suites; the
# results are printed from debugfs), then the ivshmem end-to-end test
# against a host `lincell ivshmem echo` peer: device info, data written in
# the R/W section and read back, doorbell round trips guest -> host -> guest
# in read and poll mode with no lost or spurious event.
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
dev=/dev/ivshmem0
status=0
for ko in "$LINCELL_ROOT"/drivers/*/*.ko; do
	insmod "$ko" || { echo "insmod $ko failed" >&2; status=1; }
done
for r in /sys/kernel/debug/kunit/lincell_*/results; do
	cat "$r"
done
plan 7
check "/dev/ivshmem0 appears (arm64, PCIe ivshmem-doorbell)" wait_for 10 test -c $dev
expect "info: QEMU ivshmem, 2 vectors, sections" "revision: 1 (QEMU ivshmem)
vectors: 2
SECTIONS" "$lincell" ivshmem info $dev
check "write into the R/W section" "$lincell" ivshmem poke $dev rw+0x1000 "hello from arm64"
expect "read it back through a new mapping" "hello from arm64" "$lincell" ivshmem peek $dev rw+0x1000 16
expect "100 doorbell round trips with the host peer (read): none lost or spurious" "100/100 round trips
lost: 0 spurious: 0
PASSED" "$lincell" ivshmem pingpong $dev --count 100 --mode read --connect-timeout 120000
expect "100 round trips (poll), the host peer stops after" "100/100 round trips
PASSED" "$lincell" ivshmem pingpong $dev --count 100 --mode poll --stop --connect-timeout 60000
expect "the machine is arm64" "aarch64" uname -m
exit $status
