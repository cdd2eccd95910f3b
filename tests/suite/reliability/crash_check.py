#!/usr/bin/env python3
"""The invariants of an instances folder after a vmdisk process was killed
(tests/suite/reliability/parts/10-crash.sh), printed one problem a line
(nothing printed: consistent).

  crash_check.py INST IMGDIR URL PHASE

INST is instances_path, IMGDIR the folder the test's images come from
(local paths) and URL the address the HTTP server gives them under. PHASE
is "kill" (right after the kill: a disk without a record is tolerated when
it is complete, a side record without its entry too) or "final" (after the
next operation: nothing but entries, their side records, templates, locks,
instance records and the disks they name).

Checked:
  - no lock file under INST/locks is held (flock LOCK_EX|LOCK_NB);
  - each cache entry (40 hex digits) has its side record, and compares
    equal (qemu-img compare) to the image its record names; a raw source's
    sha256 is the recorded hash;
  - each disk an instance record names exists, passes qemu-img check and,
    made from a base, compares equal to that base (its cache entry, which
    must be there: a base in use is never pruned);
  - no other file anywhere (a torn or stray temporary); right after a
    kill, a `.tmp-` file (an atomic write cut before its rename, never a
    final name) is allowed, but the next run must have swept it.
"""
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys

HEX40 = re.compile(r"^[0-9a-f]{40}$")
SIDE = re.compile(r"^\.([0-9a-f]{40})\.(json|failed)$")
TEMPLATE = re.compile(r"^(ephemeral|swap)_[0-9]+")


def qemu_img(*args):
    p = subprocess.run(["qemu-img", *args], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, check=False)
    return p.returncode, p.stdout.strip().replace("\n", " ")[:200]


