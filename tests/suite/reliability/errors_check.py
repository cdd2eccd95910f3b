#!/usr/bin/env python3
"""The error-exposure check (issue 16): one rule for every error message.

    errors_check.py TRACE...

Each TRACE is a $VMDISK_ERROR_TRACE file (fault-injection builds,
lib/core/error.c): lines "PID PROGRAM set MSG" (a message as
vmd_error_set stored it), "PID PROGRAM prefix MSG" (as a step prefixed it)
and "PID PROGRAM config KEY VALUE" (a backend setting the process loaded).
scripts/test.sh sets it for every suite and meson run.

The rule, for every message:
  1. step: the message the caller finally gets names the failed step, in
     the shape "step: what failed" (a lower-case step word or words, a
     colon, the rest). The messages of one error are followed as a chain
     (a set, then each prefix of it in the same process); the last of a
     chain is the one checked for this part, and only in the programs
     that show it (vmdisk, vmdiskd): a unit test calling an inner function
     sees a message before the public call prefixed its step.
  2. paths: no absolute path at all. The instance directory and the disks
     in it are named by the instance id and the disk name, never by the
     host path, so the only paths a caller could have supplied (its own
     image file, its config file) are its own and it has them already.
  3. backend settings: no value of a backend setting of the process's
     configuration (VG, thin pool, RBD pool, Ceph user and configuration,
     Glance and Barbican endpoints, Barbican project and token file: the
     "config" lines, written when a configuration is loaded) as a whole
     word, except as a step name ("rbd: ...") or a backend's name; the
     caller supplies none of these per call.
  4. secrets: no run of 32 or more hex digits, no base64-like run of 24 or
     more characters, and no "***" (a registered secret that reached a
     message, even redacted, means a secret went into the public text).

Text in single quotes is the caller's own input echoed back ("invalid size
'%s'"): rules 2 to 4 do not look inside it, "***" aside. test_error is left
out: it tests the error type itself with made-up texts (a secret in one).

Checks itself first (SELF_TEST: made-up traces). Prints one case line per
trace file, a FAIL line per offending message (the first 60 of a file),
figures, and last "N passed, N failed".
"""
import os
import re
import sys

STEP = re.compile(r'^[a-z][a-z0-9 _./-]{0,40}: \S')
PATH = re.compile(r'''(?:^|[\s'"(=,\[])(/[A-Za-z0-9._+~-][^\s'",;)\]]*)''')
HEX = re.compile(r'[0-9A-Fa-f]{32,}')
B64 = re.compile(r'[A-Za-z0-9+/_-]{24,}={0,2}')
UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                  r'[0-9a-f]{12}')


def looks_secret(run):
    """A base64-like run that is more than words: it mixes letters with
    digits (a UUID, a path-like word or plain hyphenated words are not)."""
    if UUID.fullmatch(run.lower()):
        return False
    has_digit = any(c.isdigit() for c in run)
    has_upper = any(c.isupper() for c in run)
    has_lower = any(c.islower() for c in run)
    return has_digit and has_upper and has_lower


SHOWN_BY = {'vmdisk', 'vmdiskd'}
BACKEND_NAMES = {'flat', 'raw', 'qcow2', 'lvm', 'rbd', 'ploop', 'default'}
EXEMPT = {'test_error'}
QUOTED = re.compile(r"'[^']*'")


def problems(msg, config_values):
    out = []
    if '***' in msg:
        out.append('a redacted secret')
    msg = QUOTED.sub("''", msg)
    m = PATH.search(msg)
    if m:
        out.append('an absolute path (%s)' % m.group(1))
    for value in config_values:
        for m in re.finditer(r'(?<![A-Za-z0-9_.-])%s(?![A-Za-z0-9_-])'
                             % re.escape(value), msg):
            if msg.startswith(': ', m.end()):
                continue  # the step "rbd: ..." names the backend, not a setting
            out.append('a backend setting (%s)' % value)
            break
    if HEX.search(msg):
        out.append('a long hex run')
    elif any(looks_secret(r) for r in B64.findall(msg)):
        out.append('a base64-like run')
    return out


