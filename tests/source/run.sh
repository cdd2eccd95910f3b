#!/usr/bin/env bash
# Source rules that hold by construction and must stay so (DEVELOPERS.md):
#  - no shell and no process start outside the runner;
#  - the runner names no shell;
#  - one cleanup idiom (__attribute__((cleanup))), no `goto out`;
#  - every lib/*.c starts with a block comment saying what it is for;
#  - libvmdisk (BUILD_DIR, $1, default build/) does not link libcurl or
#    libcryptsetup (both are dlopen()ed when needed).
# Last line: "N passed, N failed".
set -uo pipefail
BUILD_DIR=${1:-build}
cd "$(dirname "$0")/../.."

passed=0
failed=0
check() { # name, then a command that succeeds when the rule holds
	local name=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "ok   $name"
	else
		failed=$((failed + 1))
		echo "FAIL $name"
	fi
}

no_process_start_outside_runner() {
	local hits
	hits=$(grep -rnE '\b(system|popen|execl?p?e?|execv[pe]*|fork|vfork|posix_spawnp?)\s*\(' lib tools |
		grep -v '^lib/runner\.c:' || true)
	[ -z "$hits" ] || { echo "$hits"; return 1; }
}

runner_names_no_shell() {
	! grep -nE '"/bin/(ba|da)?sh"|"sh"|"-c"|\bsystem\s*\(|\bpopen\s*\(' lib/runner.c
}

one_cleanup_idiom() {
	! grep -rnE '\bgoto\s+[a-z_]+\s*;' lib tools
}

files_say_what_they_are() {
	local f bad=0
	for f in lib/*.c tools/*.c; do
		head -n 1 "$f" | grep -q '^/\*' || { echo "no header comment: $f"; bad=1; }
	done
	return "$bad"
}

# Every process pays for the libraries it links: libcurl (and the thirty
# it brings) is dlopen()ed by the network sources only (lib/curl_lazy.h).
libvmdisk_does_not_link_curl() {
	local lib=${BUILD_DIR:-build}/lib/libvmdisk.so
	[[ -f "$lib" ]] || { echo "no $lib"; return 1; }
	! readelf -d "$lib" | grep -E 'NEEDED.*(libcurl|libcryptsetup)'
}

check "no process is started outside lib/runner.c" no_process_start_outside_runner
check "the runner names no shell" runner_names_no_shell
check "one cleanup idiom (no goto)" one_cleanup_idiom
check "every source file starts with its comment" files_say_what_they_are
check "libvmdisk does not link libcurl or libcryptsetup" libvmdisk_does_not_link_curl
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
