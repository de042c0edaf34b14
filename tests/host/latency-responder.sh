#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host cell of tests/guest/latency-host.sh: `lincell latency --respond` as
# an ivshmem-server peer for the guest's first SESSIONS runs, then a second
# responder that is killed (SIGKILL) once the guest wrote kill-now and the
# responder logged that the guest's session started (mid-stream).
# usage: latency-responder.sh GUEST_NAME SESSIONS   (TAP on stdout)
guest=$1 sessions=$2
L=$LINCELL_ROOT/target/debug/lincell
g=$LINCELL_OUT/../$guest
echo "TAP version 13"
echo "1..2"
if "$L" latency --respond --socket "$LINCELL_IVSHMEM_SOCKET" --priority 0 --sessions "$sessions" \
	--connect-timeout-ms 300000 2>"$LINCELL_OUT/responder.txt"; then
	echo "ok 1 - the responder answered $sessions runs"
else
	sed 's/^/# /' "$LINCELL_OUT/responder.txt"
	echo "not ok 1 - the responder answered $sessions runs"
fi
"$L" latency --respond --socket "$LINCELL_IVSHMEM_SOCKET" --priority 0 \
	--connect-timeout-ms 300000 2>"$LINCELL_OUT/responder2.txt" &
pid=$!
i=0
while [ ! -e "$g/kill-now" ] && [ ! -e "$g/done" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
# Mid-stream: only once the initiator's session has started.
i=0
while ! grep -q "initiator peer" "$LINCELL_OUT/responder2.txt" 2>/dev/null && [ ! -e "$g/done" ] && [ $i -lt 3000 ]; do
	sleep 0.1; i=$((i + 1))
done
sleep 1
kill -KILL $pid 2>/dev/null && echo "ok 2 - killed the second responder mid-stream" ||
	echo "not ok 2 - killed the second responder mid-stream"
wait $pid 2>/dev/null
exit 0
