# Guest half of the power-loss part (busybox sh, inside the VM that
# tests/suite/reliability/parts/20-powerloss.sh boots). For each filesystem
# in $PL_FS (ext4, xfs):
#   record: the instances filesystem on dm-log-writes (data slice of
#     /dev/vda, log slice of /dev/vdb); vmdisk creates a flat, a qcow2 and a
#     ploop disk of one instance and fetches a file:// image into the cache,
#     and after each one reports success the log gets a mark pub-NAME;
#   replay: to $PL_POINTS points (every flush/FUA entry, every mark and
#     random entries between, thinned evenly to that many), each onto a
#     slice of /dev/vdc, then through a throwaway dm snapshot (COW on
#     /dev/vdd) mounted at the same path, so journal recovery runs without
#     touching the replay; check:
#     - a published operation (its mark before the point): its disk passes
#       qemu-img check and compares equal to its base, its cache entry equals
#       the source, the instance record names it (vmdisk info);
#     - an unpublished one: absent, or complete (never torn) under its final
#       name; only temporaries besides;
#     - every disk the instance record names is there and complete;
#     then the next run: each operation whose result is missing is run
#     again and succeeds, and no temporary is left in the cache.
# Prints "ok - ..." / "not ok - ..." lines and "figure: NAME VALUE" lines.
ID=7d1c5e6a-3b2f-4c1d-9e8f-0a1b2c3d4e5f
CONF=/etc/vmdisk.conf
CLI=${VMDISK_CLI:?}
S=2097152 # sectors in a slice (1 GiB)
points_total=0
torn_total=0
rerun_total=0
printf '[DEFAULT]\ninstances_path = /inst\nlog_target = none\n' >$CONF
mkdir -p /inst

# dmc NAME TABLE: a device-mapper device with its /dev/mapper node (no udev
# here to make it).
dmc() {
	dmsetup create "$1" --table "$2" && dmsetup mknodes "$1"
}
slice() { # NAME DEV INDEX
	dmc "$1" "0 $S linear $2 $(($3 * S))"
}

# is_complete KIND PATH: the disk of that kind equals its base.
is_complete() {
	case $1 in
	flat) qemu-img compare -q -f raw -F raw "$2" /srv/base.raw ;;
	qcow2) qemu-img check -q -f qcow2 "$2" >/dev/null &&
		qemu-img compare -q -f qcow2 -F raw "$2" /srv/base.raw ;;
	ploop) # root.hds of a raw or flattened base is raw, else Parallels
		[ -f "$2/DiskDescriptor.xml" ] || return 1
		case $(head -c 16 "$2/root.hds") in
		WithoutFreeSpace | WithouFreSpacExt)
			qemu-img check -q -f parallels "$2/root.hds" >/dev/null &&
				qemu-img compare -q -f parallels -F qcow2 \
					"$2/root.hds" /srv/base.qcow2 ;;
		*) qemu-img compare -q -f raw -F qcow2 "$2/root.hds" /srv/base.qcow2 ;;
		esac ;;
	esac
}

# check POINT: the invariants on the filesystem mounted at /inst; prints one
# reason a line for what is torn.
check() {
	for d in flat qcow2 ploop; do
		pub=0
		[ "$(awk -v p="$1" -v m="pub-$d" '$5 == m && $1 < p' /tmp/entries)" ] && pub=1
		if [ -e "/inst/$ID/$d" ]; then
			is_complete "$d" "/inst/$ID/$d" ||
				echo "disk $d under its final name but not complete (published $pub)"
		elif [ $pub = 1 ]; then
			echo "published disk $d missing"
		fi
		if [ $pub = 1 ]; then
			"$CLI" --config $CONF info "$ID" "$d" >/dev/null 2>&1 ||
				echo "published disk $d: vmdisk info fails (record disagrees)"
		fi
		if [ -f "/inst/$ID/.vmdisk.json" ] &&
			grep -q "\"$d\"" "/inst/$ID/.vmdisk.json" &&
			! is_complete "$d" "/inst/$ID/$d"; then
			echo "record names disk $d, which is missing or not complete"
		fi
	done
	# Cache entries: published ones present and equal to their source;
	# any 40-hex name complete; everything else is a temporary.
	while read -r src entry mark; do
		pub=0
		[ "$(awk -v p="$1" -v m="$mark" '$5 == m && $1 < p' /tmp/entries)" ] && pub=1
		if [ -e "/inst/_base/$entry" ]; then
			# Cached flattened: raw, whatever the source's format.
			qemu-img compare -q -f raw "/inst/_base/$entry" "$src" ||
				echo "cache entry of $src under its final name but not complete (published $pub)"
		elif [ $pub = 1 ]; then
			echo "published cache entry of $src missing"
		fi
	done </tmp/cache_map
	for f in /inst/_base/* /inst/_base/.*; do
		b=${f##*/}
		case $b in . | .. | '*' | '.*') continue ;; esac
		grep -q " $b " /tmp/cache_map && continue
		case $b in
		.*.json) ;;
		*) temporaries=$((temporaries + 1))
			echo "$b" >>/tmp/temporaries ;;
		esac
	done
}

