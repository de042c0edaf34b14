# SPDX-License-Identifier: GPL-2.0
# Shared by the benchmark scripts (sourced after setting $root):
# bench_init NAME sets kdir (from $KDIR), vm, work (target/lincell-vm/NAME,
# emptied), out, sock and lincell (a release build, built here: spinning or
# copying in a debug build measures the debug build);
# start_server SOCKET WORKDIR SIZE VECTORS starts the project's
# ivshmem-server on a private socket (its pid added to $pids, killed on
# exit) and waits for the socket.
pids=
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT INT TERM

bench_init() {
	kdir=${KDIR:?set KDIR to the kernel build directory}
	vm=${LINCELL_VM:-$root/target/debug/lincell-vm}
	work=$root/target/lincell-vm/$1
	out=$work/out
	sock=$work/ivshmem.sock
	lincell=$root/target/release/lincell
	echo "==> building lincell (release)"
	cargo build --release --quiet -p lincell --manifest-path "$root/Cargo.toml" || exit 1
	rm -rf "$work"
	mkdir -p "$out"
}

start_server() {
	"$root/target/debug/ivshmem-server" -F -S "$1" -m "$2" -l "$3" -n "$4" 2>"$2/server.log" &
	pids="$pids $!"
	_i=0
	while [ ! -S "$1" ]; do
		_i=$((_i + 1))
		[ $_i -gt 100 ] && { echo "ivshmem-server did not start:"; cat "$2/server.log"; exit 1; }
		sleep 0.1
	done
}
