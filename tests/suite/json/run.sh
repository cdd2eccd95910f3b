#!/usr/bin/env bash
# vmdisk's --json output against its documented shapes (doc/json.md,
# doc/schema/*.json), validated by a real JSON Schema validator
# (python3-jsonschema, through schema_check.py).
#
#   tests/suite/json/run.sh [BUILD_DIR]
#
# Every reporting command runs for real on the default local backends
# (qcow2 and flat, in a mktemp instances folder) with images qemu-img
# makes, and each output is validated against its schema; sizes are
# checked against qemu-img. Then: every schema is a valid draft-07/2020-12
# schema with closed objects, every example of doc/json.md validates,
# every command of `vmdisk --help` has a schema, and every schema was
# validated by a case here (a new shape without a schema, or a schema no
# case exercises, fails). The rbd-only shapes (snapshot, flatten,
# direct-snapshot) cannot run on these backends: here their examples are
# validated and the commands' failure under --json is checked (nothing
# on stdout, one line on stderr); tests/suite/ceph/json_rbd.sh validates
# their real output against a Ceph cluster.
#
# Last line "N passed, N failed"; exit 77 only when python3-jsonschema is
# missing and cannot be installed.
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
here=$root/tests/suite/json
t_name=json
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${1:-}"
need_cli
need_python jsonschema python3-jsonschema
command -v qemu-img >/dev/null || fail_suite "qemu-img is not installed"
suite_tmp

schemas=$root/doc/schema
doc=$root/doc/json.md
rbd_only=(snapshot flatten direct-snapshot)
declare -A covered=()

# valid NAME SHAPE [FILE]: FILE (default $tmp/out) validates against
# doc/schema/SHAPE.json; the shape counts as covered by a real output.
valid() {
	local name=$1 shape=$2 file=${3:-$tmp/out} why
	if why=$("$py" "$here/schema_check.py" validate "$schemas/$shape.json" \
		"$file" 2>&1); then
		covered[$shape]=1
		ok "$name"
	else
		bad "$name: $why: $(head -c 400 "$file")"
	fi
}

# jget FIELD [FILE]: a field of the JSON object in FILE (default $tmp/out).
jget() {
	"$py" -c 'import json, sys
v = json.load(open(sys.argv[2]))[sys.argv[1]]
print("null" if v is None else str(v).lower() if isinstance(v, bool) else v)' \
		"$1" "${2:-$tmp/out}"
}
# qemu_size FILE: the virtual size qemu-img reads (the oracle).
qemu_size() {
	qemu-img info --output=json "$1" |
		"$py" -c 'import json, sys; print(json.load(sys.stdin)["virtual-size"])'
}
# run_ok NAME ARGS...: vm ARGS succeeds with an empty stderr.
run_ok() {
	local name=$1
	shift
	local rc=0
	vm "$@" || rc=$?
	((rc == 0)) && return 0
	bad "$name: exit $rc: $(head -c 300 "$tmp/err")"
	return 1
}
same() { # same NAME GOT WANT
	if [[ "$2" == "$3" ]]; then ok "$1"; else bad "$1: got '$2', want '$3'"; fi
}

# ---- images (qemu-img makes them) ----
img=$tmp/img
mkdir -p "$img"
random_image "$img/base.raw" 1M 64M
qemu-img convert -q -f raw -O qcow2 "$img/base.raw" "$img/base.qcow2"
mkdir -p "$tmp/decoy"
echo decoy >"$tmp/decoy/file"
qemu-img create -q -f qcow2 -u -F raw -b "$tmp/decoy/file" "$img/backed.qcow2" 64M

newconf "remove_unused_base_images = true" \
	"remove_unused_original_minimum_age_seconds = 0" \
	"remove_unused_resized_minimum_age_seconds = 0"
u=$(new_uuid)

# ---- fetch ----
if run_ok fetch --json fetch "$img/base.qcow2"; then
	valid "fetch: a new entry" fetch
	same "fetch: fetched" "$(jget fetched)" true
	same "fetch: virtual_size is qemu-img's" "$(jget virtual_size)" \
		"$(qemu_size "$img/base.qcow2")"
	id=$(jget id)
fi
if run_ok fetch fetch "$img/base.qcow2" --output=json; then
	valid "fetch again (--output=json after the command): cached" fetch
	same "fetch again: fetched" "$(jget fetched)" false
fi

