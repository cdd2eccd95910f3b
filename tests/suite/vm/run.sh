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
timeout_s=${VMDISK_VM_TIMEOUT:-420}
# shellcheck source=tests/suite/vm/lib.sh
. "$root/tests/suite/vm/lib.sh"

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

vm_need_tools
vm_kernel

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-vm.XXXXXX") || exit 1
cleanup() {
	[[ -n "$qemu_pid" ]] && kill -9 "$qemu_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
vm_stage "$tmp" virtio_pci virtio_blk virtio_net dm-mod dm-crypt dm-thin-pool \
	xts ecb algif_skcipher

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
vm_net_args=(-nic none)
if [[ -n "${VMDISK_VM_BARBICAN_PORT:-}" ]]; then
	vm_net_args=(-netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=)
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
vm_boot "$tmp" "$timeout_s" 2G 2G
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
