#!/usr/bin/env bash
# Source rules that hold by construction and must stay so (DEVELOPERS.md):
#  - no shell and no process start outside the runner;
#  - the runner names no shell;
#  - one cleanup idiom: _cleanup_() from lib/util/cleanup.h, the attribute
#    written nowhere else (lib, tools, tests), and no `goto out`;
#  - every lib/**/*.c starts with a block comment saying what it is for;
#  - lib/ is layered (LAYERS below, doc/design.md): a file in lib/<layer>/
#    includes headers of its own or a lower layer only;
#  - libvmdisk (BUILD_DIR, $1, default build/) does not link libcurl or
#    libcryptsetup (both are dlopen()ed when needed);
#  - libvmdisk exports the calls include/vmdisk/ declares and nothing else;
#    a backend module exports its table, stamp and host pointer only, calls
#    only public functions, and includes of lib/ only module_host.h and
#    header-only helpers;
#  - libvmdisk holds none of vmdiskd's privileged code (lib/priv/server/);
#  - one data mover (issue 17): no file under lib/ but the mover
#    (lib/format/mover.c) and the raw block device's status
#    (lib/format/blockdev.c) walks SEEK_DATA/SEEK_HOLE in code;
#  - no file under lib/ but the path module (lib/core/beneath.c) opens, makes,
#    renames, removes or stats a path under instances_path (issue 14).
# Last line: "N passed, N failed".
set -uo pipefail
BUILD_DIR=${1:-build}
cd "$(dirname "$0")/../../.."

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

# The library's files of one kind (c or h), in every layer folder.
lib_files() {
	find lib -name "*.$1" -type f | LC_ALL=C sort
}

no_process_start_outside_runner() {
	local hits
	hits=$(grep -rnE '\b(system|popen|execl?p?e?|execv[pe]*|fork|vfork|posix_spawnp?)\s*\(' lib tools |
		grep -v '^lib/util/runner\.c:' || true)
	[ -z "$hits" ] || { echo "$hits"; return 1; }
}

runner_names_no_shell() {
	! grep -nE '"/bin/(ba|da)?sh"|"sh"|"-c"|\bsystem\s*\(|\bpopen\s*\(' lib/util/runner.c
}

one_cleanup_idiom() {
	! grep -rnE '\bgoto\s+[a-z_]+\s*;' lib tools
}

# _cleanup_(fn) is the one spelling: the attribute itself (and so any
# per-file AUTO macro made from it) only in lib/util/cleanup.h.
cleanup_attribute_only_in_cleanup_h() {
	! grep -rnE '__attribute__\s*\(\(\s*(__)?cleanup(__)?\b' \
		--include='*.c' --include='*.h' lib tools tests |
		grep -vE '^lib/(.*/)?cleanup\.h:'
}

