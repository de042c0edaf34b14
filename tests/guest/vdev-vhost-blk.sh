#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote served by a vhost-user backend: on the host,
# qemu-storage-daemon exports a 128 MiB file as vhost-user-blk and
# `lincell remote vhost-user` bridges it to this guest's ivshmem-doorbell
# device (tests/host/vdev-vhost.sh, whose TAP counts too). The kernel's
# unmodified virtio_blk drives /dev/vda; the requests go straight between
# the shared rings and qemu-storage-daemon. Checked: random data written
# with O_DIRECT reads back and is in the host file at the same offset; an
# ext4 file system survives unmount/mount; qemu-storage-daemon killed
# mid-write makes the writer fail within a bounded time and the disk go
# away; the bridge reconnects to a restarted qemu-storage-daemon and the
# disk comes back by itself with the data intact. Last, vdev_remote is
# unbound and bound again: the bridge stops the queues at the backend
# (device reset on the same vhost-user connection) and hands them out
# again to the new driver instance.
# Runs on QEMU ivshmem (v1, bound by driver_override) and on an ivshmem 2.0
# device (revisions=, a virtio-blk frontend, protocol 0x8002, bound by ID).
# lincell-vm: arch=x86_64 ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=2:16M:0:0x8002 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-vhost.sh guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
DATA_OFF=$((32 << 20))
LEN=$((4 << 20))

nocreat=,nocreat
dd --help 2>&1 | grep -q nocreat || nocreat=
disk() { for d in /dev/vd?; do [ -b "$d" ] && echo "$d" && break; done; }
has_disk() { [ -n "$(disk)" ]; }
read_back() { dd if="$(disk)" of="$1" bs=64k skip=$((DATA_OFF / 65536)) count=$((LEN / 65536)) iflag=direct 2>/dev/null; }

plan 15
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(ivshmem_pci)
check "vdev_remote has $(basename "$pci") (v${LINCELL_IVSHMEM_REV:-1}: by driver_override on v1, by ID on v2)" to_vdev_remote "$pci"
check "a virtio disk appears once the bridge is READY" wait_for 240 has_disk
expect "virtio_blk drives it: 128 MiB from qemu-storage-daemon" "134217728" blockdev --getsize64 "$(disk)"

head -c $LEN /dev/urandom > /tmp/data
check "write 4 MiB of random data at 32 MiB (O_DIRECT)" \
	dd if=/tmp/data of="$(disk)" bs=64k seek=$((DATA_OFF / 65536)) oflag=direct conv=fsync$nocreat
read_back /tmp/back
check "read it back (O_DIRECT): identical" cmp /tmp/data /tmp/back
to_host data.sha "$(sha256sum /tmp/data | cut -d' ' -f1) $DATA_OFF $LEN"

mkdir -p /tmp/mnt
check "mkfs.ext4 on the first 16 MiB" mkfs.ext4 -q -F "$(disk)" 16M
check "mount, write a file, unmount" sh -c "mount $(disk) /tmp/mnt && cp /tmp/data /tmp/mnt/f && sync && umount /tmp/mnt"
check "mount again: the file survived" sh -c "mount $(disk) /tmp/mnt && cmp /tmp/data /tmp/mnt/f; rc=\$?; umount /tmp/mnt; exit \$rc"

# qemu-storage-daemon killed while we write: the writer must fail, not hang.
w=$(disk)
sh -c "while [ -b $w ] && dd if=/dev/zero of=$w bs=1M count=16 seek=48 oflag=direct conv=notrunc$nocreat 2>/tmp/dd.err; do :; done" &
writer=$!
sleep 1
to_host kill-now
start=$(date +%s)
i=0
while kill -0 $writer 2>/dev/null && [ $i -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
kill $writer 2>/dev/null
took=$(($(date +%s) - start))
check "the writer fails ($(grep -m1 -iE "error|failed|No such" /tmp/dd.err)) ${took}s after the kill request, within 120 s" test $i -lt 1200
check "the failed disk is removed" wait_for 30 sh -c "dmesg | grep -q 'virtio device of backend peer .* removed'"
check "the bridge reconnects to a restarted backend: the disk is back" wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -ge 2 ] && [ -b /dev/vda ]"
read_back /tmp/back2
check "the data written before the kill is intact" cmp /tmp/data /tmp/back2

# Unbind and bind again: the same backend connection serves a second
# driver instance (the bridge stops and restarts the queues).
basename "$pci" > /sys/bus/pci/drivers/vdev_remote/unbind
check "unbound: the disk goes away" wait_for 30 sh -c "! [ -b /dev/vda ]"
before=$(dmesg | grep -c 'attached: virtio device id')
basename "$pci" > /sys/bus/pci/drivers_probe
wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ]"
read_back /tmp/back3
check "bound again: the disk is back, data intact" cmp /tmp/data /tmp/back3
