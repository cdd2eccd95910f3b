# Guest test (busybox sh, inside tests/suite/vm/run.sh's VM): the kernel and
# lvm2/cryptsetup parts the lvm backend relies on work in this guest, on
# the virtio disk /dev/vdb. Prints TAP lines.
t() { # name, then a command that succeeds when the check holds
	name=$1
	shift
	if "$@" >/tmp/t.out 2>&1; then
		echo "ok - $name"
	else
		echo "not ok - $name"
		sed 's/^/#   /' /tmp/t.out | tail -n 8
	fi
}

VG=vmdsmoke
pattern() { # 2.7 MB that are never zero
	i=0
	while [ $i -lt 64 ]; do
		printf 'vmdisk guest pattern block %08d %s\n' $i \
			"0123456789abcdef0123456789abcdef0123456789abcdef"
		i=$((i + 1))
	done >/tmp/p1
	cat /tmp/p1 /tmp/p1 /tmp/p1 /tmp/p1 /tmp/p1 /tmp/p1 /tmp/p1 /tmp/p1 >/tmp/p8
	: >/tmp/pattern
	i=0
	while [ $i -lt 64 ]; do cat /tmp/p8 >>/tmp/pattern; i=$((i + 1)); done
}
pattern

t "device-mapper is there" test -c /dev/mapper/control
t "pvcreate and vgcreate on /dev/vdb" \
	sh -c "pvcreate -qq /dev/vdb && vgcreate -qq $VG /dev/vdb"
t "thick LV: write and read back" sh -c "
	lvcreate -qq -y -L 16m -n thick $VG &&
	dd if=/tmp/pattern of=/dev/$VG/thick bs=1M conv=fsync 2>/dev/null &&
	cmp -n \$(wc -c </tmp/pattern) /tmp/pattern /dev/$VG/thick"
t "lvs --reportformat json names the LV's path" sh -c "
	lvs --reportformat json -o lv_name,lv_path $VG | grep -q '/dev/$VG/thick'"
t "lvextend grows the LV" sh -c "
	lvextend -qq -L 32m $VG/thick &&
	[ \$(blockdev --getsize64 /dev/$VG/thick) -eq 33554432 ]"
t "thin pool and a sparse LV" sh -c "
	lvcreate -qq -y -L 64m -T $VG/pool &&
	lvcreate -qq -y -V 1g -T $VG/pool -n thin &&
	[ \$(blockdev --getsize64 /dev/$VG/thin) -eq 1073741824 ] &&
	dd if=/tmp/pattern of=/dev/$VG/thin bs=1M seek=512 conv=fsync 2>/dev/null &&
	dd if=/dev/$VG/thin bs=1M skip=512 count=4 2>/dev/null |
		head -c \$(wc -c </tmp/pattern) | cmp - /tmp/pattern"
t "LUKS2 on an LV: plaintext never on the LV" sh -c "
	head -c 64 /dev/urandom >/tmp/key &&
	lvcreate -qq -y -L 64m -n enc $VG &&
	cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 \
		--pbkdf-force-iterations 1000 --cipher aes-xts-plain64 \
		--key-size 512 --key-file /tmp/key /dev/$VG/enc &&
	cryptsetup open --key-file /tmp/key /dev/$VG/enc enc-dmcrypt &&
	dd if=/tmp/pattern of=/dev/mapper/enc-dmcrypt bs=1M conv=fsync 2>/dev/null &&
	cmp -n \$(wc -c </tmp/pattern) /tmp/pattern /dev/mapper/enc-dmcrypt &&
	cryptsetup close enc-dmcrypt &&
	! grep -q 'vmdisk guest pattern' /dev/$VG/enc"
t "lvremove leaves no LV" sh -c "
	lvremove -qq -f $VG/thick $VG/thin $VG/enc &&
	! lvs --noheadings -o lv_name $VG | grep -qE 'thick|thin|enc'"
