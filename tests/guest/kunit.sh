#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Loads every lincell module; KUnit runs each module's suites during insmod.
# Prints each lincell suite's KTAP results from debugfs (the harness counts
# every test case in them). A module that fails to load, or loads without
# any suite, fails the script (exit status), since its cases would be missing.
# lincell-vm: arch=x86_64,arm64 ivshmem-plain=1M cpus=2 timeout=240 boot=plain revisions=v1,v2
status=0
for ko in "$LINCELL_ROOT"/drivers/*/*.ko; do
	if ! out=$(insmod "$ko" 2>&1); then
		echo "insmod $ko failed: $out" >&2
		status=1
	fi
done
found=0
for r in /sys/kernel/debug/kunit/lincell_*/results; do
	[ -e "$r" ] || continue
	cat "$r"
	found=$((found + 1))
done
[ $found -gt 0 ] || { echo "no lincell KUnit suites in debugfs (CONFIG_KUNIT=y?)" >&2; status=1; }
exit $status
