#!/usr/bin/env bash
# Disk full and I/O errors (issue 16).
#
# (a) The instances folder on a small tmpfs: each operation (fetch over
#     file:// and HTTP; create on flat, qcow2 and ploop from a raw and a
#     qcow2 base and blank; resize; convert into it; extract) runs once to
#     learn the space it takes, then again with the file system filled so
#     that it runs out part-way (levels of free space from none to most of
#     what it needs).
# (b) With the I/O fault points of a -Dfault_injection=true build
#     (io.write, io.fsync, io.truncate, io.fallocate, io.copy, io.link,
#     io.rename: lib/core/fsutil.h) failing with ENOSPC or EIO at a hit the
#     operation passes (learnt with VMDISK_FAULT_TRACE): at small scale the
#     last hit of each point an operation reaches (publishing) and one drawn
#     at random, at large scale every hit of every point, with each of the
#     two errors.
#
# After each failure: exit 1, exactly one line on stderr, naming the step
# and showing no path or internals; nothing under a final name that is not
# complete (a failed create leaves no disk and no record of it, a failed
# resize leaves the disk as it was or resized, a failed convert or extract
# no destination); no temporary left; every cache entry has its record and
# verifies (its hash, or qemu-img compare with its source when it was
# converted). Then, with the space freed or no fault, the same operation
# succeeds and its result is complete (qemu-img check and compare with the
# base). An operation that succeeds in spite of the fault must leave the
# same complete result.
#
# Figures: diskfull_cases (runs on the full file system), io_fault_cases
# (runs with an injected error), diskfull_bad (cases of either kind that
# broke a rule).
set -uo pipefail
t_name=diskfull
# shellcheck source=tests/suite/reliability/common.sh
. "$(dirname "$0")/../common.sh"
# Not error-traced (VMDISK_ERROR_TRACE empty): the injected faults also hit
# best-effort steps whose errors are set and then ignored (never shown), which
# errors_check.py would read as messages naming no step. What the user sees
# here is checked by this part itself: one stderr line naming the step.
export VMDISK_ERROR_TRACE=
need_cli
suite_tmp
command -v qemu-img >/dev/null || skip "qemu-img is not installed"

src=$tmp/src
mkdir -p "$src"
random_image "$src/base.raw" 3M 8M
qemu-img convert -f raw -O qcow2 "$src/base.raw" "$src/base.qcow2"
uuid=$(new_uuid)
diskfull_bad=0

port=$(free_port)
start_service http "http://127.0.0.1:$port/base.raw" "$tmp/http.log" \
	"$py" -m http.server --bind 127.0.0.1 --directory "$src" "$port"

# The instances folder of a case: a fresh $inst and its configuration
# (an operation named *-prealloc: preallocate_images = space, so that its
# space is taken with fallocate).
use_inst() {
	inst=$1
	rm -rf "$inst"
	mkdir -p "$inst"
	conf=$tmp/diskfull.conf
	printf '[DEFAULT]\ninstances_path = %s\nlog_target = none\n' "$inst" \
		>"$conf"
	[[ ${2:-} != *-prealloc ]] || echo "preallocate_images = space" >>"$conf"
}

# The operations. op_args NAME sets args; op_prep NAME makes what the
# operation works on (before the file system is filled or faults are on).
ops=(fetch-file fetch-http
	create-flat-raw create-flat-qcow2 create-flat-blank
	create-flat-raw-prealloc create-flat-blank-prealloc
	create-qcow2-raw create-qcow2-qcow2 create-qcow2-blank
	create-ploop-raw create-ploop-qcow2 create-ploop-blank
	resize-flat resize-flat-prealloc resize-qcow2 resize-ploop
	convert-raw-qcow2 convert-qcow2-raw extract-raw extract-qcow2)
# DISKFULL_OPS='OP...' runs only those (to look at one).
[[ -z "${DISKFULL_OPS:-}" ]] || read -ra ops <<<"$DISKFULL_OPS"

