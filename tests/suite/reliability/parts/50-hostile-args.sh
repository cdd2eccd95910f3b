#!/usr/bin/env bash
# Hostile input on every argument (issue 16): every option value and
# positional argument of vmdisk, every config key (through a file) and every
# vmdiskd request field (through the socket of a real vmdiskd) is fed empty,
# 64 KiB, non-UTF-8, ../, a leading -, NUL (file and socket), control
# characters and negative, zero and overflowing sizes. Each must be refused
# cleanly: exit 2 or 1, one printable line on stderr, nothing created (the
# daemon: a parser refusal, and it stays up). The driver is
# tests/suite/reliability/hostile_args.py; the values a stated rule accepts
# are listed there (ACCEPTED rules) and printed as "accepted by rule".
# Figures: hostile_cases, hostile_accepted (accepted when it should not be).
set -uo pipefail
t_name=hostile
. "$(dirname "$0")/../common.sh"
need_cli
[[ -x "$build/tools/vmdiskd" ]] || fail_suite "no vmdiskd in $build"
suite_tmp
export HOSTILE_COUNTS=$tmp/counts
"$py" "$reliability_dir/hostile_args.py" "$cli" "$build/tools/vmdiskd" \
	"$tmp" "${STRESS_SCALE:-small}"
rc=$?
if [[ -s "$HOSTILE_COUNTS" ]]; then
	read -r passed failed <"$HOSTILE_COUNTS"
else
	bad "the driver stopped early (exit $rc)"
fi
((rc == 0 || failed > 0)) || bad "the driver exited $rc"
finish
