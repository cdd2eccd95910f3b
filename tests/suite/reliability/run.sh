#!/usr/bin/env bash
# The reliability suite (issue 16): crash consistency, power loss, concurrency,
# disk full and I/O errors, no shell, secrets, error exposure, hostile
# arguments and load on vmdiskd. Each part is an executable
# tests/suite/reliability/parts/<NN>-<name>.sh, run in its own process in
# name order; it prints case lines (ok/FAIL), figure lines
#
#   figure: NAME VALUE
#
# and last a line "N passed, N failed[, N skipped]" (exit 0, 77 when the
# whole part was skipped, else failure), as every script suite does.
#
# STRESS_SCALE=small (the default: scripts/test.sh runs it on every change,
# in seconds to a minute a part) or large (bench/stress: the counts the issue
# asks figures for). RELIABILITY_PARTS='crash concurrency' runs only the parts
# whose names contain one of the words.
#
# Usage: tests/suite/reliability/run.sh [BUILD_DIR]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
t_name=reliability
root=$(cd "$here/../../.." && pwd)
# shellcheck source=tests/suite/lib.sh
. "$here/../lib.sh"
suite_build "${1:-}"
export VMDISK_BUILD_DIR="$build" VMDISK_CLI="$cli" STRESS_SCALE="${STRESS_SCALE:-small}"
need_cli
suite_tmp
figures="$tmp/figures"
: >"$figures"
total_skipped=0
re='^([A-Za-z_-]+: )?([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$'

wanted() { # wanted PART: no filter, or the part's name holds a word of it
	local w
	[[ -z "${RELIABILITY_PARTS:-}" ]] && return 0
	for w in $RELIABILITY_PARTS; do
		[[ "$1" == *"$w"* ]] && return 0
	done
	return 1
}

for part in "$here"/parts/*.sh; do
	[[ -x "$part" ]] || continue
	name=$(basename "$part" .sh)
	wanted "$name" || continue
	say "part $name (scale $STRESS_SCALE)"
	start=$SECONDS
	"$part" </dev/null 2>&1 | tee "$tmp/part.log"
	rc=${PIPESTATUS[0]}
	grep -E '^figure: ' "$tmp/part.log" | sed "s/^figure: /$name: /" >>"$figures"
	last=$(sed -e '/^[[:space:]]*$/d' "$tmp/part.log" | tail -n 1)
	p=0 f=0 s=0
	if [[ "$last" =~ $re ]]; then
		p=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]} s=${BASH_REMATCH[5]:-0}
	fi
	case $rc in
	0) ((p + f + s > 0)) || p=1 ;;
	77) ((p + f + s > 0)) || s=1 ;;
	*) ((f > 0)) || f=1 ;;
	esac
	passed=$((passed + p)) failed=$((failed + f))
	total_skipped=$((total_skipped + s))
	say "part $name: ok $p, failed $f, skipped $s ($((SECONDS - start)) s)"
done

if [[ -s "$figures" ]]; then
	say "figures (scale $STRESS_SCALE):"
	sed 's/^/  /' "$figures"
fi
if ((total_skipped > 0)); then
	echo "$passed passed, $failed failed, $total_skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
((failed == 0))
