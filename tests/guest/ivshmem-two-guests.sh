#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Two guests are ivshmem peers (ivshmem-doorbell, 2 vectors): data both
# ways through the R/W section; guest a rings guest b (id learned from b's
# `info`, published in shared memory) and b's echo rings back: doorbells
# wake read() and poll() on both sides; 2000-round ping-pongs in read and
# poll mode without a lost or spurious event (then EAGAIN, COUNTERS exact),
# and in kernel mode: b's ivshmem.ko answers from its interrupt handler
# (sysfs echo, set and cleared by b's `echo`).
# Every wait is bounded: a dead guest fails the other one, never hangs it.
# lincell-vm: guests=a,b ivshmem-doorbell=2:1M cpus=1 timeout=480 boot=pair revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
dev=/dev/ivshmem0
N=2000

if [ "$LINCELL_GUEST" = a ]; then plan 12; else plan 10; fi
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "$dev appears" wait_for 10 test -c $dev
id=$("$lincell" ivshmem info $dev | sed -n 's/^own id: //p')
check "info: 2 vectors, own id $id" sh -c "test -n '$id' && $lincell ivshmem info $dev | grep -qx 'vectors: 2'"

if [ "$LINCELL_GUEST" = a ]; then
	check "a writes data for b" "$lincell" ivshmem poke $dev rw+64K "from guest a"
	check "a reads b's data" "$lincell" ivshmem peek $dev rw+96K 64 --wait-for "from guest b" --timeout 240000
	bid=$("$lincell" ivshmem peek $dev rw+128K 16 --wait-for "id=" --timeout 60000 | sed -n 's/^id=//p')
	check "b's id ($bid) is known and differs from a's ($id)" test -n "$bid" -a "$bid" != "$id"
	expect "a -> b doorbell and back wakes read() on both" "1/1 round trips
PASSED" "$lincell" ivshmem pingpong $dev --peer "$bid" --count 1 --mode read --connect-timeout 120000
	expect "a -> b doorbell and back wakes poll() on both" "1/1 round trips
PASSED" "$lincell" ivshmem pingpong $dev --peer "$bid" --count 1 --mode poll --connect-timeout 60000
	expect "$N ping-pongs in read mode: none lost or spurious, EAGAIN after, COUNTERS exact" \
"$N/$N round trips
lost: 0 spurious: 0
check ok: nonblocking read after the last round: EAGAIN (nothing pending)
check ok: counters[1] moved by $N, expected $N
PASSED" "$lincell" ivshmem pingpong $dev --peer "$bid" --count $N --mode read --connect-timeout 60000
	expect "$N ping-pongs answered by b's kernel: none lost or spurious, COUNTERS exact" \
"$N/$N round trips
lost: 0 spurious: 0
check ok: counters[1] moved by $N, expected $N
PASSED" "$lincell" ivshmem pingpong $dev --peer "$bid" --count $N --mode kernel --connect-timeout 60000
	expect "$N ping-pongs in poll mode: none lost or spurious, EAGAIN after, COUNTERS exact" \
"$N/$N round trips
lost: 0 spurious: 0
check ok: counters[1] moved by $N, expected $N
PASSED" "$lincell" ivshmem pingpong $dev --peer "$bid" --count $N --mode poll --stop --connect-timeout 60000
	check "rmmod ivshmem" rmmod ivshmem
else
	check "b reads a's data" "$lincell" ivshmem peek $dev rw+64K 64 --wait-for "from guest a" --timeout 240000
	check "b writes data for a" "$lincell" ivshmem poke $dev rw+96K "from guest b"
	check "b publishes its id" "$lincell" ivshmem poke $dev rw+128K "id=$id"
	expect "b echoes a's 5 sessions (1+1+$N+$N+$N round trips, one by its kernel), no anomalies" \
"echo: 5 session(s), $((2 + 3 * N)) round trips answered
(mode read, vector 1): $N/$N round trips answered, 0 anomalies
(mode kernel, vector 1): $N/$N round trips answered, 0 anomalies
(mode poll, vector 1): $N/$N round trips answered, 0 anomalies" \
		"$lincell" ivshmem echo $dev --start-timeout 240000 --timeout 30000
	sys=$(ivshmem_pci)/ivshmem
	expect "the in-kernel echo is off again" off cat "$sys/echo"
	check "it answered at least $N doorbells ($(cat "$sys/echo_count"))" test "$(cat "$sys/echo_count")" -ge $N
	check "rmmod ivshmem" rmmod ivshmem
fi
