#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# What `make demo` runs inside the guest: load the modules and show what
# they report.
root=$(cd "$(dirname "$0")/.." && pwd)
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
dmesg -n 1

echo "== PCI ivshmem devices in this guest"
for d in /sys/bus/pci/devices/*; do
	case "$(cat "$d/vendor"):$(cat "$d/device")" in
	0x1af4:0x1110 | 0x110a:0x4106)
		echo "  $(basename "$d")  $(cat "$d/vendor"):$(cat "$d/device")  class $(cat "$d/class")" ;;
	esac
done

echo "== Loading the lincell modules"
for ko in "$root"/drivers/*/*.ko; do
	echo "  insmod $(basename "$ko")"
	insmod "$ko" || exit 1
done

echo "== What the drivers reported"
dmesg | grep -E 'ivshmem [0-9a-f]{4}:' | sed 's/^/  /'

echo "== KUnit results (run at insmod)"
for r in /sys/kernel/debug/kunit/lincell_*/results; do
	suite=$(basename "$(dirname "$r")")
	totals=$(grep -E '^# Totals|^# [a-z_]+: pass' "$r" | tail -n 1)
	echo "  $suite: ${totals#\# }"
done
