#!/usr/bin/env bash
# The progress line of the CLI, on a real pseudo-terminal (pty_run.py gives
# the command a terminal on stderr, stdout goes to a file):
#
#   convert   a 64 MiB image: a line with a percentage, done/total, rate
#             and ETA, redrawn at most 10 times a second (carriage returns
#             counted against the elapsed time), then a final "done" line;
#             -p (qemu-img's spelling) is accepted and changes nothing;
#   fetch     a file:// image, the same ("download"); with --json, stdout
#             is still exactly the JSON document; an http image whose
#             size the server never gives (nolength.py): bytes and rate,
#             no percentage;
#   create    from an image on the flat backend: the download, then the
#             copy into the backend ("flat: copy base image": at least its
#             final line, as a reflink is done in one step);
#
# and, for each, nothing at all on stderr when it is a pipe (a file here),
# nor on the terminal with -q. The steps are slowed down with the fault
# injection's sleep (VMDISK_FAULT, -Dfault_injection=true builds) so that
# they last long enough for the redraw limit to matter; without it the
# cases still run, on faster steps.
#
#   tests/suite/progress/run.sh [BUILD_DIR]
#
# Last line "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
here=$root/tests/suite/progress
t_name=progress
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${1:-}"
need_cli
suite_tmp

src=$tmp/src
mkdir -p "$src"
# 64 MiB, every byte data: each MiB is a write the mover reports.
random_image "$src/img.raw" 64M 64M
qemu-img convert -q -f raw -O qcow2 "$src/img.raw" "$src/img.qcow2"

# Whether this build has fault points (VMDISK_FAULT sleep slows a step).
slow=()
if VMDISK_FAULT_TRACE=$tmp/trace "$cli" convert -O raw "$src/img.qcow2" \
	"$tmp/probe.raw" 2>/dev/null && [[ -s $tmp/trace ]]; then
	slow=(env "VMDISK_FAULT=io.write:sleep=60")
else
	say "no fault points in this build: steps run at full speed"
fi
rm -f "$tmp/probe.raw" "$tmp/trace"

# on_tty [env...] -- ARGS: vmdisk --config $conf ARGS with stderr on a
# terminal; rc, elapsed, redraws set, stderr in $tmp/err (\r kept).
on_tty() {
	local prefix=()
	while [[ $1 != -- ]]; do
		prefix+=("$1")
		shift
	done
	shift
	read -r rc elapsed redraws < <("${prefix[@]}" "$py" "$here/pty_run.py" \
		"$tmp/out" "$tmp/err" "$cli" --config "$conf" "$@")
}

# The lines as a person sees them: every \r a new line, the erase to
# the end of the line (ESC [ K) dropped.
lines() { tr '\r' '\n' <"$tmp/err" | sed 's/\x1b\[K//g' | grep -v '^$'; }

# progress_shown NAME STEP: a line of STEP with percentage, done/total,
# rate and ETA, and a final "done" line of STEP ending in a newline.
progress_shown() {
	local name=$1 step=$2 num='[0-9]+(\.[0-9])? [KMGT]?i?B'
	if ! lines | grep -Eq "^$step: +[0-9]+% $num / $num, ($num|--)/s, ETA ([0-9]+:[0-9]{2}|--:--)"; then
		bad "$name: no '$step' line with %, done/total, rate, ETA"
		cat -v "$tmp/err" | tail -c 600 >&2
		return
	fi
	if ! lines | grep -Eq "^$step: $num done in [0-9]+:[0-9]{2}, $num/s"; then
		bad "$name: no final '$step' line"
		return
	fi
	if [[ $(tail -c 1 "$tmp/err" | od -An -c | tr -d ' ') != '\n' ]]; then
		bad "$name: the last line does not end with a newline"
		return
	fi
	ok "$name: '$step' shows %, rate, ETA and a final line"
}

# at_most_10_per_second NAME STEPS: redraws (\r not ending a line) within
# 10 a second of the elapsed time, plus the first draw of each step.
at_most_10_per_second() {
	local name=$1 steps=$2
	if awk -v r="$redraws" -v e="$elapsed" -v s="$steps" \
		'BEGIN { exit !(r <= 10 * e + s) }'; then
		ok "$name: $redraws redraws in ${elapsed}s (at most 10/s)"
	else
		bad "$name: $redraws redraws in ${elapsed}s: more than 10/s"
	fi
}

silent_on_pipe_and_q() {
	local name=$1
	shift
	rm -rf "$inst" && mkdir -p "$inst"
	"$@" 2>/dev/null
	if ! vm "${pipe_args[@]}"; then
		bad "$name on a pipe failed: $(cat "$tmp/err")"
	elif [[ -s $tmp/err ]]; then
		bad "$name on a pipe wrote to stderr: $(head -c 200 "$tmp/err" | cat -v)"
	else
		ok "$name: nothing on stderr when it is not a terminal"
	fi
	"$@" 2>/dev/null
	rm -rf "$inst" && mkdir -p "$inst"
	on_tty -- -q "${pipe_args[@]}"
	if [[ $rc != 0 ]]; then
		bad "$name -q failed"
	elif [[ -s $tmp/err ]]; then
		bad "$name -q wrote to the terminal: $(head -c 200 "$tmp/err" | cat -v)"
	else
		ok "$name -q: nothing on the terminal"
	fi
}

