#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of bench/vdev-net.sh, in a network namespace of its own:
# - the native side: the TAPs QEMU made for guests a and b (`net=tap`,
#   LINCELL_NET_TAPS) moved into the namespace and joined in bridge lcbr,
#   10.79.0.1/24 (a is 10.79.0.2, b 10.79.0.3);
# - the vdev-remote side: a persistent TAP lct0, 10.77.0.1/24, which
#   `lincell remote serve --net tap:lct0` (release build) serves to guest
#   b's frontend once guest a has stopped its own backend (a's marker
#   backend-stopped): b's interface then comes back with this backend's
#   MAC;
# - an iperf3 server (port 5201) for b's transfers on both.
# Once b is done, the backend stops (SIGTERM, exit 0 expected) and its
# figures are printed (backend.host.*: threads, chains served per wake-up
# and per doorbell, CPU time; bench/net-figures.py).
# usage: vdev-net-bench.sh   (TAP and figures on stdout)
lincell=${LINCELL:-$LINCELL_ROOT/target/release/lincell}
. "$LINCELL_ROOT/tests/host/host-lib.sh"
log=$LINCELL_OUT/backend.log
ns=lcnb$$
pid=

echo "TAP version 13"
echo "1..5"
if own_netns "$ns" && ip -n "$ns" tuntap add dev lct0 mode tap &&
	ip -n "$ns" addr add 10.77.0.1/24 dev lct0 && ip -n "$ns" link set lct0 up &&
	ip -n "$ns" link add lcbr type bridge && ip -n "$ns" addr add 10.79.0.1/24 dev lcbr &&
	ip -n "$ns" link set lcbr up; then
	ok "network namespace $ns: TAP lct0 (10.77.0.1/24), bridge lcbr (10.79.0.1/24)"
else
	not_ok "network namespace with a TAP and a bridge" "ip netns/tuntap/link failed"
fi
# QEMU creates its TAP when it starts, which may be after this script.
attach() { # IFNAME
	i=0
	while [ $i -lt 600 ] && [ ! -e "/sys/class/net/$1" ]; do sleep 0.1; i=$((i + 1)); done
	ip link set "$1" netns "$ns" && ip -n "$ns" link set "$1" master lcbr up
}
why=
for t in $LINCELL_NET_TAPS; do
	attach "${t#*=}" || why="$why ${t%%=*}'s TAP ${t#*=} not attached;"
done
if [ -n "$LINCELL_NET_TAPS" ] && [ -z "$why" ]; then
	ok "QEMU's TAPs ($LINCELL_NET_TAPS) in bridge lcbr"
else
	not_ok "QEMU's TAPs in bridge lcbr" "${why:-no LINCELL_NET_TAPS (net=tap)}"
fi
ip netns exec "$ns" iperf3 -s >"$LINCELL_OUT/iperf3-server.log" 2>&1 &

g=$LINCELL_OUT/../a
if wait_file backend-stopped 900; then
	ip netns exec "$ns" "$lincell" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" \
		--net tap:lct0 --mac 02:6c:63:00:00:02 2>"$log" &
	pid=$!
	ok "guest a's backend stopped; this one serves b on lct0"
else
	not_ok "guest a's backend stopped" "guest a never said so"
fi
g=$LINCELL_OUT/../b
# While b measures: the backend's threads, for the figures.
wait_file measuring 900 && sleep 1
[ -n "$pid" ] && cp "/proc/$pid/status" "$log.threads"
wait_file never 900
if [ -n "$pid" ]; then
	kill -TERM "$pid"
	wait "$pid"; rc=$?
	if [ $rc = 0 ]; then ok "the backend exits 0 on SIGTERM"
	else not_ok "the backend exits 0 on SIGTERM" "exit $rc; log: $(tail -5 "$log")"; fi
	if out=$(python3 "$LINCELL_ROOT/bench/net-figures.py" backend backend.host "$log" 2>&1); then
		echo "$out"
		ok "the host backend's figures"
	else
		not_ok "the host backend's figures" "$out"
	fi
else
	not_ok "the backend exits 0 on SIGTERM" "it never started"
	not_ok "the host backend's figures" "it never started"
fi
