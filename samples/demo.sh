#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make demo`: a guest and a host process share memory and doorbells
# through ivshmem (QEMU ivshmem-doorbell + the project's ivshmem-server);
# the guest loads the lincell modules and shows what they report, runs the
# real-time loop across cells on a housekeeping CPU and on a CPU isolated
# by cpu_isolate (under load, against a responder in the host cell), then
# hands the same device to vdev_remote and gets a virtio disk served by the
# host process (samples/demo-host.sh), and at last a network link: the
# host process serves virtio-net from a TAP in a network namespace (the
# host cell, 10.77.0.1) over the same device, and the two cells ping each
# other. It ends with the RT loop's summary.
# lincell-vm: ivshmem-doorbell=4:16M cpus=2 timeout=400
# lincell-vm: host=sh samples/demo-host.sh
L=$LINCELL_ROOT/target/debug/lincell
. "$LINCELL_ROOT/virtme/guest-lib.sh"
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug

echo "== Loading the lincell modules (KUnit runs their suites now)"
for ko in "$LINCELL_ROOT"/drivers/*/*.ko; do
	echo "   insmod $(basename "$ko")"
	insmod "$ko" || exit 1
done
for r in /sys/kernel/debug/kunit/lincell_*/results; do
	echo "   $(basename "$(dirname "$r")"): $(grep -E '^# Totals' "$r" | sed 's/^# //')"
done

echo
echo "== ivshmem devices"
"$L" ivshmem list || exit 1
echo
"$L" ivshmem info /dev/ivshmem0 || exit 1

echo
echo "== Shared memory: write into the R/W section, read it back through a new mapping"
"$L" ivshmem poke /dev/ivshmem0 rw+0x1000 "hello from $(hostname)" || exit 1
"$L" ivshmem peek /dev/ivshmem0 rw+0x1000 24 || exit 1

echo
echo "== Doorbells: 1000 round trips guest -> host peer -> guest (blocking read)"
peer=$("$L" ivshmem info /dev/ivshmem0 | awk '/own id/ {print ($3 == 0) ? 1 : 0; exit}')
"$L" ivshmem pingpong /dev/ivshmem0 --peer "$peer" --vector 1 --count 1000 --mode read --stop || exit 1

echo
echo "== sysfs"
for d in /sys/bus/pci/devices/*/ivshmem; do
	echo "   $d: id=$(cat "$d/id") vectors=$(cat "$d/vectors") peer_states=$(cat "$d/peer_states")"
done

echo
echo "== CPU isolation: isolate CPU 1, measure noise with the housekeeping CPU loaded, release"
"$L" isolate 1 || exit 1
"$L" status
"$L" noise --duration-ms 1000 --load || exit 1
"$L" release 1 || exit 1

echo
echo "== Real time across cells: the RT loop (SCHED_FIFO 80, every 1 ms) against the host cell,"
echo "   first on housekeeping CPU 0, then on CPU 1 isolated by cpu_isolate; stress-ng loads CPU 0 throughout"
plot=$LINCELL_OUT/rtt.svg
"$L" latency /dev/ivshmem0 --compare-isolated 1 --load --count 3000 --plot "$plot" \
	--connect-timeout-ms 120000 >"$LINCELL_OUT/rt.txt"
rc=$?
cat "$LINCELL_OUT/rt.txt"
[ $rc = 0 ] || exit 1

echo
echo "== vdev-remote: the same ivshmem device given to vdev_remote; the host process now serves a disk"
pci=$(readlink -f /sys/class/misc/ivshmem0/device 2>/dev/null)
[ -d "$pci" ] || pci=$(for d in /sys/bus/pci/devices/*; do [ "$(cat "$d/device")" = 0x1110 ] && echo "$d"; done | head -1)
bdf=$(basename "$pci")
echo vdev_remote > "$pci/driver_override"
echo "$bdf" > "$pci/driver/unbind"
echo "$bdf" > /sys/bus/pci/drivers_probe
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vda ] || { echo "no disk appeared"; dmesg | grep vdev_remote; exit 1; }
dmesg | grep -E "vdev_remote|virtio_blk" | sed 's/^/   /'
echo "   /dev/vda: $(blockdev --getsize64 /dev/vda) bytes, driven by the kernel's own virtio_blk"
echo "hello through virtio over ivshmem" | dd of=/dev/vda bs=512 conv=sync,nocreat oflag=direct 2>/dev/null
echo "   read back: $(dd if=/dev/vda bs=512 count=1 iflag=direct 2>/dev/null | tr -d '\0')"

echo
echo "== virtio-net over ivshmem: the host process now serves a network link from a TAP in the host cell"
mac=02:6c:63:00:00:02
to_host net-now
wait_for 120 mac_netif $mac || { echo "no network interface appeared"; dmesg | grep vdev_remote; exit 1; }
mac_addr $mac 10.77.0.2/24 || exit 1
wait_for 30 mac_link_up $mac || { echo "no carrier"; exit 1; }
ifc=$(mac_netif $mac)
echo "   $ifc: MAC $mac, driven by the kernel's own $(basename "$(readlink "/sys/class/net/$ifc/device/driver")"), 10.77.0.2/24"
wait_for 30 busybox ping -c 1 -W 1 10.77.0.1
busybox ping -c 5 -i 0.2 10.77.0.1 | sed 's/^/   /'

echo
echo "== The product: an RT loop on an isolated CPU talking to another cell over ivshmem"
grep -E '^(RT loop|rtt p50|rtt p99 |rtt max|rtt [0-9>]|overruns|lost)' "$LINCELL_OUT/rt.txt" | sed 's/^/   /'
echo "   round-trip histograms (SVG): $(grep '^plots:' "$LINCELL_OUT/rt.txt" | sed 's/^plots: //')"
