#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# ivshmem 2.0 with three peers (issue 12): guests a and b and a host
# process on one device of the project's ivshmem 2.0 device process (QEMU
# 11, vfio-user), in strict mode (the state table and the other peers'
# output sections are not mapped into the guests: the device process
# answers their reads) and one-shot interrupt mode (each delivery disables
# interrupts until the driver re-enables them on read). Checked: three
# distinct peer ids and the device's sections; doorbells guest -> host ->
# guest (ping-pong against a host `lincell ivshmem echo`, rw+0) and guest
# -> guest -> guest (a against an echo in b, rw+0x8000), every round
# answered in read mode, so one-shot re-arming loses nothing; a state set by
# a is seen in the state table by b.
# lincell-vm: guests=a,b cpus=1 timeout=420 ivshmem2=3:64K:16K ivshmem2-vectors=2
# lincell-vm: ivshmem2-strict=1 ivshmem2-one-shot=1
# lincell-vm: host=target/debug/lincell ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --tap --sessions 1 --start-timeout 300000 --timeout 60000
. "$LINCELL_ROOT/virtme/guest-lib.sh"
if [ "$LINCELL_GUEST" = a ]; then plan 6; else plan 5; fi

L=$LINCELL_ROOT/target/debug/lincell
D=/dev/ivshmem0
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "$D appears" wait_for 10 test -c $D
info=$("$L" ivshmem info $D 2>&1)
own=$(printf '%s\n' "$info" | sed -n 's/^own id: //p')
expect "ivshmem 2.0, 3 peers, 2 vectors, one-shot, 64 KiB R/W, 16 KiB outputs" "revision: 2 (ivshmem 2.0)
max peers: 3
vectors: 2
ONESHOT" printf '%s\n' "$info"
# Ids are published in the R/W section, at rw+0x7000 (a) and rw+0x7100 (b).
if [ "$LINCELL_GUEST" = a ]; then mine=rw+0x7000 theirs=rw+0x7100; else mine=rw+0x7100 theirs=rw+0x7000; fi
shm_flag $D $mine "id-$own"
other_id() { "$L" ivshmem peek $D $theirs 8 2>/dev/null | sed -n 's/^id-\([0-9]*\).*/\1/p'; }
other_differs() { o=$(other_id); [ -n "$o" ] && [ "$o" != "$own" ]; }
check "the other guest has another id" wait_for 120 other_differs

if [ "$LINCELL_GUEST" = a ]; then
	expect "guest -> host -> guest: 200 round trips in read mode, none lost" "200/200 round trips
lost: 0 spurious: 0
PASSED" "$L" ivshmem pingpong $D --count 200 --mode read --stop --connect-timeout 240000
	expect "guest a -> guest b -> guest a: 200 round trips in read mode, none lost" "200/200 round trips
lost: 0 spurious: 0
PASSED" "$L" ivshmem pingpong $D --shm-offset rw+0x8000 --count 200 --mode read --stop --connect-timeout 240000
	exec 3<>"$D"
	"$L" ivshmem state $D 7
	shm_flag $D rw+0x7200 a-state-7
	wait_for 120 shm_flag_is $D rw+0x7300 b-saw-7
	exec 3>&-
else
	expect "b answers a's ping-pong session" "200/200 round trips answered" \
		"$L" ivshmem echo $D --shm-offset rw+0x8000 --sessions 1 --start-timeout 240000 --timeout 60000
	a=$(other_id)
	seen() { shm_flag_is $D rw+0x7200 a-state-7 && "$L" ivshmem states $D | grep -qx "peer $a: 7"; }
	check "b sees a's state 7 in the state table (served by the device process: not mapped in strict mode)" \
		wait_for 120 seen
	shm_flag $D rw+0x7300 b-saw-7
fi