# ---- create and info (qcow2: backed by the cache entry; flat: none) ----
if run_ok create create "$u" root --image "$img/base.qcow2" --size 128M \
	--backend qcow2 --json; then
	valid "create --backend qcow2" create
	same "create qcow2: image_id is the cache entry" "$(jget image_id)" "${id:-?}"
	same "create qcow2: virtual_size is qemu-img's" "$(jget virtual_size)" \
		"$(qemu_size "$(jget path)")"
	same "create qcow2: instance and disk" "$(jget instance) $(jget disk)" "$u root"
fi
if run_ok create --json create "$u" data --image "$img/base.raw" --backend flat; then
	valid "create --backend flat" create
	same "create flat: no image_id" "$(jget image_id)" null
fi
if run_ok "create blank" create "$u" scratch --blank --size 64M --fs ext4 --json; then
	valid "create --blank --fs ext4" create
fi
if run_ok info --json info "$u" root; then
	valid "info (--json before the command)" info
	cp "$tmp/out" "$tmp/info.before"
fi
if run_ok info info "$u" root --output=json; then
	valid "info I D --output=json" info
	check "info: --output=json after the command prints the same" \
		cmp -s "$tmp/out" "$tmp/info.before"
fi
if run_ok info info "$u" root; then
	check "info: the human form without --json" grep -q '^virtual size: ' "$tmp/out"
fi

# ---- resize ----
if run_ok resize resize "$u" root 256M --json; then
	valid "resize" resize
	same "resize: virtual_size is the size now (qemu-img)" "$(jget virtual_size)" \
		"$(qemu_size "$inst/$u/root")"
fi
if run_ok resize resize "$u" root 256M; then
	check "resize: nothing on stdout without --json" test ! -s "$tmp/out"
fi

# ---- libvirt-xml ----
if run_ok libvirt-xml libvirt-xml "$u" root --bus scsi --dev sda; then
	cp "$tmp/out" "$tmp/xml.human"
	if run_ok libvirt-xml libvirt-xml "$u" root --bus scsi --dev sda --json; then
		valid "libvirt-xml" libvirt-xml
		"$py" -c 'import json, sys
sys.stdout.write(json.load(open(sys.argv[1]))["xml"])' "$tmp/out" >"$tmp/xml.json"
		check "libvirt-xml: xml is the human output" cmp -s "$tmp/xml.json" "$tmp/xml.human"
		same "libvirt-xml: element" "$(jget element)" disk
	fi
fi

# ---- extract and convert (sizes checked with qemu-img) ----
for fmt in raw qcow2; do
	if run_ok extract extract "$u" root "$tmp/root.$fmt" --output-format "$fmt" --json; then
		valid "extract -> $fmt" extract
		same "extract $fmt: virtual_size is qemu-img's" "$(jget virtual_size)" \
			"$(qemu_size "$tmp/root.$fmt")"
		same "extract $fmt: format and path" "$(jget format) $(jget path)" \
			"$fmt $tmp/root.$fmt"
		same "extract $fmt: actual_size is the file's" "$(jget actual_size)" \
			"$(($(stat -c %b "$tmp/root.$fmt") * 512))"
	fi
done
if run_ok convert convert "$img/base.raw" "$tmp/conv.qcow2" -O qcow2 --json; then
	valid "convert raw -> qcow2" convert
	same "convert: virtual_size is qemu-img's" "$(jget virtual_size)" \
		"$(qemu_size "$tmp/conv.qcow2")"
	same "convert: source_format probed" "$(jget source_format)" raw
fi
if run_ok convert --output=json convert -f qcow2 "$tmp/conv.qcow2" "$tmp/conv.raw" -O raw; then
	valid "convert qcow2 -> raw (-f)" convert
	check "convert: the same guest bytes (qemu-img compare)" \
		qemu-img compare -q -f raw -F raw "$img/base.raw" "$tmp/conv.raw"
fi
if run_ok convert convert "$img/base.raw" "$tmp/conv2.raw" -O raw; then
	check "convert: nothing on stdout without --json" test ! -s "$tmp/out"
fi

# ---- inspect: safe (exit 0) and refused (exit 1, still the object) ----
if run_ok inspect inspect "$img/base.qcow2" --json; then
	valid "inspect FILE --json: safe" inspect
	same "inspect: safe" "$(jget safe)" true
fi
vm inspect "$img/backed.qcow2" --json
rc=$?
same "inspect: a backing file is refused (exit 1)" "$rc" 1
valid "inspect: refused, with its reasons" inspect
"$py" -c 'import json, sys
r = json.load(open(sys.argv[1]))["reasons"]
sys.exit(0 if r and r[0]["check"] else 1)' "$tmp/out" &&
	ok "inspect: the refusal names its check" ||
	bad "inspect: no reason in $(cat "$tmp/out")"

