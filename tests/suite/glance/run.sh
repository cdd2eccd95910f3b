#!/usr/bin/env bash
# The glance image source against a real Glance on 127.0.0.1.
#
#   tests/suite/glance/run.sh [BUILD_DIR]
#
# Debian's glance-api (python3-glance, installed here when missing and we are
# root) runs standalone as in ../shared/recipes/glance-barbican.md: no
# Keystone (every request is admin), sqlite, a file store, all in a
# temporary folder. The test uploads images through the API and fetches
# them with `vmdisk fetch glance://ID` / `vmdisk create --image glance://ID`:
# raw and qcow2, a disk format outside allowed_disk_formats, an image not
# active, hashes tampered with in Glance's database (os_hash_value, and the
# md5 checksum when os_hash_algo is one we do not know), the token file's
# mode, a dead first server in glance_api_servers. The token never shows in
# our output or in anything left in the cache.
#
# Last line "N passed, N failed"; exit 77 only when Glance cannot be
# installed or started.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=glance
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
# shellcheck source=tests/suite/glance/glance.sh
. "$root/tests/suite/glance/glance.sh"
suite_build "${1:-}"
need_cli
need_python glance.cmd.api python3-glance

suite_tmp
S=$tmp/glance
port=$(free_port)
dead_port=$(free_port)
mkdir -p "$S"/images
glance_start "$port" file:file file "[file]
filesystem_store_datadir = $S/images"
say "Glance on $api"
conf_lines=("glance_api_servers = $api")

# db_set ID COLUMN VALUE: change Glance's record behind its back
db_set() {
	"$py" - "$S/glance.sqlite" "$@" <<'EOF'
import sqlite3, sys
db, image, column, value = sys.argv[1:5]
assert column in ('os_hash_value', 'os_hash_algo', 'checksum')
c = sqlite3.connect(db)
c.execute('UPDATE images SET %s = ? WHERE id = ?' % column, (value, image))
c.commit()
EOF
}

img=$tmp/img
mkdir -p "$img"
random_image "$img/a.raw" 512K 2M
qemu-img convert -q -f raw -O qcow2 "$img/a.raw" "$img/a.qcow2"
cp "$img/a.raw" "$img/b.raw"
head -c 4K /dev/urandom | dd of="$img/b.raw" conv=notrunc status=none
cp "$img/a.raw" "$img/c.raw"
head -c 4K /dev/urandom | dd of="$img/c.raw" conv=notrunc status=none

id_raw=$(glance_upload raw raw "$img/a.raw") || bad "upload raw"
id_qcow2=$(glance_upload qcow2 qcow2 "$img/a.qcow2") || bad "upload qcow2"
id_vhd=$(glance_upload vhd vhd "$img/a.raw") || bad "upload vhd"
id_queued=$(glance_upload queued raw "") || bad "create an image without data"
id_tamper=$(glance_upload tampered raw "$img/b.raw") || bad "upload tampered"
id_md5=$(glance_upload md5 raw "$img/c.raw") || bad "upload md5"
id_liar=$(glance_upload liar raw "$img/a.qcow2") || bad "upload qcow2 declared raw"
id_liar2=$(glance_upload liar2 qcow2 "$img/a.raw") || bad "upload raw declared qcow2"
((failed == 0)) || finish

secret_file "$tmp/token" vmdisk-test-token-
# same_as FILE: the single entry of $inst holds what FILE holds
same_as() {
	[[ $(entries) -eq 1 ]] &&
		cmp -s "$1" "$(find "$inst/_base" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}')"
}

newconf "glance_token_file = $tmp/token" "log_target = stderr" "log_level = debug"
vm fetch "glance://$id_raw"
rc=$?
check "raw image fetched, sha512 verified (token from a 0600 file)" \
	eval '[[ $rc -eq 0 ]] && same_as "$img/a.raw" && grep -q sha512 "$inst"/_base/.*.json'
check "the token is not in the debug log" eval '! grep -qF "$token" "$tmp/err"'

newconf
VMDISK_GLANCE_TOKEN=$token vm fetch "glance://$id_qcow2"
rc=$?
check "qcow2 image fetched (token from the environment), stored raw" \
	eval '[[ $rc -eq 0 ]] && same_as "$img/a.raw"'

newconf
uuid=$(new_uuid)
VMDISK_GLANCE_TOKEN=$token vm create "$uuid" disk --image "glance://$id_raw"
rc=$?
check "create from glance://ID: the disk passes qemu-img check" \
	eval '[[ $rc -eq 0 ]] && qemu-img check -q "$inst/$uuid/disk" && qemu-img compare -q -F raw "$inst/$uuid/disk" "$img/a.raw"'

