# shellcheck shell=bash disable=SC2154
# Booting the test VM, shared by tests/suite/vm/run.sh and the power-loss part
# of the reliability suite (tests/suite/reliability/parts/20-powerloss.sh):
# the current Debian cloud kernel under qemu's software emulation (TCG:
# nested KVM hangs on these machines) with an initramfs built here. Sourced;
# the caller defines say, skip_all REASON (exit 77) and fail_all REASON.
#
#   vm_need_tools          qemu, busybox-static, lvm2, cryptsetup, cpio and
#                          kmod (apt-get installs them as root), else skip_all
#   vm_kernel              kpkg, kver, kroot: the kernel package, fetched once
#                          into $VMDISK_VM_CACHE (default /var/tmp/vmdisk-vm)
#   vm_stage TMP MODULE... stage=TMP/initramfs with busybox, lvm2, dmsetup,
#                          cryptsetup, mkfs.ext4, blkid, libcurl, an lvm.conf
#                          for a guest without udev, and the MODULEs (names
#                          as in modules.dep) with their dependencies, in
#                          load order in etc/modules.load; the caller adds
#                          its /init and files (copy_with_libs FILE...)
#   vm_boot TMP TIMEOUT SIZE... pack the stage into TMP/initrd.gz and boot it
#                          with one sparse virtio disk of each SIZE
#                          (/dev/vda, /dev/vdb, ...; raw files TMP/vd?.img);
#                          vm_net_args (default -nic none) adds qemu network
#                          options. The serial console goes to
#                          TMP/console.log; returns once the guest powers
#                          off or after TIMEOUT s (then killed). qemu_pid is
#                          set while it runs, for the caller's exit trap.
vm_cache=${VMDISK_VM_CACHE:-/var/tmp/vmdisk-vm}
qemu_pid=

