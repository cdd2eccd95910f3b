# Guest half of the vm-crash part (busybox sh, inside the VM that
# tests/suite/reliability/parts/25-vm-crash.sh boots), as root: vmdisk
# starts a one-shot `vmdiskd --stdio` for each privileged step.
#
# Crash consistency of the lvm backend: for each kind of disk (plain,
# thin, LUKS-encrypted with a key file), create and remove are first run
# with VMDISK_FAULT_TRACE to learn the fault points they pass (the helper
# appends its own), then killed (VMDISK_FAULT=POINT@N:kill, in vmdisk or in
# vmdiskd, whichever reaches the hit) at each chosen hit, and at random
# times (SIGKILL to vmdisk and its helper). After each kill the same command
# runs again and must succeed (unless the killed one had finished: its
# record says so); then:
#   create: the LV is there, `vmdisk info` names it (the record agrees),
#     its content (the LV, or the dm-crypt mapping) equals the base, no
#     other LV of the instance exists;
#   remove: no LV of the instance, no dm-crypt mapping, `vmdisk info`
#     fails (no record of it).
# Secrets: with log_level = debug (stderr to a file per run) and the
# vmdiskd audit log, create, resize and remove an encrypted LV; every log,
# stderr, audit file and the test folders are packed (tar) onto /dev/vdb
# for the host to scan for the planted key (it knows the key's forms).
#
# Env: VMDISK_CLI, VC_POINTS (hits to kill per op, 0 = all), VC_RANDOM
# (random kills per op), VC_SEED. Prints "ok - " / "not ok - " lines and
# "figure: NAME VALUE".
ID=5b0e2c1d-8f3a-4e7b-9c6d-2a1f0e9d8c7b
VG=vmdcrash
CLI=${VMDISK_CLI:?}
KEY_ID=$(cat /etc/vmcrash/key_id)
trials=0
inconsistent=0
mkdir -p /inst /out/logs /var/log/vmdisk /run/lock/lvm /run/cryptsetup

say_bad() { echo "not ok - $*"; }

if ! { pvcreate -qq /dev/vda && vgcreate -qq $VG /dev/vda &&
	lvcreate -qq -y -L 64m -T $VG/pool; } >/tmp/vg.out 2>&1; then
	say_bad "pvcreate, vgcreate and the thin pool on /dev/vda"
	sed 's/^/#   /' /tmp/vg.out
	echo "figure: vm_crash_trials 0"
	echo "figure: vm_crash_inconsistent 0"
	exit 0
fi
for kind in plain thin enc; do
	{
		printf '[DEFAULT]\ninstances_path = /inst\nimages_type = lvm\n'
		printf 'images_volume_group = %s\nlog_target = stderr\n' $VG
		printf 'log_level = debug\nvmdiskd_audit_log = /var/log/vmdisk/audit.log\n'
		case $kind in
		thin) printf 'sparse_logical_volumes = true\nlvm_thin_pool = pool\n' ;;
		enc) printf 'ephemeral_storage_encryption_enabled = true\n'
			printf 'key_manager = file\nkey_file_dir = /keys\n' ;;
		esac
	} >/etc/vmcrash/$kind.conf
done
base_size=$(wc -c </srv/base.raw)

