#!/usr/bin/env python3
"""The no-shell check (issue 16): what did our binaries execute?

    noshell_check.py DESIGN_MD STRACE_LOG...

Each STRACE_LOG is the output of

    strace -f -qq --seccomp-bpf -e signal=none -s 65536 \
        -e trace=execve,clone,clone3,fork,vfork -o LOG SUITE

(scripts/test.sh runs every tests/suite/*/run.sh so). Every line starts
with the pid. The check follows each process's image: a child starts with
its parent's image (known from the clone/fork line that returned its pid),
and a successful execve replaces it. An execve made by a process whose
image is one of our binaries (vmdisk, vmdiskd, a test program of
build/tests: any path with a /build*/tools/ or /build*/tests/ folder, or
named like ours) is ours: the program must be in the allow-list of
DESIGN_MD (the tables between the "exec-allow-list" markers) and its argv
must match one of the shapes listed for it. A shell (sh, bash, dash, and
the like) is never allowed. The suites' own scripts are not ours; their
execs are only counted.

Checks itself first (SELF_TEST: made-up logs it must refuse or pass).
Prints one case line per log ("ok NAME" / "FAIL NAME"), a FAIL line per
offending execve (the first 20 of a log), "figure: ..." lines and last
"N passed, N failed". Exit 0 when nothing failed.
"""
import os
import re
import sys

SHELLS = {'sh', 'bash', 'dash', 'ash', 'zsh', 'ksh', 'mksh', 'busybox',
          'csh', 'tcsh', 'fish', 'rbash', 'posh', 'yash'}
OUR_NAMES = {'vmdisk', 'vmdiskd', 'key_fetch', 'replay_corpus'}
OUR_PREFIXES = ('test_', 'fuzz_')
OUR_DIRS = re.compile(r'/build[^/]*/(tools|tests)/')


def table_rows(text, marker):
    """The rows (lists of cells) of the table between <!-- MARKER --> and
    <!-- end MARKER -->, header and rule left out."""
    start = text.index('<!-- %s -->' % marker)
    end = text.index('<!-- end %s -->' % marker, start)
    rows = []
    for line in text[start:end].splitlines():
        line = line.strip()
        if not line.startswith('|'):
            continue
        cells = [c.strip().replace('\\|', '|')
                 for c in re.split(r'(?<!\\)\|', line.strip('|'))]
        if set(cells[0]) <= set('-: '):
            continue
        rows.append(cells)
    return rows[1:]  # the header


