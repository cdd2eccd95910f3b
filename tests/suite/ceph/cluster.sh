#!/usr/bin/env bash
# A throw-away single-node Ceph on 127.0.0.1 for the RBD tests and bench.
#
#   cluster.sh start DIR   make and start mon + osd in DIR (empty, from mktemp),
#                          create the pools "images" and "vms"; exit 77 with a
#                          reason when a cluster cannot start here
#   cluster.sh stop DIR    stop the daemons by PID (zombie-aware), keep DIR
#   cluster.sh env DIR     print the exports a client needs
#
# One monitor, one OSD (memstore, or $VMD_CEPH_STORE=bluestore on a sparse
# file), no manager, cephx on, pool size 1. Nothing outside DIR is written.
set -euo pipefail

cmd=${1:-}
D=${2:-}
[ -n "$cmd" ] && [ -n "$D" ] || { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
C=(-c "$D/ceph.conf")
STORE=${VMD_CEPH_STORE:-memstore}

skip() { echo "ceph cluster cannot start: $*"; exit 77; }

alive() { # pid -> 0 when running and not a zombie
	local st
	st=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "$st" != Z ]
}

stop_pid() {
	local pidf=$1 pid
	[ -f "$pidf" ] || return 0
	pid=$(cat "$pidf")
	if alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
		alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
		for _ in $(seq 1 20); do alive "$pid" || break; sleep 0.1; done
	fi
	rm -f "$pidf"
}

wait_for() { # seconds, command...
	local n=$(( $1 * 2 )); shift
	for _ in $(seq 1 "$n"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	return 1
}

ceph_() { timeout 20 ceph "${C[@]}" --connect-timeout 10 "$@"; }

start() {
	for p in ceph-mon ceph-osd ceph ceph-authtool monmaptool uuidgen rbd; do
		command -v "$p" >/dev/null || skip "$p not installed"
	done
	for port in 3300 6789 6800 6801 6802 6803 6804 6805 6806 6807; do
		if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
			skip "port $port busy (another cluster running?)"
		fi
	done
	mkdir -p "$D/run" "$D/log" "$D/mon" "$D/osd"
	local F
	F=$(uuidgen)
	cat > "$D/ceph.conf" <<CONF
[global]
fsid = $F
mon host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$cluster-\$name.asok
pid file = $D/run/\$cluster-\$name.pid
log file = $D/log/\$cluster-\$name.log
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
osd objectstore = $STORE
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon data avail warn = 1
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
auth allow insecure global id reclaim = false
memstore device bytes = 8589934592
bluestore block path = $D/osd/\$cluster-\$id/block.file
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
osd memory target = 939524096
[osd.0]
keyring = $D/osd/ceph-0/keyring
CONF
	echo "$F" > "$D/fsid"
	(umask 077
	 ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *'
	 ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' \
		--cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *') >/dev/null
	monmaptool --create --fsid "$F" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' \
		"$D/monmap" >/dev/null
	ceph-mon "${C[@]}" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" \
		>"$D/log/mkfs-mon.out" 2>&1 || skip "ceph-mon --mkfs failed"
	setsid ceph-mon "${C[@]}" -i a -f </dev/null >"$D/log/mon.out" 2>&1 &
	echo $! > "$D/mon.pid"
	wait_for 30 ceph_ mon stat || skip "monitor did not answer (see $D/log)"

	local secret ouuid id
	secret=$(ceph-authtool --gen-print-key)
	ouuid=$(uuidgen)
	(umask 077; printf '{"cephx_secret": "%s"}\n' "$secret" > "$D/osd/new.json")
	id=$(ceph_ osd new "$ouuid" -i "$D/osd/new.json")
	mkdir -p "$D/osd/ceph-$id"
	ceph-osd "${C[@]}" -i "$id" --mkfs --key "$secret" --osd-uuid "$ouuid" \
		>"$D/log/mkfs-osd.out" 2>&1 || skip "ceph-osd --mkfs failed"
	(umask 077; ceph-authtool --create-keyring "$D/osd/ceph-$id/keyring" \
		-n "osd.$id" --add-key "$secret" >/dev/null)
	rm -f "$D/osd/new.json"
	setsid ceph-osd "${C[@]}" -i "$id" -f </dev/null >"$D/log/osd.out" 2>&1 &
	echo $! > "$D/osd.pid"
	osd_up() { ceph_ osd stat | grep -q '1 up.*1 in'; }
	wait_for 60 osd_up || skip "OSD did not come up (see $D/log)"
	# Snapshot trimming on memstore can crash this OSD (ceph 16.2.15:
	# SIGSEGV in MemStore::OmapIteratorImpl::value under
	# SnapMapper::get_next_objects_to_trim, after a snapshot is removed),
	# which hangs every test after it. A throw-away cluster needs no space
	# back from removed snapshots; the tests count head objects only.
	ceph_ osd set nosnaptrim >/dev/null 2>&1 ||
		echo "ceph: could not set nosnaptrim; snapshot trimming may crash the OSD" >&2
	for pool in images vms; do
		ceph_ osd pool create "$pool" 8 >/dev/null 2>&1
		timeout 30 rbd "${C[@]}" pool init "$pool"
	done
}

case $cmd in
start)
	# A half-started cluster is stopped before the skip/failure is reported.
	trap 'rc=$?; [ $rc -eq 0 ] || { stop_pid "$D/osd.pid"; stop_pid "$D/mon.pid"; }; exit $rc' EXIT
	trap 'exit 143' TERM INT
	start
	;;
stop)
	stop_pid "$D/osd.pid"
	stop_pid "$D/mon.pid"
	;;
env)
	echo "export VMDISK_CEPH_CONF=$D/ceph.conf"
	echo "export VMDISK_CEPH_FSID=$(cat "$D/fsid")"
	;;
*) echo "usage: $0 start|stop|env DIR" >&2; exit 2 ;;
esac
