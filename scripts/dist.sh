#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# Package built lincell artifacts for installing on a board (`make dist`):
#
#   dist/lincell-<git describe --always>-<arch>.tar.gz
#     lincell-<version>-<arch>/
#       modules/*.ko            drivers/*/*.ko, as built (never rebuilt here)
#       bin/lincell             the command line (and vdev-remote backend)
#       bin/ivshmem-server      the ivshmem server
#       udev/90-lincell.rules   /dev/ivshmem*: group lincell, mode 0660
#       install.sh              scripts/board-install.sh
#       README.txt              what this is, how to install and load it
#       kernel-release, arch    what the modules were built for (install.sh checks)
#
# usage: scripts/dist.sh [--target TRIPLE] [--out DIR]
#
# <arch> is the ELF machine of the modules (x86_64, arm64, riscv, arm, ...);
# if $ARCH is set (make dist ARCH=arm64) it must agree.
#
# The tools are built with `cargo build --release -p lincell -p
# ivshmem-server` unless their binaries exist and are newer than the
# sources. They must run on the board: for another architecture give a Rust
# target with --target TRIPLE or CARGO_BUILD_TARGET=TRIPLE, for instance
#
#   rustup target add aarch64-unknown-linux-musl
#   make dist KDIR=... ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- \
#        CARGO_BUILD_TARGET=aarch64-unknown-linux-musl
#
# A *-linux-musl target gives static binaries that run on any board libc;
# the script links them with rust-lld unless CARGO_TARGET_<TRIPLE>_LINKER
# says otherwise. The tools' ELF machine is checked against the modules'.
# CARGO_TARGET_DIR and CARGO are honoured.
set -eu

step() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { printf 'dist: error: %s\n' "$*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CARGO=${CARGO:-cargo}
target=${CARGO_BUILD_TARGET:-}
out=$ROOT/dist

while [ $# -gt 0 ]; do
	case $1 in
	--target) [ $# -ge 2 ] || die "--target needs a Rust target triple"; target=$2; shift 2 ;;
	--target=*) target=${1#--target=}; shift ;;
	--out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
	--out=*) out=${1#--out=}; shift ;;
	-h | --help) sed -n '4,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p;}' "$0"; exit 0 ;;
	*) die "unknown argument '$1' (try --help)" ;;
	esac
done

# e_machine of an ELF file (decimal), in the file's own byte order.
elf_machine() {
	[ "$(od -An -tx1 -N4 "$1" | tr -d ' \n')" = 7f454c46 ] || return 1
	data=$(od -An -tu1 -j5 -N1 "$1" | tr -d ' \n')
	# shellcheck disable=SC2046 # two numbers, split on purpose
	set -- $(od -An -tu1 -j18 -N2 "$1")
	if [ "$data" = 2 ]; then echo $(($1 * 256 + $2)); else echo $(($1 + $2 * 256)); fi
}

# The kernel's name for an ELF machine.
arch_name() {
	case $1 in
	3) echo i386 ;;
	40) echo arm ;;
	62) echo x86_64 ;;
	183) echo arm64 ;;
	243) echo riscv ;;
	258) echo loongarch ;;
	21) echo powerpc ;;
	22) echo s390 ;;
	*) echo "elf$1" ;;
	esac
}

# A Rust target for the tools on a kernel arch (for the hints).
rust_target_for() {
	case $1 in
	arm64) echo aarch64-unknown-linux-musl ;;
	x86_64) echo x86_64-unknown-linux-musl ;;
	riscv) echo riscv64gc-unknown-linux-musl ;;
	arm) echo armv7-unknown-linux-musleabihf ;;
	*) echo "<your board's Rust target>" ;;
	esac
}

