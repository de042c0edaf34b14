#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# ivshmem: doorbell round trips guest <-> host peer vs spinning on shared memory
#
# One guest with an ivshmem-doorbell device (2 vectors, 1 MiB) and a host
# `lincell ivshmem echo` peer on the same ivshmem-server (the harness starts
# both). The guest runs `lincell ivshmem pingpong` COUNT (10000) times per
# mode: write a sequence number, ring the host on vector 1, wait for its
# doorbell back. read: a blocking read(2) of /dev/ivshmem0; poll: poll(2)
# then read(2); spin: no doorbells, both sides spin on the sequence numbers
# in shared memory (the baseline). Every round must see exactly one
# doorbell with the right sequence number (lost, spurious: 0). Prints the
# latency percentiles per mode (µs); the harness adds read/spin and
# poll/spin. Release builds (spinning in a debug build measures the debug
# build).
# Runs on both revisions in one `make bench` (revisions=): QEMU's
# ivshmem-doorbell, then the project's ivshmem 2.0 device over vfio-user
# (QEMU 11), whose figures are named v2/ivshmem-doorbell; each revision's
# ratios are against its own spin baseline.
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=900 revisions=v1,v2
# lincell-vm: host=target/release/lincell ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --tap --start-timeout 300000 --timeout 30000
# lincell-vm: ratio=read/spin ratio=poll/spin
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/release/lincell
N=10000

# pingpong MODE: N round trips; MODE.COLUMN=VALUE from the report's
# "latency_us: min A p50 B ... mean G (n=N)" and "lost: L spurious: S".
pingpong() {
	stop=
	[ "$1" = spin ] && stop=--stop
	"$L" ivshmem pingpong /dev/ivshmem0 --count $N --mode "$1" $stop \
		--connect-timeout 120000 >"$LINCELL_OUT/$1.txt" 2>&1 || { cat "$LINCELL_OUT/$1.txt"; return 1; }
	pingpong_figures "$1" "$LINCELL_OUT/$1.txt"
}

plan 4
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
for mode in read poll spin; do
	results "$N round trips ($mode): PASSED, none lost or spurious" pingpong $mode
done
