#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# On the arm64 board (QEMU virt, PCIe ivshmem-doorbell): the ivshmem
# end-to-end test against a host `lincell ivshmem echo` peer (device info,
# data written in the R/W section and read back, doorbell round trips guest
# -> host -> guest in read and poll mode with no lost or spurious event),
# then the same device handed from ivshmem.ko to vdev_remote, whose virtio
# disk the host serves (`lincell remote serve --blk`, started once the echo
# peer is done; tests/host/vdev-backend.sh echo-blk): data written with
# direct I/O reads back identical and is in the host's backing file. This is
# where vdev_remote's non-RT paths (callbacks with interrupts off) run end
# to end: the x86_64 test kernel is PREEMPT_RT. (The lincell suites' KUnit
# results on the board: kunit.sh.)
# lincell-vm: arch=arm64 ivshmem-doorbell=2:1M cpus=2 timeout=300
# lincell-vm: host=sh tests/host/vdev-backend.sh echo-blk guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
dev=/dev/ivshmem0
plan 13
check "insmod ivshmem.ko and vdev_remote.ko" sh -c "insmod $(module_path ivshmem) && insmod $(module_path vdev-remote)"
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

# vdev_remote on the same device; the host peer now serves a disk.
pci=$(pci_devices 1af4 1110 | head -1)
check "vdev_remote takes the device from ivshmem.ko" to_vdev_remote "$pci"
check "a virtio disk appears, served by the host" wait_for 240 test -b /dev/vda
check "virtio_blk drives it: 128 MiB" test "$(blockdev --getsize64 /dev/vda 2>/dev/null)" = 134217728
dd if=/dev/urandom of=/tmp/data bs=64k count=16 2>/dev/null
check "write 1 MiB at 4 MiB (O_DIRECT)" dd if=/tmp/data of=/dev/vda bs=64k seek=64 oflag=direct conv=fsync 2>/dev/null
read_back() {
	dd if=/dev/vda of=/tmp/back bs=64k skip=64 count=16 iflag=direct 2>/dev/null &&
		test "$(sha256sum </tmp/data)" = "$(sha256sum </tmp/back)"
}
check "read it back (O_DIRECT): identical" read_back
# For the host peer: the checksum and where the data is.
to_host data.sha "$(sha256sum </tmp/data | cut -d' ' -f1) 4194304 1048576"
