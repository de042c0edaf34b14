# SPDX-License-Identifier: GPL-2.0
# Shared by the host peers of the guest tests (tests/host/*.sh), sourced
# after they set g, the output directory of the guest they follow:
#   ok NAME, not_ok NAME DETAIL   TAP results, numbered in order
#   wait_file NAME SECONDS        until the guest wrote $g/NAME (0), or its
#                                 script ended or SECONDS passed (1)
#   own_netns NS                  creates the network namespace NS (lo up)
#                                 and deletes it at exit, after killing
#                                 what runs in it, also when the harness
#                                 kills this script (SIGKILL: a watcher)
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); printf '# %s\n' "$2"; echo "not ok $n - $1"; }
wait_file() {
	i=0
	while [ $i -lt $(($2 * 10)) ]; do
		[ -e "$g/$1" ] && return 0
		[ -e "$g/done" ] && return 1
		sleep 0.1; i=$((i + 1))
	done
	return 1
}
own_netns() {
	_ns=$1
	ip netns add "$_ns" && ip -n "$_ns" link set lo up || return 1
	trap _netns_cleanup EXIT
	trap 'exit 143' TERM INT HUP
	# The harness stops a host peer with SIGKILL when its guest never
	# finishes (its `sh -c`, which may be this script's parent): the
	# watcher ends this script then, and cleans up once it is gone.
	_me=$$ _parent=$PPID
	(
		trap '' TERM INT HUP
		while kill -0 "$_me" 2>/dev/null && kill -0 "$_parent" 2>/dev/null; do sleep 1; done
		kill -KILL "$_me" 2>/dev/null
		_netns_cleanup
	) </dev/null >/dev/null 2>&1 &
}
_netns_cleanup() {
	ip netns pids "$_ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
	ip netns del "$_ns" 2>/dev/null
}
