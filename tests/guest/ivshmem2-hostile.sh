#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# A hostile and a dying guest on one ivshmem 2.0 device (issue 12), with a
# host peer. The device process answers every peer's registers, so neither
# may take it down or disturb the others:
# - guest a unbinds ivshmem.ko and writes garbage to every register of its
#   function (ivshmem2-garbage: BAR0 at every width and alignment, the
#   vendor capability in configuration space) and binds ivshmem.ko again
#   (the function has no reset a guest can trigger): the device still reports itself as before and a
#   ping-pong with the host peer loses nothing; guest b, which saw the
#   garbage states and doorbells, still works and its kernel log is clean;
# - then b rings a back to back and the host SIGKILLs b's QEMU mid-storm
#   (killed=b): the device process lives on, b's state-table entry is
#   cleared, and a ping-pong between a and the host loses nothing.
# lincell-vm: guests=a,b cpus=1 timeout=480 ivshmem2=3:64K:16K ivshmem2-vectors=2
# lincell-vm: killed=b
# lincell-vm: host=sh tests/host/ivshmem2-hostile.sh
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/debug/lincell
D=/dev/ivshmem0
# Flags in the R/W section: ids at rw+0x7000 (a) and rw+0x7100 (b), steps
# at rw+0x7200 (a) and rw+0x7300 (b).
if [ "$LINCELL_GUEST" = a ]; then plan 13; else plan 7; fi

check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "$D appears" wait_for 10 test -c $D
own=$("$L" ivshmem info $D 2>&1 | sed -n 's/^own id: //p')
if [ "$LINCELL_GUEST" = a ]; then mine=rw+0x7000 theirs=rw+0x7100; else mine=rw+0x7100 theirs=rw+0x7000; fi
shm_flag $D $mine "id-$own"
other_id() { "$L" ivshmem peek $D $theirs 8 2>/dev/null | sed -n 's/^id-\([0-9]*\).*/\1/p'; }
other_differs() { o=$(other_id); [ -n "$o" ] && [ "$o" != "$own" ]; }
check "the other guest has another id" wait_for 120 other_differs
other=$(other_id)
describe() { "$L" ivshmem info $D 2>&1 | grep -E '^(revision|max peers|vectors|own id):'; }
before=$(describe)

if [ "$LINCELL_GUEST" = a ]; then
	pci=$(ivshmem_pci)
	bdf=$(basename "$pci")
	check "unbind ivshmem.ko from $bdf" sh -c "echo $bdf > /sys/bus/pci/drivers/ivshmem/unbind"
	echo 1 > "$pci/enable" 2>/dev/null
	out=$("$LINCELL_ROOT/target/debug/ivshmem2-garbage" "$pci" --accesses 30000 --seed "$$" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed 's/^/# /'
	check "30000 garbage register accesses (BAR0 all widths, vendor capability) complete" test $rc -eq 0
	echo 0 > "$pci/enable" 2>/dev/null
	check "bind ivshmem.ko again" sh -c "echo $bdf > /sys/bus/pci/drivers/ivshmem/bind"
	# A new node: ivshmem.ko never reuses a number (ivshmem-abi.md).
	node() { n=$(ls "$pci/misc" 2>/dev/null | head -1); [ -n "$n" ] && D=/dev/$n && test -c "$D"; }
	check "its node is back" wait_for 10 node
	node
	expect "it reports itself as before (revision, peers, vectors, own id)" "$before" describe
	shm_flag $D rw+0x7200 garbage-done
	expect "then a ping-pong with the host peer: 200 round trips, none lost" "200/200 round trips
lost: 0 spurious: 0
PASSED" "$L" ivshmem pingpong $D --count 200 --mode read --connect-timeout 240000
	check "b is done checking" wait_for 120 shm_flag_is $D rw+0x7300 b-checked
	shm_flag $D rw+0x7200 storm-now
	gone() { "$L" ivshmem states $D | grep -qx "peer $other: 0"; }
	check "b killed mid-storm: its state-table entry is cleared" wait_for 240 gone
	expect "a ping-pong with the host peer after b's death: 200 round trips, none lost" "200/200 round trips
lost: 0 spurious: 0
PASSED" "$L" ivshmem pingpong $D --count 200 --mode read --stop --connect-timeout 240000
	check "rmmod ivshmem" rmmod ivshmem
	to_host a-finished
else
	exec 3<>"$D"
	"$L" ivshmem state $D 5
	check "a's garbage is over" wait_for 300 shm_flag_is $D rw+0x7200 garbage-done
	expect "b's device still reports itself as before" "$before" describe
	# a's garbage went to its own State register too; its driver, bound
	# again, starts from state 0.
	a_zero() { "$L" ivshmem states $D | grep -qx "peer $other: 0"; }
	check "a's state is 0 again once its driver is back" wait_for 10 a_zero
	"$L" ivshmem states $D | sed 's/^/# /'
	seen5() { "$L" ivshmem states $D | grep -qx "peer $own: 5"; }
	check "b's state 5 holds in the state table" seen5
	splats=$(dmesg | grep -E 'BUG:|WARNING:|Oops|general protection|rcu: INFO|possible circular|inconsistent lock|Call Trace')
	check "b's kernel log is clean after a's garbage" test -z "$splats"
	[ -n "$splats" ] && printf '%s\n' "$splats" | sed 's/^/# /'
	shm_flag $D rw+0x7300 b-checked
	wait_for 300 shm_flag_is $D rw+0x7200 storm-now
	sync
	# The last words: tell the host, then ring a until killed.
	to_host storming
	while :; do "$L" ivshmem ring $D "$other" 1 --count 1000000 >/dev/null 2>&1; done
fi
