# shellcheck shell=bash disable=SC2154
# What the script suites (tests/suite/*/run.sh) share; sourced after setting
# t_name (the prefix of say's lines). Defines functions and their variables
# only (it starts nothing), so bench/ may source it for free_port and
# wait_port too.
#
# Counting
#   ok/bad/check NAME...   count a case
#   finish                 print "$passed passed, $failed failed" (the last
#                          line scripts/test.sh reads) and exit 0 when
#                          nothing failed, else 1
#   fail_suite REASON      print it and "0 passed, 1 failed", exit 1: for a
#                          suite that cannot start its own parts
#   skip REASON            print it and "0 passed, 0 failed, 1 skipped",
#                          exit 77: only for a part that cannot run here
#   need_python MODULE PKG install PKG with apt-get (as root) when MODULE
#                          does not import, else skip
#   py_asan_setup [LIB...] when $build's Python module links libasan:
#                          preload it (then LIB...) into this Python only
#                          (tmp must exist; sets LD_PRELOAD, PYTHONPATH)
#   pytest_cases JUNIT LOG [bad]  one case line per test of pytest's JUnit
#                          XML (a skipped test is said, or counted bad with
#                          "bad"); no XML: the suite fails with LOG's tail
#
# Set-up
#   suite_build [DIR]      build (DIR, else $VMDISK_BUILD_DIR, else
#                          $root/build; made absolute) and cli
#                          ($VMDISK_CLI, else the build's vmdisk)
#   need_cli               one failure and exit when $cli is not there
#   suite_tmp [PARENT]     tmp: a new folder (in PARENT, default $TMPDIR or
#                          /tmp), removed at exit after the commands given
#                          to on_exit; TERM and INT exit through it too
#   on_exit 'COMMAND'      evaluated at exit, the last one given first
#   random_hex BYTES       that many random bytes in hex
#   new_uuid               a random UUID
#   secret_file FILE PREFIX  token: PREFIX and random hex, written to FILE
#                          (mode 0600), as a Keystone-less service's
#                          X-Auth-Token
#   random_image FILE DATA SIZE  DATA bytes of random data, then a hole up
#                          to SIZE (sizes as head -c / truncate take them)
#
# Services on 127.0.0.1
#   free_port              an unused TCP port
#   pid_running PID        alive and not a zombie (PID 1 on these machines
#                          does not reap orphans: kill -0 is not enough)
#   stop_pid PID           SIGTERM, up to 5 s, then SIGKILL
#   poll TRIES PID COMMAND...  COMMAND every 0.1 s until it succeeds (0),
#                          TRIES times or until PID (when not "") ends (1)
#   wait_http URL PID      0 once URL answers 200; 1 when PID ends first
#                          or after 30 s
#   wait_port PORT PID     0 once PORT takes a connection; 1 when PID ends
#                          first or after 10 s
#   wait_file FILE         0 once FILE is not empty; 1 after 5 s
#   start_service NAME URL LOG COMMAND...
#                          start COMMAND in its own session (output in LOG)
#                          and wait until URL answers 200: service_pid is
#                          its PID, stopped at exit; skips the suite when it
#                          does not answer
#   service_db NAME LOG COMMAND...
#                          a service's database set-up (output in LOG);
#                          skips the suite when it fails
#   paste_healthcheck KIND FACTORY
#                          the paste section of oslo's healthcheck (KIND
#                          app or filter, FACTORY its factory's name) that
#                          start_service waits for, as the services of
#                          ../shared/recipes/glance-barbican.md run
#                          without Keystone; needs S, the service's folder
#
# The vmdisk CLI, one configuration a case
#   newconf LINES...       a fresh instances folder $inst and config $conf:
#                          [DEFAULT] instances_path, the log lines of
#                          conf_log (default "log_target = none") unless
#                          LINES name a log_target, the suite's conf_lines,
#                          then LINES (a key may be given once; [DEFAULT],
#                          [libvirt] and [vmdisk] are one namespace)
#   vm ARGS...             run "$cli" --config "$conf" ARGS: stdout in
#                          $tmp/out, stderr in $tmp/err
#   entries / temporaries  how many cache entries (40 hex digits) the cache
#                          of $inst holds / how many other files, records
#                          (.ID.json, .ID.failed) aside
#   fails_cleanly NAME PATTERN ARGS...
#                          vm ARGS fails cleanly: exit status 1, exactly one
#                          line on stderr, matching PATTERN (extended regex),
#                          showing no internals (no loopback URL, no source
#                          location), and nothing left behind: left_behind
#                          prints nothing. left_behind (the suite may
#                          redefine it, calling cache_left_behind) names
#                          what a failed call left: by default entries and
#                          temporaries in the cache of $inst.
passed=0
failed=0
py=${py:-/usr/bin/python3}
say() { printf '%s: %s\n' "$t_name" "$*"; }
ok() { printf 'ok   %s\n' "$*"; passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$*"; failed=$((failed + 1)); }
check() { # check NAME COMMAND...: ok when the command succeeds
	local name=$1
	shift
	if "$@"; then ok "$name"; else bad "$name"; fi
}
finish() {
	echo "$passed passed, $failed failed"
	((failed == 0)) || exit 1
	exit 0
}
fail_suite() {
	say "$*"
	echo "0 passed, 1 failed"
	exit 1
}
skip() {
	say "skipped: $*"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
}

py_asan_setup() {
	local so asan
	so=$(compgen -G "$build/python/vmdisk/_vmdisk*.so" | head -n 1)
	asan=$(ldd "$so" | awk '/libasan\.so/ { print $3; exit }')
	[[ -n "$asan" ]] || return 0
	# libasan must come first in a Python not built with it; Python's own
	# allocations are not ours to report as leaks. ASan's crypt(3)
	# interceptor reads the NULL libxcrypt returns for a method it lacks,
	# and Python's crypt module probes its methods on import (Nova imports
	# it for password injection, which nothing here uses): under the
	# sanitizer crypt is a module without methods. The preload is for this
	# Python only: the programs it runs (qemu-img, cp) go without it.
	export LD_PRELOAD="$asan${1:+ $*}" ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
	mkdir -p "$tmp/asan-site"
	cat >"$tmp/asan-site/sitecustomize.py" <<'PY'
import os, sys, types
crypt = types.ModuleType("crypt")
crypt.methods = []
sys.modules["crypt"] = crypt
os.environ.pop("LD_PRELOAD", None)
PY
	export PYTHONPATH=$tmp/asan-site${PYTHONPATH:+:$PYTHONPATH}
}

pytest_cases() {
	local junit=$1 log=$2 on_skip=${3:-say} verdict name
	[[ -s "$junit" ]] || {
		tail -20 "$log"
		fail_suite "pytest did not run"
	}
	while read -r verdict name; do
		case $verdict in
		ok) ok "$name" ;;
		skip) if [[ $on_skip == bad ]]; then bad "skipped: $name"; else say "skipped: $name"; fi ;;
		*) bad "$name" ;;
		esac
	done < <("$py" - "$junit" <<'PY'
import sys
import xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).iter("testcase"):
    kinds = {child.tag for child in case}
    verdict = ("bad" if kinds & {"failure", "error"} else
               "skip" if "skipped" in kinds else "ok")
    print(verdict, case.get("name"))
