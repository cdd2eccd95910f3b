# Guest half of bench/lvm.sh (busybox sh inside tests/suite/vm/run.sh's VM, run
# instead of the tests when VMDISK_VM_GUEST_SCRIPT names this file).
#
# Times N blank 64 MiB thin disks made and removed three ways, on a VG on
# /dev/vdb:
#   anchor: lvcreate -V ... -T + lvremove (the lvm2 CLI alone);
#   root:   vmdisk create --blank + remove as root (steps in-process);
#   helper: the same as an unprivileged user through vmdiskd.
# Prints "# bench: NAME TOTAL_MS" lines and "ok - ..." per phase.
N=${VMDISK_BENCH_N:-10}
VG=vmdbench
INST=6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b
cli=$VMDISK_BUILD_DIR/tools/vmdisk
daemon=$VMDISK_BUILD_DIR/tools/vmdiskd
# As root, vmdisk runs `vmdiskd --stdio`: the build's one (fault-injection
# builds take VMDISK_VMDISKD; bench/lvm.sh asks for one), not the installed
# path, which the guest does not have.
export VMDISK_VMDISKD=$daemon
dir=/tmp/bench

ms() { # milliseconds since boot, from /proc/uptime (10 ms steps)
	read -r up _ </proc/uptime
	frac=${up#*.}
	echo $((${up%.*} * 1000 + ${frac#0} * 10))
}
phase() { # name, then the command to time
	name=$1
	shift
	t0=$(ms)
	if "$@" >/tmp/bench.out 2>&1; then
		echo "# bench: $name $(($(ms) - t0))"
		echo "ok - $name"
	else
		echo "not ok - $name"
		tail -n 8 /tmp/bench.out | sed 's/^/#   /'
	fi
}

mkdir -p $dir/inst-root $dir/inst-user $dir/keys
pvcreate -qq /dev/vdb && vgcreate -qq -s 4m $VG /dev/vdb &&
	lvcreate -qq -y -L 512m -T $VG/vmdisk-thinpool || echo "not ok - VG"
echo 'root:x:0:0::/root:/bin/sh' >/etc/passwd
echo 'bench:x:1000:1000::/tmp:/bin/sh' >>/etc/passwd
printf 'root:x:0:\nbench:x:1000:\nvmdisk:x:990:bench\n' >/etc/group
chown 1000:1000 $dir/inst-user
chmod 755 $dir
conf() { # instances dir
	cat <<EOF
[vmdisk]
instances_path = $1
images_type = lvm
images_volume_group = $VG
sparse_logical_volumes = true
vmdiskd_socket = $dir/vmdiskd.sock
vmdiskd_policy_file = $dir/policy
vmdiskd_audit_log = $dir/audit.log
log_target = stderr
log_level = error
EOF
}
conf $dir/inst-root >$dir/root.conf
conf $dir/inst-user >$dir/user.conf
chmod 644 $dir/root.conf $dir/user.conf
printf '[allow]\nuid.1000 = all\n' >$dir/policy
chmod 600 $dir/policy
"$daemon" --config $dir/root.conf >/tmp/vmdiskd.log 2>&1 &
n=0
while [ ! -S $dir/vmdiskd.sock ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done

anchor() {
	i=0
	while [ $i -lt $N ]; do
		lvcreate -qq -y -V 64m -T $VG/vmdisk-thinpool -n a$i || return 1
		lvremove -qq -f $VG/a$i || return 1
		i=$((i + 1))
	done
}
vmdisk_loop() { # conf
	i=0
	while [ $i -lt $N ]; do
		"$cli" --config "$1" create $INST d$i --blank --size 64M &&
			"$cli" --config "$1" remove $INST d$i || return 1
		i=$((i + 1))
	done
}
as_user() {
	su -s /bin/sh bench -c "$cli --config $dir/user.conf --version" >/dev/null &&
		su -s /bin/sh bench -c "
			i=0
			while [ \$i -lt $N ]; do
				$cli --config $dir/user.conf create $INST d\$i --blank --size 64M &&
				$cli --config $dir/user.conf remove $INST d\$i || exit 1
				i=\$((i + 1))
			done"
}

echo "# bench: n $N"
phase anchor anchor
phase root vmdisk_loop $dir/root.conf
phase helper as_user
grep -c ' done ' $dir/audit.log | sed 's/^/# bench: audited /'
