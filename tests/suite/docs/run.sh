#!/usr/bin/env bash
# No drift between the code and its documentation (issue 18).
#
#   tests/suite/docs/run.sh [BUILD_DIR] [DOC_TREE]
#
# Reads, from the sources of this tree:
#   - the commands (commands[]) and every option table (struct option
#     arrays, getopt short-option strings) of tools/vmdisk.c;
#   - the config key table of lib/ (the keys[] vmd_config_load parses);
#   - the public functions: lib/libvmdisk.sym and the vmd_*( declarations
#     of the installed headers (lib/meson.build install_headers);
# and fails, naming what is missing, when a command or option is not in
# vmdisk(1) or the README, a key not in vmdisk.conf(5), the README's
# configuration table or doc/vmdisk.conf.example, a function not in
# libvmdisk(3). It also renders every page with groff -ww and man -l
# (no warning allowed), loads the example configuration with the CLI
# (as it is, and with every key uncommented: each default shown is a valid
# value) and checks doc/meson.build installs every page and the example.
#
# DOC_TREE (default: this tree) is where README.md and doc/ are read from,
# so the checks can be pointed at a copy. The suite itself does that: each
# check is run once more on a copy with one item taken out, and must fail
# naming it (the test of the test).
#
# Last line "N passed, N failed".
set -uo pipefail

