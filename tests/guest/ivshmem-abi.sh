#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The /dev/ivshmemN ABI with good and bad input, on an ivshmem-plain device:
# every ioctl with wrong numbers, sizes, pointers and values, short and
# non-blocking reads, poll, mmap with bad offsets, lengths, flags and
# section permissions; then the PCI device is removed under an open file
# and a mapping (every call must say ENODEV, the mapping must SIGBUS), and
# a rescan brings it back with its data.
#
# The checks are Rust (`ivshmem-abi-test`, a test binary of the lincell
# package, built next to `lincell` by cargo): they need the CLI's device
# wrapper and raw calls with wrong arguments, and the guest runs the binaries
# from the host's tree. This script loads the module and hands over;
# the self-test prints the TAP (plan at the end). Its exit status 1 means
# "some check failed", which the TAP already says; other statuses mean it
# could not run to its end and are passed on.
# lincell-vm: ivshmem-plain=1M cpus=2 timeout=240 boot=plain revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
abi_test=$LINCELL_ROOT/target/debug/ivshmem-abi-test

if ! out=$(insmod "$(module_path ivshmem)" 2>&1) || ! wait_for 10 test -c /dev/ivshmem0; then
	plan 1
	not_ok "insmod ivshmem.ko creates /dev/ivshmem0" "$out"
	exit 1
fi
"$abi_test" /dev/ivshmem0 --remove
rc=$?
[ $rc = 1 ] && rc=0
exit $rc
