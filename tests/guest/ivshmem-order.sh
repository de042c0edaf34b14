#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Memory ordering for real (issue 11): ivshmem-order streams 1 000 000
# sequence-numbered records from a producer on CPU 0 to a consumer on CPU 1
# through a ring in the R/W section of /dev/ivshmem0, with the orderings
# lincell's peers use (fields relaxed, the publishing index release, the
# index read acquire), and checks every one. TCG runs the two vCPUs in
# parallel host threads; on the arm64 board the memory model is weak.
# lincell-vm: arch=x86_64,arm64 ivshmem-plain=1M cpus=2 timeout=240 boot=plain revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 3
order=$LINCELL_ROOT/target/debug/ivshmem-order
check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0
check "1000000 records cross from CPU 0 to CPU 1 in order and intact" \
	sh -c "$order /dev/ivshmem0 --records 1000000 > /tmp/order.out 2>&1"
sed 's/^/# /' /tmp/order.out
