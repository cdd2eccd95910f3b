#!/usr/bin/env bash
# Secrets (issue 16): a LUKS key (file provider, and Barbican), a Glance
# token, a Barbican token and a Ceph key are planted as random values; the
# operations that read them run at log_level = debug while /proc/*/cmdline
# is sampled; no secret, raw, hex or base64, may appear in a log line, an
# error, an argv, the audit log, a core file or a file not 0600. Glance and
# Barbican are loopback stand-ins here (tests/suite/reliability/
# secrets_check.py, the driver, says why). Figures: secret_occurrences,
# secret_places_checked.
set -uo pipefail
t_name=secrets
. "$(dirname "$0")/../common.sh"
need_cli
[[ -x "$build/tools/vmdiskd" ]] || fail_suite "no vmdiskd in $build"
suite_tmp
export SECRETS_COUNTS=$tmp/counts
mkdir "$tmp/t"
"$py" "$reliability_dir/secrets_check.py" "$cli" "$build/tools/vmdiskd" \
	"$tmp/t" "${STRESS_SCALE:-small}"
rc=$?
if [[ -s "$SECRETS_COUNTS" ]]; then
	read -r passed failed <"$SECRETS_COUNTS"
else
	bad "the driver stopped early (exit $rc)"
fi
((rc == 0 || failed > 0)) || bad "the driver exited $rc"
finish
