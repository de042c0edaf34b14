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
