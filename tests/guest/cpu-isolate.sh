#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# cpu_isolate.ko in a 4-CPU guest: isolate 2-3 (IRQs and kernel threads
# steered off, checked from /proc, not from the module's own report),
# release restores the exact snapshot, offline hand-off takes 2-3 offline and
# back, an isolation keeps an interrupt on its CPU (irqs=) and release
# restores it, bad requests get their documented errno and change nothing, the
# sampler measures isolated and housekeeping CPUs, and rmmod with isolation
# active restores everything.
# Runs on the x86_64 guest and the arm64 board.
# lincell-vm: arch=x86_64,arm64 cpus=4 memory=1G timeout=420 boot=isolate
# lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3
. "$LINCELL_ROOT/virtme/guest-lib.sh"
. "$LINCELL_ROOT/tests/guest/cpu-isolate.lib"
plan 45

D=/sys/kernel/cpu_isolate
OUT=$LINCELL_OUT

# expect FILE TEXT ERRNO: the write gets ERRNO.
expect() {
	got=$(wr "$1" "$2")
	[ "$got" = "$3" ] || { echo "write '$2' to $1: got $got, want $3"; return 1; }
}

# awk: hits(cpulist) is 1 if the list contains CPU 2 or 3.
HITS='function hits(l,  n, i, r, a) {
	n = split(l, r, ",")
	for (i = 1; i <= n; i++) {
		if (split(r[i], a, "-") == 1) a[2] = a[1]
		if ((a[1] + 0 <= 2 && 2 <= a[2] + 0) || (a[1] + 0 <= 3 && 3 <= a[2] + 0)) return 1
	}
	return 0
}'

# irq_states: writes "irq state" lines from the module's report to a file
# and prints its name; state is managed, unmovable, pending (a move the
# chip defers to the next interrupt) or moved.
irq_states() {
	awk 'BEGIN { print "- -" } { split($1, a, "="); split($2, b, "="); s = b[2]; if ($NF == "pending") s = "pending"; print a[2], s }' \
		$D/irqs >"$OUT/irq-states"
	echo "$OUT/irq-states"
}

# Makes interrupts happen on every device we can reach, so moves the chip
# defers to the next interrupt (x86 MSI/IO-APIC without remapping) happen.
activity() {
	cat /proc/interrupts >/dev/null
	find "$LINCELL_ROOT" -maxdepth 3 -type f 2>/dev/null | head -200 | xargs cat >/dev/null 2>&1
	echo activity >/dev/console
	sleep 1
}

# The boot this test asks for (append= above): on x86_64, a PREEMPT_RT
# kernel with the tick and RCU callbacks off the CPUs it isolates. The
# arm64 board's kernel is not RT (the other locking flavour) and has no
# NO_HZ_FULL: there the same isolation runs with the tick on.
if [ "$(uname -m)" = x86_64 ]; then
	check "the kernel is PREEMPT_RT" sh -c "uname -v | grep -q PREEMPT_RT"
	check "booted with nohz_full=2-3 and rcu_nocbs=2-3" sh -c \
		"test \"\$(cat /sys/devices/system/cpu/nohz_full)\" = 2-3 && grep -qw rcu_nocbs=2-3 /proc/cmdline"
else
	check "the kernel is not PREEMPT_RT ($(uname -m): classic spinlocks)" sh -c "! uname -v | grep -q PREEMPT_RT"
	ok "booted with nohz_full=2-3 and rcu_nocbs=2-3 # SKIP no NO_HZ_FULL in the $(uname -m) test kernel"
fi
check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
check "sysfs interface is there" test -w $D/isolate -a -w $D/release -a -r $D/status -a -r $D/sampler/results
snapshot >"$OUT/before"

# --- steer mode -------------------------------------------------------------
check "isolate 2-3" expect $D/isolate "2-3" OK
check "status reports 2-3 isolated, 0-1 housekeeping" \
	sh -c "grep -qx isolated=2-3 $D/status && grep -qx housekeeping=0-1 $D/status && grep -qx offline= $D/status"