files_say_what_they_are() {
	local f bad=0
	for f in $(lib_files c) tools/*.c; do
		head -n 1 "$f" | grep -q '^/\*' || { echo "no header comment: $f"; bad=1; }
	done
	return "$bad"
}

# Every process pays for the libraries it links: libcurl (and the thirty
# it brings) is dlopen()ed by the network sources only (lib/curl_lazy.h),
# libcrypto by digests, zlib and libzstd by compressed qcow2 clusters,
# json-c by records and --json (crypto_lazy.h, zlib_lazy.h, zstd_lazy.h,
# jsonc_lazy.h); neither the library nor the CLI names them.
libvmdisk_does_not_link_curl() {
	local lib=${BUILD_DIR:-build}/lib/libvmdisk.so f
	[[ -f "$lib" ]] || { echo "no $lib"; return 1; }
	for f in "$lib" "${BUILD_DIR:-build}/tools/vmdisk"; do
		! readelf -d "$f" |
			grep -E 'NEEDED.*(libcurl|libcryptsetup|libcrypto|libz\.|libzstd|libjson-c)' ||
			return 1
	done
}

# Every file operation under instances_path goes through lib/core/beneath.c
# (openat2 beneath a directory descriptor, never following a link). The
# path-taking file calls are allowed only in the files below, each with
# why the paths it opens are not under instances_path; any other file
# calling one of them fails this check, whatever the path.
declare -A FILE_CALLS_ALLOWED=(
	[lib/core/beneath.c]="the path module itself"
	[lib/core/fsutil.c]="generic helpers: the *at forms act on a descriptor from lib/core/beneath.c and one name; the path forms serve directories outside instances_path (an extract's destination, key files)"
	[lib/core/config.c]="the configuration file"
	[lib/core/error.c]="the error trace of fault-injection builds (VMDISK_ERROR_TRACE, a file of the tests)"
	[lib/util/faultpoint.c]="test builds only: VMDISK_FAULT_TRACE, an absolute path the test names, outside instances_path"
	[lib/priv/server/keys.c]="key_file_dir (keys.c checks its own directory)"
	[lib/priv/server/luks.c]="block devices and device-mapper nodes under /dev"
	[lib/priv/server/lvm_volume.c]="LV device nodes under /dev; vmdiskd's open_base (a config but no context) opens the cache directory O_NOFOLLOW and the entry O_NOFOLLOW, one level each"
	[lib/priv/server/privhelper_server.c]="vmdiskd's socket and audit log"
	[lib/util/runner.c]="programs on PATH"
	[lib/source/source.c]="a local image source the caller names, and /dev/null"
	[lib/source/source_glance.c]="the Glance token file from the configuration"
	[lib/format/mover.c]="only /proc/self/fd/N: the destination descriptor it was given, opened again with O_DIRECT"
	[lib/format/blockdev.c]="images the converter is given: the caller's paths, or /proc/self/fd/N of a descriptor opened by lib/core/beneath.c"
)
FILE_CALLS_RE='(^|[^A-Za-z0-9_>.])(open|openat|openat2|opendir|fopen|mkdir|mkdirat|mkdtemp|mkstemp|unlink|unlinkat|rmdir|rename|renameat|renameat2|link|linkat|symlink|symlinkat|stat|lstat|fstatat|statx|utimensat|chmod|chown|lchown|truncate|realpath|json_object_from_file|json_object_to_file)[[:space:]]*\('

file_calls_only_in_path_module() {
	local f hits bad=0
	for f in "${!FILE_CALLS_ALLOWED[@]}"; do
		[[ -f "$f" ]] || { echo "FILE_CALLS_ALLOWED names $f, which is gone"; bad=1; }
	done
	for f in $(lib_files c); do
		[[ -n "${FILE_CALLS_ALLOWED[$f]:-}" ]] && continue
		hits=$(grep -nE "$FILE_CALLS_RE" "$f" |
			grep -vE '^[0-9]+:[[:space:]]*(\*|/\*|//)' || true)
		[[ -z "$hits" ]] && continue
		echo "$hits" | sed "s|^|$f:|"
		bad=1
	done
	[[ "$bad" -eq 0 ]] || echo "use lib/core/beneath.c (vmd_bopen, vmd_bmkdir, ...) or add the file with its reason to FILE_CALLS_ALLOWED"
	return "$bad"
}

# libvmdisk.so exports exactly the functions that include/vmdisk/ declares
# (preprocessed, so macros are not counted), all in its one version node
# VMDISK_0, and nothing else: no data, no second node (lib/libvmdisk.sym).
exports_match_public_headers() {
	local lib=${BUILD_DIR:-build}/lib/libvmdisk.so declared exported other
	[[ -f "$lib" ]] || { echo "no $lib"; return 1; }
	declared=$(for h in include/vmdisk/*.h; do echo "#include <vmdisk/${h##*/}>"; done |
		${CC:-cc} -E -P -Iinclude -x c - |
		grep -oE '\bvmd_[a-z0-9_]+[[:space:]]*\(' | sed -E 's/[[:space:]]*\($//' | LC_ALL=C sort -u)
	exported=$(nm -D --defined-only "$lib")
	# The node's own name (type A), then functions (T) of that node only.
	other=$(echo "$exported" | awk '!($2 == "A" && $3 == "VMDISK_0") &&
		!($2 == "T" && $3 ~ /^vmd_[a-z0-9_]+@@VMDISK_0$/)')
	[[ -z "$other" ]] || { echo "exported besides the public functions (VMDISK_0):"; echo "$other"; return 1; }
	diff <(echo "$declared") \
		<(echo "$exported" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | LC_ALL=C sort) ||
		{ echo "(< declared in include/vmdisk/ only, > exported only)"; return 1; }
}

