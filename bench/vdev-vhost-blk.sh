#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev-remote disks of three backends vs QEMU's virtio-blk-pci, one run
#
# One guest, one 256 MiB backing file (`disk=`, made by the harness):
# QEMU's virtio-blk-pci, whose I/O here stays in the first half (the
# baseline, row native), and the second half exported as a 128 MiB
# vdev-remote disk served in turn, on the same
# ivshmem-doorbell device, by (tests/host/vdev-vhost-bench.sh)
#   vhost   qemu-storage-daemon through `lincell remote vhost-user` (the
#           default: doorbells through the bridge's in-flight log, so the
#           backend can be replaced in service),
#   direct  the same with --hold-ms 0 (the backend owns the doorbells),
#   own     lincell's own `lincell remote serve --blk`.
# On each, fio runs the matrix of bench/fio/vdev-blk.fio (direct I/O;
# sequential 1 MiB at queue depth 1 and 16, random 4 KiB at 1 and 32, 1
# and 4 jobs; guest-lib fio_matrix). Prints ROW.JOB_UNIT; the harness adds
# each row over native. fio's JSON goes to LINCELL_OUT. Release builds.
# lincell-vm: ivshmem-doorbell=4:32M disk=256M cpus=2 timeout=900
# lincell-vm: host=LINCELL=target/release/lincell sh tests/host/vdev-vhost-bench.sh guest
# lincell-vm: ratio=vhost/native ratio=direct/native ratio=own/native
. "$LINCELL_ROOT/virtme/guest-lib.sh"
pci=$(pci_devices 1af4 1110 | head -1)

# The disks: ours hangs off the ivshmem function, the other vd* is QEMU's.
remote_disk() {
	for b in /sys/block/vd*; do
		readlink -f "$b/device" 2>/dev/null | grep -q "/$(basename "$pci")/" && echo "/dev/${b##*/}"
	done | head -1
}
native_disk() {
	for b in /sys/block/vd*; do
		[ -e "$b" ] && ! readlink -f "$b/device" | grep -q "/$(basename "$pci")/" && echo "/dev/${b##*/}"
	done | head -1
}
attached() { [ "$(dmesg | grep -c 'attached: virtio device id')" -ge "$1" ] && [ -n "$(remote_disk)" ]; }
# patterns ROW: the fio matrix on ROW's disk (native: the first half of
# the file; the remote disk is the second half).
patterns() {
	if [ "$1" = native ]; then d=$(native_disk); else d=$(remote_disk); fi
	fio_matrix "$1" "$d" 0
}

plan 9
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
check "the ivshmem device goes to vdev_remote" to_vdev_remote "$pci"
check "both disks appear (native virtio-blk-pci, the bridged qemu-storage-daemon)" wait_for 120 attached 1
results "native: QEMU's virtio-blk-pci" patterns native
results "vhost: qemu-storage-daemon through the bridge, in-flight log" patterns vhost
to_host next-1
check "the bridge with --hold-ms 0 serves the disk" wait_for 120 attached 2
results "direct: qemu-storage-daemon through the bridge, --hold-ms 0" patterns direct
to_host next-2
check "lincell remote serve --blk serves the disk" wait_for 120 attached 3
results "own: lincell remote serve --blk" patterns own
