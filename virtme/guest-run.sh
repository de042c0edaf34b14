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
#
# LINCELL_DEADLINE (set by lincell-vm: the host's clock, seconds since the
# epoch, when the harness will kill this guest): 25 s before it, the
# script running then gets OUT/hang.txt: the tasks and their wait
# channels, the kernel stacks of those running or in D state, and the
# kernel log (after a sysrq dump of blocked tasks and CPUs where the
# kernel has sysrq). The harness shows it for a guest that did not finish.
guest=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/virtme/guest-lib.sh"

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# Keep the console for test output; the full log is saved below.
dmesg -n 1 2>/dev/null

current=/tmp/lincell-current-out
hang_watch() {
	while [ "$(date +%s)" -lt $((LINCELL_DEADLINE - 25)) ]; do sleep 5; done
	out=$(cat "$current" 2>/dev/null) && [ -d "$out" ] || return 0
	if [ -w /proc/sysrq-trigger ]; then
		echo 1 >/proc/sys/kernel/sysrq
		echo w >/proc/sysrq-trigger
		echo l >/proc/sysrq-trigger
		sleep 2
	fi
	{
		echo "# $(cut -d' ' -f1 /proc/uptime) s after boot, 25 s before the harness's deadline"
		ps -eo pid,stat,pri,psr,wchan:32,args
		echo "# stacks"
		ps -eo pid=,stat= | while read -r pid stat; do
			case $stat in D* | R*) [ "$pid" = $$ ] || {
				echo "$pid $(cat /proc/"$pid"/comm 2>/dev/null):"
				cat /proc/"$pid"/stack 2>/dev/null
			} ;; esac
		done
		echo "# dmesg"
		dmesg
	} >"$out/hang.txt" 2>&1
}
[ -n "$LINCELL_DEADLINE" ] && hang_watch >/dev/null 2>&1 &

while [ $# -ge 2 ]; do
	script=$1 out=$2
	shift 2
	start=$(cut -d' ' -f1 /proc/uptime)
	echo "$out" >"$current"
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
