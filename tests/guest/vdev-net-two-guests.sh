#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# virtio-net between two guests, the Jailhouse ivshmem-net use case: guest
# a runs the backend, `lincell remote serve /dev/ivshmem0 --net tap:lct0`,
# on its ivshmem.ko device, with the TAP lct0 (10.78.0.1/24) inside a;
# guest b binds its device to vdev_remote and gets an interface from the
# kernel's own virtio_net (10.78.0.2/24). Checked: b's interface has the
# backend's MAC and carrier; a and b ping each other; TCP transfers both
# ways whose bytes are checked (SHA-256, tests/host/tcp-check.py, its
# server in a); the backend stops cleanly with nothing dropped by the
# source-MAC lock. On v1 a backend in a guest cannot write the layout
# header (read-only to users), so b names the device type with
# vdev_remote's v1_device_id=1 (virtio-net) and binds by driver_override.
# On ivshmem 2.0 the device process gives a's function the virtio-net
# back-end protocol (0xc001) and b's the front-end one (0x8001): ivshmem.ko
# takes a's, vdev_remote binds b's by ID, with no parameter.
# lincell-vm: guests=a,b ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=2:16M:0:0x8001 ivshmem2-vectors=4 ivshmem2-backend=a
. "$LINCELL_ROOT/virtme/guest-lib.sh"
lincell=$LINCELL_ROOT/target/debug/lincell
TCP="python3 $LINCELL_ROOT/tests/host/tcp-check.py"
PING="busybox ping"
MAC=02:6c:63:00:00:0b
A=10.78.0.1 B=10.78.0.2
out=$LINCELL_OUT

if [ "$LINCELL_GUEST" = a ]; then
	plan $((10 + (${LINCELL_IVSHMEM_REV:-1} == 2)))
	check "insmod ivshmem.ko" insmod "$(module_path ivshmem)"
	check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0
	if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then
		expect "its function is the virtio-net back-end" 0xc001 cat "$(ivshmem_pci)/ivshmem/protocol"
	fi
	check "TAP lct0 in guest a, $A/24, up" sh -c "ip tuntap add dev lct0 mode tap && ip addr add $A/24 dev lct0 && ip link set lct0 up"
	"$lincell" remote serve /dev/ivshmem0 --net tap:lct0 --mac $MAC 2>"$out/backend.log" &
	pid=$!
	check "the backend serves virtio-net on lct0 over /dev/ivshmem0" wait_for 30 grep -q "ready (own id" "$out/backend.log"
	: >"$out/tcp.log"
	$TCP serve $A 5001 "$out/tcp.log" 2>"$out/tcp-check.err" &
	srv=$!
	check "guest b's frontend is READY" wait_for 400 grep -qE "frontend (is )?peer [0-9]+" "$out/backend.log"
	check "ping guest b ($B) from a" wait_for 300 $PING -c 1 -W 2 $B
	# b's transfers end before it shuts down, which resets the device (a
	# guest does not see the other's output directory change).
	check "guest b finishes and its frontend leaves" wait_for 400 grep -q "left READY" "$out/backend.log"
	expect "the TCP checker in a received b's 4 MiB whole" "sink 4194304 " cat "$out/tcp.log"
	kill $srv 2>/dev/null
	kill -TERM $pid
	wait $pid
	check "the backend stops cleanly (exit 0)" test $? -eq 0
	expect "nothing was dropped by the source-MAC lock" "+ 0 (source MAC)" cat "$out/backend.log"
else
	# The interface with the backend's MAC, if there is one, and its carrier.
	netif() { mac_netif "$MAC"; }
	has_link() { mac_link_up "$MAC"; }
	tcp() {
		if _out=$($TCP "$2" $A 5001 "$3" 2>&1); then echo "# $_out"; ok "$1"; else not_ok "$1" "$_out"; fi
	}
	plan 9
	if [ "${LINCELL_IVSHMEM_REV:-1}" = 2 ]; then
		check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
	else
		check "insmod vdev_remote.ko v1_device_id=1" insmod "$(module_path vdev-remote)" v1_device_id=1
	fi
	pci=$(ivshmem_pci)
	check "vdev_remote has $(basename "$pci") (v${LINCELL_IVSHMEM_REV:-1}: by driver_override on v1, by ID on v2)" to_vdev_remote "$pci"
	check "an interface with guest a's backend's MAC appears" wait_for 400 netif
	# udev renames eth0 (enp0sN): its name once udev is done.
	udevadm settle -t 10 2>/dev/null
	ifc=$(netif)
	expect "virtio_net drives $ifc" "virtio_net" readlink "/sys/class/net/$ifc/device/driver"
	check "$ifc up with $B/24" mac_addr "$MAC" $B/24
	check "carrier on" wait_for 30 has_link
	check "ping guest a ($A) from b" wait_for 120 $PING -c 1 -W 2 $A
	tcp "TCP b to a: 4 MiB, SHA-256 checked by a" sink 4194304
	tcp "TCP a to b: 4 MiB, SHA-256 checked here" source 4194304
fi
