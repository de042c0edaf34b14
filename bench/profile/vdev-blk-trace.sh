#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Where a 1 MiB request's time goes on the vdev-remote disk: a trace of one
# fio job per queue depth with the kernel's block and interrupt events
#
# Run by hand (not part of make bench), one guest like bench/vdev-blk.sh:
#   target/debug/lincell-vm --kdir KDIR scenario bench/profile/vdev-blk-trace.sh
# For each JOB in PROFILE_JOBS (sections of bench/fio/vdev-blk.fio), fio
# runs it on the remote disk while tracefs records block_rq_issue,
# block_rq_complete and irq_handler_entry; the traces land in
# LINCELL_OUT/trace-JOB.txt, /proc/interrupts in interrupts.txt, and
# bench/profile/trace-summary.py OUT_DIR prints per job the request
# latency percentiles, interrupts per request and the gaps between
# completions (Documentation/performance.md).
# lincell-vm: ivshmem-doorbell=4:32M disk=256M cpus=2 timeout=600
# lincell-vm: host=LINCELL=target/release/lincell sh tests/host/vdev-backend.sh serve guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
JOBS=${PROFILE_JOBS:-seq-read-1m-qd1-j1 seq-read-1m-qd16-j1 seq-write-1m-qd16-j1}
T=/sys/kernel/tracing

remote_disk() {
	for b in /sys/block/vd*; do
		readlink -f "$b/device" | grep -q "/$(basename "$pci")/" && echo "/dev/${b##*/}" && return 0
	done
	return 1
}

# trace_job JOB: fio's JOB on the remote disk under the tracer.
trace_job() {
	echo 0 >$T/tracing_on && echo >$T/trace && echo 16384 >$T/buffer_size_kb
	for e in block/block_rq_issue block/block_rq_complete irq/irq_handler_entry; do
		echo 1 >"$T/events/$e/enable" || return 1
	done
	echo 1 >$T/tracing_on
	FIO_DISK=$(remote_disk) FIO_OFFSET=$((128 << 20)) fio --section="$1" --output-format=json \
		--output="$LINCELL_OUT/fio-$1.json" "$LINCELL_ROOT/bench/fio/vdev-blk.fio" || return 1
	echo 0 >$T/tracing_on
	cat $T/trace >"$LINCELL_OUT/trace-$1.txt"
}

plan $((3 + $(echo $JOBS | wc -w)))
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(pci_devices 1af4 1110 | head -1)
check "the ivshmem device goes to vdev_remote" to_vdev_remote "$pci"
check "the remote disk appears" wait_for 60 remote_disk
mountpoint -q $T || mount -t tracefs tracefs $T
for j in $JOBS; do check "traced $j" trace_job "$j"; done
grep -E 'vdev|ivshmem' /proc/interrupts >"$LINCELL_OUT/interrupts.txt"
