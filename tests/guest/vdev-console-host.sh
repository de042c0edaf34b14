#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote with a host virtio-console backend (`lincell remote serve
# --console unix:SOCKET`, tests/host/vdev-backend.sh): the kernel's own
# virtio_console gives the guest a new /dev/hvcN; text a host client writes
# into the backend's socket arrives there, and text the guest writes to it
# reaches the host client (checked on the host side). Also on an ivshmem
# 2.0 virtio-console frontend (protocol 0x8003, bound by ID; revisions=).
# lincell-vm: ivshmem-doorbell=4:4M cpus=2 timeout=400
# lincell-vm: revisions=v1,v2 ivshmem2=2:4M:0:0x8003 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-backend.sh console guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"

# The hvc nodes exist for every index; only those with a console behind
# them can be opened.
hvcs() { for h in /dev/hvc*; do (exec 3<>"$h") 2>/dev/null && echo "$h"; done; }
before=$(hvcs)
# The hvc that vdev_remote's virtio_console added.
ours() { hvcs | grep -vxF "$before" | head -1; }
has_ours() { [ -n "$(ours)" ]; }

plan 7
# A short request timeout: an idle console (receive buffers held by the
# backend, nothing to answer) must not count as a stalled backend.
check "insmod vdev_remote.ko request_timeout_ms=2000" insmod "$(module_path vdev-remote)" request_timeout_ms=2000
pci=$(ivshmem_pci)
check "vdev_remote has $(basename "$pci") (v${LINCELL_IVSHMEM_REV:-1}: by driver_override on v1, by ID on v2)" to_vdev_remote "$pci"
check "virtio_console adds an hvc once the backend is READY" wait_for 240 has_ours
hvc=$(ours)
stty -F "$hvc" raw -echo 2>/dev/null
# The host repeats its line until it hears back; input that arrived before
# the tty was opened is dropped, so the first line read may be the tail of
# one (CI once read "ost"): wait for a whole one.
expect "the host's text arrives on $hvc" "hello from the host" timeout 120 grep -m1 -x "hello from the host" "$hvc"
check "the guest writes back on $hvc" sh -c "echo 'hello from the guest' > $hvc"
sleep 3
# Idle for more than twice the timeout.
sleep 5
check "an idle console is not failed as stalled (request_timeout_ms=2000)" sh -c "! dmesg | grep -q 'completed nothing'"
check "$hvc is still there after the idle time" has_ours
