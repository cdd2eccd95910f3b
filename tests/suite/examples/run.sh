#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317,SC2034 # check evals its single-quoted test; functions run through check
# The examples (examples/*.c) against an installed libvmdisk, as a user of
# the library-dev package builds them:
#   - `meson install --destdir` of the build into a scratch root;
#   - the installed vmdisk.pc: its -I holds vmdisk/vmdisk.h, its libs are
#     -lvmdisk alone (the libraries libvmdisk dlopen()s, json-c, libcurl,
#     libcrypto, zlib, libzstd, libcryptsetup, are not forced on a program
#     that links it, not even with --static);
#   - each example compiled with `cc -std=c11 -Wall -Wextra -Werror
#     -pedantic $(pkg-config --cflags --libs vmdisk)` (PKG_CONFIG_SYSROOT_DIR
#     and PKG_CONFIG_LIBDIR into the root), and linked to the installed
#     libvmdisk.so, not the build's;
#   - make-disk makes a disk from a qemu-img-made image (qemu-img compare:
#     the disk reads as the image) and refuses a hostile one, leaving no
#     disk and the decoy it names untouched;
#   - inspect-upload calls the image safe, and refuses each hostile image
#     (backing file, data file, huge L1 table, vmdk extent; every host file
#     they name is a decoy in the scratch folder) with its reason's code.
#
#   tests/suite/examples/run.sh [BUILD_DIR]
#
# Last line "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=examples
# shellcheck source=tests/suite/lib.sh
. tests/suite/lib.sh
suite_build "${1:-}"
[[ -e "$build/lib/libvmdisk.so" ]] || fail_suite "no libvmdisk in $build (build first)"
command -v pkg-config >/dev/null || fail_suite "pkg-config missing (scripts/deps.sh installs it)"
command -v qemu-img >/dev/null || fail_suite "qemu-img missing (scripts/deps.sh installs it)"
suite_tmp ""

# --- the installed tree
dest=$tmp/root
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$tmp/install.log" 2>&1 ||
	{ tail -n 20 "$tmp/install.log"; fail_suite "meson install --destdir failed"; }
