#!/usr/bin/env bash
# Benchmark: the library's calls in process (bench/api.c), as a service
# linking libvmdisk pays them, against one `qemu-img create -f qcow2 -b`
# process measured in the same run.
#
#   bench/api.sh [BUILD_DIR] [N] [BASE_MIB]   (defaults: build, 1000, 16)
#
# Rows: median and p99 (us) over N runs of ctx set-up, overlay create, flat
# create, inspect, info, libvirt-xml and remove, each with its ratio to the
# anchor (median of 50). Goals (issue 17): overlay <= 300 us, inspect <= 150
# us, info <= 50 us median. The base is a raw file of BASE_MIB MiB with 1 MiB
# of data; a flat create copies it unless the file system can reflink (the
# line before the figures says which). Then the same calls once more with
# fsync made a no-op (not durable: the library's own share, the floor).
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init api "${1:-}"
n=${2:-1000}
mib=${3:-16}
[[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 && "$mib" =~ ^[0-9]+$ && "$mib" -gt 0 ]] ||
	{ echo "bench: N and BASE_MIB must be positive numbers" >&2; exit 1; }
need_tool qemu-img qemu-utils
need_tool cc gcc

cc -O2 -o "$work/api" bench/api.c -Iinclude \
	-L"$build/lib" -lvmdisk -Wl,-rpath,"$build/lib"
truncate -s "${mib}M" "$work/base.raw"
dd if=/dev/urandom of="$work/base.raw" bs=1M count=1 conv=notrunc status=none
printf '[DEFAULT]\ninstances_path = %s/instances\nlog_target = none\n' "$work" >"$work/vmdisk.conf"
mkdir -p "$work/anchor"

# Whether a flat create can reflink here: cp --reflink=always says.
if cp --reflink=always "$work/base.raw" "$work/reflink-probe" 2>/dev/null; then
	echo "file system $(stat -f -c %T "$work"): reflink available"
else
	echo "file system $(stat -f -c %T "$work"): no reflink; flat create copies ${mib} MiB (1 MiB data) and syncs it"
fi
rm -f "$work/reflink-probe"
"$work/api" "$work/vmdisk.conf" "$work/base.raw" "$n" 50 \
	"$(command -v qemu-img)" "$work/anchor" | tee "$work/api.out"
# The goal rows for bench/run: the goals are absolute (us), the ratio is to
# the anchor process.
anchor_us=$(awk '$1 == "anchor" {print $NF == "us" ? $(NF - 1) : $NF}' "$work/api.out")
for g in overlay:300 inspect:150 info:50; do
	name=${g%:*} limit=${g#*:}
	read -r med r < <(awk -v k="$name" '$1 == k {print $3, $NF}' "$work/api.out")
	bench_result "api: $name in process vs qemu-img create -b" "$med us" "$anchor_us us" "$r" \
		"<= $limit us" "$(awk -v m="$med" -v l="$limit" 'BEGIN { print (m + 0 <= l + 0) ? "yes" : "no" }')"
done

# The floor: the same calls with fsync/fdatasync made no-ops (bench/
# nosync.c, preloaded into the probe only). NOT durable: it says how much
# of each figure above is the device's flushes (a durable create fsyncs
# its record, its disk and their directory) and how much the library.
cc -O2 -shared -fPIC -o "$work/nosync.so" bench/nosync.c
rm -rf "$work/instances" "$work/anchor"
mkdir -p "$work/anchor"
echo "--- floor, NOT durable (fsync/fdatasync no-ops, bench/nosync.c):"
LD_PRELOAD="$work/nosync.so" "$work/api" "$work/vmdisk.conf" \
	"$work/base.raw" "$n" 50 "$(command -v qemu-img)" "$work/anchor"
