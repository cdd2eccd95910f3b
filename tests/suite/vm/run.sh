#!/usr/bin/env bash
# Tests that need the real kernel code vmdisk relies on for block storage
# (device-mapper, dm-crypt, dm-thin-pool), which this host's kernel lacks:
# boot a Debian kernel under qemu's software emulation (TCG: nested KVM
# hangs on these machines) with an initramfs built here, and run the guest
# tests inside it on sparse files given as virtio disks.
#
#   tests/suite/vm/run.sh [BUILD_DIR]
#
# What goes into the initramfs:
#   - busybox-static, lvm2 and cryptsetup with every library ldd names;
#   - the kernel's modules for virtio disks, dm-mod, dm-crypt and
#     dm-thin-pool with their dependencies (depmod's modules.dep), loaded
#     in dependency order;
#   - every tests/suite/vm/guest/*.sh, and the cmocka binaries named in
#     VM_TESTS below from BUILD_DIR/tests (with libvmdisk and the vmdisk
#     CLI), run with CMOCKA_MESSAGE_OUTPUT=TAP.
# Each guest test prints TAP lines ("ok - name" / "not ok - name"); the
# guest's /init runs them all, prints VMTEST-DONE and powers off. This
# script counts the lines from the serial console; a guest that never says
# VMTEST-DONE (crash, hang past VMDISK_VM_TIMEOUT seconds) fails the suite.
#
# With VMDISK_VM_BARBICAN_PORT set (tests/suite/barbican/run.sh does, with the
# ids of its secrets in VMDISK_VM_KEY_GOOD/_BROKEN, the key bytes in
# VMDISK_VM_PLANTED, VMDISK_VM_BARBICAN_TOKEN and _PROJECT), the guest gets
# qemu's user network, in which 10.0.2.2 is this host's loopback, and runs
# only test_lvm's Barbican cases against that port.
#
# VMDISK_VM_FILTER=GLOB runs only the cmocka cases whose names match
# (cmocka_set_test_filter) and no guest script: TCG is slow, e.g.
#   VMDISK_VM_ASAN=0 VMDISK_VM_FILTER=test_only_our_lvs_served tests/suite/vm/run.sh
#
# The kernel package (linux-image-cloud-amd64's current version) is fetched
# with `apt-get download` into $VMDISK_VM_CACHE (default /var/tmp/vmdisk-vm)
# once. Last line "N passed, N failed[, N skipped]"; exit 77 with the
# reason only when qemu or the kernel cannot be had here.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
build=$(cd "${1:-$root/build}" 2>/dev/null && pwd) || build=$root/build
cache=${VMDISK_VM_CACHE:-/var/tmp/vmdisk-vm}
timeout_s=${VMDISK_VM_TIMEOUT:-420}

# cmocka test binaries (BUILD_DIR/tests/NAME) that run inside the guest.
# VMDISK_VM_GUEST_SCRIPT=FILE runs that one script instead of the guest
# scripts and the binaries (bench/lvm.sh uses it).
# The sanitizer build beside BUILD_DIR (build-asan, made by
# scripts/test.sh) runs them again in the same guest, unless
# VMDISK_VM_ASAN=0 or the Barbican cases are asked for.
guest_script=${VMDISK_VM_GUEST_SCRIPT:-}
builds=("$build")
asan_build=$(dirname "$build")/build-asan
[[ "${VMDISK_VM_ASAN:-1}" != 0 && -z "${VMDISK_VM_BARBICAN_PORT:-}" &&
	"$asan_build" != "$build" && -x "$asan_build/tests/unit/test_lvm" ]] &&
	builds+=("$asan_build")
VM_TESTS=()
for b in "${builds[@]}"; do
	for t in test_lvm; do
		[[ -z "$guest_script" && -x "$b/tests/unit/$t" ]] &&
			VM_TESTS+=("$b/tests/unit/$t")
	done
