#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# A static AArch64 busybox for the arm64 test initramfs, from Debian's arm64
# busybox-static package: downloaded with apt against a private sources list,
# state and architecture (the system's apt and dpkg architectures are not
# touched), unpacked with dpkg-deb, cached. Prints the binary's path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

dir=$LINCELL_CACHE/arm64
bin=$dir/busybox
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
step "Fetching Debian's arm64 busybox-static (about 1 MB)"
apt=$dir/apt
mkdir -p "$apt"/{lists/partial,cache/archives/partial}
key=/usr/share/keyrings/debian-archive-keyring.gpg
echo "deb [arch=arm64 signed-by=$key] http://deb.debian.org/debian bookworm main" >"$apt/sources.list"
opts=(
	-o "APT::Architecture=arm64" -o "APT::Architectures::=arm64"
	-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
	-o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=/dev/null"
	-o "Dir::Cache=$apt/cache" -o "APT::Sandbox::User=root"
)
apt-get "${opts[@]}" update -qq
tmp=$(mktemp -d "$dir/fetch.XXXXXX")
(cd "$tmp" && apt-get "${opts[@]}" download -q busybox-static:arm64 >/dev/null)
dpkg-deb -x "$tmp"/busybox-static_*_arm64.deb "$tmp/deb"
install -m 0755 "$tmp/deb/bin/busybox" "$bin"
rm -rf "$tmp"
echo "$bin"
