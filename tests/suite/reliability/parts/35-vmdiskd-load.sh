#!/usr/bin/env bash
# Load on vmdiskd (issue 16): the real tools/vmdiskd on a socket of its
# own, 64 clients at once, round after round (vmdiskd_load.py): granted
# pings, operations the policy does not grant, requests the schema refuses,
# slow clients (a byte every 0.1 s, done within the read timeout; a byte a
# second, past it), clients that close half-way (FIN and RST), garbage with
# a NUL, lines over 4 KiB, and clients of a uid the policy grants nothing
# (nobody, through setpriv). Only ops that need no device-mapper run:
# ping is the one granted op; the others are refused before any LVM step.
#
# First, 24 granted clients that send a byte and then nothing must not
# keep a granted ping from being served. Then: every granted ping is answered ok, every other request gets a
# refusal or (a client that left) nothing, no client waits longer than the
# read timeout plus slack; vmdiskd's RSS and descriptor count after the
# last round are those after the first (RSS within 1 MiB: glibc's thread
# arenas settle in the first round; descriptors exactly), no thread of a
# connection is left; the audit log has one decision line per connection
# and a done line per allowed request; SIGTERM stops it with its socket
# removed.
#
# Figures: vmdiskd_clients, vmdiskd_served, vmdiskd_refused, vmdiskd_busy,
# vmdiskd_rss_before/after (KiB), vmdiskd_fds_before/after.
set -uo pipefail
t_name=vmdiskd-load
# shellcheck source=tests/suite/reliability/common.sh
. "$(dirname "$0")/../common.sh"
need_cli
daemon=$build/tools/vmdiskd
[[ -x "$daemon" ]] || fail_suite "no vmdiskd at $daemon (build first)"
((EUID == 0)) || skip "vmdiskd serves as root: run as root"
nobody=$(id -u nobody 2>/dev/null) || skip "no user nobody for the ungranted clients"
command -v setpriv >/dev/null || skip "setpriv (util-linux) is not installed"
suite_tmp
chmod 755 "$tmp" # nobody reaches the socket
client=$reliability_dir/vmdiskd_load.py

rounds=$(scaled 3 10)
timeout_ms=3000
# 64 clients a round: 48 as root (granted ping only), 16 as nobody.
root_mix=(ping=16 slow_ok=4 slow=4 denied_op=4 bad_field=4 drop=4 drop_rst=4
	garbage=4 long=2 long_nonl=2)
nobody_mix=(ping=12 slow=4)
per_round=64

conf=$tmp/vmdisk.conf sock=$tmp/vmdiskd.sock audit=$tmp/audit.log
cat >"$conf" <<EOF
[vmdisk]
vmdiskd_socket = $sock
vmdiskd_policy_file = $tmp/policy
vmdiskd_audit_log = $audit
log_target = none
key_file_dir = $tmp/keys
images_volume_group = vmdisk-load-test-vg
EOF
printf '[allow]\nuid.0 = ping\n' >"$tmp/policy"
chmod 600 "$tmp/policy"

setsid "$daemon" --config "$conf" --read-timeout-ms "$timeout_ms" \
	</dev/null >"$tmp/vmdiskd.log" 2>&1 &
dpid=$!
on_exit "stop_pid $dpid"
sock_ready() { [[ -S "$sock" ]] && [[ $(stat -c %a "$sock") == 660 ]]; }
poll 100 "$dpid" sock_ready ||
	fail_suite "vmdiskd did not start: $(tail -n 3 "$tmp/vmdiskd.log")"
