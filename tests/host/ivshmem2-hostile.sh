#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Host peer of tests/guest/ivshmem2-hostile.sh: answers guest a's two
# ping-pong sessions, and SIGKILLs guest b's QEMU once b says it is ringing
# a back to back. The device process (ivshmem-server --v2, started by the
# harness) must live through a's garbage and b's death. TAP on stdout.
L=$LINCELL_ROOT/target/debug/lincell
dir=$(cd "$LINCELL_OUT/.." && pwd)
a=$dir/a b=$dir/b
echo "TAP version 13"
echo "1..5"
# The device process and b's QEMU, by their command lines (b's socket is
# on both: QEMU's names it as "path":"...").
device() { pgrep -f "ivshmem-server --v2 .*-S $dir/ivshmem.sock"; }
qemu_b() { pgrep -f "qemu-system-x86_64.*\"path\":\"$dir/vfio-b.sock\""; }
n=0
result() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

"$L" ivshmem echo --socket "$LINCELL_IVSHMEM_SOCKET" --sessions 2 --start-timeout 400000 \
	--timeout 60000 >"$LINCELL_OUT/echo.txt" 2>&1 &
echo_pid=$!
i=0
while [ ! -e "$b/storming" ] && [ ! -e "$b/done" ] && [ $i -lt 4000 ]; do sleep 0.1; i=$((i + 1)); done
sleep 2
pid=$(qemu_b)
[ -n "$pid" ] && kill -KILL $pid
result $? "b's QEMU ($pid) killed (SIGKILL) while it rings a back to back"
sleep 2
device >/dev/null && grep -q "vfio-b.sock: guest peer [0-9]* left" "$dir/ivshmem-server.log"
result $? "the device process lives on, and saw b leave"
wait $echo_pid
rc=$?
sed 's/^/# /' "$LINCELL_OUT/echo.txt"
result $rc "the host peer answered a's two ping-pong sessions"
i=0
while [ ! -e "$a/done" ] && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
test -e "$a/a-finished"
result $? "guest a got to its end"
device >/dev/null && ! grep -q "panicked" "$dir/ivshmem-server.log"
result $? "the device process is still serving, and never panicked"
sed 's/^/# device: /' "$dir/ivshmem-server.log" | tail -20
exit 0
