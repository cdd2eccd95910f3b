#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317,SC2034 # check evals its single-quoted test; functions run through check
# bench/run's table, without running a benchmark: bench/run over a fake
# bench folder (VMDISK_BENCH_DIR) whose scripts print rows with
# bench_result (bench/lib.sh), skip with bench_skip, fail, or print no row,
# and a bench/fuzz that must not run. Checks the table's rows and columns,
# the met column (computed from the goal, or given), the summary line, the
# exit status, NAME selection and --quick's arguments.
#
#   tests/suite/bench/run.sh
#
# Last line "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=bench
# shellcheck source=tests/suite/lib.sh
. tests/suite/lib.sh

suite_tmp ""
export TMPDIR=$tmp
cd "$tmp" || exit 1
d=$tmp/bench
mkdir "$d"
# fake NAME BODY: an executable $d/NAME.sh sourcing the real bench/lib.sh
fake() {
	printf '#!/usr/bin/env bash\n. %q/bench/lib.sh\n%s\n' "$root" "$2" >"$d/$1"
	chmod +x "$d/$1"
}
fake alpha.sh 'echo "human output: build $1, args ${*:2}, CONVERT_GIB=${CONVERT_GIB:-}"
bench_result "alpha: copy vs cp" "10 ms" "20 ms" 0.50 "<= 0.6"
bench_result "alpha: speed vs io-limit" "300 MB/s" "400 MB/s" 0.75 ">= 0.8"
bench_result "alpha: peak RSS" "12 MiB" "" "-" "<= 64 MiB" yes
bench_result "alpha: no goal" "5 ms" "4 ms" 1.25 "-"'
fake beta.sh 'bench_skip "no cluster here"'
fake gamma 'echo "gamma went wrong"; exit 3'
fake delta.sh 'echo "only words"'
fake fuzz 'touch "$TMPDIR/fuzz-ran"; bench_result fuzz 1 1 1 "-"'
fake convert.sh 'bench_result "convert: args $*; CONVERT_GIB=${CONVERT_GIB:-unset}" 1 1 1 "-"'

rc=0
VMDISK_BENCH_DIR=$d "$root"/bench/run --build "$tmp/b" >all.out 2>all.err || rc=$?
cat all.out
row() { grep -q -- "$1" all.out; }
check "a failed benchmark makes bench/run exit 1" test "$rc" -eq 1
check "header line" row '^work  *vmdisk  *anchor  *ratio  *goal  *met$'
check "a row met (<= goal)" row '^alpha: copy vs cp  *10 ms  *20 ms  *0.50  *<= 0.6  *yes$'
check "a row missed (>= goal)" row '^alpha: speed vs io-limit  *300 MB/s  *400 MB/s  *0.75  *>= 0.8  *no$'
check "an empty field prints as -, MET given" row '^alpha: peak RSS  *12 MiB  *-  *-  *<= 64 MiB  *yes$'
check "no goal: met -" row '^alpha: no goal  *5 ms  *4 ms  *1.25  *-  *-$'
check "exit 77: skipped with the reason" row '^beta  .*skipped: no cluster here$'
check "a failure: its exit and last line" row '^gamma  .*FAILED (exit 3, no rows): gamma went wrong$'
check "no rows: a failure" row '^delta  .*FAILED (exit 0, no rows): only words$'
check "bench/fuzz is not run" test ! -e "$tmp/fuzz-ran"
check "summary line" row '^8 rows: 2 met, 1 missed, 2 without a goal, 1 skipped, 2 failed$'
check "the benchmark gets the build folder" grep -q "human output: build $tmp/b, args ," "$tmp"/vmdisk-bench-run.*/alpha.log

rc=0
VMDISK_BENCH_DIR=$d "$root"/bench/run --quick convert beta >some.out 2>/dev/null || rc=$?
check "NAME...: only those, exit 0 without a failure" \
	eval 'test "$rc" -eq 0 && test "$(grep -c . some.out)" -eq 4 && ! grep -q alpha some.out'
check "--quick: smaller sizes for a known benchmark" \
	grep -q '^convert: args [^ ]* 1; CONVERT_GIB=1 ' some.out
rc=0
VMDISK_BENCH_DIR=$d "$root"/bench/run nosuch >/dev/null 2>&1 || rc=$?
check "an unknown NAME: exit 2" test "$rc" -eq 2
finish
