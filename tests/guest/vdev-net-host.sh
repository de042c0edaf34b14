#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# virtio-net over vdev_remote with a host backend: the guest's QEMU
# ivshmem-doorbell device (4 vectors, 16 MiB) goes to vdev_remote, and
# `lincell remote serve --net tap:lct0` runs on the host inside a network
# namespace whose TAP is 10.77.0.1/24 (tests/host/vdev-net.sh, whose TAP
# counts too). The kernel's own, unmodified virtio_net drives the
# interface. Checked: the interface has the backend's MAC, MTU and carrier;
# ping (also full-MTU and fragmented) to the host side; TCP transfers both
# ways whose bytes are checked (SHA-256, tests/host/tcp-check.py); the
# backend killed in the middle of a transfer turns the carrier off while
# the interface stays (the same ifindex, as with a cable pulled out: the
# failed device is kept link down) and the transfer does not complete; a
# restarted backend brings the interface back by itself (a new device
# with the same MAC replaces the kept one), and ping and TCP work again. The device's source-MAC lock: with its address changed
# (`ip link set dev X address ...`) the guest can no longer reach the host
# (its frames are dropped by the backend, which counts them: the host side
# checks the backend's stop line), and with the address set back it can.
# No kernel warning anywhere (the harness checks every guest's
# log).
# On an ivshmem 2.0 device it runs as a virtio-net frontend (protocol
# 0x8001) bound by ID. (Two causes of an earlier v2 failure are fixed in
# vdev_remote: on PREEMPT_RT every transmit kick waited up to 2 s for the
# backend to take the frame, and a failed device then completed receive
# buffers empty in a loop that stalled a CPU.)
# lincell-vm: ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=2:16M:0:0x8001 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-net.sh guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
MAC=02:6c:63:00:00:02
HOST=10.77.0.1
ADDR=10.77.0.2/24
TCP="python3 $LINCELL_ROOT/tests/host/tcp-check.py"
PING="busybox ping"

# The interface with the backend's MAC, if there is one, and its carrier.
netif() { mac_netif "$MAC"; }
has_link() { mac_link_up "$MAC"; }
# The interface of index $ifindex is still there, carrier off.
kept_down() {
	_i=$(mac_netif "$MAC") && [ "$(cat "/sys/class/net/$_i/ifindex")" = "$ifindex" ] &&
		[ "$(cat "/sys/class/net/$_i/carrier" 2>/dev/null)" = 0 ]
}
bring_up() { mac_addr "$MAC" $ADDR; }
attached() { dmesg | grep -c 'attached: virtio device id'; }
fails() { ! "$@"; }
# tcp NAME MODE BYTES: a checked transfer (ok/not ok), its rate as a comment.
tcp() {
	if _out=$($TCP "$2" $HOST 5001 "$3" 2>&1); then echo "# $_out"; ok "$1"; else not_ok "$1" "$_out"; fi
}

plan 29
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(ivshmem_pci)
check "vdev_remote has $(basename "$pci") (v${LINCELL_IVSHMEM_REV:-1}: by driver_override on v1, by ID on v2)" to_vdev_remote "$pci"
check "a network interface with the backend's MAC appears once it is READY" wait_for 240 netif
# udev renames eth0 (enp0sN): its name once udev is done.
udevadm settle -t 10 2>/dev/null
ifc=$(netif)
expect "virtio_net drives $ifc" "virtio_net" readlink "/sys/class/net/$ifc/device/driver"
expect "its MTU is the TAP's (1500)" "1500" cat "/sys/class/net/$ifc/mtu"
check "$ifc up with $ADDR" bring_up
check "carrier on (VIRTIO_NET_F_STATUS, link up)" wait_for 30 has_link
check "ping $HOST" $PING -c 3 -W 10 $HOST
check "ping with full-MTU frames (1472-byte payload)" $PING -c 2 -W 10 -s 1472 $HOST
check "ping with fragmented 4000-byte datagrams" $PING -c 2 -W 10 -s 4000 $HOST
tcp "TCP guest to host: 4 MiB, SHA-256 checked by the host" sink 4194304
tcp "TCP host to guest: 4 MiB, SHA-256 checked here" source 4194304

# The backend killed while a long transfer runs.
ifindex=$(cat "/sys/class/net/$(netif)/ifindex")
$TCP sink $HOST 5001 2000000000 >/tmp/long.out 2>&1 &
long=$!
sleep 3
to_host kill-now
check "carrier off after the kill, the interface kept (ifindex $ifindex)" wait_for 120 kept_down
sleep 2
if kill -0 $long 2>/dev/null; then
	ok "the transfer stalls (still unfinished)"
else
	wait $long
	rc=$?
	if [ $rc != 0 ]; then ok "the transfer fails ($(tail -1 /tmp/long.out))"; else not_ok "the transfer stalls or fails" "it completed: $(cat /tmp/long.out)"; fi
fi
kill $long 2>/dev/null
wait $long 2>/dev/null
check "still kept, carrier off, while the backend is away" kept_down
check "the kernel says it keeps the device link down" sh -c "dmesg | grep -q 'kept, link down, until a backend replaces it'"
# The frontend sees the backend leave READY (the server clears a dead
# peer's state) or, if a transmit kick comes first, the output not taken.
check "the kernel says why ($(dmesg | grep -o 'backend (peer [0-9]*) failed: .*' | tail -1))" \
	sh -c "dmesg | grep -qE 'backend \(peer [0-9]+\) failed: (it left READY|it did not take output)'"
before=$(attached)
back() { [ "$(attached)" -gt "$before" ] && netif; }
up_again() { bring_up && wait_for 30 has_link; }
to_host restart-now
check "a restarted backend brings the interface back by itself" wait_for 180 back
check "the interface up with $ADDR again, carrier on" up_again
check "ping $HOST after the restart" wait_for 60 $PING -c 1 -W 2 $HOST
tcp "TCP guest to host after the restart: 4 MiB, SHA-256 checked" sink 4194304

# The source-MAC lock (on by default): a changed address cuts the guest off.
ifc=$(netif)
check "$ifc's MAC changed to 02:6c:63:00:00:99 (the device's is $MAC)" ip link set dev "$ifc" address 02:6c:63:00:00:99
check "ping $HOST fails with the changed MAC (the backend drops the frames)" fails $PING -c 3 -W 2 $HOST
check "$ifc's MAC set back to $MAC" ip link set dev "$ifc" address $MAC
check "ping $HOST works again with the device's MAC" wait_for 30 $PING -c 1 -W 2 $HOST

# The rate limit: the host restarts the backend with --rate-limit 500k
# (500 000 bytes/s, a 50 000-byte bucket).
before=$(attached)
to_host rate-now
check "the backend restarted with --rate-limit 500k brings the interface back" wait_for 180 back
check "the interface up with $ADDR again, carrier on" up_again
check "ping $HOST through the rate-limited device" wait_for 60 $PING -c 1 -W 2 $HOST
# 2 MiB at 500 000 bytes/s after a 50 000-byte burst: at least 4.09 s.
if _out=$($TCP sink $HOST 5001 2097152 2>&1); then
	secs=$(echo "$_out" | sed -n 's/.* in \([0-9.]*\) s,.*/\1/p')
	echo "# $_out"
	if awk "BEGIN { exit !(${secs:-0} >= 4.0) }"; then ok "TCP through the rate limit: 2 MiB checked, ${secs} s (>= 4.0 s at 500 kB/s)"
	else not_ok "TCP through the rate limit takes >= 4.0 s" "$_out"; fi
else
	not_ok "TCP through the rate limit: 2 MiB checked" "$_out"
fi
