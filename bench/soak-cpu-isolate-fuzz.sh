#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Soak: 10 minutes of random cpu_isolate sysfs writes during CPU hot-plug
#
# tests/guest/cpu-isolate-fuzz.sh (make check: 15 000 writes or 40 s) with
# FUZZ_WRITES=1000000 and FUZZ_SECONDS=600; afterwards the machine must be
# exactly as before. Figures: writes, accepted writes, report reads, CPU
# hot-plug operations, seconds.
# lincell-vm: cpus=4 memory=1G timeout=1200
# lincell-vm: append=nohz_full=2-3 rcu_nocbs=2-3
FUZZ_WRITES=1000000 FUZZ_SECONDS=600
. "$LINCELL_ROOT/tests/guest/cpu-isolate-fuzz.sh"
