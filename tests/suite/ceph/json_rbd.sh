#!/usr/bin/env bash
# The rbd-only --json shapes (snapshot, flatten, direct-snapshot) from real
# output against the test cluster, validated against doc/schema/ by
# python3-jsonschema (tests/suite/json/schema_check.py). The json suite
# checks every other shape; it can only check these three's examples.
#
#   tests/suite/ceph/json_rbd.sh CLUSTER_DIR BUILD_DIR
#
# Called by tests/suite/ceph/run.sh while the cluster of CLUSTER_DIR runs.
# Last line "N passed, N failed"; exit 77 only without python3-jsonschema.
set -uo pipefail

D=${1:?cluster dir}
ceph_conf=$D/ceph.conf
fsid=$(cat "$D/fsid")
R=(rbd -c "$ceph_conf" --id admin)

root=$(cd "$(dirname "$0")/../../.." && pwd)
t_name=json-rbd
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${2:?build dir}"
cli=$build/tools/vmdisk
export VMDISK_MODULE_DIR=$build/lib
need_python jsonschema python3-jsonschema
suite_tmp "$D"
check_py=$root/tests/suite/json/schema_check.py

conf_log=("log_target = none")
conf_lines=("images_type = rbd"
	"[libvirt]" "images_rbd_pool = vms" "images_rbd_ceph_conf = $ceph_conf"
	"rbd_user = admin" "rbd_secret_uuid = 5d3c3c2e-9c2b-4bd0-9a53-3c1c1b2d0e11"
	"[vmdisk]" "images_rbd_glance_store_pool = images")
newconf

# valid SHAPE CASE: the last command's stdout is one document of SHAPE
valid() {
	local why
	if why=$("$py" "$check_py" validate "$root/doc/schema/$1.json" "$tmp/out" 2>&1); then
		ok "$2: $1 --json validates"
	else
		bad "$2: $1 --json: $why"
	fi
}
# json_field KEY: that field of the last output
json_field() {
	"$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
		"$tmp/out" "$1" 2>/dev/null
}

random_image "$tmp/a.raw" 1M 4M
u=$(new_uuid)
if vm --json create "$u" disk --image "$tmp/a.raw"; then
	valid create "create on rbd"
else
	bad "create on rbd: $(cat "$tmp/err")"
	finish
fi
on_exit '"${R[@]}" rm "vms/${u}_disk" >/dev/null 2>&1'

for action in create rollback remove; do
	if vm snapshot "$action" "$u" disk s1 --json; then
		valid snapshot "snapshot $action"
		[[ "$(json_field action)" == "$action" ]] ||
			bad "snapshot $action: action is '$(json_field action)'"
	else
		bad "snapshot $action: $(cat "$tmp/err")"
	fi
done

name=json-$(random_hex 4)
if vm direct-snapshot "$u" disk "$name" --output=json; then
	valid direct-snapshot "direct-snapshot"
	location=$(json_field location)
	on_exit '"${R[@]}" snap unprotect "images/$name@snap" >/dev/null 2>&1; "${R[@]}" snap purge "images/$name" >/dev/null 2>&1; "${R[@]}" rm "images/$name" >/dev/null 2>&1'
	check "direct-snapshot: location is rbd://$fsid/images/$name/snap" \
		test "$location" = "rbd://$fsid/images/$name/snap"
else
	bad "direct-snapshot: $(cat "$tmp/err")"
	finish
fi

# A clone of the published snapshot, then flattened.
v=$(new_uuid)
if vm create "$v" disk --location "$location"; then
	on_exit '"${R[@]}" rm "vms/${v}_disk" >/dev/null 2>&1'
	if vm --json flatten "$v" disk; then
		valid flatten "flatten of a clone"
		parent=$("${R[@]}" info --format json "vms/${v}_disk" |
			"$py" -c 'import json, sys; print(json.load(sys.stdin).get("parent", ""))')
		check "flatten: the disk has no parent after" test -z "$parent"
	else
		bad "flatten: $(cat "$tmp/err")"
	fi
	vm remove "$v" disk || bad "remove the clone: $(cat "$tmp/err")"
else
	bad "create from $location: $(cat "$tmp/err")"
fi
vm remove "$u" disk || bad "remove: $(cat "$tmp/err")"
finish
