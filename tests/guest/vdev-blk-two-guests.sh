#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote between two guests: guest a runs the backend, `lincell remote
# serve /dev/ivshmem0 --blk FILE`, on its ivshmem.ko device; guest b binds
# its device to vdev_remote (driver_override) and gets a virtio disk from
# a. b writes random data through its /dev/vda and reads it back; a checks
# the very same bytes in its backing file. A backend in a guest cannot
# write the v1 layout header (read-only to users), so b names the device
# type with vdev_remote's v1_device_id parameter.
# lincell-vm: guests=a,b ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: host=sh tests/host/vdev-two-guests.sh
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
out=$LINCELL_OUT
OFF=$((8 << 20))
LEN=$((4 << 20))

if [ "$LINCELL_GUEST" = a ]; then
	plan 5
	check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
	check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0
	truncate -s 64M "$out/disk.img"
	"$lincell" remote serve /dev/ivshmem0 --blk "$out/disk.img" 2>"$out/backend.log" &
	pid=$!
	check "the backend serves $out/disk.img over /dev/ivshmem0" wait_for 30 grep -q "ready (own id" "$out/backend.log"
	check "guest b's frontend attaches and later leaves" wait_for 500 grep -q "left READY" "$out/backend.log"
	kill -TERM $pid
	wait $pid
	check "the backend stops cleanly (exit 0)" test $? -eq 0
else
	plan 7
	check "insmod vdev_remote.ko v1_device_id=2" insmod "$(module_path vdev-remote)" v1_device_id=2
	pci=$(pci_devices 1af4 1110 | head -1)
	echo vdev_remote > "$pci/driver_override"
	basename "$pci" > /sys/bus/pci/drivers_probe
	check "driver_override binds $(basename "$pci") to vdev_remote" sh -c "readlink $pci/driver | grep -q '/vdev_remote$'"
	check "a virtio disk served by guest a appears" wait_for 400 test -b /dev/vda
	disk=$(ls /dev/vd? | head -1)
	expect "64 MiB" "67108864" blockdev --getsize64 "$disk"
	head -c $LEN /dev/urandom > /tmp/data
	check "write 4 MiB of random data at 8 MiB" dd if=/tmp/data of="$disk" bs=64k seek=$((OFF / 65536)) oflag=direct conv=fsync,nocreat
	dd if="$disk" of=/tmp/back bs=64k skip=$((OFF / 65536)) count=$((LEN / 65536)) iflag=direct 2>/dev/null
	check "read it back: identical" cmp /tmp/data /tmp/back
	echo "$(sha256sum /tmp/data | cut -d' ' -f1) $OFF $LEN" > "$out/data.sha"
	check "flush (fsync of the device) succeeds" sh -c "sync && blockdev --flushbufs $disk"
	touch "$out/finished"
fi
