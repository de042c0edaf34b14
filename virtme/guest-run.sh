#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Runs guest tests inside a lincell test guest (started by lincell-vm), one
# after the other in the same boot.
#
#   guest-run.sh GUEST SCRIPT OUT [SCRIPT OUT]...
#
# Each SCRIPT prints TAP on stdout; it is saved to its OUT/tap.txt (and shown
# on the console). The kernel log since the previous script goes to
# OUT/dmesg.txt (and is then cleared, so each script is judged by its own
# log), and OUT/done marks that the script ran to its end: a script without
# it hung, crashed, or the guest never got to it. On the arm64 board
# (LINCELL_HOST_COPY set, see guest-lib.sh's host_copy) these files reach
# the host over the console.
guest=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/virtme/guest-lib.sh"

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# Keep the console for test output; the full log is saved below.
dmesg -n 1 2>/dev/null

while [ $# -ge 2 ]; do
	script=$1 out=$2
	shift 2
	start=$(cut -d' ' -f1 /proc/uptime)
	{
		LINCELL_ROOT=$root LINCELL_OUT=$out LINCELL_GUEST=$guest \
			sh "$script" 2>"$out/stderr.txt"
		echo $? >"$out/rc"
	} | tee "$out/tap.txt"
	dmesg >"$out/dmesg.txt" 2>&1
	dmesg -C 2>/dev/null
	# Seconds the script took (guest clock), for the harness's report.
	awk -v s="$start" '{ printf "%.1f\n", $1 - s }' /proc/uptime >"$out/seconds"
	# The marker holds the script's exit code.
	cat "$out/rc" >"$out/done"
	host_copy "$out/tap.txt" "$out/stderr.txt" "$out/dmesg.txt" "$out/seconds" "$out/done"
	# The next script starts, like a fresh boot, with no lincell module
	# loaded (a script that could not unload one has failed already).
	[ $# -ge 2 ] || break
	for m in vdev_remote cpu_isolate ivshmem; do
		grep -q "^$m " /proc/modules && rmmod "$m" 2>/dev/null
	done
	dmesg -C 2>/dev/null
done