newconf

# ---- convert ----
dst=$tmp/dst.qcow2
on_tty "${slow[@]}" -- convert -O qcow2 "$src/img.raw" "$dst"
if [[ $rc == 0 ]] && qemu-img compare -q "$src/img.raw" "$dst"; then
	ok "convert on a terminal: converted"
else
	bad "convert on a terminal: rc $rc"
fi
progress_shown convert convert
at_most_10_per_second convert 1
if ((${#slow[@]})); then
	# Slowed to about 1 s: a line that never redrew shows nothing.
	if ((redraws >= 3)); then ok "convert: redrawn as it went ($redraws)"
	else bad "convert: only $redraws redraws in ${elapsed}s"; fi
fi
rm -f "$dst"
on_tty "${slow[@]}" -- convert -p -O raw "$src/img.qcow2" "$dst"
[[ $rc == 0 ]] || bad "convert -p on a terminal: rc $rc"
progress_shown "convert -p" convert
at_most_10_per_second "convert -p" 1
pipe_args=(convert -O raw "$src/img.qcow2" "$dst")
silent_on_pipe_and_q convert rm -f "$dst"

# ---- fetch (file://) ----
rm -rf "$inst" && mkdir -p "$inst"
fetch_slow=()
((${#slow[@]})) && fetch_slow=(env "VMDISK_FAULT=io.write:sleep=1")
on_tty "${fetch_slow[@]}" -- fetch "file://$src/img.raw" --json
if [[ $rc == 0 ]] && "$py" -c 'import json, sys; json.load(open(sys.argv[1]))' \
	"$tmp/out"; then
	ok "fetch --json on a terminal: stdout is the JSON document alone"
else
	bad "fetch --json on a terminal: rc $rc, stdout $(head -c 200 "$tmp/out")"
fi
progress_shown fetch download
at_most_10_per_second fetch 1
pipe_args=(fetch "file://$src/img.raw")
silent_on_pipe_and_q fetch true

# ---- fetch (http, no size given): bytes and rate, no percentage ----
head -c 16M /dev/urandom >"$src/nolength.raw"
setsid "$py" "$here/nolength.py" "$src" "$tmp/port" </dev/null \
	>"$tmp/nolength.log" 2>&1 &
nolength_pid=$!
on_exit "stop_pid $nolength_pid"
if wait_file "$tmp/port"; then
	rm -rf "$inst" && mkdir -p "$inst"
	url="http://127.0.0.1:$(cat "$tmp/port")/nolength.raw"
	on_tty -- fetch "$url"
	num='[0-9]+(\.[0-9])? [KMGT]?i?B'
	if [[ $rc == 0 ]] && lines | grep -Eq "^download: $num, $num/s$" &&
		! lines | grep -q '%' &&
		lines | grep -Eq "^download: 16\.0 MiB done in [0-9]+:[0-9]{2}, $num/s"; then
		ok "fetch of unknown size: bytes and rate, then the final line"
	else
		bad "fetch of unknown size: rc $rc: $(tail -c 300 "$tmp/err" | cat -v)"
	fi
	at_most_10_per_second "fetch of unknown size" 1
	rm -rf "$inst" && mkdir -p "$inst"
	if vm fetch "$url" && [[ ! -s $tmp/err ]]; then
		ok "fetch of unknown size: nothing on stderr when not a terminal"
	else
		bad "fetch of unknown size on a pipe: $(head -c 200 "$tmp/err" | cat -v)"
	fi
else
	bad "the origin without Content-Length did not start: $(cat "$tmp/nolength.log")"
fi

# ---- create from an image ----
rm -rf "$inst" && mkdir -p "$inst"
uuid=$(new_uuid)
on_tty "${fetch_slow[@]}" -- create "$uuid" disk --image "file://$src/img.raw" \
	--backend flat
if [[ $rc == 0 ]] && cmp -s "$src/img.raw" "$inst/$uuid/disk"; then
	ok "create on a terminal: the disk is the image"
else
	bad "create on a terminal: rc $rc"
fi
progress_shown "create (download)" download
# The copy may be one step of the kernel's (a reflink, copy_file_range):
# then its final line is all there is to show.
if lines | grep -Eq '^flat: copy base image: [0-9.]+ [KMG]?i?B done in [0-9]+:[0-9]{2}, '; then
	ok "create: the copy into the backend has its final line"
else
	bad "create: no final line of the copy into the backend"
fi
at_most_10_per_second create 2
# The result on stdout comes after the progress lines, not inside one.
if grep -q '^backend: flat$' "$tmp/out"; then ok "create: result on stdout"
else bad "create: no result on stdout"; fi
pipe_args=(create "$uuid" disk --image "file://$src/img.raw" --backend flat)
silent_on_pipe_and_q create true

finish