cd "$(dirname "$0")/../../.." || exit 1
root=$PWD
t_name=docs
# shellcheck source=tests/suite/lib.sh
. "$root/tests/suite/lib.sh"
suite_build "${1:-}"
need_cli
tree=${2:-$root}
[[ "$tree" == /* ]] || tree=$root/$tree
suite_tmp
export LC_ALL=C.UTF-8

# ---- what the sources say ----

cli_src=$root/tools/vmdisk.c

# Every command of the commands[] table.
src_commands() {
	awk '/^static const struct command commands\[\] = \{/ { on = 1; next }
	     on && /^\};/ { exit }
	     on && match($0, /^\t\{"[a-z-]+",/) {
	         s = substr($0, RSTART + 3, RLENGTH - 5); print s }' "$cli_src"
}

# Every long option of every struct option array (named or a compound
# literal), as --NAME.
src_long_options() {
	grep -oE '\{"[a-z][a-z-]*", *(no_argument|required_argument|optional_argument|[0-9])' "$cli_src" |
		sed -E 's/^\{"([^"]+)".*/--\1/' | LC_ALL=C sort -u
}

# Every short option of the getopt strings (getopt_long's literal ones
# and the named *_shortopts[] strings), as -X.
src_short_options() {
	{
		grep -oE 'getopt_long\([^,]+, *[^,]+, *"[^"]*"' "$cli_src" |
			sed -E 's/.*"([^"]*)"$/\1/'
		grep -oE '_shortopts\[\] = "[^"]*"' "$cli_src" |
			sed -E 's/.*"([^"]*)"$/\1/'
	} | tr -d '+:\n' | fold -w1 | LC_ALL=C sort -u | sed 's/^/-/'
}

# The config key table: the file of lib/ that defines struct key_def
# keys[], its KEY/STR_KEY/U32_KEY lines.
src_keys() {
	local f
	f=$(grep -rlE '^static const struct key_def keys\[\]' "$root/lib" | head -n 1)
	[[ -n "$f" ]] || return 1
	awk '/^static const struct key_def keys\[\]/ { on = 1; next }
	     on && /^\};/ { exit }
	     on && match($0, /^\t[A-Z0-9_]*KEY\([a-z0-9_]+,/) {
	         s = substr($0, RSTART, RLENGTH); sub(/^\t[A-Z0-9_]*KEY\(/, "", s);
	         sub(/,$/, "", s); print s }' "$f"
}

# The public functions: what libvmdisk.sym exports and what the installed
# headers declare (comments and #define lines left out).
src_functions() {
	{
		sed -n '/global:/,/local:/p' "$root/lib/libvmdisk.sym" |
			grep -oE '^[[:space:]]*vmd_[a-z0-9_]+;' | tr -d ' \t;'
		"$py" - "$root" <<-'EOF'
			import re, sys
			root = sys.argv[1]
			build = open(root + "/lib/meson.build").read()
			m = re.search(r"install_headers\((.*?)subdir", build, re.S)
			for h in re.findall(r"'([^']+\.h)'", m.group(1)):
			    text = open(root + "/lib/" + h).read()
			    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
			    text = "\n".join(l for l in text.split("\n")
			                     if not l.lstrip().startswith("#"))
			    for name in re.findall(r"\b(vmd_[a-z0-9_]+)\s*\(", text):
			        print(name)
		EOF
	} | LC_ALL=C sort -u
}

# ---- what the documents say ----

# A page's roff source as plain words: \- is -, font changes and other
# escapes go.
plain() {
	sed -E 's/\\-/-/g; s/\\f[BIRP]//g; s/\\f\(..//g; s/\\[&|^]//g; s/\\e/\\/g' "$1"
}

# The part of a page from .SH NAME_OF_SECTION to the next .SH.
section_of() {
	plain "$1" | awk -v want=".SH $2" '$0 == want { on = 1; next }
	     on && /^\.SH / { exit } on { print }'
}

# has_word TEXT_FILE WORD: WORD as a whole token (a command, --option,
# -X, a key): not part of a longer name.
has_word() {
	grep -qE -- "(^|[^A-Za-z0-9_-])$(printf '%s' "$2" | sed 's/[.[\*^$]/\\&/g')([^A-Za-z0-9_-]|$)" "$1"
}

# ---- the checks: each prints what is missing and fails if anything is ----

# have DIR FILE...: the files (under DIR) exist, else say which does not
have() {
	local dir=$1 f rc=0
	shift
	for f in "$@"; do
		[[ -f "$dir/$f" ]] || { echo "missing: $f (no such file)"; rc=1; }
	done
	return "$rc"
}

# report ITEM...: print "missing: ITEM" lines; fail if there is one
report() {
	local item
	for item in "$@"; do printf 'missing: %s\n' "$item"; done
	(($# == 0))
}

# Every command in vmdisk(1)'s COMMANDS and in the README's usage.
check_commands() {
	local dir=$1 c miss=()
	have "$dir" doc/vmdisk.1 README.md || return 1
	section_of "$dir/doc/vmdisk.1" COMMANDS >"$tmp/cmds.txt"
	sed -n '/^## Usage/,/^## /p' "$dir/README.md" >"$tmp/usage.txt"
	for c in $(src_commands); do
		has_word "$tmp/cmds.txt" "$c" || miss+=("vmdisk(1) COMMANDS: $c")
		has_word "$tmp/usage.txt" "$c" || miss+=("README Usage: $c")
	done
	report "${miss[@]}"
}

# Every long and short option in vmdisk(1) and the README.
check_options() {
	local dir=$1 o miss=()
	have "$dir" doc/vmdisk.1 README.md || return 1
	plain "$dir/doc/vmdisk.1" >"$tmp/page.txt"
	for o in $(src_long_options) $(src_short_options); do
		has_word "$tmp/page.txt" "$o" || miss+=("vmdisk(1): $o")
		has_word "$dir/README.md" "$o" || miss+=("README: $o")
	done
	report "${miss[@]}"
}

# Every long and short option of vmdiskd in vmdiskd(8).
check_daemon_options() {
	local dir=$1 o miss=() src=$root/tools/vmdiskd.c
	have "$dir" doc/vmdiskd.8 || return 1
	plain "$dir/doc/vmdiskd.8" >"$tmp/page8.txt"
	for o in $(grep -oE '\{"[a-z][a-z-]*", *(no|required)_argument' "$src" |
		sed -E 's/^\{"([^"]+)".*/--\1/') \
		$(grep -oE 'getopt_long\([^,]+, *[^,]+, *"[^"]*"' "$src" |
			sed -E 's/.*"([^"]*)"$/\1/' | tr -d ':\n' | fold -w1 | sed 's/^/-/'); do
		has_word "$tmp/page8.txt" "$o" || miss+=("vmdiskd(8): $o")
	done
	report "${miss[@]}"
}

# Every key in vmdisk.conf(5)'s KEYS, the README's configuration table and
# the example (as a commented-out "#key = default" line).
check_keys() {
	local dir=$1 k miss=()
	have "$dir" doc/vmdisk.conf.5 doc/vmdisk.conf.example README.md || return 1
	section_of "$dir/doc/vmdisk.conf.5" KEYS >"$tmp/keys.txt"
	sed -n '/^## Configuration/,/^## /p' "$dir/README.md" | grep '^|' >"$tmp/table.txt"
	for k in $(src_keys); do
		has_word "$tmp/keys.txt" "$k" || miss+=("vmdisk.conf(5) KEYS: $k")
		grep -qF "\`$k\`" "$tmp/table.txt" || miss+=("README configuration table: $k")
		grep -qE "^#$k =( |\$)" "$dir/doc/vmdisk.conf.example" ||
			miss+=("doc/vmdisk.conf.example: #$k = ...")
	done
	report "${miss[@]}"
}

# Every public function in libvmdisk(3)'s FUNCTIONS, as NAME(.
check_functions() {
	local dir=$1 f miss=()
	have "$dir" doc/libvmdisk.3 || return 1
	section_of "$dir/doc/libvmdisk.3" FUNCTIONS >"$tmp/funcs.txt"
	for f in $(src_functions); do
		grep -qF "$f(" "$tmp/funcs.txt" || miss+=("libvmdisk(3) FUNCTIONS: $f")
	done
	report "${miss[@]}"
}

# Every page renders without a warning, with groff -ww and with man -l.
check_render() {
	local dir=$1 p out rc=0
	for p in "$dir"/doc/*.[1-8]; do
		out=$(groff -man -Tutf8 -ww -z "$p" 2>&1)
		[[ -z "$out" ]] || { echo "groff: $(basename "$p"): $out"; rc=1; }
		out=$(MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null)
		[[ -z "$out" ]] || { echo "man -l: $(basename "$p"): $out"; rc=1; }
	done
	return "$rc"
}

# The example loads, as shipped and with every key uncommented (with
# instances_path pointed at a scratch folder).
check_example() {
	local dir=$1 ex=$1/doc/vmdisk.conf.example inst
	have "$dir" doc/vmdisk.conf.example || return 1
	inst=$(mktemp -d "$tmp/inst.XXXXXX")
	"$cli" --config "$ex" cache list >"$tmp/ex.out" 2>&1 ||
		{ echo "as shipped: $(head -c 300 "$tmp/ex.out")"; return 1; }
	sed -E "s|^#([a-z_0-9]+ =)|\1|; s|^(instances_path =).*|\1 $inst|" "$ex" >"$tmp/ex-all.conf"
	"$cli" --config "$tmp/ex-all.conf" cache list >"$tmp/ex.out" 2>&1 ||
		{ echo "every key uncommented: $(head -c 300 "$tmp/ex.out")"; return 1; }
}

# doc/meson.build installs every page and the example.
check_install() {
	local dir=$1 p miss=()
	for p in "$dir"/doc/*.[1-8] "$dir/doc/vmdisk.conf.example"; do
		grep -qF "'$(basename "$p")'" "$dir/doc/meson.build" ||
			miss+=("doc/meson.build: $(basename "$p")")
	done
	report "${miss[@]}"
}

# ---- the cases ----

# The source tables must not be empty (a parser that finds nothing would
# pass every check).
n_cmds=$(src_commands | wc -l)
n_long=$(src_long_options | wc -l)
n_short=$(src_short_options | wc -l)
n_keys=$(src_keys | wc -l)
n_funcs=$(src_functions | wc -l)
if ((n_cmds >= 10 && n_long >= 20 && n_short >= 5 && n_keys >= 40 && n_funcs >= 50)); then
	ok "sources parsed: $n_cmds commands, $n_long long and $n_short short options, $n_keys keys, $n_funcs functions"
else
	bad "sources parsed: $n_cmds commands, $n_long long and $n_short short options, $n_keys keys, $n_funcs functions (too few: the parser lost a table)"
fi

# case NAME CHECK: run CHECK on the tree; ok, or bad with what it printed.
case_on_tree() {
	local name=$1 out
	if out=$("$2" "$tree" 2>&1); then
		ok "$name"
	else
		bad "$name: $(printf '%s' "$out" | head -n 20 | tr '\n' ';')"
	fi
}
case_on_tree "every command in vmdisk(1) and the README" check_commands
case_on_tree "every option in vmdisk(1) and the README" check_options
case_on_tree "every vmdiskd option in vmdiskd(8)" check_daemon_options
case_on_tree "every config key in vmdisk.conf(5), the README table and the example" check_keys
case_on_tree "every public function in libvmdisk(3)" check_functions
case_on_tree "every page renders without warnings (groff -ww, man -l)" check_render
case_on_tree "vmdisk.conf.example loads, as shipped and uncommented" check_example
case_on_tree "doc/meson.build installs every page and the example" check_install

# ---- the test of the test: each check fails on a copy missing one item ----

# mutant NAME: a fresh copy of the tree's README.md and doc/ in $mut
mutant() {
	mut=$tmp/mut-$1
	mkdir -p "$mut"
	cp "$tree/README.md" "$mut/"
	cp -r "$tree/doc" "$mut/"
}
# drop FILE WORD: remove every line holding WORD (after \ is dropped, so
# \-\-dry\-run is --dry-run)
drop() {
	awk -v w="$2" '{ l = $0; gsub(/\\/, "", l); if (index(l, w)) next; print }' \
		"$1" >"$1.new" && mv "$1.new" "$1"
}
# fails_naming NAME CHECK WANT: CHECK on $mut must fail and print WANT
fails_naming() {
	local out
	if out=$("$2" "$mut" 2>&1); then
		bad "$1: the check passed on the mutated copy"
	elif [[ "$out" != *"$3"* ]]; then
		bad "$1: failed without naming '$3': $(printf '%s' "$out" | head -n 5 | tr '\n' ';')"
	else
		ok "$1: $(printf '%s' "$out" | grep -F -- "$3" | head -n 1)"
	fi
}

cmd=$(src_commands | tail -n 1)
mutant cmd-man
drop "$mut/doc/vmdisk.1" "$cmd"
fails_naming "drift caught: command '$cmd' taken out of vmdisk(1)" check_commands "vmdisk(1) COMMANDS: $cmd"
mutant cmd-readme
drop "$mut/README.md" "$cmd"
fails_naming "drift caught: command '$cmd' taken out of the README" check_commands "README Usage: $cmd"

opt=--dry-run
mutant opt-man
drop "$mut/doc/vmdisk.1" "$opt"
fails_naming "drift caught: option $opt taken out of vmdisk(1)" check_options "vmdisk(1): $opt"
mutant opt-readme
drop "$mut/README.md" "$opt"
fails_naming "drift caught: option $opt taken out of the README" check_options "README: $opt"
mutant short-man
sed -i -E 's/\\-O([^A-Za-z]|$)/\\-Q\1/g' "$mut/doc/vmdisk.1"
fails_naming "drift caught: short option -O taken out of vmdisk(1)" check_options "vmdisk(1): -O"

mutant daemon-opt
drop "$mut/doc/vmdiskd.8" "--exit-after"
fails_naming "drift caught: vmdiskd option --exit-after taken out of vmdiskd(8)" check_daemon_options "vmdiskd(8): --exit-after"

key=$(src_keys | tail -n 1)
mutant key-man
drop "$mut/doc/vmdisk.conf.5" "$key"
fails_naming "drift caught: key $key taken out of vmdisk.conf(5)" check_keys "vmdisk.conf(5) KEYS: $key"
mutant key-readme
drop "$mut/README.md" "$key"
fails_naming "drift caught: key $key taken out of the README table" check_keys "README configuration table: $key"
mutant key-example
drop "$mut/doc/vmdisk.conf.example" "#$key ="
fails_naming "drift caught: key $key taken out of vmdisk.conf.example" check_keys "doc/vmdisk.conf.example: #$key"

fn=$(src_functions | tail -n 1)
mutant func
drop "$mut/doc/libvmdisk.3" "$fn("
fails_naming "drift caught: function $fn taken out of libvmdisk(3)" check_functions "libvmdisk(3) FUNCTIONS: $fn"

mutant render
printf '.XZ not a macro\n.BR\n' >>"$mut/doc/vmdisk.1"
fails_naming "a page with a roff warning is caught" check_render "vmdisk.1"

mutant example
printf 'no_such_key = 1\n' >>"$mut/doc/vmdisk.conf.example"
fails_naming "an example with an unknown key is caught" check_example "no_such_key"
mutant example-value
sed -i -E 's/^#(http_retries =).*/#\1 11/' "$mut/doc/vmdisk.conf.example"
fails_naming "an example whose shown default is out of range is caught" check_example "http_retries"

mutant install
sed -i "s/, 'libvmdisk.3'//" "$mut/doc/meson.build"
fails_naming "a page meson does not install is caught" check_install "libvmdisk.3"

finish
