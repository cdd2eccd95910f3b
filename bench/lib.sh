# shellcheck shell=bash
# What the benchmarks (bench/*.sh) share; sourced first, after
# `set -euo pipefail`.
#
#   bench_init NAME [BUILD_DIR]
#       cd to the source tree; build: BUILD_DIR (default build/, made
#       absolute); vmdisk: its CLI, or exit 1 asking for a build; work: a new
#       folder /var/tmp/vmdisk-bench-NAME-XXXXXX, removed at exit after
#       bench_cleanup (when the benchmark defines one)
#   need_tool COMMAND [PACKAGE]   exit 1 naming PACKAGE when COMMAND is missing
#   now_ms                        wall clock in milliseconds
#   median                        the median of the numbers on stdin

bench_init() {
	cd "$(dirname "$0")/.." || exit 1
	build=${2:-build}
	[[ "$build" == /* ]] || build=$PWD/$build
	vmdisk=$build/tools/vmdisk
	[[ -x "$vmdisk" ]] ||
		{ echo "bench: build first (meson setup $build && ninja -C $build)" >&2; exit 1; }
	work=$(mktemp -d "/var/tmp/vmdisk-bench-$1-XXXXXX")
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
