#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Figures of the virtio-net benchmark (bench/vdev-net.sh), as the
harness's KEY=VALUE result lines (virtme/src/bench.rs):

  net-figures.py iperf KEY JSON        `iperf3 -J` report JSON: KEY=Mbit/s
                                       (what the receiver counted)
  net-figures.py ping ROW OUT          busybox ping output OUT:
                                       ROW_avg_us, ROW_p50_us, ROW_p99_us,
                                       ROW_lost (of the echo requests sent)
  net-figures.py backend ROW LOG       a `lincell remote serve` log LOG
                                       (its stop line) and LOG.threads, its
                                       /proc/PID/status saved while it ran:
                                       ROW.threads, ROW.chains (virtio
                                       chains served), ROW.wakeups,
                                       ROW.chains_per_wakeup, ROW.doorbells
                                       (to the frontend),
                                       ROW.chains_per_doorbell, ROW.cpu_s

Exits 1 with the reason on stderr if the input has no figures.
"""

import json
import math
import re
import sys


def fail(why):
    print(why, file=sys.stderr)
    sys.exit(1)


def iperf(key, path):
    try:
        with open(path) as f:
            report = json.load(f)
        bps = report["end"]["sum_received"]["bits_per_second"]
    except (OSError, ValueError, KeyError) as e:
        fail(f"{path}: no iperf3 result ({e!r})")
    print(f"{key}={bps / 1e6:.1f}")


def percentile(sorted_values, p):
    # Nearest rank: the smallest value with at least p % of them at or below it.
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[max(0, min(len(sorted_values), rank) - 1)]


def ping(row, path):
    with open(path) as f:
        text = f.read()
    times = sorted(float(t) * 1000 for t in re.findall(r"time=([0-9.]+) ms", text))
    sent = re.search(r"(\d+) packets transmitted", text)
    if not times or not sent:
        fail(f"{path}: no echo replies:\n{text[-500:]}")
    print(f"{row}_avg_us={sum(times) / len(times):.1f}")
    print(f"{row}_p50_us={percentile(times, 50):.1f}")
    print(f"{row}_p99_us={percentile(times, 99):.1f}")
    print(f"{row}_lost={int(sent.group(1)) - len(times)}")


def backend(row, path):
    with open(path) as f:
        log = f.read()
    stop = re.search(
        r"stopped after (\d+) requests: (\d+) wake-ups, (\d+) doorbells to the frontend, "
        r"CPU time ([0-9.]+) s user \+ ([0-9.]+) s system",
        log,
    )
    if not stop:
        fail(f"{path}: no stop line:\n{log[-500:]}")
    chains, wakeups, doorbells = (int(stop.group(i)) for i in (1, 2, 3))
    try:
        with open(path + ".threads") as f:
            threads = re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1)
    except (OSError, AttributeError) as e:
        fail(f"{path}.threads: no thread count ({e!r})")
    print(f"{row}.threads={threads}")
    print(f"{row}.chains={chains}")
    print(f"{row}.wakeups={wakeups}")
    print(f"{row}.chains_per_wakeup={chains / max(wakeups, 1):.2f}")
    print(f"{row}.doorbells={doorbells}")
    print(f"{row}.chains_per_doorbell={chains / max(doorbells, 1):.2f}")
    print(f"{row}.cpu_s={float(stop.group(4)) + float(stop.group(5)):.2f}")


def main(argv):
    if len(argv) == 4 and argv[1] == "iperf":
        iperf(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "ping":
        ping(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "backend":
        backend(argv[2], argv[3])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
