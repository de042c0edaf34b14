#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev-remote: a remote virtio disk vs QEMU's own virtio-blk-pci, measured by fio, and the copy floor
#
# One guest with two disks on the same 256 MiB backing file (`disk=`, made
# by the harness): QEMU's virtio-blk-pci (the native baseline) and a
# vdev-remote disk served by a host `lincell remote serve --blk` peer
# (tests/host/vdev-backend.sh serve) through an ivshmem-doorbell device
# (4 vectors, 32 MiB). Release builds.
#
# First the copy floor: ivshmem.ko takes the device for a moment and
# `lincell ivshmem copybench` measures how fast this guest copies between
# its RAM and the R/W section (in the second half, where vdev_remote's
# bounce pool will be; the bytes are put back), 1 MiB and 4 KiB at a time,
# with the C library's memcpy, `rep movsb` and the 8-byte `movq` loop of
# the kernel's memcpy on CPUs without FSRM; group `copy`. Then the
# device goes to vdev_remote and fio runs the matrix of
# bench/fio/vdev-blk.fio (direct I/O; sequential 1 MiB at queue depth 1
# and 16, random 4 KiB at 1 and 32, 1 and 4 jobs) on the native disk, then
# on the remote one, each on its own half of the file. Rows: `native`,
# `remote`, and `floor`, what the copy rate allows for each job (the
# faster method's rate: section to RAM for reads, RAM to section for
# writes, in the job's request size; MB/s for 1 MiB, IOPS for 4 KiB);
# the harness adds remote/native and remote/floor. fio's JSON goes to
# LINCELL_OUT (the harness copies it under target/bench/).
# lincell-vm: ivshmem-doorbell=4:32M disk=256M cpus=2 timeout=900
# lincell-vm: host=LINCELL=target/release/lincell sh tests/host/vdev-backend.sh serve guest
# lincell-vm: ratio=remote/native ratio=remote/floor
. "$LINCELL_ROOT/virtme/guest-lib.sh"
L=$LINCELL_ROOT/target/release/lincell
HALF=$((128 << 20))

# The disks: ours hangs off the ivshmem function, the other vd* is QEMU's.
disk_of() { # remote|native
	for b in /sys/block/vd*; do
		[ -e "$b" ] || continue
		if readlink -f "$b/device" | grep -q "/$(basename "$pci")/"; then
			[ "$1" = remote ] && echo "/dev/${b##*/}"
		else
			[ "$1" = native ] && echo "/dev/${b##*/}"
		fi
	done | head -1
}
both_disks() { [ -n "$(disk_of remote)" ] && [ -n "$(disk_of native)" ]; }

# copy CHUNK: copybench through /dev/ivshmem0, CHUNK bytes a copy;
# copy.METHOD.DIRECTION_CHUNK_mb_per_s=VALUE (DIRECTION to_shm, from_shm, ram),
# also kept in LINCELL_OUT/copy-CHUNK.figures for floor.
copy() {
	"$L" ivshmem copybench /dev/ivshmem0 --chunk "$1" --seconds 1 >"$LINCELL_OUT/copy-$1.txt" 2>&1 ||
		{ cat "$LINCELL_OUT/copy-$1.txt"; return 1; }
	c=$(echo "$1" | tr 'KM' 'km')
	awk -v c="$c" '$1 == "copy" {
		for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
		split("to_shm from_shm ram", dirs, " ")
		for (j = 1; j <= 3; j++) printf "copy.%s.%s_%s_mb_per_s=%s\n", f["method"], dirs[j], c, f[dirs[j] "_mb_per_s"]
		n++ } END { exit n != 3 }' "$LINCELL_OUT/copy-$1.txt" >"$LINCELL_OUT/copy-$c.figures" &&
		cat "$LINCELL_OUT/copy-$c.figures"
}

# fio_disk DISK: the matrix on DISK (remote|native), each on its own half
# of the file (guest-lib fio_matrix).
fio_disk() {
	off=0
	[ "$1" = remote ] && off=$HALF
	fio_matrix "$1" "$(disk_of "$1")" $off
}

# floor: per job of the native run, what the copy rate allows: the faster
# method's section-to-RAM rate for reads, RAM-to-section for writes, at
# the job's request size; floor.JOB_UNIT=VALUE.
floor() {
	cat "$LINCELL_OUT"/copy-*.figures "$LINCELL_OUT/fio-native.txt" | awk -F= '
		{ split($1, k, ".") }
		k[1] == "copy" { sub(/_mb_per_s$/, "", k[3]); if ($2 + 0 > best[k[3]]) best[k[3]] = $2 + 0; next }
		k[1] == "native" {
			dir = k[2] ~ /read/ ? "from_shm" : "to_shm"
			size = k[2] ~ /_mb_per_s$/ ? "1m" : "4k"
			if (!best[dir "_" size]) { print "no copy rate " dir "_" size; bad = 1; exit }
			if (size == "1m") printf "floor.%s=%.1f\n", k[2], best[dir "_1m"]
			else printf "floor.%s=%.0f\n", k[2], best[dir "_4k"] * 1e6 / 4096
		} END { exit bad }'
}

plan 11
check "insmod ivshmem.ko (the copy floor first)" insmod "$(module_path ivshmem)"
check "/dev/ivshmem0 appears" wait_for 10 test -c /dev/ivshmem0
grep -o -w -e erms -e fsrm /proc/cpuinfo | sort -u | tr '\n' ' ' >"$LINCELL_OUT/cpu-copy-flags.txt"
echo "# guest CPU copy flags: $(cat "$LINCELL_OUT/cpu-copy-flags.txt")"
results "copy rate, R/W section <-> RAM, 1 MiB copies" copy 1M
results "copy rate, R/W section <-> RAM, 4 KiB copies" copy 4K
check "rmmod ivshmem" rmmod ivshmem
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
pci=$(pci_devices 1af4 1110 | head -1)
check "the ivshmem device goes to vdev_remote" to_vdev_remote "$pci"
check "both disks appear (native virtio-blk-pci, vdev-remote)" wait_for 60 both_disks
results "fio matrix on the native virtio-blk-pci disk" fio_disk native
results "fio matrix on the vdev-remote disk" fio_disk remote
results "what the copy rate allows per job" floor