op_args() {
	local w
	IFS=- read -ra w <<<"$1"
	case ${w[0]} in
	fetch)
		if [[ ${w[1]} == file ]]; then args=(fetch "file://$src/base.raw")
		else args=(fetch "http://127.0.0.1:$port/base.qcow2"); fi ;;
	create)
		if [[ ${w[2]} == blank ]]; then
			args=(create "$uuid" d --blank --size 16M --backend "${w[1]}")
		else
			args=(create "$uuid" d --image "file://$src/base.${w[2]}"
				--backend "${w[1]}")
		fi ;;
	resize) args=(resize "$uuid" d 24M) ;;
	convert)
		args=(convert "$src/base.${w[1]}" "$inst/conv.${w[2]}" -O "${w[2]}") ;;
	extract)
		args=(extract "$uuid" d "$inst/ext.${w[1]}" --output-format "${w[1]}") ;;
	esac
}

op_prep() {
	local w
	IFS=- read -ra w <<<"$1"
	case $1 in
	resize-*) prep_disk "${w[1]}" ;;
	extract-*) prep_disk qcow2 ;;
	esac
}
prep_disk() {
	"$cli" --config "$conf" create "$uuid" d --image "file://$src/base.qcow2" \
		--backend "$1" >/dev/null 2>"$tmp/prep.err" ||
		{ say "prep failed: $(cat "$tmp/prep.err")"; return 1; }
}

# The disk's image file and its format for qemu-img.
disk_file() {
	if [[ -d "$inst/$uuid/d" ]]; then
		echo "$inst/$uuid/d/root.hds"
		if grep -q '<Type>Plain</Type>' "$inst/$uuid/d/DiskDescriptor.xml"
		then echo raw; else echo parallels; fi
	elif [[ -f "$inst/$uuid/d" ]]; then
		echo "$inst/$uuid/d"
		qemu-img info "$inst/$uuid/d" 2>/dev/null |
			sed -n 's/^file format: //p'
	fi
}

# image_ok FILE FORMAT: clean, and the base's contents (zeros past it).
image_ok() {
	[[ -f "$1" ]] || { echo "$1 missing"; return 1; }
	[[ $2 == raw ]] || qemu-img check -f "$2" "$1" >/dev/null 2>&1 ||
		{ echo "qemu-img check fails on ${1#"$tmp"/}"; return 1; }
	[[ $3 == blank ]] && return 0
	qemu-img compare -q -f "$2" -F raw "$1" "$src/base.raw" >/dev/null 2>&1 ||
		{ echo "${1#"$tmp"/} differs from the base"; return 1; }
}

# done_ok NAME: the operation's result is there and complete.
done_ok() {
	local f=() kind=base
	case $1 in
	fetch-*) (($(entries) >= 1)) || { echo "no cache entry"; return 1; } ;;
	create-* | resize-*)
		mapfile -t f < <(disk_file)
		[[ ${#f[@]} == 2 ]] || { echo "no disk"; return 1; }
		[[ $1 == *-blank* ]] && kind=blank
		image_ok "${f[0]}" "${f[1]}" "$kind" || return 1
		grep -q '"d"' "$inst/$uuid/.vmdisk.json" 2>/dev/null ||
			{ echo "the disk is not in the instance record"; return 1; }
		if [[ $1 == resize-* ]]; then
			local size
			size=$(qemu-img info -f "${f[1]}" "${f[0]}" |
				sed -n 's/^virtual size: .*(\([0-9]*\) bytes)$/\1/p')
			((size == 24 << 20)) || { echo "size $size after resize"; return 1; }
		fi ;;
	convert-*) image_ok "$inst/conv.${1##*-}" "${1##*-}" base ;;
	extract-*) image_ok "$inst/ext.${1##*-}" "${1##*-}" base ;;
	esac
}

# failed_ok NAME: a failed operation left nothing half done.
failed_ok() {
	local f=()
	case $1 in
	create-*)
		[[ ! -e "$inst/$uuid/d" ]] || { echo "a disk is left under its name"; return 1; }
		! grep -q '"d"' "$inst/$uuid/.vmdisk.json" 2>/dev/null ||
			{ echo "the instance record names a disk that failed"; return 1; } ;;
	resize-*) # in place: as it was, or resized, and clean either way
		mapfile -t f < <(disk_file)
		[[ ${#f[@]} == 2 ]] || { echo "the disk is gone"; return 1; }
		image_ok "${f[0]}" "${f[1]}" base ;;
	convert-*)
		[[ ! -e "$inst/conv.${1##*-}" ]] || { echo "a destination is left"; return 1; } ;;
	extract-*)
		[[ ! -e "$inst/ext.${1##*-}" ]] || { echo "a destination is left"; return 1; } ;;
	esac
}

