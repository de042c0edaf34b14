# SPDX-License-Identifier: GPL-2.0
# Shared by the host peers of the guest tests (tests/host/*.sh), sourced
# after they set g, the output directory of the guest they follow:
#   ok NAME, not_ok NAME DETAIL   TAP results, numbered in order
#   wait_file NAME SECONDS        until the guest wrote $g/NAME (0), or its
#                                 script ended or SECONDS passed (1)
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
