#!/usr/bin/env bash
# Crash consistency of lvm create/remove, and secrets with a real LUKS key,
# inside the test VM (the host has no device-mapper): the guest
# (vmcrash/guest.sh, booted once by tests/suite/vm/lib.sh) kills vmdisk or
# its one-shot vmdiskd at fault point hits of create and remove of a plain,
# a thin and a LUKS-encrypted LV (the points learnt from VMDISK_FAULT_TRACE,
# which the helper inherits in fault-injection builds) and at random times,
# and checks after each that the next run succeeds and nothing is left half
# made. Then, at log_level = debug with the vmdiskd audit log, it creates,
# resizes and removes an encrypted LV with a key planted here (key file
# provider), and packs every log, stderr, the audit log and the test
# folders onto a virtio disk; this script looks in them for the key, raw,
# hex (either case) and base64 (standard and URL-safe): in any log or
# stderr or audit line, and in any file whose mode is not 0600.
#
# Figures: vm_crash_trials, vm_crash_inconsistent (must be 0),
# vm_secret_occurrences (must be 0). VC_SEED picks the random kill times.
set -uo pipefail
t_name=vm-crash
# shellcheck source=tests/suite/reliability/common.sh
. "$(dirname "$0")/../common.sh"
need_cli

say() { printf '%s: %s\n' "$t_name" "$*"; }
skip_all() { skip "$*"; }
fail_all() { fail_suite "$*"; }
# shellcheck source=tests/suite/vm/lib.sh
. "$root/tests/suite/vm/lib.sh"

vm_need_tools
[[ -x "$build/tools/vmdiskd" ]] || fail_suite "no vmdiskd in $build"
grep -q "VMD_FAULT_INJECTION 1" "$build/vmd_build_config.h" 2>/dev/null ||
	skip "$build is not a fault_injection build"
vm_kernel
for m in dm-crypt dm-thin-pool; do
	vm_has_module $m || skip "the kernel $kver has no $m module"
done
# Hits killed per operation (0: every hit) and random kills per operation.
points=${VC_POINTS:-$(scaled 3 0)}
randoms=${VC_RANDOM:-$(scaled 1 12)}
seed=${VC_SEED:-$((RANDOM * 32768 + RANDOM))}
say "seed $seed, $points hits (0: all) and $randoms random kills per operation"

suite_tmp
vm_stage "$tmp" virtio_pci virtio_blk dm-mod dm-crypt dm-thin-pool \
	xts ecb algif_skcipher
copy_with_libs "$cli" "$build/tools/vmdiskd"
mkdir -p "$stage/srv" "$stage/keys" "$stage/etc/vmcrash"
cp "$reliability_dir/vmcrash/guest.sh" "$stage/vmtests/vmcrash.sh"
random_image "$stage/srv/base.raw" 3M 4M
# The planted key: 64 random bytes in a key file named by its id.
key_id=$("$py" -c 'import uuid; print(uuid.uuid4())')
head -c 64 /dev/urandom >"$tmp/key"
cp "$tmp/key" "$stage/keys/$key_id"
chmod 700 "$stage/keys"
chmod 600 "$stage/keys/$key_id"
echo "$key_id" >"$stage/etc/vmcrash/key_id"

cat >"$stage/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /run/lock/lvm /run/cryptsetup /tmp
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for m in \$(cat /etc/modules.load); do
	insmod "/lib/modules/\$m" 2>/dev/null ||
		grep -q "^\$(echo "\${m%.ko*}" | tr - _) " /proc/modules ||
		echo "not ok - load module \$m"
done
# The key must be root's (the initramfs has the packer's owner).
chown -R 0:0 /keys
n=0
while [ ! -b /dev/vdb ] && [ \$n -lt 50 ]; do sleep 0.1; n=\$((n + 1)); done
echo "VC-BEGIN"
export VMDISK_CLI=$cli VMDISK_VMDISKD=$build/tools/vmdiskd
export VC_POINTS=$points VC_RANDOM=$randoms VC_SEED=$seed
sh /vmtests/vmcrash.sh
echo "VC-DONE"
poweroff -f
INIT

on_exit '[[ -n "$qemu_pid" ]] && kill -9 "$qemu_pid" 2>/dev/null'
vm_boot "$tmp" "$(scaled 600 5400)" 1G 64M
console=$(tr -d '\r' <"$tmp/console.log")
cp "$tmp/console.log" "$build/vm-crash-console.log" 2>/dev/null
sed -n '/^VC-BEGIN/,/^VC-DONE/p' <<<"$console" | while IFS= read -r line; do
	case $line in
	"ok - "*) echo "ok   ${line#ok - }" ;;
	"not ok - "*) echo "FAIL ${line#not ok - }" ;;
	"# "* | "figure: "*) echo "$line" ;;
	esac
done
passed=$(sed -n '/^VC-BEGIN/,/^VC-DONE/p' <<<"$console" | grep -c '^ok - ')
failed=$(sed -n '/^VC-BEGIN/,/^VC-DONE/p' <<<"$console" | grep -c '^not ok - ')
if ! grep -q '^VC-DONE' <<<"$console"; then
	bad "the guest never finished; its console ends with:"
	tail -n 20 <<<"$console" | sed 's/^/  /'
	finish
fi

# The secrets scan, over what the guest packed onto its second disk.
"$py" - "$tmp/key" "$tmp/vdb.img" "$tmp/console.log" >"$tmp/scan.out" 2>&1 <<'PY'
import base64, sys, tarfile
key = open(sys.argv[1], "rb").read()
forms = {"raw": key, "hex": key.hex().encode(),
         "HEX": key.hex().upper().encode(),
         "base64": base64.b64encode(key).rstrip(b"="),
         "base64url": base64.urlsafe_b64encode(key).rstrip(b"=")}
found, files, logs = [], 0, 0
def scan(place, data):
    for name, n in forms.items():
        if n in data:
            found.append("%s (%s)" % (place, name))
scan("the guest console", open(sys.argv[3], "rb").read())
try:
    tar = tarfile.open(sys.argv[2], "r:")
    members = tar.getmembers()
except (tarfile.TarError, OSError) as e:
    print("FAIL reading the guest's packed folders: %s" % e)
    sys.exit(1)
for m in members:
    if not m.isfile():
        continue
    data = tar.extractfile(m).read()
    is_log = m.name.startswith(("out/", "var/log/vmdisk/"))
    if is_log:
        logs += 1
    if is_log or (m.mode & 0o7777) != 0o600:
        files += 1
        scan("%s (mode %04o)" % (m.name, m.mode & 0o7777), data)
    if m.name == "out/logs/create.err" and data.count(b"\n") < 3:
        print("FAIL the create's debug log has %d lines: debug logging is off"
              % data.count(b"\n"))
for f in found:
    print("FAIL the key is in " + f)
print("ok   the key (raw, hex, HEX, base64, base64url) looked for in the "
      "console and %d files (%d logs, stderr and audit files)" % (files, logs)
      if not found else "# %d occurrences" % len(found))
print("figure: vm_secret_occurrences %d" % len(found))
PY
cat "$tmp/scan.out"
passed=$((passed + $(grep -c '^ok ' "$tmp/scan.out")))
failed=$((failed + $(grep -c '^FAIL ' "$tmp/scan.out")))
grep -q '^figure: vm_secret_occurrences' "$tmp/scan.out" ||
	bad "the secrets scan did not finish"
finish
