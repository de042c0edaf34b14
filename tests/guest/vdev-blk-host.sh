#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote with a host backend: the guest's QEMU ivshmem-doorbell device
# (4 vectors, 16 MiB) is bound to vdev_remote through driver_override, and
# `lincell remote serve --blk` runs on the host as an ivshmem-server peer
# (tests/host/vdev-backend.sh, whose TAP counts too). The kernel's own,
# unmodified virtio_blk drives /dev/vda. Checked: random data written
# through the block device reads back in the guest and is in the host's
# backing file at the same offset; an ext4 file system survives
# unmount/mount; the backend killed mid-write makes the writer fail within
# a bounded time and the disk go away; a restarted backend brings the disk
# back by itself with the data intact; a backend writing an out-of-range
# used index gets the device failed (I/O errors, a logged reason) and a good
# backend brings it back again. No kernel warning anywhere (the harness
# checks every guest's log). Runs on the x86_64 guest and the arm64 board
# (whose busybox has no mkfs.ext4: those 3 cases are skipped there), and
# on the x86_64 guest a second time on an ivshmem 2.0 device (revisions=),
# a virtio-blk frontend (protocol 0x8002) that vdev_remote binds by ID.
# lincell-vm: arch=x86_64,arm64 ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=2:16M:0:0x8002 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-backend.sh blk guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
DATA_OFF=$((32 << 20))
LEN=$((4 << 20))

# The block device virtio_blk created for us (vda normally). Writers use
# conv=nocreat where dd has it (busybox's has not: there the writer loop
# stops when the disk is gone): while the disk is gone, dd would create a
# regular file.
nocreat=,nocreat
dd --help 2>&1 | grep -q nocreat || nocreat=
disk() { for d in /dev/vd?; do [ -b "$d" ] && echo "$d" && break; done; }
has_disk() { [ -n "$(disk)" ]; }
# read_back FILE: the LEN bytes at DATA_OFF, direct I/O.
read_back() { dd if="$(disk)" of="$1" bs=64k skip=$((DATA_OFF / 65536)) count=$((LEN / 65536)) iflag=direct 2>/dev/null; }

attached() { dmesg | grep -c 'attached: virtio device id'; }

plan 19
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(ivshmem_pci)
check "vdev_remote has $(basename "$pci") (v${LINCELL_IVSHMEM_REV:-1}: by driver_override on v1, by ID on v2)" to_vdev_remote "$pci"
check "a virtio disk appears once the host backend is READY" wait_for 240 has_disk
expect "virtio_blk drives it: 128 MiB" "134217728" blockdev --getsize64 "$(disk)"

head -c $LEN /dev/urandom > /tmp/data
check "write 4 MiB of random data at 32 MiB (O_DIRECT)" \
	dd if=/tmp/data of="$(disk)" bs=64k seek=$((DATA_OFF / 65536)) oflag=direct conv=fsync$nocreat
read_back /tmp/back
check "read it back (O_DIRECT): identical" cmp /tmp/data /tmp/back
to_host data.sha "$(sha256sum /tmp/data | cut -d' ' -f1) $DATA_OFF $LEN"

if command -v mkfs.ext4 >/dev/null; then
	mkdir -p /tmp/mnt
	check "mkfs.ext4 on the first 16 MiB" mkfs.ext4 -q -F "$(disk)" 16M
	check "mount, write a file, unmount" sh -c "mount $(disk) /tmp/mnt && cp /tmp/data /tmp/mnt/f && sync && umount /tmp/mnt"
	check "mount again: the file survived" sh -c "mount $(disk) /tmp/mnt && cmp /tmp/data /tmp/mnt/f; rc=\$?; umount /tmp/mnt; exit \$rc"
else
	for c in "mkfs.ext4 on the first 16 MiB" "mount, write a file, unmount" "mount again: the file survived"; do
		ok "$c # SKIP no mkfs.ext4 in the guest"
	done
fi

# Backend killed while we write: the writer must fail, not hang.
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
expect "the kernel says why" "failed: it left READY" dmesg
check "the failed disk is removed" wait_for 30 sh -c "dmesg | grep -q 'virtio device of backend peer .* removed'"
check "a restarted backend brings a disk back by itself" wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -ge 2 ] && [ -b /dev/vda ]"
read_back /tmp/back2
check "the data written before the kill is intact" cmp /tmp/data /tmp/back2

# A backend that writes an out-of-range used index. Its disk replaces the
# old one within a blink, so watch the kernel's "attached" messages.
before=$(attached)
to_host fault-now
check "the faulty backend attaches" wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ]"

timeout 120 sh -c "for i in \$(seq 1 100); do dd if=$(disk) of=/dev/null bs=4k count=16 skip=\$((i * 100)) iflag=direct 2>/dev/null || exit 1; done"
check "reads through it fail (garbage used index), not hang" test $? -eq 1
expect "the kernel names the bad index" "used index advanced by" dmesg
before=$(attached)
to_host normal-now
check "a good backend brings the disk back" wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ]"

read_back /tmp/back3
check "data still intact" cmp /tmp/data /tmp/back3
