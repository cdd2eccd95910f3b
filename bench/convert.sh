#!/usr/bin/env bash
# Benchmark: vmdisk convert against qemu-img convert (the anchor), same
# inputs, same run, and against the machine's durable write bandwidth
# (bench/io-limit, measured in this run). Every output is checked with
# qemu-img compare against its source, or the numbers mean nothing (exit 1).
#
#   bench/convert.sh [BUILD_DIR] [RUNS]      (RUNS default 3; medians)
#   CONVERT_GIB=N: an N GiB input (default 2, the issue's rows)
#
# vmdisk fsyncs its output before giving it its name (a crash never leaves
# a partial image); qemu-img convert does not. Both anchors are measured:
# qemu-img followed by a sync of its output (the fair one), and bare.
# Per row: the medians, the ratios, the share of io-limit's write bandwidth
# reached (bytes the output holds / vmdisk's time / io-limit), the peak RSS
# of vmdisk convert (/usr/bin/time %M, the largest of the runs), and the
# goals of issue 17:
#   qcow2->raw, raw->raw: <= 0.6 x (qemu-img + sync), >= 80% of io-limit
#   raw->qcow2:           <= 1.0 x bare qemu-img
#   every convert:        peak RSS <= 64 MiB
# A goal missed prints MISSED with its figure; only a wrong output fails.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init convert "${1:-}"
runs=${2:-3}
gib=${CONVERT_GIB:-2}
need_tool qemu-img qemu-utils
need_tool /usr/bin/time time

echo "preparing inputs in $work ..."
# $gib GiB: 64 MiB of random data every 128 MiB (half data, half holes).
truncate -s "${gib}G" "$work/half.raw"
for i in $(seq 0 $((gib * 8 - 1))); do
	dd if=/dev/urandom of="$work/half.raw" bs=1M count=64 seek=$((i * 128)) conv=notrunc status=none
done
qemu-img convert -f raw -O qcow2 "$work/half.raw" "$work/data.qcow2" # half of it data
# Compressible content so that -c really compresses.
python3 - "$work/text.raw" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    line = b"".join(b"line %d of a compressible disk image\n" % i for i in range(4096))
    while f.tell() < 512 << 20:
        f.write(line)
PY
qemu-img convert -c -f raw -O qcow2 "$work/text.raw" "$work/zlib.qcow2"
sync
io_limit_write_mbps >/dev/null

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

anchor_synced() { qemu-img convert "$@" && sync "${@: -1}"; }

# ours: vmdisk convert under /usr/bin/time (its peak RSS appended to rss.log)
ours() { peak_rss "$work/rss" "$vmdisk" convert "$@" && cat "$work/rss" >>"$work/rss.log"; }

rows=()
bench_case() { # label src srcfmt dstfmt kind(durable|qcow2|other)
	local label=$1 src=$2 sfmt=$3 dfmt=$4 kind=$5 o a s i rss bytes
	: >"$work/rss.log"
	cat "$src" >/dev/null # every first run finds the input in the page cache
	# Interleaved, so that the other load of a shared machine falls on
	# all three alike.
	: >"$work/o.ms"
	: >"$work/a.ms"
	: >"$work/s.ms"
	for ((i = 0; i < runs; i++)); do
		time_cmd "$work/out.ours" ours -f "$sfmt" -O "$dfmt" "$src" "$work/out.ours" >>"$work/o.ms"
		time_cmd "$work/out.anchor" qemu-img convert -f "$sfmt" -O "$dfmt" "$src" "$work/out.anchor" >>"$work/a.ms"
		time_cmd "$work/out.anchor" anchor_synced -f "$sfmt" -O "$dfmt" "$src" "$work/out.anchor" >>"$work/s.ms"
	done
	o=$(median <"$work/o.ms")
	a=$(median <"$work/a.ms")
	s=$(median <"$work/s.ms")
	qemu-img compare -q -f "$sfmt" -F "$dfmt" "$src" "$work/out.ours" ||
		{ echo "bench: $label: vmdisk's output differs from its source" >&2; exit 1; }
	rss=$(sort -n "$work/rss.log" | tail -1)
	bytes=$(allocated "$work/out.ours")
	printf '%-28s %8s %8s %8s %6s %6s %8.0f %5s%% %7.1f\n' "$label" "$o" "$s" "$a" \
		"$(ratio "$o" "$s")" "$(ratio "$o" "$a")" "$(awk -v b="$bytes" 'BEGIN{print b/1e6}')" \
		"$(io_fraction "$bytes" "$o")" "$(awk -v k="$rss" 'BEGIN{print k/1024}')"
	rows+=("$label|$kind|$(ratio "$o" "$s")|$(ratio "$o" "$a")|$(io_fraction "$bytes" "$o")|$rss|$o|$s|$a|$bytes")
}

echo "median of $runs runs on $(nproc) CPUs; $(io_limit_line)"
printf '%-28s %8s %8s %8s %6s %6s %8s %6s %7s\n' "case" "vmdisk" "qemu+sync" "qemu" \
	"/sync" "/bare" "MB out" "io" "RSS"
printf '%-28s %8s %8s %8s %6s %6s %8s %6s %7s\n' "" "ms" "ms" "ms" "ratio" "ratio" \
	"" "limit" "MiB"
bench_case "qcow2->raw ${gib}G, half data" "$work/data.qcow2" qcow2 raw durable
bench_case "raw->raw ${gib}G, half sparse" "$work/half.raw" raw raw durable
bench_case "raw->qcow2 ${gib}G, half sparse" "$work/half.raw" raw qcow2 qcow2
bench_case "zlib qcow2->raw 512M" "$work/zlib.qcow2" qcow2 raw other

echo
echo "goals (issue 17):"
for r in "${rows[@]}"; do
	IFS='|' read -r label kind rs rb frac rss o s a bytes <<<"$r"
	case $kind in
	durable)
		echo "  $label: <= 0.6 x qemu-img+sync: $(goal_le "$rs" 0.6) ($rs); >= 80% of io-limit: $(goal_ge "$frac" 80) ($frac%)"
		bench_result "convert $label vs qemu-img+sync" "$o ms" "$s ms" "$rs" "<= 0.6"
		bench_result "convert $label vs io-limit write" \
			"$(awk -v b="$bytes" -v ms="$o" 'BEGIN { if (ms > 0) printf "%.0f MB/s", b / ms / 1e3; else print "n/a" }')" \
			"$(io_limit_write_mbps) MB/s" "$(awk -v f="$frac" 'BEGIN { if (f ~ /^[0-9]/) printf "%.2f", f / 100; else print "n/a" }')" ">= 0.8" ;;
	qcow2)
		echo "  $label: <= 1.0 x bare qemu-img: $(goal_le "$rb" 1.0) ($rb)"
		bench_result "convert $label vs bare qemu-img" "$o ms" "$a ms" "$rb" "<= 1.0" ;;
	*)
		bench_result "convert $label vs qemu-img+sync" "$o ms" "$s ms" "$rs" "-" ;;
	esac
	echo "  $label: peak RSS <= 64 MiB: $(goal_le "$rss" 65536) ($((rss / 1024)) MiB)"
	bench_result "convert $label peak RSS" "$((rss / 1024)) MiB" "-" "-" "<= 64 MiB" \
		"$([[ "$(goal_le "$rss" 65536)" == met ]] && echo yes || echo no)"
done
