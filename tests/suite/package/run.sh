#!/usr/bin/env bash
# The Debian packages and `meson install`, as an operator meets them:
#
#   build     dpkg-buildpackage -us -uc -b in a fresh clone of the commit
#             at HEAD (what is committed is tested: uncommitted changes
#             are not in the clone, and a dirty tree is said so)
#   lintian   no E: line for the .changes
#   symbols   debian/libvmdisk0.symbols names exactly lib/libvmdisk.sym
#   unpacked  every .deb unpacked (dpkg -x) into one root: the files are
#             where the packages say, `vmdisk --version` and a flat create
#             from a qemu-img raw base run from it, with the unpacked
#             libvmdisk.so.0 loaded (LD_DEBUG=libs names it), and the
#             unpacked vmdiskd refuses a non-listening inherited socket
#   units     systemd-analyze verify accepts vmdiskd.service and
#             vmdiskd.socket, without a word (where systemd-analyze is)
#   install   meson install --destdir of a build of the clone puts units,
#             sysusers.d, tmpfiles.d, completion, man pages, .pc, headers
#             and the rbd module in their places
#   completion  bash -n accepts it; `vmdisk cre<TAB>` gives create; its
#             commands and options are those of tools/vmdisk.c's tables
#
#   tests/suite/package/run.sh [BUILD_DIR]   (BUILD_DIR is not used: the
#   suite builds its own clone)
#
# Needs dpkg-dev, debhelper, fakeroot, lintian (scripts/deps.sh). Last line
# "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=package
. "$root/tests/suite/lib.sh"

for prog in dpkg-buildpackage dh lintian fakeroot qemu-img git meson; do
	command -v "$prog" >/dev/null 2>&1 ||
		fail_suite "$prog is not installed (scripts/deps.sh installs it)"
done

suite_tmp
head=$(git -C "$root" rev-parse HEAD) || fail_suite "not a git checkout"
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]]; then
	say "note: uncommitted changes are not tested (commit $head only)"
fi
say "building the packages of commit ${head:0:12}"
if ! git clone -q --no-checkout "$root" "$tmp/src" ||
	! git -C "$tmp/src" checkout -q --detach "$head"; then
	fail_suite "cannot clone $root"
fi

# ---- build ----
if (cd "$tmp/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
	nice dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1); then
	ok "build: dpkg-buildpackage -us -uc -b"
else
	bad "build: dpkg-buildpackage failed; its last lines:"
	tail -n 30 "$tmp/build.log" | sed 's/^/    /'
	finish
fi
changes=$(echo "$tmp"/vmdisk_*.changes)
debs=()
for p in vmdisk vmdiskd libvmdisk0 libvmdisk-dev vmdisk-rbd python3-vmdisk; do
	d=$(echo "$tmp/${p}_"*.deb)
	if [[ -f "$d" ]]; then
		debs+=("$d")
		ok "build: $p package made"
	else
		bad "build: no $p package"
	fi
done

# ---- lintian ----
lintian "$changes" >"$tmp/lintian.log" 2>&1
if grep -q '^E:' "$tmp/lintian.log"; then
	bad "lintian: errors"
	grep '^E:' "$tmp/lintian.log" | sed 's/^/    /'
else
	ok "lintian: no errors ($(grep -c '^W:' "$tmp/lintian.log") warnings)"
fi

# ---- symbols ----
sym_exports() {
	sed -n '/global:/,/local:/p' "$tmp/src/lib/libvmdisk.sym" |
		sed -n 's/^[[:space:]]*\(vmd_[A-Za-z0-9_]*\);.*/\1/p' | sort
}
sym_file() {
	sed -n 's/^ \(vmd_[A-Za-z0-9_]*\)@VMDISK_0 .*/\1/p' \
		"$tmp/src/debian/libvmdisk0.symbols" | sort
}
if [[ -n "$(sym_exports)" ]] && diff <(sym_exports) <(sym_file) >"$tmp/sym.diff"; then
	ok "symbols: debian/libvmdisk0.symbols matches lib/libvmdisk.sym"
