# shellcheck shell=bash
# Shared helpers for scripts/*.sh: meant to be sourced, not run.
#
#   vmd_install_deps           install what the build and the tests need
#   vmd_build DIR [OPTION...]  configure DIR with meson (OPTIONs: -Dname=value)
#                              and build it with ninja
#   vmd_quiet WHAT COMMAND...  one line "WHAT..."; COMMAND's output only if
#                              it fails
#
# Set-up is quiet: each step prints one line, and the output of apt-get,
# meson and ninja goes to a log that is shown (its last VMD_QUIET_TAIL
# lines, and its path) only when the step fails. VMD_VERBOSE=1 shows it
# all as it comes.
#
# VMD_ROOT is the repository root (the parent of this file's directory).

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	echo "deps.sh: source this file from another script" >&2
	exit 2
fi

VMD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Exactly what the build (meson.build) and the tests need; nothing else.
VMD_DEPS=(
	build-essential pkg-config meson ninja-build
	libcmocka-dev libinih-dev libjson-c-dev libssl-dev zlib1g-dev libzstd-dev
	libcurl4-openssl-dev nginx-light openssl curl python3
	qemu-utils e2fsprogs xfsprogs dosfstools util-linux coreutils clang libclang-rt-14-dev
	libvirt-clients btrfs-progs libxml2-utils librbd-dev librados-dev
	qemu-system-x86 busybox-static lvm2 cryptsetup-bin cpio kmod
	libcryptsetup-dev valgrind strace man-db groff-base python3-jsonschema
	debhelper dh-python dpkg-dev fakeroot lintian git systemd
	python3-dev python3-pytest
	python3-nova
)

vmd_log() {
	printf '%s: %s\n' "${VMD_LOG_TAG:-vmdisk}" "$*" >&2
}

vmd_die() {
	vmd_log "error: $*"
	exit 1
}

# vmd_quiet WHAT COMMAND...: say "WHAT...", run COMMAND with its output
# (stdout and stderr) into a log of its own, and return its status. On
# failure print the end of that log and keep it; on success remove it.
vmd_quiet() {
	local what=$1 log rc=0
	shift
	vmd_log "$what..."
	if [[ "${VMD_VERBOSE:-0}" == 1 ]]; then
		"$@"
		return
	fi
	if [[ -z "${VMD_QUIET_DIR:-}" || ! -d "$VMD_QUIET_DIR" ]]; then
		VMD_QUIET_DIR=$(mktemp -d "${TMPDIR:-/tmp}/vmdisk-setup.XXXXXX") ||
			return 1
	fi
	log=$(mktemp "$VMD_QUIET_DIR/step.XXXXXX") || return 1
	"$@" >"$log" 2>&1 </dev/null || rc=$?
	if ((rc == 0)); then
		rm -f -- "$log"
		# Gone with its last log; the next step makes a new one.
		rmdir -- "$VMD_QUIET_DIR" 2>/dev/null || true
		return 0
	fi
	vmd_log "error: $what failed (status $rc); the last lines of its output" \
		"(all of it in $log):"
	tail -n "${VMD_QUIET_TAIL:-40}" -- "$log" | sed 's/^/    /' >&2
	return "$rc"
}

# True when the Debian package $1 is installed.
vmd_pkg_installed() {
	local status
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[[ "$status" == "install ok installed" ]]
}

vmd_install_deps() {
	local pkg
	local -a missing=()

	command -v dpkg-query >/dev/null 2>&1 ||
		vmd_die "dpkg-query not found: these scripts expect Debian 12"
	for pkg in "${VMD_DEPS[@]}"; do
		vmd_pkg_installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	if ((EUID != 0)); then
		vmd_die "missing packages: ${missing[*]}; run as root, or install them" \
			"with: apt-get install --no-install-recommends ${missing[*]}"
	fi
	vmd_quiet "updating the package lists" \
		env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		vmd_die "apt-get update failed"
	local what="${#missing[@]} packages"
	((${#missing[@]} > 1)) || what="1 package"
	vmd_quiet "installing $what (${missing[*]})" \
		env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" ||
		vmd_die "apt-get install failed: ${missing[*]}"
	for pkg in "${missing[@]}"; do
		vmd_pkg_installed "$pkg" || vmd_die "package $pkg still not installed"
	done
}

# vmd_build DIR [OPTION...]: DIR is relative to the repository root unless
# absolute. A new DIR is set up with the options; an existing one keeps its
# configuration and gets the options applied with `meson configure`.
# Returns non-zero (after saying why) instead of exiting, so that a caller can
# go on with another build.
vmd_build() {
	if (($# < 1)); then
		vmd_log "usage: vmd_build DIR [meson options...]"
		return 2
	fi
	local dir=$1
	shift
	[[ "$dir" == /* ]] || dir="$VMD_ROOT/$dir"

	if [[ ! -f "$dir/build.ninja" ]]; then
		if ! vmd_quiet "configuring $dir${*:+ ($*)}" \
			meson setup "$@" -- "$dir" "$VMD_ROOT"; then
			vmd_log "error: meson setup $dir failed"
			return 1
		fi
	elif (($# > 0)); then
		if ! vmd_quiet "configuring $dir ($*)" \
			meson configure "$@" "$dir"; then
			vmd_log "error: meson configure $dir failed"
			return 1
		fi
	fi
	if ! vmd_quiet "building $dir" ninja -C "$dir"; then
		vmd_log "error: build in $dir failed"
		return 1
	fi
}
