#!/usr/bin/env bash
# vmdisk.nova side by side with Nova's own libvirt imagebackend (issue 19):
# python/tests/test_nova_side_by_side.py under pytest, with Debian's
# python3-nova as the reference (installed here when missing and we are
# root). Each pytest case becomes one ok/FAIL line; the hostile images Nova
# accepts and vmdisk refuses are cases too (expected differences, asserted).
#
#   tests/suite/nova/run.sh [BUILD_DIR]
#
# Needs the build's Python module (BUILD/python/vmdisk). Last line
# "N passed, N failed"; exit 77 only when the build has no module, or
# python3-nova or python3-pytest cannot be installed.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=nova
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${1:-}"
compgen -G "$build/python/vmdisk/_vmdisk*.so" >/dev/null ||
	skip "no Python module in $build (-Dpython, python3-dev)"
[[ -f "$build/python/vmdisk/nova.py" ]] ||
	fail_suite "no vmdisk/nova.py in $build/python (reconfigure the build)"
need_python nova.virt.libvirt.imagebackend python3-nova
need_python pytest python3-pytest

suite_tmp
export PYTHONPATH=$build/python PYTHONDONTWRITEBYTECODE=1
# A sanitizer build (-Dsanitize=true): the module links libasan, which must
# come first in a Python not built with it; Python's own allocations are
# not ours to report as leaks.
so=$(compgen -G "$build/python/vmdisk/_vmdisk*.so" | head -n 1)
asan=$(ldd "$so" | awk '/libasan\.so/ { print $3; exit }')
if [[ -n "$asan" ]]; then
	export LD_PRELOAD=$asan ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
	# ASan's crypt(3) interceptor reads the NULL libxcrypt returns for a
	# method it lacks, and Python's crypt module probes its methods on
	# import: nova.virt.disk.api imports it (password injection, which
	# nothing here uses) and Python dies. Under the sanitizer only, crypt
	# is a module without methods. The preload is for this Python only:
	# the programs Nova and the tests run (qemu-img, cp) go without it.
	mkdir "$tmp/asan-site"
	cat >"$tmp/asan-site/sitecustomize.py" <<'PY'
import os, sys, types
crypt = types.ModuleType("crypt")
crypt.methods = []
sys.modules["crypt"] = crypt
os.environ.pop("LD_PRELOAD", None)
PY
	PYTHONPATH=$tmp/asan-site:$PYTHONPATH
fi
nice "$py" -m pytest -q -p no:cacheprovider -W ignore \
	--basetemp="$tmp/pytest" --junitxml="$tmp/junit.xml" \
	python/tests/test_nova_side_by_side.py >"$tmp/pytest.log" 2>&1
[[ -s "$tmp/junit.xml" ]] || {
	tail -20 "$tmp/pytest.log"
	fail_suite "pytest did not run"
}
while read -r verdict name; do
	case $verdict in
	ok) ok "$name" ;;
	skip) say "skipped: $name" ;;
	*) bad "$name" ;;
	esac
done < <("$py" - "$tmp/junit.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).iter("testcase"):
    kinds = {child.tag for child in case}
    verdict = ("bad" if kinds & {"failure", "error"} else
               "skip" if "skipped" in kinds else "ok")
    print(verdict, case.get("name"))
PY
)
((failed == 0)) || grep -E '^(E |FAILED)' "$tmp/pytest.log" | head -40
finish
