#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# install.sh: install (or remove) a lincell release made by `make dist` on
# the machine it runs on. Run it from the unpacked tarball, as root:
#
#   tar xzf lincell-VERSION-ARCH.tar.gz && cd lincell-VERSION-ARCH
#   sudo ./install.sh                  # install, or update in place
#   sudo ./install.sh --uninstall      # remove what install put there
#
# What goes where:
#   modules/*.ko           /lib/modules/RELEASE/extra/lincell/, then depmod -a RELEASE
#   bin/*                  PREFIX/bin (PREFIX defaults to /usr/local)
#   udev/90-lincell.rules  /etc/udev/rules.d/, then udev reloads its rules
#                          (if udevadm exists)
#   group "lincell"        created if missing: the udev rule gives it
#                          /dev/ivshmem* (mode 0660)
#
# Options:
#   --prefix DIR      tools go to DIR/bin (default /usr/local; also $PREFIX)
#   --kernel RELEASE  install the modules for kernel RELEASE (default: the
#                     running kernel, `uname -r`; also $KERNEL_RELEASE)
#   --uninstall       remove the modules, tools and udev rule (the group is kept)
#   -h, --help        this text
# Environment:
#   DESTDIR=DIR       stage everything under DIR instead of / (packaging, tests);
#                     no root needed, and depmod, udevadm and the group are left
#                     to the target (the script prints what to run there)
#
# Running it twice changes nothing the second time; every step says what it
# did ("installed", "up to date", "removed", "absent").
set -eu

say() { printf '%s\n' "$*"; }
note() { printf '  %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '4,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"; }

here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-/usr/local}
release=${KERNEL_RELEASE:-}
destdir=${DESTDIR:-}
destdir=${destdir%/}
action=install

while [ $# -gt 0 ]; do
	case $1 in
	--prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#--prefix=}; shift ;;
	--kernel) [ $# -ge 2 ] || die "--kernel needs a kernel release"; release=$2; shift 2 ;;
	--kernel=*) release=${1#--kernel=}; shift ;;
	--uninstall) action=uninstall; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done
