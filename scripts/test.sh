#!/usr/bin/env bash
# Build vmdisk twice and run every test; the last line printed is the total:
#
#   N passed, N failed[, N skipped]
#
#   build/       plain build with fault points (-Dfault_injection=true)
#   build-asan/  the same with AddressSanitizer + UBSan
#   build/ again under valgrind memcheck (meson test --setup valgrind)
#
# Both builds are tested even when the first fails. Then every executable
# tests/suite/*/run.sh runs once (against build/): each prints a last line
# "N passed, N failed[, N skipped]" and exits 0 on success, 77 when the whole
# suite was skipped, anything else on failure. The suites run under strace
# (execve and the forks, seccomp-bpf), and with VMDISK_ERROR_TRACE set (as
# the meson runs are); two checks at the end read what they recorded: no
# shell or unlisted program run by our binaries (doc/design.md, "Programs
# vmdisk runs") and every error message by the error-exposure rule
# (tests/suite/reliability/errors_check.py).
#
# Counts are of cmocka test cases, as meson recorded them from the suites'
# TAP output (see count_testlog). Exit status: 0 when nothing failed and at
# least one test ran, else 1.
set -euo pipefail

cd "$(dirname "$0")/.."
export VMD_LOG_TAG=test
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

total_passed=0
total_failed=0
total_skipped=0

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Print "PASSED FAILED SKIPPED" for the meson log given as $1 (a
# testlog*.json; its testlog*.junit.xml beside it). The cmocka suites speak
# TAP (protocol 'tap' in tests/meson.build), so meson's JUnit log has one
# testcase per cmocka case, and one per executable of any other test. An
# executable meson calls failed (crash, timeout, TAP plan not met, sanitizer
# report) counts as at least one failure even when none of its cases did.
count_testlog() {
	python3 - "$1" "${1%.json}.junit.xml" <<'PY'
import json, sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
failed_tests = set()  # names of the meson tests with a failed case
for suite in ET.parse(sys.argv[2]).getroot().iter('testsuite'):
    for case in suite.iter('testcase'):
        if case.find('failure') is not None or case.find('error') is not None:
            failed += 1
            # A TAP test is a suite "<project>.<test>" of its cases; any
            # other test a case "<test>" of the suite "<project>".
            if '.' in suite.get('name'):
                failed_tests.add(suite.get('name').split('.', 1)[1])
            else:
                failed_tests.add(case.get('name'))
        elif case.find('skipped') is not None:
            skipped += 1
        else:
            passed += 1
with open(sys.argv[1], encoding='utf-8') as f:
    for line in f:
        test = json.loads(line)
        if (test['result'] not in ('OK', 'SKIP', 'EXPECTEDFAIL') and
                test['name'] not in failed_tests):
            failed += 1
print(passed, failed, skipped)
PY
}

add_counts() { # passed failed skipped
	total_passed=$((total_passed + $1))
	total_failed=$((total_failed + $2))
	total_skipped=$((total_skipped + $3))
}

# run_meson_suite DIR [meson test options...] -- [meson setup options...]
run_meson_suite() {
	local dir=$1
	shift
	local -a test_opts=() setup_opts=()
	while (($# > 0)) && [[ "$1" != -- ]]; do
		test_opts+=("$1")
		shift
	done
	if (($# > 0)); then
		shift
	fi
	setup_opts=("$@")

	local log="$dir/meson-logs/testlog.json"
	local rc=0 counts passed failed skipped label=$dir i

	# meson names the log of a test setup testlog-<setup>.json.
	for ((i = 0; i + 1 < ${#test_opts[@]}; i++)); do
		if [[ "${test_opts[i]}" == --setup ]]; then
			log="$dir/meson-logs/testlog-${test_opts[i + 1]}.json"
			label="$dir (${test_opts[i + 1]})"
		fi
	done

	echo "=== $label: build"
	# A log left by an earlier run must not be counted again.
	rm -f "$log" "${log%.json}.txt" "${log%.json}.junit.xml"
	if ! vmd_build "$dir" "${setup_opts[@]}"; then
		echo "=== $label: build failed"
		add_counts 0 1 0
		return 0
	fi
	echo "=== $label: meson test"
	# Every error message the library sets goes to $errors (see
	# run_script_suite); the error-exposure check reads it at the end.
	VMDISK_ERROR_TRACE="$errors/meson-${label//[^A-Za-z0-9-]/_}.log" \
		meson test -C "$dir" --print-errorlogs "${test_opts[@]}" || rc=$?
	if [[ -f "$log" ]]; then
		counts=$(count_testlog "$log") || counts=""
	else
		counts="0 0 0"
	fi
	if [[ ! "$counts" =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
		echo "=== $label: could not read $log"
		counts="0 1 0"
	fi
	read -r passed failed skipped <<<"$counts"
	if ((rc != 0 && failed == 0)); then
		failed=1 # meson failed without a failed test to show for it
	fi
	echo "=== $label: cases ok $passed, failed $failed, skipped $skipped (meson exit $rc)"
	add_counts "$passed" "$failed" "$skipped"
}

# run_counted LABEL COMMAND...: run a command that prints a last line
# "N passed, N failed[, N skipped]" (a script suite, a check) and add its
# counts; exit 77 means skipped, any other non-zero status at least one
# failure.
run_counted() {
	local label=$1 out="$tmp/script.log" rc last
	local re='^([A-Za-z_-]+: )?([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$'
	local passed=0 failed=0 skipped=0
	shift

	echo "=== $label"
	set +e
	"$@" </dev/null 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	set -e
	last=$(tr -d '\r' <"$out" | sed -e '/^[[:space:]]*$/d' | tail -n 1)
	if [[ "$last" =~ $re ]]; then
		passed=${BASH_REMATCH[2]}
		failed=${BASH_REMATCH[3]}
		skipped=${BASH_REMATCH[5]:-0}
	fi
	case $rc in
	0)
		((passed + failed + skipped > 0)) || passed=1
		;;
	77)
		((passed + failed + skipped > 0)) || skipped=1
		;;
	*)
		((failed > 0)) || failed=1
		;;
	esac
	echo "=== $label: ok $passed, failed $failed, skipped $skipped (exit $rc)"
	add_counts "$passed" "$failed" "$skipped"
}

# run_script_suite SCRIPT: a tests/suite/*/run.sh against build/, under
# strace (the no-shell check reads $traces/<suite>.strace afterwards), with
# every error message the library sets appended to $errors/<suite>.log.
# seccomp-bpf stops only at the traced calls: a suite that mostly waits
# (http) runs as fast as untraced, the most exec-heavy part (reliability's
# hostile arguments, ~2,000 CLI runs) 16-18 s -> 24-28 s (without
# --seccomp-bpf: 97 s). The inside of the vm suite's guest is not traced.
#
# Not traced: the suites that run ASan programs with LeakSanitizer on this
# host (fuzz: the libFuzzer targets; ceph: build-asan's test_rbd), because
# LeakSanitizer stops the world with ptrace and dies in a traced process.
# Their ASan programs start nothing (in-process parsers; librbd); the
# vmdisk CLI the ceph suite also runs is traced in every other suite.
untraced_suites=" fuzz ceph "
run_script_suite() {
	local script=$1 name
	local -a trace=()
	name=$(basename "$(dirname "$script")")
	if [[ "$untraced_suites" != *" $name "* ]]; then
		trace=(strace -f -qq --seccomp-bpf -e signal=none -s 65536
			-e "trace=execve,clone,clone3,fork,vfork"
			-o "$traces/$name.strace" --)
	else
		echo "=== $script: not under strace (LeakSanitizer cannot run under ptrace)"
	fi
	run_counted "$script" env VMDISK_BUILD_DIR="$VMD_ROOT/build" \
		VMDISK_SOURCE_DIR="$VMD_ROOT" \
		VMDISK_CLI="$VMD_ROOT/build/tools/vmdisk" \
		VMDISK_ERROR_TRACE="$errors/$name.log" \
		"${trace[@]}" "$script" "$VMD_ROOT/build"
}

traces=$tmp/strace
errors=$tmp/errors
mkdir -p "$traces" "$errors"

vmd_install_deps

run_meson_suite build -- -Dsanitize=false -Dfault_injection=true -Dwerror=true
# Sanitizers slow everything down: give the slow tests room.
run_meson_suite build-asan --timeout-multiplier 3 -- \
	-Dsanitize=true -Dfault_injection=true -Db_lundef=false -Dwerror=true

# valgrind memcheck over the same cmocka suites of the plain build (the
# "valgrind" test setup of tests/meson.build): an uninitialised read or a
# definite leak fails the test, in the suites and in the vmdisk CLI they
# run (ASan cannot see the first). Nothing is excluded: every suite runs
# in-process plus children valgrind either follows (our CLI) or skips
# (system programs such as qemu-img).
if command -v valgrind >/dev/null 2>&1; then
	run_meson_suite build --setup valgrind -- \
		-Dsanitize=false -Dfault_injection=true -Dwerror=true
else
	echo "=== build (valgrind): valgrind not found, counted as a failure"
	add_counts 0 1 0
fi

shopt -s nullglob
for script in tests/suite/*/run.sh; do
	[[ -f "$script" && -x "$script" ]] || continue
	run_script_suite "$script"
done

# The checks over what every suite above left behind: they run here, after
# the last suite, because the suites run in name order and reliability
# (where they belong) comes before source and vm. Counted as cases.
# No shell (issue 16): what our binaries executed, against the allow-list
# in doc/design.md.
run_counted "no-shell check" python3 tests/suite/reliability/noshell_check.py \
	doc/design.md "$traces"/*.strace
# Error exposure: every message the library set in the suites and in the
# meson runs (VMDISK_ERROR_TRACE), by one rule.
run_counted "error-exposure check" python3 tests/suite/reliability/errors_check.py \
	"$errors"/*.log
shopt -u nullglob

summary="$total_passed passed, $total_failed failed"
if ((total_skipped > 0)); then
	summary+=", $total_skipped skipped"
fi
echo "$summary"
if ((total_failed > 0 || total_passed + total_failed == 0)); then
	exit 1
fi
