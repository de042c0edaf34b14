#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The CLI on top of cpu_isolate.ko: `lincell isolate` also creates a cgroup v2
# cpuset isolated partition (user tasks leave the CPUs), `status` shows both,
# `noise` prints the sampler's table (also under load), refusals carry the
# module's reason and errno, `release` removes the partition and the module
# restores its snapshot.
# lincell-vm: cpus=4 memory=1G timeout=300 boot=isolate
# lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 15

L=$LINCELL_ROOT/target/debug/lincell
CG=/sys/fs/cgroup
OUT=$LINCELL_OUT
allowed() { sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status; }

check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
check "cgroup v2 with cpuset is mounted" grep -qw cpuset $CG/cgroup.controllers
before=$(allowed)

isolate() {
	"$L" isolate 2-3 >"$OUT/isolate.txt" 2>&1 || { cat "$OUT/isolate.txt"; return 1; }
	cat "$OUT/isolate.txt"
	grep -q "cpuset partition: $CG/lincell-2-3 (isolated" "$OUT/isolate.txt"
}
check "lincell isolate 2-3 isolates and creates the cpuset partition" isolate
check "the kernel lists 2-3 as isolated by cpusets" grep -qx 2-3 $CG/cpuset.cpus.isolated
check "user tasks (this shell) are kept off 2-3" test "$(allowed)" = 0-1
status() {
	"$L" status >"$OUT/status.txt" 2>&1 || return 1
	cat "$OUT/status.txt"
	grep -q '^isolated: *2-3$' "$OUT/status.txt" && grep -q "^partition: *$CG/lincell-2-3 (isolated)$" "$OUT/status.txt"
}
check "lincell status shows the isolation and the partition" status

noise() {
	"$L" noise --duration-ms 400 "$@" >"$OUT/noise.txt" 2>&1 || { cat "$OUT/noise.txt"; return 1; }
	cat "$OUT/noise.txt"
	grep -Eq '^ +0  housekeeping\*? ' "$OUT/noise.txt" && grep -Eq '^ +2  isolated ' "$OUT/noise.txt" &&
		grep -Eq '^ +3  isolated ' "$OUT/noise.txt" && grep -q '^housekeeping/isolated: noise per second ' "$OUT/noise.txt"
}
check "lincell noise measures isolated 2-3 and housekeeping CPU 0" noise
check "lincell noise --load loads housekeeping CPUs meanwhile" noise --load --hist

refused() {
	out=$("$L" isolate "$1" 2>&1)
	rc=$?
	echo "$out"
	[ $rc = "$2" ] && echo "$out" | grep -q "$3"
}
check "a refused isolate exits 1 with the module's reason and errno" refused 0-3 1 'CPU 2 is already isolated (errno 16) \[EBUSY\]'
check "an absent CPU is ENODEV" refused 9 1 'CPU 9 is not present (errno 19) \[ENODEV\]'
check "a malformed cpulist is refused before the module sees it" refused 2-x 2 'cpulist syntax error'

release() {
	"$L" release 2-3 >"$OUT/release.txt" 2>&1 || { cat "$OUT/release.txt"; return 1; }
	cat "$OUT/release.txt"
	test ! -e $CG/lincell-2-3 && test -z "$(cat $CG/cpuset.cpus.isolated)" && grep -qx isolated= /sys/kernel/cpu_isolate/status
}
check "lincell release 2-3 removes the partition and the isolation" release
check "user tasks may use every CPU again" test "$(allowed)" = "$before"

offline() {
	out=$("$L" isolate 3 --offline 2>&1) || { echo "$out"; return 1; }
	echo "$out"
	echo "$out" | grep -q 'offline CPUs cannot belong to a partition' &&
		test "$(cat /sys/devices/system/cpu/cpu3/online)" = 0 &&
		"$L" release all && test "$(cat /sys/devices/system/cpu/online)" = 0-3
}
check "lincell isolate --offline hands CPU 3 off and release all brings it back" offline
check "rmmod" rmmod cpu_isolate