# rerun: the next run after the power loss succeeds: each operation whose
# result is not there is run again and must succeed and leave it complete;
# then no temporary is left in the cache. Prints a reason a line.
rerun() {
	for d in flat qcow2 ploop; do
		[ -e "/inst/$ID/$d" ] && continue
		src=/srv/base.raw
		[ $d = ploop ] && src=/srv/base.qcow2
		"$CLI" --config $CONF create "$ID" "$d" --image "$src" \
			--backend "$d" >/tmp/rerun.out 2>&1 ||
			echo "create $d again failed: $(cat /tmp/rerun.out)"
		is_complete "$d" "/inst/$ID/$d" ||
			echo "create $d again: not complete"
	done
	"$CLI" --config $CONF fetch file:///srv/other.raw >/tmp/rerun.out 2>&1 ||
		echo "fetch again failed: $(cat /tmp/rerun.out)"
	for f in /inst/_base/*; do
		[ -e "$f" ] || continue
		b=${f##*/}
		echo "$b" | grep -qE '^[0-9a-f]{40}$' ||
			echo "temporary $b left after the next operations"
	done
	for f in /inst/_base/.*; do
		case ${f##*/} in . | .. | .*.json) ;; *) echo "temporary ${f##*/} left after the next operations" ;; esac
	done
}

