#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# vdev_remote under attack (issue 11, "chaos peer"): a host backend serves
# the disk while a hostile third peer (ivshmem-chaos, started by
# tests/host/vdev-backend.sh chaos) stores random values all over the
# shared memory — the v1 header, the state table, the virtio header, the
# shared rings, the bounce pool — rings random doorbells and stalls, for
# 60 s. Meanwhile the guest keeps reading and writing the disk, and runs
# doorbell ping-pongs (`lincell ivshmem pingpong`, 20 rounds a call) on a
# second ivshmem device (`ivshmem-side=`, ivshmem.ko, its own server)
# against a host `lincell ivshmem echo` peer that the chaos attacks too:
# random stores over that memory's R/W section (the session header
# included), random doorbells to the guest and the echo peer, its own state
# entry flapping. Pass: every I/O returns (error or data) within 30 s,
# every ping-pong call within 30 s (its own limits: 3 s to connect, 3 s of
# warm-up, 1 s a round; failed calls and lost rounds are allowed and
# counted), the kernel logs no splat and no hung task (the harness checks
# the log), and once the backend is restarted honest the disk comes back,
# a write-then-verify succeeds and a clean 200-round ping-pong loses
# nothing.
# CHAOS_S (default 60) is the chaos's length: the soak benchmark
# (bench/soak-vdev-chaos.sh) sources this script with CHAOS_S=600 and
# reads the figures it prints (chaos.io_ok=N ...).
# lincell-vm: ivshmem-doorbell=4:16M ivshmem-side=2:1M cpus=2 timeout=600
# lincell-vm: revisions=v1,v2 ivshmem2=3:16M:0:0x8002 ivshmem2-vectors=4
# lincell-vm: host=sh tests/host/vdev-backend.sh chaos guest
. "$LINCELL_ROOT/virtme/guest-lib.sh"
out=$LINCELL_OUT
CHAOS_S=${CHAOS_S:-60}
lincell=$LINCELL_ROOT/target/debug/lincell
ko=$(module_path vdev-remote)
# bar2_size PCI: bytes of BAR 2 (the shared memory) of the function PCI.
bar2_size() { sed -n 3p "$1/resource" | { read -r s e _; echo $(($e - $s + 1)); }; }
# The ping-pong's device: QEMU's ivshmem with 1 MiB (ivshmem-side=2:1M);
# the disk's: the guest's other ivshmem device (16 MiB).
side=
for d in $(pci_devices 1af4 1110); do
	[ "$(bar2_size "$d")" = 1048576 ] && side=$d
done
pci=$(for d in $(ivshmem_pci; pci_devices 1af4 1110); do [ "$d" != "$side" ] && echo "$d"; done | head -1)
attached() { dmesg | grep -c 'attached: virtio device id'; }
# The kernel log as it happens, for the host to read if the guest hangs.
dmesg -w > "$out/dmesg-live.txt" 2>&1 &

# pp_call LOG: one ping-pong of 20 rounds on the side device, bounded;
# appends "RC DONE LOST" to LOG (RC 124: it did not return in 30 s).
pp_call() {
	_o=$(timeout 30 "$lincell" ivshmem pingpong /dev/ivshmem0 --count 20 --timeout 1000 \
		--connect-timeout 3000 2>&1)
	_rc=$?
	_done=$(printf '%s\n' "$_o" | sed -n 's|.*, \([0-9]*\)/20 round trips.*|\1|p')
	echo "$_rc ${_done:-0} $((20 - ${_done:-0}))" >>"$1"
}

plan 9
check "insmod vdev_remote.ko request_timeout_ms=3000" insmod "$ko" request_timeout_ms=3000
to_vdev_remote "$pci"
# vdev_remote has the disk's device (driver_override on v1, by ID on v2):
# ivshmem.ko gets the side device only. Its first session runs while the
# disk attaches.
if [ -n "$side" ] && insmod "$(module_path ivshmem)" && wait_for 10 test -c /dev/ivshmem0; then
	expect "a clean ping-pong on the side device before the chaos (20 rounds, 0 lost)" "20/20 round trips
lost: 0 spurious: 0
PASSED" timeout 180 "$lincell" ivshmem pingpong /dev/ivshmem0 --count 20 --connect-timeout 120000
else
	not_ok "a clean ping-pong on the side device before the chaos" "side device: '${side:-none}'" "$(ls /dev/ivshmem* 2>&1)"
