#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host side of the vdev-remote guest tests: runs `lincell remote serve` as an
# ivshmem-server peer, and follows the guest's script through marker files
# the guest writes into its output directory:
#   data.sha  "SHA OFFSET LENGTH": the guest wrote random data there;
#             the host checks the same bytes in the backing file
#   kill-now  the guest is writing: kill the backend (SIGKILL), then
#             restart it two seconds later
#   fault-now stop the backend cleanly (SIGTERM, exit 0 expected) and
#             restart it with --fault bad-used-index
#   normal-now restart it normally
# and stops the backend cleanly once the guest's script is done.
# Kind `chaos`: once the guest wrote chaos-now, a hostile third peer
# (ivshmem-chaos) scribbles over the whole shared memory, rings random
# doorbells and stalls for CHAOS_MS (default 60000) while the backend keeps
# serving; then the backend is restarted honest (SIGKILL if it no longer
# answers SIGTERM) and the guest's write-then-verify follows. With a side
# device (LINCELL_IVSHMEM_SIDE_SOCKET, `ivshmem-side=`) it also runs the
# guest's ping-pong responder there (`lincell ivshmem echo`, started again
# whenever it ends: the chaos, which attacks that server too, can end a
# session or fake a stop) until the guest's script is done.
# Kind `stall` restarts the backend with --fault skip-data (reads complete
# without a byte written) once the guest wrote skip-now, then serves a disk
# that stops answering (stays READY) after 40 requests once the guest
# wrote stall-now. Kind `echo-blk` is first the
# guest's `lincell ivshmem echo` peer for 2 sessions, then serves a disk on
# the same peer slot and checks data.sha. Kind `serve` only serves a disk
# (the vdev-remote benchmark). Kind `range` serves only --range 16M:8M of
# a 64 MiB file of a sentinel pattern: data.sha's offset is the guest's,
# checked at 16 MiB more in the file, and at the end every byte outside the
# range must still be the sentinel. The disk is LINCELL_DISK if the harness made
# one (`disk=`), else a fresh 128 MiB file; LINCELL=PATH runs another
# build of the CLI (the benchmarks' release build).
# usage: vdev-backend.sh blk|stall|chaos|echo-blk|serve|range|console GUEST_NAME   (TAP on stdout)
kind=$1 guest=$2
lincell=${LINCELL:-$LINCELL_ROOT/target/debug/lincell}
g=$LINCELL_OUT/../$guest
. "$LINCELL_ROOT/tests/host/host-lib.sh"
disk=${LINCELL_DISK:-$LINCELL_OUT/disk.img}
log=$LINCELL_OUT/backend.log

serve() {
	if [ "$kind" != console ]; then
		"$lincell" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" --blk "$disk" "$@" 2>>"$log" &
	else
		"$lincell" remote serve --socket "$LINCELL_IVSHMEM_SOCKET" --console "unix:$LINCELL_OUT/console.sock" "$@" 2>>"$log" &
	fi
	pid=$!
}
stop() {
	kill -TERM "$pid" 2>/dev/null
	wait "$pid"
}

[ -n "${LINCELL_DISK:-}" ] || truncate -s 128M "$disk"
# What the guest sees starts this far into the file.
base=0
if [ "$kind" = range ]; then
	base=$((16 << 20)) rlen=$((8 << 20))
	yes lincell-range-sentinel | head -c $((64 << 20)) >"$disk"
	# The sentinel file with the range cut out, as a hash.
	outside() { { head -c $base "$1"; tail -c +$((base + rlen + 1)) "$1"; } | sha256sum | cut -d' ' -f1; }
	want_outside=$(outside "$disk")
