#!/usr/bin/env bash
# The Python module vmdisk (issue 19): python/tests/test_vmdisk.py under
# pytest with Debian's /usr/bin/python3 and PYTHONPATH=BUILD/python (the
# build tree's package), one case line per pytest test, again under ASan
# when BUILD-asan has the module; then
# `import vmdisk` from an install (meson install --destdir, PYTHONPATH
# and LD_LIBRARY_PATH into it).
#
#   tests/suite/python/run.sh [BUILD_DIR]
#
# Last line "N passed, N failed"; exit 77 when the build has no module
# (-Dpython=disabled, or no Python.h for /usr/bin/python3).
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=python
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${1:-}"

compgen -G "$build/python/vmdisk/_vmdisk*.so" >/dev/null ||
	skip "no Python module in $build (-Dpython, python3-dev)"
need_python pytest python3-pytest
suite_tmp

# run_pytest LABEL BUILD [ENV...]: the tests against BUILD/python, one
# case line per test from pytest's -rA summary ("PASSED file::test",
# "FAILED file::test - why", "ERROR ..."; skips are not counted).
run_pytest() {
	local label=$1 dir=$2 log=$tmp/pytest-$1.log rc n=0 word rest
	shift 2
	env "$@" VMDISK_PY_EXPECT_DIR="$dir/python" PYTHONPATH="$dir/python" \
		PYTHONDONTWRITEBYTECODE=1 \
		nice "$py" -m pytest -rA -q -p no:cacheprovider \
		--basetemp="$tmp/pytest-$label" python/tests/test_vmdisk.py \
		>"$log" 2>&1
	rc=$?
	while read -r word rest; do
		case $word in
		PASSED) ok "$label ${rest#*::}"; n=$((n + 1)) ;;
		FAILED | ERROR) bad "$label ${rest#*::}"; n=$((n + 1)) ;;
		esac
	done < <(sed -n '/short test summary info/,$p' "$log")
	if ((rc != 0 || n == 0)); then
		# the failures' tracebacks, for whoever reads the log
		grep -v '^PASSED ' "$log" | tail -150
		((n > 0)) || bad "$label: pytest ran (exit $rc, no test reported)"
	fi
}

run_pytest pytest "$build"

# The same under AddressSanitizer when the ASan build beside it has the
# module: python itself is not instrumented, so the sanitizer runtimes are
# preloaded (leak detection off: the interpreter keeps memory to its exit;
# valgrind and the RSS case look for leaks in the plain build).
asan_build=$build-asan
libasan=$(gcc -print-file-name=libasan.so 2>/dev/null)
libubsan=$(gcc -print-file-name=libubsan.so 2>/dev/null)
if compgen -G "$asan_build/python/vmdisk/_vmdisk*.so" >/dev/null &&
	[[ -f "$libasan" && -f "$libubsan" ]]; then
	run_pytest asan "$asan_build" LD_PRELOAD="$libasan $libubsan" \
		ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
else
	say "no $asan_build with the module: the ASan pass is left out"
fi

# From an install: the module and the package files land in the python's
# site folder, libvmdisk.so in libdir; nothing of the build tree is used.
dest=$tmp/dest
if meson install -C "$build" --no-rebuild --quiet --destdir "$dest" \
	>"$tmp/install.log" 2>&1; then
	so=$(find "$dest" -name '_vmdisk*.so' -print -quit)
	lib=$(find "$dest" -name 'libvmdisk.so.0' -print -quit)
	site=$(dirname "$(dirname "$so")")
	if [[ -n "$so" && -n "$lib" && -f "$site/vmdisk/__init__.py" ]] &&
		(cd "$tmp" && env -u VMDISK_CONFIG PYTHONPATH="$site" \
			LD_LIBRARY_PATH="$(dirname "$lib")" "$py" -c '
import sys, vmdisk
assert vmdisk.__file__.startswith(sys.argv[1]), vmdisk.__file__
assert vmdisk.version() == vmdisk.__version__
try:
    vmdisk.Context(sys.argv[2])
except vmdisk.NotFound:
    pass
' "$dest" "$tmp/no.conf") >"$tmp/import.log" 2>&1; then
		ok "import vmdisk from an install ($site)"
	else
		cat "$tmp/import.log"
		bad "import vmdisk from an install"
	fi
else
	tail -20 "$tmp/install.log"
	bad "meson install --destdir"
fi
finish