newconf
VMDISK_GLANCE_TOKEN=$token vm fetch "glance://$id_raw" \
	--checksum "sha256:$(sha256sum "$img/a.raw" | cut -c1-64)"
rc=$?
check "--checksum sha256 of an image Glance hashes with sha512: both checked" \
	eval '[[ $rc -eq 0 ]] && same_as "$img/a.raw"'

newconf
fails_cleanly "disk format outside allowed_disk_formats" \
	'disk format vhd not allowed' fetch "glance://$id_vhd"
newconf
fails_cleanly "a qcow2 declared raw is refused" 'image is qcow2 but its source declares raw' \
	fetch "glance://$id_liar"
newconf
fails_cleanly "a raw image declared qcow2 is refused" 'image is raw but its source declares qcow2' \
	fetch "glance://$id_liar2"
newconf
fails_cleanly "image not active" 'not active' fetch "glance://$id_queued"
newconf
fails_cleanly "image not found" 'not found' \
	fetch "glance://$(new_uuid)"
newconf
fails_cleanly "not a glance://UUID" 'glance://UUID' fetch "glance://../../etc"

db_set "$id_tamper" os_hash_value "$(sha512sum "$img/a.raw" | cut -c1-128)"
newconf
VMDISK_GLANCE_TOKEN=$token fails_cleanly "os_hash_value tampered: refused" \
	'sha512 checksum mismatch' fetch "glance://$id_tamper"
# The same with the debug log, which must not show the token either.
newconf "log_target = stderr" "log_level = debug"
VMDISK_GLANCE_TOKEN=$token vm fetch "glance://$id_tamper"
check "the token is not in the log of a failed fetch" eval '! grep -qF "$token" "$tmp/err"'
check "the token is not in the cache's records" eval '! grep -rqF "$token" "$inst"'
check "the token is not in Glance's log (never in a URL)" eval '! grep -qF "$token" "$S/log"'

db_set "$id_md5" os_hash_algo "whirlpool"
newconf
vm fetch "glance://$id_md5"
rc=$?
check "unknown os_hash_algo: the md5 checksum is checked instead (ok)" \
	eval '[[ $rc -eq 0 ]] && same_as "$img/c.raw"'
db_set "$id_md5" checksum "$(md5sum "$img/a.raw" | cut -c1-32)"
newconf
fails_cleanly "unknown os_hash_algo, md5 checksum tampered" 'md5 checksum mismatch' \
	fetch "glance://$id_md5"

newconf "glance_token_file = $tmp/token"
chmod 644 "$tmp/token"
fails_cleanly "token file readable by others refused" 'mode 0600' fetch "glance://$id_raw"
chmod 600 "$tmp/token"

newconf
sed -i "s|^glance_api_servers = .*|glance_api_servers = http://127.0.0.1:$dead_port, $api|" "$conf"
vm fetch "glance://$id_raw"
rc=$?
check "first of glance_api_servers down: the second answers" \
	eval '[[ $rc -eq 0 ]] && same_as "$img/a.raw"'

newconf "max_image_download_size = 1M"
fails_cleanly "image record larger than max_image_download_size" \
	'max_image_download_size' fetch "glance://$id_raw"

# Glance here takes any request; a stand-in that answers 401 shows what we
# send: the token in X-Auth-Token, and nothing of it in the URL.
"$py" - "$tmp/seen" "$tmp/fake.port" <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        with open(sys.argv[1], 'a') as f:
            f.write('%s %s\n' % (self.path, self.headers.get('X-Auth-Token')))
        self.send_response(401)
        self.send_header('Content-Length', '0')
        self.end_headers()
s = HTTPServer(('127.0.0.1', 0), H)
s.timeout = 20  # handle_request gives up: the test never hangs
open(sys.argv[2], 'w').write(str(s.server_address[1]))
s.handle_request()
EOF
fake_pid=$!
wait_file "$tmp/fake.port"
newconf "glance_token_file = $tmp/token"
sed -i "s|^glance_api_servers = .*|glance_api_servers = http://127.0.0.1:$(cat "$tmp/fake.port")/|" "$conf"
fails_cleanly "HTTP 401 from the image record" 'HTTP 401' fetch "glance://$id_raw"
wait "$fake_pid"
check "the token travels in X-Auth-Token only" \
	test "$(cat "$tmp/seen" 2>/dev/null)" = "/v2/images/$id_raw $token"

newconf
sed -i "/^glance_api_servers/d" "$conf"
fails_cleanly "no glance_api_servers" 'glance_api_servers' fetch "glance://$id_raw"

finish