def check_file(path):
    """(messages, chains, violations)"""
    chains = {}   # pid -> list of [current text] (open chains)
    finals = []   # every chain (a one-element list holding its last text)
    config = {}   # pid -> set of backend values
    messages = 0
    violations = []
    seen = set()
    with open(path, encoding='utf-8', errors='replace') as f:
        for line in f:
            parts = line.rstrip('\n').split(' ', 3)
            if len(parts) < 4 or parts[1] in EXEMPT:
                continue
            pid, prog, kind, text = parts
            pid = (pid, prog)
            if kind == 'config':
                kv = text.split(' ', 1)
                for value in (kv[1].split(',') if len(kv) == 2 else ()):
                    value = value.strip()
                    # A backend's name ("rbd", also the default pool) is
                    # public; a short value would match words by chance.
                    if len(value) >= 3 and value not in BACKEND_NAMES:
                        config.setdefault(pid, set()).add(value)
                continue
            if kind not in ('set', 'prefix'):
                continue
            messages += 1
            for p in problems(text, config.get(pid, ())):
                key = (p, text)
                if key not in seen:
                    seen.add(key)
                    violations.append('%s: "%s"' % (p, text))
            open_chains = chains.setdefault(pid, [])
            if kind == 'prefix':
                for chain in reversed(open_chains):
                    if text.endswith(': ' + chain[0]):
                        chain[0] = text
                        break
                else:
                    chain = [text, prog]
                    open_chains.append(chain)
                    finals.append(chain)
            else:
                chain = [text, prog]
                open_chains.append(chain)
                finals.append(chain)
    for chain in finals:
        if chain[1] in SHOWN_BY and not STEP.match(chain[0]):
            key = ('step', chain[0])
            if key not in seen:
                seen.add(key)
                violations.append('names no step: "%s"' % chain[0])
    return messages, len(finals), violations


# The check checks itself first: made-up traces and how many of their
# messages must break the rule.
SELF_TEST = [
    ('no step', 1, '1 vmdisk set create file failed\n'),
    ('a step added by a prefix', 0,
     '1 vmdisk set create file failed\n1 vmdisk prefix convert: create file failed\n'),
    ('a host path', 1, '1 vmdisk set create: open /etc/passwd failed\n'),
    ('a backend setting', 1,
     '1 vmdisk config images_volume_group vg-secret1\n1 vmdisk set lvm: vg-secret1 is full\n'),
    ('the backend named as the step', 0,
     '1 vmdisk config images_rbd_pool rbd\n1 vmdisk set rbd: pool not found\n'),
    ('a hex secret', 1, '1 vmdisk set key: 0123456789abcdef0123456789abcdef refused\n'),
    ('a redacted secret', 1, '1 vmdisk set key: *** refused\n'),
    ('the caller\'s own value echoed', 0,
     "1 vmdisk set size: invalid '/x/0123456789abcdef0123456789abcdef'\n"),
]


def self_test():
    import tempfile
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        for name, want, text in SELF_TEST:
            path = os.path.join(d, 'case.log')
            with open(path, 'w', encoding='utf-8') as f:
                f.write(text)
            _, _, violations = check_file(path)
            if len(violations) == want:
                print('ok   errors self-test: %s (%d break the rule)'
                      % (name, want))
                passed += 1
            else:
                print('FAIL errors self-test: %s: %d break the rule, '
                      'expected %d: %s' % (name, len(violations), want,
                                           violations))
                failed += 1
    return passed, failed


def main():
    if not sys.argv[1:]:
        print('FAIL errors: no trace file (VMDISK_ERROR_TRACE not set?)')
        print('0 passed, 1 failed')
        return 1
    passed, failed = self_test()
    total_msgs = total_chains = total_bad = 0
    distinct = set()
    for path in sys.argv[1:]:
        name = os.path.basename(path)
        if name.endswith('.log'):
            name = name[:-4]
        try:
            messages, chains, violations = check_file(path)
        except OSError as e:
            print('FAIL errors %s: %s' % (name, e))
            failed += 1
            continue
        with open(path, encoding='utf-8', errors='replace') as f:
            for line in f:
                parts = line.rstrip('\n').split(' ', 3)
                if (len(parts) == 4 and parts[2] in ('set', 'prefix') and
                        parts[1] not in EXEMPT):
                    distinct.add(parts[3])
        total_msgs += messages
        total_chains += chains
        total_bad += len(violations)
        if violations:
            for v in violations[:60]:
                print('FAIL errors %s: %s' % (name, v))
            print('FAIL errors %s: %d of %d messages break the rule'
                  % (name, len(violations), messages))
            failed += 1
        else:
            print('ok   errors %s: %d messages (%d errors) checked'
                  % (name, messages, chains))
            passed += 1
    print('figure: error_messages_checked %d' % total_msgs)
    print('figure: error_messages_distinct %d' % len(distinct))
    print('figure: errors_checked %d' % total_chains)
    print('figure: error_messages_breaking_the_rule %d' % total_bad)
    print('%d passed, %d failed' % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