case $prefix in
/*) prefix=${prefix%/} ;;
*) die "--prefix must be an absolute path, not '$prefix'" ;;
esac

[ -d "$here/modules" ] && [ -d "$here/bin" ] && [ -f "$here/udev/90-lincell.rules" ] ||
	die "$here is not an unpacked lincell release (modules/, bin/, udev/ missing)"

# What the release was built for (written by scripts/dist.sh).
built_release=$(cat "$here/kernel-release" 2>/dev/null || true)
built_arch=$(cat "$here/arch" 2>/dev/null || true)

if [ -z "$release" ]; then
	if [ -n "$destdir" ] && [ -n "$built_release" ]; then
		release=$built_release # staging: for the kernel the modules are for
	else
		release=$(uname -r)
		if [ -n "$built_release" ] && [ "$release" != "$built_release" ] && [ "$action" = install ]; then
			die "the modules were built for kernel $built_release but this system runs $release;
  they would not load. Rebuild them against this kernel's build tree, or install
  for the other kernel with --kernel $built_release"
		fi
	fi
elif [ -n "$built_release" ] && [ "$release" != "$built_release" ]; then
	warn "the modules were built for kernel $built_release, installing them for $release"
fi

if [ -z "$destdir" ]; then
	[ "$(id -u)" -eq 0 ] || die "run as root (or stage the files with DESTDIR=DIR)"
	machine=$(uname -m)
	case $machine in
	aarch64 | arm64) machine=arm64 ;;
	armv*) machine=arm ;;
	i[3-6]86) machine=i386 ;;
	riscv64) machine=riscv ;;
	esac
	if [ -n "$built_arch" ] && [ "$machine" != "$built_arch" ] && [ "$action" = install ]; then
		die "this release is for $built_arch, this machine is $(uname -m)"
	fi
fi

moddir=$destdir/lib/modules/$release/extra/lincell
bindir=$destdir$prefix/bin
rulesdir=$destdir/etc/udev/rules.d
rule=$rulesdir/90-lincell.rules

# put SRC DST MODE: copy unless identical; atomic replace.
put() {
	if [ -f "$2" ] && cmp -s "$1" "$2"; then
		chmod "$3" "$2"
		note "up to date  $2"
		return 0
	fi
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.lincell-new"
	chmod "$3" "$2.lincell-new"
	mv -f "$2.lincell-new" "$2"
	note "installed   $2"
}

# drop FILE: remove if present.
drop() {
	if [ -e "$1" ] || [ -L "$1" ]; then
		rm -f "$1"
		note "removed     $1"
	else
		note "absent      $1"
	fi
}

group_exists() {
	if command -v getent >/dev/null 2>&1; then
		getent group lincell >/dev/null 2>&1
	else
		grep -q '^lincell:' /etc/group 2>/dev/null
	fi
}

refresh_modules() {
	if [ -n "$destdir" ]; then
		return 0
	fi
	if command -v depmod >/dev/null 2>&1; then
		depmod -a "$release"
		note "ran         depmod -a $release"
	else
		warn "depmod not found: modprobe will not find the modules (insmod still works)"
	fi
}

refresh_udev() {
	if [ -n "$destdir" ]; then
		return 0
	fi
	if command -v udevadm >/dev/null 2>&1; then
		udevadm control --reload-rules
		# Apply the rule to devices that already exist.
		udevadm trigger --action=change --subsystem-match=misc --sysname-match='ivshmem*' || true
		note "ran         udevadm control --reload-rules; udevadm trigger (ivshmem*)"
	else
		note "no udevadm: give /dev/ivshmem* group lincell, mode 0660 with your device"
		note "manager (mdev.conf: 'ivshmem[0-9]* root:lincell 0660')"
	fi
}

if [ "$action" = uninstall ]; then
	say "Removing lincell (kernel $release, tools in $bindir)"
	for f in "$here"/modules/*.ko; do
		drop "$moddir/${f##*/}"
	done
	rmdir "$moddir" 2>/dev/null && note "removed     $moddir/" || true
	for f in "$here"/bin/*; do
		drop "$bindir/${f##*/}"
	done
	drop "$rule"
	refresh_modules
	refresh_udev
	if [ -z "$destdir" ] && [ -r /proc/modules ]; then
		loaded=$(for m in vdev_remote ivshmem cpu_isolate; do
			grep -q "^$m " /proc/modules && printf '%s ' "$m"
		done || true)
		[ -z "$loaded" ] || note "still loaded: $loaded(rmmod ${loaded% } to unload)"
	fi
	if [ -z "$destdir" ] && group_exists; then
		note "kept        group lincell (groupdel lincell to remove it)"
	fi
	say "Done."
	exit 0
fi

say "Installing lincell (kernel $release${built_arch:+, $built_arch})"
for f in "$here"/modules/*.ko; do
	put "$f" "$moddir/${f##*/}" 0644
done
for f in "$here"/bin/*; do
	put "$f" "$bindir/${f##*/}" 0755
done
put "$here/udev/90-lincell.rules" "$rule" 0644

if [ -n "$destdir" ]; then
	say "Staged under $destdir. On the target, as root:"
	note "depmod -a $release"
	note "getent group lincell || groupadd --system lincell"
	note "udevadm control --reload-rules && udevadm trigger --subsystem-match=misc"
	exit 0
fi

if group_exists; then
	note "exists      group lincell"
elif command -v groupadd >/dev/null 2>&1; then
	groupadd --system lincell
	note "created     group lincell"
elif command -v addgroup >/dev/null 2>&1; then
	addgroup -S lincell # busybox
	note "created     group lincell"
else
	warn "no groupadd or addgroup: create the group lincell by hand"
fi
refresh_modules
refresh_udev

say "Done. Load the modules with:"
note "modprobe ivshmem        # /dev/ivshmemN for every ivshmem device"
note "modprobe vdev_remote    # virtio over ivshmem (see the release's README.txt)"
note "modprobe cpu_isolate    # run-time CPU isolation, /sys/kernel/cpu_isolate/"
note "Users in group lincell may open /dev/ivshmem*: usermod -aG lincell USER"
