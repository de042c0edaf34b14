#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of tests/guest/vdev-vhost-upgrade.sh: qemu-storage-daemon
# exports a 128 MiB file as vhost-user-blk, `lincell remote vhost-user
# --hold-ms 8000` bridges it to the guest. When the guest writes
# replace-now, replaces the daemon 10 times, 3 s apart, alternating
#   odd:  start the new daemon on the same socket and image (the socket
#         path is bound anew), then SIGTERM the old one;
#   even: SIGKILL the old daemon, then start the new one;
# 2 s apart; all 10 must happen before the guest stops writing (it
# writes stopped). Each daemon listens on a socket of its
# own and the bridge's --backend is a symbolic link to the live one,
# switched atomically: qemu-storage-daemon unlinks its socket path when it
# exits, which on a shared path would delete the new daemon's socket (seen:
# the bridge then found no backend until the next one came). Checks that the bridge logged 10
# take-overs and never left READY, and, once the guest wrote its manifest
# (BLOCK SHA of each block's last write), that the file holds those bytes
# (what differs, in the TAP).
# usage: vdev-vhost-upgrade.sh GUEST_NAME   (TAP on stdout)
guest=$1
lincell=${LINCELL:-$LINCELL_ROOT/target/debug/lincell}
g=$LINCELL_OUT/../$guest
. "$LINCELL_ROOT/tests/host/host-lib.sh"
disk=$LINCELL_OUT/disk.img
vu=$LINCELL_OUT/vhost-user-blk.sock
log=$LINCELL_OUT/bridge.log
qlog=$LINCELL_OUT/qemu-storage-daemon.log
BS=65536
gen=0
# qsd: a new daemon on a socket of its own, $vu pointing to it once it is
# bound; its pid in qpid (locking=off: two daemons share the image while
# one hands over).
qsd() {
	gen=$((gen + 1))
	s=$LINCELL_OUT/vu.$gen.sock
	qemu-storage-daemon --blockdev driver=file,node-name=f,filename="$disk",cache.direct=off,locking=off \
		--export type=vhost-user-blk,id=e,node-name=f,addr.type=unix,addr.path="$s",writable=on \
		>>"$qlog" 2>&1 &
	qpid=$!
	i=0
	while [ $i -lt 300 ] && ! [ -S "$s" ]; do sleep 0.1; i=$((i + 1)); done
	ln -sfn "$s" "$vu.new" && mv -T "$vu.new" "$vu"
}
trap 'kill -TERM $bpid $qpid 2>/dev/null' EXIT

truncate -s 128M "$disk"
echo "TAP version 13"
echo "1..5"
qsd
"$lincell" remote vhost-user --socket "$LINCELL_IVSHMEM_SOCKET" --backend "$vu" --hold-ms 8000 2>>"$log" &
bpid=$!
if wait_file replace-now 400; then
	r=1
	while [ $r -le 10 ]; do
		sleep 2
		old=$qpid
		if [ $((r % 2)) = 1 ]; then
			qsd
			kill -TERM "$old"
		else
			kill -KILL "$old"
			qsd
		fi
		wait "$old" 2>/dev/null
		r=$((r + 1))
	done
	# The last take-over done before the guest stops.
	i=0
	while [ $i -lt 100 ] && [ "$(grep -c 'took over' "$log")" -lt 10 ]; do sleep 0.1; i=$((i + 1)); done
	if [ -e "$g/stopped" ]; then
		not_ok "qemu-storage-daemon replaced 10 times under the guest's writers" "the guest stopped writing first"
	else
		ok "qemu-storage-daemon replaced 10 times under the guest's writers (5 x start new then SIGTERM old, 5 x SIGKILL old then start new)"
	fi
else
	not_ok "qemu-storage-daemon replaced 10 times" "guest never asked"
fi
takes=$(grep -c "took over" "$log")
if [ "$takes" = 10 ]; then ok "the bridge logged 10 take-overs ($(grep -o '[0-9]* request(s) in flight resubmitted' "$log" | awk '{ s += $1 } END { print s }') requests resubmitted)"
else not_ok "the bridge logged 10 take-overs" "$takes; $(tail -5 "$log")"; fi
if ! grep -q "left READY" "$log"; then ok "the bridge never left READY"
else not_ok "the bridge never left READY" "$(grep -B3 'left READY' "$log" | head -8)"; fi
if wait_file manifest 500; then
	bad=$(while read -r b sha; do
		got=$(dd if="$disk" bs=$BS skip="$b" count=1 2>/dev/null | sha256sum | cut -c1-64)
		[ "$got" = "$sha" ] || echo "block $b: $got, guest wrote $sha"
	done <"$g/manifest")
	if [ -z "$bad" ]; then ok "the file holds the last write of each of the guest's $(wc -l <"$g/manifest") blocks"
	else not_ok "the file holds the guest's last writes" "$bad"; fi
else
	not_ok "the file holds the guest's last writes" "guest never wrote its manifest"
fi
kill -TERM "$bpid"; wait "$bpid"; rc=$?
if [ $rc = 0 ]; then ok "the bridge exits 0 on SIGTERM"; else not_ok "the bridge exits 0 on SIGTERM" "exit $rc; $(tail -3 "$log")"; fi
kill -TERM "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null
trap - EXIT
