#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# cpu_isolate measured by the field's tools: cyclictest, rtla osnoise and
# lincell's own sampler, isolated CPU vs loaded housekeeping CPU, same run
#
# A 2-vCPU guest: CPU 1 isolated (`lincell isolate 1`, with its cpuset
# partition), CPU 0 housekeeping, loaded by `stress-ng --cpu 1` pinned to
# it for the whole run. Then, for 10 s each:
# - cyclictest (rt-tests): one SCHED_FIFO 80 thread, 1 ms interval, mlocked,
#   on CPU 0, then on CPU 1 (started inside the partition by `lincell run
#   --cpus 1 --fifo 80`); rows cpu0/cpu1, columns min/avg/max µs;
# - rtla osnoise top (the kernel's osnoise tracer: a kernel thread per CPU
#   measuring what takes the CPU from it) on CPUs 0 and 1 at once; noise
#   per second of runtime, the largest single noise, and the interrupts,
#   softirqs and threads that caused it;
# - rtla timerlat top (the timerlat tracer: a 1 ms timer per CPU, its
#   latency at the IRQ and at the woken thread) on CPUs 0 and 1;
# - lincell noise (cpu_isolate.ko's sampler, 10 s) on both, without its
#   own load (stress-ng is the load for all three).
# The harness adds cpu0/cpu1 per tool: how much quieter the isolated CPU is
# by each instrument. Under TCG every vCPU is a host thread and the host's
# scheduling dominates the tails: the ratios, and whether the three agree,
# are the figures.
# lincell-vm: cpus=2 timeout=400
# lincell-vm: ratio=cpu0/cpu1
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/debug/lincell
S=10

# cyclic CPU [RUNNER...]: cyclictest on CPU; cyclictest.cpuN.COLUMN=VALUE.
cyclic() {
	cpu=$1; shift
	"$@" cyclictest -a "$cpu" -t1 -p 80 -m -i 1000 -D "$S" -q >"$LINCELL_OUT/cyclictest$cpu.txt" 2>&1 ||
		{ cat "$LINCELL_OUT/cyclictest$cpu.txt"; return 1; }
	awk -v c="$cpu" '/^T: *0 / {
		for (i = 1; i <= NF; i++) if ($i ~ /^(Min|Avg|Max):$/) { k = tolower(substr($i, 1, 3)); v[k] = $(i + 1) }
		printf "cyclictest.cpu%s.min_us=%s\ncyclictest.cpu%s.avg_us=%s\ncyclictest.cpu%s.max_us=%s\n", c, v["min"], c, v["avg"], c, v["max"]
		n++ } END { exit n != 1 }' "$LINCELL_OUT/cyclictest$cpu.txt"
}

# osnoise: rtla osnoise top on CPUs 0 and 1; osnoise.cpuN.COLUMN=VALUE.
osnoise() {
	rtla osnoise top -c 0,1 -d "${S}s" -q >"$LINCELL_OUT/osnoise.txt" 2>&1 ||
		{ cat "$LINCELL_OUT/osnoise.txt"; return 1; }
	# CPU Period Runtime Noise %Avail MaxNoise MaxSingle HW NMI IRQ Softirq Thread
	awk '$1 ~ /^[0-9]+$/ && $2 ~ /^#/ && NF >= 12 {
		r = "osnoise.cpu" $1 "."
		printf "%snoise_us_per_s=%.1f\n", r, $4 * 1e6 / $3
		printf "%smax_single_us=%s\n%sirq=%s\n%ssoftirq=%s\n%sthread=%s\n", r, $7, r, $10, r, $11, r, $12
		n++ } END { exit n != 2 }' "$LINCELL_OUT/osnoise.txt"
}

# timerlat: rtla timerlat top on CPUs 0 and 1 (a timer per CPU, 1 ms; its
# latency seen by the IRQ handler and then by the woken thread: the IRQ
# part is the timer's delivery, which under TCG includes the host's
# scheduling of the vCPU; thread minus IRQ is the guest kernel's own
# scheduling delay); timerlat.cpuN.COLUMN=VALUE.
timerlat() {
	rtla timerlat top -c 0,1 -d "${S}s" -q >"$LINCELL_OUT/timerlat.txt" 2>&1 ||
		{ cat "$LINCELL_OUT/timerlat.txt"; return 1; }
	# CPU COUNT | IRQ cur min avg max | Thread cur min avg max
	awk -F'|' '{ split($1, a, " ") } a[1] ~ /^[0-9]+$/ && a[2] ~ /^#/ && NF >= 3 {
		split($2, irq, " "); split($3, th, " ")
		r = "timerlat.cpu" a[1] "."
		printf "%sirq_avg_us=%s\n%sirq_max_us=%s\n", r, irq[3], r, irq[4]
		printf "%sthread_avg_us=%s\n%sthread_max_us=%s\n", r, th[3], r, th[4]
		n++ } END { exit n != 2 }' "$LINCELL_OUT/timerlat.txt"
}

# sampler: lincell noise on CPUs 0 and 1; lincell.cpuN.COLUMN=VALUE.
sampler() {
	"$L" noise --cpus 0,1 --duration-ms $((S * 1000)) --raw >"$LINCELL_OUT/noise.txt" ||
		{ cat "$LINCELL_OUT/noise.txt"; return 1; }
	awk '$1 ~ /^cpu=/ {
		for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		r = "lincell.cpu" f["cpu"] "."; d = f["duration_ns"]
		printf "%snoise_us_per_s=%.1f\n", r, f["noise_ns"] * 1e6 / d
		printf "%smax_gap_us=%.1f\n%sirqs=%d\n", r, f["max_gap_ns"] / 1e3, r, f["irqs"]
		n++ } END { exit n != 2 }' "$LINCELL_OUT/noise.txt"
}

plan 8
check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
check "isolate CPU 1 (with its cpuset partition)" "$L" isolate 1
stress-ng --cpu 1 --taskset 0 --timeout $((6 * S + 60))s --quiet &
load=$!
results "cyclictest on housekeeping CPU 0, loaded" cyclic 0
results "cyclictest on isolated CPU 1 (lincell run --cpus 1 --fifo 80)" cyclic 1 "$L" run --cpus 1 --fifo 80 --
results "rtla osnoise top on CPUs 0 and 1" osnoise
results "rtla timerlat top on CPUs 0 and 1 (IRQ and thread latency)" timerlat
results "lincell noise on CPUs 0 and 1" sampler
kill $load 2>/dev/null
wait $load 2>/dev/null
check "release CPU 1" "$L" release 1
rmmod cpu_isolate
