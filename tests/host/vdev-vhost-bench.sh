#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of bench/vdev-vhost-blk.sh: serves the guest's vdev-remote disk
# from the second half of the harness's backing file ($LINCELL_DISK) by
# qemu-storage-daemon through `lincell remote vhost-user` (in-flight log),
# then when the guest writes next-1 by the same with --hold-ms 0, then when
# it writes next-2 by `lincell remote serve --blk`. qemu-storage-daemon
# exports the second half only (a raw node with offset and size).
# usage: vdev-vhost-bench.sh GUEST_NAME   (TAP on stdout)
guest=$1
lincell=${LINCELL:-$LINCELL_ROOT/target/debug/lincell}
g=$LINCELL_OUT/../$guest
. "$LINCELL_ROOT/tests/host/host-lib.sh"
disk=$LINCELL_DISK
vu=$LINCELL_OUT/vhost-user-blk.sock
log=$LINCELL_OUT/backend.log
HALF=$((128 << 20))
trap 'kill -TERM $bpid $qpid 2>/dev/null' EXIT
# bridge ARGS...: the bridge to qemu-storage-daemon, pid in bpid.
bridge() {
	"$lincell" remote vhost-user --socket "$LINCELL_IVSHMEM_SOCKET" --backend "$vu" "$@" 2>>"$log" &
	bpid=$!
}
stop_bridge() { kill -TERM "$bpid"; wait "$bpid"; }

echo "TAP version 13"
echo "1..3"
# The native disk is the first half: the exported node is the second
# (QEMU's virtio-blk-pci holds the file's lock: locking=off here).
qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$disk",cache.direct=off,locking=off \
	--blockdev driver=raw,node-name=r,file=f,offset=$HALF,size=$HALF \
	--export type=vhost-user-blk,id=e,node-name=r,addr.type=unix,addr.path="$vu",writable=on \
	>>"$LINCELL_OUT/qemu-storage-daemon.log" 2>&1 &
qpid=$!
bridge
if wait_file next-1 600; then stop_bridge; bridge --hold-ms 0; ok "bridge, then bridge --hold-ms 0"
else not_ok "bridge, then bridge --hold-ms 0" "the guest never asked"; fi
if wait_file next-2 600; then
	stop_bridge
	kill -TERM "$qpid"; wait "$qpid"
	"$lincell" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" --blk "$disk" --range "${HALF}:${HALF}" 2>>"$log" &
	bpid=$!
	ok "then lincell remote serve --blk on the same half"
else
	not_ok "then lincell remote serve --blk" "the guest never asked"
fi
wait_file never 900
stop_bridge
rc=$?
if [ $rc = 0 ]; then ok "the last backend exits 0 on SIGTERM"; else not_ok "the last backend exits 0 on SIGTERM" "exit $rc; $(tail -3 "$log")"; fi
trap - EXIT
