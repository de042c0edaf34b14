#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of tests/guest/vdev-blk-two-guests.sh: once both guests are
# done, the bytes guest b wrote through its vdev-remote disk must be in
# guest a's backing file (a's output directory), at the same offset.
a=$LINCELL_OUT/../a b=$LINCELL_OUT/../b
echo "TAP version 13"
echo "1..1"
i=0
while { [ ! -e "$a/done" ] || [ ! -e "$b/done" ]; } && [ $i -lt 5500 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -e "$b/data.sha" ]; then
	echo "# guest b wrote no data.sha"; echo "not ok 1 - a's backing file holds the bytes b wrote"; exit 0
fi
read -r sha off len < "$b/data.sha"
mine=$(tail -c +$((off + 1)) "$a/disk.img" | head -c "$len" | sha256sum | cut -d' ' -f1)
if [ "$mine" = "$sha" ]; then echo "ok 1 - a's backing file holds the $len bytes b wrote at $off through its virtio disk"
else echo "# b: $sha, a's file: $mine"; echo "not ok 1 - a's backing file holds the bytes b wrote"; fi
