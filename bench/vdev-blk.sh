#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `make bench`: vdev-remote disk vs QEMU's own virtio-blk-pci, same backing
# file, same guest, same run.
#
# Creates a 256 MiB backing file, starts the project's ivshmem-server (32 MiB,
# 4 vectors) and a host `lincell remote serve --blk FILE` peer, and boots one
# TCG guest with an ivshmem-doorbell device (bound to vdev_remote) and a
# virtio-blk-pci drive on the same file. In the guest, `lincell remote
# bench` measures each disk with direct I/O, alternating native / remote per
# pattern: sequential read and write (1 MiB requests, MB/s) and 4 KiB random
# read and write (IOPS, 1 and 4 jobs). Prints both and the remote/native
# ratio of each pattern. The disks write to disjoint halves of the file.
#
#   KDIR=<kernel build> LINCELL_VM=<lincell-vm> sh bench/vdev-blk.sh [SECONDS]
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-5}
. "$root/bench/lib.sh"
bench_init bench-vdev
disk=$work/disk.img
truncate -s 256M "$disk"

start_server "$sock" "$work" 32M 4
"$lincell" remote serve --socket "$sock" --blk "$disk" 2>"$work/backend.log" &
pids="$pids $!"

echo "==> booting a guest (TCG, 2 vCPUs); ${secs}s per pattern and disk"
"$vm" --kdir "$kdir" run --cpus 2 --timeout 900 --rwdir "$out" \
	"--qemu-opts=-chardev socket,path=$sock,id=lincellivs -device ivshmem-doorbell,chardev=lincellivs,vectors=4 -drive file=$disk,if=none,id=lincellnative,format=raw -device virtio-blk-pci,drive=lincellnative" \
	-- sh "$root/bench/guest/vdev-blk.sh" "$lincell" "$out" "$secs" >"$work/guest.txt" 2>&1
rc=$?
if [ $rc != 0 ]; then
	echo "the guest failed (exit $rc):"
	tail -30 "$work/guest.txt"
	tail -5 "$work/backend.log"
	exit 1
fi

# value DISK PATTERN FIELD
value() { sed -n "s/^$1 $2 bench .* $3=\([0-9.]*\).*/\1/p" "$out/results.txt" | head -1; }
echo
echo "vdev-remote disk vs virtio-blk-pci, same file, same guest (TCG)"
printf '%-22s %12s %12s %8s\n' pattern native remote ratio
for p in "read-1M mb_per_s MB/s" "write-1M mb_per_s MB/s" "randread-4k iops IOPS" "randwrite-4k iops IOPS" "randread-4k-j4 iops IOPS"; do
	set -- $p
	n=$(value native "$1" "$2") r=$(value remote "$1" "$2")
	awk -v p="$1 ($3)" -v n="$n" -v r="$r" 'BEGIN {
		if (n <= 0) { printf "%-22s %12s %12s %8s\n", p, n, r, "n/a"; exit }
		printf "%-22s %12.1f %12.1f %7.2fx\n", p, n, r, r / n }'
done
