#!/usr/bin/env bash
# `vmdisk create --image glance://ID` with the rbd backend against a real
# Glance whose store is the test cluster's rbd pool.
#
#   tests/suite/ceph/glance_rbd.sh CLUSTER_DIR BUILD_DIR
#
# Called by tests/suite/ceph/run.sh while the cluster of CLUSTER_DIR runs. Starts
# Debian's glance-api standalone on 127.0.0.1 (as tests/suite/glance/run.sh does:
# no Keystone, sqlite) with the rbd store on pool "images" and
# show_image_direct_url, uploads images through the API (Glance writes the
# RBD image and its protected snapshot "snap"), then checks that a raw image
# becomes a copy-on-write clone of its direct_url (parent images/ID@snap, no
# data object in the disk's pool) that reads back the image, that a qcow2
# image is imported, and that locations in Glance's database, which we do
# not trust, go through the same strict parser as --location.
#
# Last line "N passed, N failed[, N skipped]"; exit 77 (with the reason)
# only when Glance or its rbd store cannot start here.
set -uo pipefail

D=${1:?cluster dir}
ceph_conf=$D/ceph.conf
fsid=$(cat "$D/fsid")
R=(rbd -c "$ceph_conf" --id admin)

root=$(cd "$(dirname "$0")/../../.." && pwd)
t_name=glance-rbd
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
# shellcheck source=tests/suite/glance/glance.sh
. "$root/tests/suite/glance/glance.sh"
suite_build "${2:?build dir}"
cli=$build/tools/vmdisk
export VMDISK_MODULE_DIR=$build/lib

need_python glance.cmd.api python3-glance
need_python rbd python3-rbd
need_python rados python3-rados

suite_tmp "$D"
S=$tmp/glance
port=$(free_port)
# CEPH_CONF too: librados in Glance finds the keyring through it.
CEPH_CONF=$ceph_conf glance_start "$port" "rbd:rbd, http:http" rbd "[rbd]
rbd_store_pool = images
rbd_store_user = admin
rbd_store_ceph_conf = $ceph_conf
rbd_store_chunk_size = 4"
say "Glance on $api, rbd store on pool images"

direct_url() {
	curl -sf "$api/v2/images/$1" |
		"$py" -c 'import json, sys; print(json.load(sys.stdin).get("direct_url", ""))'
}
# set_location ID URL: change the image's location behind Glance's back
set_location() {
	"$py" - "$S/glance.sqlite" "$1" "$2" <<'EOF'
import sqlite3, sys
db, image, url = sys.argv[1:4]
c = sqlite3.connect(db)
n = c.execute("UPDATE image_locations SET value = ? WHERE image_id = ? AND deleted = 0",
              (url, image)).rowcount
c.commit()
sys.exit(0 if n == 1 else 1)
EOF
}

img=$tmp/img
mkdir -p "$img"
random_image "$img/a.raw" 1M 6M
head -c 64K /dev/urandom | dd of="$img/a.raw" bs=64K seek=80 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$img/a.raw" "$img/a.qcow2"

