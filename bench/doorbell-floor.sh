#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# ivshmem: what a doorbell round trip costs at each layer, guest a -> guest b
#
# Two guests (one vCPU each) on one ivshmem device, 2 vectors. Guest a's
# `lincell ivshmem pingpong` rings b N (5000) times per mode and waits for
# the answer in a blocking read:
# - kernel: b's ivshmem.ko answers from its interrupt handler (the in-kernel
#   echo, sysfs ivshmem/echo): the floor of a doorbell round trip;
# - read: b's `lincell ivshmem echo` answers from userspace, woken from a
#   blocking read(2) (the userspace wake);
# - spin: no doorbells, both spin on sequence numbers in shared memory.
# Then the RT loop over a message channel, `lincell latency` in a against a
# `lincell latency --respond` in b, 3000 round trips every 2 ms per mode:
# lat-spin (both spin), lat-block (both sleep on the doorbell) and
# lat-spin-block (spin, then sleep: the initiator spins up to 1500 µs,
# longer than a round trip, and the responder up to 2500 µs, longer than
# the 2 ms between messages, so each side finds the other's message while
# still spinning and no doorbell is rung; a responder spinning less than
# the interval sleeps before every message and pays the doorbell). Ratios: the userspace wake against
# the kernel floor (goal: read/kernel <= 1.5 at p50) and spin-then-block
# against pure spinning (goal: lat-spin-block/lat-spin <= 1.2 at p50).
# Release builds. Both revisions (QEMU's ivshmem-doorbell, then the
# project's ivshmem 2.0 device).
# lincell-vm: guests=a,b ivshmem-doorbell=2:1M cpus=1 timeout=1500 revisions=v1,v2
# lincell-vm: ratio=read/kernel ratio=spin/kernel ratio=lat-block/lat-spin ratio=lat-spin-block/lat-spin
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/release/lincell
D=/dev/ivshmem0
N=5000
LAT_N=3000

# pingpong MODE: N round trips; MODE.COLUMN=VALUE (pingpong_figures).
pingpong() {
	stop=
	[ "$1" = spin ] && stop=--stop
	"$L" ivshmem pingpong $D --peer "$bid" --count $N --mode "$1" $stop \
		--connect-timeout 240000 >"$LINCELL_OUT/$1.txt" 2>&1 || { cat "$LINCELL_OUT/$1.txt"; return 1; }
	pingpong_figures "$1" "$LINCELL_OUT/$1.txt"
}

# latency MODE: the RT loop; lat-MODE.COLUMN=VALUE from its JSON rtt_us.
latency() {
	"$L" latency $D --mode "$1" --spin-us 1500 --interval-us 2000 --count $LAT_N --timeout-ms 10000 --json \
		--connect-timeout-ms 240000 >"$LINCELL_OUT/lat-$1.json" 2>"$LINCELL_OUT/lat-$1.err" ||
		{ cat "$LINCELL_OUT/lat-$1.json" "$LINCELL_OUT/lat-$1.err"; return 1; }
	python3 - "$LINCELL_OUT/lat-$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for k in ("min", "avg", "p50", "p99", "p999", "max"):
    print(f"lat-{sys.argv[2]}.{k}_us={r['rtt_us'][k]:.1f}")
print(f"lat-{sys.argv[2]}.lost={r['lost']}")
PY
}

if [ "$LINCELL_GUEST" = a ]; then plan 7; else plan 3; fi
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
id=$("$L" ivshmem info $D | sed -n 's/^own id: //p')
if [ "$LINCELL_GUEST" = a ]; then
	bid=$("$L" ivshmem peek $D rw+128K 16 --wait-for "id=" --timeout 240000 | sed -n 's/^id=//p')
	for mode in kernel read spin; do
		results "$N round trips ($mode): PASSED, none lost or spurious" pingpong $mode
	done
	for mode in spin block spin-block; do
		results "$LAT_N RT-loop round trips over the channel ($mode), none lost" latency $mode
	done
else
	"$L" ivshmem poke $D rw+128K "id=$id" >/dev/null
	check "b answers a's 3 ping-pong sessions (one of them in its kernel)" \
		"$L" ivshmem echo $D --sessions 3 --start-timeout 240000 --timeout 60000
	ok=0
	for mode in spin block spin-block; do
		"$L" latency $D --respond --mode "$mode" --spin-us 2500 --priority 0 --connect-timeout-ms 240000 \
			>"$LINCELL_OUT/resp-$mode.txt" 2>&1 || ok=1
	done
	check "b's RT-loop responder answered a's 3 runs" test $ok = 0
fi