vm_need_tools() {
	local need_pkgs=() p
	for p in qemu-system-x86:qemu-system-x86_64 busybox-static:busybox \
		lvm2:lvm cryptsetup-bin:cryptsetup cpio:cpio kmod:depmod; do
		command -v "${p#*:}" >/dev/null 2>&1 || need_pkgs+=("${p%%:*}")
	done
	if ((${#need_pkgs[@]})); then
		if [[ $(id -u) -eq 0 ]]; then
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1
		fi
		for p in qemu-system-x86_64 busybox lvm cryptsetup cpio depmod; do
			command -v "$p" >/dev/null 2>&1 ||
				skip_all "$p is not installed (packages: ${need_pkgs[*]})"
		done
	fi
	busybox_bin=$(command -v busybox)
	file "$busybox_bin" 2>/dev/null | grep -q 'statically linked' ||
		[[ -x /bin/busybox ]] || skip_all "busybox is not the static build"
}

vm_kernel() {
	mkdir -p "$vm_cache" || fail_all "cannot make $vm_cache"
	kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-cloud-amd64\)$/\1/p' | head -n 1)
	[[ -n "$kpkg" ]] || skip_all "apt knows no linux-image-cloud-amd64"
	kver=${kpkg#linux-image-}
	kroot="$vm_cache/$kver"
	if [[ ! -f "$kroot/boot/vmlinuz-$kver" ]]; then
		say "fetching $kpkg"
		rm -rf "$kroot" "$vm_cache"/"$kpkg"_*.deb
		(cd "$vm_cache" && apt-get download -q "$kpkg" >/dev/null 2>&1) ||
			skip_all "apt-get download $kpkg failed (no network?)"
		dpkg -x "$vm_cache"/"$kpkg"_*.deb "$kroot" || fail_all "dpkg -x $kpkg"
	fi
	[[ -f "$kroot/lib/modules/$kver/modules.dep" ]] ||
		depmod -b "$kroot" "$kver" || fail_all "depmod"
}

# copy_with_libs FILE...: the files and every library they need, same paths.
copy_with_libs() {
	local f lib
	for f in "$@"; do
		mkdir -p "$stage$(dirname "$f")"
		cp -L "$f" "$stage$f"
		for lib in $(ldd "$f" 2>/dev/null | grep -oE '/[^ ]+'); do
			[[ -e "$stage$lib" ]] && continue
			mkdir -p "$stage$(dirname "$lib")"
			cp -L "$lib" "$stage$lib"
		done
	done
}

# vm_has_module NAME: the kernel has NAME as a module.
vm_has_module() {
	grep -qE "^[^:]*/$1\.ko(\.xz)?:" "$kroot/lib/modules/$kver/modules.dep"
}

vm_stage() {
	local m want l curl_so
	stage="$1/initramfs"
	shift
	mkdir -p "$stage"/{bin,sbin,etc/lvm,lib/modules,proc,sys,dev,run,tmp,var/tmp,vmtests}
	cp "$busybox_bin" "$stage/bin/busybox"
	# libcurl is dlopen()ed by the library (Barbican keys): ldd cannot see it.
	curl_so=$(ldconfig -p | sed -n 's|^\s*libcurl\.so\.4 (libc6,x86-64) => ||p' | head -n 1)
	[[ -n "$curl_so" ]] && copy_with_libs "$curl_so"
	copy_with_libs "$(command -v lvm)" "$(command -v dmsetup)" \
		"$(command -v cryptsetup)" "$(command -v mkfs.ext4)" \
		"$(command -v blkid)"
	for l in lvcreate lvremove lvextend lvchange lvs vgcreate vgremove vgs \
		vgchange pvcreate pvremove pvs; do
		ln -sf "$(command -v lvm)" "$stage/sbin/$l"
	done

	# Modules in dependency order: each after what it depends on.
	declare -gA vm_placed=()
	vm_order=()
	for want in "$@"; do
		m=$(grep -oE "^[^:]*/$want\.ko(\.xz)?:" "$kroot/lib/modules/$kver/modules.dep" |
			head -n 1 | tr -d :)
		[[ -n "$m" ]] || fail_all "no module $want in $kpkg"
		vm_place "$m"
	done
	for m in "${vm_order[@]}"; do
		cp "$kroot/lib/modules/$kver/$m" "$stage/lib/modules/"
		basename "$m" >>"$stage/etc/modules.load"
	done

	cat >"$stage/etc/lvm/lvm.conf" <<'LVM'
# No udev, no daemons in the test guest.
devices {
	obtain_device_list_from_udev = 0
	use_devicesfile = 0
	scan = [ "/dev" ]
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
global {
	use_lvmlockd = 0
	thin_check_executable = ""
	locking_dir = "/run/lock/lvm"
}
LVM
}

vm_place() { # module path relative to lib/modules/VER
	local m=$1 d deps
	[[ -n "${vm_placed[$m]:-}" ]] && return
	vm_placed[$m]=1
	deps=$(grep -E "^$m:" "$kroot/lib/modules/$kver/modules.dep" | cut -d: -f2)
	for d in $deps; do vm_place "$d"; done
	vm_order+=("$m")
}

vm_boot() {
	local tmp=$1 timeout_s=$2 size drives=() n=0 start letters=abcdefgh
	shift 2
	chmod 755 "$stage/init" "$stage"/vmtests/*.sh 2>/dev/null
	(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) \
		>"$tmp/initrd.gz" || fail_all "building the initramfs"
	for size in "$@"; do
		truncate -s "$size" "$tmp/vd${letters:n:1}.img"
		drives+=(-drive "file=$tmp/vd${letters:n:1}.img,if=virtio,format=raw")
		n=$((n + 1))
	done
	[[ -n "${vm_net_args+set}" ]] || vm_net_args=(-nic none)

	say "booting $kver under TCG with $(du -h "$tmp/initrd.gz" | cut -f1) initramfs"
	start=$(date +%s)
	qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -cpu max \
		-kernel "$kroot/boot/vmlinuz-$kver" -initrd "$tmp/initrd.gz" \
		-append "console=ttyS0 panic=-1 quiet" \
		"${drives[@]}" "${vm_net_args[@]}" \
		-display none -monitor none -serial "file:$tmp/console.log" \
		-no-reboot </dev/null >"$tmp/qemu.log" 2>&1 &
	qemu_pid=$!
	while kill -0 "$qemu_pid" 2>/dev/null &&
		! grep -q '^State:.*Z' "/proc/$qemu_pid/status" 2>/dev/null; do
		if (($(date +%s) - start > timeout_s)); then
			kill -9 "$qemu_pid"
			say "the guest did not finish in $timeout_s s"
			break
		fi
		sleep 1
	done
	wait "$qemu_pid" 2>/dev/null
	qemu_pid=
	say "guest ran $(($(date +%s) - start)) s"
}
