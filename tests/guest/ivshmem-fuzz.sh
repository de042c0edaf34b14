#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# /dev/ivshmemN against a hostile unprivileged user (issue 11): ivshmem-fuzz,
# dropped to uid 65534 with only a test group that the nodes are given to
# (as the udev rule gives them to group lincell), makes 100 000 random
# ioctl/mmap/mprotect/mremap/munmap/read/write/poll calls and mapping
# accesses from 4 threads while this script unbinds and rebinds the device
# every ~0.75 s. Then a mapper holds 32 mappings while the device is
# unbound: none may still be readable. The harness fails the run on any
# kernel splat. FUZZ_CALLS (default 100000) sets the number of calls: the
# soak benchmark (bench/soak-ivshmem-fuzz.sh) sources this script with
# 1000000 and reads the figures it prints (fuzz.calls=N ...).
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=720 revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
fuzz=$LINCELL_ROOT/target/debug/ivshmem-fuzz
gid=4242
FUZZ_CALLS=${FUZZ_CALLS:-100000}
plan 5

check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
pci=$(ivshmem_pci)
bdf=$(basename "$pci")
drv=/sys/bus/pci/drivers/ivshmem
grant() { for n in /dev/ivshmem*; do [ -c "$n" ] && chgrp $gid "$n" && chmod 0660 "$n"; done 2>/dev/null; }
check "the device node appears" wait_for 10 sh -c 'ls /dev/ivshmem* >/dev/null 2>&1'
grant

rm -f /tmp/fuzz-stop
(
	while [ ! -e /tmp/fuzz-stop ]; do
		echo "$bdf" > $drv/unbind 2>/dev/null
		sleep 0.3
		echo "$bdf" > $drv/bind 2>/dev/null
		sleep 0.05
		grant
		sleep 0.4
	done
) &
loop=$!
check "$FUZZ_CALLS unprivileged random calls while the device comes and goes" \
	timeout $((600 * ((FUZZ_CALLS + 99999) / 100000))) sh -c "$fuzz --uid 65534 --gid $gid --calls $FUZZ_CALLS --threads 4 --seed $$ > /tmp/fuzz.out 2>&1"
sed 's/^/# /' /tmp/fuzz.out
tr ' ' '\n' </tmp/fuzz.out | sed -n 's/^\([a-z]*\)=\([0-9.]*\)$/fuzz.\1=\2/p'
touch /tmp/fuzz-stop
wait $loop
[ -e "$pci/driver" ] || echo "$bdf" > $drv/bind
wait_for 10 sh -c 'ls /dev/ivshmem* >/dev/null 2>&1'
grant

"$fuzz" --uid 65534 --gid $gid --survivors 32 > /tmp/survivors.out 2>&1 &
mapper=$!
check "an unprivileged process maps the device 32 times" wait_for 30 grep -q '^mapped' /tmp/survivors.out
echo "$bdf" > $drv/unbind
wait $mapper
rc=$?
sed 's/^/# /' /tmp/survivors.out
check "no mapping survives the unbind (mapper exit $rc)" test $rc -eq 0
echo "$bdf" > $drv/bind