fi
echo "TAP version 13"
side=${LINCELL_IVSHMEM_SIDE_SOCKET:-}
[ "$kind" = chaos ] || side=
case $kind in blk) echo "1..5";; range) echo "1..3";; echo-blk) echo "1..3";; serve) echo "1..1";; stall) echo "1..3";;
chaos) if [ -n "$side" ]; then echo "1..4"; else echo "1..3"; fi;; *) echo "1..2";; esac
if [ -n "$side" ]; then
	# The responder, again and again; echo-N.txt is what each one said.
	# It reads the side device's v1 layout header, not the ivshmem 2.0
	# layout the main device may have.
	# It ends when the guest is done or this script is gone (the
	# harness kills it when the guest hangs; the echo then running
	# ends by its --start-timeout).
	(
		r=0 me=$$ wait_ms=300000
		while ! [ -e "$g/done" ] && kill -0 "$me" 2>/dev/null && [ $r -lt 200 ]; do
			r=$((r + 1))
			env -u LINCELL_IVSHMEM_V2_LAYOUT "$lincell" ivshmem echo --socket "$side" \
				--start-timeout $wait_ms --timeout 3000 >"$LINCELL_OUT/echo-$r.txt" 2>&1
			wait_ms=60000
			sleep 0.5
		done
	) &
	echo_loop=$!
fi
if [ "$kind" = echo-blk ]; then
	if "$lincell" ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 2 --start-timeout 300000 \
		--timeout 30000 >"$LINCELL_OUT/echo.txt" 2>&1; then
		ok "the echo peer answered the guest's 2 sessions"
	else
		not_ok "the echo peer answered the guest's 2 sessions" "$(tail -5 "$LINCELL_OUT/echo.txt")"
	fi
fi
if [ "$kind" = range ]; then serve --range 16M:8M; else serve; fi
if [ "$kind" = console ]; then
	python3 "$LINCELL_ROOT/tests/host/console-client.py" "$LINCELL_OUT/console.sock" "$LINCELL_OUT/console.out" &
fi
if [ "$kind" = blk ] || [ "$kind" = echo-blk ] || [ "$kind" = range ]; then
	if wait_file data.sha 300; then
		read -r sha off len < "$g/data.sha"
		host=$(tail -c +$((base + off + 1)) "$disk" | head -c "$len" | sha256sum | cut -d' ' -f1)
		if [ "$host" = "$sha" ]; then ok "the backing file holds the guest's $len bytes at $base + $off"
		else not_ok "the backing file holds the guest's data" "guest $sha, host $host"; fi
	else
		not_ok "the backing file holds the guest's data" "guest never wrote data.sha"
	fi
fi
if [ "$kind" = blk ]; then
	if wait_file kill-now 300; then
		sleep 1
		kill -KILL "$pid"; wait "$pid" 2>/dev/null
		ok "backend killed (SIGKILL) while the guest writes"
		sleep 2
		serve
	else
		not_ok "backend killed while the guest writes" "guest never asked"
	fi
	if wait_file fault-now 300; then
		stop; rc=$?
		if [ $rc = 0 ]; then ok "backend stops cleanly on SIGTERM (exit 0)"; else not_ok "backend stops cleanly on SIGTERM" "exit $rc"; fi
		serve --fault bad-used-index --fault-after 64
	else
		not_ok "backend stops cleanly on SIGTERM" "guest never asked"
	fi
	if wait_file normal-now 300; then
		stop
		serve
		ok "backend restarted without faults"
	else
		not_ok "backend restarted without faults" "guest never asked"
	fi
fi
if [ "$kind" = stall ]; then
	if wait_file skip-now 300; then
		stop
		serve --fault skip-data --fault-after 0
		ok "backend restarted to complete requests without writing their buffers"
	else
		not_ok "backend restarted to complete requests without writing their buffers" "guest never asked"
	fi
	if wait_file stall-now 300; then
		stop
		serve --fault stall --fault-after 40
		ok "backend restarted to stall after 40 requests"
	else
		not_ok "backend restarted to stall" "guest never asked"
	fi
