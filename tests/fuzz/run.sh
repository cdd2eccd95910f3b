#!/usr/bin/env bash
# Fuzz the image inspector for a while (tests/fuzz/README.md).
#
#   tests/fuzz/run.sh [BUILD_DIR]
#
# scripts/test.sh runs it with build/ as BUILD_DIR, which it does not use:
# the fuzzer needs its own clang build, $VMDISK_FUZZ_BUILD_DIR (default
# build-fuzz/, set up with -Dfuzz=true -Db_lundef=false, reused when it
# exists). Runs fuzz_inspect for $VMDISK_FUZZ_SECONDS (default 60) on a copy
# of tests/fuzz/corpus/inspect, so that what it adds stays out of the tree.
# An input that crashes, leaks, times out or runs out of memory is copied
# into tests/fuzz/corpus/inspect/ (named <kind>-<sha1> by libFuzzer), where
# the fuzz-corpus test replays it from then on, and the suite fails.
#
# Last line: "1 passed, 0 failed" or "0 passed, 1 failed"; without clang or
# its libFuzzer runtime, "0 passed, 0 failed, 1 skipped" and exit 77.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
root=$PWD
corpus=$root/tests/fuzz/corpus/inspect
dir=${VMDISK_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${VMDISK_FUZZ_SECONDS:-60}

say() { printf 'fuzz: %s\n' "$*"; }
pass() { echo "1 passed, 0 failed"; exit 0; }
fail() { say "FAIL: $*"; echo "0 passed, 1 failed"; exit 1; }
skip() { say "skipped: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }

[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
	fail "VMDISK_FUZZ_SECONDS must be a positive number of seconds"
[[ -d "$corpus" ]] || fail "no corpus at $corpus"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-fuzz.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

command -v clang >/dev/null 2>&1 ||
	skip "clang not found (apt-get install clang libclang-rt-14-dev)"
printf '%s\n' \
	'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);' \
	'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n)' \
	'{ (void)d; (void)n; return 0; }' >"$tmp/probe.c"
clang -fsanitize=fuzzer,address,undefined "$tmp/probe.c" -o "$tmp/probe" \
	>"$tmp/probe.log" 2>&1 ||
	skip "clang cannot link a libFuzzer target ($(head -n 1 "$tmp/probe.log"));" \
		"apt-get install libclang-rt-14-dev"

# The build: a new directory is set up with clang; an existing one must be
# a clang one (meson cannot change the compiler of a build directory).
if [[ -f "$dir/build.ninja" ]]; then
	grep -qE '^ command = (ccache )?clang' "$dir/build.ninja" ||
		fail "$dir was set up without clang: remove it, or point" \
			"VMDISK_FUZZ_BUILD_DIR at another directory"
	say "reusing $dir"
	meson configure "$dir" -Dfuzz=true -Db_lundef=false >"$tmp/setup.log" 2>&1 || {
		cat "$tmp/setup.log"
		fail "meson configure $dir failed"
	}
else
	say "meson setup $dir (clang, -Dfuzz=true)"
	CC=clang meson setup "$dir" "$root" -Dfuzz=true -Db_lundef=false \
		>"$tmp/setup.log" 2>&1 || {
		cat "$tmp/setup.log"
		fail "meson setup $dir failed"
	}
fi
start=$(date +%s)
ninja -C "$dir" tests/fuzz/fuzz_inspect >"$tmp/build.log" 2>&1 || {
	tail -n 60 "$tmp/build.log"
	fail "building fuzz_inspect failed"
}
say "built $dir/tests/fuzz/fuzz_inspect in $(($(date +%s) - start)) s"

mkdir -p "$tmp/corpus" "$tmp/artifacts"
cp -- "$corpus"/* "$tmp/corpus/" 2>/dev/null
seeds=$(find "$tmp/corpus" -type f | wc -l)
say "fuzzing for $seconds s from $seeds seeds"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
"$dir/tests/fuzz/fuzz_inspect" \
	-max_total_time="$seconds" -rss_limit_mb=512 -timeout=10 \
	-max_len=131072 -print_final_stats=1 \
	-artifact_prefix="$tmp/artifacts/" \
	"$tmp/corpus" >"$tmp/fuzz.log" 2>&1 || rc=$?

found=0
for f in "$tmp/artifacts"/*; do
	[[ -f "$f" ]] || continue
	name=$(basename -- "$f")
	case $name in
	slow-unit-*) continue ;; # a slow input is not a failure by itself
	esac
	cp -- "$f" "$corpus/$name"
	say "saved tests/fuzz/corpus/inspect/$name (reproduce:" \
		"$dir/tests/fuzz/fuzz_inspect tests/fuzz/corpus/inspect/$name)"
	found=$((found + 1))
done

if ((rc != 0 || found > 0)); then
	# The report: from the sanitizer's or libFuzzer's first word on.
	grep -nE '^(==[0-9]+==|SUMMARY|fuzz_inspect: broken|.*runtime error)' \
		"$tmp/fuzz.log" | head -n 20
	tail -n 60 "$tmp/fuzz.log"
	fail "fuzz_inspect exited $rc with $found new failing input(s)"
fi
grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::)' \
	"$tmp/fuzz.log"
say "corpus grew from $seeds to $(find "$tmp/corpus" -type f | wc -l) inputs" \
	"(the copy is discarded)"
pass
