#!/usr/bin/env bash
# The RBD suite against a real single-node Ceph (tests/suite/ceph/cluster.sh).
#
# Installs the Ceph packages when missing (root, apt-get), makes sure build/
# has the rbd module and tests/unit/test_rbd (reconfiguring once the librbd
# headers are there), starts the cluster in a mktemp folder, runs test_rbd
# (and build-asan's, when that build exists beside), glance_rbd.sh (a
# real Glance whose rbd store is the same cluster: images cloned from their
# direct_url), json_rbd.sh (the rbd-only --json shapes) and nova_rbd.sh
# (vmdisk.nova side by side with Nova's imagebackend.Rbd), stops the
# daemons by PID and removes the folder.
# Last line:
#   N passed, N failed[, N skipped]
# Exit 0 when all passed, 77 (with the reason) when no cluster can start here.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../.." && pwd)
build=${VMDISK_BUILD_DIR:-$src/build}
pkgs=(ceph-mon ceph-osd ceph-common librbd-dev librados-dev uuid-runtime)

skip() { echo "ceph suite skipped: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || skip "packages missing (${missing[*]}) and not root"
	echo "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		"${missing[@]}" >/tmp/vmdisk-ceph-apt.log 2>&1 ||
		{ DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null 2>&1 &&
		  DEBIAN_FRONTEND=noninteractive apt-get install -y \
			--no-install-recommends "${missing[@]}" \
			>/tmp/vmdisk-ceph-apt.log 2>&1; } ||
		skip "could not install ${missing[*]} (see /tmp/vmdisk-ceph-apt.log)"
fi

[ -d "$build" ] || meson setup "$build" -Dfault_injection=true >/dev/null
if [ ! -e "$build/lib/vmdisk-rbd.so" ] || [ ! -e "$build/tests/unit/test_rbd" ]; then
	# Configured before librbd-dev was installed: look again.
	meson setup --reconfigure "$build" >/dev/null
fi
ninja -C "$build" -j2 >/dev/null
[ -e "$build/tests/unit/test_rbd" ] || { echo "test_rbd not built"; echo "0 passed, 1 failed"; exit 1; }

D=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-ceph.XXXXXX")
cleanup() {
	"$here/cluster.sh" stop "$D" >/dev/null 2>&1 || true
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 143' TERM INT   # so that the EXIT trap stops the daemons

rc=0
"$here/cluster.sh" start "$D" || rc=$?
if [ $rc -eq 77 ]; then
	skip "cluster could not start"
elif [ $rc -ne 0 ]; then
	echo "cluster start failed ($rc)"; tail -20 "$D"/log/*.log 2>/dev/null | tail -40
	echo "0 passed, 1 failed"; exit 1
fi
eval "$("$here/cluster.sh" env "$D")"
export VMDISK_CEPH_CONF VMDISK_SOURCE_DIR=$src CMOCKA_MESSAGE_OUTPUT=TAP

# run_tests BUILD_DIR: test_rbd of that build; adds to the counts.
passed=0 failed=0 skipped=0
run_tests() {
	local b=$1 out trc=0
	out=$D/test_rbd.$(basename "$b").tap
	echo "=== test_rbd ($b)"
	VMDISK_BUILD_DIR=$b VMDISK_CLI=$b/tools/vmdisk \
		timeout 600 "$b/tests/unit/test_rbd" >"$out" 2>&1 || trc=$?
	cat "$out"
	# cmocka's TAP: "ok N - name", "not ok N - name", "not ok N # SKIP name".
	local s f p
	s=$(grep -cE '^(not )?ok [0-9]+ # SKIP' "$out" || true)
	f=$(grep -E '^not ok [0-9]+' "$out" | grep -cv '# SKIP' || true)
	p=$(grep -E '^ok [0-9]+' "$out" | grep -cv '# SKIP' || true)
	if [ "$trc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1   # crashed or timed out without a TAP failure line
	fi
	if [ $((p + f)) -eq 0 ]; then f=1; fi
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

run_tests "$build"
# The sanitizer build too, when there is one beside it (scripts/test.sh
# makes build-asan): the module's memory errors show there.
asan=$(dirname "$build")/build-asan
if [ "$asan" != "$build" ] && [ -f "$asan/build.ninja" ]; then
	if [ ! -e "$asan/tests/unit/test_rbd" ]; then
		meson setup --reconfigure "$asan" >/dev/null
	fi
	if ninja -C "$asan" -j2 >/dev/null && [ -e "$asan/tests/unit/test_rbd" ]; then
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
			run_tests "$asan"
	else
		echo "build-asan: test_rbd could not be built"; failed=$((failed + 1))
	fi
fi

# glance_rbd: create --image glance://ID from a real Glance whose store is
# this cluster; json_rbd: the rbd-only --json shapes from real output;
# nova_rbd: vmdisk.nova against Nova's own Rbd image backend.
for part in glance_rbd json_rbd nova_rbd; do
	echo "=== $part ($build)"
	grc=0
	"$here/$part.sh" "$D" "$build" >"$D/$part.out" 2>&1 || grc=$?
	cat "$D/$part.out"
	gl=$(tail -n 1 "$D/$part.out")
	if [ $grc -eq 77 ]; then
		skipped=$((skipped + 1))
	elif [[ "$gl" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
		passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
		if [ $grc -ne 0 ] && [ "${BASH_REMATCH[2]}" -eq 0 ]; then failed=$((failed + 1)); fi
	else
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
