#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# A guest and a host process are ivshmem peers (ivshmem-doorbell, 2
# vectors, the project's ivshmem-server). The guest runs `lincell ivshmem
# pingpong` sessions against a host `lincell ivshmem echo` (the host= line,
# whose TAP is counted too: one test per session). Checked: the device
# info (2 vectors, the guest's id); data both ways (each session's
# payloads, written by one side and verified by the other); doorbells both
# ways wake read() and poll(); 2000 round trips per mode with no lost or
# spurious event, after which a non-blocking read gives EAGAIN and the
# COUNTERS ioctl moved by exactly 2000; then the ABI self-test on a device
# with vectors (RING bounds, ringing oneself).
#
# The host side is a single connection on purpose: QEMU 7.2 corrupts its
# heap when a peer id that disconnected connects again soon after (the
# project's server now hands out ids round robin, as QEMU's does).
# All waits are bounded: a dead peer fails the other side, never hangs it.
# Runs on both revisions (revisions=): QEMU's ivshmem-doorbell, and the
# project's ivshmem 2.0 device (ivshmem-server --v2 over vfio-user, QEMU 11).
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=420 revisions=v1,v2
# lincell-vm: host=target/debug/lincell ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --tap --start-timeout 300000 --timeout 30000
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
dev=/dev/ivshmem0
N=2000
rev=${LINCELL_IVSHMEM_REV:-1}
case $rev in
1) rev_text="revision: 1 (QEMU ivshmem)" ;;
*) rev_text="revision: 2 (ivshmem 2.0)" ;;
esac

plan 13
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "$dev appears" wait_for 10 test -c $dev
info=$("$lincell" ivshmem info $dev 2>&1)
id=$(printf '%s\n' "$info" | sed -n 's/^own id: //p')
expect "info: revision $rev, 2 vectors, doorbells, 1 MiB, sections" "$rev_text
vectors: 2
DOORBELL
shared memory: 1048576 bytes" printf '%s\n' "$info"
check "info: own id ($id) is the id the driver logged" sh -c "test -n '$id' && dmesg | grep -q 'ivshmem v$rev: peer $id of '"
expect "guest -> host doorbell and back wakes read(); data verified both ways" "1/1 round trips
data: the responder's payload verified
PASSED" "$lincell" ivshmem pingpong $dev --count 1 --mode read --connect-timeout 120000
expect "guest -> host doorbell and back wakes poll()" "1/1 round trips
PASSED" "$lincell" ivshmem pingpong $dev --count 1 --mode poll --connect-timeout 60000
expect "$N ping-pongs in read mode: none lost or spurious, EAGAIN after, COUNTERS exact" \
"$N/$N round trips
lost: 0 spurious: 0
check ok: nonblocking read after the last round: EAGAIN (nothing pending)
check ok: counters[1] moved by $N, expected $N
check ok: other vectors' counters moved by 0, expected 0
PASSED" "$lincell" ivshmem pingpong $dev --count $N --mode read --connect-timeout 60000
expect "$N ping-pongs in poll mode: none lost or spurious, EAGAIN after, COUNTERS exact" \
"$N/$N round trips
lost: 0 spurious: 0
check ok: nonblocking read after the last round: EAGAIN (nothing pending)
check ok: counters[1] moved by $N, expected $N
PASSED" "$lincell" ivshmem pingpong $dev --count $N --mode poll --stop --connect-timeout 60000
expect "list shows the device with its PCI address, id, 2 vectors, 1 MiB" "ivshmem0   0000:
1 MiB" "$lincell" ivshmem list
expect "counters and peer states (v1 layout) are readable" "vector 0: 
vector 1: 
peer $id: 0" sh -c "$lincell ivshmem counters $dev && $lincell ivshmem states $dev"
expect "wait --nonblock with nothing pending reports EAGAIN (exit 1)" "EAGAIN" \
	sh -c "! $lincell ivshmem wait $dev --nonblock"
# After the host echo has stopped: the self-test sets states (vector 0 to
# every peer) and rings itself.
expect "ABI self-test on a device with vectors passes" "ok
1.." "$LINCELL_ROOT/target/debug/ivshmem-abi-test" $dev
check "rmmod ivshmem" rmmod ivshmem