pc=$(find "$dest" -name vmdisk.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n "$pc" ]] || fail_suite "no vmdisk.pc installed"
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=${pc%/*} PKG_CONFIG_PATH=
cflags=$(pkg-config --cflags vmdisk) libs=$(pkg-config --libs vmdisk) ||
	fail_suite "pkg-config cannot read the installed vmdisk.pc"
static=$(pkg-config --static --libs vmdisk)
inc=$(sed -n 's/^-I\([^ ]*\).*/\1/p' <<<"$cflags")
check "vmdisk.pc: -I names the installed headers ($inc)" \
	test -f "$inc/vmdisk/vmdisk.h" -a "${inc#"$dest"}" != "$inc"
check "vmdisk.pc: -L names the installed library" \
	test -e "$(sed -n 's/^-L\([^ ]*\).*/\1/p' <<<"$libs")/libvmdisk.so"
only_vmdisk() { # the -l flags of $1 are -lvmdisk alone
	local w l=()
	for w in $1; do [[ "$w" != -l* ]] || l+=("$w"); done
	[[ "${l[*]}" == -lvmdisk ]]
}
check "vmdisk.pc: links -lvmdisk alone (libs: $libs)" only_vmdisk "$libs"
check "vmdisk.pc: --static forces none of the dlopen()ed libraries ($static)" \
	eval '! grep -qE -- "(^| )-l(json-c|curl|crypto|ssl|z|zstd|cryptsetup)( |$)" <<<"$static"'
check "vmdisk.pc: version $(pkg-config --modversion vmdisk) is the CLI's" \
	eval '"$cli" --version | grep -qF -- "$(pkg-config --modversion vmdisk)"'

# --- the examples, built as a user would, in strict ISO C
for e in make-disk inspect-upload; do
	# shellcheck disable=SC2086 # pkg-config's flags are words
	if cc -std=c11 -Wall -Wextra -Werror -pedantic -o "$tmp/$e" "examples/$e.c" \
		$cflags $libs >"$tmp/$e.cc.log" 2>&1; then
		ok "$e.c builds with -std=c11 -pedantic -Werror against the installed .pc"
	else
		sed 's/^/    /' "$tmp/$e.cc.log" | head -n 8
		bad "$e.c builds with -std=c11 -pedantic -Werror against the installed .pc"
	fi
done
export LD_LIBRARY_PATH=$libdir
check "the examples load the installed libvmdisk.so" \
	eval 'ldd "$tmp/make-disk" | grep -q "libvmdisk.so.* => $libdir/"'

# --- the images (every host file a hostile one names is a decoy here)
cd "$tmp" || exit 1
random_image data.raw 1M 64M
qemu-img convert -q -f raw -O qcow2 data.raw image.qcow2
truncate -s 1M decoy.raw
qemu-img create -q -f qcow2 -u -b "$tmp/decoy.raw" -F raw backing.qcow2 64M
qemu-img create -q -f qcow2 -o data_file="$tmp/decoy-data.raw" datafile.qcow2 64M
decoy_sum=$(sha256sum decoy.raw decoy-data.raw)
qemu-img create -q -f qcow2 l1.qcow2 64M
# l1_size (offset 36) 0x7fffffff: a 16 GiB table for a reader to allocate
printf '\x7f\xff\xff\xff' | dd of=l1.qcow2 bs=1 seek=36 conv=notrunc status=none
cat >extent.vmdk <<VMDK
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"

# Extent description
RW 2048 FLAT "$tmp/decoy.raw" 0
VMDK
printf '[DEFAULT]\ninstances_path = %s/inst\nlog_target = none\n' "$tmp" >vmdisk.conf
uuid=6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b

# --- make-disk
if [[ -x make-disk ]]; then
	rc=0
	./make-disk vmdisk.conf "$uuid" disk image.qcow2 >md.out 2>md.err || rc=$?
	check "make-disk: exit 0 ($(head -c 200 md.err))" test "$rc" -eq 0
	check "make-disk: prints the disk's path first" \
		test "$(head -n 1 md.out)" = "$tmp/inst/$uuid/disk" -a -f "$tmp/inst/$uuid/disk"
	check "make-disk: prints backend and format" grep -q '^format: qcow2$' md.out
	check "make-disk: the disk reads as the image (qemu-img compare)" \
		qemu-img compare -q image.qcow2 "$tmp/inst/$uuid/disk"
	rc=0
	./make-disk vmdisk.conf "$uuid" disk2 backing.qcow2 >md2.out 2>md2.err || rc=$?
	check "make-disk: a hostile image is refused (exit 1, the reason named)" \
		eval 'test "$rc" -eq 1 && grep -q "refused: qcow2-backing-file" md2.err'
	check "make-disk: the refused image leaves no disk" test ! -e "$tmp/inst/$uuid/disk2"
	rc=0
	./make-disk vmdisk.conf >/dev/null 2>&1 || rc=$?
	check "make-disk: a short command line is a usage error (exit 2)" test "$rc" -eq 2
else
	bad "make-disk: not built"
fi

# --- inspect-upload
if [[ -x inspect-upload ]]; then
	rc=0
	./inspect-upload image.qcow2 data.raw >iu.out 2>&1 || rc=$?
	check "inspect-upload: a qcow2 and a raw image are safe (exit 0)" \
		eval 'test "$rc" -eq 0 && grep -q "^image.qcow2: qcow2, virtual size 67108864 bytes: safe$" iu.out &&
			grep -q "^data.raw: raw, virtual size 67108864 bytes: safe$" iu.out'
	for c in backing.qcow2:qcow2-backing-file datafile.qcow2:qcow2-data-file \
		l1.qcow2:table-size-limit extent.vmdk:vmdk-extent; do
		f=${c%%:*} code=${c#*:}
		rc=0
		./inspect-upload "$f" >iu.out 2>&1 || rc=$?
		check "inspect-upload: $f refused ($code)" \
			eval 'test "$rc" -eq 1 && grep -q "^$f: .*: refused$" iu.out && grep -q "^  $code: " iu.out'
	done
	ln -s image.qcow2 link.qcow2
	rc=0
	./inspect-upload link.qcow2 >iu.out 2>&1 || rc=$?
	check "inspect-upload: a symbolic link is not inspected (exit 2)" \
		eval 'test "$rc" -eq 2 && grep -q "symbolic link" iu.out'
else
	bad "inspect-upload: not built"
fi
check "the decoys the hostile images name is untouched" \
	eval 'test "$(sha256sum decoy.raw decoy-data.raw)" = "$decoy_sum"'
finish