PY
)
	((failed == 0)) || grep -E '^(E |FAILED|ERROR)' "$log" | head -40
}

need_python() {
	local module=$1 pkg=$2 apt=(apt-get install -y -q --no-install-recommends "$2")

	"$py" -c "import $module" 2>/dev/null && return 0
	if ((EUID == 0)) && command -v apt-get >/dev/null 2>&1; then
		say "installing $pkg"
		DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1 ||
			{ DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
				DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1; }
	fi
	"$py" -c "import $module" 2>/dev/null ||
		skip "$pkg is not installed and could not be (apt-get install $pkg)"
}

suite_build() {
	build=${1:-${VMDISK_BUILD_DIR:-$root/build}}
	[[ "$build" == /* ]] || build=$root/$build
	cli=${VMDISK_CLI:-$build/tools/vmdisk}
}

need_cli() {
	[[ -x "$cli" ]] || fail_suite "no CLI at $cli (build first)"
}

exit_cmds=()
on_exit() { exit_cmds+=("$1"); }
suite_exit() {
	local i
	for ((i = ${#exit_cmds[@]} - 1; i >= 0; i--)); do
		eval "${exit_cmds[i]}"
	done
	[[ -n "${tmp:-}" ]] && rm -rf "$tmp"
}
suite_tmp() {
	tmp=$(mktemp -d "${1:-${TMPDIR:-/tmp}}/vmdisk-$t_name.XXXXXX") || exit 1
	trap suite_exit EXIT
	trap 'exit 143' TERM INT # so that the EXIT trap stops the services
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
new_uuid() { cat /proc/sys/kernel/random/uuid; }
secret_file() {
	token="$2$(random_hex 16)"
	printf '%s\n' "$token" >"$1"
	chmod 600 "$1"
}
random_image() {
	head -c "$2" /dev/urandom >"$1"
	truncate -s "$3" "$1"
}

free_port() {
	"$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

pid_running() {
	[[ -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

# poll TRIES PID COMMAND...: 0 once COMMAND succeeds, tried every 0.1 s;
# 1 after TRIES tries, or as soon as PID (when not "") has ended
poll() {
	local tries=$1 pid=$2 i
	shift 2
	for ((i = 0; i < tries; i++)); do
		"$@" && return 0
		[[ -z "$pid" ]] || pid_running "$pid" || return 1
		sleep 0.1
	done
	return 1
}
pid_gone() { ! pid_running "$1"; }
http_ok() {
	[[ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" == 200 ]]
}
port_open() {
	"$py" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' \
		"$1" 2>/dev/null
}

stop_pid() {
	[[ -n "$1" ]] || return 0
	kill -TERM "$1" 2>/dev/null
	poll 50 "" pid_gone "$1" || kill -KILL "$1" 2>/dev/null
}
wait_http() { poll 300 "$2" http_ok "$1"; }
wait_port() { poll 100 "$2" port_open "$1"; }
wait_file() { poll 50 "" test -s "$1"; }

start_service() {
	local name=$1 url=$2 log=$3
	shift 3
	setsid "$@" </dev/null >"$log" 2>&1 &
	service_pid=$!
	on_exit "stop_pid $service_pid"
	wait_http "$url" "$service_pid" ||
		skip "$name did not answer on $url: $(tail -n 3 "$log" | tr '\n' ' ')"
}

service_db() {
	local name=$1 log=$2
	shift 2
	"$@" >"$log" 2>&1 ||
		skip "$name failed: $(tail -n 2 "$log" | tr '\n' ' ')"
}

paste_healthcheck() {
	printf '[%s:healthcheck]\npaste.%s_factory = oslo_middleware:Healthcheck.%s\n' \
		"$1" "$1" "$2"
	printf 'backends = disable_by_file\ndisable_by_file_path = %s/healthcheck_disable\n' \
		"$S"
}

n=0
conf_lines=()
conf_log=("log_target = none")
newconf() {
	n=$((n + 1))
	inst=$tmp/inst$n
	conf=$tmp/vmdisk$n.conf
	mkdir -p "$inst"
	{
		printf '[DEFAULT]\ninstances_path = %s\n' "$inst"
		[[ " $* " == *" log_target ="* ]] || printf '%s\n' "${conf_log[@]}"
		printf '%s\n' "${conf_lines[@]}" "$@"
	} >"$conf"
}

vm() {
	"$cli" --config "$conf" "$@" >"$tmp/out" 2>"$tmp/err"
}

entries() {
	find "$inst/_base" -maxdepth 1 -type f -regextype posix-extended \
		-regex '.*/[0-9a-f]{40}' 2>/dev/null | wc -l
}
temporaries() {
	find "$inst/_base" -maxdepth 1 -type f -regextype posix-extended \
		! -regex '.*/[0-9a-f]{40}' ! -regex '.*/\.[0-9a-f]{40}\.(json|failed)' \
		2>/dev/null | wc -l
}

cache_left_behind() {
	local e t
	e=$(entries)
	t=$(temporaries)
	((e + t == 0)) || echo "the cache holds $e entries, $t temporaries"
}
left_behind() { cache_left_behind; }

# What an error line must not show: a URL of the test's services (they are
# all on 127.0.0.1) or a place in our sources (file.c:LINE).
internals='127\.0\.0\.1|localhost|[A-Za-z0-9_]+\.[ch]:[0-9]+'

fails_cleanly() {
	local name=$1 pattern=$2 rc lines left
	shift 2
	vm "$@"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if ((rc != 1)); then
		bad "$name: exit $rc, expected 1 ($(head -c 300 "$tmp/err"))"
	elif ((lines != 1)); then
		bad "$name: $lines lines on stderr: $(head -c 300 "$tmp/err")"
	elif ! grep -Eq -- "$pattern" "$tmp/err"; then
		bad "$name: message '$(cat "$tmp/err")' does not match '$pattern'"
	elif grep -Eq -- "$internals" "$tmp/err"; then
		bad "$name: the message shows internals: $(cat "$tmp/err")"
	elif left=$(left_behind); [[ -n "$left" ]]; then
		bad "$name: $left"
	else
		ok "$name: $(cat "$tmp/err")"
	fi
}
