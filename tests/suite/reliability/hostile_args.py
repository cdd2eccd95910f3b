#!/usr/bin/env python3
"""Hostile input on every argument (issue 16), the driver of
parts/50-hostile-args.sh.

Three surfaces, each fed the same kinds of hostile value:
  cli     every option value and positional argument of tools/vmdisk (and a
          value forced onto each flag with --flag=VALUE), one slot at a time
          in an argv that is otherwise the valid one its baseline ran;
  config  every key of lib/core/config.c's table, through a config file;
  socket  every request field of lib/priv/privhelper.c's schema, through the
          socket of a real tools/vmdiskd.

A case passes when it is refused cleanly:
  cli/config  exit 2 (usage) or 1, exactly one line on stderr, that line
              printable ASCII and short (the input is not echoed raw), and
              nothing created under instances_path or the work folder;
  socket      one reply line {"ok":false,...} refusing the request in the
              parser ("request: ..."), and the daemon still alive.
A case whose value was taken as valid ("accepted") fails, unless the value
is in the list of values accepted by a stated rule (ACCEPTED_RULES below),
which the part prints.

Usage: hostile_args.py CLI VMDISKD TMPDIR SCALE; prints ok/FAIL lines and
figure lines, and last "PASSED FAILED" counts to the file $HOSTILE_COUNTS.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

CLI, VMDISKD, TMP, SCALE = sys.argv[1:5]
LARGE = SCALE == "large"
passed = failed = 0
cases = 0
accepted_bad = 0
accepted_rule = 0
exit_counts = {}


def ok(msg):
    global passed
    passed += 1
    print("ok   " + msg, flush=True)


def bad(msg):
    global failed
    failed += 1
    print("FAIL " + msg, flush=True)


def show(v):
    """A value as a short printable label for case lines."""
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogateescape")
    r = repr(v)[2:-1]
    return r if len(r) <= 40 else r[:30] + "...(%d bytes)" % len(v)


# ---- the hostile values ----

LONG = 64 * 1024


def hostile_strings(valid):
    """(label, bytes) for a string slot whose valid value is `valid`."""
    v = valid.encode()
    out = [
        ("empty", b""),
        ("64KiB", b"A" * LONG),
        ("non-UTF-8", b"\xff\xfe\xc0\xaf"),
        ("non-UTF-8 suffix", v + b"\xff"),
        ("../", b"../"),
        ("../ prefix", b"../" + v),
        ("/../ inside", v + b"/../x"),
        ("leading -", b"-" + v),
        ("leading --", b"--" + v),
        ("\\n", v + b"\nx"),
        ("\\r", v + b"\rx"),
        ("\\t", v + b"\tx"),
        ("ESC", v + b"\x1b[2J"),
    ]
    if LARGE:
        out += [("64KiB valid prefix", v + b"a" * LONG)]
        out += [("byte %02x" % c, v + bytes([c]) + b"x")
                for c in list(range(1, 0x20)) + [0x7f]]
        out += [("byte %02x prefix" % c, bytes([c]) + v)
                for c in list(range(1, 0x20)) + [0x7f]]
        out += [("4096 bytes", b"a" * 4096), ("256 bytes", b"a" * 256),
                ("65 bytes", b"a" * 65), ("/", b"/"), (".", b"."),
                ("..", b".."), ("blank", b" "), ("space inside", v + b" x"),
                ("quote", v + b"'\""), ("backslash", v + b"\\"),
                ("percent", v + b"%s%n"), ("dollar", v + b"$(id)"),
                ("semicolon", v + b";id"), ("pipe", v + b"|id"),
                ("glob", v + b"*"), ("utf-8 overlong /", v + b"\xc0\xaf"),
                ("utf-8 RTL override", v + "\u202e".encode()),
                ("utf-8 zero width", v + "\u200b".encode())]
    return out


def hostile_sizes():
    out = [("-1", b"-1"), ("-512", b"-512"), ("0", b"0"),
           ("2^64", b"18446744073709551616"),
           ("2^64-512", b"18446744073709551104"),
           ("2^63", b"9223372036854775808"),
           ("huge unit", b"99999999999999999999T"),
           ("2^60 P", b"1048576P"),
           ("16E", b"16E"), ("1e9", b"1e9"), ("0x200", b"0x200"),
           ("empty", b""), ("64KiB", b"9" * LONG),
           ("non-UTF-8", b"1\xff"), ("leading -", b"-1M"),
           ("\\n", b"1M\n1"), ("ESC", b"1M\x1b")]
    if LARGE:
        out += [("+1M", b"+1M"), (" 1M", b" 1M"), ("1M ", b"1M "),
                ("1.5M", b"1.5M"), ("-0", b"-0"), ("00", b"00"),
                ("2^64-1", b"18446744073709551615"),
                ("2^63-512", b"9223372036854775296"),
                ("2^56 K", b"72057594037927936K"),
                ("4P", b"4P"), ("8E", b"8E"), ("1Z", b"1Z"),
                ("1MiBB", b"1MiBB"), ("1\\t", b"1\t")]
    return out


# ---- running the CLI ----

def listing(*dirs):
    out = set()
    for d in dirs:
        for root, ds, fs in os.walk(d):
            for n in ds + fs:
                out.add(os.path.join(root, n))
    return out


def run(argv, env=None, cwd=None):
    p = subprocess.run([os.fsencode(a) if isinstance(a, str) else a
                        for a in argv], capture_output=True, env=env,
                       cwd=cwd, timeout=120)
    return p.returncode, p.stdout, p.stderr


def clean_line(err):
    """None when stderr is one short printable line, else what is wrong."""
    if err.count(b"\n") != 1 or not err.endswith(b"\n"):
        return "%d lines on stderr" % err.count(b"\n")
    line = err[:-1]
    if len(line) > 300:
        return "a %d-byte error line" % len(line)
    if any(c < 0x20 or c > 0x7e for c in line):
        return "non-printable bytes in the error line"
    return None


def judge(surface, label, rc, err, created, rule=None):
    """Count one cli/config case; rule: why acceptance is allowed."""
    global cases, accepted_bad, accepted_rule
    cases += 1
    exit_counts[rc] = exit_counts.get(rc, 0) + 1
    if rc == 0 and rule:
        accepted_rule += 1
        ok("%s: accepted by rule (%s)" % (label, rule))
        return
    if rc == 0 or created:
        accepted_bad += 1
        bad("%s: accepted (exit %d%s)" % (
            label, rc, ", created " + ", ".join(sorted(created)[:3])
            if created else ""))
        return
    if rc not in (1, 2):
        bad("%s: exit %d (%s)" % (label, rc, show(err[:200])))
        return
    why = clean_line(err)
    if why:
        bad("%s: %s: %s" % (label, why, show(err[:200])))
        return
    if LARGE:
        ok("%s: exit %d" % (label, rc))
    else:
        ok("%s: exit %d: %s" % (label, rc, err[:-1].decode()))


inst = os.path.join(TMP, "inst")
work = os.path.join(TMP, "work")
os.makedirs(inst)
os.makedirs(work)
conf = os.path.join(TMP, "vmdisk.conf")
with open(conf, "w") as f:
    f.write("[DEFAULT]\ninstances_path = %s\nlog_target = none\n"
            "images_type = flat\n" % inst)
base = os.path.join(work, "base.raw")
with open(base, "wb") as f:
    f.write(os.urandom(1 << 20))
env = dict(os.environ)
env.pop("VMDISK_CONFIG", None)


def vm(args, cwd=work):
    return run([CLI, "--config", conf] + args, env=env, cwd=cwd)


U = str(uuid.uuid4())  # the fixture disk's instance
rc, out, err = vm(["create", U, "disk", "--image", base])
if rc != 0:
    print("FAIL fixture: create: %s" % err.decode(errors="replace"))
    sys.exit(1)


def fresh():
    return str(uuid.uuid4())


# A slot: (name, builder, kind, rules). builder(value) -> argv after
# --config; kind "str" or "size"; rules: {label: why} of values accepted by
# a stated rule. The builder with the slot's valid value is the baseline,
# run first: it must succeed (0) or, for what this host cannot do (rbd),
# fail cleanly with 1 -- the hostile value must then not be what passes.
PATH_RULE = "a path names the caller's own file: any bytes but controls"
# The caller's own output file (convert and extract write it in-process
# through a descriptor: the name reaches no argv and is not under
# instances_path), so any name a file can have is theirs to choose (the
# kernel takes the bytes as they are: c0 af is no "/" to it).
OWN_FILE = ("65 bytes", "blank", "space inside", "quote", "backslash",
            "percent", "dollar", "semicolon", "pipe", "glob",
            "utf-8 RTL override", "utf-8 zero width", "utf-8 overlong /")
# --filesystem is the guest's mount point: only ever written XML-escaped
# into the printed <target dir=.../>, never a host path or an argv; "/"
# is a container's root file system.
FS_TARGET_RULES = dict.fromkeys(
    OWN_FILE[2:-1] + ("/",),
    "a guest mount point, only written XML-escaped: any text a path may be")
slots = []


def slot(name, valid, build, kind="str", base_rc=0, rules=None):
    slots.append((name, valid, build, kind, base_rc, rules or {}))


# global
slot("--config", conf, lambda v: None)  # special-cased below
slot("COMMAND", "info", lambda v: [v, U, "disk"])
slot("--json=VALUE", "", lambda v: [b"--json=" + v, "info", U, "disk"])
# fetch
slot("fetch SOURCE", base, lambda v: ["fetch", v])
slot("fetch --checksum", "sha256:" + "0" * 64,
     lambda v: ["fetch", base, "--checksum", v], base_rc=1)
# create
for opt, valid in (("--size", "2M"), ("--backend", "flat"),
                   ("--image", base)):
    slot("create " + opt, valid,
         lambda v, opt=opt: ["create", fresh(), "d", "--image", base, opt,
                             v] if opt != "--image" else
         ["create", fresh(), "d", "--image", v], "size" if opt == "--size"
         else "str")
slot("create INSTANCE", str(uuid.uuid4()), lambda v: ["create", v, "d", "--image", base])
slot("create DISK", "d", lambda v: ["create", fresh(), v, "--image", base])
slot("create --checksum", "sha256:" + "0" * 64,
     lambda v: ["create", fresh(), "d", "--image", base, "--checksum", v],
     base_rc=1)
# flat cannot clone: a well-formed location is ignored, as in Nova.
slot("create --location", "rbd://%s/pool/img/snap" % uuid.uuid4(),
     lambda v: ["create", fresh(), "d", "--image", base, "--location", v])
slot("create --blank --size", "1M",
     lambda v: ["create", fresh(), "d", "--blank", "--size", v], "size")
slot("create --fs", "ext4",
     lambda v: ["create", fresh(), "d", "--blank", "--size", "4M", "--fs", v])
slot("create --label", "lbl",
     lambda v: ["create", fresh(), "d", "--blank", "--size", "4M", "--fs",
                "ext4", "--label", v])
slot("create --key-id", str(uuid.uuid4()),
     lambda v: ["create", fresh(), "d", "--blank", "--size", "1M",
                "--key-id", v])
slot("create --blank=VALUE", "",
     lambda v: ["create", fresh(), "d", b"--blank=" + v, "--size", "1M"])
# disk commands
for c in ("info", "remove", "flatten"):
    brc = 1 if c == "flatten" else 0
    if c == "remove":
        brc = None  # baseline on a disk of its own, below
    slot(c + " INSTANCE", U, lambda v, c=c: [c, v, "disk"], base_rc=brc)
    slot(c + " DISK", "disk", lambda v, c=c: [c, U, v], base_rc=brc)
slot("resize INSTANCE", U, lambda v: ["resize", v, "disk", "2M"])
slot("resize DISK", "disk", lambda v: ["resize", U, v, "2M"])
slot("resize SIZE", "2M", lambda v: ["resize", U, "disk", v], "size")
slot("snapshot VERB", "create",
     lambda v: ["snapshot", v, U, "disk", "s1"], base_rc=1)
for i, n in ((1, "INSTANCE"), (2, "DISK"), (3, "SNAP")):
    valid = [U, "disk", "s1"][i - 1]

    def b(v, i=i):
        a = ["snapshot", "create", U, "disk", "s1"]
        a[i + 1] = v
        return a
    slot("snapshot " + n, valid, b, base_rc=1)
for i, n in ((0, "INSTANCE"), (1, "DISK"), (2, "NAME")):
    valid = [U, "disk", "img1"][i]

    def b(v, i=i):
        a = ["direct-snapshot", U, "disk", "img1"]
        a[i + 1] = v
        return a
    slot("direct-snapshot " + n, valid, b, base_rc=1)
# libvirt-xml
slot("libvirt-xml INSTANCE", U, lambda v: ["libvirt-xml", v, "disk"])
slot("libvirt-xml DISK", "disk", lambda v: ["libvirt-xml", U, v])
for opt, valid in (("--dev", "vdb"), ("--target", "vdb"),
                   ("--bus", "virtio"), ("--cache", "none"),
                   ("--discard", "unmap"), ("--boot-order", "1"),
                   ("--qos", "total_bytes_sec=1000"),
                   ("--filesystem", "/mnt/data")):
    slot("libvirt-xml " + opt, valid,
         lambda v, opt=opt: ["libvirt-xml", U, "disk", opt, v],
         "size" if opt == "--boot-order" else "str",
         rules={"empty": "an empty --qos asks for no <iotune>"}
         if opt == "--qos" else FS_TARGET_RULES
         if opt == "--filesystem" else None)
slot("libvirt-xml --qos number", "1000",
     lambda v: ["libvirt-xml", U, "disk", "--qos", b"total_bytes_sec=" + v],
     "size", rules={"0": "libvirt's iotune 0 is documented: no limit",
                    "00": "00 is decimal 0: no limit, as 0"})
# convert / extract / inspect
slot("convert SRC", base,
     lambda v: ["convert", v, os.path.join(work, "c.raw"), "-O", "raw"],
     rules={"../ prefix": PATH_RULE})
slot("convert DST", "c.raw", lambda v: ["convert", base, v, "-O", "raw"],
     rules=dict({"non-UTF-8": PATH_RULE, "non-UTF-8 suffix": PATH_RULE,
                 "../ prefix": PATH_RULE, "leading -": None},
                **dict.fromkeys(OWN_FILE, PATH_RULE)))
slot("convert -O", "raw",
     lambda v: ["convert", base, os.path.join(work, "c.raw"), "-O", v])
slot("convert -f", "raw",
     lambda v: ["convert", base, os.path.join(work, "c.raw"), "-O", "raw",
                "-f", v])
slot("convert --allow-backing=VALUE", "",
     lambda v: ["convert", base, os.path.join(work, "c.raw"), "-O", "raw",
                b"--allow-backing=" + v])
slot("extract DST", "x.raw", lambda v: ["extract", U, "disk", v],
     rules=dict({"non-UTF-8": PATH_RULE, "non-UTF-8 suffix": PATH_RULE,
                 "../ prefix": PATH_RULE},
                **dict.fromkeys(OWN_FILE, PATH_RULE)))
slot("extract INSTANCE", U, lambda v: ["extract", v, "disk", "x.raw"])
slot("extract DISK", "disk", lambda v: ["extract", U, v, "x.raw"])
slot("extract --output-format", "raw",
     lambda v: ["extract", U, "disk", "x.raw", "--output-format", v])
slot("inspect FILE", base, lambda v: ["inspect", v],
     rules={"../ prefix": PATH_RULE})
slot("inspect --allow-backing=VALUE", "",
     lambda v: ["inspect", base, b"--allow-backing=" + v])
slot("cache VERB", "list", lambda v: ["cache", v])
slot("cache --dry-run=VALUE", "",
     lambda v: ["cache", "prune", b"--dry-run=" + v])

# A disk for remove's baseline; the created outputs go again after baselines.
rc, _, err = vm(["create", U, "victim", "--image", base])
rc, _, err = vm(["remove", U, "victim"])
if rc != 0:
    bad("baseline remove: exit %d %s" % (rc, show(err)))


def reset_work():
    for n in os.listdir(work):
        if n != "base.raw":
            p = os.path.join(work, n)
            if os.path.isdir(p):
                subprocess.run(["rm", "-rf", p])
            else:
                os.unlink(p)


# ../ cases run in a folder two levels under work, so that "../x" stays in
# what is listed.
cwd = os.path.join(work, "a", "b")
for name, valid, build, kind, base_rc, rules in slots:
    if name == "--config":
        continue
    if base_rc is not None and valid != "":
        rc, out, err = vm(build(valid.encode() if isinstance(valid, str)
                                else valid), cwd=work)
        if rc != base_rc:
            bad("%s: baseline %s exits %d, not %d: %s" % (
                name, show(valid), rc, base_rc, show(err[:200])))
        reset_work()
    values = hostile_strings(valid)
    if kind == "size":
        values = hostile_sizes() + [x for x in values
                                    if x[0] not in ("empty", "64KiB")]
    for label, v in values:
        os.makedirs(cwd, exist_ok=True)
        before = listing(inst, work)
        rc, out, err = vm(build(v), cwd=cwd)
        created = listing(inst, work) - before
        judge("cli", "cli %s %s" % (name, label), rc, err, created,
              rules.get(label))
        reset_work()
        if created:
            # Undo what an accepted case made, so the next starts clean.
            for p in sorted(created, reverse=True):
                subprocess.run(["rm", "-rf", p])

# --config itself
for label, v in hostile_strings(conf):
    os.makedirs(cwd, exist_ok=True)
    rc, out, err = run([CLI, b"--config", v, "cache", "list"], env=env,
                       cwd=cwd)
    judge("cli", "cli --config %s" % label, rc, err, set(),
          PATH_RULE if label in ("../ prefix",) else None)

cli_cases = cases

# ---- config keys, through a file ----

VALID = {  # a valid value of each key (checked first: it must load)
    "instances_path": inst, "images_type": "flat", "use_cow_images": "true",
    "force_raw_images": "true", "preallocate_images": "none",
    "image_cache_subdirectory_name": "_base", "image_cache_group": "kvm",
    "images_volume_group": "vg0", "sparse_logical_volumes": "false",
    "volume_clear": "zero", "volume_clear_size": "10",
    "lvm_thin_pool": "pool", "images_rbd_pool": "rbd",
    "images_rbd_ceph_conf": "/etc/ceph/ceph.conf", "rbd_user": "admin",
    "rbd_secret_uuid": str(uuid.uuid4()), "lock_timeout_seconds": "60",
    "max_image_virtual_size": "1T", "remove_unused_base_images": "true",
    "remove_unused_original_minimum_age_seconds": "60",
    "remove_unused_resized_minimum_age_seconds": "60",
    "log_target": "none", "images_rbd_glance_store_pool": "images",
    "rbd_connect_timeout": "5", "rbd_clone_fallback_import": "true",
    "log_level": "info", "ca_file": "/etc/ssl/ca.pem",
    "http_connect_timeout": "30", "http_low_speed_time": "60",
    "http_low_speed_limit": "1024", "http_max_redirects": "5",
    "http_retries": "3", "max_image_download_size": "1G",
    "glance_api_servers": "http://glance.example:9292",
    "glance_token_file": "/etc/vmdisk/glance.token",
    "allowed_disk_formats": "raw,qcow2",
    "vmdiskd_socket": "/run/vmdisk/vmdiskd.sock",
    "vmdiskd_policy_file": "/etc/vmdisk/policy.conf",
    "vmdiskd_audit_log": "/var/log/vmdisk/audit.log",
    "ephemeral_storage_encryption_enabled": "false",
    "ephemeral_storage_encryption_cipher": "aes-xts-plain64",
    "ephemeral_storage_encryption_key_size": "512",
    "key_manager": "file", "key_file_dir": "/etc/vmdisk/keys",
    "barbican_endpoint": "https://barbican.example:9311",
    "barbican_token_file": "/etc/vmdisk/barbican.token",
    "barbican_project_id": "proj1",
}
NUMERIC = {"volume_clear_size", "lock_timeout_seconds",
           "max_image_virtual_size", "remove_unused_original_minimum_age_seconds",
           "remove_unused_resized_minimum_age_seconds", "rbd_connect_timeout",
           "http_connect_timeout", "http_low_speed_time",
           "http_low_speed_limit", "http_max_redirects", "http_retries",
           "max_image_download_size", "ephemeral_storage_encryption_key_size"}
EMPTY_UNSET = "an empty optional value leaves the key unset (its default)"
ZERO_DOC = "0 is a documented value of this key"
CONFIG_RULES = {
    ("image_cache_group", "empty"): EMPTY_UNSET,
    ("images_volume_group", "empty"): EMPTY_UNSET,
    ("images_rbd_ceph_conf", "empty"): EMPTY_UNSET,
    ("rbd_user", "empty"): EMPTY_UNSET,
    ("rbd_secret_uuid", "empty"): EMPTY_UNSET,
    ("ca_file", "empty"): EMPTY_UNSET,
    ("glance_api_servers", "empty"): EMPTY_UNSET,
    ("glance_token_file", "empty"): EMPTY_UNSET,
    ("barbican_endpoint", "empty"): EMPTY_UNSET,
    ("barbican_token_file", "empty"): EMPTY_UNSET,
    ("barbican_project_id", "empty"): EMPTY_UNSET,
    ("volume_clear_size", "0"): ZERO_DOC + " (clear the whole volume)",
    ("lock_timeout_seconds", "0"): ZERO_DOC + " (wait without a limit)",
    ("remove_unused_original_minimum_age_seconds", "0"):
        ZERO_DOC + " (no minimum age)",
    ("remove_unused_resized_minimum_age_seconds", "0"):
        ZERO_DOC + " (no minimum age)",
    ("http_max_redirects", "0"): ZERO_DOC + " (follow none)",
    ("http_retries", "0"): ZERO_DOC + " (no retry)",
    ("max_image_download_size", "0"): ZERO_DOC + " (no limit)",
    ("rbd_connect_timeout", "0"): ZERO_DOC + " (the default, 5 s)",
}
# inih strips blanks (isspace) around a value: what is read is the valid
# value itself, or for "blank" the empty one.
INI_TRIM = "inih strips blanks around a value: the valid value is read"
TRIMMED = ("byte 09 prefix", "byte 0b prefix", "byte 0c prefix",
           "byte 0d prefix", " 1M", "1M ", "1\\t")
NAME_KEYS = {"image_cache_subdirectory_name", "images_volume_group",
             "lvm_thin_pool", "images_rbd_pool", "images_rbd_glance_store_pool",
             "rbd_user", "barbican_project_id"}


def config_rule(key, label):
    """Why the value `label` of `key` may be taken, or None."""
    if (key, label) in CONFIG_RULES:
        return CONFIG_RULES[(key, label)]
    if label in TRIMMED:
        return INI_TRIM
    if label == "blank" and (key, "empty") in CONFIG_RULES:
        return INI_TRIM + " (empty: " + EMPTY_UNSET + ")"
    if label == "00" and (key, "0") in CONFIG_RULES:
        return "00 is decimal 0: " + CONFIG_RULES[(key, "0")]
    if label == "65 bytes" and key in NAME_KEYS:
        return ("65 allowed characters: within VMD_NAME_MAX (128), a name "
                "LVM and Ceph take")
    if label in ("4P", "2^63-512") and key in ("max_image_virtual_size",
                                               "max_image_download_size"):
        return ("a limit up to INT64_MAX: only compared with a size "
                "(overflow-checked), never added to")
    return None


# Keys whose value reaches code only in a command that needs a service;
# the config load itself is what is tested: "cache list" loads it.
cfgfile = os.path.join(TMP, "hostile.conf")


def config_case(key, label, value, rule):
    text = b"[DEFAULT]\n"
    if key != "instances_path":
        text += b"instances_path = " + inst.encode() + b"\n"
    if key != "log_target":
        text += b"log_target = none\n"
    text += key.encode() + b" = " + value + b"\n"
    with open(cfgfile, "wb") as f:
        f.write(text)
    os.makedirs(cwd, exist_ok=True)
    before = listing(inst, work)
    rc, out, err = run([CLI, "--config", cfgfile, "cache", "list"], env=env,
                       cwd=cwd)
    created = listing(inst, work) - before
    if label is None:
        if rc != 0:
            bad("config %s: valid value %s refused: %s" % (
                key, show(value), show(err)))
        return
    judge("config", "config %s %s" % (key, label), rc, err, created, rule)


for key, valid in VALID.items():
    config_case(key, None, valid.encode(), None)
    values = hostile_strings(valid)
    if key in NUMERIC:
        values = hostile_sizes() + values
    values += [("NUL", valid.encode() + b"\0x"), ("NUL alone", b"\0")]
    for label, v in values:
        config_case(key, label, v, config_rule(key, label))
for label, v in [("unknown key", b"no_such_key = 1"),
                 ("key with NUL", b"instances\0_path = /x"),
                 ("key non-UTF-8", b"\xff = 1"),
                 ("64KiB key", b"k" * LONG + b" = 1")]:
    with open(cfgfile, "wb") as f:
        f.write(b"[DEFAULT]\ninstances_path = " + inst.encode() + b"\n" + v +
                b"\n")
    rc, out, err = run([CLI, "--config", cfgfile, "cache", "list"], env=env,
                       cwd=cwd)
    judge("config", "config %s" % label, rc, err, set(), None)
config_cases = cases - cli_cases

# ---- vmdiskd request fields, through its socket ----

d = os.path.join(TMP, "d")
os.makedirs(d)
sock = os.path.join(d, "vmdiskd.sock")
policy = os.path.join(d, "policy")
audit = os.path.join(d, "audit.log")
dconf = os.path.join(d, "vmdisk.conf")
with open(dconf, "w") as f:
    # A volume group that does not exist, and requests name another one:
    # a request the parser lets through is refused by the handler before
    # any tool runs ("volume group not served here").
    f.write("[vmdisk]\nvmdiskd_socket = %s\nvmdiskd_policy_file = %s\n"
            "vmdiskd_audit_log = %s\nlog_target = stderr\nlog_level = debug\n"
            "key_file_dir = %s/keys\nimages_volume_group = vmdhostilevg\n"
            % (sock, policy, audit, d))
with open(policy, "w") as f:
    f.write("[allow]\nuid.%d = all, luks_format, luks_open, luks_close\n"
            % os.getuid())
os.chmod(policy, 0o600)
dlog = open(os.path.join(d, "vmdiskd.log"), "wb")
daemon = subprocess.Popen([VMDISKD, "--config", dconf, "--read-timeout-ms",
                           "1000"], stdout=dlog, stderr=dlog,
                          start_new_session=True)
for _ in range(300):
    if os.path.exists(sock) and os.stat(sock).st_mode & 0o777 == 0o660:
        break
    if daemon.poll() is not None:
        break
    time.sleep(0.05)


def ask(line):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock)
    try:
        s.sendall(line)
    except OSError:
        pass
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            b = s.recv(4096)
            if not b:
                break
            buf += b
    except OSError:
        pass
    s.close()
    return buf


def alive():
    return daemon.poll() is None


BASE_REQ = {  # a request of an op that takes the field, valid as it is
    "op": ("lvm_create", {"vg": "vg0", "lv": "inst_disk", "size": 1048576}),
    "vg": ("lvm_info", {"vg": "vg0", "lv": "inst_disk"}),
    "lv": ("lvm_info", {"vg": "vg0", "lv": "inst_disk"}),
    "size": ("lvm_create", {"vg": "vg0", "lv": "inst_disk",
                            "size": 1048576}),
    "sparse": ("lvm_create", {"vg": "vg0", "lv": "inst_disk",
                              "size": 1048576, "sparse": True}),
    "base": ("lvm_write_image", {"vg": "vg0", "lv": "inst_disk",
                                 "base": "a" * 40, "format": "raw"}),
    "format": ("lvm_write_image", {"vg": "vg0", "lv": "inst_disk",
                                   "base": "a" * 40, "format": "raw"}),
    "fs": ("mkfs", {"vg": "vg0", "lv": "inst_disk", "fs": "ext4"}),
    "label": ("mkfs", {"vg": "vg0", "lv": "inst_disk", "fs": "ext4",
                       "label": "lbl"}),
    "key_id": ("luks_open", {"vg": "vg0", "lv": "inst_disk",
                             "key_id": str(uuid.uuid4())}),
    "volume_clear": ("lvm_remove", {"vg": "vg0", "lv": "inst_disk",
                                    "volume_clear": "zero"}),
    "volume_clear_size": ("lvm_remove", {"vg": "vg0", "lv": "inst_disk",
                                         "volume_clear_size": 10}),
}
SOCKET_RULES = {("volume_clear_size", "0"):
                "0 is documented: clear the whole volume",
                ("volume_clear_size", "-0"):
                "-0 is JSON's 0: clear the whole volume"}
for _f in ("vg", "lv", "base"):
    SOCKET_RULES[(_f, "65 bytes raw")] = (
        "65 allowed characters: within the field's bound (VMD_NAME_MAX); "
        "the handler refuses a name it does not serve")


def request(op, fields, field, raw):
    """The request line with field's value replaced by the JSON text raw."""
    parts = [b'"op":' + (raw if field == "op" else json.dumps(op).encode())]
    for k, v in fields.items():
        parts.append(json.dumps(k).encode() + b":" +
                     (raw if k == field else json.dumps(v).encode()))
    return b"{" + b",".join(parts) + b"}\n"


