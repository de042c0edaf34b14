#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of `make demo`: first an ivshmem echo peer (one session of
# doorbell round trips), then the RT loop's responder (the host cell: two
# runs), then the vdev-remote backend serving a 64 MiB file as a virtio
# disk, until the guest's demo is over.
L=$LINCELL_ROOT/target/debug/lincell
"$L" ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 1 || exit 1
"$L" latency --respond --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 2 --priority 0 \
	--connect-timeout-ms 300000 2>"$LINCELL_OUT/responder.log" || exit 1
truncate -s 64M "$LINCELL_OUT/demo-disk.img"
"$L" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" --blk "$LINCELL_OUT/demo-disk.img" 2>"$LINCELL_OUT/backend.log" &
pid=$!
i=0
while [ ! -e "$LINCELL_OUT/../guest/done" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
kill -TERM $pid
wait $pid
