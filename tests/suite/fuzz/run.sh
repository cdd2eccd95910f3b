#!/usr/bin/env bash
# Fuzz every libFuzzer target for a short while: the CI's fuzz run
# (tests/fuzz/README.md; bench/fuzz is the long campaign with figures).
#
#   tests/suite/fuzz/run.sh [BUILD_DIR]
#
# scripts/test.sh runs it with build/ as BUILD_DIR, which it does not use:
# the fuzzers need their own clang build, $VMDISK_FUZZ_BUILD_DIR (default
# build-fuzz/, set up with -Dfuzz=true -Db_lundef=false, reused when it
# exists). $VMDISK_FUZZ_SECONDS (default 60) is shared out among the
# targets the build defines (at least 1 s each), run one after the other,
# each on a copy of its corpus, tests/fuzz/corpus/<corpus>/ (table below),
# so that what they add stays out of the tree. A target the build does not
# define (yet) is reported "not built" and not counted.
#
# An input that crashes, leaks, times out or runs out of memory is copied
# into its target's corpus directory (named <kind>-<sha1> by libFuzzer),
# where the target's corpus replay test (fuzz-corpus, fuzz-<name>-corpus)
# replays it from then on, and that target fails.
#
# Each target counts as one test. Last line: "9 passed, 0 failed" (or
# "8 passed, 1 failed", ...); without clang or its libFuzzer runtime,
# "0 passed, 0 failed, N skipped" and exit 77.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
dir=${VMDISK_FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=${VMDISK_FUZZ_SECONDS:-60}

# target  corpus directory  -max_len (the largest input worth mutating)
targets=(
	"fuzz_inspect inspect 131072"
	"fuzz_qcow2_header qcow2_header 4096"
	"fuzz_qcow2_read qcow2_read 262144"
	"fuzz_qcow2_rw qcow2_read 262144"
	"fuzz_qcow2_write qcow2_write 262144"
	"fuzz_parallels parallels 65536"
	"fuzz_ploop_descriptor ploop_descriptor 8192"
	"fuzz_config config 8192"
	"fuzz_rbd_location rbd_location 1024"
	"fuzz_glance_record glance_record 8192"
	"fuzz_priv_request priv_request 8192"
	"fuzz_libvirt_xml libvirt_xml 4096"
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
	meson configure "$dir" -Dfuzz=true -Db_lundef=false -Dwerror=true >"$tmp/setup.log" 2>&1 || {
		cat "$tmp/setup.log"
		fail "meson configure $dir failed"
	}
else
	say "meson setup $dir (clang, -Dfuzz=true)"
	CC=clang meson setup "$dir" "$root" -Dfuzz=true -Db_lundef=false -Dwerror=true \
		>"$tmp/setup.log" 2>&1 || {
		cat "$tmp/setup.log"
		fail "meson setup $dir failed"
	}
fi
start=$(date +%s)
# Only the targets this build defines (others may land later).
ninja -C "$dir" -t targets all >"$tmp/targets" 2>/dev/null ||
	fail "ninja -C $dir -t targets failed"
build_targets=()
defined=()
for t in "${targets[@]}"; do
	read -r exe name _ <<<"$t"
	if grep -q "^tests/fuzz/$exe:" "$tmp/targets"; then
		[[ -d "$root/tests/fuzz/corpus/$name" ]] ||
			fail "no corpus at $root/tests/fuzz/corpus/$name"
		build_targets+=("tests/fuzz/$exe")
		defined+=("$t")
	else
		say "$exe: not built (this tree does not define it)"
	fi
done
targets=("${defined[@]}")
ntargets=${#targets[@]}
((ntargets > 0)) || fail "no fuzz target defined in $dir"
each=$((seconds / ntargets))
((each > 0)) || each=1
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
