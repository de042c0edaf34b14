#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Soak: vdev_remote under a hostile peer for 10 minutes
#
# tests/guest/vdev-chaos.sh (make check runs it for 60 s) with CHAOS_S=600:
# the host's ivshmem-chaos peer scribbles over the whole shared memory,
# rings random doorbells and stalls for 10 minutes while the guest reads
# and writes the vdev disk; then the backend turns honest and a
# write-then-verify must pass. Figures: the corruptions injected
# (chaos.stores, .doorbells, .stalls: from the host peer), the guest's
# I/O that succeeded, failed with an error, or hung past 30 s (must be
# 0), how often the disk vanished, and how often vdev_remote attached
# the device again (recoveries); the doorbell ping-pong beside it on a
# second device (chaos.pingpong_calls, _ok, _hung (must be 0), _rounds,
# _lost) and the sessions its host echo peer served.
# lincell-vm: ivshmem-doorbell=4:16M ivshmem-side=2:1M cpus=2 timeout=1200
# lincell-vm: host=CHAOS_MS=600000 sh tests/host/vdev-backend.sh chaos guest
CHAOS_S=600
. "$LINCELL_ROOT/tests/guest/vdev-chaos.sh"
