# SPDX-License-Identifier: GPL-2.0
# Helpers for guest tests (sourced). Each test prints TAP on stdout:
#   plan N; ok "name"; not_ok "name" "why"; check "name" command...

_tap_n=0
plan() { echo "TAP version 13"; echo "1..$1"; }
ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1"; }
# not_ok NAME [WHY...]: the reasons go first, as KUnit prints them, so the
# harness attaches them to this case.
not_ok() {
	_tap_n=$((_tap_n + 1))
	_name=$1; shift
	for l in "$@"; do printf '%s\n' "$l" | sed 's/^/# /'; done
	echo "not ok $_tap_n - $_name"
}
# check NAME CMD...: ok if CMD succeeds, else not ok with its output.
check() {
	_name=$1; shift
	if _out=$("$@" 2>&1); then ok "$_name"; else not_ok "$_name" "$_out"; fi
}

# The module .ko files built in the repository.
module_path() { echo "$LINCELL_ROOT/drivers/$1/$(echo "$1" | tr - _).ko"; }

# PCI functions with vendor:device $1:$2 (sysfs paths).
pci_devices() {
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = "0x$1" ] && [ "$(cat "$d/device")" = "0x$2" ] && echo "$d"
	done
}

# wait_for SECONDS CMD...: retry CMD every 0.1 s until it succeeds or time runs out.
wait_for() {
	_limit=$(($1 * 10)); shift
	while [ $_limit -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		_limit=$((_limit - 1))
	done
	return 1
}

# expect NAME PATTERN CMD...: ok if CMD succeeds and its output has every
# line of PATTERN (fixed strings); otherwise not ok with what was missing.
expect() {
	_name=$1 _pat=$2; shift 2
	_out=$("$@" 2>&1); _rc=$?
	_missing=$(printf '%s\n' "$_pat" | while IFS= read -r l; do
		printf '%s\n' "$_out" | grep -qF -- "$l" || echo "missing: $l"; done)
	if [ $_rc = 0 ] && [ -z "$_missing" ]; then ok "$_name"; else
		not_ok "$_name" "exit $_rc" "$_missing" "$_out"; fi
}

# Flags in ivshmem shared memory, to sequence guests (needs the lincell CLI):
# shm_flag DEV OFFSET TEXT writes TEXT; shm_flag_is DEV OFFSET TEXT is true
# once the memory at OFFSET holds TEXT.
shm_flag() { "$LINCELL_ROOT/target/debug/lincell" ivshmem poke "$1" "$2" "$3" >/dev/null; }
shm_flag_is() { "$LINCELL_ROOT/target/debug/lincell" ivshmem peek "$1" "$2" ${#3} 2>/dev/null | grep -qx "$3"; }

# ivshmem_pci: the sysfs path of the guest's ivshmem device, of the
# revision the harness gave it (LINCELL_IVSHMEM_REV: 1 QEMU's 1af4:1110,
# 2 ivshmem 2.0's 110a:4106).
ivshmem_pci() {
	if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then
		pci_devices 110a 4106
	else
		pci_devices 1af4 1110
	fi | head -1
}

# to_vdev_remote PCI: hands the PCI function PCI (its sysfs path) to
# vdev_remote.ko; true once vdev_remote has it. QEMU's ivshmem (v1) has no
# protocol: driver_override (unbound first from a driver that has it, then
# probed). An ivshmem 2.0 virtio frontend (protocol 0x8000 | device id)
# binds by ID when vdev_remote loads: only wait for it (10 s).
to_vdev_remote() {
	if [ "$(cat "$1/vendor")" = 0x110a ]; then
		wait_for 10 sh -c "readlink '$1/driver' | grep -q '/vdev_remote\$'"
		return
	fi
	echo vdev_remote >"$1/driver_override"
	[ -e "$1/driver" ] && basename "$1" >"$1/driver/unbind"
	basename "$1" >/sys/bus/pci/drivers_probe
	readlink "$1/driver" | grep -q '/vdev_remote$'
}

# Files for the host (a host peer follows the script through them):
# to_host NAME [TEXT] writes LINCELL_OUT/NAME whole (TEXT, one line, or
# nothing), then renames it into place, so a reader never sees it half
# written; on a guest that shares no directory with the host it also goes
# over the console (host_copy).
to_host() {
	if [ $# -gt 1 ]; then printf '%s\n' "$2"; fi >"$LINCELL_OUT/$1.tmp" &&
		mv "$LINCELL_OUT/$1.tmp" "$LINCELL_OUT/$1" && host_copy "$LINCELL_OUT/$1"
}

# host_copy FILE...: on the arm64 board, whose output directories (under
# LINCELL_HOST_COPY) the host cannot see, sends each FILE over the console,
# where the harness writes it into the guest's directory on the host
# (virtme/src/guest.rs, ConsoleFiles). Elsewhere it does nothing.
host_copy() {
	[ -n "${LINCELL_HOST_COPY:-}" ] || return 0
	for _f in "$@"; do
		[ -e "$_f" ] || continue
		_rel=${_f#"$LINCELL_HOST_COPY"/}
		{ echo "@@lincell-file-begin $_rel"; awk 1 "$_f"; echo "@@lincell-file-end $_rel"; } >/dev/console
	done
}

# results NAME CMD...: for benchmarks (bench/*.sh): CMD prints results,
# KEY=VALUE lines (virtme/src/bench.rs); prints them and ok NAME if CMD
# succeeds, else not ok with its output.
results() {
	_name=$1; shift
	if _out=$("$@" 2>&1); then printf '%s\n' "$_out"; ok "$_name"; else not_ok "$_name" "$_out"; fi
}

# pingpong_figures ROW FILE: a `lincell ivshmem pingpong` report's latency
# percentiles as ROW.COLUMN_us=VALUE results ("latency_us: min A p50 B ...
# mean G (n=N)" gives ROW.min_us=A ROW.p50_us=B ...), and its lost and
# spurious counts as ROW.lost and ROW.spurious, for benchmarks.
pingpong_figures() {
	set -- "$1" "$2" $(sed -n 's/^latency_us://p' "$2" | sed 's/(n=[0-9]*)//')
	_row=$1 _file=$2
	shift 2
	while [ $# -ge 2 ]; do
		echo "$_row.$(echo "$1" | tr -d .)_us=$2"
		shift 2
	done
	sed -n "s/^lost: \([0-9]*\) spurious: \([0-9]*\)$/$_row.lost=\1\n$_row.spurious=\2/p" "$_file"
}

# mac_netif MAC: the name of the network interface with address MAC (a
# virtio-net device's, found whatever udev renamed it to); 1 if none.
mac_netif() {
	for _d in /sys/class/net/*; do
		[ "$(cat "$_d/address" 2>/dev/null)" = "$1" ] && basename "$_d" && return 0
	done
	return 1
}
# mac_link_up MAC: that interface exists and has carrier.
mac_link_up() { _i=$(mac_netif "$1") && [ "$(cat "/sys/class/net/$_i/carrier" 2>/dev/null)" = 1 ]; }

# blk_figure ROW DEV OFFSET SIZE SECS PATTERN UNIT ARGS...: one `lincell
# remote bench` pattern (release build) on DEV's OFFSET..+SIZE for SECS s,
# printed as the benchmark result ROW.PATTERN_UNIT=VALUE (UNIT: a key of
# its report, mb_per_s or iops); the whole report goes to
# LINCELL_OUT/reports.txt.
blk_figure() {
	_row=$1 _dev=$2 _off=$3 _size=$4 _secs=$5 _pat=$6 _unit=$7
	shift 7
	_r=$("$LINCELL_ROOT/target/release/lincell" remote bench "$_dev" --seconds "$_secs" \
		--offset "$_off" --size "$_size" "$@") || return 1
	echo "$_row $_pat $_r" >>"$LINCELL_OUT/reports.txt"
	echo "$_row.${_pat}_$_unit=$(echo "$_r" | tr ' ' '\n' | sed -n "s/^$_unit=//p")"
}
