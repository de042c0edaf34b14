#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Loads every lincell module; KUnit runs each module's suites during insmod.
# Prints one TAP line per module load, then each suite's KTAP results from
# debugfs (the harness counts every test case in them).
# lincell-vm: cpus=2
. "$LINCELL_ROOT/tests/guest/lib.sh"

modules=$(ls "$LINCELL_ROOT"/drivers/*/*.ko 2>/dev/null)
plan "$(echo "$modules" | grep -c .)"
for ko in $modules; do
	check "insmod $(basename "$ko")" insmod "$ko"
done
for r in /sys/kernel/debug/kunit/lincell_*/results; do
	[ -e "$r" ] && cat "$r"
done
