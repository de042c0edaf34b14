#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs one guest test inside a lincell test guest (started by lincell-vm).
#
#   guest-run.sh SCRIPT OUT GUEST
#
# SCRIPT prints TAP on stdout; it is saved to OUT/tap.txt (and shown on the
# console). The kernel log goes to OUT/dmesg.txt, and OUT/done marks that the
# script ran to its end: a guest without it hung, crashed or never booted.
script=$1 out=$2 guest=$3
root=$(cd "$(dirname "$0")/.." && pwd)

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# Keep the console for test output; the full log is saved below.
dmesg -n 1 2>/dev/null

{
	LINCELL_ROOT=$root LINCELL_OUT=$out LINCELL_GUEST=$guest \
		sh "$script" 2>"$out/stderr.txt"
	echo $? >"$out/rc"
} | tee "$out/tap.txt"
dmesg >"$out/dmesg.txt" 2>&1
# The marker holds the script's exit code.
cat "$out/rc" >"$out/done"