# field KEY: a string of the cache record $rec (one "key":"value" a line)
field() { sed -n "s/^ *\"$1\": *\"\([^\"]*\)\",\{0,1\}\$/\1/p" "$rec"; }

# cache_ok: every entry has its record and verifies; no record without an
# entry; no temporary anywhere in the instances folder.
cache_ok() {
	local e id rec t
	t=$(find "$inst" -name '.tmp-*' 2>/dev/null | head -n 3)
	[[ -z "$t" ]] || { echo "temporaries left: ${t//$tmp\//}"; return 1; }
	(($(temporaries) == 0)) || { echo "$(temporaries) temporaries in the cache"; return 1; }
	for rec in "$inst"/_base/.*.json; do
		[[ -e "$rec" ]] || continue
		id=${rec##*/.}
		id=${id%.json}
		[[ -f "$inst/_base/$id" ]] || { echo "record without entry $id"; return 1; }
	done
	for e in "$inst"/_base/*; do
		id=${e##*/}
		[[ "$id" =~ ^[0-9a-f]{40}$ ]] || continue
		rec=$inst/_base/.$id.json
		[[ -f "$rec" ]] || { echo "entry $id without its record"; return 1; }
		local algo hash format orig source
		algo=$(field hash_algo) hash=$(field hash) format=$(field format)
		orig=$(field original_format) source=$(field source)
		if [[ -z "$algo" || -z "$hash" || -z "$format" ]]; then
			echo "entry $id has a bad record"
			return 1
		elif [[ "$format" == "$orig" ]]; then
			[[ "$("${algo}sum" <"$e" | cut -d' ' -f1)" == "$hash" ]] ||
				{ echo "entry $id does not match its hash"; return 1; }
		else # converted on fetch: the same contents as its source
			qemu-img compare -q -f "$format" "$e" "$src/${source##*/}" ||
				{ echo "converted entry $id differs from its source"; return 1; }
		fi
	done
}

