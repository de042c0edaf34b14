#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev-remote: a remote virtio disk vs QEMU's own virtio-blk-pci, same backing file
#
# One guest with two disks on the same 256 MiB backing file (`disk=`, made
# by the harness): QEMU's virtio-blk-pci (the native baseline) and a
# vdev-remote disk served by a host `lincell remote serve --blk` peer
# (tests/host/vdev-backend.sh serve) through an ivshmem-doorbell device
# (4 vectors, 32 MiB). Each pattern runs with direct I/O for SECS (5) s on
# the native disk, then on the remote one, each on its own half of the
# file. Prints DISK.PATTERN_UNIT per disk; the harness adds remote/native.
# Release builds.
# lincell-vm: ivshmem-doorbell=4:32M disk=256M cpus=2 timeout=900
# lincell-vm: host=LINCELL=target/release/lincell sh tests/host/vdev-backend.sh serve guest
# lincell-vm: ratio=remote/native
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/release/lincell
SECS=5
HALF=$((128 << 20))

# The disks: ours hangs off the ivshmem function, the other vd* is QEMU's.
disk_of() { # remote|native
	for b in /sys/block/vd*; do
		[ -e "$b" ] || continue
		if readlink -f "$b/device" | grep -q "/$(basename "$pci")/"; then
			[ "$1" = remote ] && echo "/dev/${b##*/}"
		else
			[ "$1" = native ] && echo "/dev/${b##*/}"
		fi
	done | head -1
}
both_disks() { [ -n "$(disk_of remote)" ] && [ -n "$(disk_of native)" ]; }

# Measuring tools: each runs one pattern on one disk and prints
# DISK.PATTERN_UNIT=VALUE. (Issue 17's fio job files come in as a second
# tool beside this one, run by the same loop.)
# lincell_bench DISK PATTERN UNIT ARGS...: `lincell remote bench`, whose
# report is KEY=VALUE already.
lincell_bench() {
	d=$1 p=$2 unit=$3
	shift 3
	dev=$(disk_of "$d") off=0
	[ "$d" = remote ] && off=$HALF
	r=$("$L" remote bench "$dev" --seconds $SECS --offset $off --size $HALF "$@") || return 1
	echo "$d $p $r" >>"$LINCELL_OUT/reports.txt"
	echo "$d.${p}_$unit=$(echo "$r" | tr ' ' '\n' | sed -n "s/^$unit=//p")"
}
# pattern NAME UNIT ARGS...: native, then remote.
pattern() { lincell_bench native "$@" && lincell_bench remote "$@"; }

plan 8
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(pci_devices 1af4 1110 | head -1)
check "the ivshmem device goes to vdev_remote" to_vdev_remote "$pci"
check "both disks appear (native virtio-blk-pci, vdev-remote)" wait_for 60 both_disks
results "sequential read, 1 MiB requests" pattern read-1M mb_per_s --mode read --bs 1048576
results "sequential write, 1 MiB requests" pattern write-1M mb_per_s --mode write --bs 1048576
results "random read, 4 KiB, 1 job" pattern randread-4k iops --mode randread --bs 4096
results "random write, 4 KiB, 1 job" pattern randwrite-4k iops --mode randwrite --bs 4096
results "random read, 4 KiB, 4 jobs" pattern randread-4k-j4 iops --mode randread --bs 4096 --jobs 4
