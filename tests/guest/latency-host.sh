#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `lincell latency` (issue 14): the guest cell's RT loop against a host
# cell's responder over a message channel (rings in each side's output
# section; the block run's in the R/W section), in each wait mode (spin, block, spin-then-block: every round trip answered,
# none lost), 100 000 back-to-back round trips with every sequence number
# checked, the JSON report's schema and a well-formed SVG plot, the loop on
# a CPU isolated by cpu_isolate with the doorbell's interrupts kept on it
# (`lincell isolate 1 --keep-irqs-of /dev/ivshmem0 -- lincell latency
# --cpu 1`, the IRQs' affinity checked during and restored after), the two compared in one command (`--compare-isolated 1
# --load`: housekeeping CPU 0 loaded by stress-ng, then CPU 1 isolated and
# released), and a responder killed mid-stream: the initiator reports the
# missing answer and exits 1 within its timeout instead of hanging.
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=600 revisions=v1,v2
# lincell-vm: host=sh tests/host/latency-responder.sh guest 7
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 11

L=$LINCELL_ROOT/target/debug/lincell
OUT=$LINCELL_OUT
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "the device node appears" wait_for 10 test -c /dev/ivshmem0

latency_modes "" 2000 ""
results "100000 back-to-back round trips, every sequence number checked" \
	latency_run flood --mode spin-block --count 100000 --interval-us 1 --priority 0 --plot "$OUT/flood.svg"
check "the plot is well-formed SVG" python3 -c "
import sys, xml.dom.minidom
d = xml.dom.minidom.parse('$OUT/flood.svg')
assert d.documentElement.tagName == 'svg' and d.getElementsByTagName('rect')"
# The device's interrupts, "IRQ cpulist" each, from /proc.
DEV_IRQS='for i in $(ls /sys/class/misc/ivshmem0/device/msi_irqs 2>/dev/null || cat /sys/class/misc/ivshmem0/device/irq); do
	echo "$i $(cat /proc/irq/$i/smp_affinity_list)"; done'
dev_irqs() { eval "$DEV_IRQS"; }
isolated() {
	insmod "$(module_path cpu-isolate)" || return 1
	dev_irqs >"$OUT/irqs-before"
	# Inside the isolation: the doorbell's interrupts are on CPU 1.
	"$L" isolate 1 --keep-irqs-of /dev/ivshmem0 -- sh -c "$DEV_IRQS"' >"$0/irqs-during"
		exec "$1" latency /dev/ivshmem0 --json --cpu 1 --priority 80 --count 2000 --connect-timeout-ms 240000' \
		"$OUT" "$L" >"$OUT/isolated.json" 2>&1
	rc=$?
	rmmod cpu_isolate
	dev_irqs >"$OUT/irqs-after"
	[ $rc = 0 ] || { cat "$OUT/isolated.json"; return 1; }
	grep -q '"received": 2000' "$OUT/isolated.json" && grep -q '"cpu": 1' "$OUT/isolated.json" || return 1
	awk '$2 != 1 { bad = 1 } END { exit bad || NR == 0 }' "$OUT/irqs-during" ||
		{ echo "the device's IRQs were not on CPU 1:"; cat "$OUT/irqs-during"; return 1; }
	diff "$OUT/irqs-before" "$OUT/irqs-after" || { echo "not restored"; return 1; }
}
check "on CPU 1 isolated by cpu_isolate with the doorbell IRQs kept on it (--keep-irqs-of), restored after" isolated
# The product in one command: housekeeping CPU 0 against CPU 1 isolated,
# stress-ng on CPU 0 throughout; CPU 1 is released afterwards.
compared() {
	insmod "$(module_path cpu-isolate)" || return 1
	"$L" latency /dev/ivshmem0 --compare-isolated 1 --load --count 1000 --priority 80 \
		--connect-timeout-ms 240000 --plot "$OUT/cmp.svg" >"$OUT/compare.txt" 2>&1
	rc=$?
	released=$(sed -n 's/^isolated=//p' /sys/kernel/cpu_isolate/status)
	rmmod cpu_isolate
	sed 's/^/# /' "$OUT/compare.txt"
	[ $rc = 0 ] && [ -z "$released" ] &&
		grep -q '^RT loop across cells: housekeeping CPU 0 vs CPU 1 isolated by cpu_isolate, stress-ng on every CPU but 1$' "$OUT/compare.txt" &&
		grep -Eq '^round trips +1000\.0 +1000\.0' "$OUT/compare.txt" &&
		grep -Eq '^rtt p99 µs +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$OUT/compare.txt" &&
		python3 -c "
import xml.dom.minidom
for t in ('housekeeping', 'isolated'):
    assert xml.dom.minidom.parse('$OUT/cmp-%s.svg' % t).documentElement.tagName == 'svg'"
}
check "--compare-isolated 1 --load: both runs, the table, both plots, CPU 1 released" compared
# The host's second responder is killed once we say so.
dies() { touch "$OUT/kill-now" && latency_dies --count 100000 --priority 0; }
check "a responder killed mid-stream: exit 1 with 'no answer', no hang" dies
