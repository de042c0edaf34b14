#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# virtio-net over ivshmem vs QEMU's own virtio-net-pci: TCP throughput and ping latency, guest-guest and guest-host
#
# Two TCG guests, a and b, each with an ivshmem-doorbell device (4
# vectors, 16 MiB) and QEMU's own virtio-net-pci on a TAP (`net=tap`); the
# host peer (tests/host/vdev-net-bench.sh) bridges both TAPs in its network
# namespace (10.79.0.1, a .2, b .3): the native baseline, the same
# endpoints through QEMU's device. Over ivshmem:
# - guest to guest: a runs `lincell remote serve /dev/ivshmem0 --net
#   tap:lct0` with its TAP lct0 (10.78.0.1), b's vdev_remote gets an
#   interface from virtio_net (10.78.0.2); a measures to b;
# - guest to host: then a stops its backend, the host's serves b from the
#   TAP in its namespace (10.77.0.1), b's interface comes back (10.77.0.2)
#   and b measures to the host.
# Each measurement: iperf3 TCP for SECS (5) s each way (tx: the measuring
# guest sends, rx: it receives, `-R`), Mbit/s as the receiver counted;
# then PINGS (200) busybox pings 10 ms apart, round trip avg/p50/p99 in
# µs. Tables `guests` (a <-> b) and `host` (b <-> host), rows `remote`
# (virtio-net over ivshmem) and `native` (virtio-net-pci), the ratio
# remote/native (throughput: higher is better; latency: lower is).
# Table `backend`: per backend (a's for guests, the host's for host) its
# threads and how much it batches: virtio chains served per wake-up of
# its event loop and per doorbell to the frontend, CPU seconds. iperf3's
# JSON reports stay in the guests' output directories. Release builds.
# lincell-vm: guests=a,b ivshmem-doorbell=4:16M net=tap cpus=2 timeout=1200
# lincell-vm: host=sh tests/host/vdev-net-bench.sh
# lincell-vm: ratio=remote/native
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/release/lincell
FIG="python3 $LINCELL_ROOT/bench/net-figures.py"
PING="busybox ping"
SECS=5
PINGS=200
out=$LINCELL_OUT
# The backends' MACs: guest a's, the host's.
AMAC=02:6c:63:00:00:0b HMAC=02:6c:63:00:00:02

# measure GROUP ROW PEER: iperf3 both ways and pings to PEER, as
# GROUP.ROW.tx_mbit_s, rx_mbit_s, ping_avg_us, ping_p50_us, ping_p99_us,
# ping_lost.
measure() {
	g=$1 r=$2 peer=$3
	for dir in tx rx; do
		flag=
		[ $dir = rx ] && flag=-R
		json=$out/iperf3-$g-$r-$dir.json
		iperf3 -c "$peer" -t $SECS $flag -J >"$json" 2>"$json.err" ||
			{ cat "$json" "$json.err"; return 1; }
		$FIG iperf "$g.$r.${dir}_mbit_s" "$json" || return 1
	done
	$PING -c $PINGS -i 0.01 -W 5 "$peer" >"$out/ping-$g-$r.txt" 2>&1
	$FIG ping "$g.$r.ping" "$out/ping-$g-$r.txt"
}
# answer PEER...: an iperf3 server answers at each PEER (after retries
# for up to 120 s; each try a 1-s transfer, which warms the path up).
answer() {
	for _p in "$@"; do wait_for 120 iperf3 -c "$_p" -t 1 || return 1; done
}
# up_with MAC ADDR/LEN: the interface with MAC up with ADDR/LEN, carrier on.
up_with() { mac_addr "$1" "$2" && wait_for 30 mac_link_up "$1"; }

if [ "$LINCELL_GUEST" = a ]; then
	plan 10
	check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
	check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0
	check "native virtio-net-pci ($LINCELL_NET_MAC) up with 10.79.0.2/24" mac_addr "$LINCELL_NET_MAC" 10.79.0.2/24
	check "TAP lct0 with 10.78.0.1/24, up" sh -c "ip tuntap add dev lct0 mode tap && ip addr add 10.78.0.1/24 dev lct0 && ip link set lct0 up"
	"$L" remote serve /dev/ivshmem0 --net tap:lct0 --mac $AMAC 2>"$out/backend.log" &
	pid=$!
	check "the backend serves b on lct0 (guest b's frontend READY)" wait_for 400 grep -qE "frontend (is )?peer [0-9]+" "$out/backend.log"
	check "b's iperf3 server answers, over ivshmem and natively" answer 10.78.0.2 10.79.0.3
	cp "/proc/$pid/status" "$out/backend.log.threads"
	results "guest to guest over vdev-remote (a <-> b)" measure guests remote 10.78.0.2
	results "guest to guest over QEMU's virtio-net-pci, through the host's bridge" measure guests native 10.79.0.3
	kill -TERM $pid
	wait $pid
	check "the backend stops cleanly (exit 0)" test $? -eq 0
	results "guest a's backend's figures" $FIG backend backend.guests "$out/backend.log"
	to_host backend-stopped
else
	plan 10
	check "insmod vdev_remote.ko v1_device_id=1" insmod "$(module_path vdev-remote)" v1_device_id=1
	pci=$(ivshmem_pci)
	check "vdev_remote has $(basename "$pci") (by driver_override)" to_vdev_remote "$pci"
	iperf3 -s -D
	check "native virtio-net-pci ($LINCELL_NET_MAC) up with 10.79.0.3/24" mac_addr "$LINCELL_NET_MAC" 10.79.0.3/24
	check "an interface from guest a's backend appears" wait_for 400 mac_netif $AMAC
	check "it is up with 10.78.0.2/24, carrier on" up_with $AMAC 10.78.0.2/24
	# a measures, then stops its backend; the host's comes.
	check "an interface from the host's backend appears" wait_for 900 mac_netif $HMAC
	check "it is up with 10.77.0.2/24, carrier on" up_with $HMAC 10.77.0.2/24
	check "the host's iperf3 server answers, over ivshmem and natively" answer 10.77.0.1 10.79.0.1
	to_host measuring
	results "guest to host over vdev-remote (b <-> host)" measure host remote 10.77.0.1
	results "guest to host over QEMU's virtio-net-pci" measure host native 10.79.0.1
fi