id_raw=$(glance_upload raw raw "$img/a.raw") || true
url=$(direct_url "${id_raw:-none}" 2>/dev/null) || true
if [[ -z "${id_raw:-}" || "$url" != rbd://* ]]; then
	say "Glance's rbd store did not take the image (direct_url '$url'):"
	tail -n 5 "$S/log"
	echo "0 passed, 1 failed"
	exit 1
fi
if [[ "$url" == "rbd://$fsid/images/$id_raw/snap" ]]; then
	ok "Glance stored the raw image in rbd: direct_url $url"
else
	bad "direct_url $url, expected rbd://$fsid/images/$id_raw/snap"
fi
id_qcow2=$(glance_upload qcow2 qcow2 "$img/a.qcow2") || bad "upload qcow2"
id_fsid=$(glance_upload otherfsid raw "$img/a.raw") || bad "upload raw (other fsid)"
id_evil=$(glance_upload evil raw "$img/a.raw") || bad "upload raw (bad location)"
((failed == 0)) || finish

# The CLI logs at debug level (the cases grep it) unless a case asks for
# "log_target = none" (fails_cleanly: nothing but the one error line).
conf_log=("log_target = stderr" "log_level = debug")
conf_lines=("images_type = rbd" "glance_api_servers = $api"
	"[libvirt]" "images_rbd_pool = vms" "images_rbd_ceph_conf = $ceph_conf"
	"rbd_user = admin" "rbd_secret_uuid = 5d3c3c2e-9c2b-4bd0-9a53-3c1c1b2d0e11"
	"[vmdisk]" "images_rbd_glance_store_pool = images")
# A failed create leaves no RBD image behind either.
left_behind() {
	cache_left_behind
	if "${R[@]}" info "vms/${u}_disk" >/dev/null 2>&1; then
		echo "the RBD image vms/${u}_disk exists"
	fi
}
# create_disk IMAGE_ID ARGS...: create a disk of a new instance $u from
# glance://IMAGE_ID; rc is the exit status, p the disk's parent ("" if none)
create_disk() {
	u=$(new_uuid)
	vm create "$u" disk --image "glance://$1" "${@:2}"
	rc=$?
	p=$(parent_of "${u}_disk")
}
parent_of() { # NAME: "pool/image@snap" or ""
	"${R[@]}" info --format json "vms/$1" 2>/dev/null | "$py" -c 'import json, sys
p = json.load(sys.stdin).get("parent")
print("%s/%s@%s" % (p["pool"], p["image"], p["snapshot"]) if p else "")'
}
data_objects() { # NAME: objects of its own in pool vms
	local prefix
	prefix=$("${R[@]}" info --format json "vms/$1" |
		"$py" -c 'import json, sys; print(json.load(sys.stdin)["block_name_prefix"])')
	rados -c "$ceph_conf" --id admin -p vms ls | grep -c "^$prefix\." || true
}
# reads_back NAME FILE: the disk's first bytes are FILE's
reads_back() {
	local sz
	sz=$(stat -c %s "$2")
	"${R[@]}" export "vms/$1" "$tmp/export" >/dev/null 2>&1 &&
		cmp -s -n "$sz" "$tmp/export" "$2"
	local rc=$?
	rm -f "$tmp/export"
	return $rc
}

# A raw image with an rbd:// direct_url: a clone, nothing downloaded.
newconf
create_disk "$id_raw" --size 8M
if [[ $rc -eq 0 && "$p" == "images/$id_raw@snap" ]]; then
	ok "raw glance image cloned: parent $p"
else
	bad "raw glance image: exit $rc, parent '$p': $(tail -n 2 "$tmp/err")"
fi
objs=$(data_objects "${u}_disk")
check_nothing_copied=$([[ $objs -eq 0 && $(entries) -eq 0 ]] && echo y)
if [[ -n "$check_nothing_copied" ]]; then
	ok "no data copied: 0 objects of the clone in vms, nothing in the cache"
else
	bad "clone has $objs data objects, the cache $(entries) entries"
fi
if reads_back "${u}_disk" "$img/a.raw" &&
	[[ $("${R[@]}" info --format json "vms/${u}_disk" | "$py" -c 'import json, sys; print(json.load(sys.stdin)["size"])') -eq $((8 << 20)) ]]; then
	ok "the clone reads back the image and has the requested 8 MiB"
else
	bad "the clone does not read back the image (or wrong size)"
fi
vm remove "$u" disk || bad "remove the clone: $(tail -n 1 "$tmp/err")"

# A checksum asks for the bytes to be hashed: imported, not cloned.
newconf
create_disk "$id_raw" --checksum "sha256:$(sha256sum "$img/a.raw" | cut -c1-64)"
if [[ $rc -eq 0 && -z "$p" ]] && reads_back "${u}_disk" "$img/a.raw"; then
	ok "with --checksum the raw image is imported (hashed), not cloned"
else
	bad "with --checksum: exit $rc, parent '$p': $(tail -n 2 "$tmp/err")"
fi
vm remove "$u" disk >/dev/null 2>&1

# A qcow2 image is never cloned: its RBD image holds qcow2 bytes.
newconf
create_disk "$id_qcow2"
if [[ $rc -eq 0 && -z "$p" && $(entries) -eq 1 ]] && reads_back "${u}_disk" "$img/a.raw"; then
	ok "qcow2 glance image imported (no parent) and reads back the raw content"
else
	bad "qcow2 glance image: exit $rc, parent '$p', $(entries) entries: $(tail -n 2 "$tmp/err")"
fi
vm remove "$u" disk >/dev/null 2>&1

# Locations from Glance's database are untrusted.
other=$(new_uuid)
set_location "$id_fsid" "rbd://$other/images/$id_fsid/snap" ||
	bad "could not change the location of $id_fsid"
newconf
create_disk "$id_fsid"
if [[ $rc -eq 0 && -z "$p" ]] && reads_back "${u}_disk" "$img/a.raw" &&
	grep -q 'importing the image instead' "$tmp/err"; then
	ok "location in another cluster: imported instead (rbd_clone_fallback_import)"
else
	bad "other fsid with fallback: exit $rc, parent '$p': $(tail -n 2 "$tmp/err")"
fi
vm remove "$u" disk >/dev/null 2>&1
newconf "log_target = none" "rbd_clone_fallback_import = false"
u=$(new_uuid)
fails_cleanly "location in another cluster, no fallback: refused" \
	'location is in another cluster' -q create "$u" disk --image "glance://$id_fsid"

# Two locations (show_multiple_locations), the first (and direct_url) in
# another cluster: the second, in ours, is cloned.
id_multi=$(glance_upload multi raw "$img/a.raw") || bad "upload raw (two locations)"
"$py" - "$S/glance.sqlite" "$id_multi" "rbd://$other/images/$id_multi/snap" <<'EOF2' ||
import sqlite3, sys
db, image, foreign = sys.argv[1:4]
c = sqlite3.connect(db)
cols = [r[1] for r in c.execute("PRAGMA table_info(image_locations)") if r[1] != "id"]
row = c.execute("SELECT %s FROM image_locations WHERE image_id = ? AND deleted = 0"
                % ", ".join(cols), (image,)).fetchone()
c.execute("UPDATE image_locations SET value = ? WHERE image_id = ? AND deleted = 0",
          (foreign, image))
c.execute("INSERT INTO image_locations (%s) VALUES (%s)"
          % (", ".join(cols), ", ".join("?" * len(cols))), row)
c.commit()
EOF2
	bad "could not add a second location to $id_multi"
newconf
create_disk "$id_multi"
if [[ $rc -eq 0 && "$p" == "images/$id_multi@snap" ]] &&
	grep -q 'trying the next one' "$tmp/err" && [[ $(entries) -eq 0 ]]; then
	ok "first location in another cluster, second in ours: cloned from the second ($p)"
else
	bad "two locations: exit $rc, parent '$p': $(tail -n 2 "$tmp/err")"
fi
vm remove "$u" disk >/dev/null 2>&1

for evil in "rbd://$fsid/images/../$id_evil/snap" "rbd://$fsid/images/$id_evil/snap/x" \
	"rbd://$fsid/images/$id_evil" "rbd://$fsid/vms%2f../$id_evil/snap"; do
	set_location "$id_evil" "$evil" || { bad "could not set location $evil"; continue; }
	newconf "log_target = none"
	u=$(new_uuid)
	fails_cleanly "malformed location ${evil#rbd://$fsid/} refused" \
		'malformed location' -q create "$u" disk --image "glance://$id_evil"
done

left=$("${R[@]}" ls vms 2>/dev/null | wc -l)
if [[ $left -eq 0 ]]; then
	ok "pool vms is empty again"
else
	bad "pool vms still holds $left images"
fi
finish