# lvname KIND: the LV of the instance's disk named KIND.
lvname() { echo "${ID}_$1"; }
# run OP KIND [ENV...]: one vmdisk run, its stderr appended to the log.
# /tmp/run.out has its last error lines.
run() {
	local rop=$1 rkind=$2 rc
	shift 2
	case $rop in
	create)
		set -- "$@" "$CLI" --config /etc/vmcrash/$rkind.conf create "$ID" \
			"$rkind" --image /srv/base.raw --backend lvm
		[ $rkind = enc ] && set -- "$@" --key-id "$KEY_ID" ;;
	remove) set -- "$@" "$CLI" --config /etc/vmcrash/$rkind.conf remove "$ID" "$rkind" ;;
	esac
	env "$@" >/dev/null 2>/tmp/run.err
	rc=$?
	cat /tmp/run.err >>/out/logs/crash.log
	grep -vi 'debug' /tmp/run.err | tail -n 3 >/tmp/run.out
	return $rc
}
# our_lvs: the LVs of the instance, one a line.
our_lvs() { lvs --noheadings -o lv_name $VG 2>/dev/null | tr -d ' ' | grep "^$ID" ; }
# check_created KIND: reasons, a line each, the created disk is not right.
check_created() {
	local lv dev
	lv=$(lvname "$1")
	[ "$(our_lvs)" = "$lv" ] || echo "LVs of the instance: $(our_lvs | tr '\n' ' ')"
	"$CLI" --config /etc/vmcrash/$1.conf info "$ID" "$1" >/dev/null 2>&1 ||
		echo "vmdisk info fails: no record of the LV"
	dev=/dev/$VG/$lv
	if [ "$1" = enc ]; then
		dev=$(dmsetup ls --target crypt 2>/dev/null | awk -v l="$lv" 'index($1, l) { print $1; exit }')
		[ -n "$dev" ] || { echo "no dm-crypt mapping of $lv"; return; }
		dev=/dev/mapper/$dev
		[ -b "$dev" ] || dmsetup mknodes >/dev/null 2>&1
	fi
	cmp -s -n "$base_size" /srv/base.raw "$dev" || echo "$dev differs from the base"
}
# check_removed KIND: reasons the disk is not wholly gone.
check_removed() {
	[ -z "$(our_lvs)" ] || echo "LVs left: $(our_lvs | tr '\n' ' ')"
	dmsetup ls 2>/dev/null | grep -q "$ID" &&
		echo "device-mapper devices left: $(dmsetup ls | grep "$ID" | tr '\n' ' ')"
	"$CLI" --config /etc/vmcrash/$1.conf info "$ID" "$1" >/dev/null 2>&1 &&
		echo "vmdisk info still names the removed disk"
}
# trial OP KIND HOW: the state before OP set up, OP killed by HOW (a fault
# spec, or random:MS), then OP again and the checks. Counted.
trial() {
	local op=$1 kind=$2 how=$3 pid
	if [ $op = remove ]; then
		if ! run create "$kind"; then
			say_bad "$kind: create before a remove trial: $(cat /tmp/run.out)"
			inconsistent=$((inconsistent + 1))
			for l in $(our_lvs); do lvremove -qq -f "$VG/$l" >/dev/null 2>&1; done
			rm -rf "/inst/$ID"
			return
		fi
	fi
	case $how in
	random:*)
		# SIGKILL to vmdisk and its helper (its own process group).
		setsid env VMDISK_FAULT= "$CLI" --config /etc/vmcrash/$kind.conf "$op" "$ID" "$kind" \
			$( [ $op = create ] && echo --image /srv/base.raw --backend lvm ) \
			$( [ $op = create ] && [ $kind = enc ] && echo --key-id "$KEY_ID" ) \
			>/dev/null 2>>/out/logs/crash.log &
		pid=$!
		usleep "${how#random:}000"
		kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null ;;
	*) run "$op" "$kind" "VMDISK_FAULT=$how:kill" ;;
	esac
	trials=$((trials + 1))
	: >/tmp/why
	# When the killed run had finished its work (the record already says
	# so, as after the kill at the last points), the result is checked as
	# it is: running it again would only be refused (exists / not found).
	# A remove always runs again: it must succeed, or find nothing left
	# to remove ("not found") when the killed one had got that far.
	finished=0
	if [ $op = create ] &&
		"$CLI" --config /etc/vmcrash/$kind.conf info "$ID" "$kind" >/dev/null 2>&1; then
		finished=1
	fi
	if [ $op = remove ] && ! run remove "$kind" &&
		! grep -q 'not found' /tmp/run.out; then
		echo "the next remove failed: $(cat /tmp/run.out)" >>/tmp/why
	elif [ $op = remove ]; then
		check_removed "$kind" >>/tmp/why
	elif [ $finished = 0 ] && ! run "$op" "$kind"; then
		echo "the next $op failed: $(cat /tmp/run.out)" >>/tmp/why
		# Someone must clean up for the trials that follow.
		env "$CLI" --config /etc/vmcrash/$kind.conf remove "$ID" "$kind" >/dev/null 2>&1
	elif [ $op = create ]; then
		check_created "$kind" >>/tmp/why
		run remove "$kind" || echo "remove after the create failed: $(cat /tmp/run.out)" >>/tmp/why
	else
		check_removed "$kind" >>/tmp/why
	fi
	if [ -s /tmp/why ]; then
		inconsistent=$((inconsistent + 1))
		say_bad "$kind $op killed at $how"
		sed 's/^/#   /' /tmp/why
		# Leave a clean VG for the next trial.
		for l in $(our_lvs); do lvremove -qq -f "$VG/$l" >/dev/null 2>&1; done
		rm -rf "/inst/$ID"
	fi
}

