#!/usr/bin/env bash
# Benchmark: overlay creation and CLI start-up, against qemu-img measured in
# the same run (the anchor). Prints medians (ms) and ratios (ours/anchor).
#
#   bench/create.sh [BUILD_DIR] [N]
#
# - create: N x `vmdisk create INSTANCE disk --image base --backend qcow2`
#   (validation, cache lookup under the lock, qcow2 writer, atomic publish,
#   instance record) vs N x `qemu-img create -f qcow2 -b base -F raw`.
# - startup: N x `vmdisk --version` vs N x `qemu-img --version`, and
#   N x /bin/true (the cost of starting any process).
# Goals (issue 17, printed met/MISSED): create <= 0.5 x qemu-img create -b;
# vmdisk --version <= 1.5 x /bin/true.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init create "${1:-}"
n=${2:-100}
need_tool qemu-img qemu-utils
truncate -s 1G "$work/base.raw"
printf '[DEFAULT]\ninstances_path = %s/instances\nlog_target = none\n' "$work" >"$work/vmdisk.conf"
"$vmdisk" --config "$work/vmdisk.conf" fetch "$work/base.raw" >/dev/null

now_ns() { date +%s%N; }


uuid_n() { printf '00000000-0000-4000-8000-%012d' "$1"; }

run_series() { # name, then a function to call with the index
	local fn=$1 i t0 t1
	for ((i = 0; i < n; i++)); do
		t0=$(now_ns)
		"$fn" "$i"
		t1=$(now_ns)
		echo $(((t1 - t0) / 1000))
	done | median
}

ours_create() { "$vmdisk" --config "$work/vmdisk.conf" create "$(uuid_n "$1")" disk --image "$work/base.raw" --backend qcow2 >/dev/null; }
anchor_create() { qemu-img create -q -f qcow2 -b "$work/base.raw" -F raw "$work/q/$1/disk" 1G; }
ours_start() { "$vmdisk" --version >/dev/null; }
anchor_start() { qemu-img --version >/dev/null; }
true_start() { /bin/true; }

report() { # label ours_us anchor_us
	awk -v l="$1" -v o="$2" -v a="$3" 'BEGIN {printf "%-8s vmdisk %8.2f ms   qemu-img %8.2f ms   ratio %.2f\n", l, o/1000, a/1000, o/a}'
}

# The anchor's directories exist beforehand (vmdisk makes its own inside
# the timed call, so this favours the anchor slightly).
for ((i = 0; i < n; i++)); do mkdir -p "$work/q/$i"; done
c_ours=$(run_series ours_create)
c_anchor=$(run_series anchor_create)
s_ours=$(run_series ours_start)
s_anchor=$(run_series anchor_start)
s_true=$(run_series true_start)
echo "median of $n runs (wall clock, includes process start and the timer's own date calls)"
report create "$c_ours" "$c_anchor"
report startup "$s_ours" "$s_anchor"
ms() { awk -v u="$1" 'BEGIN {printf "%.2f ms", u/1000}'; }
r=$(ratio "$c_ours" "$c_anchor")
echo "goal: create <= 0.5 x qemu-img create -b: $(goal_le "$r" 0.5) ($r)"
bench_result "create: CLI overlay vs qemu-img create -b" "$(ms "$c_ours")" "$(ms "$c_anchor")" "$r" "<= 0.5"
r=$(ratio "$s_ours" "$s_true")
echo "goal: vmdisk --version <= 1.5 x /bin/true ($(awk -v t="$s_true" 'BEGIN {printf "%.2f", t/1000}') ms): $(goal_le "$r" 1.5) ($r)"
bench_result "create: vmdisk --version vs /bin/true" "$(ms "$s_ours")" "$(ms "$s_true")" "$r" "<= 1.5"
# The overlays must be valid, or the numbers mean nothing.
qemu-img check -q -f qcow2 "$work/instances/$(uuid_n 0)/disk"
