#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Fetch, configure and build lincell's test kernel, cached outside the repo.
#
#   scripts/kernel.sh          make sure the kernel is built; print its build dir
#   scripts/kernel.sh --path   print the build dir the current inputs map to
#
# The build directory is keyed by (Debian package version, arch, config hash):
# the hash covers the arch's fragment, kernel/lincell.config and CONFIG_RECIPE
# below, so editing a fragment gives a new build and switching back reuses
# the old one.  A build that was interrupted is resumed (make is incremental);
# a finished build is marked with a stamp and never touched again.
#
# The source is Debian's linux-source-7.3 package, downloaded with apt against
# a private sources list and state directory (no change to the system's apt
# configuration) and unpacked with dpkg-deb.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ARCH=${ARCH:-x86_64}
FRAGMENT=$LINCELL_ROOT/kernel/lincell.config
# Both test kernels are `allnoconfig` + the arch's fragment + the lincell
# fragment: x86_64 is a PREEMPT_RT guest for virtme-ng, arm64 a (non-RT)
# kernel for QEMU's virt board, cross-compiled with Debian's GCC, so both
# locking flavours stay tested.
case $ARCH in
x86_64)
	ARCH_FRAGMENT=$LINCELL_ROOT/kernel/x86_64-rt.config
	ARCH_MAKE=(ARCH=x86_64)
	IMAGE=bzImage
	;;
arm64)
	ARCH_FRAGMENT=$LINCELL_ROOT/kernel/arm64-virt.config
	ARCH_MAKE=(ARCH=arm64 CROSS_COMPILE=${CROSS_COMPILE:-aarch64-linux-gnu-})
	IMAGE=Image
	;;
*) die "no test kernel for ARCH=$ARCH (x86_64 or arm64)" ;;
esac
# Bump when configure() changes in a way that changes the resulting .config.
CONFIG_RECIPE=2

# --- private apt ------------------------------------------------------------
apt_private() {
	mkdir -p "$LINCELL_APT"/{lists/partial,cache/archives/partial,etc/preferences.d}
	local key=/usr/share/keyrings/debian-archive-keyring.gpg
	cat >"$LINCELL_APT/etc/sources.list" <<-EOF
		deb [signed-by=$key] $DEBIAN_MIRROR trixie-backports main
		deb [signed-by=$key] $DEBIAN_MIRROR sid main
	EOF
	APT_OPTS=(
		-o "Dir::Etc::SourceList=$LINCELL_APT/etc/sources.list"
		-o "Dir::Etc::SourceParts=/dev/null"
		-o "Dir::Etc::Preferences=/dev/null"
		-o "Dir::Etc::PreferencesParts=$LINCELL_APT/etc/preferences.d"
		-o "Dir::State::Lists=$LINCELL_APT/lists"
		-o "Dir::State::status=/dev/null"
		-o "Dir::Cache=$LINCELL_APT/cache"
		-o "APT::Sandbox::User=root"
	)
}

# Pick the package version: the pinned one if the archive still has it, else
# the newest 7.3.x.  Cached answers are reused so a warm run needs no network.
resolve_version() {
	local have
	have=$(ls -d "$LINCELL_CACHE"/src/linux-"$KERNEL_PKG_VERSION" 2>/dev/null || true)
	if [ -n "$have" ]; then
		echo "$KERNEL_PKG_VERSION"
		return
	fi
	apt_private
	apt-get "${APT_OPTS[@]}" update -qq >&2
	local versions
	versions=$(apt-cache "${APT_OPTS[@]}" madison "$KERNEL_PKG" | awk -F'|' '{gsub(/ /,"",$2); print $2}')
	[ -n "$versions" ] || die "$KERNEL_PKG is not in trixie-backports or sid any more"
	if grep -qxF "$KERNEL_PKG_VERSION" <<<"$versions"; then
		echo "$KERNEL_PKG_VERSION"
	else
		local newest
		newest=$(sort -V <<<"$versions" | tail -n 1)
		note "$KERNEL_PKG $KERNEL_PKG_VERSION is gone from the archive; using the newest: $newest" >&2
		echo "$newest"
	fi
}

