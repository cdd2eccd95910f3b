#!/usr/bin/env bash
# Benchmark: process start-up of the CLI, against /bin/true and qemu-img in
# the same run (bench/spawn_time.c: fork+exec+wait, the commands
# interleaved round by round so the noise of a shared machine falls on all
# alike; median and p90 wall clock, median CPU time of the child).
#
#   bench/startup.sh [BUILD_DIR] [N]      (defaults: build, 200)
#
# Rows and goals (issue 17):
#   vmdisk --version, vmdisk inspect IMG   <= 1.5 x /bin/true
#   vmdisk inspect IMG                     <= 0.35 x qemu-img info IMG
#   vmdisk create (qcow2 overlay on a cached base)
#                                          <= 0.5 x qemu-img create -f qcow2 -b
# IMG: a 1 GiB qcow2 image and a 1 GiB raw one. The creates are durable
# (vmdisk fsyncs the disk, its record and their directory); qemu-img create
# leaves its file in the page cache.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init startup "${1:-}"
n=${2:-200}
[[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]] || { echo "bench: N must be a positive number" >&2; exit 1; }
need_tool qemu-img qemu-utils
need_tool cc gcc
cc -O2 -o "$work/spawn_time" bench/spawn_time.c
qemu_img=$(command -v qemu-img)
qemu-img create -q -f qcow2 "$work/a.qcow2" 1G
truncate -s 1G "$work/a.raw"
truncate -s 1G "$work/base.raw"
printf '[DEFAULT]\ninstances_path = %s/instances\nlog_target = none\n' "$work" >"$work/vmdisk.conf"
"$vmdisk" --config "$work/vmdisk.conf" fetch "$work/base.raw" >/dev/null

echo "median of $n runs, interleaved (wall us, p90 wall us, cpu us)"
"$work/spawn_time" "$n" \
	true -- /bin/true --- \
	version -- "$vmdisk" --version --- \
	inspect-qcow2 -- "$vmdisk" inspect "$work/a.qcow2" --- \
	inspect-raw -- "$vmdisk" inspect "$work/a.raw" --- \
	qemu-info -- "$qemu_img" info "$work/a.qcow2" | tee "$work/start"

# Creates: each run a new instance / a new file ("%i": the round's number);
# fewer runs (each fsyncs).
nc=$(( n < 50 ? n : 50 ))
mkdir -p "$work/q"
"$work/spawn_time" "$nc" \
	create -- "$vmdisk" --config "$work/vmdisk.conf" create \
		"00000000-0000-4000-8000-000000%i" disk --image "$work/base.raw" \
		--backend qcow2 --- \
	qemu-create -- "$qemu_img" create -q -f qcow2 -b "$work/base.raw" \
		-F raw "$work/q/%i.qcow2" 1G | tee "$work/create"
qemu-img check -q -f qcow2 "$work/instances/00000000-0000-4000-8000-000000000000/disk"

awk -v f1="$work/start" -v f2="$work/create" 'BEGIN {
	while ((getline l < f1) > 0) { split(l, a, " "); w[a[1]] = a[2]; c[a[1]] = a[4] }
	while ((getline l < f2) > 0) { split(l, a, " "); w[a[1]] = a[2] }
	printf "version        / true        %.2f (cpu %.2f)  goal <= 1.5\n", w["version"] / w["true"], c["version"] / c["true"]
	printf "inspect qcow2  / true        %.2f (cpu %.2f)  goal <= 1.5\n", w["inspect-qcow2"] / w["true"], c["inspect-qcow2"] / c["true"]
	printf "inspect raw    / true        %.2f (cpu %.2f)  goal <= 1.5\n", w["inspect-raw"] / w["true"], c["inspect-raw"] / c["true"]
	printf "inspect qcow2  / qemu-img info  %.2f (cpu %.2f)  goal <= 0.35\n", w["inspect-qcow2"] / w["qemu-info"], c["inspect-qcow2"] / c["qemu-info"]
	o = w["create"]; q = w["qemu-create"]
	printf "overlay create / qemu-img create -b  %.2f (%.1f ms / %.1f ms)  goal <= 0.5\n", o / q, o / 1000, q / 1000
}'
# The rows for bench/run (bench_result, bench/lib.sh).
wall() { awk -v k="$1" '$1 == k {print $2}' "$work/start" "$work/create"; }
row() { # work ours anchor goal
	bench_result "startup: $1" "$(wall "$2") us" "$(wall "$3") us" \
		"$(ratio "$(wall "$2")" "$(wall "$3")")" "$4"
}
row "vmdisk --version vs /bin/true" version true "<= 1.5"
row "vmdisk inspect qcow2 vs /bin/true" inspect-qcow2 true "<= 1.5"
row "vmdisk inspect raw vs /bin/true" inspect-raw true "<= 1.5"
row "vmdisk inspect qcow2 vs qemu-img info" inspect-qcow2 qemu-info "<= 0.35"
row "overlay create vs qemu-img create -b" create qemu-create "<= 0.5"
