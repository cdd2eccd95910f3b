#!/usr/bin/env bash
# vmdisk.nova side by side with Nova's own imagebackend.Rbd on the test
# cluster (issue 19): python/tests/test_nova_rbd.py under pytest, each case
# one ok/FAIL line, then a check that no RBD image of the part is left.
#
#   tests/suite/ceph/nova_rbd.sh CLUSTER_DIR BUILD_DIR
#
# Called by tests/suite/ceph/run.sh while the cluster of CLUSTER_DIR runs.
# Last line "N passed, N failed"; exit 77 only when the build has no
# Python module or python3-nova, python3-rbd, python3-pytest or
# python3-jsonschema cannot be installed.
set -uo pipefail

D=${1:?cluster dir}
ceph_conf=$D/ceph.conf
R=(rbd -c "$ceph_conf" --id admin)

root=$(cd "$(dirname "$0")/../../.." && pwd)
t_name=nova-rbd
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${2:?build dir}"
compgen -G "$build/python/vmdisk/_vmdisk*.so" >/dev/null ||
	skip "no Python module in $build (-Dpython, python3-dev)"
need_python nova.virt.libvirt.imagebackend python3-nova
need_python rbd python3-rbd
need_python rados python3-rados
need_python pytest python3-pytest
need_python jsonschema python3-jsonschema
suite_tmp "$D"

# The images of the pools before: the part must leave them as they were.
"${R[@]}" ls vms 2>/dev/null | sort >"$tmp/vms.before"
"${R[@]}" ls images 2>/dev/null | sort >"$tmp/images.before"

secret=5d3c3c2e-9c2b-4bd0-9a53-3c1c1b2d0e11
cat >"$tmp/vmdisk.conf" <<CONF
[DEFAULT]
instances_path = $tmp/vmd-instances
log_target = none
images_type = rbd
[libvirt]
images_rbd_pool = vms
images_rbd_ceph_conf = $ceph_conf
rbd_user = admin
rbd_secret_uuid = $secret
[vmdisk]
images_rbd_glance_store_pool = images
CONF
eval "$("$root/tests/suite/ceph/cluster.sh" env "$D")"
export VMDISK_CEPH_CONF VMDISK_CEPH_FSID NOVA_RBD_VMDISK_CONF=$tmp/vmdisk.conf \
	NOVA_RBD_SECRET_UUID=$secret VMDISK_MODULE_DIR=$build/lib \
	PYTHONPATH=$build/python PYTHONDONTWRITEBYTECODE=1
# Nova's rbd_utils and its `ceph mon dump`/`rbd import` find the keyring
# through the cluster's ceph.conf.
export CEPH_CONF=$ceph_conf
# A sanitizer build (py_asan_setup, tests/suite/lib.sh): libstdc++ is
# preloaded right after libasan: librados (C++) throws while it reads its
# options, and ASan's __cxa_throw interceptor, set up before libstdc++ was
# loaded, would find no real __cxa_throw and abort.
py_asan_setup "$(ldd "$("$py" -c 'import rados; print(rados.__file__)')" |
	awk '/libstdc\+\+\.so/ { print $3; exit }')"

nice "$py" -m pytest -q -p no:cacheprovider -W ignore \
	--basetemp="$tmp/pytest" --junitxml="$tmp/junit.xml" \
	"$root/python/tests/test_nova_rbd.py" >"$tmp/pytest.log" 2>&1
pytest_cases "$tmp/junit.xml" "$tmp/pytest.log" bad

for pool in vms images; do
	"${R[@]}" ls "$pool" 2>/dev/null | sort >"$tmp/$pool.after"
	if cmp -s "$tmp/$pool.before" "$tmp/$pool.after"; then
		ok "pool $pool holds no image of this part after it"
	else
		bad "pool $pool: left behind: $(comm -13 "$tmp/$pool.before" "$tmp/$pool.after" | tr '\n' ' ')"
	fi
done
finish
