#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# cpu_isolate: noise on an isolated CPU vs a loaded housekeeping CPU, same run
#
# A 2-vCPU guest: CPU 1 isolated (`lincell isolate 1`, with its cpuset
# partition), CPU 0 housekeeping. `lincell noise --load` samples both for
# 2 s while the housekeeping CPUs are loaded (busy threads, 100 us timer
# loops, a cross-CPU ping-pong); 3 runs, and a control run first with
# nothing isolated (the load then runs on every CPU). Prints, per run and
# CPU, the noise per second, the part of it the OS caused (interrupt
# handlers and other tasks, from the kernel's accounting; the rest is the
# host), the largest gap and the interrupts taken; the harness adds the
# housekeeping/isolated ratios and their medians over the 3 runs. Under TCG
# every vCPU is a host thread: absolute figures mean little, the ratio is
# the figure.
# lincell-vm: cpus=2 timeout=300
# lincell-vm: ratio=cpu0/cpu1
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/debug/lincell
RUNS=3
MS=2000
ISO=$(($(nproc --all) - 1))

# measure GROUP: one loaded run on CPUs 0 and $ISO; GROUP.cpuN.COLUMN=VALUE
# for both, from the sampler's raw results.
measure() {
	"$L" noise --cpus "0,$ISO" --duration-ms "$MS" --load --raw >"$LINCELL_OUT/$1.txt" ||
		return 1
	awk -v g="$1" '$1 ~ /^cpu=/ {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		r = g ".cpu" f["cpu"] "."; d = f["duration_ns"]
		printf "%snoise_ms_per_s=%.1f\n", r, f["noise_ns"] * 1e3 / d
		printf "%sos_ms_per_s=%.2f\n", r, (f["irq_time_ns"] + f["thread_time_ns"]) * 1e3 / d
		printf "%smax_gap_ms=%.2f\n", r, f["max_gap_ns"] / 1e6
		printf "%sirqs=%d\n", r, f["irqs"]
		n++ } END { exit n != 2 }' "$LINCELL_OUT/$1.txt"
}

plan $((RUNS + 4))
check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
results "control run, nothing isolated, ${MS} ms" measure control
check "isolate $ISO" "$L" isolate "$ISO"
for r in $(seq 1 "$RUNS"); do
	results "run $r, CPU $ISO isolated, ${MS} ms" measure "run$r"
done
check "release $ISO" "$L" release "$ISO"
rmmod cpu_isolate
