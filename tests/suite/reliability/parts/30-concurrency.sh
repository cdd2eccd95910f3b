#!/usr/bin/env bash
# Concurrency (issue 16): N processes create, resize and remove disks of
# many instances (flat, qcow2, ploop; from a raw and a qcow2 local file,
# from a raw and a qcow2 image on nginx, blank and swap-formatted) while
# `vmdisk cache prune` runs in a loop and several processes fetch the same
# uncached HTTP images. Afterwards:
#   - every operation a worker ran succeeded (each worker owns its
#     instances, so none of them has a reason to fail);
#   - every remaining disk passes qemu-img check and reads as its source
#     (a blank one as zeros), with the size its last resize gave it;
#   - every base an instance record names is in the cache;
#   - nginx served each HTTP image exactly once (its access log);
#   - no lock file under instances_path is held (flock -n) and no temporary
#     is left, in the cache or in an instance directory.
#
# Time passes quickly here: before each prune the loop makes the cached
# local-file bases two days old, so that prune removes whichever of them
# no record names at that moment while workers are about to use it (the
# check-then-fetch race); the HTTP bases stay young, so that a second
# download could only come from two fetches racing, never from a prune.
# Derived bases (the swap template) age by the resized minimum age, 0.
#
# Figures: concurrency_procs, concurrency_ops, concurrency_prunes,
# concurrency_corrupt, downloads_per_base (the most GETs of one image).
set -uo pipefail
t_name=concurrency
# shellcheck source=tests/suite/reliability/common.sh
. "$(dirname "$0")/../common.sh"
# shellcheck source=tests/suite/http/nginx.sh
. "$root/tests/suite/http/nginx.sh"
need_cli
suite_tmp
on_exit 'nginx_stop "$tmp/nginx"'

procs=$(scaled 8 32)
ops=$(scaled 12 24)     # operations per worker
fetchers=$(scaled 3 8)  # processes that only fetch each HTTP image
insts=3                 # instances per worker, two disk names each

www=$tmp/www
mkdir -p "$www" "$tmp/nginx" "$tmp/w"
chmod 755 "$tmp" "$www" # nginx's workers run as nobody
random_image "$www/a.raw" 1M 4M
head -c 512K /dev/urandom >>"$www/a.raw"
random_image "$tmp/b.raw" 768K 3M
qemu-img convert -q -f raw -O qcow2 "$tmp/b.raw" "$www/b.qcow2"
random_image "$www/h1.raw" 2M 6M
random_image "$tmp/h2.raw" 1M 5M
qemu-img convert -q -f raw -O qcow2 "$tmp/h2.raw" "$www/h2.qcow2"
truncate -s 512 "$tmp/zero.raw"
# Each worker's own base, which it alone uses, so that it goes unused
# (and prune removes it) whenever the worker has removed its disks.
for ((w = 0; w < procs; w++)); do random_image "$www/own$w.raw" 256K 2M; done