irq_affinity_off() {
	grep -H . /proc/irq/*/smp_affinity_list | sed 's|/proc/irq/\([0-9]*\)/smp_affinity_list:|\1 |' |
		awk "$HITS"' NR == FNR { st[$1] = $2; next }
		     hits($2) && st[$1] != "managed" && st[$1] != "unmovable" { bad = bad " " $1 }
		     END { if (bad != "") { print "IRQs still allowed on 2-3:" bad; exit 1 } }' \
		"$(irq_states)" -
}
check "every movable IRQ's affinity excludes 2-3" irq_affinity_off

activity
irq_effective_off() {
	# A deferred move (IRQCHIP_MOVE_DEFERRED) completes at the IRQ's next
	# interrupt; the module reports it "pending". Anything else still
	# routed to 2-3 is a failure.
	grep -H . /proc/irq/*/effective_affinity_list | sed 's|/proc/irq/\([0-9]*\)/effective_affinity_list:|\1 |' |
		awk "$HITS"' NR == FNR { st[$1] = $2; next }
		     !hits($2) || st[$1] == "managed" || st[$1] == "unmovable" { next }
		     st[$1] == "pending" { deferred++; next }
		     { bad = bad " " $1 "(" $2 ")" }
		     END { print "# " deferred + 0 " idle IRQs move at their next interrupt (deferred by the chip)"
		           if (bad != "") { print "IRQs still routed to 2-3:" bad; exit 1 } }' \
		"$(irq_states)" -
}
check "every movable IRQ's effective affinity excludes 2-3 (or its move is pending)" irq_effective_off
moved_for_real() {
	n=$(awk '/state=moved/ && $0 !~ / pending$/ { c++ } END { print c + 0 }' $D/irqs)
	[ "$n" -gt 0 ] || { echo "no IRQ was moved"; cat $D/irqs; return 1; }
}
check "some IRQs were moved and already route to 0-1" moved_for_real
# For the kept-interrupt checks: one IRQ the module can move, one it cannot.
KIRQ=$(awk '/state=moved/ && $0 !~ / pending$/ { split($1, a, "="); print a[2]; exit }' $D/irqs)
UIRQ=$(awk '/state=unmovable/ { split($1, a, "="); print a[2]; exit }' $D/irqs)

kthreads_off() {
	kthread_affinities | awk "$HITS"' hits($2) { bad = bad " " $1 "=" $2 }
		END { if (bad != "") { print "kernel threads still allowed on 2-3:" bad; exit 1 } }'
}
check "every movable kernel thread's affinity excludes 2-3" kthreads_off

cat $D/status >"$OUT/status-iso"
check "isolating 3 again is EBUSY" expect $D/isolate "3" EBUSY
check "releasing part of it (2) is EINVAL" expect $D/release "2" EINVAL
check "releasing 1 (never isolated) is ENOENT" expect $D/release "1" ENOENT
check "refused requests left the isolation alone" diff "$OUT/status-iso" $D/status
check "last_error says why" sh -c "grep -q 'release 1: none of these CPUs is isolated (errno 2)' $D/last_error"

check "release 2-3" expect $D/release "2-3" OK
snapshot >"$OUT/after-steer"
check "release restored the exact snapshot (IRQs, kthreads, online)" same_state "$OUT/before" "$OUT/after-steer"
check "nothing is isolated any more" sh -c "grep -qx isolated= $D/status && grep -qx regions=0 $D/status"

# --- offline hand-off -------------------------------------------------------
check "isolate 2-3 offline" expect $D/isolate "2-3 offline" OK
check "CPUs 2 and 3 are offline" sh -c "test \$(cat /sys/devices/system/cpu/cpu2/online) = 0 && test \$(cat /sys/devices/system/cpu/cpu3/online) = 0 && grep -qx offline=2-3 $D/status"
back_online() { expect $D/release 2-3 OK && test "$(cat /sys/devices/system/cpu/online)" = 0-3; }
check "release brings them back online" back_online
snapshot >"$OUT/after-offline"
check "offline release restored the exact snapshot" same_state "$OUT/before" "$OUT/after-offline"

# --- an interrupt kept on the isolated CPU (an RT task's own device) ---------
kept() {
	expect $D/isolate "2 irqs=$KIRQ" OK || return 1
	aff=$(cat /proc/irq/$KIRQ/smp_affinity_list)
	[ "$aff" = 2 ] || { echo "IRQ $KIRQ affinity $aff, want 2"; return 1; }
	grep -q "^irq=$KIRQ state=kept original=" $D/irqs && grep -qx irqs_kept=1 $D/status &&
		grep -qx "2 steer irqs=$KIRQ" $D/isolate || { cat $D/irqs $D/status $D/isolate; return 1; }
}
check "isolate 2 irqs=$KIRQ: IRQ $KIRQ delivered on CPU 2, reported kept" kept
check "keeping IRQ $KIRQ for another isolation is EBUSY" expect $D/isolate "3 irqs=$KIRQ" EBUSY
check "keeping an IRQ that does not exist is ENOENT" expect $D/isolate "3 irqs=999999" ENOENT
if [ -n "$UIRQ" ]; then
	check "keeping unmovable IRQ $UIRQ is EPERM" expect $D/isolate "3 irqs=$UIRQ" EPERM
else
	ok "keeping an unmovable IRQ is EPERM # SKIP no unmovable IRQ touched the isolated CPUs"
fi
bad_keeps() {
	for s in "3 offline irqs=$KIRQ" "3 irqs=" "3 irqs=x" "3 irqs=1,1" "3 irqs=$KIRQ steer"; do
		expect $D/isolate "$s" EINVAL || return 1
	done
}
check "malformed irqs= (and irqs= with offline) are EINVAL" bad_keeps
check "release 2" expect $D/release "2" OK
snapshot >"$OUT/after-kept"
check "release restored IRQ $KIRQ and everything else exactly" same_state "$OUT/before" "$OUT/after-kept"

