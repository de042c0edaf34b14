#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote under attack (issue 11, "chaos peer"): a host backend serves
# the disk while a hostile third peer (ivshmem-chaos, started by
# tests/host/vdev-backend.sh chaos) stores random values all over the
# shared memory — the v1 header, the state table, the virtio header, the
# shared rings, the bounce pool — rings random doorbells and stalls, for
# 60 s. Meanwhile the guest keeps reading and writing the disk. Pass: every
# I/O returns (error or data) within 30 s, the kernel logs no splat and no
# hung task (the harness checks the log), and once the backend is
# restarted honest the disk comes back and a write-then-verify succeeds.
# CHAOS_S (default 60) is the chaos's length: the soak benchmark
# (bench/soak-vdev-chaos.sh) sources this script with CHAOS_S=600 and
# reads the figures it prints (chaos.io_ok=N ...).
# lincell-vm: ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=3:16M:0:0x8002 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-backend.sh chaos guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
out=$LINCELL_OUT
CHAOS_S=${CHAOS_S:-60}
ko=$(module_path vdev-remote)
pci=$(ivshmem_pci)
attached() { dmesg | grep -c 'attached: virtio device id'; }
# The kernel log as it happens, for the host to read if the guest hangs.
dmesg -w > "$out/dmesg-live.txt" 2>&1 &

plan 6
check "insmod vdev_remote.ko request_timeout_ms=3000" insmod "$ko" request_timeout_ms=3000
to_vdev_remote "$pci"
check "the disk appears" wait_for 240 test -b /dev/vda

before=$(attached)
touch "$out/chaos-now"
# CHAOS_S + 10 s of I/O: the chaos lasts CHAOS_S on the host, started a
# moment after.
# `nocreat`: a dd that found the disk gone must fail, not create a regular
# file /dev/vda that later I/O would happily use.
start=$(date +%s) good=0 bad=0 gone=0 hung=0 i=0
while [ $(($(date +%s) - start)) -lt $((CHAOS_S + 10)) ]; do
	i=$((i + 1))
	if ! [ -b /dev/vda ]; then
		gone=$((gone + 1))
		sleep 0.5
		continue
	fi
	if [ $((i % 2)) = 0 ]; then
		timeout 30 dd if=/dev/vda of=/dev/null bs=64k count=4 skip=$((i % 256)) iflag=direct 2>/dev/null
	else
		timeout 30 dd if=/dev/urandom of=/dev/vda bs=64k count=4 seek=$((i % 256 + 256)) oflag=direct conv=notrunc,nocreat 2>/dev/null
	fi
	case $? in
	0) good=$((good + 1)) ;;
	124) hung=$((hung + 1)) ;;
	*) bad=$((bad + 1)) ;;
	esac
done
check "every I/O during the chaos returned within 30 s ($good ok, $bad failed, $hung hung; disk gone $gone times)" test "$hung" -eq 0
check "I/O failed with errors, or the disk was failed, while the chaos raged ($bad of $((good + bad)) failed, gone $gone times)" test $((bad + gone)) -gt 0
echo "chaos.io_ok=$good"; echo "chaos.io_failed=$bad"; echo "chaos.io_hung=$hung"; echo "chaos.disk_gone=$gone"
check "after the backend turned honest the disk comes back" \
	wait_for 180 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ] && timeout 10 dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null"
head -c 1048576 /dev/urandom > /tmp/pattern
check "write-then-verify of 1 MiB after the chaos" timeout 60 sh -c "
	test -b /dev/vda &&
	dd if=/tmp/pattern of=/dev/vda bs=64k seek=64 oflag=direct conv=notrunc,nocreat 2>/dev/null &&
	dd if=/dev/vda of=/tmp/back bs=64k skip=64 count=16 iflag=direct 2>/dev/null &&
	cmp /tmp/pattern /tmp/back"
dmesg | grep -E 'vdev_remote.*(failed|cannot attach|refused)' | sort | uniq -c | sort -rn | head -5 | sed 's/^/# /'
echo "chaos.attaches=$(($(attached) - before))"
