#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# In-service upgrade through the vhost-user bridge: qemu-storage-daemon is
# replaced 10 times under a guest that writes and verifies its disk all
# along, and the guest must not see a single I/O error. The host
# (tests/host/vdev-vhost-upgrade.sh) alternates the two ways to replace a
# backend: start the new one on the same socket and image, then SIGTERM the
# old; SIGKILL the old, then start the new. The bridge holds the device
# READY, waits for the old process to end and hands the new one the queues
# with the requests in flight (lincell remote vhost-user --help).
# Four writers here, each on its own 2 MiB: sequence-numbered 64 KiB blocks
# of random data, written with O_DIRECT, read back (O_DIRECT) and compared,
# the sha256 of each block's last write kept. Checked: no write or read
# failed, every read-back was identical, no I/O error in the kernel log, the
# device never failed, every block holds its last write (none lost, no
# older write replayed over it); the host checks the file against the
# manifest. The writers run WRITE_SECS (90) after asking for the
# replacements (a guest does not see files the host creates in its own
# directory after the boot: no reply channel), and the host checks all 10
# happened before they stopped.
# lincell-vm: arch=x86_64 ivshmem-doorbell=4:16M cpus=2 timeout=600
# lincell-vm: host=sh tests/host/vdev-vhost-upgrade.sh guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
BS=65536
BLOCKS=32   # per writer
BASE=256    # first block (16 MiB)
WRITERS=4
WRITE_SECS=90
# The writers' files: the guest's /tmp shows the host's, so a private
# directory (a glob like /tmp/m*/* once matched host directories).
T=/tmp/lincell-vhost-upgrade
rm -rf "$T" && mkdir -p "$T"

disk() { for d in /dev/vd?; do [ -b "$d" ] && echo "$d" && break; done; }
has_disk() { [ -n "$(disk)" ]; }

# writer W: until $T/stop, block BASE+W*BLOCKS+(i mod BLOCKS) gets write i.
writer() {
	w=$1 i=0 d=$(disk)
	mkdir -p $T/m$w
	while [ ! -e $T/stop ]; do
		b=$((BASE + w * BLOCKS + i % BLOCKS))
		{ printf 'lincell-upgrade writer %d seq %08d block %d\n' "$w" "$i" "$b"; head -c $BS /dev/urandom; } |
			head -c $BS >$T/w$w.blk
		if ! dd if=$T/w$w.blk of="$d" bs=$BS seek=$b count=1 oflag=direct conv=notrunc 2>>$T/w$w.err; then
			echo "writer $w seq $i: write failed" >>$T/bad
		elif ! dd if="$d" of=$T/w$w.back bs=$BS skip=$b count=1 iflag=direct 2>>$T/w$w.err; then
			echo "writer $w seq $i: read failed" >>$T/bad
		elif ! cmp -s $T/w$w.blk $T/w$w.back; then
			echo "writer $w seq $i: block $b read back differs" >>$T/bad
		fi
		echo "$b $(sha256sum <$T/w$w.blk | cut -c1-64)" >$T/m$w/$b
		i=$((i + 1))
	done
	echo $i >$T/w$w.count
}

# blocks_hold_last: every block's bytes now have the sha of its last write.
blocks_hold_last() {
	cat $T/m*/* | while read -r b sha; do
		got=$(dd if="$(disk)" bs=$BS skip="$b" count=1 iflag=direct 2>/dev/null | sha256sum | cut -c1-64)
		[ "$got" = "$sha" ] || echo "block $b: $got, last written $sha"
	done | { ! grep .; }
}

plan 8
check "insmod vdev_remote.ko" insmod "$(module_path vdev-remote)"
check "vdev_remote has the ivshmem device" to_vdev_remote "$(ivshmem_pci)"
check "a virtio disk appears once the bridge is READY" wait_for 240 has_disk
rm -f $T/stop $T/bad
for w in $(seq 0 $((WRITERS - 1))); do writer "$w" & done
sleep 2
to_host replace-now
sleep $WRITE_SECS
touch $T/stop
wait
to_host stopped
check "the writers ran $WRITE_SECS s while the host replaced the backend" test -s $T/w0.count
total=$(cat $T/w*.count | awk '{ s += $1 } END { print s }')
check "$total writes (each read back): none failed, all identical" \
	sh -c "! cat $T/bad 2>/dev/null | grep ."
check "no I/O error in the kernel log" sh -c "! dmesg | grep -iE 'I/O error|critical target error|blk_update_request'"
check "the device never failed (no removal, one attach)" \
	sh -c "! dmesg | grep -q 'virtio device of backend peer .* removed' && [ \$(dmesg | grep -c 'attached: virtio device id') = 1 ]"
check "every block holds its last write (none lost, none replayed)" blocks_hold_last
check "the manifest of the last writes goes to the host (it checks its file)" to_host manifest "$(cat $T/m*/*)"
