# shellcheck shell=bash
# What the benchmarks (bench/*.sh) share; sourced first, after
# `set -euo pipefail`.
#
#   bench_init NAME [BUILD_DIR]
#       cd to the source tree; build: BUILD_DIR (default build/, made
#       absolute); vmdisk: its CLI, or exit 1 asking for a build; then
#       bench_work NAME
#   bench_work NAME
#       work: a new folder $BENCH_DIR/vmdisk-bench-NAME-XXXXXX (BENCH_DIR
#       default /var/tmp: a disk, where /tmp may be a tmpfs), removed at exit
#       after bench_cleanup (when the benchmark defines one). Every scratch
#       file goes there, so io-limit measures the file system the rows use.
#   need_tool COMMAND [PACKAGE]   exit 1 naming PACKAGE when COMMAND is missing
#   now_ms                        wall clock in milliseconds
#   median                        the median of the numbers on stdin
#
# The physical anchor (issue 17), for the bulk rows:
#   io_limit_write_mbps   this machine's durable O_DIRECT write bandwidth of a
#                         new file in $work, in MB/s (10^6 bytes): bench/
#                         io_limit.c, built with cc and run once per bench
#                         run (IO_LIMIT_MIB MiB, default 1024; IO_LIMIT_MBPS
#                         set: that figure, nothing measured); later calls
#                         print the cached figure
#   io_limit_read_mbps    the same run's O_DIRECT read bandwidth
#   io_limit_line         "io-limit: write W MB/s (overwrite O), read R MB/s"
#   io_fraction BYTES MS  percent of io_limit_write_mbps that writing BYTES
#                         in MS milliseconds reached
#   peak_rss OUT CMD...   run CMD (stdout to /dev/null), write its peak RSS
#                         in KiB to OUT (/usr/bin/time %M)
#   allocated FILE        bytes FILE has allocated (st_blocks x 512)
#   ratio A B             A/B with two decimals ("n/a" when B is 0)
#   goal_le V L / goal_ge V L  "met" when V <= L / V >= L, else "MISSED"
#
# The summary table (bench/run):
#   bench_result WORK VMDISK ANCHOR RATIO GOAL [MET]
#       print one machine-readable row, beside the human output:
#         result<TAB>WORK<TAB>VMDISK<TAB>ANCHOR<TAB>RATIO<TAB>GOAL<TAB>MET
#       WORK names the row ("convert qcow2->raw 2G"); VMDISK and ANCHOR are
#       the medians with their unit ("412 ms"); RATIO the figure the goal is
#       on; GOAL "<= 0.6", ">= 80%", ... or "-" (none set); MET yes, no or
#       "-". Without MET: yes/no from RATIO against a GOAL of "<= X" or
#       ">= X" (a trailing unit or % ignored), "-" when there is no goal.
#       A field must hold no tab; an empty one prints as "-".
#   bench_skip WHY   print "skipped: WHY" and exit 77: what the benchmark
#       needs cannot be had here (bench/run shows the reason in its row)

bench_init() {
	cd "$(dirname "$0")/.." || exit 1
	build=${2:-build}
	[[ "$build" == /* ]] || build=$PWD/$build
	vmdisk=$build/tools/vmdisk
	[[ -x "$vmdisk" ]] ||
		{ echo "bench: build first (meson setup $build && ninja -C $build)" >&2; exit 1; }
	bench_work "$1"
}

bench_work() {
	work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vmdisk-bench-$1-XXXXXX")
	trap bench_exit EXIT
}

bench_exit() {
	if declare -F bench_cleanup >/dev/null; then
		bench_cleanup || true
	fi
	rm -rf "$work"
}

need_tool() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "bench: $1 missing${2:+ (apt-get install $2)}" >&2
	exit 1
}

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# io_limit_run: the probe built and run once into $work/io-limit.out.
io_limit_run() {
	[[ -s "$work/io-limit.out" ]] && return 0
	if [[ -n "${IO_LIMIT_MBPS:-}" ]]; then
		printf 'write_mbps %s\noverwrite_mbps %s\nread_mbps %s\n' \
			"$IO_LIMIT_MBPS" "$IO_LIMIT_MBPS" "$IO_LIMIT_MBPS" >"$work/io-limit.out"
		return 0
	fi
	need_tool cc gcc
	cc -O2 -std=gnu11 -pthread -o "$work/io_limit" "$(dirname "${BASH_SOURCE[0]}")/io_limit.c"
	sync
	"$work/io_limit" "$work" "${IO_LIMIT_MIB:-1024}" >"$work/io-limit.out.tmp"
	mv "$work/io-limit.out.tmp" "$work/io-limit.out"
}
io_limit_get() { io_limit_run && awk -v k="$1" '$1 == k {print $2}' "$work/io-limit.out"; }
io_limit_write_mbps() { io_limit_get write_mbps; }
io_limit_read_mbps() { io_limit_get read_mbps; }
io_limit_line() {
	echo "io-limit: write $(io_limit_get write_mbps) MB/s (overwrite $(io_limit_get overwrite_mbps)), read $(io_limit_get read_mbps) MB/s (O_DIRECT, 4 in flight, fdatasync; in ${work%/*})"
}
io_fraction() {
	awk -v b="$1" -v ms="$2" -v l="$(io_limit_write_mbps)" \
		'BEGIN { if (ms > 0 && l > 0) printf "%.0f", 100 * b / (ms / 1000) / 1e6 / l; else print "n/a" }'
}

peak_rss() {
	local out=$1
	shift
	/usr/bin/time -f %M -o "$out" "$@" >/dev/null
}
allocated() { echo $(($(stat -c %b "$1") * 512)); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
goal_le() { awk -v v="$1" -v l="$2" 'BEGIN { print (v != "n/a" && v + 0 <= l + 0) ? "met" : "MISSED" }'; }
goal_ge() { awk -v v="$1" -v l="$2" 'BEGIN { print (v != "n/a" && v + 0 >= l + 0) ? "met" : "MISSED" }'; }

bench_result() {
	local work=$1 ours=$2 anchor=$3 r=$4 goal=$5 met=${6:-} f
	if [[ -z "$met" ]]; then
		met=$(awk -v r="$r" -v g="$goal" 'BEGIN {
			op = substr(g, 1, 2); l = substr(g, 3) + 0; v = r + 0
			if (op != "<=" && op != ">=") { print "-"; exit }
			if (r !~ /^[0-9.]/) { print "no"; exit }
			print ((op == "<=" ? v <= l : v >= l) ? "yes" : "no") }')
	fi
	local out=result
	for f in "$work" "$ours" "$anchor" "$r" "$goal" "$met"; do
		f=${f//$'\t'/ }
		out+=$'\t'${f:--}
	done
	printf '%s\n' "$out"
}

bench_skip() {
	echo "skipped: $*"
	exit 77
}
