#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Device lifetime against open files, live mappings and blocked readers:
# unbind with a mapping and an open fd, rmmod with an open fd, surprise
# removal while a reader is blocked in read(2), then rescan and rebind.
# The harness also fails the run on any kernel splat.
# lincell-vm: ivshmem-plain=1M cpus=2 timeout=240 boot=plain revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 11

L=$LINCELL_ROOT/target/debug/lincell
dev=$(ivshmem_pci)
name=$(basename "$dev")
insmod "$(module_path ivshmem)"

# A process that maps the R/W section, writes, waits for the device to be
# unbound by the parent, then touches the mapping again: it must die of
# SIGBUS (the mapping was zapped), and its ioctls must fail with ENODEV.
holder() {
	python3 - "$1" <<'PY'
import errno, fcntl, mmap, os, signal, struct, sys, time
fd = os.open("/dev/ivshmem0", os.O_RDWR)
info = bytearray(80)
fcntl.ioctl(fd, 0x8050be00, info)
rw_off = struct.unpack("6I7Q", info)[9]
m = mmap.mmap(fd, 4096, offset=rw_off)
m[0:4] = b"live"
open(sys.argv[1], "w").write("mapped\n")
while os.path.exists(sys.argv[1]):
    time.sleep(0.05)
try:
    fcntl.ioctl(fd, 0x8004be03, bytearray(4))
    print("ioctl after unbind: succeeded")
except OSError as e:
    print("ioctl after unbind:", errno.errorcode[e.errno])
sys.stdout.flush()
m[0:4] = b"dead"          # must raise SIGBUS
print("write after unbind: succeeded")
PY
}

flag=$LINCELL_OUT/holder.flag
holder "$flag" >"$LINCELL_OUT/holder.out" 2>&1 &
hpid=$!
check "a process maps the device" wait_for 20 test -s "$flag"
check "unbind with an open file and a live mapping" \
	sh -c "echo $name > /sys/bus/pci/drivers/ivshmem/unbind"
rm -f "$flag"
wait $hpid
hrc=$?
check "ioctl on the orphaned file fails with ENODEV" grep -q "ioctl after unbind: ENODEV" "$LINCELL_OUT/holder.out"
check "the zapped mapping faults (SIGBUS, exit 135)" test "$hrc" = 135

check "bind again gives a new device node" \
	sh -c "echo $name > /sys/bus/pci/drivers/ivshmem/bind && test -e /sys/bus/pci/devices/$name/ivshmem/id"
node=/dev/$(ls /sys/bus/pci/devices/"$name"/misc)

# rmmod is refused while a file is open (the fops hold the module).
exec 3<"$node"
check "rmmod with an open file is refused" sh -c "! rmmod ivshmem 2>/dev/null"
exec 3<&-

# Surprise removal while a reader is blocked in read(2): it has the device
# open and sleeps (TCG makes process start-up slow, so wait for both).
"$L" ivshmem wait "$node" --timeout 60000 >"$LINCELL_OUT/wait.out" 2>&1 &
wpid=$!
blocked() {
	ls -l /proc/$wpid/fd 2>/dev/null | grep -q "$node" &&
		grep -q ') S ' /proc/$wpid/stat && test ! -s "$LINCELL_OUT/wait.out"
}
check "the reader is blocked in read(2)" wait_for 20 blocked
start=$(date +%s)
check "remove the PCI device under the blocked reader" sh -c "echo 1 > $dev/remove"
wait $wpid
wrc=$?
check "the blocked reader wakes with an error within 5 s" \
	sh -c "test $wrc -ne 0 && test \$((\$(date +%s) - $start)) -le 5 && grep -qi 'no such device' $LINCELL_OUT/wait.out"
check "rmmod after removal" rmmod ivshmem
check "rescan and reload bind the device again" \
	sh -c "echo 1 > /sys/bus/pci/rescan && insmod $(module_path ivshmem) && wait_for_dev() { test -e /sys/bus/pci/devices/$name/ivshmem/id; } && wait_for_dev && rmmod ivshmem"