def load_allow_list(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    placeholders = {}
    for cells in table_rows(text, 'exec-allow-list: placeholders'):
        placeholders[cells[0]] = re.compile(cells[1].strip('`'))
    shapes = {}
    for cells in table_rows(text, 'exec-allow-list: programs'):
        shape = cells[1].strip('`').split()
        shapes.setdefault(cells[0], []).append(shape)
    test_shapes = {k: list(v) for k, v in shapes.items()}
    for cells in table_rows(text, 'exec-allow-list: test programs'):
        shape = cells[1].strip('`').split()
        test_shapes.setdefault(cells[0], []).append(shape)
    return shapes, test_shapes, placeholders


def shape_matches(shape, argv, placeholders):
    """argv matches shape: literal words, PLACEHOLDERs (one element
    each), [optional groups] (not nested) and a last PLACEHOLDER... (the
    rest of argv, every element matching it)."""
    # Expand the optional groups into every combination.
    alternatives = [[]]
    i = 0
    while i < len(shape):
        word = shape[i]
        if word.startswith('['):
            group = []
            while True:
                w = shape[i]
                group.append(w.strip('[]'))
                i += 1
                if w.endswith(']'):
                    break
            alternatives = [a + g for a in alternatives for g in ([], group)]
        else:
            alternatives = [a + [word] for a in alternatives]
            i += 1
    for alt in alternatives:
        if alt and alt[-1].endswith('...'):
            # PLACEHOLDER...: the rest of argv, each element matching it
            rest = placeholders[alt[-1][:-3]]
            alt = alt[:-1]
            if len(argv) < len(alt) or not all(
                    rest.fullmatch(a) for a in argv[len(alt):]):
                continue
            head = argv[:len(alt)]
        else:
            head = argv
        if len(alt) != len(head):
            continue
        for want, got in zip(alt, head):
            if want in placeholders:
                if not placeholders[want].fullmatch(got):
                    break
            elif want != got:
                break
        else:
            return True
    return False


def c_string(s, i):
    """Decode the strace-quoted string starting at s[i] == '"'; return
    (text, index after the closing quote and any '...' mark)."""
    assert s[i] == '"'
    out = bytearray()
    i += 1
    esc = {'n': 10, 't': 9, 'r': 13, 'v': 11, 'f': 12, 'a': 7, 'b': 8,
           '\\': 92, '"': 34, "'": 39}
    while i < len(s) and s[i] != '"':
        c = s[i]
        if c == '\\' and i + 1 < len(s):
            n = s[i + 1]
            if n == 'x':
                out.append(int(s[i + 2:i + 4], 16))
                i += 4
                continue
            if n.isdigit():
                j = i + 1
                while j < len(s) and j < i + 4 and s[j] in '01234567':
                    j += 1
                out.append(int(s[i + 1:j], 8) & 255)
                i = j
                continue
            out.append(esc.get(n, ord(n)))
            i += 2
            continue
        out += c.encode('utf-8', 'surrogateescape')
        i += 1
    i += 1
    if s.startswith('...', i):
        i += 3
    return out.decode('utf-8', 'replace'), i


def parse_execve(args):
    """(filename, argv) from the text after 'execve('."""
    filename, i = c_string(args, 0)
    argv = []
    i = args.index('[', i) + 1
    while i < len(args):
        if args[i] == '"':
            word, i = c_string(args, i)
            argv.append(word)
        elif args[i] == ']':
            break
        elif args.startswith('...', i):
            argv.append('...')  # abbreviated: never matches a shape
            i += 3
        else:
            i += 1
    return filename, argv


LINE = re.compile(r'^(\d+) +(.*)$')
CALL = re.compile(r'^(execve|clone3?|v?fork)\((.*)$')
RESUMED = re.compile(r'^<\.\.\. (execve|clone3?|v?fork) resumed>(.*)$')
RESULT = re.compile(r'\) += (-?\d+)')


def events(path):
    """The log as a list of [pid, kind, args, result] (result None until
    a resumed line gives it), in order."""
    out = []
    pending = {}  # (pid, kind) -> index of the unfinished call
    with open(path, encoding='utf-8', errors='surrogateescape') as f:
        for line in f:
            m = LINE.match(line.rstrip('\n'))
            if not m:
                continue
            pid, rest = int(m.group(1)), m.group(2)
            c = CALL.match(rest)
            if c:
                kind, args = c.group(1), c.group(2)
                r = RESULT.search(args)
                ev = [pid, kind, args, int(r.group(1)) if r else None]
                if args.endswith('<unfinished ...>'):
                    pending[(pid, kind)] = len(out)
                out.append(ev)
                continue
            c = RESUMED.match(rest)
            if c:
                kind = c.group(1)
                r = RESULT.search(c.group(2))
                idx = pending.pop((pid, kind), None)
                if idx is None and kind == 'execve':
                    # An execve in a thread finishes under the leader's pid.
                    idx = next((pending.pop(k) for k in list(pending)
                                if k[1] == 'execve'), None)
                if idx is not None and r:
                    out[idx][3] = int(r.group(1))
    return out


def is_ours(image):
    if not image:
        return False
    base = os.path.basename(image)
    return (base in OUR_NAMES or base.startswith(OUR_PREFIXES) or
            bool(OUR_DIRS.search(image)))


def is_test_program(image):
    base = os.path.basename(image)
    return base.startswith(OUR_PREFIXES) or base == 'key_fetch' or \
        '/tests/' in image


def check_log(path, allow, placeholders):
    """(execs, ours, violations)."""
    evs = events(path)
    image = {}          # pid -> path of the program it runs now
    born_as = {}        # child pid -> the image its parent had at the clone
    execs = ours = 0
    violations = []
    for pid, kind, args, result in evs:
        if pid not in image:
            image[pid] = born_as.pop(pid, None)
        if kind != 'execve':
            if result is not None and result > 0:
                born_as[result] = image[pid]
                image.pop(result, None)  # a reused pid starts afresh
            continue
        execs += 1
        try:
            filename, argv = parse_execve(args)
        except (ValueError, IndexError):
            filename, argv = '?', []
        if is_ours(image[pid]):
            ours += 1
            shapes = allow[1] if is_test_program(image[pid]) else allow[0]
            prog = os.path.basename(filename)
            why = None
            if prog in SHELLS or (argv and os.path.basename(argv[0]) in SHELLS):
                why = 'a shell'
            elif prog not in shapes:
                why = 'not in the allow-list'
            elif not argv or argv[0] not in (prog, filename):
                why = 'argv[0] is not the program'
            elif not any(shape_matches(s, [prog] + argv[1:], placeholders) or
                         shape_matches(s, argv, placeholders)
                         for s in shapes[prog]):
                why = 'argv does not match a listed shape'
            if why:
                shown = ' '.join(repr(a)[:80] for a in argv)[:400]
                violations.append('%s ran %s (%s): %s' %
                                  (os.path.basename(image[pid]), filename,
                                   why, shown))
        if result == 0:
            image[pid] = filename
    return execs, ours, violations


# The check checks itself first: each case a made-up log (in strace's
# words) and how many of its execs must be refused.
SELF_TEST = [
    ('a shell run by vmdisk', 1, """\
100 execve("/b/build/tools/vmdisk", ["vmdisk", "create"], 0x1 /* 3 vars */) = 0
100 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 101
101 execve("/bin/sh", ["sh", "-c", "mkfs.ext4 x"], 0x2 /* 2 vars */) = 0
"""),
    ('mkfs with a label that did not pass validation', 1, """\
100 execve("/b/build/tools/vmdisk", ["vmdisk", "create"], 0x1 /* 3 vars */) = 0
100 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88 <unfinished ...>
101 execve("/usr/sbin/mkfs.ext4", ["mkfs.ext4", "-F", "-q", "-L", "$(id)", "/proc/100/fd/7"], 0x2 /* 2 vars */) = 0
100 <... clone3 resumed>) = 101
"""),
    ('listed mkfs, and what mkfs itself runs', 0, """\
100 execve("/b/build/tools/vmdisk", ["vmdisk", "create"], 0x1 /* 3 vars */) = 0
100 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88 <unfinished ...>
101 execve("/usr/sbin/mkfs.ext4", ["mkfs.ext4", "-F", "-q", "-L", "root", "/proc/100/fd/7"], 0x2 /* 2 vars */) = 0
100 <... clone3 resumed>) = 101
101 clone(child_stack=NULL, flags=SIGCHLD) = 102
102 execve("/bin/sh", ["sh", "-c", "x"], 0x2 /* 2 vars */) = 0
"""),
    ('an oracle run by the library, not a test program', 1, """\
100 execve("/b/build/tools/vmdiskd", ["vmdiskd", "--stdio"], 0x1 /* 3 vars */) = 0
100 vfork() = 101
101 execve("/usr/bin/qemu-img", ["qemu-img", "info", "x"], 0x2 /* 2 vars */) = 0
"""),
    ('an oracle run by a test program; the suite script\'s own shell', 0, """\
99 execve("/bin/bash", ["bash", "run.sh"], 0x1 /* 3 vars */) = 0
99 clone(child_stack=NULL, flags=SIGCHLD) = 100
100 execve("/b/build/tests/unit/test_x", ["test_x"], 0x1 /* 3 vars */) = 0
100 clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 101
101 execve("/usr/bin/qemu-img", ["qemu-img", "check", "-f", "qcow2", "/t/d.qcow2"], 0x2 /* 2 vars */) = 0
99 clone(child_stack=NULL, flags=SIGCHLD) = 102
102 execve("/bin/sh", ["sh", "-c", "true"], 0x2 /* 2 vars */) = 0
"""),
]


def self_test(allow, placeholders):
    """(passed, failed), printing a case line each."""
    import tempfile
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        for name, want, text in SELF_TEST:
            log = os.path.join(d, 'case.strace')
            with open(log, 'w', encoding='utf-8') as f:
                f.write(text)
            _, _, violations = check_log(log, allow, placeholders)
            if len(violations) == want:
                print('ok   noshell self-test: %s (%d refused)' % (name, want))
                passed += 1
            else:
                print('FAIL noshell self-test: %s: %d refused, expected %d'
                      % (name, len(violations), want))
                failed += 1
    return passed, failed


def main():
    if len(sys.argv) < 2:
        print('usage: noshell_check.py DESIGN_MD STRACE_LOG...',
              file=sys.stderr)
        return 2
    passed = failed = 0
    try:
        shapes, test_shapes, placeholders = load_allow_list(sys.argv[1])
    except (OSError, ValueError, re.error) as e:
        print('FAIL noshell: allow-list of %s: %s' % (sys.argv[1], e))
        print('0 passed, 1 failed')
        return 1
    passed, failed = self_test((shapes, test_shapes), placeholders)
    total_execs = total_ours = total_bad = 0
    for log in sys.argv[2:]:
        name = os.path.basename(log)
        if name.endswith('.strace'):
            name = name[:-len('.strace')]
        try:
            execs, ours, violations = check_log(log, (shapes, test_shapes),
                                                placeholders)
        except OSError as e:
            print('FAIL noshell %s: %s' % (name, e))
            failed += 1
            continue
        total_execs += execs
        total_ours += ours
        total_bad += len(violations)
        if execs == 0:
            print('FAIL noshell %s: no execve in the log (not traced?)' % name)
            failed += 1
        elif violations:
            for v in violations[:20]:
                print('FAIL noshell %s: %s' % (name, v))
            print('FAIL noshell %s: %d of %d execs by our binaries not allowed'
                  % (name, len(violations), ours))
            failed += 1
        else:
            print('ok   noshell %s: %d execs, %d by our binaries, all allowed'
                  % (name, execs, ours))
            passed += 1
    print('figure: noshell_execs_traced %d' % total_execs)
    print('figure: noshell_execs_by_vmdisk %d' % total_ours)
    print('figure: noshell_disallowed_execs %d' % total_bad)
    print('%d passed, %d failed' % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