# --- bad requests from a clean state ----------------------------------------
cat $D/status >"$OUT/status-clean"
# Only a CPU that cannot be hot-unplugged is refused offline mode: x86's
# boot CPU; arm64 can take CPU 0 offline too (it has cpu0/online).
if [ -e /sys/devices/system/cpu/cpu0/online ]; then
	ok "'0 offline' (boot CPU) is EPERM # SKIP CPU 0 can be hot-unplugged on $(uname -m)"
else
	check "'0 offline' (boot CPU) is EPERM" expect $D/isolate "0 offline" EPERM
fi
check "'0-3' (no housekeeping CPU left) is ENOSPC" expect $D/isolate "0-3" ENOSPC
check "'9' (not present) is ENODEV" expect $D/isolate "9" ENODEV
bad_strings() {
	for s in "garbage" "2-" "3-2" "2,,3" "-1" "0x2" "99999999999" "2-3 sideways" " " "2-3:1/2"; do
		expect $D/isolate "$s" EINVAL || return 1
	done
}
check "garbage strings are EINVAL" bad_strings
unchanged() { diff "$OUT/status-clean" $D/status && test -z "$(cat $D/isolate)"; }
check "bad requests changed nothing" unchanged
snapshot >"$OUT/after-bad"
check "bad requests left IRQs, threads and CPUs untouched" same_state "$OUT/before" "$OUT/after-bad"

# --- sampler ----------------------------------------------------------------
wait_done() { wait_for 60 sh -c "grep -qxE 'done|stopped' $D/sampler/control"; }
plausible() {
	r=$D/sampler/results
	cat $r
	for cpu in 0 2 3; do
		line=$(grep "^cpu=$cpu " $r) || { echo "no result for CPU $cpu"; return 1; }
		echo "$line" | awk -v want=400000000 '{
			for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
			n = split(f["hist"], h, ","); s = 0; for (i = 1; i <= n; i++) s += h[i]
			if (f["complete"] != 1) { print "incomplete"; exit 1 }
			if (f["duration_ns"] + 0 < want || f["duration_ns"] + 0 > 20 * want) { print "duration " f["duration_ns"]; exit 1 }
			if (f["loops"] + 0 < 100) { print "loops " f["loops"]; exit 1 }
			if (f["max_gap_ns"] + 0 <= 0) { print "max gap 0"; exit 1 }
			if (s != f["gaps"] + 0) { print "histogram sums to " s ", gaps " f["gaps"]; exit 1 }
			if (f["noise_ns"] + 0 > f["duration_ns"] + 0) { print "more noise than time"; exit 1 }
			# The tick alone interrupts a busy CPU; IRQ time accounting sees it.
			if (f["irqs"] + 0 <= 0 || f["irq_time_ns"] + 0 <= 0) { print "no interrupt seen"; exit 1 }
			if (f["irq_time_ns"] + f["thread_time_ns"] > f["duration_ns"] + 0) { print "OS time exceeds the run"; exit 1 }
		}' || return 1
	done
}
check "isolate 2-3 for the sampler" expect $D/isolate "2-3" OK
settings() { expect $D/sampler/cpus 0,2-3 OK && expect $D/sampler/duration_ms 500 OK && test "$(cat $D/sampler/cpus)" = 0,2-3; }
check "sampler settings accepted" settings
check "sampler runs on 2-3 and housekeeping CPU 0" expect $D/sampler/control start OK
wait_done
check "sampler results are plausible (duration, loops, gaps = histogram, interrupts seen)" plausible
bad_settings() {
	expect $D/sampler/duration_ms 0 EINVAL && expect $D/sampler/duration_ms 60001 EINVAL &&
		expect $D/sampler/threshold_ns abc EINVAL && expect $D/sampler/control go EINVAL &&
		expect $D/sampler/cpus 3-2 EINVAL
}
check "bad sampler settings are EINVAL" bad_settings
stop_early() {
	expect $D/sampler/duration_ms 20000 OK && expect $D/sampler/control start OK &&
		expect $D/sampler/control start EBUSY && expect $D/sampler/control stop OK &&
		grep -qx stopped $D/sampler/control && grep -q ' complete=0 ' $D/sampler/results
}
check "a running sampler is EBUSY to start again, and stops early on request" stop_early
absent() { expect $D/sampler/cpus 9 OK && expect $D/sampler/control start ENODEV; }
check "sampler on absent CPU 9 is ENODEV" absent

# --- unload with isolation active --------------------------------------------
check "isolate 1 offline on top of 2-3" expect $D/isolate "1 offline" OK
check "rmmod with isolation active" rmmod cpu_isolate
snapshot >"$OUT/after-rmmod"
check "rmmod restored the exact snapshot and CPU 1" same_state "$OUT/before" "$OUT/after-rmmod"
