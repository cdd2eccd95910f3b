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
py_asan_setup
nice "$py" -m pytest -q -p no:cacheprovider -W ignore \
	--basetemp="$tmp/pytest" --junitxml="$tmp/junit.xml" \
	python/tests/test_nova_side_by_side.py >"$tmp/pytest.log" 2>&1
pytest_cases "$tmp/junit.xml" "$tmp/pytest.log"
finish
