#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# QEMU 11 for this Debian 12 host: Debian trixie-backports' qemu-system-x86_64,
# run from the trixie tree `make setup` builds ($LINCELL_CACHE/qemu-trixie,
# see scripts/setup.sh) through that tree's own dynamic loader and libraries,
# so nothing of it is installed on the system. Arguments are QEMU's:
#
#   scripts/qemu11.sh -version
#   scripts/qemu11.sh -device help | grep vfio-user-pci
#   vng --qemu scripts/qemu11.sh ...        (what lincell-vm does for ivshmem2=)
#
# Firmware comes from the tree (-L: QEMU's own ROMs, then SeaBIOS, whose
# bios-256k.bin q35 boots), and so do QEMU's loadable modules
# (QEMU_MODULE_DIR, and the tree's `qemu-bundle` link for the modules it
# lacks): the host's /usr/lib/x86_64-linux-gnu/qemu holds Debian 12's, which
# QEMU 11 refuses (setup.sh says more).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tree=$LINCELL_QEMU11
lib=$tree/usr/lib/x86_64-linux-gnu
[ -x "$tree/usr/bin/qemu-system-x86_64" ] ||
	die "no QEMU 11 in $tree: run \`make setup\` (it builds the tree)"
export QEMU_MODULE_DIR=$lib/qemu
exec "$tree/lib64/ld-linux-x86-64.so.2" --library-path "$lib" \
	"$tree/usr/bin/qemu-system-x86_64" \
	-L "$tree/usr/share/qemu" -L "$tree/usr/share/seabios" "$@"