fi
check "the disk appears" wait_for 240 test -b /dev/vda

before=$(attached)
touch "$out/chaos-now"
# CHAOS_S + 10 s of I/O: the chaos lasts CHAOS_S on the host, started a
# moment after.
# `nocreat`: a dd that found the disk gone must fail, not create a regular
# file /dev/vda that later I/O would happily use.
start=$(date +%s) good=0 bad=0 gone=0 hung=0 i=0
# The ping-pongs, beside the I/O, as long.
pplog=$out/pingpong-chaos.txt
: >"$pplog"
(
	while [ $(($(date +%s) - start)) -lt $((CHAOS_S + 10)) ]; do
		[ -c /dev/ivshmem0 ] || break
		pp_call "$pplog"
	done
) &
pp_loop=$!
while [ $(($(date +%s) - start)) -lt $((CHAOS_S + 10)) ]; do
	i=$((i + 1))
	if ! [ -b /dev/vda ]; then
		gone=$((gone + 1))
		sleep 0.5
		continue
	fi
	if [ $((i % 2)) = 0 ]; then
		timeout 30 dd if=/dev/vda of=/dev/null bs=64k count=4 skip=$((i % 256)) iflag=direct 2>/dev/null
	else
		timeout 30 dd if=/dev/urandom of=/dev/vda bs=64k count=4 seek=$((i % 256 + 256)) oflag=direct conv=notrunc,nocreat 2>/dev/null
	fi
	case $? in
	0) good=$((good + 1)) ;;
	124) hung=$((hung + 1)) ;;
	*) bad=$((bad + 1)) ;;
	esac
done
wait "$pp_loop"
pp_calls=$(wc -l <"$pplog")
pp_ok=$(awk '$1 == 0' "$pplog" | wc -l)
pp_hung=$(awk '$1 == 124' "$pplog" | wc -l)
pp_rounds=$(awk '{ n += $2 } END { print n + 0 }' "$pplog")
pp_lost=$(awk '{ n += $3 } END { print n + 0 }' "$pplog")
check "every ping-pong call during the chaos returned within 30 s ($pp_calls calls: $pp_ok passed, $((pp_calls - pp_ok - pp_hung)) failed, $pp_hung hung; $pp_rounds rounds done, $pp_lost lost)" \
	test "$pp_calls" -gt 0 -a "$pp_hung" -eq 0
echo "chaos.pingpong_calls=$pp_calls"; echo "chaos.pingpong_ok=$pp_ok"; echo "chaos.pingpong_hung=$pp_hung"
echo "chaos.pingpong_rounds=$pp_rounds"; echo "chaos.pingpong_lost=$pp_lost"
check "every I/O during the chaos returned within 30 s ($good ok, $bad failed, $hung hung; disk gone $gone times)" test "$hung" -eq 0
check "I/O failed with errors, or the disk was failed, while the chaos raged ($bad of $((good + bad)) failed, gone $gone times)" test $((bad + gone)) -gt 0
echo "chaos.io_ok=$good"; echo "chaos.io_failed=$bad"; echo "chaos.io_hung=$hung"; echo "chaos.disk_gone=$gone"
check "after the backend turned honest the disk comes back" \
	wait_for 180 sh -c "[ \$(dmesg | grep -c 'attached: virtio device id') -gt $before ] && [ -b /dev/vda ] && timeout 10 dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null"
head -c 1048576 /dev/urandom > /tmp/pattern
check "write-then-verify of 1 MiB after the chaos" timeout 60 sh -c "
	test -b /dev/vda &&
	dd if=/tmp/pattern of=/dev/vda bs=64k seek=64 oflag=direct conv=notrunc,nocreat 2>/dev/null &&
	dd if=/dev/vda of=/tmp/back bs=64k skip=64 count=16 iflag=direct 2>/dev/null &&
	cmp /tmp/pattern /tmp/back"
# The chaos is over (the backend came back honest after it): a clean
# session must lose nothing.
expect "a clean ping-pong on the side device after the chaos (200 rounds, 0 lost)" "200/200 round trips
lost: 0 spurious: 0
PASSED" timeout 180 "$lincell" ivshmem pingpong /dev/ivshmem0 --count 200 --connect-timeout 60000
dmesg | grep -E 'vdev_remote.*(failed|cannot attach|refused)' | sort | uniq -c | sort -rn | head -5 | sed 's/^/# /'
echo "chaos.attaches=$(($(attached) - before))"
