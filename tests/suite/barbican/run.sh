#!/usr/bin/env bash
# The barbican key provider (lib/keys.c) against a real Barbican on 127.0.0.1.
#
#   tests/suite/barbican/run.sh [BUILD_DIR]
#
# Debian's Barbican (python3-barbican, installed here when missing and we
# are root) runs standalone as in ../shared/recipes/glance-barbican.md: no
# Keystone (unauthenticated context, X-Project-Id), sqlite, the simple
# crypto plugin, served by wsgiref from a tiny launcher, all in a temporary
# folder. A secret is stored through the API and fetched with
# build/tests/unit/key_fetch (the product's provider): the bytes match; an
# unknown id is a 404 error; a secret whose ciphertext was damaged in
# Barbican's database is a 500 error; a token file of mode 0644 is refused;
# a dead endpoint and one that never answers (a timeout) are errors. The
# key, its id and the token never appear in any output or log line.
#
# Last line "N passed, N failed"; exit 77 only when Barbican cannot be
# installed or started.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=barbican
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${1:-}"
fetch=$build/tests/unit/key_fetch
[[ -x "$fetch" ]] || fail_suite "no $fetch (build first)"
need_python barbican.api.app python3-barbican

suite_tmp
S=$tmp/barbican
mkdir -p "$S"
port=$(free_port)
dead_port=$(free_port)
base=http://127.0.0.1:$port

cat >"$S/barbican.conf" <<EOF
[DEFAULT]
host_href = $base
sql_connection = sqlite:///$S/barbican.sqlite
use_stderr = true
[queue]
enable = false
[secretstore]
namespace = barbican.secretstore.plugin
enabled_secretstore_plugins = store_crypto
[crypto]
namespace = barbican.crypto.plugin
enabled_crypto_plugins = simple_crypto
[simple_crypto_plugin]
kek = $(head -c 32 /dev/urandom | base64)
EOF
cat >"$S/paste.ini" <<EOF
[composite:main]
use = egg:Paste#urlmap
/: versionapp
/v1: barbican_api
/healthcheck: healthcheck
[pipeline:barbican_api]
pipeline = unauthenticated-context microversion apiapp
[app:apiapp]
paste.app_factory = barbican.api.app:create_main_app
[app:versionapp]
paste.app_factory = barbican.api.app:create_version_app
[filter:unauthenticated-context]
paste.filter_factory = barbican.api.middleware.context:UnauthenticatedContextMiddleware.factory
[filter:microversion]
paste.filter_factory = barbican.api.middleware.microversion:MicroversionMiddleware.factory
$(paste_healthcheck app app_factory)
EOF
# Barbican reads its config at import time from fixed places: parse ours
# explicitly, then serve the paste app (one request at a time, HTTP/1.0).
cat >"$S/launch.py" <<'EOF'
import sys
from barbican.common import config
conf_path, paste_path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
config.parse_args(config.CONF, args=['--config-file', conf_path],
                  default_config_files=[])
from paste import deploy
from wsgiref.simple_server import make_server, WSGIRequestHandler
app = deploy.loadapp('config:' + paste_path)
class Handler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write('request: %s\n' % (fmt % args))
make_server('127.0.0.1', port, app, handler_class=Handler).serve_forever()
EOF

service_db barbican-manage "$S/db.log" \
	"$py" -c 'import sys; from barbican.cmd.barbican_manage import main; sys.argv[0] = "barbican-manage"; sys.exit(main())' \
	--config-file "$S/barbican.conf" db upgrade -d "sqlite:///$S/barbican.sqlite"

start=$(date +%s)
start_service Barbican "$base/healthcheck" "$S/barbican.log" \
	"$py" "$S/launch.py" "$S/barbican.conf" "$S/paste.ini" "$port"
say "Barbican up on 127.0.0.1:$port in $(($(date +%s) - start)) s"

project=vmdisk-test
planted="PLANTED-BARBICAN-KEY-$(random_hex 12)"
printf '%s' "$planted" >"$tmp/expected"
secret_file "$tmp/token" TOKEN-

store() { # PAYLOAD -> secret id on stdout
	curl -s -X POST -H "X-Project-Id: $project" -H 'Content-Type: application/json' \
		"$base/v1/secrets" -d "{\"payload\":\"$(printf '%s' "$1" | base64 -w0)\",
		\"payload_content_type\":\"application/octet-stream\",
		\"payload_content_encoding\":\"base64\",\"algorithm\":\"aes\",
		\"bit_length\":256,\"secret_type\":\"symmetric\"}" |
		sed -n 's|.*"secret_ref": *"[^"]*/v1/secrets/\([0-9a-f-]*\)".*|\1|p'
}
id=$(store "$planted")
[[ "$id" =~ ^[0-9a-f-]{36}$ ]] || { tail -n 30 "$S/barbican.log"; skip "storing a secret in Barbican failed"; }
broken_id=$(store "another-secret-0123456789abcdef")

conf() { # ENDPOINT TOKEN_FILE
	cat <<EOF
[vmdisk]
log_target = stderr
log_level = debug
key_manager = barbican
barbican_endpoint = $1
barbican_token_file = $2
barbican_project_id = $project
EOF
}
conf "$base" "$tmp/token" >"$tmp/good.conf"
conf "http://127.0.0.1:$dead_port" "$tmp/token" >"$tmp/dead.conf"
cp "$tmp/token" "$tmp/token-0644"
chmod 644 "$tmp/token-0644"
conf "$base" "$tmp/token-0644" >"$tmp/mode.conf"

