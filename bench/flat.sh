#!/usr/bin/env bash
# Benchmark: a flat disk from a 2 GiB half-sparse raw base (issue 6), against
# `qemu-img convert -O raw` and `cp --sparse=always` of the same base, in the
# same run. Prints medians and ratios (vmdisk / anchor; below 1 is faster).
#
#   bench/flat.sh [BUILD_DIR] [RUNS]
#
# Two file systems, each a file loop-mounted here (needs root):
#   ext4  no reflink: vmdisk makes a sparse copy. Goal <= 0.5 x qemu-img.
#   xfs   reflink=1: vmdisk clones. Goal: milliseconds, independent of the
#         base's size (a 2 GiB and an 8 GiB base are both measured).
# vmdisk fsyncs the disk before publishing it; the anchors are shown bare
# and followed by a sync of their output, so the comparison is fair.
# Every disk is compared with the base (cmp) or the numbers mean nothing.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (loop mounts)" >&2; exit 1; }
bench_init flat "${1:-}"
runs=${2:-3}
need_tool qemu-img qemu-utils
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
	"$vmdisk" --config "$work/$fs.conf" create "$uuid" disk --image "$base" >/dev/null
	t1=$(now_ms)
	cmp -s "$base" "$work/$fs/instances/$uuid/disk" || { echo "bench: disk differs from base" >&2; exit 1; }
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

echo "preparing: a 2 GiB and an 8 GiB half-sparse base, ext4 and xfs (reflink) ..."
mount_fs ext4 mkfs.ext4 -q -F
mount_fs xfs mkfs.xfs -q -f -m reflink=1
for fs in ext4 xfs; do
	make_base "$work/$fs/base2.raw" 2
	"$vmdisk" --config "$work/$fs.conf" fetch "$work/$fs/base2.raw" >/dev/null
done
make_base "$work/xfs/base8.raw" 8
"$vmdisk" --config "$work/xfs.conf" fetch "$work/xfs/base8.raw" >/dev/null

declare -A med
measure() { # key, then the command printing ms
	local key=$1 i
	shift
	med[$key]=$(for i in $(seq "$runs"); do "$@"; done | median)
}

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

printf '\n%-44s %10s\n' "flat disk from a 2 GiB half-sparse base" "median ms"
printf '%-44s %10s\n' "ext4: vmdisk create (sparse copy, fsync)" "${med[ext4_vmdisk]}"
printf '%-44s %10s\n' "ext4: qemu-img convert -O raw" "${med[ext4_qemu]}"
printf '%-44s %10s\n' "ext4: qemu-img convert -O raw + sync" "${med[ext4_qemu_sync]}"
printf '%-44s %10s\n' "ext4: cp --sparse=always" "${med[ext4_cp]}"
printf '%-44s %10s\n' "ext4: cp --sparse=always + sync" "${med[ext4_cp_sync]}"
printf '%-44s %10s\n' "xfs: vmdisk create, 2 GiB base (reflink)" "${med[xfs2_vmdisk]}"
printf '%-44s %10s\n' "xfs: vmdisk create, 8 GiB base (reflink)" "${med[xfs8_vmdisk]}"
printf '%-44s %10s\n' "xfs: qemu-img convert -O raw" "${med[xfs_qemu]}"
echo
echo "ratio ext4 vmdisk / qemu-img:        $(ratio "${med[ext4_vmdisk]}" "${med[ext4_qemu]}") (goal <= 0.5)"
echo "ratio ext4 vmdisk / qemu-img + sync: $(ratio "${med[ext4_vmdisk]}" "${med[ext4_qemu_sync]}")"
echo "ratio ext4 vmdisk / cp --sparse:     $(ratio "${med[ext4_vmdisk]}" "${med[ext4_cp]}")"
echo "ratio xfs  vmdisk / qemu-img:        $(ratio "${med[xfs2_vmdisk]}" "${med[xfs_qemu]}")"
echo "reflink 8 GiB / 2 GiB base:          $(ratio "${med[xfs8_vmdisk]}" "${med[xfs2_vmdisk]}") (O(1): about 1)"
