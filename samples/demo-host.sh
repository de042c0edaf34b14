#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of `make demo`: first an ivshmem echo peer (one session of
# doorbell round trips), then the RT loop's responder (the host cell: two
# runs), then the vdev-remote backend serving a 64 MiB file as a virtio
# disk; when the guest asks (net-now), a virtio-net backend instead, on a
# TAP (10.77.0.1/24) in a network namespace of its own, until the guest's
# demo is over.
L=$LINCELL_ROOT/target/debug/lincell
g=$LINCELL_OUT/../guest
. "$LINCELL_ROOT/tests/host/host-lib.sh"
"$L" ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 1 || exit 1
"$L" latency --respond --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 2 --priority 0 \
	--connect-timeout-ms 300000 2>"$LINCELL_OUT/responder.log" || exit 1
truncate -s 64M "$LINCELL_OUT/demo-disk.img"
"$L" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" --blk "$LINCELL_OUT/demo-disk.img" 2>"$LINCELL_OUT/backend.log" &
pid=$!
if wait_file net-now 300; then
	kill -TERM $pid
	wait $pid
	ns=lcdemo$$
	own_netns "$ns" && ip -n "$ns" tuntap add dev lct0 mode tap &&
		ip -n "$ns" addr add 10.77.0.1/24 dev lct0 && ip -n "$ns" link set lct0 up || exit 1
	ip netns exec "$ns" "$L" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" --net tap:lct0 \
		--mac 02:6c:63:00:00:02 2>"$LINCELL_OUT/net-backend.log" &
	pid=$!
fi
wait_file never 300
kill -TERM $pid
wait $pid
