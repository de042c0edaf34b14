#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Two guests booted at once share one ivshmem-plain region: guest a writes a
# token, guest b sees it and answers, guest a sees the answer. Proves the
# harness's multi-guest wiring (the ivshmem tests build on it).
# lincell-vm: guests=a,b ivshmem-plain=1M cpus=1 timeout=240
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 3

dev=$(pci_devices 1af4 1110)
res="$dev/resource2"
check "guest $LINCELL_GUEST has the shared BAR" test -e "$res"

# A tiny helper: python3 maps BAR2 through sysfs (the driver's mmap comes later).
shm() {
	python3 - "$res" "$@" <<'PY'
import mmap, os, sys, time
path, op, off, text = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
fd = os.open(path, os.O_RDWR | os.O_SYNC)
m = mmap.mmap(fd, 4096)
if op == "put":
    m[off:off + len(text)] = text
    sys.exit(0)
deadline = time.time() + float(sys.argv[5])
while time.time() < deadline:
    if m[off:off + len(text)] == text:
        sys.exit(0)
    time.sleep(0.05)
sys.exit("timed out waiting for %r at %d, found %r" % (text, off, m[off:off + len(text)]))
PY
}

if [ "$LINCELL_GUEST" = a ]; then
	check "a writes its token" shm put 0 "hello-from-a"
	check "a sees b's answer" shm wait 64 "hello-from-b" 120
else
	check "b sees a's token" shm wait 0 "hello-from-a" 120
	check "b writes its answer" shm put 64 "hello-from-b"
fi
