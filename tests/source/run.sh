#!/usr/bin/env bash
# Source rules that hold by construction and must stay so (DEVELOPERS.md):
#  - no shell and no process start outside the runner;
#  - the runner names no shell;
#  - one cleanup idiom: _cleanup_() from lib/cleanup.h, the attribute
#    written nowhere else (lib, tools, tests), and no `goto out`;
#  - every lib/*.c starts with a block comment saying what it is for;
#  - libvmdisk (BUILD_DIR, $1, default build/) does not link libcurl or
#    libcryptsetup (both are dlopen()ed when needed);
#  - no file under lib/ but the path module (lib/beneath.c) opens, makes,
#    renames, removes or stats a path under instances_path (issue 14).
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

# _cleanup_(fn) is the one spelling: the attribute itself (and so any
# per-file AUTO macro made from it) only in lib/cleanup.h.
cleanup_attribute_only_in_cleanup_h() {
	! grep -rnE '__attribute__\s*\(\(\s*(__)?cleanup(__)?\b' \
		--include='*.c' --include='*.h' lib tools tests |
		grep -vE '^lib/(.*/)?cleanup\.h:'
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

# Every file operation under instances_path goes through lib/beneath.c
# (openat2 beneath a directory descriptor, never following a link). The
# path-taking file calls are allowed only in the files below, each with
# why the paths it opens are not under instances_path; any other file
# calling one of them fails this check, whatever the path.
declare -A FILE_CALLS_ALLOWED=(
	[lib/beneath.c]="the path module itself"
	[lib/fsutil.c]="generic helpers: the *at forms act on a descriptor from lib/beneath.c and one name; the path forms serve directories outside instances_path (an extract's destination, key files)"
	[lib/config.c]="the configuration file"
	[lib/keys.c]="key_file_dir (keys.c checks its own directory)"
	[lib/luks.c]="block devices and device-mapper nodes under /dev"
	[lib/lvm_volume.c]="LV device nodes under /dev; vmdiskd's open_base (a config but no context) opens the cache directory O_NOFOLLOW and the entry O_NOFOLLOW, one level each"
	[lib/privhelper_server.c]="vmdiskd's socket and audit log"
	[lib/runner.c]="programs on PATH"
	[lib/source.c]="a local image source the caller names, and /dev/null"
	[lib/source_glance.c]="the Glance token file from the configuration"
	[lib/blockdev.c]="images the converter is given: the caller's paths, or /proc/self/fd/N of a descriptor opened by lib/beneath.c"
)
FILE_CALLS_RE='(^|[^A-Za-z0-9_>.])(open|openat|openat2|opendir|fopen|mkdir|mkdirat|mkdtemp|mkstemp|unlink|unlinkat|rmdir|rename|renameat|renameat2|link|linkat|symlink|symlinkat|stat|lstat|fstatat|statx|utimensat|chmod|chown|lchown|truncate|realpath|json_object_from_file|json_object_to_file)[[:space:]]*\('

file_calls_only_in_path_module() {
	local f hits bad=0
	for f in lib/*.c; do
		[[ -n "${FILE_CALLS_ALLOWED[$f]:-}" ]] && continue
		hits=$(grep -nE "$FILE_CALLS_RE" "$f" |
			grep -vE '^[0-9]+:[[:space:]]*(\*|/\*|//)' || true)
		[[ -z "$hits" ]] && continue
		echo "$hits" | sed "s|^|$f:|"
		bad=1
	done
	[[ "$bad" -eq 0 ]] || echo "use lib/beneath.c (vmd_bopen, vmd_bmkdir, ...) or add the file with its reason to FILE_CALLS_ALLOWED"
	return "$bad"
}

check "no process is started outside lib/runner.c" no_process_start_outside_runner
check "the runner names no shell" runner_names_no_shell
check "one cleanup idiom (no goto)" one_cleanup_idiom
check "the cleanup attribute only in lib/cleanup.h" cleanup_attribute_only_in_cleanup_h
check "every source file starts with its comment" files_say_what_they_are
check "libvmdisk does not link libcurl or libcryptsetup" libvmdisk_does_not_link_curl
check "file calls under instances_path only in lib/beneath.c" file_calls_only_in_path_module
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
