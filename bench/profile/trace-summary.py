#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Summarize bench/profile/vdev-blk-trace.sh's traces.

usage: trace-summary.py OUT_DIR   (the guest's directory of the scenario)

For each trace-JOB.txt: requests completed, the request latency (block
issue to completion, per sector) percentiles, the guest's interrupts per
completed request on the ivshmem device's vectors (from interrupts.txt),
the gaps between consecutive completions, and how many requests were in
flight on average (Little's law: rate x latency).
"""
import pathlib
import re
import sys

EVENT = re.compile(r"\s(\d+\.\d+): (block_rq_issue|block_rq_complete|irq_handler_entry): (.*)")


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))] if v else 0.0


def main(out):
    out = pathlib.Path(out)
    irqs = set()
    ints = out / "interrupts.txt"
    if ints.exists():
        irqs = {l.split(":")[0].strip() for l in ints.read_text().splitlines() if ":" in l}
    for trace in sorted(out.glob("trace-*.txt")):
        issued, lat, done, nirq = {}, [], [], 0
        for line in trace.read_text().splitlines():
            m = EVENT.search(line)
            if not m:
                continue
            t, ev, rest = float(m.group(1)), m.group(2), m.group(3)
            if ev == "irq_handler_entry":
                irq = re.search(r"irq=(\d+)", rest)
                nirq += bool(irq and irq.group(1) in irqs)
                continue
            sector = re.search(r"(\d+) \+ (\d+)", rest)
            if not sector:
                continue
            key = sector.group(1)
            if ev == "block_rq_issue":
                issued[key] = t
            elif key in issued:
                lat.append((t - issued.pop(key)) * 1e6)
                done.append(t)
        lat.sort()
        gaps = sorted((b - a) * 1e6 for a, b in zip(done, done[1:]))
        span = done[-1] - done[0] if len(done) > 1 else 0.0
        rate = (len(done) - 1) / span if span else 0.0
        mean = sum(lat) / len(lat) if lat else 0.0
        print(
            f"{trace.stem[6:]}: requests={len(lat)} rate={rate:.0f}/s "
            f"latency_us p50={pct(lat, .5):.0f} p90={pct(lat, .9):.0f} p99={pct(lat, .99):.0f} "
            f"max={lat[-1] if lat else 0:.0f} in_flight={rate * mean / 1e6:.1f} "
            f"irqs_per_request={nirq / len(lat) if lat else 0:.2f} "
            f"completion_gap_us p50={pct(gaps, .5):.0f} p99={pct(gaps, .99):.0f} max={gaps[-1] if gaps else 0:.0f}"
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
