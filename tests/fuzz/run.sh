#!/usr/bin/env bash
# Fuzz the image inspector and the qcow2 reader for a while
# (tests/fuzz/README.md).
#
#   tests/fuzz/run.sh [BUILD_DIR]
#
# scripts/test.sh runs it with build/ as BUILD_DIR, which it does not use:
# the fuzzers need their own clang build, $VMDISK_FUZZ_BUILD_DIR (default
# build-fuzz/, set up with -Dfuzz=true -Db_lundef=false, reused when it
# exists). Runs each target for a third of $VMDISK_FUZZ_SECONDS (default 60 in
# all), one after the other:
#
#   fuzz_inspect      on a copy of tests/fuzz/corpus/inspect
#   fuzz_qcow2_read   on a copy of tests/fuzz/corpus/qcow2_read
#   fuzz_priv_request on a copy of tests/fuzz/corpus/priv_request
#
# so that what they add stays out of the tree. An input that crashes, leaks,
# times out or runs out of memory is copied into its target's corpus
# directory (named <kind>-<sha1> by libFuzzer), where the corpus replay test
# (fuzz-corpus, fuzz-qcow2-read-corpus, fuzz-priv-request-corpus) replays it from then on, and that
# target fails.
#
# Each target counts as one test. Last line: "3 passed, 0 failed" (or
# "2 passed, 1 failed", ...); without clang or its libFuzzer runtime,
# "0 passed, 0 failed, 3 skipped" and exit 77.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 1
root=$PWD
dir=${VMDISK_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${VMDISK_FUZZ_SECONDS:-60}

# target  corpus directory  -max_len (the largest input worth mutating)
targets=(
	"fuzz_inspect inspect 131072"
	"fuzz_qcow2_read qcow2_read 262144"
	"fuzz_priv_request priv_request 8192"
)
ntargets=${#targets[@]}

say() { printf 'fuzz: %s\n' "$*"; }
fail() {
	say "FAIL: $*"
	echo "0 passed, $ntargets failed"
	exit 1
}
skip() {
	say "skipped: $*"
	echo "0 passed, 0 failed, $ntargets skipped"
	exit 77
}

[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] ||
	fail "VMDISK_FUZZ_SECONDS must be a positive number of seconds"
each=$((seconds / ntargets))
((each > 0)) || each=1
for t in "${targets[@]}"; do
	read -r _ name _ <<<"$t"
	[[ -d "$root/tests/fuzz/corpus/$name" ]] ||
		fail "no corpus at $root/tests/fuzz/corpus/$name"
done

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
build_targets=()
for t in "${targets[@]}"; do
	read -r exe _ _ <<<"$t"
	build_targets+=("tests/fuzz/$exe")
done
ninja -C "$dir" "${build_targets[@]}" >"$tmp/build.log" 2>&1 || {
	tail -n 60 "$tmp/build.log"
	fail "building ${build_targets[*]} failed"
}
say "built ${build_targets[*]} in $dir in $(($(date +%s) - start)) s"

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0
failed=0

# fuzz_one EXE NAME MAX_LEN: fuzz for $each seconds; 0 when nothing found.
fuzz_one() {
	local exe=$1 name=$2 max_len=$3
	local corpus=$root/tests/fuzz/corpus/$name work=$tmp/$name
	local seeds rc=0 found=0 f base

	mkdir -p "$work/corpus" "$work/artifacts"
	cp -- "$corpus"/* "$work/corpus/" 2>/dev/null
	seeds=$(find "$work/corpus" -type f | wc -l)
	say "$exe: fuzzing for $each s from $seeds seeds"
	"$dir/tests/fuzz/$exe" \
		-max_total_time="$each" -rss_limit_mb=512 -timeout=10 \
		-max_len="$max_len" -print_final_stats=1 \
		-artifact_prefix="$work/artifacts/" \
		"$work/corpus" >"$work/fuzz.log" 2>&1 || rc=$?

	for f in "$work/artifacts"/*; do
		[[ -f "$f" ]] || continue
		base=$(basename -- "$f")
		case $base in
		slow-unit-*) continue ;; # a slow input is not a failure by itself
		esac
		cp -- "$f" "$corpus/$base"
		say "$exe: saved tests/fuzz/corpus/$name/$base (reproduce:" \
			"$dir/tests/fuzz/$exe tests/fuzz/corpus/$name/$base)"
		found=$((found + 1))
	done

	if ((rc != 0 || found > 0)); then
		# The report: from the sanitizer's or libFuzzer's first word on.
		grep -nE "^(==[0-9]+==|SUMMARY|$exe: broken|.*runtime error)" \
			"$work/fuzz.log" | head -n 20
		tail -n 60 "$work/fuzz.log"
		say "FAIL: $exe exited $rc with $found new failing input(s)"
		return 1
	fi
	grep -E '^(INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs|stat::)' \
		"$work/fuzz.log" | sed -e "s/^/$exe: /"
	say "$exe: corpus grew from $seeds to" \
		"$(find "$work/corpus" -type f | wc -l) inputs (the copy is discarded)"
	return 0
}

for t in "${targets[@]}"; do
	read -r exe name max_len <<<"$t"
	if fuzz_one "$exe" "$name" "$max_len"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done

echo "$passed passed, $failed failed"
((failed == 0))
