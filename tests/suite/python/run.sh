#!/usr/bin/env bash
# The Python module vmdisk (issue 19): python/tests/test_vmdisk.py under
# pytest with Debian's /usr/bin/python3 and PYTHONPATH=BUILD/python (the
# build tree's package), one case line per pytest test; then
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
# shellcheck source=../lib.sh
. tests/suite/lib.sh
suite_build "${1:-}"

compgen -G "$build/python/vmdisk/_vmdisk*.so" >/dev/null ||
	skip "no Python module in $build (-Dpython, python3-dev)"
need_python pytest python3-pytest
suite_tmp

# One case line per test: pytest's -rA summary ("PASSED file::test",
# "FAILED file::test - why", "ERROR ...", "SKIPPED [1] file:line: why").
VMDISK_PY_EXPECT_DIR=$build/python PYTHONPATH=$build/python \
	PYTHONDONTWRITEBYTECODE=1 \
	nice "$py" -m pytest -rA -q -p no:cacheprovider \
	--basetemp="$tmp/pytest" python/tests/test_vmdisk.py \
	>"$tmp/pytest.log" 2>&1
rc=$?
n=0
while read -r word rest; do
	case $word in
	PASSED) ok "pytest ${rest#*::}"; n=$((n + 1)) ;;
	FAILED | ERROR) bad "pytest ${rest#*::}"; n=$((n + 1)) ;;
	esac
done < <(sed -n '/short test summary info/,$p' "$tmp/pytest.log")
if ((rc != 0 || n == 0)); then
	# the failures' tracebacks, for whoever reads the log
	grep -v '^PASSED ' "$tmp/pytest.log" | tail -150
	((n > 0)) || bad "pytest ran (exit $rc, no test reported)"
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
