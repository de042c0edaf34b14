#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `lincell latency` between two guest cells (issue 14): guest a runs the
# responder (`lincell latency --respond`, SCHED_FIFO) on its ivshmem.ko
# device, guest b the RT loop, through message channels in the guests'
# output sections (the block run's in the shared R/W section): 1000 round trips at 1 ms in each wait mode (spin, block,
# spin-then-block) and 100 000 back-to-back, every answer and sequence
# number checked, none lost; then a's second responder is killed
# mid-stream (SIGKILL once its session started) and b's loop exits 1 with
# "no answer" within its timeout instead of hanging. Both guests have one
# vCPU, so every wake-up of the other side is a real interrupt.
# lincell-vm: guests=a,b ivshmem-doorbell=2:1M cpus=1 timeout=600 boot=pair revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/debug/lincell
OUT=$LINCELL_OUT

if [ "$LINCELL_GUEST" = a ]; then plan 4; else plan 8; fi
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0

if [ "$LINCELL_GUEST" = a ]; then
	check "a's responder answers b's 4 runs" "$L" latency /dev/ivshmem0 --respond --sessions 4 --priority 50 \
		--connect-timeout-ms 300000
	killed() {
		"$L" latency /dev/ivshmem0 --respond --priority 50 --connect-timeout-ms 300000 2>"$OUT/responder2.txt" &
		_pid=$!
		wait_for 300 grep -q "initiator peer" "$OUT/responder2.txt" || { kill -KILL $_pid; return 1; }
		sleep 1
		kill -KILL $_pid && wait $_pid
		[ $? = 137 ]
	}
	check "a second responder, killed (SIGKILL) mid-stream" killed
else
	latency_modes guests- 1000 " to guest a"
	results "100000 back-to-back round trips to guest a, every sequence number checked" \
		latency_run guests-flood --mode spin-block --count 100000 --interval-us 1 --priority 0
	check "guest a's responder killed mid-stream: exit 1 with 'no answer', no hang" \
		latency_dies --count 1000000 --priority 0
fi