# ---- the rbd-only commands on a local disk: they fail, and --json keeps
# the error human and on stderr (doc/json.md, Errors) ----
errs_clean() { # NAME ARGS...: exit 1, nothing on stdout, one stderr line
	local name=$1 rc
	shift
	vm "$@"
	rc=$?
	if ((rc == 1)) && [[ ! -s "$tmp/out" ]] && (($(wc -l <"$tmp/err") == 1)) &&
		grep -q '^vmdisk: ' "$tmp/err"; then
		ok "$name: $(cat "$tmp/err")"
	else
		bad "$name: exit $rc, stdout '$(head -c 200 "$tmp/out")', stderr '$(head -c 200 "$tmp/err")'"
	fi
}
errs_clean "snapshot create on qcow2 --json" snapshot create "$u" root s1 --json
errs_clean "flatten on qcow2 --json" --json flatten "$u" root
errs_clean "direct-snapshot on qcow2 --json" direct-snapshot "$u" root img1 --json
errs_clean "info of a missing disk --json" info "$u" nosuch --json
errs_clean "extract over an existing file --json" extract "$u" root "$tmp/root.raw" --json

# ---- cache list, remove, cache prune (--dry-run, then for real) ----
if run_ok "cache list" cache list --json; then
	valid "cache list" cache-list
	"$py" -c 'import json, sys
sys.exit(0 if any(e["id"] == sys.argv[2] for e in json.load(open(sys.argv[1]))) else 1)' \
		"$tmp/out" "${id:-?}" && ok "cache list: holds the fetched entry" ||
		bad "cache list: no entry ${id:-?} in $(cat "$tmp/out")"
fi
for d in root data scratch; do
	if run_ok remove remove "$u" "$d" --json; then
		valid "remove $d" remove
		same "remove $d: removed" "$(jget removed)" true
	fi
done
check "remove: the disks are gone" test ! -e "$inst/$u/root"
# The cache entries' ages count from their last use (mtime): make them old.
find "$inst/_base" -maxdepth 1 -type f -exec touch -d '2 days ago' {} +
if run_ok "cache prune --dry-run" cache prune --dry-run --json; then
	valid "cache prune --dry-run" cache-prune
	"$py" -c 'import json, sys
a = [e["action"] for e in json.load(open(sys.argv[1]))]
sys.exit(0 if a and all(x == "would-remove" for x in a) else 1)' "$tmp/out" &&
		ok "cache prune --dry-run: would-remove" ||
		bad "cache prune --dry-run: $(cat "$tmp/out")"
	check "cache prune --dry-run: nothing went" test "$(entries)" -gt 0
fi
if run_ok "cache prune" --json cache prune; then
	valid "cache prune" cache-prune
	"$py" -c 'import json, sys
a = [e["action"] for e in json.load(open(sys.argv[1]))]
sys.exit(0 if a and "removed" in a else 1)' "$tmp/out" &&
		ok "cache prune: removed" || bad "cache prune: $(cat "$tmp/out")"
	same "cache prune: the entries went" "$(entries)" 0
fi
if run_ok "cache list" cache list --json; then
	valid "cache list: empty" cache-list
	same "cache list: empty is []" "$(tr -d ' \n' <"$tmp/out")" "[]"
fi

# ---- the schemas, the doc and the command table agree ----
for s in "$schemas"/*.json; do
	shape=$(basename "$s" .json)
	check "schema $shape: draft, closed objects, required fields" \
		"$py" "$here/schema_check.py" lint "$s"
	if why=$("$py" "$here/schema_check.py" examples "$doc" "$shape"); then
		ok "doc/json.md: the examples of $shape validate"
		for r in "${rbd_only[@]}"; do
			[[ "$r" == "$shape" ]] && covered[$shape]=doc
		done
	else
		bad "doc/json.md $shape: $why"
	fi
	if [[ -n "${covered[$shape]:-}" ]]; then
		ok "schema $shape: covered (${covered[$shape]/1/real output})"
	else
		bad "schema $shape: no case validates real output against it"
	fi
done
"$cli" --help >"$tmp/help" 2>&1
cmds=$(sed -n '/^Commands:/,/^$/p' "$tmp/help" | awk '/^  [a-z]/ {print $1}' | sort -u)
[[ -n "$cmds" ]] || bad "vmdisk --help lists no commands"
for c in $cmds; do
	if compgen -G "$schemas/$c.json" >/dev/null ||
		compgen -G "$schemas/$c-*.json" >/dev/null; then
		ok "command $c has a schema"
	else
		bad "command $c (vmdisk --help) has no schema in doc/schema/"
	fi
done

finish