def jstr(b):
    """b as the body of a JSON string: escapes only for " and \\."""
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def jesc(b):
    """b as a JSON string with every control byte escaped (\\u00XX)."""
    out = b'"'
    for c in b:
        if c < 0x20 or c in (0x22, 0x5c):
            out += b"\\u%04x" % c
        else:
            out += bytes([c])
    return out + b'"'


sock_cases = 0
if not alive() or not os.path.exists(sock):
    bad("vmdiskd did not start: %s" % open(os.path.join(d, "vmdiskd.log"),
                                           "rb").read()[-300:])
else:
    def sock_case(label, line, rule=None):
        global sock_cases, accepted_bad, accepted_rule
        sock_cases += 1
        rep = ask(line)
        try:
            r = json.loads(rep)
        except ValueError:
            r = None
        if not alive():
            bad("%s: the daemon died (reply %s)" % (label, show(rep)))
            return False
        if not isinstance(r, dict) or rep.count(b"\n") != 1:
            bad("%s: no single-line JSON reply: %s" % (label, show(rep)))
            return False
        msg = r.get("error", "")
        if r.get("ok") is False and msg.startswith("request:"):
            if LARGE:
                ok(label)
            else:
                ok("%s: %s" % (label, msg))
            return True
        if rule:
            accepted_rule += 1
            ok("%s: accepted by rule (%s)" % (label, rule))
            return True
        accepted_bad += 1
        bad("%s: accepted by the parser: %s" % (label, show(rep)))
        return False

    for field, (op, fields) in BASE_REQ.items():
        rep = ask(request(op, fields, None, b""))
        r = json.loads(rep) if rep else {}
        if not r.get("error", "request:").startswith("lvm: volume group"):
            bad("socket %s: baseline %s not refused by the handler only: %s"
                % (field, op, show(rep)))
        valid = fields.get(field, op)
        if isinstance(valid, bool):
            values = [("string", b'"true"'), ("1", b"1"), ("null", b"null"),
                      ("array", b"[true]"), ("object", b'{"a":1}')]
        elif isinstance(valid, int):
            values = [("-1", b"-1"), ("0", b"0"), ("-0", b"-0"),
                      ("2^63", b"9223372036854775808"),
                      ("2^64", b"18446744073709551616"),
                      ("2^64 + 1e3", b"18446744073709552616"),
                      ("2^63-1", b"9223372036854775807"),
                      ("1e400", b"1e400"), ("1.5", b"1.5"),
                      ("1e3", b"1e3"), ("leading 0", b"01"),
                      ("string", b'"1048576"'), ("empty string", b'""'),
                      ("null", b"null"), ("array", b"[1]"),
                      ("64KiB", b"9" * LONG), ("hex", b"0x100000"),
                      ("NaN", b"NaN"), ("-Infinity", b"-Infinity")]
        else:
            values = []
            for lab, v in hostile_strings(valid):
                values.append((lab + " raw", jstr(v)))
                if any(c < 0x20 for c in v):
                    values.append((lab + " escaped", jesc(v)))
            values += [("NUL raw", jstr(valid.encode() + b"\0x")),
                       ("NUL escaped", jstr(valid.encode()) [:-1] +
                        b'\\u0000x"'),
                       ("number", b"1"), ("null", b"null"),
                       ("array", b'["%s"]' % valid.encode()),
                       ("object", b'{"a":"b"}'),
                       ("surrogate escaped", b'"\\ud800"')]
        for label, raw in values:
            sock_case("socket %s %s" % (field, label),
                      request(op, fields, field, raw),
                      SOCKET_RULES.get((field, label)))
    # The line itself.
    for label, line in [("empty line", b"\n"), ("64KiB line",
                                                  b"{" + b" " * LONG + b"}\n"),
                        ("non-UTF-8 line", b"\xff\xfe\n"),
                        ("NUL line", b'{"op":"ping"}\0\n'),
                        ("two objects", b'{"op":"ping"}{"op":"ping"}\n'),
                        ("unknown field", b'{"op":"ping","x":1}\n'),
                        ("nested", b'{"op":"ping","vg":{"a":"b"}}\n'),
                        ("no op", b'{"vg":"vg0"}\n'),
                        ("NUL in a key", b'{"op":"ping","v\\u0000g":"x"}\n'),
                        ("array", b'["op","ping"]\n')]:
        sock_case("socket %s" % label, line)
    rep = ask(b'{"op":"ping"}\n')
    check = json.loads(rep or b"{}").get("ok") is True and alive()
    (ok if check else bad)("socket: the daemon still answers a ping")
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(10)
    except subprocess.TimeoutExpired:
        daemon.kill()
    if daemon.returncode != 0:
        bad("vmdiskd exited %s after SIGTERM" % daemon.returncode)

total = cases + sock_cases
print("figure: hostile_cases %d" % total)
print("figure: hostile_cli_cases %d" % cli_cases)
print("figure: hostile_config_cases %d" % config_cases)
print("figure: hostile_socket_cases %d" % sock_cases)
print("figure: hostile_accepted %d" % accepted_bad)
print("figure: hostile_accepted_by_rule %d" % accepted_rule)
print("exits: " + ", ".join("%s=%d" % kv for kv in sorted(exit_counts.items())))
with open(os.environ["HOSTILE_COUNTS"], "w") as f:
    f.write("%d %d\n" % (passed, failed))
