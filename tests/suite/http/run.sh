#!/usr/bin/env bash
# The http and https image sources against a real nginx on 127.0.0.1.
#
#   tests/suite/http/run.sh [BUILD_DIR]
#
# nginx (Debian's nginx-light) runs with its own config, pid, logs and temp
# paths in a temporary folder: a plain listener, a TLS listener whose
# certificate is signed by a CA this script makes with openssl, a slow
# location (limit_rate) for the 32-process test, redirects, and a proxy to
# tests/suite/http/origin.py, a small Python origin that drops the connection half
# way (resume), ignores Range, lies about Content-Length or resets. The
# access log records the Range header of every request.
#
# Each case runs the CLI (`vmdisk fetch` or `vmdisk create`) with its own
# configuration and checks the exit status, that a failure is one line on
# stderr, and what the cache holds afterwards.
#
# Last line "N passed, N failed"; exit 77 only when nginx cannot start.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
here=$root/tests/suite/http
t_name=http
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
# shellcheck source=tests/suite/http/nginx.sh
. "$here/nginx.sh"
suite_build "${1:-}"
need_cli

suite_tmp
on_exit 'nginx_stop "$tmp/nginx"'

www=$tmp/www
mkdir -p "$www" "$tmp/nginx" "$tmp/tls"
# nginx's workers run as nobody: they must reach the images.
chmod 755 "$tmp" "$www"

# ---- images ----
# 4 MiB raw with data at both ends (holes in between stay holes).
random_image "$www/img.raw" 1M 3M
head -c 1M /dev/urandom >>"$www/img.raw"
cp "$www/img.raw" "$www/big.raw"
head -c 64K /dev/urandom | dd of="$www/big.raw" conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$www/img.raw" "$www/img.qcow2"
sha_img=$(sha256sum "$www/img.raw" | cut -c1-64)
sha_big=$(sha256sum "$www/big.raw" | cut -c1-64)

# ---- a CA and a server certificate for 127.0.0.1 ----
tls=$tmp/tls
if ! {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=vmdisk test CA" \
		-keyout "$tls/ca.key" -out "$tls/ca.pem" &&
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 \
			-subj "/CN=vmdisk other CA" -keyout "$tls/other-ca.key" \
			-out "$tls/other-ca.pem" &&
		openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
			-keyout "$tls/server.key" -out "$tls/server.csr" &&
		printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$tls/ext" &&
		openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" \
			-CAkey "$tls/ca.key" -CAcreateserial -days 2 -extfile "$tls/ext" \
			-out "$tls/server.pem"
} >"$tls/openssl.log" 2>&1; then
	fail_suite "openssl could not make the test CA: $(tail -n 2 "$tls/openssl.log")"
fi

# ---- the origin and nginx ----
"$py" "$here/origin.py" "$www" "$tmp/origin.port" \
	</dev/null >"$tmp/origin.log" 2>&1 &
on_exit "stop_pid $!"
if ! wait_file "$tmp/origin.port"; then
	fail_suite "the Python origin did not start: $(tail -n 3 "$tmp/origin.log")"
fi
oport=$(cat "$tmp/origin.port")
hport=$(free_port)
sport=$(free_port)
while [[ "$sport" == "$hport" ]]; do sport=$(free_port); done

