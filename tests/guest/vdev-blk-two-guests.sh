#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote between two guests: guest a runs the backend, `lincell remote
# serve /dev/ivshmem0 --blk FILE`, on its ivshmem.ko device; guest b binds
# its device to vdev_remote (driver_override) and gets a virtio disk from
# a. b writes random data through its /dev/vda and reads it back; a checks
# the very same bytes in its backing file. On v1 a backend in a guest
# cannot write the layout header (read-only to users), so b names the
# device type with vdev_remote's v1_device_id parameter and binds by
# driver_override. On ivshmem 2.0 the device process gives a's function the
# virtio-blk back-end protocol (0xc002) and b's the front-end one (0x8002):
# ivshmem.ko takes a's, vdev_remote binds b's by ID, with no parameter.
# lincell-vm: guests=a,b ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=2:16M:0:0x8002 ivshmem2-vectors=4 ivshmem2-backend=a
# lincell-vm: host=sh tests/host/vdev-two-guests.sh
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
out=$LINCELL_OUT
OFF=$((8 << 20))
LEN=$((4 << 20))

if [ "$LINCELL_GUEST" = a ]; then
	plan $((5 + (${LINCELL_IVSHMEM_REV:-1} == 2)))
	check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
	check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0
	if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then
		expect "its function is the virtio-blk back-end" 0xc002 cat "$(ivshmem_pci)/ivshmem/protocol"
	fi
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
	if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then
		check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
	else
		check "insmod vdev_remote.ko v1_device_id=2" insmod "$(module_path vdev-remote)" v1_device_id=2
	fi
	pci=$(ivshmem_pci)
	check "vdev_remote has $(basename "$pci") (v${LINCELL_IVSHMEM_REV:-1}: by driver_override on v1, by ID on v2)" to_vdev_remote "$pci"
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
