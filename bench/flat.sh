#!/usr/bin/env bash
# Benchmark: a flat disk from a 2 GiB half-sparse raw base (issue 6), against
# `qemu-img convert -O raw` and `cp --sparse=always` of the same base, in the
# same run. Prints medians and ratios (vmdisk / anchor; below 1 is faster).
#
#   bench/flat.sh [BUILD_DIR] [RUNS]
#   FLAT_GIB=N: an N GiB base (default 2; the reflink rows also use 4N)
#
# Three file systems:
#   host  the folder the benchmarks work in ($BENCH_DIR, default /var/tmp;
#         ext4 here, no reflink), where bench/io-limit measures the device:
#         vmdisk makes a sparse copy. Goals (issue 17): <= 0.6 x
#         (cp --sparse=always + sync) and >= 80% of io-limit's write
#         bandwidth over the bytes the disk holds.
#   ext4  a file loop-mounted here (needs root), no reflink: the same copy
#         through a loop device. Goal (issue 6) <= 0.5 x qemu-img.
#   xfs   reflink=1, loop-mounted: vmdisk clones. Goal: milliseconds,
#         independent of the base's size (a 2 GiB and an 8 GiB base).
# vmdisk fsyncs the disk before publishing it; the anchors are shown bare
# and followed by a sync of their output, so the comparison is fair. The
# peak RSS of vmdisk create (/usr/bin/time %M) is printed: goal <= 64 MiB.
# Every disk is compared with the base (cmp) or the numbers mean nothing.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || bench_skip "needs root (loop mounts)"
bench_init flat "${1:-}"
runs=${2:-3}
gib=${FLAT_GIB:-2}
need_tool qemu-img qemu-utils
need_tool /usr/bin/time time
mounts=()
bench_cleanup() {
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m"; done
}


# make_base PATH GIB: 64 MiB of random data every 128 MiB (half data).
make_base() {
	truncate -s "$2G" "$1"
	for i in $(seq 0 $(($2 * 8 - 1))); do
		dd if=/dev/urandom of="$1" bs=1M count=64 seek=$((i * 128)) conv=notrunc status=none
	done
}

# mount_fs NAME MKFS...: a 24 GiB sparse file system image mounted at $work/NAME
mount_fs() {
	local name=$1
	shift
	truncate -s 24G "$work/$name.img"
	"$@" "$work/$name.img" >/dev/null
	mkdir -p "$work/$name"
	mount -o loop "$work/$name.img" "$work/$name"
	mounts+=("$work/$name")
	write_conf "$name"
}

write_conf() {
	local name=$1
	mkdir -p "$work/$name"
	cat >"$work/$name.conf" <<EOF
[DEFAULT]
instances_path = $work/$name/instances
images_type = flat
log_target = stderr
log_level = warning
EOF
}

n=0
# one_vmdisk FS BASE: ms for one `vmdisk create` (the base already cached)
one_vmdisk() {
	local fs=$1 base=$2 uuid t0 t1
	n=$((n + 1))
	uuid=$(printf '6f1e0a8c-3b5d-4e2f-9a7b-%012d' "$n")
	sync
	t0=$(now_ms)
	peak_rss "$work/rss" "$vmdisk" --config "$work/$fs.conf" create "$uuid" disk --image "$base"
	t1=$(now_ms)
	cmp -s "$base" "$work/$fs/instances/$uuid/disk" || { echo "bench: disk differs from base" >&2; exit 1; }
	cat "$work/rss" >>"$work/rss.$fs"
	allocated "$work/$fs/instances/$uuid/disk" >"$work/bytes.$fs"
	"$vmdisk" --config "$work/$fs.conf" remove "$uuid" disk >/dev/null
	echo $((t1 - t0))
}

# one_anchor OUT SYNC CMD...: ms for CMD (then sync of OUT when SYNC=1)
one_anchor() {
	local out=$1 dosync=$2 t0 t1
	shift 2
	rm -f "$out"
	sync
	t0=$(now_ms)
	"$@" >/dev/null
	[ "$dosync" = 1 ] && sync "$out"
	t1=$(now_ms)
	rm -f "$out"
	echo $((t1 - t0))
}

