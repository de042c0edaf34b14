#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Interrupt storm: guest a rings guest b 100000 times back to back on vector
# 1. b keeps working: its counters moved (QEMU may coalesce doorbells, never
# invents them), its kernel log stays clean, and a single doorbell after the
# storm still wakes a blocking read. Flags in the R/W section sequence the
# guests; every wait is bounded.
# lincell-vm: guests=a,b ivshmem-doorbell=2:1M cpus=1 timeout=300 boot=pair revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
if [ "$LINCELL_GUEST" = a ]; then plan 4; else plan 3; fi

L=$LINCELL_ROOT/target/debug/lincell
D=/dev/ivshmem0
N=100000
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
own=$("$L" ivshmem info "$D" | awk '/^own id:/ {print $3}')
other=$((1 - own))
counter1() { "$L" ivshmem counters "$D" | awk '/^vector 1:/ {print $3}'; }

if [ "$LINCELL_GUEST" = a ]; then
	check "b is ready" wait_for 120 shm_flag_is "$D" rw+0x4000 b-ready
	check "ring b $N times" "$L" ivshmem ring "$D" "$other" 1 --count $N
	shm_flag "$D" rw+0x4100 storm-done
	check "b survived and a single doorbell still wakes it" sh -c "
		i=0; while [ \$i -lt 100 ]; do
			$L ivshmem peek $D rw+0x4200 7 2>/dev/null | grep -qx b-armed && break
			sleep 0.2; i=\$((i + 1)); done
		$L ivshmem ring $D $other 1 && i=0 && while [ \$i -lt 300 ]; do
			$L ivshmem peek $D rw+0x4300 6 2>/dev/null | grep -qx b-woke && exit 0
			sleep 0.2; i=\$((i + 1)); done; exit 1"
else
	exec 3<>"$D"
	before=$(counter1)
	shm_flag "$D" rw+0x4000 b-ready
	check "the storm arrives (counter moved, at most $N)" sh -c "
		i=0; while [ \$i -lt 600 ]; do
			$L ivshmem peek $D rw+0x4100 10 2>/dev/null | grep -qx storm-done && break
			sleep 0.2; i=\$((i + 1)); done
		sleep 2; n=\$(( \$($L ivshmem counters $D | awk '/^vector 1:/ {print \$3}') - $before ))
		echo moved \$n; test \$n -ge 1 -a \$n -le $N"
	# Drain what the storm left pending, then wait for one more doorbell in
	# a blocking read (TCG makes start-up slow: wait until it sleeps in it).
	"$L" ivshmem wait "$D" --nonblock >/dev/null 2>&1
	"$L" ivshmem wait "$D" --timeout 60000 >"$LINCELL_OUT/wait.txt" 2>&1 &
	wpid=$!
	reading() { ls -l /proc/$wpid/fd 2>/dev/null | grep -q "$D" && grep -q ') S ' /proc/$wpid/stat; }
	wait_for 30 reading
	shm_flag "$D" rw+0x4200 b-armed
	wait $wpid
	wrc=$?
	check "the doorbell after the storm wakes a blocking read" sh -c "test $wrc = 0 && grep -q 0x2 $LINCELL_OUT/wait.txt"
	shm_flag "$D" rw+0x4300 b-woke
	exec 3>&-
fi