# The test's ungranted uid must reach the daemon to be refused by it.
chmod 666 "$sock"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$dpid/status"; }
fds() { find "/proc/$dpid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
threads() { find "/proc/$dpid/task" -mindepth 1 -maxdepth 1 | wc -l; }
idle() { [[ $(threads) -eq 1 ]]; }

# ---- slow clients do not starve the others ----
# More granted connections than vmdiskd runs requests at once (16) send a
# byte and then nothing; a granted ping that comes while they wait must
# still be served, not answered "busy".
holders=24
at=$("$py" -c 'import time; print(time.time())')
"$py" "$client" "$sock" "$at" hold=$holders >"$tmp/hold" 2>&1 &
hold_pid=$!
held() { (($(threads) > 16)); }
poll 50 "$dpid" held
sleep 0.5
"$py" "$client" "$sock" "$at" ping=4 >"$tmp/hold.ping" 2>&1
wait "$hold_pid"
hold_ok=$(grep -c '^ping ok ' "$tmp/hold.ping")
check "$holders granted clients that send nothing leave 4 pings served ($hold_ok): $(grep -v '^ping ok' "$tmp/hold.ping" | head -n 1 | cut -c1-100)" \
	test "$hold_ok" -eq 4
check "the $holders holders are refused at the read timeout ($(grep -c ' refused ' "$tmp/hold"))" \
	test "$(grep -c ' refused ' "$tmp/hold")" -eq $holders
poll 100 "$dpid" idle

clients=0 served=0 refused=0 busy=0 none=0 errors=0 unserved=0 slowest=0
conns=$((holders + 4)) # connections the daemon should have audited
start=$SECONDS
for ((r = 1; r <= rounds; r++)); do
	at=$("$py" -c 'import time; print(time.time() + 0.5)')
	"$py" "$client" "$sock" "$at" "${root_mix[@]}" >"$tmp/root.$r" 2>"$tmp/root.err" &
	p1=$!
	setpriv --reuid="$nobody" --regid="$(id -g nobody)" --clear-groups \
		"$py" "$client" "$sock" "$at" "${nobody_mix[@]}" >"$tmp/nobody.$r" 2>"$tmp/nobody.err" &
	p2=$!
	wait "$p1" || say "round $r: root clients: $(tail -n 2 "$tmp/root.err")"
	wait "$p2" || say "round $r: nobody's clients: $(tail -n 2 "$tmp/nobody.err")"
	sed 's/^/root /' "$tmp/root.$r" >"$tmp/round"
	sed 's/^/nobody /' "$tmp/nobody.$r" >>"$tmp/round"
	while read -r who kind outcome secs rep; do
		clients=$((clients + 1)) conns=$((conns + 1))
		[[ $outcome == error ]] && { errors=$((errors + 1)); conns=$((conns - 1)); }
		[[ $rep == *'"code":"busy"'* ]] && busy=$((busy + 1))
		# Whole seconds: the slowest wait must stay under the timeout.
		s=${secs%.*}
		((s > slowest)) && slowest=$s
		if [[ $who == root && $kind == ping* || $kind == slow_ok ]]; then
			if [[ $outcome == ok ]]; then
				served=$((served + 1))
			else
				unserved=$((unserved + 1))
				say "round $r: granted $kind not served: $outcome $rep"
			fi
			continue
		fi
		case $outcome in
		ok)
			unserved=$((unserved + 1))
			say "round $r: $who $kind was served: $rep"
			;;
		refused) refused=$((refused + 1)) ;;
		none) none=$((none + 1)) ;;
		esac
	done <"$tmp/round"
	# Every connection's thread gone before the figures are read.
	poll 100 "$dpid" idle || say "round $r: $(threads) threads left after 10 s"
	if ((r == 1)); then
		rss_before=$(rss) fds_before=$(fds)
	fi
done
rss_after=$(rss) fds_after=$(fds) threads_after=$(threads)
say "$rounds rounds of $per_round clients: $((SECONDS - start)) s"

check "$clients clients in $rounds rounds, none could not connect ($errors)" \
	test "$clients" -eq $((rounds * per_round)) -a "$errors" -eq 0
check "every granted request served ($served), no other served ($unserved wrong)" \
	test "$unserved" -eq 0 -a "$served" -eq $((rounds * (16 + 4)))
check "every other request refused or left ($refused refused, $none left)" \
	test $((refused + none)) -eq $((clients - served))
check "no client waited past the read timeout (slowest ${slowest} s)" \
	test "$slowest" -le $((timeout_ms / 1000 + 2))
check "no connection thread left ($threads_after threads)" test "$threads_after" -eq 1
check "descriptors flat: $fds_before after round 1, $fds_after after $rounds" \
	test "$fds_after" -eq "$fds_before"
if grep -q libasan "/proc/$dpid/maps"; then
	# ASan holds freed memory in its quarantine: RSS grows without a
	# leak. LeakSanitizer checks at exit instead (the SIGTERM case: a leak
	# would make the exit status 23).
	ok "RSS not compared in an ASan build ($rss_before KiB, then $rss_after KiB): LeakSanitizer at exit"
else
	check "RSS flat: $rss_before KiB after round 1, $rss_after KiB after $rounds (1 MiB slack)" \
		test "$rss_after" -le $((rss_before + 1024))
fi

# ---- the audit log: one decision a connection, an end to every allowed ----
decisions=$(grep -cE ' (allowed|refused) reason=' "$audit")
allowed=$(grep -c ' allowed reason=' "$audit")
ended=$(grep -cE ' (done|failed) reason=' "$audit")
nobody_lines=$(grep -c " uid=$nobody .* refused reason=" "$audit")
check "audit: a decision line per connection ($decisions lines, $conns connections)" \
	test "$decisions" -eq "$conns"
check "audit: every allowed request ended ($allowed allowed, $ended done/failed)" \
	test "$allowed" -eq "$ended" -a "$allowed" -eq $((served + hold_ok))
check "audit: each of nobody's $((rounds * 16)) connections refused ($nobody_lines)" \
	test "$nobody_lines" -eq $((rounds * 16))
check "audit log mode 0600" test "$(stat -c %a "$audit")" = 600

# ---- it stops cleanly, leaving nothing ----
kill -TERM "$dpid"
poll 100 "" pid_gone "$dpid"
wait "$dpid"
rc=$?
check "SIGTERM: exit $rc, socket removed" test "$rc" -eq 0 -a ! -e "$sock"

figure vmdiskd_clients "$clients"
figure vmdiskd_served "$served"
figure vmdiskd_refused "$refused"
figure vmdiskd_left "$none"
figure vmdiskd_busy "$busy"
figure vmdiskd_rss_before "$rss_before"
figure vmdiskd_rss_after "$rss_after"
figure vmdiskd_fds_before "$fds_before"
figure vmdiskd_fds_after "$fds_after"
finish