uptime_cs() { awk '{ print int($1 * 100) }' /proc/uptime; }

for kind in plain thin enc; do
	for op in create remove; do
		[ $op = remove ] && { run create $kind || say_bad "$kind: create"; }
		rm -f /tmp/trace
		t0=$(uptime_cs)
		if ! run $op $kind VMDISK_FAULT_TRACE=/tmp/trace; then
			say_bad "$kind $op without faults: $(cat /tmp/run.out)"
			continue
		fi
		ms=$((($(uptime_cs) - t0) * 10))
		[ $op = remove ] && run remove $kind >/dev/null 2>&1
		[ $op = create ] && { run remove $kind || say_bad "$kind remove"; }
		sort -u /tmp/trace | awk '{ print $1 "@" $2 }' >/tmp/hits
		nh=$(grep -c . /tmp/hits)
		echo "# $kind $op: $nh fault point hits ($(awk -F@ '{ print $1 }' /tmp/hits | sort -u | tr '\n' ' ')), $ms ms"
		# Thinned evenly to VC_POINTS (the first and last kept).
		awk -v want="${VC_POINTS:-0}" '{ l[NR] = $0 } END {
			if (want <= 0 || NR <= want) { for (i = 1; i <= NR; i++) print l[i]; exit }
			for (j = 0; j < want - 1; j++) print l[1 + int(j * NR / want)]
			print l[NR] }' /tmp/hits >/tmp/chosen
		before=$inconsistent
		n0=$trials
		while read -r h; do trial $op $kind "$h"; done </tmp/chosen
		awk -v seed="$VC_SEED$kind$op" -v n="${VC_RANDOM:-0}" -v ms="$ms" 'BEGIN {
			s = 0; for (i = 1; i <= length(seed); i++) s = s * 31 + index("0123456789abcdefghijklmnopqrstuvwxyz", substr(seed, i, 1))
			srand(s % 2147483647)
			for (i = 0; i < n; i++) print int(rand() * ms) }' >/tmp/delays
		while read -r d; do trial $op $kind "random:$d"; done </tmp/delays
		[ $inconsistent = "$before" ] &&
			echo "ok - $kind $op: $((trials - n0)) kills, each next run succeeded and left nothing half made"
	done
done
echo "figure: vm_crash_trials $trials"
echo "figure: vm_crash_inconsistent $inconsistent"

# ---- secrets: an encrypted LV created, grown and removed at debug ----
C=/etc/vmcrash/enc.conf
sec_ok=1
: >/var/log/vmdisk/audit.log
"$CLI" --config $C create "$ID" sec --image /srv/base.raw --backend lvm \
	--key-id "$KEY_ID" >/out/logs/create.out 2>/out/logs/create.err || sec_ok=0
"$CLI" --config $C resize "$ID" sec 16M >/out/logs/resize.out 2>/out/logs/resize.err || sec_ok=0
"$CLI" --config $C info "$ID" sec >/out/logs/info.out 2>/out/logs/info.err || sec_ok=0
"$CLI" --config $C remove "$ID" sec >/out/logs/remove.out 2>/out/logs/remove.err || sec_ok=0
# A refused one too: a key id with no key file (its error line is checked).
"$CLI" --config $C create "$ID" sec2 --image /srv/base.raw --backend lvm \
	--key-id 00000000-0000-4000-8000-000000000000 >/out/logs/nokey.out 2>/out/logs/nokey.err &&
	sec_ok=0
if [ $sec_ok = 1 ]; then
	echo "ok - secrets: encrypted LV created, resized, removed at log_level = debug (and a missing key refused)"
else
	say_bad "secrets: the encrypted LV operations"
	tail -n 3 /out/logs/*.err | sed 's/^/#   /'
fi
grep -c . /out/logs/create.err | sed 's/^/# debug lines of the create: /'
cp /var/log/vmdisk/audit.log /out/audit.log 2>/dev/null
# The test folders, modes kept, for the host's scan.
tar -cf /dev/vdb /out /inst /var/log/vmdisk /tmp /etc/vmcrash /run/cryptsetup 2>/dev/null ||
	say_bad "packing the test folders onto /dev/vdb"
