#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest half of bench/vdev-blk.sh: LINCELL OUT SECONDS.
set -u
lincell=$1 out=$2 secs=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
insmod "$root/drivers/vdev-remote/vdev_remote.ko" || exit 1
pci=$(for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x1110 ] && echo "$d"; done | head -1)
echo vdev_remote > "$pci/driver_override"
basename "$pci" > /sys/bus/pci/drivers_probe
bdf=$(basename "$pci")
# Our disk hangs off the ivshmem function; the other vd* is QEMU's.
remote= native=
i=0
while [ -z "$remote" ] && [ $i -lt 600 ]; do
	for b in /sys/block/vd*; do
		[ -e "$b" ] || continue
		if readlink -f "$b/device" | grep -q "$bdf"; then remote=/dev/${b##*/}; else native=/dev/${b##*/}; fi
	done
	sleep 0.1; i=$((i + 1))
done
[ -n "$remote" ] && [ -n "$native" ] || { echo "disks: native '$native' remote '$remote'"; exit 1; }
echo "native $native, remote $remote"
: > "$out/results.txt"
# run NAME ARGS...: native on the first half of the file, remote on the second.
run() {
	name=$1; shift
	for d in native remote; do
		if [ $d = native ]; then dev=$native off=0; else dev=$remote off=$((128 << 20)); fi
		r=$("$lincell" remote bench "$dev" --seconds "$secs" --offset $off --size $((128 << 20)) "$@") || { echo "$d $name: failed"; exit 1; }
		echo "$d $name $r" | tee -a "$out/results.txt"
	done
}
run read-1M --mode read --bs 1048576
run write-1M --mode write --bs 1048576
run randread-4k --mode randread --bs 4096
run randwrite-4k --mode randwrite --bs 4096
run randread-4k-j4 --mode randread --bs 4096 --jobs 4
