#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of tests/guest/vdev-vhost-blk.sh: qemu-storage-daemon exports a
# 128 MiB file as vhost-user-blk, and `lincell remote vhost-user` bridges it
# to the guest's vdev_remote over the ivshmem server. Follows the guest
# through marker files in its output directory:
#   data.sha  "SHA OFFSET LENGTH": check the same bytes in the file
#   kill-now  SIGKILL qemu-storage-daemon (the bridge, --hold-ms 0: no
#             in-service upgrade, must leave READY),
#             restart it 3 s later (the bridge must reconnect)
# and at the end checks that the bridge logged the death, the
# reconnection and the queues stopped at a device reset (the guest rebinds
# vdev_remote last), and exits 0 on SIGTERM.
# usage: vdev-vhost.sh GUEST_NAME   (TAP on stdout)
guest=$1
lincell=${LINCELL:-$LINCELL_ROOT/target/debug/lincell}
g=$LINCELL_OUT/../$guest
. "$LINCELL_ROOT/tests/host/host-lib.sh"
disk=${LINCELL_DISK:-$LINCELL_OUT/disk.img}
vu=$LINCELL_OUT/vhost-user-blk.sock
log=$LINCELL_OUT/bridge.log
qlog=$LINCELL_OUT/qemu-storage-daemon.log
qsd() {
	rm -f "$vu"
	qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$disk",cache.direct=off \
		--export type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path="$vu",writable=on \
		>>"$qlog" 2>&1 &
	qpid=$!
}
# Stop both helpers whatever happens (the harness may kill us).
trap 'kill -TERM $bpid $qpid 2>/dev/null' EXIT

[ -n "${LINCELL_DISK:-}" ] || truncate -s 128M "$disk"
echo "TAP version 13"
echo "1..6"
qsd
"$lincell" remote vhost-user --socket "$LINCELL_IVSHMEM_SOCKET" --backend "$vu" --hold-ms 0 2>>"$log" &
bpid=$!
if wait_file data.sha 400; then
	read -r sha off len < "$g/data.sha"
	host=$(tail -c +$((off + 1)) "$disk" | head -c "$len" | sha256sum | cut -d' ' -f1)
	if [ "$host" = "$sha" ]; then ok "the file qemu-storage-daemon exports holds the guest's $len bytes at $off"
	else not_ok "the exported file holds the guest's data" "guest $sha, host $host"; fi
else
	not_ok "the exported file holds the guest's data" "guest never wrote data.sha"
fi
if wait_file kill-now 400; then
	kill -KILL "$qpid"; wait "$qpid" 2>/dev/null
	ok "qemu-storage-daemon killed (SIGKILL) while the guest writes"
	sleep 3
	qsd
else
	not_ok "qemu-storage-daemon killed while the guest writes" "guest never asked"
fi
wait_file never 600
if grep -q "vhost-user backend closed its socket" "$log" && grep -q "left READY" "$log"; then
	ok "the bridge saw the backend die and left READY"
else
	not_ok "the bridge saw the backend die and left READY" "$(tail -5 "$log")"
fi
if [ "$(grep -c 'queue(s) handed to the backend' "$log")" -ge 2 ]; then
	ok "the bridge reconnected and handed the queues to the new backend"
else
	not_ok "the bridge reconnected and handed the queues to the new backend" "$(tail -5 "$log")"
fi
if grep -q "queues stopped at the backend" "$log" && [ "$(grep -c 'queue(s) handed to the backend' "$log")" -ge 3 ]; then
	ok "a device reset stops the queues at the backend; the next driver gets them again"
else
	not_ok "a device reset stops the queues at the backend; the next driver gets them again" "$(tail -5 "$log")"
fi
kill -TERM "$bpid"; wait "$bpid"; rc=$?
if [ $rc = 0 ]; then ok "the bridge exits 0 on SIGTERM"; else not_ok "the bridge exits 0 on SIGTERM" "exit $rc; $(tail -3 "$log")"; fi
kill -TERM "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
trap - EXIT