# A backend module (lib/vmdisk-<name>.so) exports its ops table, its build
# stamp and its host pointer (lib/backend/module_host.h), nothing more; and
# of the library it calls only public functions (VMDISK_0): the rest it
# reaches through the host table.
modules_export_only_their_table() {
	local m name exported other calls bad=0 found=0
	for m in "${BUILD_DIR:-build}"/lib/vmdisk-*.so; do
		[[ -f "$m" ]] || continue
		found=1
		name=${m##*/vmdisk-}
		name=${name%.so}
		# __odr_asan.X: AddressSanitizer's marker beside each exported
		# variable X (-Dsanitize=true), not an export of its own.
		exported=$(nm -D --defined-only "$m" | awk '{ print $3 }' |
			sed 's/^__odr_asan\.//' | LC_ALL=C sort -u)
		other=$(echo "$exported" | grep -vxE "vmd_backend_${name}|vmd_backend_build_stamp|vmd_module_host" || true)
		[[ -z "$other" ]] || { echo "$m exports more than its table, stamp and host pointer:"; echo "$other"; bad=1; }
		for s in "vmd_backend_${name}" vmd_backend_build_stamp; do
			echo "$exported" | grep -qx "$s" || { echo "$m does not export $s"; bad=1; }
		done
		calls=$(nm -D --undefined-only "$m" | awk '{ print $2 }' | grep -E '^vmd_' |
			grep -vE '@VMDISK_0$' || true)
		[[ -z "$calls" ]] || { echo "$m calls into the library outside VMDISK_0:"; echo "$calls"; bad=1; }
	done
	[[ "$found" -eq 1 ]] || echo "(no module built: nothing to check)"
	return "$bad"
}

# A module's source (lib/backend/<name>/) includes, of lib/, only the host
# table's header and header-only helpers (module_host.h says why); the
# public headers it includes as <vmdisk/...>.
MODULE_INCLUDES_ALLOWED="module_host.h cleanup.h bytes.h vmd_build_config.h"
modules_include_only_module_host() {
	local f h bad=0
	for f in $(find lib/backend -mindepth 2 -name '*.[ch]' | LC_ALL=C sort); do
		while read -r h; do
			[[ -z "$h" ]] && continue
			[[ " $MODULE_INCLUDES_ALLOWED " == *" $h "* ]] && continue
			echo "$f includes \"$h\" (a module may include only: $MODULE_INCLUDES_ALLOWED)"
			bad=1
		done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p' "$f")
	done
	return "$bad"
}

# The privileged side (lib/priv/server/: handlers, key providers, policy,
# servers) is in libvmdisk-priv.a, which only vmdiskd and the tests link:
# libvmdisk.so and libvmdisk-internal.a define none of it, not even as a
# hidden symbol (as root, the library starts `vmdiskd --stdio` instead).
libvmdisk_holds_no_privileged_code() {
	local dir=${BUILD_DIR:-build}/lib lib f hits bad=0 priv
	for lib in "$dir/libvmdisk.so" "$dir/libvmdisk-internal.a"; do
		[[ -f "$lib" ]] || { echo "no $lib"; return 1; }
		hits=$(nm --defined-only "$lib" 2>/dev/null | awk '{ print $3 }' |
			grep -E '^(vmd_priv_(lvm_|luks_|mkfs|serve|dispatch|policy_|served_device|ops_default)|vmd_key_(get|free)$|vmd_luks_|vmd_lvm_tags_have_ours$)' || true)
		[[ -z "$hits" ]] || { echo "$lib defines:"; echo "$hits"; bad=1; }
	done
	priv=$dir/libvmdisk-priv.a
	[[ -f "$priv" ]] || { echo "no $priv"; return 1; }
	for f in $(nm --defined-only "$priv" 2>/dev/null | awk '$2 ~ /^[TDRB]$/ { print $3 }'); do
		nm --defined-only "$dir/libvmdisk.so" | awk '{ print $3 }' | grep -qx "$f" &&
			{ echo "libvmdisk.so defines $f of libvmdisk-priv.a"; bad=1; }
	done
	return "$bad"
}

# The layers of lib/, lowest first (doc/design.md draws them). A file in
# lib/<layer>/ (or a folder below it, as lib/backend/rbd/) may include a
# header from its own layer or a lower one only. Every quoted include is
# resolved to the lib/ folder that holds it, as the compiler does with the
# one include path per layer (meson.build); a header name held by two
# folders is refused, since the include path could then pick either.
LAYERS=(util core format inspect source cache xml priv backend api)

# Comments may name them (mover.h says what it replaces); code may not.
one_data_mover() {
	local hits
	hits=$(grep -rnE '\bSEEK_(DATA|HOLE)\b' lib |
		grep -vE '^lib/format/(mover|blockdev)\.c:' |
		grep -vE '^[^:]+:[0-9]+:\s*(/?\*|//)' || true)
	[ -z "$hits" ] || { echo "$hits"; return 1; }
}

layer_of() { # lib/<layer>/... -> <layer>
	local rest=${1#lib/}
	echo "${rest%%/*}"
}

includes_follow_layers() {
	local -A rank=() home=()
	local i f h src dst bad=0
	for i in "${!LAYERS[@]}"; do
		rank[${LAYERS[$i]}]=$i
	done
	for f in $(lib_files h); do
		h=${f##*/}
		if [[ -n "${home[$h]:-}" ]]; then
			echo "$h is in both ${home[$h]} and $f"
			bad=1
		fi
		home[$h]=$f
	done
	for f in $(lib_files c) $(lib_files h); do
		src=$(layer_of "$f")
		if [[ -z "${rank[$src]:-}" ]]; then
			echo "$f: lib/$src/ is not a layer (LAYERS in $0)"
			bad=1
			continue
		fi
		while read -r h; do
			[[ -z "$h" ]] && continue
			if [[ -z "${home[$h]:-}" ]]; then
				# generated by meson (build dir), not a layer's
				[[ "$h" == vmd_build_config.h ]] && continue
				echo "$f: includes \"$h\", which no lib/ folder holds"
				bad=1
				continue
			fi
			dst=$(layer_of "${home[$h]}")
			if (( rank[$dst] > rank[$src] )); then
				echo "$f ($src) includes ${home[$h]} ($dst, a higher layer)"
				bad=1
			fi
		done < <(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/p' "$f")
	done
	return "$bad"
}

check "no process is started outside lib/util/runner.c" no_process_start_outside_runner
check "the runner names no shell" runner_names_no_shell
check "one cleanup idiom (no goto)" one_cleanup_idiom
check "the cleanup attribute only in lib/util/cleanup.h" cleanup_attribute_only_in_cleanup_h
check "every source file starts with its comment" files_say_what_they_are
check "libvmdisk and vmdisk do not link libcurl, libcryptsetup, libcrypto, zlib, libzstd or json-c" libvmdisk_does_not_link_curl
check "file calls under instances_path only in lib/core/beneath.c" file_calls_only_in_path_module
check "lib/ layers include only their own or lower layers" includes_follow_layers
check "libvmdisk.so exports exactly the public headers' calls" exports_match_public_headers
check "backend modules export only their table, stamp and host pointer" modules_export_only_their_table
check "backend modules include only module_host.h and header-only helpers" modules_include_only_module_host
check "libvmdisk holds no privileged handler (libvmdisk-priv.a, vmdiskd only)" libvmdisk_holds_no_privileged_code
check "SEEK_DATA/SEEK_HOLE only in the data mover and blockdev.c" one_data_mover
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
