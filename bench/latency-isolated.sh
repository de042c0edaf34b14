#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The RT loop across cells, housekeeping CPU against isolated CPU, under load
#
# One 2-vCPU guest and a host cell on an ivshmem-doorbell device (2
# vectors): `lincell latency --compare-isolated 1 --load` runs 100 000
# round trips at 1 ms to the host's `lincell latency --respond`, first
# pinned to housekeeping CPU 0, then on CPU 1 isolated by cpu_isolate (its
# cpuset partition, the doorbell's interrupts kept on CPU 1), with
# `stress-ng --cpu` on CPU 0 throughout. Rows `housekeeping` and `isolated`
# (round trip min/p50/p99/p99.9/max, wake-up p99/max, lost, overruns), ratio
# housekeeping/isolated (goal: p99 and max both above 1, 0 lost). Under TCG
# the host's scheduling of the vCPU threads is in every figure: the ratio,
# measured in one run, is what isolation inside the guest buys.
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=900
# lincell-vm: host=sh tests/host/latency-responder.sh guest 2
# lincell-vm: ratio=housekeeping/isolated
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/release/lincell
N=100000
plan 3
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "insmod cpu_isolate.ko" insmod "$(module_path cpu-isolate)"
compare() {
	"$L" latency /dev/ivshmem0 --compare-isolated 1 --load --count $N --priority 80 --timeout-ms 10000 \
		--connect-timeout-ms 240000 --json >"$LINCELL_OUT/compare.json" 2>"$LINCELL_OUT/compare.err" ||
		{ cat "$LINCELL_OUT/compare.err" "$LINCELL_OUT/compare.json"; return 1; }
	python3 - "$LINCELL_OUT/compare.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["irqs_kept"], r
for run in ("housekeeping", "isolated"):
    x = r[run]
    assert x["error"] is None and x["received"] == x["count"] and x["lost"] == 0, x
    for k in ("min", "p50", "p99", "p999", "max"):
        print(f"{run}.rtt_{k}_us={x['rtt_us'][k]:.1f}")
    for k in ("p99", "max"):
        print(f"{run}.wake_{k}_us={x['wake_us'][k]:.1f}")
    print(f"{run}.lost={x['lost']}")
    print(f"{run}.overruns={x['overruns']}")
PY
}
results "$N round trips on housekeeping CPU 0, then on CPU 1 isolated, stress-ng on CPU 0, none lost" compare
rmmod cpu_isolate
