#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote when things go away under a busy disk (host backend,
# tests/host/vdev-backend.sh stall):
# - unbinding the PCI device while a process holds the disk open and a file
#   system is mounted: the unbind completes, the process gets errors, and
#   binding again brings the disk back;
# - no reconcile work is queued once the unbind started (it could run after
#   the module is gone: seen with the workqueue_queue_work trace event),
#   while binding queues it (the control that the trace matches it);
# - rmmod while the disk is open: the module unloads, no kernel warning;
# - a backend that completes reads without writing their buffers: the
#   reader gets zeros, never bytes of earlier I/O left in the bounce pool
#   (the swiotlb info-leak class, CVE-2022-0854);
# - a backend that stays READY but stops completing requests: with
#   request_timeout_ms=3000 the outstanding reads fail within seconds (the
#   watchdog), not never.
# lincell-vm: ivshmem-doorbell=4:16M cpus=2 timeout=500
# lincell-vm: revisions=v1,v2 ivshmem2=2:16M:0:0x8002 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-backend.sh stall guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
out=$LINCELL_OUT
ko=$(module_path vdev-remote)
pci=$(ivshmem_pci)
bdf=$(basename "$pci")
attached() { dmesg | grep -c 'attached: virtio device id'; }
# v1: driver_override; v2: bound by ID when vdev_remote loads.
bind() { to_vdev_remote "$pci"; }

# The link's reconcile work item: the run function of WorkItemPointer<0>
# for vdev_remote's Link (the fail work is <1>, the watchdog <2>).
tracing=/sys/kernel/tracing
[ -e $tracing/trace ] || mount -t tracefs nodev $tracing 2>/dev/null
trace_start() {
	echo 0 > $tracing/tracing_on
	echo > $tracing/trace
	echo 1 > $tracing/events/workqueue/workqueue_queue_work/enable
	echo 1 > $tracing/tracing_on
}
reconciles_queued() {
	echo 0 > $tracing/tracing_on
	grep -c 'vdev_remote_main4link4Link.*WorkItemPointerKy0_E3run' $tracing/trace
}

plan 16
check "insmod vdev_remote.ko request_timeout_ms=3000" insmod "$ko" request_timeout_ms=3000
bind
check "the disk appears" wait_for 240 test -b /dev/vda
mkdir -p /tmp/mnt
check "ext4 mounted on it" sh -c "mkfs.ext4 -q -F /dev/vda 16M && mount /dev/vda /tmp/mnt && echo x > /tmp/mnt/f"
sleep 600 < /dev/vda &
holder=$!
trace_start
check "unbind with the disk open and mounted completes" timeout 60 sh -c "echo $bdf > /sys/bus/pci/drivers/vdev_remote/unbind"
n=$(reconciles_queued)
check "no reconcile work queued during the unbind ($n)" test "$n" -eq 0
check "the disk is gone" sh -c "! test -b /dev/vda"
check "I/O on the stale mount fails instead of hanging" sh -c "! timeout 30 sh -c 'echo y > /tmp/mnt/g && sync -f /tmp/mnt/g'"
umount -l /tmp/mnt 2>/dev/null
kill $holder 2>/dev/null
before=$(attached)
trace_start
echo "$bdf" > /sys/bus/pci/drivers_probe
check "bind again: the disk comes back" wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ]"
n=$(reconciles_queued)
echo 0 > $tracing/events/workqueue/workqueue_queue_work/enable
check "binding queued the reconcile work ($n times: the trace sees it)" test "$n" -gt 0
sleep 600 < /dev/vda &
holder=$!
check "rmmod with the disk open completes" timeout 60 rmmod vdev_remote
kill $holder 2>/dev/null
check "insmod again" insmod "$ko" request_timeout_ms=3000
bind
check "the disk comes back after reloading" wait_for 120 test -b /dev/vda

# Stale bounce bytes: random data goes through the pool both ways, then a
# backend that claims every read done without writing a byte (skip-data).
head -c 262144 /dev/urandom > /tmp/pattern
check "write 256 KiB of random data and read it back" sh -c "
	dd if=/tmp/pattern of=/dev/vda bs=64k seek=32 oflag=direct conv=notrunc,nocreat 2>/dev/null &&
	dd if=/dev/vda of=/tmp/back bs=64k skip=32 count=4 iflag=direct 2>/dev/null &&
	cmp /tmp/pattern /tmp/back"
before=$(attached)
touch "$out/skip-now"
wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ]"
timeout 60 dd if=/dev/vda of=/tmp/read bs=64k skip=512 count=4 iflag=direct 2>/dev/null
check "a read the backend never wrote into gives zeros, not earlier I/O's bytes ($(od -An -tx1 -N8 /tmp/read 2>/dev/null | tr -d ' '))" \
	cmp -s -n 262144 /tmp/read /dev/zero

# A backend that stops answering but stays READY.
before=$(attached)
touch "$out/stall-now"
wait_for 120 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ]"
start=$(date +%s)
timeout 120 sh -c "for i in \$(seq 1 200); do dd if=/dev/vda of=/dev/null bs=4k count=1 skip=\$i iflag=direct 2>/dev/null || exit 1; done"
rc=$? took=$(($(date +%s) - start))
check "reads from a stalled backend fail after ${took}s (watchdog), not hang" test $rc -eq 1
expect "the kernel says the backend completed nothing" "completed nothing for" dmesg
