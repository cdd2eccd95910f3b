#!/usr/bin/env bash
# Benchmark: `vmdisk fetch` of a 1 GiB image from nginx on 127.0.0.1 (one
# pass: download and sha256 together, then inspection, fsync and publish)
# against the anchor `curl -o FILE` followed by `sha256sum FILE` (two
# passes), same server, same run. Prints the median wall time of each and
# the ratio (vmdisk / anchor); the goal (issue 5) is <= 0.6. Both digests
# are checked against the image's, or the numbers mean nothing.
#
#   bench/fetch.sh [BUILD_DIR] [RUNS]
#   FETCH_MIB=N: an N MiB image (default 1024)
#
# The image is random data (no holes: the worst case for the sink). Each
# vmdisk run starts from an empty cache. vmdisk fsyncs what it publishes
# and curl does not: the anchor is also shown followed by a sync of its file.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init fetch "${1:-}"
runs=${2:-3}
mib=${FETCH_MIB:-1024}
[[ "$mib" =~ ^[0-9]+$ && "$mib" -gt 0 ]] || { echo "bench: FETCH_MIB must be a positive number" >&2; exit 1; }
size="$mib MiB"
((mib == 1024)) && size="1 GiB"
need_tool curl curl
# shellcheck source=tests/suite/lib.sh
. tests/suite/lib.sh
# shellcheck source=tests/suite/http/nginx.sh
. tests/suite/http/nginx.sh
chmod 755 "$work"
bench_cleanup() { nginx_stop "$work/nginx"; }
mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work/www"

echo "preparing a $size image in $work ..."
head -c "${mib}M" /dev/urandom >"$work/www/image.raw"
want=$(sha256sum "$work/www/image.raw" | cut -c1-64)

port=$(free_port)
nginx_start "$work/nginx" "
  sendfile on;
  server {
    listen 127.0.0.1:$port;
    root $work/www;
  }" || exit 1
url=http://127.0.0.1:$port/image.raw
# Warm the page cache of the server side for both.
cat "$work/www/image.raw" >/dev/null


run_vmdisk() {
	local inst=$work/inst t0 t1 got
	rm -rf "$inst"
	mkdir -p "$inst"
	printf '[DEFAULT]\ninstances_path = %s\nlog_target = none\nforce_raw_images = false\n' \
		"$inst" >"$work/vmdisk.conf"
	sync
	t0=$(now_ms)
	"$vmdisk" --config "$work/vmdisk.conf" --json fetch "$url" >"$work/fetch.json"
	t1=$(now_ms)
	got=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["hash"])' <"$work/fetch.json")
	[[ "$got" == "$want" ]] || { echo "bench: vmdisk hash $got, want $want" >&2; exit 1; }
	echo $((t1 - t0))
}

run_anchor() { # run_anchor [sync]
	local t0 t1 got
	rm -f "$work/curl.out"
	sync
	t0=$(now_ms)
	curl -sS --fail -o "$work/curl.out" "$url"
	got=$(sha256sum "$work/curl.out" | cut -c1-64)
	[[ $# -eq 0 ]] || sync "$work/curl.out"
	t1=$(now_ms)
	[[ "$got" == "$want" ]] || { echo "bench: anchor hash $got, want $want" >&2; exit 1; }
	echo $((t1 - t0))
}

ours=$(for ((i = 0; i < runs; i++)); do run_vmdisk; done | median)
anchor=$(for ((i = 0; i < runs; i++)); do run_anchor; done | median)
synced=$(for ((i = 0; i < runs; i++)); do run_anchor sync; done | median)
echo "median of $runs runs on $(nproc) CPUs, $size from nginx on loopback"
awk -v o="$ours" -v a="$anchor" -v s="$synced" 'BEGIN {
	printf "vmdisk fetch (one pass)    %6.0f ms\n", o
	printf "curl -o + sha256sum        %6.0f ms   ratio %.2f (goal <= 0.6)\n", a, o / a
	printf "curl -o + sha256sum + sync %6.0f ms   ratio %.2f\n", s, o / s
}'
bench_result "fetch $size: one pass vs curl -o + sha256sum" "$ours ms" "$anchor ms" "$(ratio "$ours" "$anchor")" "<= 0.6"
