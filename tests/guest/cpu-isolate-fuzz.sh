#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# cpu_isolate.ko's sysfs files against random input while CPUs go offline
# and online behind its back (issue 11): cpu-isolate-fuzz makes 15000 random
# single writes to every writable file (grammar-based commands and raw
# bytes) and reads the reports from 2 threads, while a third thread
# hot-plugs CPUs 1-3. After its clean-up (every CPU online, `release all`)
# the machine must be exactly as before, the module must still isolate and
# release, and unload. The harness fails the run on any kernel splat.
# FUZZ_WRITES/FUZZ_SECONDS change the bound: the soak benchmark
# (bench/soak-cpu-isolate-fuzz.sh) sources this script and reads the
# figures it prints (fuzz.writes=N ...).
# lincell-vm: arch=x86_64,arm64 cpus=4 memory=1G timeout=420 boot=isolate
# lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3
. "$LINCELL_ROOT/virtme/guest-lib.sh"
. "$LINCELL_ROOT/tests/guest/cpu-isolate.lib"
plan 6

D=/sys/kernel/cpu_isolate
OUT=$LINCELL_OUT
fuzz=$LINCELL_ROOT/target/debug/cpu-isolate-fuzz
FUZZ_WRITES=${FUZZ_WRITES:-15000} FUZZ_SECONDS=${FUZZ_SECONDS:-40}

check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
snapshot >"$OUT/before"

# Bounded: 15000 writes or 40 s by default, whichever comes first (each accepted
# isolation steers every IRQ and kernel thread, and an offline one unplugs
# CPUs, which takes long under TCG).
run_fuzz() {
	"$fuzz" --writes "$FUZZ_WRITES" --seconds "$FUZZ_SECONDS" --threads 2 --hotplug 1-3 --seed 11 \
		--log "$OUT/fuzz-log.txt" \
		>"$OUT/fuzz.txt" 2>&1 || { cat "$OUT/fuzz.txt"; return 1; }
	sed 's/^/# /' "$OUT/fuzz.txt"
	# Both paths ran: some writes were accepted and some refused.
	awk '/^writes=/ { split($1, w, "="); split($2, a, "="); split($4, h, "=")
	     ok = w[2] >= 300 && a[2] > 0 && a[2] < w[2] && h[2] > 0 }
	     END { exit !ok }' "$OUT/fuzz.txt"
}
check "$FUZZ_WRITES random writes (at most $FUZZ_SECONDS s) during CPU hot-plug; clean-up released everything" run_fuzz
sed -n 's/^writes=/&/p' "$OUT/fuzz.txt" | tr ' ' '\n' | sed -n 's/^\([a-z]*\)=\([0-9.]*\)$/fuzz.\1=\2/p'
snapshot >"$OUT/after"
# On a difference: the accepted writes and hot-plug operations, to replay.
same_or_log() {
	same_state "$@" || {
		# Each line ends with every IRQ's affinity: print those where it
		# changed, with the line before.
		awk -F' [|] ' '$2 != last { print prev; print; last = $2 } { prev = $0 }' "$OUT/fuzz-log.txt" | head -300
		return 1
	}
}
check "IRQ and kernel-thread affinities and online CPUs are as before" same_or_log "$OUT/before" "$OUT/after"
still_works() {
	[ "$(wr $D/isolate "2-3")" = OK ] && grep -qx "isolated=2-3" $D/status &&
		[ "$(wr $D/release "2-3")" = OK ] && grep -qx "isolated=" $D/status
}
check "the module still isolates and releases" still_works
check "rmmod cpu_isolate" rmmod cpu_isolate
snapshot >"$OUT/after-rmmod"
check "unloading changed nothing more" same_state "$OUT/before" "$OUT/after-rmmod"
