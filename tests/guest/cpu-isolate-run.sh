#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Running an RT workload where it was isolated (issue 14): after `lincell
# isolate 3`, cyclictest started from a shell cannot reach CPU 3 (the
# cpuset partition admits only its own cgroup: "Could not set CPU
# affinity"); through `lincell run --cpus 3 --fifo 80` it joins the
# partition, runs on CPU 3 at SCHED_FIFO 80 and measures. `lincell isolate
# 2 -- COMMAND` isolates, runs COMMAND there, releases, and exits with
# COMMAND's status, also when lincell is sent SIGTERM.
# lincell-vm: cpus=4 memory=1G timeout=300 boot=isolate
# lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 9

L=$LINCELL_ROOT/target/debug/lincell
OUT=$LINCELL_OUT
CG=/sys/fs/cgroup
isolated() { sed -n 's/^isolated=//p' /sys/kernel/cpu_isolate/status; }

check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
check "lincell isolate 3 (with its cpuset partition)" sh -c "$L isolate 3 | grep -q 'cpuset partition: $CG/lincell-3 (isolated'"
# The problem: a task outside the partition cannot have CPU 3.
outside() {
	cyclictest -a 3 -t1 -l 10 -i 1000 -q >"$OUT/outside.txt" 2>&1
	grep -q "Could not set CPU affinity" "$OUT/outside.txt" || { cat "$OUT/outside.txt"; return 1; }
}
check "cyclictest -a 3 from a shell is refused CPU 3 (the partition admits only its cgroup)" outside
placed() {
	"$L" run --cpus 3 --fifo 80 -- sh -c 'cat /proc/self/cgroup; grep Cpus_allowed_list /proc/self/status; chrt -p $$' \
		>"$OUT/placed.txt" 2>&1 || { cat "$OUT/placed.txt"; return 1; }
	cat "$OUT/placed.txt"
	grep -qx "0::/lincell-3" "$OUT/placed.txt" && grep -q "Cpus_allowed_list:.*3$" "$OUT/placed.txt" &&
		grep -q "policy: SCHED_FIFO" "$OUT/placed.txt" && grep -q "priority: 80" "$OUT/placed.txt"
}
check "lincell run --cpus 3 --fifo 80: in the partition's cgroup, on CPU 3, SCHED_FIFO 80" placed
measured() {
	"$L" run --cpus 3 --fifo 80 -- cyclictest -a 3 -t1 -p 80 -m -l 2000 -i 500 -q \
		>"$OUT/cyclictest.txt" 2>&1 || { cat "$OUT/cyclictest.txt"; return 1; }
	cat "$OUT/cyclictest.txt"
	! grep -q "Could not set CPU affinity" "$OUT/cyclictest.txt" &&
		grep -q "P:80 I:500 C: *2000 Min:" "$OUT/cyclictest.txt"
}
check "cyclictest -a 3 -p 80 through lincell run: 2000 loops on CPU 3, no affinity warning" measured
sed 's/^/# /' "$OUT/cyclictest.txt"
check "lincell release 3" sh -c "$L release 3 >/dev/null && [ -z \"\$(isolated)\" ] && [ ! -d $CG/lincell-3 ]"

# The common case in one command.
oneshot() {
	"$L" isolate 2 --rr 10 -- sh -c 'grep -q "^0::/lincell-2$" /proc/self/cgroup && chrt -p $$ | grep -q SCHED_RR && echo from-command && exit 7' \
		>"$OUT/oneshot.txt" 2>"$OUT/oneshot.err"
	rc=$?
	cat "$OUT/oneshot.txt" "$OUT/oneshot.err"
	[ $rc = 7 ] || { echo "exit $rc, want 7"; return 1; }
	# Standard output is the command's alone; lincell reports on stderr.
	[ "$(cat "$OUT/oneshot.txt")" = from-command ] || { echo "stdout is not only the command's"; return 1; }
	grep -q '^isolated 2: ' "$OUT/oneshot.err" && grep -q '^released 2; isolated now: none$' "$OUT/oneshot.err" || return 1
	[ -z "$(isolated)" ] && [ ! -d $CG/lincell-2 ]
}
check "lincell isolate 2 --rr 10 -- COMMAND: runs it in the partition, releases, exits with its status (7), its stdout its own" oneshot
killed() {
	"$L" isolate 2 -- sleep 60 >"$OUT/killed.txt" 2>&1 &
	pid=$!
	wait_for 30 sh -c "[ \"\$(sed -n 's/^isolated=//p' /sys/kernel/cpu_isolate/status)\" = 2 ] && pgrep -x sleep" || return 1
	kill -TERM $pid
	wait $pid
	rc=$?
	cat "$OUT/killed.txt"
	[ $rc = 143 ] || { echo "exit $rc, want 143 (128 + SIGTERM)"; return 1; }
	[ -z "$(isolated)" ] && [ ! -d $CG/lincell-2 ]
}
check "SIGTERM to lincell isolate -- COMMAND ends COMMAND and still releases (exit 143)" killed
check "rmmod cpu_isolate" rmmod cpu_isolate
