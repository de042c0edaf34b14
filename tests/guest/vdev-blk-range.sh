#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# virtio-blk policy: the host backend exports only a byte range of a larger
# file (`lincell remote serve --blk FILE --range 16M:8M`,
# tests/host/vdev-backend.sh range, whose TAP counts too; the rest of the
# 64 MiB file holds a sentinel pattern). Checked here: the disk is 8 MiB;
# writes past its end and crossing it fail, a read past it returns nothing;
# random data written to its last MiB reads back. Checked by the host: the
# data is in the file at 16 MiB + 7 MiB, and every byte outside the range
# still holds the sentinel. (The guest's kernel keeps requests inside the
# capacity itself; the backend's own refusal of requests outside the range
# is tested on the host, tools/lincell/src/remote/tests.rs.)
# lincell-vm: ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: host=sh tests/host/vdev-backend.sh range guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
LEN=$((8 << 20))
DATA_OFF=$((7 << 20))
DATA_LEN=$((1 << 20))

disk() { for d in /dev/vd?; do [ -b "$d" ] && echo "$d" && break; done; }
has_disk() { [ -n "$(disk)" ]; }
fails() { ! "$@"; }
# dd_bytes ARGS...: the bytes dd copied (its "N bytes" line; 0 if none).
dd_bytes() { dd "$@" 2>&1 | sed -n 's/^\([0-9]*\) bytes.*/\1/p' | tail -1; }

plan 9
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(ivshmem_pci)
check "vdev_remote has $(basename "$pci")" to_vdev_remote "$pci"
check "a virtio disk appears once the host backend is READY" wait_for 240 has_disk
d=$(disk)
expect "the disk is the range's 8 MiB, not the file's 64 MiB" "$LEN" blockdev --getsize64 "$d"
check "a write past the end fails" fails dd if=/dev/zero of="$d" bs=512 seek=$((LEN / 512)) count=1 oflag=direct conv=notrunc
check "a write crossing the end fails" fails dd if=/dev/zero of="$d" bs=4096 seek=$((LEN / 4096 - 1)) count=2 oflag=direct conv=notrunc
expect "a read past the end returns nothing" "0" dd_bytes if="$d" of=/dev/null bs=512 skip=$((LEN / 512)) count=1 iflag=direct
head -c $DATA_LEN /dev/urandom > /tmp/data
check "write 1 MiB of random data into the last MiB (O_DIRECT)" \
	dd if=/tmp/data of="$d" bs=64k seek=$((DATA_OFF / 65536)) oflag=direct conv=fsync,notrunc
dd if="$d" of=/tmp/back bs=64k skip=$((DATA_OFF / 65536)) count=$((DATA_LEN / 65536)) iflag=direct 2>/dev/null
check "read it back (O_DIRECT): identical" cmp /tmp/data /tmp/back
to_host data.sha "$(sha256sum /tmp/data | cut -d' ' -f1) $DATA_OFF $DATA_LEN"