# The modules: what they are for.
step "Modules"
set -- "$ROOT"/drivers/*/*.ko
[ -f "$1" ] || die "no modules in drivers/*/: build them first (make, or make KDIR=/path/to/kernel/build)"
machine=
release=
for ko in "$@"; do
	m=$(elf_machine "$ko") || die "$ko is not an ELF file"
	[ -z "$machine" ] || [ "$m" = "$machine" ] ||
		die "the modules are for different machines ($(arch_name "$machine"), $(arch_name "$m") in ${ko#"$ROOT"/}): rebuild them"
	machine=$m
	# vermagic=RELEASE SMP ... in the NUL-separated .modinfo strings.
	vermagic=$(tr '\0' '\n' <"$ko" | sed -n 's/^vermagic=\(.*[^ ]\) *$/\1/p' | head -n 1)
	r=${vermagic%% *}
	[ -n "$r" ] || die "$ko has no vermagic"
	[ -z "$release" ] || [ "$r" = "$release" ] ||
		die "the modules were built against different kernels ($release, $r in ${ko#"$ROOT"/}): rebuild them"
	release=$r
	note "${ko#"$ROOT"/}"
done
arch=$(arch_name "$machine")
case ${ARCH:-} in
'') ;;
x86 | x86_64 | amd64) [ "$arch" = x86_64 ] || [ "$arch" = i386 ] || want=x86 ;;
aarch64) [ "$arch" = arm64 ] || want=arm64 ;;
*) [ "$arch" = "$ARCH" ] || want=$ARCH ;;
esac
[ -z "${want:-}" ] ||
	die "ARCH=$ARCH but the modules in drivers/ are $arch: rebuild them (make ARCH=$ARCH KDIR=... CROSS_COMPILE=...)"
note "arch $arch, kernel $release"

# The tools: built for the board.
step "Tools"
tdir=${CARGO_TARGET_DIR:-$ROOT/target}
case $tdir in /*) ;; *) tdir=$ROOT/$tdir ;; esac
if [ -n "$target" ]; then
	bindir=$tdir/$target/release
else
	bindir=$tdir/release
fi
tools="lincell ivshmem-server"

stale=
for t in $tools; do
	if [ ! -x "$bindir/$t" ]; then
		stale="$bindir/$t is missing"
		break
	fi
	newer=$(find "$ROOT/rust" "$ROOT/tools" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -type f \
		\( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) ! -path '*/tests/*' \
		-newer "$bindir/$t" | head -n 1)
	if [ -n "$newer" ]; then
		stale="${newer#"$ROOT"/} is newer than $bindir/$t"
		break
	fi
done

if [ -n "$stale" ]; then
	command -v "$CARGO" >/dev/null 2>&1 || die "$stale, and there is no cargo to build the tools"
	set -- build --release --locked -p lincell -p ivshmem-server
	if [ -n "$target" ]; then
		set -- "$@" --target "$target"
		case $target in
		*-linux-musl*)
			var=CARGO_TARGET_$(printf '%s' "$target" | tr 'a-z.-' 'A-Z__')_LINKER
			eval "linker=\${$var:-}"
			if [ -z "$linker" ]; then
				export "$var=rust-lld"
				note "$var=rust-lld (static musl binaries)"
			fi
			;;
		esac
		if command -v rustup >/dev/null 2>&1 &&
			! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
			die "Rust target $target is not installed: rustup target add $target"
		fi
	fi
	note "$stale"
	note "$CARGO $* (a minute or two the first time)"
	(cd "$ROOT" && "$CARGO" "$@") || die "building the tools failed"
else
	note "up to date in ${bindir#"$ROOT"/}"
fi
for t in $tools; do
	m=$(elf_machine "$bindir/$t") || die "$bindir/$t is not an ELF file"
	if [ "$m" != "$machine" ]; then
		die "$bindir/$t is for $(arch_name "$m") but the modules are for $arch.
  Cross-build the tools: rustup target add $(rust_target_for "$arch"), then
  CARGO_BUILD_TARGET=$(rust_target_for "$arch") make dist ...  (or scripts/dist.sh --target ...)"
	fi
done

# The package.
version=$(git -C "$ROOT" describe --always 2>/dev/null || echo unknown)
commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
name=lincell-$version-$arch
step "Packaging $name"
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d "$out/.stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
pkg=$stage/$name
mkdir -p "$pkg/modules" "$pkg/bin" "$pkg/udev"
for ko in "$ROOT"/drivers/*/*.ko; do
	cp "$ko" "$pkg/modules/"
