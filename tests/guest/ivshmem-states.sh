#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# State exchange between two guests, over QEMU ivshmem with the lincell v1
# layout and over ivshmem 2.0's State register (revisions=): a sets its state (state table entry + vector 0 to the other peer);
# b follows it with `lincell ivshmem states --watch` and sees 0 -> 7 and,
# once a's last user closes the device, 7 -> 0. Flags in the R/W section
# sequence the two guests; every wait is bounded.
# lincell-vm: guests=a,b ivshmem-doorbell=2:1M cpus=1 timeout=300 boot=pair revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 5

L=$LINCELL_ROOT/target/debug/lincell
D=/dev/ivshmem0
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
own=$("$L" ivshmem info "$D" | awk '/^own id:/ {print $3}')
other=$((1 - own))


if [ "$LINCELL_GUEST" = a ]; then
	check "b is watching" wait_for 120 shm_flag_is "$D" rw+0x3000 b-ready
	exec 3<>"$D"   # keeps a user open: the state survives the CLI's close
	check "a sets state 7 and sees it in its own sysfs" sh -c "
		$L ivshmem state $D 7 &&
		test \"\$(cut -d' ' -f$((own + 1)) /sys/bus/pci/devices/*/ivshmem/peer_states)\" = 7"
	check "b saw 0 -> 7" wait_for 60 shm_flag_is "$D" rw+0x3100 b-saw-7
	exec 3>&-      # last user gone: the driver publishes state 0
	check "b saw 7 -> 0" wait_for 60 shm_flag_is "$D" rw+0x3200 b-saw-0
else
	out=$LINCELL_OUT/watch.txt
	"$L" ivshmem states "$D" --watch --timeout 180000 >"$out" 2>&1 &
	wpid=$!
	check "the watcher is running" wait_for 60 grep -q "^peer $other: 0$" "$out"
	shm_flag "$D" rw+0x3000 b-ready
	check "watch shows peer $other: 0 -> 7" wait_for 60 grep -q "^peer $other: 0 -> 7$" "$out"
	shm_flag "$D" rw+0x3100 b-saw-7
	check "watch shows peer $other: 7 -> 0" wait_for 60 grep -q "^peer $other: 7 -> 0$" "$out"
	shm_flag "$D" rw+0x3200 b-saw-0
	kill $wpid 2>/dev/null
	check "the table ends with every state 0" sh -c "! $L ivshmem states $D | grep -v ': 0$'"
fi