else
	bad "symbols: debian/libvmdisk0.symbols differs from lib/libvmdisk.sym"
	sed 's/^/    /' "$tmp/sym.diff"
fi

# ---- unpacked ----
r=$tmp/root
mkdir -p "$r"
for d in "${debs[@]}"; do
	dpkg -x "$d" "$r" || bad "unpacked: dpkg -x $(basename "$d")"
done
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
expect=(usr/bin/vmdisk usr/sbin/vmdiskd
	"usr/lib/$ma/libvmdisk.so.0" "usr/lib/$ma/libvmdisk.so"
	"usr/lib/$ma/pkgconfig/vmdisk.pc" usr/include/vmdisk/vmdisk.h
	"usr/lib/$ma/vmdisk/modules/vmdisk-rbd.so"
	lib/systemd/system/vmdiskd.service lib/systemd/system/vmdiskd.socket
	usr/lib/sysusers.d/vmdisk.conf usr/lib/tmpfiles.d/vmdisk.conf
	etc/vmdisk/vmdiskd-policy.conf
	usr/share/bash-completion/completions/vmdisk
	usr/share/man/man1/vmdisk.1.gz usr/share/man/man8/vmdiskd.8.gz
	usr/share/man/man5/vmdisk.conf.5.gz usr/share/man/man3/libvmdisk.3.gz
	usr/share/doc/vmdisk/vmdisk.conf.example
	usr/lib/python3/dist-packages/vmdisk/__init__.py)
missing=()
for f in "${expect[@]}"; do
	[[ -e "$r/$f" || -L "$r/$f" ]] || missing+=("$f")
