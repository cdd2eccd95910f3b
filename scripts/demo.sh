#!/usr/bin/env bash
# Build vmdisk and show it at work on a small base image:
#
#   1. install the build dependencies (as root) and build into build/;
#   2. make a 64 MiB raw base image holding an ext4 file system;
#   3. fetch it into the cache and make four instance disks from it: three
#      qcow2 overlays of 1G and one flat (raw) copy of 128M;
#   4. print `vmdisk --json info` of each and check each disk with qemu-img:
#      `check` for the overlays, `compare` against the base for all (the
#      disks are larger than the base; their extra area must read as zeros).
#
# Everything goes to ${VMDISK_DEMO_DIR:-<repo>/var} (a relative
# VMDISK_DEMO_DIR is taken from the directory you run this in). Re-runnable:
# the instances and the cache of an earlier run (DIR/instances) are removed
# first; DIR/base.raw and DIR/vmdisk.conf are rewritten.
set -euo pipefail

start_dir=$PWD
cd "$(dirname "$0")/.."
export VMD_LOG_TAG=demo
# shellcheck source=scripts/deps.sh
. scripts/deps.sh

var=${VMDISK_DEMO_DIR:-$VMD_ROOT/var}
[[ "$var" == /* ]] || var="$start_dir/$var"
mkdir -p -- "$var"
var=$(cd -- "$var" && pwd -P)
[[ "$var" != / ]] || vmd_die "VMDISK_DEMO_DIR must not be /"
case $var in
*$'\n'* | *[\;#]*) vmd_die "demo directory '$var': no newline, ';' or '#' please (it goes into an INI file)" ;;
esac

vmd_install_deps
vmd_build build

vmdisk_bin="$VMD_ROOT/build/tools/vmdisk"
[[ -x "$vmdisk_bin" ]] || vmd_die "$vmdisk_bin was not built"
conf="$var/vmdisk.conf"
instances="$var/instances"
base="$var/base.raw"
staging="$var/staging"

vmdisk() {
	"$vmdisk_bin" --config "$conf" "$@"
}

# The number after "KEY": in JSON text on stdin (either spacing style).
json_number() {
	sed -n -e "s/.*\"$1\"[[:space:]]*:[[:space:]]*\([0-9][0-9]*\).*/\1/p" | head -n 1
}

cleanup() {
	rm -rf -- "$staging"
}
trap cleanup EXIT

# --- a clean slate --------------------------------------------------------
rm -rf -- "$instances" "$staging"
rm -f -- "$base"
cat >"$conf" <<EOF
# Written by scripts/demo.sh
[DEFAULT]
instances_path = $instances
log_target = stderr
log_level = warning
EOF

# --- the base image: 64 MiB, ext4, a few files ----------------------------
mkdir -p "$staging/etc" "$staging/usr/local/bin" "$staging/root"
echo "vmdisk-demo" >"$staging/etc/hostname"
printf 'Welcome to the vmdisk demo guest.\n' >"$staging/etc/motd"
cat >"$staging/root/README" <<'EOF'
This file system was made by vmdisk's scripts/demo.sh as a base image.
Every instance disk made from it starts with exactly these files.
EOF
cat >"$staging/usr/local/bin/hello" <<'EOF'
#!/bin/sh
echo "hello from $(cat /etc/hostname)"
EOF
chmod 0755 "$staging/usr/local/bin/hello"
vmd_quiet "making the base image" \
	mkfs.ext4 -q -F -d "$staging" -L demo-root "$base" 64M ||
	vmd_die "mkfs.ext4 failed"
echo "demo: base image $base ($(stat -c %s "$base") bytes, ext4)"

# --- the cache --------------------------------------------------------------
echo "demo: vmdisk fetch"
vmdisk fetch "$base"

# --- instance disks -------------------------------------------------------
# uuid backend size(bytes) size(argument)
disks=(
	"6f1c2a3e-0001-4a5b-8c7d-000000000001 qcow2 1073741824 1G"
	"6f1c2a3e-0002-4a5b-8c7d-000000000002 qcow2 1073741824 1G"
	"6f1c2a3e-0003-4a5b-8c7d-000000000003 qcow2 1073741824 1G"
	"6f1c2a3e-0004-4a5b-8c7d-000000000004 flat 134217728 128M"
)

n=0
for entry in "${disks[@]}"; do
	read -r uuid backend bytes size <<<"$entry"
	path="$instances/$uuid/disk"

	echo "demo: vmdisk create $uuid disk --image $base --size $size --backend $backend"
	vmdisk create "$uuid" disk --image "$base" --size "$size" \
		--backend "$backend" >/dev/null
	[[ -f "$path" ]] || vmd_die "$path was not created"

	echo "demo: vmdisk --json info $uuid disk"
	info=$(vmdisk --json info "$uuid" disk)
	printf '%s\n' "$info"
	got=$(json_number virtual_size <<<"$info")
	[[ "$got" == "$bytes" ]] ||
		vmd_die "$uuid/disk: vmdisk reports virtual_size '$got', expected $bytes"

	if [[ "$backend" == qcow2 ]]; then
		fmt=qcow2
		qemu-img check -q -f qcow2 "$path" ||
			vmd_die "$uuid/disk: qemu-img check failed"
	else
		fmt=raw
	fi
	got=$(qemu-img info -f "$fmt" --output=json "$path" | json_number virtual-size)
	[[ "$got" == "$bytes" ]] ||
		vmd_die "$uuid/disk: qemu-img sees virtual-size '$got', expected $bytes"
	# The disk is larger than the base: qemu-img warns "Image size
	# mismatch" and then checks that the extra area reads as zeros.
	echo "demo: qemu-img compare base.raw $uuid/disk"
	qemu-img compare -f raw -F "$fmt" "$base" "$path" ||
		vmd_die "$uuid/disk: content differs from the base image"
	echo "demo: $uuid/disk ok ($backend, $size)"
	n=$((n + 1))
done

echo "demo: ok ($n disks)"
