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
# mac_addr MAC ADDR/LEN: the interface with address MAC gets ADDR/LEN as
# its only address and goes up, once udev is done with it (udev renames
# eth0 to enp0sN a moment after it appears: wait for that first).
mac_addr() {
	udevadm settle -t 10 2>/dev/null
	_i=$(mac_netif "$1") || return 1
	ip addr flush dev "$_i" && ip addr add "$2" dev "$_i" && ip link set "$_i" up
}

# latency_run NAME ARGS...: one `lincell latency` initiator run on
# /dev/ivshmem0, its JSON report kept in $LINCELL_OUT/NAME.json; passes
# when the report has the documented fields (Documentation/latency.md),
# ordered percentiles, a histogram that adds up, and every round trip
# answered. Prints a one-line summary.
latency_run() {
	_name=$1; shift
	"$LINCELL_ROOT/target/debug/lincell" latency /dev/ivshmem0 --json --connect-timeout-ms 240000 "$@" \
		>"$LINCELL_OUT/$_name.json" 2>"$LINCELL_OUT/$_name.err" ||
		{ cat "$LINCELL_OUT/$_name.json" "$LINCELL_OUT/$_name.err"; return 1; }
	python3 - "$LINCELL_OUT/$_name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
keys = {"version", "mode", "placement", "interval_us", "cpu", "priority", "load", "count", "received", "lost",
        "overruns", "doorbells_sent", "rtt_us", "wake_us", "histogram", "error"}
assert keys <= r.keys(), keys - r.keys()
assert r["version"] == 1 and r["error"] is None, r
assert r["received"] == r["count"] > 0 and r["lost"] == 0, r
for f in ("rtt_us", "wake_us"):
    v = r[f]
    assert v["min"] <= v["p50"] <= v["p99"] <= v["p999"] <= v["max"], v
assert sum(r["histogram"]["counts"]) + r["histogram"]["overflow"] == r["received"], r["histogram"]
print("# mode %s, rings in %s: %d round trips, rtt p50 %.0f us p99 %.0f us max %.0f us, %d doorbells"
      % (r["mode"], r["placement"], r["received"], r["rtt_us"]["p50"], r["rtt_us"]["p99"], r["rtt_us"]["max"], r["doorbells_sent"]))
PY
}

# latency_modes PREFIX COUNT WHAT: COUNT round trips at 1 ms in each wait
# mode (runs PREFIXspin, PREFIXblock, PREFIXspin-block; the block run's
# rings in the R/W section, the others where auto puts them), then a check
# that auto chose the output sections: 4 results.
latency_modes() {
	for _mode in spin block spin-block; do
		_where=auto
		[ $_mode = block ] && _where=rw
		results "$_mode: $2 round trips at 1 ms$3, rings placed $_where, every one answered" \
			latency_run "$1$_mode" --mode "$_mode" --placement $_where --count "$2" --priority 50
	done
	check "auto put the rings in the output sections, rw in the R/W section" sh -c \
		"grep -q '\"placement\": \"output\"' '$LINCELL_OUT/${1}spin.json' && grep -q '\"placement\": \"rw\"' '$LINCELL_OUT/${1}block.json'"
}

# latency_dies ARGS...: a `lincell latency` run whose responder dies
# mid-stream: passes when it exits 1 with "no answer to ping" within 90 s.
latency_dies() {
	_start=$(date +%s)
	"$LINCELL_ROOT/target/debug/lincell" latency /dev/ivshmem0 --timeout-ms 2000 --connect-timeout-ms 240000 "$@" \
		>"$LINCELL_OUT/dies.txt" 2>&1
	_rc=$? _took=$(($(date +%s) - _start))
	sed 's/^/# /' "$LINCELL_OUT/dies.txt"
	[ $_rc = 1 ] && grep -q "no answer to ping" "$LINCELL_OUT/dies.txt" && [ $_took -lt 90 ]
}

# fio_matrix ROW DEV OFFSET: bench/fio/vdev-blk.fio (direct I/O; the job
# matrix of the block benchmarks) on DEV from byte OFFSET on, fio's JSON
# in LINCELL_OUT/fio-ROW.json; prints ROW.JOB_UNIT=VALUE per job (mb_per_s
# for 1 MiB requests, iops for 4 KiB) and keeps them in
# LINCELL_OUT/fio-ROW.txt. Fails on a job's error, a missing job or a job
# that moved no bytes.
fio_matrix() {
	_jobs=$LINCELL_ROOT/bench/fio/vdev-blk.fio
	[ -b "$2" ] || { echo "fio_matrix: no block device '$2'"; return 1; }
	FIO_DISK=$2 FIO_OFFSET=$3 fio --output-format=json --output="$LINCELL_OUT/fio-$1.json" "$_jobs" \
		>"$LINCELL_OUT/fio-$1.err" 2>&1 || { tail -20 "$LINCELL_OUT/fio-$1.err"; return 1; }
	jq -r --arg d "$1" '.jobs[] | .["job options"] as $o |
		(if ($o.rw | test("read")) then .read else .write end) as $s |
		if .error != 0 then error("\(.jobname): fio error \(.error)")
		elif $s.io_bytes == 0 then error("\(.jobname): no I/O")
		elif $o.bs == "1m" then "\($d).\(.jobname)_mb_per_s=\($s.bw_bytes / 1e5 | round / 10)"
		else "\($d).\(.jobname)_iops=\($s.iops | round)" end' "$LINCELL_OUT/fio-$1.json" >"$LINCELL_OUT/fio-$1.txt" ||
		return 1
	[ "$(grep -c . "$LINCELL_OUT/fio-$1.txt")" = "$(grep -c '^\[.*-j[0-9]*\]$' "$_jobs")" ] ||
		{ echo "fio reported $(grep -c . "$LINCELL_OUT/fio-$1.txt") jobs"; return 1; }
	cat "$LINCELL_OUT/fio-$1.txt"
}
