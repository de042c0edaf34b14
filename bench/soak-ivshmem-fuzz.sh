#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Soak: one million unprivileged random calls on /dev/ivshmemN
#
# tests/guest/ivshmem-fuzz.sh (make check makes 100 000 calls) with
# FUZZ_CALLS=1000000: random ioctl/mmap/mprotect/mremap/read/poll calls
# from 4 threads of an unprivileged user while the device is unbound and
# rebound, then no mapping may survive removal. Figures: calls made,
# calls the kernel refused (errors), mappings made, seconds.
# lincell-vm: ivshmem-doorbell=2:1M cpus=2 timeout=3600
FUZZ_CALLS=1000000
. "$LINCELL_ROOT/tests/guest/ivshmem-fuzz.sh"