done
check "unpacked: the packages hold ${#expect[@]} expected files${missing:+ (missing: ${missing[*]})}" \
	test ${#missing[@]} -eq 0

export LD_LIBRARY_PATH=$r/usr/lib/$ma
ucli=$r/usr/bin/vmdisk
if out=$("$ucli" --version 2>&1) && [[ "$out" == *"$(sed -n "s/^  version : '\(.*\)',/\1/p" "$tmp/src/meson.build")"* ]]; then
	ok "unpacked: vmdisk --version ($out)"
else
	bad "unpacked: vmdisk --version: $out"
fi
LD_DEBUG=libs "$ucli" --version >/dev/null 2>"$tmp/lddebug"
check "unpacked: vmdisk loads the unpacked libvmdisk.so.0" \
	grep -q "calling init: $r/usr/lib/$ma/libvmdisk.so.0" "$tmp/lddebug"

# python3-vmdisk: the module imports from the unpacked files and calls
# the unpacked library.
if out=$(PYTHONPATH=$r/usr/lib/python3/dist-packages "$py" -c \
	'import vmdisk; print(vmdisk.__file__, vmdisk.version())' 2>&1) &&
	[[ "$out" == "$r/"*" $("$ucli" --version | awk '{print $NF}')" ]]; then
	ok "unpacked: python3-vmdisk imports ($out)"
else
	bad "unpacked: python3-vmdisk: $out"
fi

qemu-img create -q -f raw "$tmp/base.raw" 16M
head -c 65536 /dev/urandom | dd of="$tmp/base.raw" conv=notrunc status=none
inst=$tmp/instances
mkdir -p "$inst"
printf '[DEFAULT]\ninstances_path = %s\nimages_type = flat\nlog_target = none\n' \
	"$inst" >"$tmp/vmdisk.conf"
id=$(new_uuid)
if "$ucli" --config "$tmp/vmdisk.conf" create "$id" disk \
	--image "$tmp/base.raw" --size 32M >"$tmp/out" 2>"$tmp/err" &&
	[[ "$(qemu-img info --output=json "$inst/$id/disk" 2>/dev/null |
		sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')" == 33554432 ]] &&
	cmp -n 16777216 "$tmp/base.raw" "$inst/$id/disk"; then
	ok "unpacked: vmdisk create (flat, 32M from a 16M raw base)"
else
	bad "unpacked: vmdisk create: $(cat "$tmp/err")"
fi
# systemd hands vmdiskd its socket; a socket that is not listening is
# refused, not served (the unpacked daemon, its own process).
printf '[vmdisk]\nvmdiskd_socket = %s\nvmdiskd_audit_log = %s\n' \
	"$tmp/d.sock" "$tmp/audit.log" >"$tmp/d.conf"
rc=0
LISTEN_FDS=1 "$py" -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])' "$r/usr/sbin/vmdiskd" --config "$tmp/d.conf" \
	>/dev/null 2>"$tmp/derr" || rc=$?
refused=no
((rc == 1)) && grep -q "not listening" "$tmp/derr" && refused=yes
check "unpacked: vmdiskd refuses an inherited socket that is not listening" \
	test "$refused" = yes

# ---- units ----
if command -v systemd-analyze >/dev/null 2>&1; then
	# The units as packaged; ExecStart pointed at the unpacked daemon
	# (verify checks the program exists) and man pages not looked up
	# (the unpacked ones are not on this host's MANPATH).
	mkdir -p "$tmp/units"
	cp "$r/lib/systemd/system/vmdiskd.socket" "$tmp/units/"
	sed "s#^ExecStart=/usr/sbin/vmdiskd#ExecStart=$r/usr/sbin/vmdiskd#" \
		"$r/lib/systemd/system/vmdiskd.service" >"$tmp/units/vmdiskd.service"
	if systemd-analyze verify --man=no "$tmp/units/vmdiskd.socket" \
		"$tmp/units/vmdiskd.service" >"$tmp/verify" 2>&1 &&
		! [[ -s "$tmp/verify" ]]; then
		ok "units: systemd-analyze verify vmdiskd.service vmdiskd.socket"
	else
		bad "units: systemd-analyze verify:"
		sed 's/^/    /' "$tmp/verify"
	fi
else
	say "skip units: systemd-analyze is not installed"
fi

# The group and the directories, made in an empty root as the package's
# postinst has them made; a second run keeps an operator's chgrp of
# instances_path (image_cache_group takes the cache's group from it).
if command -v systemd-tmpfiles >/dev/null 2>&1 &&
	command -v systemd-sysusers >/dev/null 2>&1; then
	sr=$tmp/sysroot
	mkdir -p "$sr/etc"
	: >"$sr/etc/group"
	: >"$sr/etc/passwd"
	systemd-sysusers --root="$sr" "$r/usr/lib/sysusers.d/vmdisk.conf" >/dev/null 2>&1
	check "units: sysusers.d makes the system group vmdisk" \
		grep -q '^vmdisk:x:[0-9]*:' "$sr/etc/group"
	tf=$r/usr/lib/tmpfiles.d/vmdisk.conf
	systemd-tmpfiles --root="$sr" --create "$tf" >/dev/null 2>&1
	check "units: tmpfiles.d makes the run, state and log directories" \
		test "$(stat -c %a "$sr/run/vmdisk")/$(stat -c %a "$sr/var/log/vmdisk")" = 755/700 \
		-a -d "$sr/var/lib/vmdisk/instances"
	chgrp vmdisk "$sr/var/lib/vmdisk/instances" 2>/dev/null ||
		chgrp nogroup "$sr/var/lib/vmdisk/instances"
	chmod 0750 "$sr/var/lib/vmdisk/instances"
	g=$(stat -c %G:%a "$sr/var/lib/vmdisk/instances")
	systemd-tmpfiles --root="$sr" --create "$tf" >/dev/null 2>&1
	check "units: tmpfiles.d keeps an operator's group and mode of instances_path" \
		test "$(stat -c %G:%a "$sr/var/lib/vmdisk/instances")" = "$g"
else
	say "skip units: systemd-tmpfiles/systemd-sysusers are not installed"
fi

# ---- meson install ----
dest=$tmp/dest
if nice meson setup -Dtests=false --prefix=/usr "$tmp/mbuild" "$tmp/src" \
	>"$tmp/meson.log" 2>&1 && nice ninja -C "$tmp/mbuild" >>"$tmp/meson.log" 2>&1 &&
	meson install -C "$tmp/mbuild" --destdir "$dest" >>"$tmp/meson.log" 2>&1; then
	ok "install: meson install --destdir"
else
	bad "install: meson failed; its last lines:"
	tail -n 20 "$tmp/meson.log" | sed 's/^/    /'
fi
libdir=$(cd "$dest/usr" 2>/dev/null && echo lib/*/libvmdisk.so.0 | sed 's#/libvmdisk.so.0##')
expect=(usr/bin/vmdisk usr/sbin/vmdiskd "usr/$libdir/libvmdisk.so.0"
	"usr/$libdir/libvmdisk.so" "usr/$libdir/pkgconfig/vmdisk.pc"
	"usr/$libdir/vmdisk/modules/vmdisk-rbd.so"
	usr/include/vmdisk/vmdisk.h usr/include/vmdisk/config.h
	usr/lib/systemd/system/vmdiskd.service usr/lib/systemd/system/vmdiskd.socket
	usr/lib/sysusers.d/vmdisk.conf usr/lib/tmpfiles.d/vmdisk.conf
	etc/vmdisk/vmdiskd-policy.conf
	usr/share/bash-completion/completions/vmdisk
	usr/share/man/man1/vmdisk.1 usr/share/man/man8/vmdiskd.8
	usr/share/man/man5/vmdisk.conf.5 usr/share/man/man3/libvmdisk.3
	usr/share/doc/vmdisk/vmdisk.conf.example
	usr/lib/python3/dist-packages/vmdisk/__init__.py)
missing=()
for f in "${expect[@]}"; do
	[[ -e "$dest/$f" ]] || missing+=("$f")
done
check "install: ${#expect[@]} files in their places${missing:+ (missing: ${missing[*]})}" \
	test ${#missing[@]} -eq 0
check "install: the unit runs the installed vmdiskd" \
	grep -qx 'ExecStart=/usr/sbin/vmdiskd' "$dest/usr/lib/systemd/system/vmdiskd.service"

# ---- completion ----
comp=$root/data/vmdisk.bash-completion
check "completion: bash -n accepts it" bash -n "$comp"
complete_words() { # complete_words WORD... : the candidates for the last
	bash -c 'source "$1"; shift; COMP_WORDS=("$@")
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _vmdisk
		printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
check "completion: vmdisk cre<TAB> gives create" \
	test "$(complete_words vmdisk cre)" = create
check "completion: vmdisk inspect F --out<TAB> gives --output" \
	test "$(complete_words vmdisk inspect F --out)" = --output
check "completion: vmdisk create I D --backend q<TAB> gives qcow2" \
	test "$(complete_words vmdisk create I D --backend q)" = qcow2
# The command table and each command's option table of tools/vmdisk.c:
# "command option..." lines, help left out (every command has it).
"$py" - "$root/tools/vmdisk.c" >"$tmp/table" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
opts = {m.group(1): re.findall(r'\{"([a-z-]+)",', m.group(2))
        for m in re.finditer(r'static const struct option (\w+)\[\] = \{(.*?)\n\};',
                             src, re.S)}
table = re.search(r'static const struct command commands\[\] = \{(.*?)\n\};',
                  src, re.S).group(1)
for m in re.finditer(r'^\t\{"([a-z-]+)",(.*?)\bcmd_\w+, (\w+)', table, re.S | re.M):
    names = sorted(o for o in opts.get(m.group(3), []) if o != 'help')
    print(m.group(1), *names)
PY
drift=0
while read -r cmd want; do
	got=$(bash -c 'source "$1"; for o in $(_vmdisk_command_opts "$2"); do
		[[ $o == --* ]] && echo "${o#--}"; done | sort | xargs' _ "$comp" "$cmd")
	[[ "$(complete_words vmdisk "$cmd")" == "$cmd" && "$got" == "$want" ]] ||
		{ say "completion drift: $cmd: table '$want', completion '$got'"; drift=1; }
done <"$tmp/table"
check "completion: the $(wc -l <"$tmp/table") commands of tools/vmdisk.c and their options" \
	test "$drift" = 0 -a -s "$tmp/table"

finish