def vsize(path, fmt):
    p = subprocess.run(["qemu-img", "info", "--output=json", "-f", fmt, path],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True, check=False)
    try:
        return json.loads(p.stdout)["virtual-size"]
    except (ValueError, KeyError):
        return -1


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fmt_of(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    return "qcow2" if magic == b"QFI\xfb" else "raw"


def main():
    inst, imgdir, url, phase = sys.argv[1:5]
    problems = []
    final = phase == "final"

    locks = os.path.join(inst, "locks")
    if os.path.isdir(locks):
        for name in sorted(os.listdir(locks)):
            path = os.path.join(locks, name)
            fd = os.open(path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                problems.append(f"lock held: locks/{name}")
            finally:
                os.close(fd)
            if not name.endswith(".lock"):
                problems.append(f"stray file in locks: {name}")

    base = os.path.join(inst, "_base")
    entries = set()
    if os.path.isdir(base):
        names = sorted(os.listdir(base))
        entries = {n for n in names if HEX40.match(n)}
        for name in names:
            path = os.path.join(base, name)
            side = SIDE.match(name)
            if HEX40.match(name):
                problems += check_entry(base, name, imgdir, url, final)
            elif side:
                if side.group(1) not in entries and final:
                    problems.append(f"side record without its entry: {name}")
            elif TEMPLATE.match(name):
                rc, out = qemu_img("info", "-f", "raw", path)
                if rc != 0:
                    problems.append(f"template {name} unreadable: {out}")
            elif name.startswith(".tmp-") and not final:
                pass  # a killed atomic write's temporary: the next run sweeps it
            else:
                problems.append(f"stray file in the cache: {name}")

    for name in sorted(os.listdir(inst)):
        path = os.path.join(inst, name)
        if name in ("_base", "locks") or not os.path.isdir(path):
            continue
        problems += check_instance(path, name, base, entries, final)

    for p in problems:
        print(p)


def check_entry(base, name, imgdir, url, final):
    path = os.path.join(base, name)
    try:
        with open(os.path.join(base, f".{name}.json")) as f:
            info = json.load(f)
    except FileNotFoundError:
        # a prune killed between the side record and the entry; the next
        # prune removes the entry
        return [f"entry {name} without its side record"] if final else []
    except (OSError, ValueError) as e:
        return [f"entry {name} without a readable side record: {e}"]
    source = info.get("source", "")
    if source.startswith(url):
        source = os.path.join(imgdir, source[len(url):].lstrip("/"))
    if not os.path.isfile(source):
        return [f"entry {name}: source {source} not found"]
    out = []
    rc, msg = qemu_img("compare", "-q", "-f", "raw", "-F",
                       fmt_of(source), path, source)
    if rc == 0 and vsize(path, "raw") != vsize(source, fmt_of(source)):
        out.append(f"entry {name}: not the size of its source")
    elif rc != 0:
        out.append(f"entry {name} differs from {os.path.basename(source)}:"
                   f" {msg}")
    if fmt_of(source) == "raw" and info.get("hash_algo") == "sha256" and \
            sha256(path) != info.get("hash"):
        out.append(f"entry {name}: sha256 is not the recorded hash")
    return out


def ploop_format(inst_dir, disk):
    """root.hds is raw for a Plain ploop, a Parallels image otherwise."""
    try:
        with open(os.path.join(inst_dir, disk, "DiskDescriptor.xml")) as f:
            return "raw" if "<Type>Plain</Type>" in f.read() else "parallels"
    except OSError:
        return "raw"


def disk_file(inst_dir, disk, rec):
    if rec.get("backend") == "ploop":
        return (os.path.join(inst_dir, disk, "root.hds"),
                ploop_format(inst_dir, disk))
    return os.path.join(inst_dir, disk), rec.get("format", "raw")


def check_disk(path, fmt, base_path, what):
    out = []
    if not os.path.exists(path):
        return [f"{what}: {path} missing"]
    rc, msg = qemu_img("check", "-q", "-f", fmt, path)
    # raw has no check: qemu-img says so (exit 63); info then
    if rc == 63:
        rc, msg = qemu_img("info", "-f", fmt, path)
    if rc != 0:
        out.append(f"{what}: qemu-img check failed: {msg}")
    elif base_path:
        rc, msg = qemu_img("compare", "-q", "-f", fmt, "-F", "raw",
                           path, base_path)
        if rc != 0:
            out.append(f"{what}: differs from its base: {msg}")
    return out


def check_descriptor(inst_dir, disk, path, name):
    """A plain ploop's DiskDescriptor.xml names the image's size."""
    try:
        with open(os.path.join(inst_dir, disk, "DiskDescriptor.xml")) as f:
            xml = f.read()
        sectors = int(re.search(r"<Disk_size>([0-9]+)</Disk_size>",
                                xml).group(1))
    except (OSError, AttributeError, ValueError) as e:
        return [f"{name}/{disk}: DiskDescriptor.xml unreadable: {e}"]
    # A Plain image grows before its descriptor says so (a resize killed
    # in between leaves it larger, harmless); never the other way round.
    if "<Type>Plain</Type>" in xml and os.path.exists(path) and \
            os.path.getsize(path) < sectors * 512:
        return [f"{name}/{disk}: DiskDescriptor.xml says {sectors * 512}"
                f" bytes, root.hds has {os.path.getsize(path)}"]
    return []


def check_instance(inst_dir, name, base, entries, final):
    out = []
    rec_path = os.path.join(inst_dir, ".vmdisk.json")
    disks = {}
    if os.path.exists(rec_path):
        try:
            with open(rec_path) as f:
                disks = json.load(f).get("disks", {})
        except (OSError, ValueError) as e:
            return [f"instance {name}: record unreadable: {e}"]
    known = {".vmdisk.json"}
    for disk, rec in disks.items():
        known.add(disk)
        path, fmt = disk_file(inst_dir, disk, rec)
        base_id = rec.get("base", "")
        base_path = None
        if base_id:
            base_path = os.path.join(base, base_id)
            if not os.path.isfile(base_path):
                out.append(f"{name}/{disk}: its base {base_id} is gone")
                continue
        if rec.get("pending"):
            # a create killed midway: the next create removes it
            if final:
                out.append(f"{name}/{disk}: still pending")
            if not os.path.exists(path):
                continue
        elif not final and not os.path.exists(path):
            continue  # a remove killed midway: the next remove ends it
        out += check_disk(path, fmt, base_path, f"{name}/{disk}")
        if rec.get("backend") == "ploop":
            out += check_descriptor(inst_dir, disk, path, name)
            extra = set(os.listdir(os.path.join(inst_dir, disk))) - {
                "root.hds", "DiskDescriptor.xml"}
            if not final:  # a killed atomic write's temporary: swept next
                extra = {e for e in extra if not e.startswith(".tmp-")}
            if extra:
                out.append(f"{name}/{disk}: stray files {sorted(extra)}")
    for entry in sorted(os.listdir(inst_dir)):
        if entry in known:
            continue
        # A disk without a record: only a kill between publishing the disk
        # and writing the record leaves one, and it must be complete; the
        # next operation must not leave it.
        if final:
            out.append(f"{name}/{entry}: a file no record names")
            continue
        if entry.startswith("."):
            continue  # a temporary: the next operation must remove it
        path = os.path.join(inst_dir, entry)
        if os.path.isdir(path):
            fmt = ploop_format(inst_dir, entry)
            path = os.path.join(path, "root.hds")
        else:
            fmt = fmt_of(path) if os.path.isfile(path) else "raw"
        out += check_disk(path, fmt, None, f"{name}/{entry} (no record)")
    return out


if __name__ == "__main__":
    main()