# The message of a failure: one line, the step named, no path, no internals.
message_ok() {
	local lines msg a
	lines=$(wc -l <"$tmp/err")
	((lines == 1)) || { echo "$lines lines on stderr: $(head -c 300 "$tmp/err")"; return 1; }
	msg=$(cat "$tmp/err")
	[[ "$msg" =~ ^vmdisk:\ [a-z] ]] || { echo "message '$msg'"; return 1; }
	for a in "${args[@]}"; do msg=${msg//"$a"/ARG}; done # what the caller gave
	if [[ "$msg" == *"$tmp"* || "$msg" == *_base* || "$msg" == *.tmp-* ||
		"$msg" == */proc/* ]] || grep -Eq -- "$internals" <<<"$msg"; then
		echo "the message shows a path or internals: $msg"
		return 1
	fi
}

# check_case NAME OP RC: the rules after a run that exited RC.
check_case() {
	local name=$1 op=$2 rc=$3 why
	if ((rc == 0)); then
		why=$(done_ok "$op") || { case_bad "$name: exit 0 but $why"; return 1; }
	elif ((rc == 1)); then
		why=$(message_ok) || { case_bad "$name: $why"; return 1; }
		why=$(failed_ok "$op") || { case_bad "$name: $why"; return 1; }
	else
		case_bad "$name: exit $rc: $(head -c 300 "$tmp/err")"
		return 1
	fi
	why=$(cache_ok) || { case_bad "$name: cache: $why"; return 1; }
	return 0
}
case_bad() { bad "$1"; diskfull_bad=$((diskfull_bad + 1)); }

# again NAME OP: the same operation, space or faults gone, now succeeds.
again() {
	local why
	vm "${args[@]}"
	local rc=$?
	if ((rc != 0)); then
		case_bad "$1: the next run fails: exit $rc: $(head -c 300 "$tmp/err")"
	elif ! why=$(done_ok "$2") || ! why=$(cache_ok); then
		case_bad "$1: the next run: $why"
	else
		return 0
	fi
	return 1
}

# --- (a) a small file system that fills up ---------------------------------
diskfull_cases=0
mnt=$tmp/mnt
mkdir -p "$mnt"
if ((EUID == 0)) && mount -t tmpfs -o size=48m,mode=0755 tmpfs "$mnt" 2>/dev/null
then
	on_exit "umount -l '$mnt'"
	levels=$(scaled 2 8)
	used() { df -B1 --output=used "$mnt" | tail -n 1; }
	fill_to() { # leave $1 bytes free
		local avail
		rm -f "$mnt/filler"
		avail=$(df -B1 --output=avail "$mnt" | tail -n 1)
		((avail > $1)) && fallocate -l $((avail - $1)) "$mnt/filler"
	}
	for op in "${ops[@]}"; do
		use_inst "$mnt/inst" "$op"
		op_args "$op"
		op_prep "$op" || { case_bad "$op: prep"; continue; }
		u0=$(used)
		vm "${args[@]}"
		rc=$?
		need=$(($(used) - u0))
		if ((rc != 0)) || ! why=$(done_ok "$op"); then
			case_bad "$op: with space: exit $rc ${why:-}: $(head -c 300 "$tmp/err")"
			continue
		fi
		failures=0
		for ((k = 0; k < levels; k++)); do
			free=$((need * k / levels / 4096 * 4096))
			name="full $op (free $((free >> 10)) of $((need >> 10)) KiB)"
			use_inst "$mnt/inst" "$op"
			op_args "$op"
			op_prep "$op" || { case_bad "$name: prep"; continue; }
			fill_to "$free"
			vm "${args[@]}"
			rc=$?
			diskfull_cases=$((diskfull_cases + 1))
			check_case "$name" "$op" "$rc" || { rm -f "$mnt/filler"; continue; }
			msg=fits
			((rc == 1)) && failures=$((failures + 1)) msg=$(cat "$tmp/err")
			rm -f "$mnt/filler"
			((rc == 0)) || again "$name" "$op" || continue
			ok "$name: $msg"
		done
		# An operation that needs space must have failed on the full
		# file system at least (level 0).
		((need < 4096 || failures > 0)) ||
			case_bad "full $op: never ran out of space"
	done
	rm -rf "$mnt/inst"
else
	say "no tmpfs (needs root): the full file system cases are not run"
fi

# --- (b) injected ENOSPC and EIO at the io.* fault points ------------------
io_fault_cases=0
if grep -q "VMD_FAULT_INJECTION 1" "$build/vmd_build_config.h" 2>/dev/null; then
	large=$([[ ${STRESS_SCALE:-small} == large ]] && echo 1 || echo 0)
	for op in "${ops[@]}"; do
		use_inst "$tmp/b" "$op"
		op_args "$op"
		op_prep "$op" || { case_bad "$op: prep"; continue; }
		rm -f "$tmp/trace"
		VMDISK_FAULT_TRACE=$tmp/trace vm "${args[@]}" ||
			{ case_bad "$op: without faults: $(cat "$tmp/err")"; continue; }
		# point and how often it was reached
		mapfile -t points < <(awk '$1 ~ /^io\./ { if ($2 > n[$1]) n[$1] = $2 }
			END { for (p in n) print p, n[p] }' "$tmp/trace" | sort)
		for pn in "${points[@]}"; do
			point=${pn% *} hits=${pn#* }
			cases=()
			if ((large)); then
				for ((h = 1; h <= hits; h++)); do cases+=("$h:ENOSPC" "$h:EIO"); done
			else
				# The last hit, where a file is published (the
				# link or rename, then the directory's fsync), and
				# one more hit and error drawn anew each run.
				errs=(ENOSPC EIO)
				cases=("$hits:EIO")
				h=$((RANDOM % hits + 1))
				((h == hits)) || cases+=("$h:${errs[RANDOM % 2]}")
			fi
			for c in "${cases[@]}"; do
				spec="$point@${c%%:*}:errno=${c#*:}"
				name="$op $spec"
				use_inst "$tmp/b" "$op"
				op_args "$op"
				op_prep "$op" || { case_bad "$name: prep"; continue; }
				VMDISK_FAULT=$spec vm "${args[@]}"
				rc=$?
				io_fault_cases=$((io_fault_cases + 1))
				check_case "$name" "$op" "$rc" || continue
				msg="went on"
				((rc == 1)) && msg=$(cat "$tmp/err")
				((rc == 0)) || again "$name" "$op" || continue
				ok "$name: $msg"
			done
		done
	done
else
	say "not a -Dfault_injection=true build: the injected error cases are not run"
fi

figure diskfull_cases "$diskfull_cases"
figure io_fault_cases "$io_fault_cases"
figure diskfull_bad "$diskfull_bad"
finish
