#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# ivshmem.ko binds QEMU's ivshmem-plain, reports it, unbinds on rmmod, rebinds.
# lincell-vm: ivshmem-plain=1M cpus=2 timeout=240 boot=plain
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 7

dev=$(pci_devices 1af4 1110)
check "guest sees one 1af4:1110 device" test -n "$dev" -a "$(echo "$dev" | wc -l)" = 1
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "driver is bound to the device" test "$(basename "$(readlink "$dev/driver")")" = ivshmem
name=$(basename "$dev")
check "probe reports v1, peer 0 of 8, no vectors, the 1 MiB BAR and sections" \
	sh -c "dmesg | grep -F 'ivshmem $name: ivshmem v1: peer 0 of 8, 0 vectors, 1024 KiB shared memory, sections'"
check "character device is a child of the PCI device" test -e "$dev/misc/ivshmem0/dev"
check "rmmod unbinds the device" sh -c "rmmod ivshmem && test ! -e $dev/driver"
check "insmod again rebinds" sh -c "insmod $(module_path ivshmem) && test -e $dev/driver && rmmod ivshmem"
