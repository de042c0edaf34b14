#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of tests/guest/vdev-net-host.sh: a network namespace with a
# persistent TAP (lct0, 10.77.0.1/24, up) and a TCP checker listening on it
# (tests/host/tcp-check.py serve, port 5001), and `lincell remote serve
# --net tap:lct0` run inside the namespace as an ivshmem-server peer. It
# follows the guest's script through marker files in the guest's output
# directory:
#   kill-now     kill the backend (SIGKILL) while the guest transfers
#   restart-now  start it again
#   rate-now     stop it (SIGTERM) and start it with --rate-limit 500k
# and stops it cleanly (SIGTERM, exit 0 expected) once the guest's script
# is done; then checks the checker's log (the guest's transfers arrived
# whole, before and after the restart) and the backend's stop line (the
# frames the guest sent with a changed MAC were dropped by the source-MAC
# lock and counted, and frames over the rate limit too). The namespace goes away at exit.
# usage: vdev-net.sh GUEST_NAME   (TAP on stdout)
guest=$1
lincell=${LINCELL:-$LINCELL_ROOT/target/debug/lincell}
g=$LINCELL_OUT/../$guest
. "$LINCELL_ROOT/tests/host/host-lib.sh"
log=$LINCELL_OUT/backend.log
tcplog=$LINCELL_OUT/tcp.log
ns=lcnet$$
mac=02:6c:63:00:00:02
pid= srv=

serve() {
	ip netns exec "$ns" "$lincell" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" \
		--net tap:lct0 --mac "$mac" "$@" 2>>"$log" &
	pid=$!
}

echo "TAP version 13"
echo "1..8"
if own_netns "$ns" && ip -n "$ns" tuntap add dev lct0 mode tap &&
	ip -n "$ns" addr add 10.77.0.1/24 dev lct0 && ip -n "$ns" link set lct0 up; then
	ok "network namespace $ns with TAP lct0 (10.77.0.1/24)"
else
	not_ok "network namespace with a TAP" "ip netns/tuntap failed"
fi
: >"$tcplog"
ip netns exec "$ns" python3 "$LINCELL_ROOT/tests/host/tcp-check.py" serve 10.77.0.1 5001 "$tcplog" \
	2>>"$LINCELL_OUT/tcp-check.err" &
srv=$!
serve
if wait_file kill-now 600; then
	kill -KILL "$pid"; wait "$pid" 2>/dev/null
	ok "backend killed (SIGKILL) while the guest transfers"
	if wait_file restart-now 300; then
		serve
		ok "backend restarted"
	else
		not_ok "backend restarted" "guest never asked"
	fi
else
	not_ok "backend killed while the guest transfers" "guest never asked"
	not_ok "backend restarted" "guest never asked"
fi
if wait_file rate-now 600; then
	kill -TERM "$pid" 2>/dev/null; wait "$pid"
	serve --rate-limit 500k
	ok "backend restarted with --rate-limit 500k"
else
	not_ok "backend restarted with --rate-limit 500k" "guest never asked"
fi
# Until the guest is done, then a clean stop.
wait_file never 900
kill -TERM "$pid" 2>/dev/null
wait "$pid"; rc=$?
pid=
if [ $rc = 0 ]; then ok "backend exits 0 on SIGTERM at the end"
else not_ok "backend exits 0 on SIGTERM at the end" "exit $rc; log: $(tail -5 "$log")"; fi
# The guest sends 4 MiB before the kill and 4 MiB after the restart.
whole=$(grep -c "^sink 4194304 " "$tcplog")
if [ "$whole" -ge 2 ]; then ok "the TCP checker received the guest's 4 MiB whole, before and after the restart"
else not_ok "the TCP checker received the guest's 4 MiB twice" "$(cat "$tcplog" "$LINCELL_OUT/tcp-check.err" 2>&1)"; fi
# The guest's pings (or ARP requests) with a changed MAC: at least one.
spoofed=$(sed -n 's/.* \([0-9]*\) (source MAC).*/\1/p' "$log" | sort -n | tail -1)
if [ "${spoofed:-0}" -ge 1 ] && grep -q "is not the device's MAC" "$log"; then
	ok "the source-MAC lock dropped and counted $spoofed frames of the guest's changed MAC"
else
	not_ok "the source-MAC lock dropped and counted the guest's spoofed frames" "$(grep -E "source MAC|device's MAC" "$log" | tail -3)"
fi
# The guest's TCP transfer through the limit overran it at some point.
limited=$(sed -n 's/.* \([0-9]*\) (rate limit).*/\1/p' "$log" | sort -n | tail -1)
if [ "${limited:-0}" -ge 1 ] && grep -q "transmit limited to 500000 B/s" "$log"; then
	ok "the rate limit (500000 B/s) dropped and counted $limited frames"
else
	not_ok "the rate limit dropped and counted frames" "$(grep -E "rate limit|limited" "$log" | tail -3)"
fi
