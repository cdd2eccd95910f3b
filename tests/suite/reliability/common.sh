# shellcheck shell=bash disable=SC2154
# What the reliability parts (tests/suite/reliability/parts/*.sh) share,
# beside tests/suite/lib.sh (sourced here). Set t_name first.
#
#   scaled SMALL LARGE     the count for this run: SMALL at STRESS_SCALE=small
#                          (scripts/test.sh), LARGE at large (bench/stress)
#   figure NAME VALUE      a figure line; run.sh gathers them, bench/stress
#                          prints them
reliability_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$reliability_dir/../../.." && pwd)
# shellcheck source=tests/suite/lib.sh
. "$reliability_dir/../lib.sh"
suite_build ""

scaled() {
	if [[ "${STRESS_SCALE:-small}" == large ]]; then echo "$2"; else echo "$1"; fi
}
figure() { printf 'figure: %s %s\n' "$1" "$2"; }
