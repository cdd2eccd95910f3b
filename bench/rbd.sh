#!/usr/bin/env bash
# Benchmark: an instance disk from a 1 GiB image on Ceph, by copy-on-write
# clone vs by import, in the same run, on a throw-away single-node cluster
# (tests/suite/ceph/cluster.sh). Anchors: the rbd CLI doing the same (rbd import,
# rbd clone). Goal: clone < 100 ms and O(1) in the image size (the 64 MiB
# and 1 GiB clones take the same time).
#
#   bench/rbd.sh [BUILD_DIR] [N]     (needs root for the cluster's packages)
#   RBD_MIB=N: the big image is N MiB (default 1024)
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init rbd "${1:-}"
n=${2:-10}
[ -e "$build/lib/vmdisk-rbd.so" ] ||
	bench_skip "no rbd module in $build: build with librbd first (tests/suite/ceph/run.sh does)"
{ command -v ceph-mon && command -v rbd; } >/dev/null 2>&1 ||
	bench_skip "no Ceph here (tests/suite/ceph/run.sh installs it)"
bench_cleanup() { tests/suite/ceph/cluster.sh stop "$work/ceph" >/dev/null 2>&1 || true; }
mkdir "$work/ceph"
rc=0
tests/suite/ceph/cluster.sh start "$work/ceph" >"$work/cluster.out" 2>&1 || rc=$?
((rc != 77)) || bench_skip "$(tail -n 1 "$work/cluster.out")"
((rc == 0)) || { tail -n 20 "$work/cluster.out" >&2; echo "bench: the cluster did not start" >&2; exit 1; }
C=(-c "$work/ceph/ceph.conf")
fsid=$(cat "$work/ceph/fsid")
cat >"$work/vmdisk.conf" <<CONF
[DEFAULT]
instances_path = $work/instances
images_type = rbd
[libvirt]
images_rbd_pool = vms
images_rbd_ceph_conf = $work/ceph/ceph.conf
rbd_user = admin
[vmdisk]
log_target = none
CONF
export VMDISK_CONFIG=$work/vmdisk.conf VMDISK_MODULE_DIR=$build/lib

# 1 GiB (RBD_MIB) of incompressible data (a worst case for import) and a 64 MiB one.
head -c "${RBD_MIB:-1024}M" /dev/urandom >"$work/big.raw"
head -c 64M /dev/urandom >"$work/small.raw"
"$vmdisk" fetch "$work/big.raw" >/dev/null
"$vmdisk" fetch "$work/small.raw" >/dev/null

now_ns() { date +%s%N; }
uuid_n() { printf '00000000-0000-4000-8000-%012d' "$1"; }
timed() { local t0 t1; t0=$(now_ns); "$@" >/dev/null; t1=$(now_ns); echo $(((t1 - t0) / 1000)); }

# The image pool's copies, published as Glance's rbd store does.
anchor_import_us=$(timed rbd "${C[@]}" import --no-progress "$work/big.raw" images/big)
rbd "${C[@]}" snap create images/big@snap >/dev/null 2>&1
rbd "${C[@]}" snap protect images/big@snap
rbd "${C[@]}" import --no-progress "$work/small.raw" images/small >/dev/null
rbd "${C[@]}" snap create images/small@snap >/dev/null 2>&1
rbd "${C[@]}" snap protect images/small@snap

clone_series() { # image name prefix
	local i
	for ((i = 0; i < n; i++)); do
		timed "$vmdisk" create "$(uuid_n "$i")" "$2" --location "rbd://$fsid/images/$1/snap"
	done | median
}
clone_big=$(clone_series big cbig)
clone_small=$(clone_series small csmall)
# In one process (the connection made by the first clone, then reused), as a
# service linking libvmdisk sees it; the first clone is left out.
cc -O2 -o "$work/clone_time" bench/rbd_clone_time.c -Iinclude \
	-L"$build/lib" -lvmdisk -Wl,-rpath,"$build/lib"
inproc=$("$work/clone_time" "$work/vmdisk.conf" "$build/lib" \
	"rbd://$fsid/images/big/snap" $((n + 1)) 500 | tail -n +2 | median)
anchor_clone=$(for ((i = 0; i < n; i++)); do timed rbd "${C[@]}" clone images/big@snap "vms/anchor$i"; done | median)

imports=3
import_big=$(for ((i = 0; i < imports; i++)); do
	t=$(timed "$vmdisk" create "$(uuid_n "$((100 + i))")" ibig --image "$work/big.raw")
	"$vmdisk" remove "$(uuid_n "$((100 + i))")" ibig
	echo "$t"
done | median)

big="${RBD_MIB:-1024} MiB"
awk -v big="$big" -v ip="$inproc" -v cb="$clone_big" -v cs="$clone_small" -v ac="$anchor_clone" \
    -v ib="$import_big" -v ai="$anchor_import_us" -v n="$n" -v ni="$imports" 'BEGIN {
	printf "clone  %s  vmdisk create --location %9.1f ms (median of %d)   rbd clone  %8.1f ms   ratio %.2f\n", big, cb/1000, n, ac/1000, cb/ac
	printf "clone  %s  libvmdisk in-process     %9.1f ms (median of %d, connection reused)\n", big, ip, n
	printf "clone 64 MiB  vmdisk create --location %9.1f ms (median of %d)   size ratio %s/64M %.2f (O(1): ~1)\n", cs/1000, n, big, cb/cs
	printf "import %s  vmdisk create --image    %9.1f ms (median of %d)   rbd import %8.1f ms   ratio %.2f\n", big, ib/1000, ni, ai/1000, ib/ai
	printf "clone/import  %.4f  (import is %.0fx slower); goal clone < 100 ms: CLI %s, in-process %s\n", cb/ib, ib/cb, (cb < 100000 ? "met" : "NOT met"), (ip < 100 ? "met" : "NOT met")
}'
bench_result "rbd: clone $big, vmdisk create --location vs rbd clone" \
	"$(awk -v u="$clone_big" 'BEGIN { printf "%.1f ms", u / 1000 }')" \
	"$(awk -v u="$anchor_clone" 'BEGIN { printf "%.1f ms", u / 1000 }')" \
	"$(ratio "$clone_big" "$anchor_clone")" "< 100 ms" "$( ((clone_big < 100000)) && echo yes || echo no)"
bench_result "rbd: clone $big, libvmdisk in process vs rbd clone" "$inproc ms" \
	"$(awk -v u="$anchor_clone" 'BEGIN { printf "%.1f ms", u / 1000 }')" \
	"$(ratio "$(awk -v m="$inproc" 'BEGIN { print m * 1000 }')" "$anchor_clone")" "< 100 ms" \
	"$(awk -v m="$inproc" 'BEGIN { print (m + 0 < 100) ? "yes" : "no" }')"
bench_result "rbd: clone $big vs clone 64 MiB (O(1) in the size)" \
	"$(awk -v u="$clone_big" 'BEGIN { printf "%.1f ms", u / 1000 }')" \
	"$(awk -v u="$clone_small" 'BEGIN { printf "%.1f ms", u / 1000 }')" \
	"$(ratio "$clone_big" "$clone_small")" "<= 1.25"
bench_result "rbd: import $big, vmdisk create --image vs rbd import" \
	"$(awk -v u="$import_big" 'BEGIN { printf "%.0f ms", u / 1000 }')" \
	"$(awk -v u="$anchor_import_us" 'BEGIN { printf "%.0f ms", u / 1000 }')" \
	"$(ratio "$import_big" "$anchor_import_us")" "-"