if ! why=$(nginx_start "$tmp/nginx" "
  server {
    listen 127.0.0.1:$hport;
    root $www;
    location /slow/ { alias $www/; limit_rate 2m; }
    location /medium/ { alias $www/; limit_rate 8m; }
    location = /to-https { return 302 https://127.0.0.1:$sport/img.raw; }
    location = /same { return 302 /img.raw; }
    location = /loop { return 302 /loop; }
    location /drop/ { proxy_pass http://127.0.0.1:$oport; proxy_buffering off; }
    location /norange/ { proxy_pass http://127.0.0.1:$oport; proxy_buffering off; }
  }
  server {
    listen 127.0.0.1:$sport ssl;
    ssl_certificate $tls/server.pem;
    ssl_certificate_key $tls/server.key;
    root $www;
    location = /to-http { return 302 http://127.0.0.1:$hport/img.raw; }
  }"); then
	skip "$why"
fi
say "nginx on 127.0.0.1:$hport (http) and :$sport (https), origin on :$oport"
http=http://127.0.0.1:$hport
https=https://127.0.0.1:$sport
origin=http://127.0.0.1:$oport
alog=$tmp/nginx/access.log

# ---- helpers ----
conf_lines=("http_low_speed_time = 5" "http_connect_timeout = 5")
# fetches NAME URL SHA256 ARGS...: fetch with --checksum (of the bytes
# served), one entry, whose sha256 is $expect_sha when set (an entry stored
# raw from a qcow2 download), else SHA256
fetches() {
	local name=$1 url=$2 sha=$3 path
	shift 3
	if ! vm --json fetch "$url" --checksum "sha256:$sha" "$@"; then
		bad "$name: exit $?: $(head -c 300 "$tmp/err")"
		return
	fi
	path=$("$py" -c 'import json,sys; print(json.load(sys.stdin)["path"])' <"$tmp/out")
	if [[ $(entries) -ne 1 ]]; then
		bad "$name: $(entries) entries"
	elif [[ "$(sha256sum "$path" | cut -c1-64)" != "${expect_sha:-$sha}" ]]; then
		bad "$name: the entry differs from the image"
	else
		ok "$name"
	fi
}

# ---- cases ----
newconf
fetches "fetch over http, checksum verified" "$http/img.raw" "$sha_img"
qemu-img compare -q -f raw -F raw "$www/img.raw" "$inst"/_base/[0-9a-f]*[0-9a-f] ||
	bad "fetched entry differs (qemu-img compare)"

# Issue 14, defect 12: a signed URL (an S3 pre-signed one carries its
# signature in the query) is logged and recorded without its query.
sig=vmdisk-test-signature-$(random_hex 8)
newconf "log_target = stderr" "log_level = debug"
fetches "a signed URL" \
	"$http/img.raw?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=$sig" "$sha_img"
if grep -qF "$sig" "$tmp/err"; then bad "the signature is in the log"
else ok "the signature is not in the log"; fi
if grep -rqF "$sig" "$inst"; then bad "the signature is in the cache's files"
else ok "the signature is not in the cache's files"; fi
check "the log names the URL without its query" \
	grep -qF "cache: fetched $http/img.raw as " "$tmp/err"
check "the record names the URL without its query" \
	grep -qE "\"source\": *\"$http/img.raw\"" "$inst"/_base/.*.json

newconf
expect_sha=$sha_img fetches "a qcow2 image over http (stored raw)" \
	"$http/img.qcow2" "$(sha256sum "$www/img.qcow2" | cut -c1-64)"

newconf
fails_cleanly "wrong checksum" 'sha256 checksum mismatch' \
	fetch "$http/img.raw" --checksum "sha256:$(printf '%064d' 0)"
newconf
vm fetch "$http/img.raw" --checksum "sha256:$(printf '%064d' 0)"
vm fetch "$http/img.raw" --checksum "sha256:$sha_img"
check "after a refused fetch the next one succeeds" test $? -eq 0 -a "$(entries)" -eq 1

newconf "max_image_download_size = 1M"
fails_cleanly "download larger than max_image_download_size" \
	'max_image_download_size|too large|limit' fetch "$http/img.raw"
newconf "max_image_download_size = 4M"
fetches "download of exactly max_image_download_size" "$http/img.raw" "$sha_img"

newconf "max_image_download_size = 1M"
fails_cleanly "oversize through create" 'max_image_download_size|too large|limit' \
	create "$(new_uuid)" disk --image "$http/img.raw"

newconf
fails_cleanly "TLS: unknown CA without ca_file" 'TLS' fetch "$https/img.raw"
newconf "ca_file = $tls/ca.pem"
fetches "TLS: with ca_file" "$https/img.raw" "$sha_img"
newconf "ca_file = $tls/other-ca.pem"
fails_cleanly "TLS: ca_file of another CA" 'TLS' fetch "$https/img.raw"

newconf
fails_cleanly "redirect http -> https refused" 'redirect to another scheme' \
	fetch "$http/to-https"
newconf "ca_file = $tls/ca.pem"
fails_cleanly "redirect https -> http refused" 'redirect to another scheme' \
	fetch "$https/to-http"
newconf
fetches "redirect within http followed" "$http/same" "$sha_img"
newconf
fails_cleanly "redirect loop stopped" 'too many redirects' fetch "$http/loop"
newconf "http_max_redirects = 0"
fails_cleanly "http_max_redirects = 0" 'too many redirects' fetch "$http/same"

newconf
fails_cleanly "HTTP 404" 'HTTP 404' fetch "$http/nothing.raw"

newconf
fails_cleanly "connection reset (every attempt)" 'connection lost|incomplete|closed' \
	fetch "$origin/reset/img.raw"

newconf "http_retries = 0"
fails_cleanly "Content-Length larger than the body" \
	'disagree with Content-Length|fewer bytes than Content-Length' \
	fetch "$origin/lie/img.raw"
newconf
fails_cleanly "Content-Length larger than the body, resumed" \
	'HTTP 416|incomplete|Content-Length' fetch "$origin/lie/img.raw"

newconf "http_retries = 0"
fails_cleanly "dropped half way, no retries" 'incomplete|Content-Length' \
	fetch "$http/drop/big.raw"
newconf
fetches "dropped half way, resumed" "$http/norange/img.raw" "$sha_img"
grep -q "^GET /norange/img.raw 200 .* range=\"bytes=" "$alog" ||
	bad "resume against a server that ignores Range: no Range request logged"
newconf
# /drop/big.raw was dropped once above: a fresh name for this case
cp "$www/img.raw" "$www/drop2.raw"
fetches "dropped half way, resumed with a Range request" "$http/drop/drop2.raw" "$sha_img"
if grep -q '^GET /drop/drop2.raw 206 [0-9]* range="bytes=2097152-"' "$alog" &&
	grep -q '^GET /drop/drop2.raw 200 [0-9]* range="-"' "$alog"; then
	ok "nginx log: one GET cut at half, then Range: bytes=2097152-"
else
	bad "nginx log shows no resume: $(grep drop2 "$alog" | tr '\n' ';')"
fi

# ---- SIGKILL during a download ----
# The fetching process killed at random points (about 0.5 s of download at
# 8 MiB/s): never an entry unless complete and right, and the next fetch
# succeeds.
newconf
kills=20
cut=0
wrong=0
for ((i = 0; i < kills; i++)); do
	"$cli" --config "$conf" fetch "$http/medium/big.raw" >/dev/null 2>&1 &
	pid=$!
	sleep "0.$(printf '%03d' $((RANDOM % 600)))"
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	if [[ $(entries) -eq 0 ]]; then
		cut=$((cut + 1))
	elif [[ "$(sha256sum "$inst"/_base/[0-9a-f]*[0-9a-f] | cut -c1-64)" != "$sha_big" ]]; then
		wrong=$((wrong + 1))
	fi
	# Start the next trial from an empty cache again.
	find "$inst/_base" -maxdepth 1 -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{40}' -delete 2>/dev/null
done
check "$kills SIGKILLs during a download ($cut cut short): no partial entry" \
	test "$wrong" -eq 0 -a "$(temporaries)" -eq 0
fetches "after the SIGKILLs the next fetch succeeds" "$http/medium/big.raw" "$sha_big"

# ---- 32 processes, one download ----
newconf
url=$http/slow/big.raw
pids=()
uuids=()
for ((i = 0; i < 32; i++)); do
	uuids+=("$(new_uuid)")
done
for ((i = 0; i < 32; i++)); do
	"$cli" --config "$conf" create "${uuids[$i]}" disk --image "$url" \
		--checksum "sha256:$sha_big" >"$tmp/c$i.out" 2>"$tmp/c$i.err" &
	pids+=($!)
done
fails=0
for ((i = 0; i < 32; i++)); do
	wait "${pids[$i]}" || { fails=$((fails + 1)); say "create $i: $(cat "$tmp/c$i.err")"; }
done
check "32 concurrent creates all succeed" test "$fails" -eq 0
gets=$(grep -c '^GET /slow/big.raw 200 ' "$alog")
others=$(grep '^GET /slow/big.raw ' "$alog" | grep -vc '^GET /slow/big.raw 200 ')
check "32 concurrent creates: nginx served exactly one full GET ($gets, $others other)" \
	test "$gets" -eq 1 -a "$others" -eq 0
bad_disks=0
for ((i = 0; i < 32; i++)); do
	d=$inst/${uuids[$i]}/disk
	if ! qemu-img check -q "$d" >/dev/null 2>&1 ||
		! qemu-img compare -q -F raw "$d" "$www/big.raw" >/dev/null 2>&1; then
		bad_disks=$((bad_disks + 1))
	fi
done
check "32 disks pass qemu-img check and read as the image" test "$bad_disks" -eq 0
check "the cache holds one entry" test "$(entries)" -eq 1 -a "$(temporaries)" -eq 0

finish