run_fs() { # FS
	fs=$1
	i=0
	[ "$fs" = xfs ] && i=1
	if ! { slice "data_$fs" /dev/vda $i && slice "log_$fs" /dev/vdb $i &&
		slice "rep_$fs" /dev/vdc $i; }; then
		echo "not ok - $fs: slices of the virtio disks"
		return
	fi
	if ! dmc "lw_$fs" \
		"0 $S log-writes /dev/mapper/data_$fs /dev/mapper/log_$fs"; then
		echo "not ok - $fs: dm-log-writes target"
		return
	fi
	# No discards: the replay writes them as zeros, a whole-device one
	# would cost minutes under TCG.
	case $fs in
	ext4) mkfs.ext4 -q -E nodiscard "/dev/mapper/lw_$fs" 256M ;;
	xfs) mkfs.xfs -q -K -d size=512m "/dev/mapper/lw_$fs" ;;
	esac >/tmp/mkfs.out 2>&1 || {
		echo "not ok - $fs: mkfs"
		sed 's/^/#   /' /tmp/mkfs.out
		return
	}
	dmsetup message "lw_$fs" 0 mark mkfs
	mount -t "$fs" "/dev/mapper/lw_$fs" /inst || {
		echo "not ok - $fs: mount"
		return
	}
	: >/tmp/cache_map
	ok=1
	for op in "flat /srv/base.raw" "qcow2 /srv/base.raw" \
		"ploop /srv/base.qcow2" "fetch /srv/other.raw"; do
		# shellcheck disable=SC2086 # two words: the operation, the source
		set -- $op
		# (A first line: grep -f of an empty file matches nothing.)
		{ echo /; ls -a /inst/_base 2>/dev/null; } >/tmp/before
		if [ "$1" = fetch ]; then
			"$CLI" --config $CONF fetch "file://$2" >/tmp/op.out 2>&1
		else
			"$CLI" --config $CONF create "$ID" "$1" --image "$2" \
				--backend "$1" >/tmp/op.out 2>&1
		fi || {
			echo "not ok - $fs: vmdisk $1 from $2"
			sed 's/^/#   /' /tmp/op.out
			ok=0
			continue
		}
		dmsetup message "lw_$fs" 0 mark "pub-$1"
		# The entry this operation published (none when already cached).
		ls -a /inst/_base | grep -vxF -f /tmp/before |
			grep -E '^[0-9a-f]{40}$' | while read -r e; do
			echo "$2 $e pub-$1" >>/tmp/cache_map
		done
	done
	[ $ok = 1 ] && echo "ok - $fs: vmdisk create flat, qcow2, ploop and fetch on dm-log-writes"
	# The control, to show the checks can see a tear: a writer that calls
	# a file published without fsync. Replayed to just after its mark,
	# the file must not be there complete.
	cat /srv/other.raw >/inst/control.raw
	dmsetup message "lw_$fs" 0 mark pub-control
	umount /inst
	dmsetup remove "lw_$fs"
	replay list "/dev/mapper/log_$fs" >/tmp/entries || {
		echo "not ok - $fs: reading the log"
		return
	}
	# Points: after every flush/FUA entry and every mark, and random
	# entries between; none before mkfs finished. Thinned evenly to
	# PL_POINTS, then the points just after each pub-* mark (an operation
	# has just reported success: the hardest moment for it) added.
	awk -v want="$PL_POINTS" -v seed="$PL_SEED" '
		$5 == "mkfs" { start = $1 + 1 }
		{ n = $1 + 1; fl[$1] = $2 }
		END {
			srand(seed)
			for (i = start; i < n; i++)
				if (and(fl[i], 11)) c[i + 1] = 1
			for (k = 0; k < want; k++)
				c[start + 1 + int(rand() * (n - start))] = 1
			m = 0
			for (p = start + 1; p <= n; p++) if (p in c) l[m++] = p
			if (m <= want) { for (j = 0; j < m; j++) print l[j]; exit }
			for (j = 0; j < want - 1; j++) print l[int(j * m / want)]
			print l[m - 1]
		}' /tmp/entries >/tmp/points.all
	ctl=$(awk '$5 == "pub-control" { print $1 + 1 }' /tmp/entries)
	awk '$5 ~ /^pub-/ { print $1 + 1 }' /tmp/entries |
		cat /tmp/points.all - | sort -n -u | grep . >/tmp/points
	echo "# $fs: $(wc -l </tmp/entries) log entries, $(grep -c '' /tmp/points) points"
	prev=0
	torn=0
	temporaries=0
	: >/tmp/temporaries
	npoints=0
	reruns_bad=0
	while read -r p; do
		if ! replay apply "/dev/mapper/log_$fs" "/dev/mapper/rep_$fs" "$prev" "$p"; then
			echo "not ok - $fs: replay to entry $p"
			break
		fi
		prev=$p
		npoints=$((npoints + 1))
		dmc "snap_$fs" \
			"0 $S snapshot /dev/mapper/rep_$fs /dev/vdd N 8" || {
			echo "not ok - $fs: snapshot of the replay"
			break
		}
		opts=
		[ "$fs" = xfs ] && opts="-o nouuid"
		if mount -t "$fs" $opts "/dev/mapper/snap_$fs" /inst 2>/tmp/mount.err; then
			check "$p" >/tmp/torn
			if [ -n "$ctl" ] && [ "$p" = "$ctl" ]; then
				if cmp -s /inst/control.raw /srv/other.raw; then
					echo "not ok - $fs: control: an unsynced file survived complete, the replay shows no power loss"
				else
					echo "ok - $fs: control: an unsynced file published without fsync is torn at its mark (the checks see tears)"
				fi
			fi
			rerun >/tmp/rerun
			umount /inst
		else
			: >/tmp/rerun
			echo "the filesystem does not mount: $(cat /tmp/mount.err)" >/tmp/torn
		fi
		dmsetup remove "snap_$fs"
		if [ -s /tmp/rerun ]; then
			reruns_bad=$((reruns_bad + 1))
			echo "not ok - $fs: the next operations after a power loss at log entry $p"
			sed 's/^/#   /' /tmp/rerun
		fi
		if [ -s /tmp/torn ]; then
			torn=$((torn + 1))
			echo "not ok - $fs: power loss at log entry $p of $(wc -l </tmp/entries)"
			sed 's/^/#   /' /tmp/torn
		fi
	done </tmp/points
	points_total=$((points_total + npoints))
	torn_total=$((torn_total + torn))
	rerun_total=$((rerun_total + reruns_bad))
	[ $torn = 0 ] && [ $npoints -gt 0 ] &&
		echo "ok - $fs: $npoints power losses replayed, published survives, nothing torn"
	[ $reruns_bad = 0 ] && [ $npoints -gt 0 ] &&
		echo "ok - $fs: after each, the operations run again succeed and leave no temporary"
	echo "# $fs: $npoints points, $torn torn, $temporaries temporaries seen" \
		"$(sort -u /tmp/temporaries | tr '\n' ' ')"
}

for fs in $PL_FS; do
	t0=$(date +%s)
	run_fs "$fs"
	echo "# $fs: $(($(date +%s) - t0)) s"
done
echo "figure: powerloss_points $points_total"
echo "figure: powerloss_torn $torn_total"
echo "figure: powerloss_rerun_failed $rerun_total"
