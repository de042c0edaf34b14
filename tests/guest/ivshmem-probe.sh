#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# ivshmem.ko binds QEMU's ivshmem-plain (v1) or an ivshmem 2.0 device with
# the same sections (v2), reports it, unbinds on rmmod, rebinds.
# lincell-vm: ivshmem-plain=1M cpus=2 timeout=240 boot=plain revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 10

if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then id="110a 4106" vectors=1; else id="1af4 1110" vectors=0; fi
dev=$(pci_devices $id)
check "guest sees one ${id% *}:${id#* } device" test -n "$dev" -a "$(echo "$dev" | wc -l)" = 1
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "driver is bound to the device" test "$(basename "$(readlink "$dev/driver")")" = ivshmem
name=$(basename "$dev")
rev=${LINCELL_IVSHMEM_REV:-1}
check "probe reports v$rev, peer 0 of 8, $vectors vectors, the 1 MiB BAR and sections" \
	sh -c "dmesg | grep -F 'ivshmem $name: ivshmem v$rev: peer 0 of 8, $vectors vectors, 1024 KiB shared memory, sections'"
check "character device is a child of the PCI device" test -e "$dev/misc/ivshmem0/dev"
# The in-kernel echo (sysfs ivshmem/echo) needs two vectors; bad input is
# refused whatever the device.
expect "the in-kernel echo is off" off cat "$dev/ivshmem/echo"
check "turning it on is refused with $vectors vector(s)" sh -c "! echo 1 2>/dev/null > $dev/ivshmem/echo"
bad=0
for v in x "" 1x -2 0x1 99999999999 "1 2"; do echo "$v" 2>/dev/null > "$dev/ivshmem/echo" && bad=1; done
check "garbage written to it is refused and it stays off" sh -c "[ $bad = 0 ] && [ \"\$(cat $dev/ivshmem/echo)\" = off ]"
check "rmmod unbinds the device" sh -c "rmmod ivshmem && test ! -e $dev/driver"
check "insmod again rebinds" sh -c "insmod $(module_path ivshmem) && test -e $dev/driver && rmmod ivshmem"
