# shellcheck shell=bash disable=SC2154
# What the service-backed suites (tests/suite/*/run.sh) share; sourced, after
# setting t_name (the prefix of say's lines) and py (/usr/bin/python3).
#
#   ok/bad/check NAME...   count a case (the caller prints the last line,
#                          "$passed passed, $failed failed")
#   skip REASON            print it and "0 passed, 0 failed, 1 skipped",
#                          exit 77: only for a part that cannot run here
#   need_python MODULE PKG install PKG with apt-get (as root) when MODULE
#                          does not import, else skip
#   free_port              an unused TCP port on 127.0.0.1
#   pid_running PID        alive and not a zombie (PID 1 on these machines
#                          does not reap orphans: kill -0 is not enough)
#   stop_pid PID           SIGTERM, up to 5 s, then SIGKILL
#   wait_http URL PID      0 once URL answers 200; 1 when PID ends first
#                          or after 30 s
passed=0
failed=0
say() { printf '%s: %s\n' "$t_name" "$*"; }
ok() { printf 'ok   %s\n' "$*"; passed=$((passed + 1)); }
bad() { printf 'FAIL %s\n' "$*"; failed=$((failed + 1)); }
check() { # check NAME COMMAND...: ok when the command succeeds
	local name=$1
	shift
	if "$@"; then ok "$name"; else bad "$name"; fi
}
skip() {
	say "skipped: $*"
	echo "0 passed, 0 failed, 1 skipped"
	exit 77
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

free_port() {
	"$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

pid_running() {
	[[ -d /proc/$1 ]] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null
}

stop_pid() {
	local i
	[[ -n "$1" ]] || return 0
	kill -TERM "$1" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		pid_running "$1" || break
		sleep 0.1
	done
	kill -KILL "$1" 2>/dev/null
}

wait_http() {
	local i
	for ((i = 0; i < 150; i++)); do
		[[ "$(curl -s -o /dev/null -w '%{http_code}' "$1" 2>/dev/null)" == 200 ]] &&
			return 0
		pid_running "$2" || return 1
		sleep 0.2
	done
	return 1
}