port=$(free_port)
if ! why=$(nginx_start "$tmp/nginx" "
  server {
    listen 127.0.0.1:$port;
    root $www;
    location /slow/ { alias $www/; limit_rate 4m; }
  }"); then
	skip "$why"
fi
http=http://127.0.0.1:$port
alog=$tmp/nginx/access.log

newconf "remove_unused_original_minimum_age_seconds = 3600" \
	"remove_unused_resized_minimum_age_seconds = 0" \
	"force_raw_images = false" "lock_timeout_seconds = 120"
# Sources by key; ref: what the disk must read as.
declare -A src=([a]=$www/a.raw [b]=$www/b.qcow2 [h1]=$http/slow/h1.raw
	[h2]=$http/slow/h2.qcow2)
declare -A ref=([a]=$www/a.raw [b]=$www/b.qcow2 [h1]=$www/h1.raw
	[h2]=$www/h2.qcow2 [blank]=$tmp/zero.raw)
for ((w = 0; w < procs; w++)); do
	src[own$w]=$www/own$w.raw ref[own$w]=$www/own$w.raw
done
file_ids=()
for k in "${!src[@]}"; do
	[[ ${src[$k]} == /* ]] &&
		file_ids+=("$(printf '%s' "${src[$k]}" | sha1sum | cut -c1-40)")
done

# worker W: $ops operations on its own instances; each op's outcome goes
# to w/W.log ("ok ..." or "FAIL ..."), the disks it leaves to w/W.state
# ("UUID DISK KIND SIZE").
worker() {
	local w=$1 i u d key kind size backend out rc
	local -a uuids=()
	local -A have=() sizes=()
	local kinds=(a b h1 h2 blank swap "own$w" "own$w" "own$w" "own$w")
	local backends=(flat qcow2 ploop)
	for ((i = 0; i < insts; i++)); do uuids+=("$(new_uuid)"); done
	for ((i = 0; i < ops; i++)); do
		u=${uuids[RANDOM % insts]}
		d=d$((RANDOM % 2))
		key="$u $d"
		if [[ -z "${have[$key]:-}" ]]; then
			kind=${kinds[RANDOM % ${#kinds[@]}]}
			backend=${backends[RANDOM % 3]}
			case $kind in
			blank) args=(--blank --size 4M) ;;
			swap) args=(--blank --size 4M --fs swap) ;;
			*) args=(--image "${src[$kind]}") ;;
			esac
			out=$("$cli" --config "$conf" create "$u" "$d" "${args[@]}" \
				--backend "$backend" 2>&1 >/dev/null)
			rc=$?
			if ((rc == 0)); then
				have[$key]=$kind
				sizes[$key]=0
			fi
			echo "$( ((rc == 0)) && echo ok || echo FAIL) create $u $d $kind $backend: $out"
		elif ((RANDOM % 2)); then
			size=$(( (RANDOM % 4 + 8) * 1024 * 1024 ))
			((size > ${sizes[$key]})) || size=$((sizes[$key] + 1048576))
			out=$("$cli" --config "$conf" resize "$u" "$d" "$size" 2>&1 >/dev/null)
			rc=$?
			((rc == 0)) && sizes[$key]=$size
			echo "$( ((rc == 0)) && echo ok || echo FAIL) resize $u $d $size: $out"
		else
			out=$("$cli" --config "$conf" remove "$u" "$d" 2>&1 >/dev/null)
			rc=$?
			((rc == 0)) && unset "have[$key]" "sizes[$key]"
			echo "$( ((rc == 0)) && echo ok || echo FAIL) remove $u $d: $out"
		fi
	done >"$tmp/w/$w.log"
	for key in "${!have[@]}"; do
		echo "$key ${have[$key]} ${sizes[$key]}"
	done >"$tmp/w/$w.state"
}

# The prune loop: age the local-file bases, prune, until told to stop.
prune_loop() {
	local runs=0 fails=0 id
	while [[ ! -e "$tmp/stop" ]]; do
		for id in "${file_ids[@]}"; do
			touch -c -d '2 days ago' "$inst/_base/$id" 2>/dev/null
		done
		if "$cli" --config "$conf" cache prune >>"$tmp/prune.out" 2>>"$tmp/prune.err"; then
			runs=$((runs + 1))
		else
			fails=$((fails + 1))
		fi
	done
	echo "$runs $fails" >"$tmp/prune.count"
}

start=$SECONDS
prune_loop &
prune_pid=$!
pids=()
for ((f = 0; f < fetchers; f++)); do
	for k in h1 h2; do
		"$cli" --config "$conf" fetch "${src[$k]}" >/dev/null 2>"$tmp/w/fetch$f$k.err" &
		pids+=($!)
	done
done
for ((w = 0; w < procs; w++)); do
	worker "$w" &
	pids+=($!)
done
fetch_fails=0
for p in "${pids[@]}"; do wait "$p" || fetch_fails=$((fetch_fails + 1)); done
touch "$tmp/stop"
wait "$prune_pid"
say "$procs workers x $ops operations, $((fetchers * 2)) fetches, prune loop: $((SECONDS - start)) s"

# ---- every operation succeeded ----
cat "$tmp"/w/*.log >"$tmp/ops.log"
total=$(wc -l <"$tmp/ops.log")
failures=$(grep -c '^FAIL' "$tmp/ops.log")
grep '^FAIL' "$tmp/ops.log" | head -n 5 | while read -r l; do say "$l"; done
check "$total operations of $procs workers all succeeded ($failures failed)" \
	test "$failures" -eq 0 -a "$total" -eq $((procs * ops))
check "$((fetchers * 2)) concurrent fetches succeeded" test "$fetch_fails" -eq 0
read -r prunes prune_fails <"$tmp/prune.count"
removed=$(grep -c '^removed' "$tmp/prune.out" 2>/dev/null)
check "$prunes prunes during the run, none failed ($removed bases removed)" \
	test "$prune_fails" -eq 0 -a "$prunes" -gt 0

# ---- every remaining disk is clean and reads right ----
disks=0 corrupt=0
while read -r u d kind size; do
	disks=$((disks + 1))
	why=""
	if ! "$cli" --config "$conf" --json info "$u" "$d" >"$tmp/info" 2>"$tmp/info.err"; then
		why="info failed: $(cat "$tmp/info.err")"
	else
		path=$("$py" -c 'import json,sys; print(json.load(sys.stdin)["path"])' <"$tmp/info")
		vsize=$("$py" -c 'import json,sys; print(json.load(sys.stdin)["virtual_size"])' <"$tmp/info")
		qemu-img check -q "$path" >/dev/null 2>&1
		rc=$?
		if ((rc != 0 && rc != 63)); then # 63: raw, which has nothing to check
			why="qemu-img check exit $rc"
		elif ((size > 0 && vsize != size)); then
			why="virtual size $vsize, resized to $size"
		elif [[ $kind != swap ]] &&
			! qemu-img compare -q "$path" "${ref[$kind]}" >/dev/null 2>&1; then
			why="does not read as its source ($kind)"
		fi
	fi
	if [[ -n "$why" ]]; then
		corrupt=$((corrupt + 1))
		say "disk $u/$d ($kind): $why"
	fi
done < <(cat "$tmp"/w/*.state)
check "$disks remaining disks pass qemu-img check and read as their source ($corrupt not)" \
	test "$corrupt" -eq 0

# ---- every base a record names is there ----
missing=$("$py" - "$inst" <<'EOF'
import glob, json, os, sys
inst = sys.argv[1]
bases = set()
for rec in glob.glob(os.path.join(inst, "*", ".vmdisk.json")):
    for d in json.load(open(rec))["disks"].values():
        if d.get("base"):
            bases.add(d["base"])
print(sum(not os.path.isfile(os.path.join(inst, "_base", b)) for b in bases),
      len(bases))
EOF
)
read -r nmissing nbases <<<"$missing"
check "every base in use is in the cache ($nbases in use, $nmissing missing)" \
	test "$nmissing" -eq 0

# ---- one download per HTTP image ----
most=0
for k in h1 h2; do
	name=${src[$k]#"$http"}
	gets=$(grep -c "^GET $name 200 " "$alog")
	others=$(grep "^GET $name " "$alog" | grep -vc "^GET $name 200 ")
	check "$name: nginx served one full GET ($gets, $others other)" \
		test "$gets" -eq 1 -a "$others" -eq 0
	((gets + others > most)) && most=$((gets + others))
done

# ---- no lock held, no temporary ----
held=0 locks=0
for l in "$inst"/locks/*; do
	[[ -f "$l" ]] || continue
	locks=$((locks + 1))
	flock -n -x "$l" true || { held=$((held + 1)); say "held: $l"; }
done
check "no lock held ($locks lock files)" test "$held" -eq 0
# Besides entries and their records: derived bases (swap_SIZE).
left=$(find "$inst/_base" -maxdepth 1 -type f -regextype posix-extended \
	! -regex '.*/[0-9a-f]{40}' ! -regex '.*/\.[0-9a-f]{40}\.(json|failed)' \
	! -regex '.*/[a-z]+_[0-9]+(_[a-z0-9]+)?' -printf '%f ')
check "no temporary in the cache${left:+: $left}" test -z "$left"
# In an instance directory: its record and its disks only.
cat "$tmp"/w/*.state >"$tmp/states"
stray=$("$py" - "$inst" "$tmp/states" <<'EOF'
import os, sys
inst = sys.argv[1]
keep = {}
for line in open(sys.argv[2]):
    u, d = line.split()[:2]
    keep.setdefault(u, set()).add(d)
for u in os.listdir(inst):
    if u in ("_base", "locks"):
        continue
    for f in os.listdir(os.path.join(inst, u)):
        if f != ".vmdisk.json" and f not in keep.get(u, ()):
            print(u + "/" + f)
EOF
)
check "no temporary or stray file in an instance directory${stray:+: $stray}" \
	test -z "$stray"

figure concurrency_procs "$procs"
figure concurrency_ops "$total"
figure concurrency_prunes "$prunes"
figure concurrency_corrupt "$corrupt"
figure downloads_per_base "$most"
finish
