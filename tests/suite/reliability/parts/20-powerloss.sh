#!/usr/bin/env bash
# Power loss, not just process death (issue 16): inside the test VM (the
# Debian cloud kernel under TCG, booted by tests/suite/vm/lib.sh) the
# instances filesystem, ext4 and xfs, sits on dm-log-writes while vmdisk
# creates a flat, a qcow2 and a ploop disk and fetches a file:// image; the
# log is marked after each operation reports success. The log is then
# replayed (powerloss/replay.c, built here) to many points — every flush,
# FUA and mark entry and random entries between, thinned to the scale's
# count — and each replayed image is mounted through a throwaway snapshot
# (journal recovery runs) and checked by powerloss/guest.sh: what was
# published survives complete, what was not is absent or complete, the
# instance record and the disks agree; then the operations whose result is
# missing run again and succeed, leaving no temporary. A control writer
# (no fsync) must be seen torn, so the checks are shown to see a tear.
#
# Figures: powerloss_points (replayed power losses), powerloss_torn (points
# where anything was torn; must be 0), powerloss_rerun_failed (points after
# which the next operations failed or left temporaries; must be 0). One VM
# boot does both filesystems.
# PL_SEED picks the random points (default: a new seed, printed); PL_POINTS
# overrides the count of points per filesystem.
set -uo pipefail
t_name=powerloss
# shellcheck source=tests/suite/reliability/common.sh
. "$(dirname "$0")/../common.sh"
need_cli

say() { printf '%s: %s\n' "$t_name" "$*"; }
skip_all() { skip "$*"; }
fail_all() { fail_suite "$*"; }
# shellcheck source=tests/suite/vm/lib.sh
. "$root/tests/suite/vm/lib.sh"

vm_need_tools
command -v qemu-img >/dev/null || skip "qemu-img is not installed"
command -v cc >/dev/null || skip "no C compiler for the log replayer"
vm_kernel
vm_has_module dm-log-writes ||
	skip "the kernel $kver has no dm-log-writes module"
vm_has_module dm-snapshot || skip "the kernel $kver has no dm-snapshot module"
fs_list=ext4
modules=(virtio_pci virtio_blk dm-mod dm-log-writes dm-snapshot)
if ! command -v mkfs.xfs >/dev/null; then
	say "xfs skipped: mkfs.xfs is not installed (package xfsprogs)"
elif ! vm_has_module xfs; then
	say "xfs skipped: the kernel $kver has no xfs module"
else
	fs_list="ext4 xfs"
	modules+=(xfs)
fi
# Points per filesystem, besides the one just after each operation's mark
# (5): small keeps the part (boot included) near 2 min.
points=${PL_POINTS:-$(scaled 2 60)}
seed=${PL_SEED:-$((RANDOM * 32768 + RANDOM))}
say "seed $seed, up to $points points per filesystem ($fs_list)"

suite_tmp
vm_stage "$tmp" "${modules[@]}"
cc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$tmp/replay" \
	"$reliability_dir/powerloss/replay.c" || fail_suite "building the replayer"
mkdir -p "$stage/usr/local/bin" "$stage/srv" "$stage/inst"
cp "$tmp/replay" "$stage/usr/local/bin/replay"
copy_with_libs "$(command -v qemu-img)" "$cli"
[[ "$fs_list" == *xfs* ]] && copy_with_libs "$(command -v mkfs.xfs)"
cp "$reliability_dir/powerloss/guest.sh" "$stage/vmtests/powerloss.sh"
# Bases: raw with data then a hole, a qcow2 of other data, a raw to fetch.
random_image "$stage/srv/base.raw" 3M 8M
random_image "$tmp/q.raw" 2M 6M
qemu-img convert -q -f raw -O qcow2 "$tmp/q.raw" "$stage/srv/base.qcow2" ||
	fail_suite "qemu-img convert"
random_image "$stage/srv/other.raw" 2M 4M

cat >"$stage/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run /tmp
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for m in \$(cat /etc/modules.load); do
	insmod "/lib/modules/\$m" 2>/dev/null ||
		grep -q "^\$(echo "\${m%.ko*}" | tr - _) " /proc/modules ||
		echo "not ok - load module \$m"
done
n=0
while [ ! -b /dev/vdd ] && [ \$n -lt 50 ]; do sleep 0.1; n=\$((n + 1)); done
echo "PL-BEGIN"
export VMDISK_CLI=$cli PL_FS="$fs_list" PL_POINTS=$points PL_SEED=$seed
sh /vmtests/powerloss.sh
echo "PL-DONE"
poweroff -f
INIT

on_exit '[[ -n "$qemu_pid" ]] && kill -9 "$qemu_pid" 2>/dev/null'
vm_boot "$tmp" "$(scaled 900 5400)" 2G 2G 2G 1G
console=$(tr -d '\r' <"$tmp/console.log")
cp "$tmp/console.log" "$build/powerloss-console.log" 2>/dev/null
sed -n '/^PL-BEGIN/,/^PL-DONE/p' <<<"$console" | while IFS= read -r line; do
	case $line in
	"ok - "*) echo "ok   ${line#ok - }" ;;
	"not ok - "*) echo "FAIL ${line#not ok - }" ;;
	"# "* | "figure: "*) echo "$line" ;;
	esac
done
passed=$(sed -n '/^PL-BEGIN/,/^PL-DONE/p' <<<"$console" | grep -c '^ok - ')
failed=$(sed -n '/^PL-BEGIN/,/^PL-DONE/p' <<<"$console" | grep -c '^not ok - ')
if ! grep -q '^PL-DONE' <<<"$console"; then
	bad "the guest never finished; its console ends with:"
	tail -n 20 <<<"$console" | sed 's/^/  /'
fi
finish