done
for t in $tools; do
	cp "$bindir/$t" "$pkg/bin/"
done
cp "$ROOT/udev/90-lincell.rules" "$pkg/udev/"
cp "$ROOT/scripts/board-install.sh" "$pkg/install.sh"
chmod 0644 "$pkg"/modules/*.ko "$pkg/udev/90-lincell.rules"
chmod 0755 "$pkg"/bin/* "$pkg/install.sh"
printf '%s\n' "$release" >"$pkg/kernel-release"
printf '%s\n' "$arch" >"$pkg/arch"

cat >"$pkg/README.txt" <<EOF
lincell $version for $arch (source commit $commit)

Kernel modules built for Linux $release
(vermagic: $vermagic); they load only into that kernel.

  modules/   ivshmem.ko, vdev_remote.ko, cpu_isolate.ko
  bin/       lincell (command line, vdev-remote backend), ivshmem-server
  udev/      90-lincell.rules: /dev/ivshmem* for group lincell, mode 0660
  install.sh installs all of it

Install (as root, from this directory):

  ./install.sh                  modules to /lib/modules/$release/extra/lincell/
                                (then depmod -a), tools to /usr/local/bin, the
                                udev rule to /etc/udev/rules.d/, group lincell
  ./install.sh --prefix /usr    tools to /usr/bin instead
  DESTDIR=/tmp/stage ./install.sh   stage the files only (no root needed)
  ./install.sh --uninstall      remove them again
  ./install.sh --help           every option

Running install.sh again is harmless: it reports what is up to date.

Load:

  modprobe ivshmem              /dev/ivshmemN for every ivshmem device
  modprobe cpu_isolate          /sys/kernel/cpu_isolate/, lincell isolate/release/noise
  modprobe vdev_remote          virtio over ivshmem; parameters:
      request_timeout_ms=10000  fail a backend that completes nothing for this
                                long while requests are outstanding (0: never)
      v1_device_id=0            virtio device id on QEMU ivshmem when the backend
                                could not announce one (0: require it)

ivshmem 2.0 devices whose protocol is a virtio frontend bind to vdev_remote
by themselves; a QEMU ivshmem device (1af4:1110) is handed over with
driver_override:

  dev=0000:00:04.0              # lspci -D -d 1af4:1110
  echo vdev_remote > /sys/bus/pci/devices/\$dev/driver_override
  [ -e /sys/bus/pci/devices/\$dev/driver ] && echo \$dev > /sys/bus/pci/devices/\$dev/driver/unbind
  echo \$dev > /sys/bus/pci/drivers_probe

More in the lincell source tree at commit $commit:
README.md (section "Running on a board") and Documentation/ (ivshmem-abi.md,
vdev-remote.md, cpu-isolate.md).
EOF

tarball=$out/$name.tar.gz
if tar --version 2>/dev/null | grep -q 'GNU tar'; then
	tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$tarball.tmp" "$name"
else
	tar -C "$stage" -czf "$tarball.tmp" "$name"
fi
mv -f "$tarball.tmp" "$tarball"
note "$(tar -tzf "$tarball" | sed 's|^[^/]*/||' | grep -v '^$' | tr '\n' ' ')"
step "Wrote ${tarball#"$ROOT"/} ($(du -k "$tarball" | cut -f1) KiB)"
if command -v sha256sum >/dev/null 2>&1; then
	note "sha256 $(sha256sum "$tarball" | cut -d' ' -f1)"
fi
note "on the board: tar xzf $name.tar.gz && cd $name && sudo ./install.sh"
