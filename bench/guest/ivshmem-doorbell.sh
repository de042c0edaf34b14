#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest half of bench/ivshmem-doorbell.sh (run by `lincell-vm run`):
# loads ivshmem.ko and runs `lincell ivshmem pingpong` against the host's
# echo peer in read, poll and spin mode, saving each report in OUT.
#   ivshmem-doorbell.sh LINCELL OUT COUNT
lincell=$1 out=$2 n=$3
root=$(cd "$(dirname "$0")/../.." && pwd)
insmod "$root/drivers/ivshmem/ivshmem.ko" || exit 1
for mode in read poll spin; do
	stop=
	[ $mode = spin ] && stop=--stop
	"$lincell" ivshmem pingpong /dev/ivshmem0 --count "$n" --mode $mode $stop \
		--connect-timeout 120000 >"$out/$mode.txt" 2>&1
	rc=$?
	sed "s/^/$mode: /" "$out/$mode.txt"
	[ $rc = 0 ] || exit $rc
done
