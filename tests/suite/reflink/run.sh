#!/usr/bin/env bash
# The flat backend on real file systems made in loop-mounted files:
#
#   xfs (reflink=1)   the disk is a reflink of the cached base: FIEMAP
#                     (filefrag -v) marks its extents shared, and making
#                     8 disks of a 64 MiB base costs (almost) no free space;
#   btrfs             the same, where mkfs.btrfs is installed;
#   ext4              no reflink: the disk is a sparse copy, its extents are
#                     not shared, and the copy still reads back the base.
#
# Every disk reads back as the base (cmp over its first 64 MiB, zeroes
# beyond) and is grown to the requested size.
#
#   tests/suite/reflink/run.sh [BUILD_DIR]
#
# Needs root (losetup, mount). Last line "N passed, N failed[, N skipped]";
# exit 77 with the reason when loop devices cannot be used here.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
build=${1:-$root/build}
cli=${VMDISK_CLI:-$build/tools/vmdisk}

passed=0
failed=0
skipped=0
say() { printf 'reflink: %s\n' "$*"; }
ok() {
	passed=$((passed + 1))
	say "ok   $*"
}
bad() {
	failed=$((failed + 1))
	say "FAIL $*"
}
skip_case() {
	skipped=$((skipped + 1))
	say "skip $*"
}
finish() {
	echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
	((failed == 0)) || exit 1
	((passed > 0)) || exit 77
	exit 0
}
skip_all() {
	say "skipped: $*"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
}

[[ -x "$cli" ]] || {
	bad "no vmdisk at $cli"
	finish
}
[[ $(id -u) -eq 0 ]] || skip_all "needs root to mount loop file systems"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-reflink.XXXXXX") || exit 1
mounts=()
cleanup() {
	local m
	for m in "${mounts[@]}"; do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# Whether a mount of a loop file works at all here.
truncate -s 64M "$tmp/probe.img"
mkfs.ext4 -q -F "$tmp/probe.img" >/dev/null 2>&1 || skip_all "mkfs.ext4 failed"
mkdir -p "$tmp/probe"
mount -o loop "$tmp/probe.img" "$tmp/probe" 2>"$tmp/probe.err" ||
	skip_all "cannot mount a loop file: $(head -c 200 "$tmp/probe.err")"
umount "$tmp/probe"

base="$tmp/base.raw"
# 64 MiB: 32 MiB of data (a pattern that is never zero), then a hole.
head -c $((32 << 20)) /dev/urandom >"$base"
truncate -s 64M "$base"

free_kib() { df -k --output=avail "$1" | tail -n 1 | tr -d ' '; }

# has_shared FILE: filefrag -v lists a data extent flagged "shared".
has_shared() { filefrag -v "$1" 2>/dev/null | grep -q 'shared'; }

# reads_back DISK SIZE: the base's bytes, then zeroes, SIZE bytes in all.
reads_back() {
	local disk=$1 size=$2
	[[ $(stat -c %s "$disk") -eq $size ]] || return 1
	cmp -s -n $((64 << 20)) "$base" "$disk" || return 1
	cmp -s -i $((64 << 20)) -n $((size - (64 << 20))) "$disk" /dev/zero
}

# run_fs NAME MKFS_ARGV... : make, mount, provision 8 disks, judge.
run_fs() {
	local name=$1
	shift
	local img="$tmp/$name.img" mnt="$tmp/$name" conf="$tmp/$name.conf"
	local i uuid disk before after used_kib expect_reflink=1
	[[ $name == ext4 ]] && expect_reflink=0

	truncate -s 1G "$img"
	if ! "$@" "$img" >"$tmp/$name.mkfs" 2>&1; then
		bad "$name: mkfs failed: $(head -c 200 "$tmp/$name.mkfs")"
		return
	fi
	mkdir -p "$mnt"
	if ! mount -o loop "$img" "$mnt" 2>"$tmp/$name.mount"; then
		bad "$name: mount failed: $(head -c 200 "$tmp/$name.mount")"
		return
	fi
	mounts+=("$mnt")
	cat >"$conf" <<EOF
[DEFAULT]
instances_path = $mnt/instances
images_type = flat
log_target = stderr
log_level = warning
EOF
	# The base enters the cache first, so the disks' cost is measured alone.
	if ! "$cli" --config "$conf" fetch "$base" >/dev/null; then
		bad "$name: fetch"
		return
	fi
	sync
	before=$(free_kib "$mnt")
	for i in 1 2 3 4 5 6 7 8; do
		uuid=$(printf '6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a%02d' "$i")
		if ! "$cli" --config "$conf" create "$uuid" disk --image "$base" \
			--size 96M >/dev/null; then
			bad "$name: create disk $i"
			return
		fi
	done
	sync
	after=$(free_kib "$mnt")
	used_kib=$((before - after))
	disk="$mnt/instances/6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a01/disk"
	say "$name: 8 disks of a base with 32 MiB of data used $((used_kib / 1024)) MiB"

	if reads_back "$disk" $((96 << 20)); then
		ok "$name: the disk reads back the base and is grown to 96 MiB"
	else
		bad "$name: the disk does not read back the base"
	fi
	if ((expect_reflink)); then
		if has_shared "$disk"; then
			ok "$name: the disk's extents are shared with the base (FIEMAP)"
		else
			bad "$name: no shared extent: $(filefrag -v "$disk" | head -n 6)"
		fi
		# 8 copies would take 256 MiB; clones take metadata only.
		if ((used_kib < 16 * 1024)); then
			ok "$name: 8 clones cost ${used_kib} KiB (< 16 MiB; copies: 256 MiB)"
		else
			bad "$name: 8 disks cost ${used_kib} KiB: not clones"
		fi
	else
		if has_shared "$disk"; then
			bad "$name: shared extents on a file system without reflink?"
		else
			ok "$name: no reflink: a copy, extents not shared"
		fi
		# A sparse copy: the data (32 MiB per disk), not the hole.
		if ((used_kib >= 8 * 32 * 1024 && used_kib < 8 * 48 * 1024)); then
			ok "$name: 8 copies cost $((used_kib / 1024)) MiB: data only, holes kept"
		else
			bad "$name: 8 copies cost ${used_kib} KiB (expected 256..384 MiB)"
		fi
	fi
}

run_fs xfs mkfs.xfs -q -f -m reflink=1
if command -v mkfs.btrfs >/dev/null 2>&1; then
	run_fs btrfs mkfs.btrfs -q -f
else
	skip_case "btrfs: mkfs.btrfs not installed (xfs covers reflink)"
fi
run_fs ext4 mkfs.ext4 -q -F
finish