fetch_source() {
	local ver=$1 dir=$LINCELL_CACHE/src/linux-$1
	[ -f "$dir/.lincell-unpacked" ] && return
	step "Fetching $KERNEL_PKG $ver (170 MB download + unpack, about 1 minute)"
	apt_private
	[ -d "$LINCELL_APT/lists" ] && ls "$LINCELL_APT"/lists/*Packages* >/dev/null 2>&1 ||
		apt-get "${APT_OPTS[@]}" update -qq
	local tmp
	tmp=$(mktemp -d "$LINCELL_CACHE/fetch.XXXXXX")
	(cd "$tmp" && apt-get "${APT_OPTS[@]}" download -q "$KERNEL_PKG=$ver" >/dev/null)
	dpkg-deb -x "$tmp"/*.deb "$tmp/deb"
	rm -rf "$dir" && mkdir -p "$dir"
	tar -C "$dir" --strip-components=1 -xf "$tmp"/deb/usr/src/"$KERNEL_PKG".tar.xz
	rm -rf "$tmp"
	touch "$dir/.lincell-unpacked"
}

config_hash() {
	{
		cat "$ARCH_FRAGMENT" "$FRAGMENT"
		echo "recipe=$CONFIG_RECIPE arch=$ARCH"
	} | sha256sum | cut -c1-12
}

# Check that every option of both fragments survived olddefconfig.
verify_config() {
	local cfg=$1 line opt val bad=0
	while IFS= read -r line; do
		case $line in
		CONFIG_*=*)
			opt=${line%%=*} val=${line#*=}
			grep -qxF "$opt=$val" "$cfg" || { echo "  $opt=$val did not stick" >&2; bad=1; } ;;
		"# CONFIG_"*" is not set")
			opt=${line#\# } opt=${opt%% *}
			grep -q "^$opt=" "$cfg" && { echo "  $opt should be off" >&2; bad=1; } ;;
		esac
	done < <(cat "$ARCH_FRAGMENT" "$FRAGMENT")
	[ $bad -eq 0 ] || die "kernel config does not match $(basename "$ARCH_FRAGMENT") + lincell.config (see above)"
}

configure() {
	local src=$1 out=$2 log=$2/.lincell-config.log
	step "Configuring the $ARCH kernel (allnoconfig + kernel/$(basename "$ARCH_FRAGMENT") + kernel/lincell.config, about 20 s)"
	mkdir -p "$out"
	{
		make -C "$src" O="$out" "${ARCH_MAKE[@]}" allnoconfig &&
			"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$ARCH_FRAGMENT" "$FRAGMENT" &&
			make -C "$src" O="$out" "${ARCH_MAKE[@]}" olddefconfig
	} >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "$ARCH kernel configuration failed (log: $log)"; }
	verify_config "$out/.config"
	make -C "$src" O="$out" "${ARCH_MAKE[@]}" rustavailable >>"$log" 2>&1 ||
		{ tail -n 20 "$log" >&2; die "the kernel says Rust is not available (run scripts/setup.sh; log: $log)"; }
	touch "$out/.lincell-configured"
}

build() {
	local src=$1 out=$2
	local jobs
	jobs=$(nproc)
	step "Building the test kernel in $out"
	note "on 2 idle cores this takes about 7 minutes the first time; it is cached afterwards"
	run_logged "$out/.lincell-build.log" make -C "$src" O="$out" "${ARCH_MAKE[@]}" -j"$jobs" "$IMAGE" modules
	touch "$out/.lincell-built"
}

main() {
	[ -n "${LIBCLANG_PATH:-}" ] || die "libclang not installed: run scripts/setup.sh first"
	local ver
	ver=$(resolve_version)
	local src=$LINCELL_CACHE/src/linux-$ver
	local out=$LINCELL_CACHE/build/$ARCH-$ver-$(config_hash)
	if [ "${1:-}" = --path ]; then
		echo "$out"
		return
	fi
	if [ -f "$out/.lincell-built" ]; then
		step "Test kernel: cached ($out)"
	else
		fetch_source "$ver"
		[ -f "$out/.lincell-configured" ] || configure "$src" "$out"
		build "$src" "$out"
	fi
	# A stable name for the current build, for people and tools.
	ln -sfn "$out" "$LINCELL_CACHE/build/current-$ARCH"
	echo "$out"
}

main "$@"