done
((${#builds[@]} > 1)) && timeout_s=${VMDISK_VM_TIMEOUT:-900}

say() { printf 'vm: %s\n' "$*"; }
skip_all() {
	say "skipped: $*"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
}
fail_all() {
	say "FAIL: $*"
	echo "0 passed, 1 failed"
	exit 1
}

need_pkgs=()
for p in qemu-system-x86:qemu-system-x86_64 busybox-static:busybox \
	lvm2:lvm cryptsetup-bin:cryptsetup cpio:cpio kmod:depmod; do
	command -v "${p#*:}" >/dev/null 2>&1 || need_pkgs+=("${p%%:*}")
done
if ((${#need_pkgs[@]})); then
	if [[ $(id -u) -eq 0 ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1
	fi
	for p in qemu-system-x86_64 busybox lvm cryptsetup cpio depmod; do
		command -v "$p" >/dev/null 2>&1 ||
			skip_all "$p is not installed (packages: ${need_pkgs[*]})"
	done
fi
busybox_bin=$(command -v busybox)
file "$busybox_bin" 2>/dev/null | grep -q 'statically linked' ||
	[[ -x /bin/busybox ]] || skip_all "busybox is not the static build"

# --- the kernel ------------------------------------------------------------
mkdir -p "$cache" || fail_all "cannot make $cache"
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)
[[ -n "$kpkg" ]] || skip_all "apt knows no linux-image-cloud-amd64"
kver=${kpkg#linux-image-}
kroot="$cache/$kver"
if [[ ! -f "$kroot/boot/vmlinuz-$kver" ]]; then
	say "fetching $kpkg"
	rm -rf "$kroot" "$cache"/"$kpkg"_*.deb
	(cd "$cache" && apt-get download -q "$kpkg" >/dev/null 2>&1) ||
		skip_all "apt-get download $kpkg failed (no network?)"
	dpkg -x "$cache"/"$kpkg"_*.deb "$kroot" || fail_all "dpkg -x $kpkg"
fi
[[ -f "$kroot/lib/modules/$kver/modules.dep" ]] ||
	depmod -b "$kroot" "$kver" || fail_all "depmod"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-vm.XXXXXX") || exit 1
qemu_pid=
cleanup() {
	[[ -n "$qemu_pid" ]] && kill -9 "$qemu_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
stage="$tmp/initramfs"
mkdir -p "$stage"/{bin,sbin,etc/lvm,lib/modules,proc,sys,dev,run,tmp,var/tmp,vmtests}

# copy_with_libs FILE...: the files and every library they need, same paths.
copy_with_libs() {
	local f lib
	for f in "$@"; do
		mkdir -p "$stage$(dirname "$f")"
		cp -L "$f" "$stage$f"
		for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+'); do
			[[ -e "$stage$lib" ]] && continue
			mkdir -p "$stage$(dirname "$lib")"
			cp -L "$lib" "$stage$lib"
		done
	done
}

cp "$busybox_bin" "$stage/bin/busybox"
# libcurl is dlopen()ed by the library (Barbican keys): ldd cannot see it.
curl_so=$(ldconfig -p | sed -n 's|^\s*libcurl\.so\.4 (libc6,x86-64) => ||p' | head -n 1)
[[ -n "$curl_so" ]] && copy_with_libs "$curl_so"
copy_with_libs "$(command -v lvm)" "$(command -v dmsetup)" \
	"$(command -v cryptsetup)" "$(command -v mkfs.ext4)" \
	"$(command -v blkid)"
for l in lvcreate lvremove lvextend lvchange lvs vgcreate vgremove vgs \
	vgchange pvcreate pvremove pvs; do
	ln -sf "$(command -v lvm)" "$stage/sbin/$l"
done

# Modules in dependency order: each after what it depends on.
declare -A placed=()
order=()
place() { # module path relative to lib/modules/VER
	local m=$1 d deps
	[[ -n "${placed[$m]:-}" ]] && return
	placed[$m]=1
	deps=$(grep -E "^$m:" "$kroot/lib/modules/$kver/modules.dep" | cut -d: -f2)
	for d in $deps; do place "$d"; done
	order+=("$m")
}
for want in virtio_pci virtio_blk virtio_net dm-mod dm-crypt dm-thin-pool xts ecb \
	algif_skcipher; do
	m=$(grep -oE "^[^:]*/$want\.ko(\.xz)?:" "$kroot/lib/modules/$kver/modules.dep" |
		head -n 1 | tr -d :)
	[[ -n "$m" ]] || fail_all "no module $want in $kpkg"
	place "$m"
done
for m in "${order[@]}"; do
	cp "$kroot/lib/modules/$kver/$m" "$stage/lib/modules/"
	basename "$m" >>"$stage/etc/modules.load"
done

cat >"$stage/etc/lvm/lvm.conf" <<'LVM'
# No udev, no daemons in the test guest.
devices {
	obtain_device_list_from_udev = 0
	use_devicesfile = 0
	scan = [ "/dev" ]
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
global {
	use_lvmlockd = 0
	thin_check_executable = ""
	locking_dir = "/run/lock/lvm"
}
LVM

# The guest tests.
if [[ -n "$guest_script" ]]; then
	cp "$guest_script" "$stage/vmtests/"
else
	for g in "$root"/tests/suite/vm/guest/*.sh; do
		cp "$g" "$stage/vmtests/"
	done
fi
for b in "${builds[@]}"; do
	[[ -x "$b/tools/vmdisk" ]] &&
		copy_with_libs "$b/tools/vmdisk" "$b/tools/vmdiskd"
done
for t in "${VM_TESTS[@]}"; do
	copy_with_libs "$t"
	printf '%s\n' "$t" >>"$stage/etc/vm_tests"
done
printf '%s\n' "$build" >"$stage/etc/build_dir"
[[ -n "${VMDISK_VM_FILTER:-}" ]] &&
	printf 'export VMDISK_VM_FILTER=%q\n' "$VMDISK_VM_FILTER" \
		>"$stage/etc/vm_filter"
net_args=(-nic none)
if [[ -n "${VMDISK_VM_BARBICAN_PORT:-}" ]]; then
	net_args=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=)
	{
		echo "export VMDISK_VM_BARBICAN=http://10.0.2.2:$VMDISK_VM_BARBICAN_PORT"
		for v in VMDISK_VM_BARBICAN_PROJECT VMDISK_VM_BARBICAN_TOKEN \
			VMDISK_VM_KEY_GOOD VMDISK_VM_KEY_BROKEN VMDISK_VM_PLANTED; do
			printf 'export %s=%q\n' "$v" "${!v:-}"
		done
	} >"$stage/etc/vm_env"
fi

cat >"$stage/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run/lock/lvm /run/cryptsetup /tmp
for m in $(cat /etc/modules.load); do
	insmod "/lib/modules/$m" 2>/dev/null ||
		grep -q "^$(echo "${m%.ko*}" | tr - _) " /proc/modules ||
		echo "not ok - load module $m"
done
n=0
while [ ! -b /dev/vdb ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
echo "VMTEST-BEGIN"
export VMDISK_BUILD_DIR="$(cat /etc/build_dir)"
[ -f /etc/vm_filter ] && . /etc/vm_filter
if [ -f /etc/vm_env ]; then
	. /etc/vm_env
	ip link set lo up
	ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up &&
		ip route add default via 10.0.2.2 ||
		echo "not ok - network for the Barbican cases"
elif [ -z "${VMDISK_VM_FILTER:-}" ]; then
	for t in /vmtests/*.sh; do
		echo "# guest test $t"
		sh "$t"
	done
fi
if [ -f /etc/vm_tests ]; then
	export CMOCKA_MESSAGE_OUTPUT=TAP
	export VMDISK_VM_DISK=/dev/vda
	for t in $(cat /etc/vm_tests); do
		# Each binary with the CLI and helper of its own build.
		export VMDISK_BUILD_DIR="${t%/tests/*}"
		export VMDISK_CLI="$VMDISK_BUILD_DIR/tools/vmdisk"
		export VMDISK_MODULE_DIR="$VMDISK_BUILD_DIR/lib"
		export VMDISK_VMDISKD="$VMDISK_BUILD_DIR/tools/vmdiskd"
		echo "# guest test $t"
		"$t"
		rc=$?
		# cmocka exits with its count of failures (already "not ok"
		# lines); a binary that could not run or crashed says nothing.
		[ $rc -ge 126 ] && echo "not ok - $t exited $rc"
	done
fi
echo "VMTEST-DONE"
poweroff -f
INIT
chmod 755 "$stage/init" "$stage"/vmtests/*.sh 2>/dev/null

(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) \
	>"$tmp/initrd.gz" || fail_all "building the initramfs"
truncate -s 2G "$tmp/vda.img" "$tmp/vdb.img"

say "booting $kver under TCG with $(du -h "$tmp/initrd.gz" | cut -f1) initramfs"
start=$(date +%s)
qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -cpu max \
	-kernel "$kroot/boot/vmlinuz-$kver" -initrd "$tmp/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet" \
	-drive "file=$tmp/vda.img,if=virtio,format=raw" \
	-drive "file=$tmp/vdb.img,if=virtio,format=raw" "${net_args[@]}" \
	-display none -monitor none -serial "file:$tmp/console.log" \
	-no-reboot </dev/null >"$tmp/qemu.log" 2>&1 &
qemu_pid=$!
while kill -0 "$qemu_pid" 2>/dev/null &&
	! grep -q '^State:.*Z' "/proc/$qemu_pid/status" 2>/dev/null; do
	if (($(date +%s) - start > timeout_s)); then
		kill -9 "$qemu_pid"
		say "the guest did not finish in $timeout_s s"
		break
	fi
	sleep 1
done
wait "$qemu_pid" 2>/dev/null
qemu_pid=
say "guest ran $(($(date +%s) - start)) s"
# Kept for a look after a failure.
cp "$tmp/console.log" "$build/vm-console.log" 2>/dev/null

tr -d '\r' <"$tmp/console.log" | sed -n '/^VMTEST-BEGIN/,/^VMTEST-DONE/p' |
	grep -E '^(ok|not ok)|^# ' | sed 's/^/vm: /'
passed=$(tr -d '\r' <"$tmp/console.log" | grep -cE '^ok ')
failed=$(tr -d '\r' <"$tmp/console.log" | grep -cE '^not ok ')
if ! tr -d '\r' <"$tmp/console.log" | grep -q '^VMTEST-DONE'; then
	say "the guest never finished; its console ends with:"
	tr -d '\r' <"$tmp/console.log" | tail -n 20 | sed 's/^/vm:   /'
	tail -n 5 "$tmp/qemu.log" | sed 's/^/vm: qemu: /'
	failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
((failed == 0 && passed > 0))