all_logs=$tmp/all.log
: >"$all_logs"
# run NAME CONF ID [EXPECTED]: key_fetch's output in $out, its status in $rc
run() {
	local name=$1
	shift
	out=$("$fetch" "$@" 2>"$tmp/$name.err")
	rc=$?
	{ printf '%s\n' "$out"; cat "$tmp/$name.err"; } >>"$all_logs"
}

run good "$tmp/good.conf" "$id" "$tmp/expected"
if [[ $rc == 0 && "$out" == *"ok ${#planted} bytes"* && "$out" == *matches* ]]; then
	ok "fetch a stored secret: the bytes match"
else
	bad "fetch a stored secret: rc $rc, '$out'"
fi
grep -q 'the key is \*\*\*' "$tmp/good.err" &&
	ok "the key printed on purpose is redacted" ||
	bad "the key printed on purpose is not redacted"

unknown=$(new_uuid)
run unknown "$tmp/good.conf" "$unknown"
if [[ $rc == 1 && "$out" == "error: keys: barbican: secret not found" ]]; then
	ok "unknown id: 404 is an error"
else
	bad "unknown id: rc $rc, '$out'"
fi
grep -q "$unknown" "$all_logs" && bad "the unknown key id shows in the log" ||
	ok "the unknown key id is in no log line"

# Damage the stored ciphertext: Barbican answers 500.
"$py" - "$S/barbican.sqlite" "$broken_id" <<'EOF'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("update encrypted_data set cypher_text = 'Z2FyYmFnZQ==' "
          "where secret_id = ?", (sys.argv[2],))
c.commit()
EOF
run broken "$tmp/good.conf" "$broken_id"
if [[ $rc == 1 && "$out" == "error: keys: barbican: "* && "$out" != *"not found"* ]] &&
	grep -q 'HTTP 500' "$tmp/broken.err"; then
	ok "Barbican answering 500 is an error ($out)"
else
	bad "Barbican answering 500: rc $rc, '$out'"
fi

run mode "$tmp/mode.conf" "$id"
if [[ $rc == 1 && "$out" == *"token file"*"0600"* ]]; then
	ok "token file of mode 0644 refused"
else
	bad "token file of mode 0644: rc $rc, '$out'"
fi

run dead "$tmp/dead.conf" "$id"
if [[ $rc == 1 && "$out" == "error: keys: barbican"* ]]; then
	ok "dead endpoint is an error ($out)"
else
	bad "dead endpoint: rc $rc, '$out'"
fi

# A server that takes the connection and never answers: a timeout.
silent_port=$(free_port)
setsid "$py" -c 'import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
sys.stdout.write("ready\n")
sys.stdout.flush()
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)' "$silent_port" >"$tmp/silent.out" 2>&1 </dev/null &
silent_pid=$!
on_exit "kill -KILL $silent_pid 2>/dev/null"
wait_file "$tmp/silent.out"
{ conf "http://127.0.0.1:$silent_port" "$tmp/token"
	echo "http_connect_timeout = 2"
	echo "http_low_speed_time = 2"; } >"$tmp/silent.conf"
t0=$(date +%s)
run silent "$tmp/silent.conf" "$id"
kill -TERM "$silent_pid" 2>/dev/null
if [[ $rc == 1 && "$out" == "error: keys: barbican"* ]] && (($(date +%s) - t0 < 30)); then
	ok "a Barbican that never answers is an error ($out)"
else
	bad "silent server: rc $rc, '$out'"
fi

# The same failures through an encrypted LV create, in the test VM
# (tests/suite/vm/run.sh runs only test_lvm's Barbican cases when given a port):
# the stored secret makes a disk, 404 and 500 make nothing, and the guest
# checks its whole log for the key and the ids.
vm_out=$(VMDISK_VM_BARBICAN_PORT=$port VMDISK_VM_BARBICAN_PROJECT=$project \
	VMDISK_VM_BARBICAN_TOKEN=$token VMDISK_VM_KEY_GOOD=$id \
	VMDISK_VM_KEY_BROKEN=$broken_id VMDISK_VM_PLANTED=$planted \
	bash "$root/tests/suite/vm/run.sh" "$build" 2>&1)
vm_rc=$?
printf '%s\n' "$vm_out" >>"$all_logs"
printf '%s\n' "$vm_out" | grep -E '^vm: ' | sed 's/^/  /'
vm_summary=$(printf '%s\n' "$vm_out" | tail -n 1)
if ((vm_rc == 77)); then
	say "test VM skipped: $(printf '%s\n' "$vm_out" | grep 'skipped' | head -n 1)"
elif ((vm_rc == 0)) && [[ "$vm_summary" =~ ^[1-9][0-9]*\ passed,\ 0\ failed ]]; then
	ok "encrypted LV create in the test VM with Barbican keys: stored, 404, 500 ($vm_summary)"
else
	bad "encrypted LV create in the test VM with Barbican keys: rc $vm_rc, $vm_summary"
fi

leaks=
grep -q -- "$planted" "$all_logs" && leaks+=" key"
grep -q -- "$token" "$all_logs" && leaks+=" token"
grep -q -- "$id" "$all_logs" && leaks+=" key-id"
grep -q -- "$broken_id" "$all_logs" && leaks+=" broken-key-id"
if [[ -z "$leaks" ]]; then
	ok "key, token and key ids in no output or log line ($(wc -l <"$all_logs") lines)"
else
	bad "leaked into our output or logs:$leaks"
fi

finish
