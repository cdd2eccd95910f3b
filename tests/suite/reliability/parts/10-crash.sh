#!/usr/bin/env bash
# Crash consistency (issue 16): SIGKILL a vmdisk process at each fault point
# it passes (VMDISK_FAULT=POINT@N:kill, the points learnt first with
# VMDISK_FAULT_TRACE) and at random times, during fetch (file and HTTP),
# convert, create (flat, qcow2, ploop; from a raw base, a qcow2 base, blank),
# resize, remove and cache prune. After each kill (crash_check.py):
#   - no lock under instances_path is left held;
#   - every cache entry is complete (equal to its source, its hash the
#     recorded one), every disk a record names passes qemu-img check and
#     equals its base, a disk no record names (a kill between publishing it
#     and recording it) is complete;
# then the next run of the same command succeeds (or, when the killed one
# had finished its work, the result is complete), and after it nothing is
# left that no record or entry accounts for.
#
# Small scale: a sample of the points and one random kill an operation;
# large (bench/stress): every point of every operation, and random kills
# until there are at least 1,000 trials.
t_name=crash
# shellcheck source=tests/suite/reliability/common.sh
. "$(dirname "$0")/../common.sh"
need_cli
grep -q "VMD_FAULT_INJECTION 1" "$build/vmd_build_config.h" 2>/dev/null ||
	skip "$build is not a -Dfault_injection=true build"
command -v qemu-img >/dev/null || skip "qemu-img is not installed"
suite_tmp
# shellcheck source=tests/suite/http/nginx.sh
. "$root/tests/suite/http/nginx.sh"
check_py=$reliability_dir/crash_check.py

points_per_op=$(scaled 2 0)  # 0: all
randoms_per_op=$(scaled 1 24)
show_max=20                  # problems printed in full