fi
if [ "$kind" = chaos ]; then
	if wait_file chaos-now 300; then
		chaos=${LINCELL_CHAOS:-$LINCELL_ROOT/target/debug/ivshmem-chaos}
		if out=$("$chaos" "$LINCELL_IVSHMEM_SOCKET" ${side:+"$side"} --duration-ms "${CHAOS_MS:-60000}" --seed "$$" 2>&1); then
			ok "the chaos peer raged: $out"
			# As benchmark figures (bench/soak-vdev-chaos.sh): chaos.stores=N ...
			printf '%s\n' "$out" | tr ' ' '\n' | sed -n 's/^\([a-z]*\)=\([0-9.]*\)$/chaos.\1=\2/p'
		else
			not_ok "the chaos peer raged" "$out"
		fi
		# The backend's own state may be wrecked too: restart it honest.
		kill -TERM "$pid" 2>/dev/null
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
		serve
		ok "backend restarted honest after the chaos"
	else
		not_ok "the chaos peer raged" "guest never asked"
		not_ok "backend restarted honest after the chaos" "guest never asked"
	fi
fi
if [ "$kind" = console ]; then
	# The guest's 5 rounds of faulty backends, then a healthy one (with
	# the first backend and the guest that is 8 peer ids: all a v1 layout
	# has, as the server never reuses an id).
	r=1
	while [ $r -le 5 ] && wait_file "fault-$r" 300; do
		stop
		case $((r % 3)) in 0) f=bad-used-index ;; 1) f=bad-used-id ;; *) f=bad-used-len ;; esac
		serve --fault "$f" --fault-after $(((r - 1) % 3))
		r=$((r + 1))
	done
	if [ $r -gt 5 ]; then ok "5 console backends started that break the ring"
	else not_ok "5 console backends started that break the ring" "the guest asked for $((r - 1))"; fi
	if wait_file normal-now 300; then
		stop
		serve
		ok "console backend restarted without faults"
	else
		not_ok "console backend restarted without faults" "guest never asked"
	fi
fi
# Until the guest is done, then a clean stop.
wait_file never 600
if [ "$kind" = console ]; then
	if grep -q "hello from the guest" "$LINCELL_OUT/console.out" 2>/dev/null; then ok "host received the guest's console text"
	else not_ok "host received the guest's console text" "$(cat "$LINCELL_OUT/console.out" 2>&1)"; fi
fi
if [ -n "$side" ]; then
	# The guest is done, so the loop starts no other echo: end the one
	# running (the loop's child), then the loop ends by itself.
	pkill -TERM -P "$echo_loop" 2>/dev/null
	wait "$echo_loop" 2>/dev/null
	runs=$(ls "$LINCELL_OUT"/echo-*.txt 2>/dev/null | wc -l)
	served=$(cat "$LINCELL_OUT"/echo-*.txt 2>/dev/null | grep -c '^echo: ok ')
	failed=$(cat "$LINCELL_OUT"/echo-*.txt 2>/dev/null | grep -c '^echo: FAILED session')
	if [ "$served" -gt 0 ]; then ok "the side echo peer answered ping-pongs: $served sessions ok, $failed failed, $runs runs of it"
	else not_ok "the side echo peer answered ping-pongs" "$(tail -5 "$LINCELL_OUT"/echo-*.txt 2>&1)"; fi
	echo "chaos.echo_sessions_ok=$served"; echo "chaos.echo_sessions_failed=$failed"; echo "chaos.echo_runs=$runs"
fi
stop; rc=$?
if [ $rc = 0 ]; then ok "backend exits 0 on SIGTERM at the end"; else not_ok "backend exits 0 on SIGTERM at the end" "exit $rc; log: $(tail -5 "$log")"; fi
if [ "$kind" = range ]; then
	have=$(outside "$disk")
	if [ "$have" = "$want_outside" ]; then ok "every byte of the file outside --range 16M:8M is untouched"
	else not_ok "every byte of the file outside the range is untouched" "outside hash $have, want $want_outside"; fi
fi
