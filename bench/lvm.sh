#!/usr/bin/env bash
# Benchmark: what the lvm backend and its privileged helper cost over lvm2
# alone. In the test VM (tests/suite/vm/run.sh: the Debian kernel under TCG, so
# every figure is emulated and only the ratios mean anything), N blank
# 64 MiB thin disks are made and removed three ways in the same run:
#   anchor  lvcreate -V -T + lvremove (two lvm2 processes per disk);
#   root    vmdisk create --blank + vmdisk remove as root (in-process);
#   helper  the same as an unprivileged user, every step through vmdiskd.
# No goal is set by an issue; the bench prints the ratios root/anchor and
# helper/root (what going through vmdiskd adds).
#
#   bench/lvm.sh [BUILD_DIR] [N]
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init lvm "${1:-}"
n=${2:-10}
[[ -x "$build/tools/vmdiskd" ]] ||
	{ echo "bench: build first (scripts/test.sh or ninja -C $build)" >&2; exit 1; }
# The root row runs the build's vmdiskd through VMDISK_VMDISKD, which only
# a fault-injection build honours (release builds run the installed one).
grep -q "VMD_FAULT_INJECTION 1" "$build/vmd_build_config.h" 2>/dev/null ||
	bench_skip "$build is not a -Dfault_injection=true build (the root row needs the build's vmdiskd)"
{ echo "VMDISK_BENCH_N=$n"; cat bench/lvm_guest.sh; } >"$work/lvm_guest.sh"
rc=0
out=$(VMDISK_VM_GUEST_SCRIPT=$work/lvm_guest.sh bash tests/suite/vm/run.sh "$build" 2>&1) || rc=$?
# 77: the VM cannot start here (no qemu, no kernel package); it says why.
((rc != 77)) || bench_skip "the test VM cannot start: $(printf '%s\n' "$out" |
	sed -n 's/^.*skipped: //p' | head -1)"
((rc == 0)) || {
	printf '%s\n' "$out" | tail -n 20
	echo "bench: the VM run failed" >&2
	exit 1
}
val() { printf '%s\n' "$out" | sed -n "s/^vm: # bench: $1 \([0-9]*\)$/\1/p"; }
anchor=$(val anchor) root=$(val root) helper=$(val helper) audited=$(val audited)
[[ -n "$anchor" && -n "$root" && -n "$helper" ]] || {
	printf '%s\n' "$out" | tail -n 20
	echo "bench: no figures from the guest" >&2
	exit 1
}
per() { awk -v t="$1" -v n="$n" 'BEGIN { printf "%.0f", t / n }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "bench: $n blank 64 MiB thin disks made and removed, per disk (TCG):"
echo "bench:   anchor lvcreate+lvremove       $(per "$anchor") ms"
echo "bench:   vmdisk as root (in-process)    $(per "$root") ms  ratio $(ratio "$root" "$anchor") x anchor"
echo "bench:   vmdisk as a user via vmdiskd   $(per "$helper") ms  ratio $(ratio "$helper" "$anchor") x anchor, $(ratio "$helper" "$root") x root"
echo "bench:   vmdiskd requests audited done: ${audited:-?}"
bench_result "lvm: blank thin disk make+remove, root vs lvcreate+lvremove (TCG)" \
	"$(per "$root") ms" "$(per "$anchor") ms" "$(ratio "$root" "$anchor")" "-"
bench_result "lvm: the same as a user via vmdiskd vs as root (TCG)" \
	"$(per "$helper") ms" "$(per "$root") ms" "$(ratio "$helper" "$root")" "-"
