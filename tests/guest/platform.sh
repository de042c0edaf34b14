#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# `lincell platform` against what QEMU gives the guest (issue 14): the
# x86_64 guest knows it runs on QEMU's TCG (CPUID signature), reports the
# CPU's own vmx/svm flag (QEMU's CPU model emulates SVM), an APIC with an
# IO-APIC and no interrupt remapping, and its PREEMPT_RT kernel; the arm64
# board is QEMU's virt board, with a GICv3 and ITS, started at EL1 (no
# virtualization for a hypervisor); both see their ivshmem device
# (revision 1, or 2 on the ivshmem 2.0 run) and their online CPUs. Text
# and JSON agree.
# lincell-vm: arch=x86_64,arm64 ivshmem-plain=1M cpus=2 timeout=240 boot=plain revisions=v1,v2
. "$LINCELL_ROOT/virtme/guest-lib.sh"
plan 6

L=$LINCELL_ROOT/target/debug/lincell
OUT=$LINCELL_OUT
check "lincell platform --json runs" sh -c "$L platform --json >$OUT/platform.json"
check "lincell platform (text) runs" sh -c "$L platform >$OUT/platform.txt"
sed 's/^/# /' "$OUT/platform.txt"
# json KEY VALUE: the pretty-printed JSON has `"KEY": VALUE`.
json() { grep -q "\"$1\": $2" "$OUT/platform.json" || { echo "no \"$1\": $2 in:"; cat "$OUT/platform.json"; return 1; }; }
rev=${LINCELL_IVSHMEM_REV:-1}
common() {
	json revision "$rev" && json online "\"$(cat /sys/devices/system/cpu/online)\""
}
check "the ivshmem device (revision $rev) and the online CPUs" common
flags=$(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -1)
apic=xAPIC
case " $flags " in *" x2apic "*) apic=x2APIC ;; esac
virt=null
case " $flags " in *" svm "*) virt='"svm"' ;; *" vmx "*) virt='"vmx"' ;; esac
x86() {
	json hypervisor '"QEMU (TCG)"' && json kind "$virt" && json preemption '"PREEMPT_RT"' &&
		json interrupt_controller "\"$apic, IO-APIC\"" && json interrupt_remapping false
}
arm64() {
	json hypervisor '"QEMU (virt board)"' && json usable false && json interrupt_controller '"GICv3 with ITS"' &&
		json interrupt_remapping null && ! grep -q PREEMPT_RT "$OUT/platform.json"
}
if [ "$(uname -m)" = x86_64 ]; then
	check "x86_64: QEMU (TCG), the CPU model's virtualization flag ($virt), PREEMPT_RT, $apic with IO-APIC, no interrupt remapping" x86
else
	check "arm64: QEMU's virt board, started at EL1, GICv3 with ITS, interrupt remapping unknown, not RT" arm64
fi
check "text and JSON agree on the preemption model" sh -c \
	"p=\$(sed -n 's/^  \"preemption\": \"\\(.*\\)\",\$/\\1/p' $OUT/platform.json); grep -q \"^preemption  *\$p\$\" $OUT/platform.txt"
check "every line of the text report has a name and a value" sh -c "awk -F '  +' 'NF < 2 { bad = 1; print } END { exit bad }' $OUT/platform.txt"
