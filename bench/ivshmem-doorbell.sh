#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make bench`: ivshmem doorbell round-trip latency, guest <-> host.
#
# Starts the project's ivshmem-server (1 MiB, 2 vectors) on a private
# socket and a host `lincell ivshmem echo` peer (one connection for the
# whole run), boots one TCG guest with an ivshmem-doorbell device, and runs
# COUNT (default 10000) ping-pongs in each mode from the guest:
#   read  guest waits for the doorbell in a blocking read(2)
#   poll  guest waits in poll(2), then read(2)
#   spin  no doorbells: both sides spin on a sequence counter in shared
#         memory (the polling baseline)
# and prints p50/p99 per mode and the read/spin and poll/spin ratios of the
# same run. Release builds of lincell are used (spinning in a debug build
# measures the debug build).
#
#   KDIR=<kernel build> LINCELL_VM=<lincell-vm> sh bench/ivshmem-doorbell.sh [COUNT]
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-10000}
. "$root/bench/lib.sh"
bench_init bench-ivshmem

start_server "$sock" "$work" 1M 2

# QEMU must connect before the host peer: the guest then learns about the
# host peer once, at start-up (peers joining later are fine too; the
# pingpong warm-up repeats its first doorbell until it is answered).
echo "==> booting a guest (TCG, 2 vCPUs) and running $n round trips per mode"
"$lincell" ivshmem echo --socket "$sock" --start-timeout 300000 --timeout 30000 >"$work/echo.txt" 2>&1 &
pids="$pids $!"

"$vm" --kdir "$kdir" run --cpus 2 --timeout 900 --rwdir "$out" \
	"--qemu-opts=-chardev socket,path=$sock,id=lincellivs -device ivshmem-doorbell,chardev=lincellivs,vectors=2" \
	-- sh "$root/bench/guest/ivshmem-doorbell.sh" "$lincell" "$out" "$n" >"$work/guest.txt" 2>&1
rc=$?
if [ $rc != 0 ]; then
	echo "the guest failed (exit $rc):"
	tail -30 "$work/guest.txt"
	echo "host echo:"
	cat "$work/echo.txt"
	exit 1
fi

# field MODE NAME: the value after NAME on the latency line of MODE.
field() { sed -n "s/.*latency_us:.* $2 \([0-9.]*\) .*/\1/p" "$out/$1.txt"; }
echo
echo "ivshmem doorbell round trip, guest <-> host echo peer, $n iterations per mode (µs)"
printf '%-6s %10s %10s %10s %10s\n' mode p50 p99 p99.9 max
for m in read poll spin; do
	printf '%-6s %10s %10s %10s %10s\n' $m "$(field $m p50)" "$(field $m p99)" "$(field $m p99.9)" "$(field $m max)"
done
awk -v r50="$(field read p50)" -v r99="$(field read p99)" -v p50="$(field poll p50)" \
	-v p99="$(field poll p99)" -v s50="$(field spin p50)" -v s99="$(field spin p99)" 'BEGIN {
	if (s50 <= 0 || s99 <= 0) { print "no spin baseline"; exit 1 }
	printf "read/spin: p50 %.1fx, p99 %.1fx\n", r50 / s50, r99 / s99
	printf "poll/spin: p50 %.1fx, p99 %.1fx\n", p50 / s50, p99 / s99
}'
grep -h "^lost:\|^check\|PASSED\|FAILED" "$out"/read.txt "$out"/poll.txt "$out"/spin.txt | sort | uniq -c
tail -1 "$work/echo.txt"
