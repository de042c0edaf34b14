#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest side of `make bench` (cpu_isolate part): noise on an isolated CPU
# against a housekeeping CPU while the housekeeping CPUs are loaded (busy
# threads, 100 us timer loops, a cross-CPU ping-pong), in the same run, as a
# ratio. Also a control run without isolation (the load then runs on every
# CPU, as nothing is isolated).
#
#   sh bench/cpu-noise.sh [RUNS] [DURATION_MS]
#
# Boot with 2 vCPUs (make bench does): CPU 1 is isolated, CPU 0 is
# housekeeping. Under TCG every vCPU is a host thread, so a guest with more
# busy vCPUs than the host has free cores measures the host's scheduler,
# not the guest's isolation; absolute figures mean little, the ratio is the
# figure.
set -e
ROOT=${LINCELL_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
L=$ROOT/target/debug/lincell
RUNS=${1:-3}
MS=${2:-2000}
ISO=$(($(nproc --all) - 1))

insmod "$ROOT/drivers/cpu-isolate/cpu_isolate.ko"
trap 'rmmod cpu_isolate 2>/dev/null || true' EXIT

# fields CPU FILE: "noise_ns os_ns duration_ns max_gap_ns irqs" of CPU in a
# raw results file; os_ns is interrupt-handler plus other-task time.
fields() {
	awk -v cpu="$1" '$1 == "cpu=" cpu {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		print f["noise_ns"], f["irq_time_ns"] + f["thread_time_ns"], f["duration_ns"], f["max_gap_ns"], f["irqs"] }' "$2"
}

# measure LABEL: one loaded run on CPUs 0 and $ISO; prints one line, and
# appends "noise-ratio os-noise-ratio max-gap-ratio" to /tmp/bench-ratios.txt.
measure() {
	"$L" noise --cpus "0,$ISO" --duration-ms "$MS" --load --raw >/tmp/bench-noise.txt 2>/dev/null
	label=$1
	set -- $(fields 0 /tmp/bench-noise.txt) $(fields "$ISO" /tmp/bench-noise.txt)
	[ $# = 10 ] || { echo "$label: no results"; cat /tmp/bench-noise.txt; return 1; }
	awk -v l="$label" -v iso="$ISO" -v hn="$1" -v hh="$2" -v hd="$3" -v hm="$4" -v hi="$5" \
		-v in_="$6" -v ih="$7" -v id="$8" -v im="$9" -v ii="${10}" 'function r(a, b) { return b > 0 ? a / b : 0 }
	BEGIN {
		hps = hn * 1e9 / hd; hos = hh * 1e9 / hd
		ips = in_ * 1e9 / id; ios = ih * 1e9 / id
		printf "%s: CPU 0 (housekeeping): noise %.1f ms/s (os %.1f), max gap %.2f ms, %d irqs | CPU %d: noise %.1f ms/s (os %.2f), max gap %.2f ms, %d irqs | ratio: noise %.1f, os noise %.1f, max gap %.1f\n",
			l, hps / 1e6, hos / 1e6, hm / 1e6, hi, iso, ips / 1e6, ios / 1e6, im / 1e6, ii, r(hps, ips), r(hos, ios), r(hm, im)
		if (l ~ /^run/) printf "%f %f %f\n", r(hps, ips), r(hos, ios), r(hm, im) >> "/tmp/bench-ratios.txt"
	}'
}

echo "== cpu_isolate noise benchmark: $(nproc --all) vCPUs, $MS ms per run, threshold 5 us, load on"
echo "   (os = time in interrupt handlers and other tasks, from the kernel's accounting; the rest of the noise is the host)"
: >/tmp/bench-ratios.txt
measure "control (nothing isolated)"
"$L" isolate "$ISO" >/dev/null
for r in $(seq 1 "$RUNS"); do
	measure "run $r (CPU $ISO isolated)"
done
"$L" release "$ISO" >/dev/null
# Median of each column.
for c in 1 2 3; do
	awk -v c=$c '{ print $c }' /tmp/bench-ratios.txt | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
done | xargs | awk -v k="$RUNS" '{ printf "== median over %d runs, housekeeping/isolated: noise per second %.1f, OS noise per second %.1f, max gap %.1f\n", k, $1, $2, $3 }'