big=$((gib * 4))
echo "preparing: a $gib GiB and a $big GiB half-sparse base; host, ext4 and xfs (reflink) ..."
write_conf host
mount_fs ext4 mkfs.ext4 -q -F
mount_fs xfs mkfs.xfs -q -f -m reflink=1
for fs in host ext4 xfs; do
	make_base "$work/$fs/base2.raw" "$gib"
	"$vmdisk" --config "$work/$fs.conf" fetch "$work/$fs/base2.raw" >/dev/null
done
make_base "$work/xfs/base8.raw" "$big"
"$vmdisk" --config "$work/xfs.conf" fetch "$work/xfs/base8.raw" >/dev/null
io_limit_write_mbps >/dev/null

declare -A med
measure() { # key, then the command printing ms
	local key=$1 i
	shift
	med[$key]=$(for i in $(seq "$runs"); do "$@"; done | median)
}

b=$work/host/base2.raw o=$work/host/out.raw
measure host_vmdisk one_vmdisk host "$b"
measure host_qemu_sync one_anchor "$o" 1 qemu-img convert -f raw -O raw "$b" "$o"
measure host_cp one_anchor "$o" 0 cp --sparse=always "$b" "$o"
measure host_cp_sync one_anchor "$o" 1 cp --sparse=always "$b" "$o"
b=$work/ext4/base2.raw o=$work/ext4/out.raw
measure ext4_vmdisk one_vmdisk ext4 "$b"
measure ext4_qemu one_anchor "$o" 0 qemu-img convert -f raw -O raw "$b" "$o"
measure ext4_qemu_sync one_anchor "$o" 1 qemu-img convert -f raw -O raw "$b" "$o"
measure ext4_cp one_anchor "$o" 0 cp --sparse=always "$b" "$o"
measure ext4_cp_sync one_anchor "$o" 1 cp --sparse=always "$b" "$o"
measure xfs2_vmdisk one_vmdisk xfs "$work/xfs/base2.raw"
measure xfs8_vmdisk one_vmdisk xfs "$work/xfs/base8.raw"
o=$work/xfs/out.raw
measure xfs_qemu one_anchor "$o" 0 qemu-img convert -f raw -O raw "$work/xfs/base2.raw" "$o"

