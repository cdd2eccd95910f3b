#!/usr/bin/env bash
# Benchmark: vmdisk convert against qemu-img convert (the anchor), same
# inputs, same run. Prints the median wall time of each and the ratio
# (vmdisk / qemu-img; below 1 is faster). Every output is checked with
# qemu-img compare, or the numbers mean nothing.
#
#   bench/convert.sh [BUILD_DIR] [RUNS]
#
# Cases (issue 4): a 2 GiB raw image, half data half holes, to raw and to
# qcow2; a qcow2 holding 1 GiB of data to raw; a zlib-compressed qcow2 to
# raw. Goals: raw->raw <= 0.5, qcow2->raw <= 0.7, compressed->raw <= 0.5.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init convert "${1:-}"
runs=${2:-3}
need_tool qemu-img qemu-utils

echo "preparing inputs in $work ..."
# 2 GiB: 64 MiB of random data every 128 MiB (half data, half holes).
truncate -s 2G "$work/half.raw"
for i in $(seq 0 15); do
	dd if=/dev/urandom of="$work/half.raw" bs=1M count=64 seek=$((i * 128)) conv=notrunc status=none
done
qemu-img convert -f raw -O qcow2 "$work/half.raw" "$work/data.qcow2" # 1 GiB of data
# Compressible content so that -c really compresses.
python3 - "$work/text.raw" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    line = b"".join(b"line %d of a compressible disk image\n" % i for i in range(4096))
    while f.tell() < 512 << 20:
        f.write(line)
PY
qemu-img convert -c -f raw -O qcow2 "$work/text.raw" "$work/zlib.qcow2"


# time_cmd OUT CMD...: run with OUT removed first, print ms
time_cmd() {
	local out=$1 t0 t1
	shift
	rm -f "$out"
	sync
	t0=$(now_ms)
	"$@" >/dev/null
	t1=$(now_ms)
	echo $((t1 - t0))
}

# vmdisk fsyncs its output before giving it its name (a crash never leaves
# a partial image); qemu-img convert does not. Both anchors are shown:
# qemu-img alone, and qemu-img followed by an fsync of its output.
anchor_synced() { qemu-img convert "$@" && sync "${@: -1}"; }

bench_case() { # label src srcfmt dstfmt
	local label=$1 src=$2 sfmt=$3 dfmt=$4 ours anchor synced i
	ours=$(for ((i = 0; i < runs; i++)); do time_cmd "$work/out.ours" "$vmdisk" convert -f "$sfmt" -O "$dfmt" "$src" "$work/out.ours"; done | median)
	anchor=$(for ((i = 0; i < runs; i++)); do time_cmd "$work/out.anchor" qemu-img convert -f "$sfmt" -O "$dfmt" "$src" "$work/out.anchor"; done | median)
	synced=$(for ((i = 0; i < runs; i++)); do time_cmd "$work/out.anchor" anchor_synced -f "$sfmt" -O "$dfmt" "$src" "$work/out.anchor"; done | median)
	qemu-img compare -q -f "$dfmt" -F "$dfmt" "$work/out.anchor" "$work/out.ours" ||
		{ echo "bench: $label: outputs differ" >&2; exit 1; }
	awk -v l="$label" -v o="$ours" -v a="$anchor" -v s="$synced" 'BEGIN {printf "%-26s vmdisk %6.0f ms | qemu-img %6.0f ms, ratio %.2f | qemu-img+fsync %6.0f ms, ratio %.2f\n", l, o, a, o/a, s, o/s}'
}

echo "median of $runs runs on $(nproc) CPUs"
bench_case "2G half-holes raw->raw" "$work/half.raw" raw raw
bench_case "2G half-holes raw->qcow2" "$work/half.raw" raw qcow2
bench_case "1G-data qcow2->raw" "$work/data.qcow2" qcow2 raw
bench_case "zlib qcow2->raw" "$work/zlib.qcow2" qcow2 raw