img=$tmp/img
mkdir -p "$img"
random_image "$img/base.raw" 3M 8M
qemu-img convert -q -f raw -O qcow2 "$img/base.raw" "$img/base.qcow2"
random_image "$img/other.raw" 1M 4M
chmod 755 "$tmp" "$img" # nginx's workers are not root
chmod 644 "$img"/*
port=$(free_port)
nginx_start "$tmp/nginx" "server { listen 127.0.0.1:$port; root $img; }" ||
	skip "nginx did not start"
on_exit "nginx_stop $tmp/nginx"
url="http://127.0.0.1:$port"

conf_lines=("http_low_speed_time = 5" "http_connect_timeout = 5"
	"remove_unused_base_images = true"
	"remove_unused_original_minimum_age_seconds = 0"
	"remove_unused_resized_minimum_age_seconds = 0")
inst_id=11111111-2222-4333-8444-555555555555
mkfs_ok=0
command -v mkfs.ext4 >/dev/null && mkfs_ok=1

ops=(fetch_file_raw fetch_file_qcow2 fetch_http_raw fetch_http_qcow2
	convert_raw convert_qcow2
	create_flat_raw create_flat_qcow2 create_flat_blank
	create_qcow2_raw create_qcow2_qcow2 create_qcow2_blank
	create_ploop_raw create_ploop_qcow2 create_ploop_blank
	resize_flat resize_qcow2 resize_ploop
	remove_flat remove_qcow2 remove_ploop prune)
((mkfs_ok)) && ops+=(create_flat_ext4)

quiet() { "$cli" --config "$conf" "$@" >/dev/null 2>&1; }

# prep OP: a fresh instances folder holding what OP starts from; sets args
# (the command) and done_cmd (a command that succeeds when OP's work is
# complete: then a second run is not expected to succeed).
prep() {
	local op=$1 backend src
	newconf
	done_cmd=(false)
	case $op in
	fetch_file_*) args=(fetch "$img/base.${op#fetch_file_}") ;;
	fetch_http_*) args=(fetch "$url/base.${op#fetch_http_}") ;;
	convert_*)
		local out=$inst/out.${op#convert_} from=raw
		[[ $op == convert_raw ]] && from=qcow2
		args=(convert "$img/base.$from" "$out" -O "${op#convert_}")
		done_cmd=(test -e "$out")
		;;
	create_*)
		backend=${op#create_}
		src=${backend#*_}
		backend=${backend%%_*}
		case $src in
		blank) args=(create "$inst_id" disk --blank --size 8M) ;;
		ext4) args=(create "$inst_id" disk --blank --size 8M --fs ext4) ;;
		*) args=(create "$inst_id" disk --image "$img/base.$src") ;;
		esac
		args+=(--backend "$backend")
		done_cmd=(quiet info "$inst_id" disk)
		;;
	resize_*)
		quiet create "$inst_id" disk --image "$img/base.raw" \
			--backend "${op#resize_}" || return 1
		args=(resize "$inst_id" disk 16M)
		;;
	remove_*)
		quiet create "$inst_id" disk --image "$img/base.raw" \
			--backend "${op#remove_}" || return 1
		args=(remove "$inst_id" disk)
		done_cmd=(not_recorded)
		;;
	prune)
		# two unused bases (one converted from qcow2) and one in use
		quiet fetch "$img/base.raw" && quiet fetch "$img/base.qcow2" &&
			quiet create "$inst_id" disk --image "$img/other.raw" \
				--backend qcow2 || return 1
		args=(cache prune)
		;;
	esac
}
not_recorded() {
	! jq -e '.disks.disk' "$inst/$inst_id/.vmdisk.json" >/dev/null 2>&1
}

# After the final run: what the operation must have made.
final_state() {
	case $1 in
	convert_*)
		local out=$inst/out.${1#convert_}
		qemu-img compare -q -f "${1#convert_}" "$out" "$img/base.raw" ||
			echo "the converted file differs from its source"
		;;
	create_*) quiet info "$inst_id" disk || echo "no disk after the rerun" ;;
	resize_*)
		[[ "$("$cli" --config "$conf" info "$inst_id" disk 2>/dev/null |
			sed -n 's/^virtual size: //p')" == 16777216 ]] ||
			echo "the disk is not 16 MiB after the rerun"
		;;
	remove_*)
		! quiet info "$inst_id" disk || echo "the disk is still there"
		# a kill before the rmdir may leave the folder, empty
		[[ ! -e "$inst/$inst_id" || -z "$(ls -A "$inst/$inst_id")" ]] ||
			echo "the instance folder is left, not empty"
		;;
	prune) (($(entries) == 1)) || echo "prune left $(entries) entries, not 1" ;;
	fetch_*) (($(entries) == 1)) || echo "no entry after the rerun" ;;
	esac
}

# launch ENV...: run args under setsid with the given environment, in the
# background: pid
# The killed run is not error-traced (VMDISK_ERROR_TRACE empty): a kill
# can cut an error's chain between the message and its step's prefix,
# which the error-exposure check would read as a message naming no step.
launch() {
	env VMDISK_ERROR_TRACE= "$@" setsid "$cli" --config "$conf" "${args[@]}" \
		>"$tmp/out" 2>"$tmp/err" </dev/null &
	pid=$!
}

# What is still running in the killed process's group (mkfs, for one):
# waited for (a child writing on after its parent died would be a defect
# in itself, counted as one) so that the checks see a quiet folder.
reap_group() {
	local i left
	for ((i = 0; i < 50; i++)); do
		left=$(pgrep -g "$1" 2>/dev/null | head -1)
		[[ -z "$left" ]] && return 0
		sleep 0.1
	done
	pkill -KILL -g "$1" 2>/dev/null
	echo "a child of the killed process ran on 5 s: $(ps -o args= -p "$left")"
}

trials=0 inconsistent=0 killed=0 finished=0 unreached=0
declare -A op_trials op_bad spans
shown=0

# trial OP HOW DETAIL: HOW is point (DETAIL POINT@N) or random (DETAIL ms)
trial() {
	local op=$1 how=$2 detail=$3 rc problems="" more
	prep "$op" || { bad "$op: set-up failed"; return; }
	if [[ $how == point ]]; then
		launch "VMDISK_FAULT=$detail:kill"
		# bash's "Killed" job notice is no news here: rc says it.
		{ wait "$pid"; } 2>/dev/null
		rc=$?
	else
		launch
		sleep "$(printf '%d.%03d' $((detail / 1000)) $((detail % 1000)))"
		kill -KILL "$pid" 2>/dev/null
		{ wait "$pid"; } 2>/dev/null
		rc=$?
	fi
	trials=$((trials + 1))
	op_trials[$op]=$((${op_trials[$op]:-0} + 1))
	if ((rc == 137)); then
		killed=$((killed + 1))
	elif [[ $how == point ]]; then
		unreached=$((unreached + 1))
	else
		finished=$((finished + 1))
	fi
	((rc == 0 || rc == 137)) ||
		problems="the killed run exited $rc: $(head -c 300 "$tmp/err")"$'\n'
	problems+=$(reap_group "$pid")
	problems+=$("$py" "$check_py" "$inst" "$img" "$url" kill | sed 's/^/after the kill: /')
	if ((rc == 137)) && ! "${done_cmd[@]}"; then
		vm "${args[@]}" ||
			problems+=$'\n'"the next run failed: $(head -c 300 "$tmp/err")"
	fi
	# a further operation on the cache cleans what a dead fetch left
	[[ $op == fetch_* || $op == prune ]] || quiet fetch "$img/base.raw"
	more=$("$py" "$check_py" "$inst" "$img" "$url" final)
	[[ -n "$more" ]] && problems+=$'\n'"after the next run: $more"
	more=$(final_state "$op")
	[[ -n "$more" ]] && problems+=$'\n'"$more"
	problems=$(sed '/^$/d' <<<"$problems")
	if [[ -n "$problems" ]]; then
		inconsistent=$((inconsistent + 1))
		op_bad[$op]=$((${op_bad[$op]:-0} + 1))
		if ((shown < show_max)); then
			shown=$((shown + 1))
			bad "$op killed at $how $detail (exit $rc): $(tr '\n' ';' <<<"$problems")"
		fi
	fi
	rm -rf "$inst" "$conf"
}

# learn OP: the points OP passes ("POINT N" lines) in $tmp/points and how
# long it takes untimed (ms) in span
learn() {
	local t0 t1
	prep "$1" || return 1
	rm -f "$tmp/trace"
	t0=$(date +%s%N)
	VMDISK_FAULT_TRACE="$tmp/trace" "$cli" --config "$conf" "${args[@]}" \
		>"$tmp/out" 2>"$tmp/err" || return 1
	t1=$(date +%s%N)
	span=$(((t1 - t0) / 1000000))
	spans[$1]=$span
	# POINT@N names the Nth hit of POINT: "POINT N" lines as they come
	sed 's/ /@/' "$tmp/trace" >"$tmp/points"
	rm -rf "$inst" "$conf"
}

start=$SECONDS
for op in "${ops[@]}"; do
	if ! learn "$op"; then
		bad "$op: the untimed run failed: $(head -c 300 "$tmp/err")"
		continue
	fi
	mapfile -t pts <"$tmp/points"
	if ((points_per_op > 0 && ${#pts[@]} > points_per_op)); then
		# the sample, and always the steps that once tore: a disk
		# published before its record, a prune between its unlinks, a
		# fetch's first rename (its side record's temporary was left)
		mapfile -t pts < <({ shuf -n "$points_per_op" "$tmp/points"
			grep -E '^(disk\.before_record|prune\.unlink)@|^io\.rename@1$' "$tmp/points"
		} | sort -u)
	fi
	for p in "${pts[@]}"; do
		trial "$op" point "$p"
	done
	for ((i = 0; i < randoms_per_op; i++)); do
		trial "$op" random $((RANDOM % (span + 1)))
	done
done
# at large scale, random kills until 1,000 trials
target=$(scaled 0 1000)
while ((trials < target)); do
	op=${ops[RANDOM % ${#ops[@]}]}
	[[ -n "${spans[$op]:-}" ]] || continue
	trial "$op" random $((RANDOM % (${spans[$op]} + 1)))
done

for op in "${ops[@]}"; do
	figure "crash_trials_$op" "${op_trials[$op]:-0}"
	figure "crash_inconsistent_$op" "${op_bad[$op]:-0}"
done
figure crash_trials "$trials"
figure crash_killed "$killed"
figure crash_finished_before_kill "$finished"
figure crash_point_not_reached "$unreached"
figure crash_inconsistent "$inconsistent"
figure crash_seconds $((SECONDS - start))
((inconsistent == 0)) &&
	ok "$trials kills ($killed hit a running process): nothing torn, held or left behind"
((killed > 0)) || bad "no trial killed a running process"
finish