mib() { awk -v k="$(sort -n "$work/rss.$1" | tail -1)" 'BEGIN { printf "%.1f", k / 1024 }'; }
hb=$(cat "$work/bytes.host") eb=$(cat "$work/bytes.ext4")
printf '\n%-46s %10s\n' "flat disk from a $gib GiB half-sparse base" "median ms"
printf '%-46s %10s\n' "host: vmdisk create (sparse copy, fsync)" "${med[host_vmdisk]}"
printf '%-46s %10s\n' "host: qemu-img convert -O raw + sync" "${med[host_qemu_sync]}"
printf '%-46s %10s\n' "host: cp --sparse=always" "${med[host_cp]}"
printf '%-46s %10s\n' "host: cp --sparse=always + sync" "${med[host_cp_sync]}"
printf '%-46s %10s\n' "ext4 (loop): vmdisk create (sparse copy, fsync)" "${med[ext4_vmdisk]}"
printf '%-46s %10s\n' "ext4 (loop): qemu-img convert -O raw" "${med[ext4_qemu]}"
printf '%-46s %10s\n' "ext4 (loop): qemu-img convert -O raw + sync" "${med[ext4_qemu_sync]}"
printf '%-46s %10s\n' "ext4 (loop): cp --sparse=always" "${med[ext4_cp]}"
printf '%-46s %10s\n' "ext4 (loop): cp --sparse=always + sync" "${med[ext4_cp_sync]}"
printf '%-46s %10s\n' "xfs (loop): vmdisk create, $gib GiB base (reflink)" "${med[xfs2_vmdisk]}"
printf '%-46s %10s\n' "xfs (loop): vmdisk create, $big GiB base (reflink)" "${med[xfs8_vmdisk]}"
printf '%-46s %10s\n' "xfs (loop): qemu-img convert -O raw" "${med[xfs_qemu]}"
echo
io_limit_line
r=$(ratio "${med[host_vmdisk]}" "${med[host_cp_sync]}") f=$(io_fraction "$hb" "${med[host_vmdisk]}")
echo "host vmdisk / cp --sparse + sync:      $r ($(goal_le "$r" 0.6): goal <= 0.6)"
echo "host vmdisk / qemu-img + sync:         $(ratio "${med[host_vmdisk]}" "${med[host_qemu_sync]}")"
echo "host vmdisk share of io-limit write:   $f% of $(io_limit_write_mbps) MB/s over $((hb / 1000000)) MB ($(goal_ge "$f" 80): goal >= 80%)"
r=$(ratio "${med[ext4_vmdisk]}" "${med[ext4_qemu]}")
echo "ext4 vmdisk / qemu-img:                $r ($(goal_le "$r" 0.5): goal <= 0.5)"
echo "ext4 vmdisk / qemu-img + sync:         $(ratio "${med[ext4_vmdisk]}" "${med[ext4_qemu_sync]}")"
echo "ext4 vmdisk / cp --sparse:             $(ratio "${med[ext4_vmdisk]}" "${med[ext4_cp]}")"
echo "ext4 vmdisk / cp --sparse + sync:      $(ratio "${med[ext4_vmdisk]}" "${med[ext4_cp_sync]}")"
echo "ext4 vmdisk share of io-limit write:   $(io_fraction "$eb" "${med[ext4_vmdisk]}")% (through the loop device)"
echo "xfs  vmdisk / qemu-img:                $(ratio "${med[xfs2_vmdisk]}" "${med[xfs_qemu]}")"
echo "reflink $big GiB / $gib GiB base:            $(ratio "${med[xfs8_vmdisk]}" "${med[xfs2_vmdisk]}") (O(1): about 1)"
for fs in host ext4 xfs; do
	printf '%-38s %s MiB (%s: goal <= 64 MiB)\n' "peak RSS of vmdisk create ($fs):" "$(mib "$fs")" "$(goal_le "$(mib "$fs")" 64)"
done

# The rows for bench/run (bench_result, bench/lib.sh).
bench_result "flat $gib GiB, host: vmdisk create vs cp --sparse + sync" "${med[host_vmdisk]} ms" \
	"${med[host_cp_sync]} ms" "$(ratio "${med[host_vmdisk]}" "${med[host_cp_sync]}")" "<= 0.6"
bench_result "flat $gib GiB, host: vmdisk create vs io-limit write" \
	"$(awk -v b="$hb" -v ms="${med[host_vmdisk]}" 'BEGIN { if (ms > 0) printf "%.0f MB/s", b / ms / 1e3; else print "n/a" }')" \
	"$(io_limit_write_mbps) MB/s" "$(awk -v f="$f" 'BEGIN { if (f ~ /^[0-9]/) printf "%.2f", f / 100; else print "n/a" }')" ">= 0.8"
bench_result "flat $gib GiB, ext4 loop: vmdisk create vs qemu-img convert" "${med[ext4_vmdisk]} ms" \
	"${med[ext4_qemu]} ms" "$(ratio "${med[ext4_vmdisk]}" "${med[ext4_qemu]}")" "<= 0.5"
bench_result "flat, xfs reflink: $big GiB vs $gib GiB base (O(1))" "${med[xfs8_vmdisk]} ms" \
	"${med[xfs2_vmdisk]} ms" "$(ratio "${med[xfs8_vmdisk]}" "${med[xfs2_vmdisk]}")" "<= 1.25"
for fs in host ext4 xfs; do
	bench_result "flat: peak RSS of vmdisk create ($fs)" "$(mib "$fs") MiB" "-" "-" "<= 64 MiB" \
		"$([[ "$(goal_le "$(mib "$fs")" 64)" == met ]] && echo yes || echo no)"
done
