"""Tests of the Python module vmdisk (python/vmdisk/_vmdisk.c), issue 19.

Run by tests/suite/python/run.sh with Debian's /usr/bin/python3 and
PYTHONPATH=<build>/python; qemu-img makes the bases and is the oracle
for image contents (qemu-img compare). Each test has its own
configuration and instances folder (tmp_path).
"""
import fcntl
import os
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET

import pytest

import vmdisk

MiB = 1 << 20


# qemu-img without the sanitizer runtime the ASan run preloads into
# python (it hangs under it).
QEMU_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], check=True, env=QEMU_ENV,
                          capture_output=True, text=True).stdout


def compare(a, b):
    """qemu-img compare: 0 when the guest views are equal."""
    return subprocess.run(["qemu-img", "compare", a, b], env=QEMU_ENV,
                          capture_output=True).returncode


def random_raw(path, data, size):
    with open(path, "wb") as f:
        f.write(os.urandom(data))
        f.truncate(size)


class Env:
    def __init__(self, tmp_path, extra=""):
        self.dir = tmp_path
        self.inst = tmp_path / "inst"
        self.inst.mkdir()
        self.conf = tmp_path / "vmdisk.conf"
        self.conf.write_text(
            "[DEFAULT]\ninstances_path = %s\nlog_target = none\n%s"
            % (self.inst, extra))
        self.ctx = vmdisk.Context(str(self.conf))

    def base(self, name="base.qcow2", fmt="qcow2", size=64 * MiB, data=MiB):
        """A base made by qemu-img from random data (a hole after it)."""
        raw = self.dir / (name + ".src")
        random_raw(raw, data, size)
        path = self.dir / name
        qemu_img("convert", "-f", "raw", "-O", fmt, str(raw), str(path))
        return str(path)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.ctx.close()


def new_instance():
    return str(uuid.uuid4())


# ---- import, version ----

def test_import_from_the_build_tree():
    build = os.environ.get("VMDISK_PY_EXPECT_DIR")
    assert vmdisk.__file__.endswith(os.path.join("vmdisk", "__init__.py"))
    if build:
        assert vmdisk.__file__.startswith(build)
    assert vmdisk._vmdisk.__file__.startswith(os.path.dirname(vmdisk.__file__))


def test_version():
    assert vmdisk.version() == vmdisk.__version__
    assert vmdisk.__version__.count(".") == 2


# ---- create / info / resize / remove ----

@pytest.mark.parametrize("backend,fmt", [("flat", "raw"), ("qcow2", "qcow2")])
@pytest.mark.parametrize("base_fmt", ["raw", "qcow2"])
def test_create_info_resize_remove(env, backend, fmt, base_fmt):
    base = env.base("base." + base_fmt, fmt=base_fmt)
    inst = new_instance()
    info = env.ctx.create(inst, "disk", image=base, size="128M",
                          backend=backend)
    assert info["backend"] == backend
    assert info["format"] == fmt
    assert info["virtual_size"] == 128 * MiB
    assert info["path"] == str(env.inst / inst / "disk")
    assert (info["backing"] is not None) == (backend == "qcow2")
    assert info["instance"] == inst and info["disk"] == "disk"
    if backend == "qcow2":
        assert info["image_id"] == env.ctx.cache_list()[0]["id"]
        assert info["backing"].endswith("/_base/" + info["image_id"])
    else:
        assert info["image_id"] is None
    assert env.ctx.info(inst, "disk") == info
    # the guest sees the base, then zeroes
    q = qemu_img("info", "--output=json", info["path"])
    assert '"virtual-size": %d' % (128 * MiB) in q
    out = env.dir / "check.raw"
    env.ctx.extract(inst, "disk", str(out))
    src = env.dir / "base.src.raw"
    qemu_img("convert", "-O", "raw", base, str(src))
    os.truncate(src, 128 * MiB)
    assert compare(str(src), str(out)) == 0

    env.ctx.resize(inst, "disk", 256 * MiB)
    assert env.ctx.info(inst, "disk")["virtual_size"] == 256 * MiB
    env.ctx.resize(inst, disk="disk", size="512M")
    assert env.ctx.info(inst, "disk")["virtual_size"] == 512 * MiB

    env.ctx.remove(inst, "disk")
    with pytest.raises(vmdisk.NotFound):
        env.ctx.info(inst, "disk")
    assert not os.path.exists(info["path"])


def test_create_default_size_and_int_size(env):
    base = env.base()
    a, b = new_instance(), new_instance()
    assert env.ctx.create(a, "disk", image=base)["virtual_size"] == 64 * MiB
    assert env.ctx.create(b, "disk", image=base,
                          size=96 * MiB)["virtual_size"] == 96 * MiB


def test_create_blank(env):
    inst = new_instance()
    info = env.ctx.create(inst, "disk.eph0", blank=True, size="64M",
                          backend="flat")
    assert info["virtual_size"] == 64 * MiB and info["format"] == "raw"


def test_context_manager_and_close(tmp_path):
    e = Env(tmp_path)
    with e.ctx as c:
        assert c is e.ctx and not c.closed
    assert e.ctx.closed
    with pytest.raises(ValueError):
        e.ctx.info(new_instance(), "disk")
    e.ctx.close()  # twice is fine


# ---- fetch ----

def test_fetch(env):
    base = env.base()
    r = env.ctx.fetch(base)
    assert set(r) == {"id", "path", "format", "virtual_size", "size",
                      "hash_algo", "hash", "fetched"}
    # force_raw_images (the default): the cached base is raw
    assert r["fetched"] is True and r["format"] == "raw"
    assert r["virtual_size"] == 64 * MiB
    assert r["size"] == os.path.getsize(r["path"])
    assert compare(base, r["path"]) == 0
    assert r["hash_algo"] == "sha256" and len(r["hash"]) == 64
    again = env.ctx.fetch(base, checksum="sha256:" + r["hash"])
    assert again["fetched"] is False and again["path"] == r["path"]
    assert env.ctx.cache_list()[0]["id"] == r["id"]


def test_fetch_checksum_mismatch_is_unsafe(env):
    base = env.base()
    with pytest.raises(vmdisk.Unsafe) as e:
        env.ctx.fetch(base, checksum="sha256:" + "0" * 64)
    assert e.value.code == "VMD_E_REFUSED"
    assert "checksum" in str(e.value)
    assert env.ctx.cache_list() == []


# ---- inspect ----

def test_inspect_safe(env):
    base = env.base()
    r = env.ctx.inspect(base)
    assert r["safe"] is True and r["reasons"] == []
    assert r["format"] == "qcow2" and r["virtual_size"] == 64 * MiB
    assert r["cluster_size"] == 65536 and r["backing_file"] is None


def hostile_backing(env):
    """A qcow2 naming a backing file: a decoy in the scratch folder (never
    a real host file: see the common rules)."""
    decoy = env.dir / "decoy.raw"
    decoy.write_bytes(b"DECOY-NOT-FOR-THE-GUEST\n")
    os.truncate(decoy, MiB)
    evil = env.dir / "evil.qcow2"
    qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", str(decoy),
             str(evil), "1M")
    return str(evil)


def test_inspect_hostile_backing_file(env):
    evil = hostile_backing(env)
    r = env.ctx.inspect(evil)
    assert r["safe"] is False
    assert "qcow2-backing-file" in [x["check"] for x in r["reasons"]]
    assert all(set(x) == {"check", "reason"} and x["reason"]
               for x in r["reasons"])
    assert r["backing_file"].endswith("decoy.raw")
    # allowed: the name is still reported
    assert env.ctx.inspect(evil, allow_backing=True)["safe"] is True


def test_inspect_hostile_data_file(env):
    decoy = env.dir / "decoy-data.raw"  # qemu-img writes through to it
    evil = env.dir / "evil-data.qcow2"
    qemu_img("create", "-f", "qcow2", "-o", "data_file=%s" % decoy,
             str(evil), "1M")
    r = env.ctx.inspect(os.fsencode(evil))  # bytes paths work too
    assert r["safe"] is False and "qcow2-data-file" in [x["check"] for x in r["reasons"]]


def test_create_from_hostile_image_is_refused(env):
    evil = hostile_backing(env)
    inst = new_instance()
    with pytest.raises(vmdisk.Unsafe) as e:
        env.ctx.create(inst, "disk", image=evil, backend="flat")
    assert e.value.code == "VMD_E_REFUSED"
    assert str(env.dir) not in str(e.value)  # the public message only
    assert not (env.inst / inst / "disk").exists()


def test_inspect_missing_file(env):
    with pytest.raises(vmdisk.NotFound):
        env.ctx.inspect(env.dir / "nope.img")


# ---- convert / extract ----

@pytest.mark.parametrize("out_format", ["raw", "qcow2"])
def test_convert(env, out_format):
    base = env.base()
    dst = str(env.dir / ("out." + out_format))
    env.ctx.convert(base, dst, out_format)
    assert compare(base, dst) == 0
    assert qemu_img("info", "--output=json", dst).count(
        '"format": "%s"' % out_format) == 1
    dst2 = str(env.dir / ("out2." + out_format))
    env.ctx.convert(base, dst2, out_format=out_format, in_format="qcow2")
    assert compare(base, dst2) == 0
    with pytest.raises(vmdisk.Exists):
        env.ctx.convert(base, dst, out_format)


def test_convert_refuses_backing_unless_allowed(env):
    evil = hostile_backing(env)
    dst = env.dir / "flat.raw"
    with pytest.raises(vmdisk.Error):
        env.ctx.convert(evil, str(dst), "raw")
    assert not dst.exists()
    env.ctx.convert(evil, str(dst), "raw", allow_backing=True)
    assert compare(evil, str(dst)) == 0


def test_extract_qcow2(env):
    base = env.base()
    inst = new_instance()
    env.ctx.create(inst, "disk", image=base, backend="qcow2")
    out = str(env.dir / "snap.qcow2")
    env.ctx.extract(inst, "disk", out, out_format="qcow2")
    assert compare(base, out) == 0
    assert "backing" not in qemu_img("info", out)


# ---- libvirt XML ----

def test_libvirt_xml(env):
    base = env.base()
    inst = new_instance()
    info = env.ctx.create(inst, "disk", image=base, backend="qcow2")
    root = ET.fromstring(env.ctx.libvirt_xml(inst, "disk"))
    assert root.tag == "disk" and root.get("type") == "file"
    assert root.find("driver").get("type") == "qcow2"
    assert root.find("source").get("file") == info["path"]
    assert root.find("target").get("dev") == "vda"
    assert root.find("target").get("bus") == "virtio"
    root = ET.fromstring(env.ctx.libvirt_xml(
        inst, "disk", dev="sdb", bus="scsi", cache="writeback",
        discard="unmap", boot_order=2, qos="total_bytes_sec=1000"))
    assert root.find("target").attrib == {"dev": "sdb", "bus": "scsi"}
    assert root.find("driver").get("cache") == "writeback"
    assert root.find("driver").get("discard") == "unmap"
    assert root.find("boot").get("order") == "2"
    assert root.find("iotune/total_bytes_sec").text == "1000"
    fs = ET.fromstring(env.ctx.libvirt_xml(inst, "disk",
                                           filesystem="/mnt/data"))
    assert fs.tag == "filesystem"
    with pytest.raises(vmdisk.InvalidArgument):
        env.ctx.libvirt_xml(inst, "disk", bus="usb'/><evil")
    with pytest.raises(vmdisk.InvalidArgument):
        env.ctx.libvirt_xml(inst, "disk", boot_order=0)


# ---- cache ----

def test_cache_list_and_prune(tmp_path):
    e = Env(tmp_path, "remove_unused_original_minimum_age_seconds = 0\n")
    base = e.base()
    inst = new_instance()
    e.ctx.create(inst, "disk", image=base, backend="qcow2")
    items = e.ctx.cache_list()
    assert len(items) == 1
    assert set(items[0]) == {"id", "size", "allocated", "mtime", "resized",
                             "users", "hash_algo", "hash"}
    assert items[0]["users"] == 1 and items[0]["resized"] is False
    kept = e.ctx.cache_prune()
    assert [p["action"] for p in kept] == ["in-use"]
    e.ctx.remove(inst, "disk")
    would = e.ctx.cache_prune(dry_run=True)
    assert [(p["id"], p["action"]) for p in would] == \
        [(items[0]["id"], "would-remove")]
    assert len(e.ctx.cache_list()) == 1
    done = e.ctx.cache_prune()
    assert [p["action"] for p in done] == ["removed"]
    assert set(done[0]) == {"id", "action", "age", "users"}
    assert e.ctx.cache_list() == []
    e.ctx.close()


# ---- errors ----

def test_error_hierarchy():
    names = ["InvalidArgument", "NotFound", "Exists", "IOFailure",
             "OutOfMemory", "ExternalFailure", "Unsupported", "ConfigError",
             "Unsafe", "TooSmall", "Busy", "Corrupt"]
    for n in names:
        cls = getattr(vmdisk, n)
        assert issubclass(cls, vmdisk.Error) and cls is not vmdisk.Error
    assert issubclass(vmdisk.Error, Exception)


def test_error_not_found(env):
    with pytest.raises(vmdisk.NotFound) as e:
        env.ctx.info(new_instance(), "disk")
    assert e.value.code == "VMD_E_NOTFOUND"
    assert e.value.message == str(e.value) and "not found" in str(e.value)


@pytest.mark.parametrize("instance,disk", [
    ("not-a-uuid", "disk"), ("../" + new_instance(), "disk"),
    (new_instance(), "../disk"), (new_instance(), ".hidden"),
    (new_instance(), "a" * 65), (new_instance(), "")],
    ids=["not-uuid", "instance-dotdot", "disk-dotdot", "disk-dot",
         "disk-too-long", "disk-empty"])
def test_error_invalid_names(env, instance, disk):
    with pytest.raises(vmdisk.InvalidArgument) as e:
        env.ctx.create(instance, disk, blank=True, size="1M")
    assert e.value.code == "VMD_E_INVAL"


def test_error_invalid_values(env):
    inst = new_instance()
    for kw in [dict(size="12Q"), dict(size=-1), dict(size=0), dict(size=1000),
               dict(size=1 << 70), dict(backend="nfs"), dict(fs="ntfs")]:
        args = dict(blank=True, size="1M")
        args.update(kw)
        with pytest.raises(vmdisk.InvalidArgument):
            env.ctx.create(inst, "disk", **args)
    with pytest.raises(vmdisk.InvalidArgument):
        env.ctx.create(inst, "disk")  # neither image nor blank
    with pytest.raises(vmdisk.InvalidArgument):
        env.ctx.create(inst, "disk\0x", blank=True, size="1M")
    with pytest.raises(vmdisk.InvalidArgument):
        env.ctx.convert("/nonexistent", str(env.dir / "x"), "vmdk")


def test_error_types(env):
    with pytest.raises(TypeError):
        env.ctx.info(1, "disk")
    with pytest.raises(TypeError):
        env.ctx.create(new_instance(), "disk", blank=True, size=1.5)
    with pytest.raises(TypeError):
        env.ctx.create(new_instance(), "disk", blank=True, size=True)
    with pytest.raises(TypeError):
        env.ctx.inspect(42)
    with pytest.raises(TypeError):
        vmdisk.Context(config=3)


def test_error_exists_and_too_small(env):
    base = env.base()
    inst = new_instance()
    env.ctx.create(inst, "disk", image=base, backend="flat")
    with pytest.raises(vmdisk.Exists) as e:
        env.ctx.create(inst, "disk", image=base, backend="flat")
    assert e.value.code == "VMD_E_EXISTS"
    with pytest.raises(vmdisk.TooSmall) as e:
        env.ctx.create(new_instance(), "disk", image=base, size="32M")
    assert e.value.code == "VMD_E_TOOSMALL"


def test_error_unsupported(env):
    inst = new_instance()
    env.ctx.create(inst, "disk", blank=True, size="1M", backend="flat")
    with pytest.raises(vmdisk.Unsupported) as e:
        env.ctx.snapshot_create(inst, "disk", "snap1")
    assert e.value.code == "VMD_E_UNSUPPORTED"
    with pytest.raises(vmdisk.Unsupported):
        env.ctx.flatten(inst, "disk")


def test_error_config(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("[DEFAULT]\nno_such_key = 1\n")
    with pytest.raises(vmdisk.ConfigError) as e:
        vmdisk.Context(str(bad))
    assert e.value.code == "VMD_E_CONFIG"
    with pytest.raises(vmdisk.NotFound):
        vmdisk.Context(str(tmp_path / "missing.conf"))


def test_error_busy(tmp_path):
    e = Env(tmp_path, "lock_timeout_seconds = 1\n")
    inst = new_instance()
    e.ctx.create(inst, "disk", blank=True, size="1M", backend="flat")
    lock = e.inst / "locks" / ("instance-%s.lock" % inst)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(vmdisk.Busy) as err:
            e.ctx.remove(inst, "disk")
    assert err.value.code == "VMD_E_BUSY"
    e.ctx.remove(inst, "disk")
    e.ctx.close()


# ---- threads ----

class Ticker(threading.Thread):
    """Ticks every millisecond; the longest gap between two ticks says how
    long the GIL was held by someone else."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop = False
        self.max_gap = 0.0

    def run(self):
        last = time.monotonic()
        while not self.stop:
            time.sleep(0.001)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now


def test_gil_released_two_contexts_create_concurrently(tmp_path):
    e = Env(tmp_path)
    # Big enough that one copy takes long: random data is copied and hashed.
    base = e.base("big.raw", fmt="raw", size=192 * MiB, data=192 * MiB)
    ctxs = [vmdisk.Context(str(e.conf)) for _ in range(2)]
    spans, results, errors = {}, {}, []

    def worker(i):
        try:
            t0 = time.monotonic()
            inst = new_instance()
            results[i] = (inst, ctxs[i].create(inst, "disk", image=base,
                                               backend="flat"))
            spans[i] = (t0, time.monotonic())
        except Exception as ex:  # reported below
            errors.append(ex)

    ticker = Ticker()
    ticker.start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    ticker.stop = True
    ticker.join()
    assert not errors, errors
    # Both finished with the right disk; one fetched the base, both used it.
    for inst, info in results.values():
        assert info["virtual_size"] == 192 * MiB
        assert compare(base, info["path"]) == 0
    # The ticker kept running while the library worked: the GIL was free.
    assert wall > 0.2, "too fast to tell (%.3f s)" % wall
    assert ticker.max_gap < wall / 2, (ticker.max_gap, wall)
    # The two creates overlapped in time (the second did not wait for the
    # first to end before it started).
    (a0, a1), (b0, b1) = spans[0], spans[1]
    assert a0 < b1 and b0 < a1
    for c in ctxs:
        c.close()
    e.ctx.close()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_one_context_from_8_threads(env):
    """Eight threads share one new Context from its very first call (the
    library opens instances_path on first use, unlocked: the Context's
    mutex is what keeps two threads from both opening it, leaking one)."""
    base = env.base()
    errors, done = [], []
    fds = open_fds()
    ctx = vmdisk.Context(str(env.conf))
    start = threading.Barrier(8)

    def worker(n):
        try:
            start.wait()
            with pytest.raises(vmdisk.NotFound):
                ctx.info(new_instance(), "disk")
            for i in range(4):
                inst = new_instance()
                size = (65 + n * 4 + i) * MiB
                info = ctx.create(inst, "disk", image=base, size=size,
                                      backend="qcow2" if i % 2 else "flat")
                assert info["virtual_size"] == size
                assert info["path"] == str(env.inst / inst / "disk")
                got = ctx.info(inst, "disk")
                assert got == info, (got, info)
                ctx.resize(inst, "disk", size + MiB)
                assert ctx.info(inst, "disk")["virtual_size"] == size + MiB
                assert ctx.inspect(base)["safe"]
                ctx.remove(inst, "disk")
                done.append(inst)
        except Exception as ex:
            errors.append(repr(ex))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctx.close()
    assert errors == []
    assert open_fds() == fds
    assert len(done) == 32 and len(set(done)) == 32
    # every disk removed: no instance folder holds a file
    for d in os.listdir(env.inst):
        if d not in ("_base", "locks"):
            assert os.listdir(env.inst / d) == [], d


def test_close_while_other_threads_call(env):
    inst = new_instance()
    env.ctx.create(inst, "disk", blank=True, size="1M", backend="flat")
    outcomes = []

    def worker():
        for _ in range(200):
            try:
                env.ctx.info(inst, "disk")
                outcomes.append("ok")
            except ValueError:
                outcomes.append("closed")
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.01)
    env.ctx.close()
    for t in threads:
        t.join()
    assert set(outcomes) <= {"ok", "closed"}


# ---- leaks ----

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="ASan's quarantine holds freed memory: RSS grows")
def test_no_growth_over_10000_calls(env):
    inst = new_instance()
    env.ctx.create(inst, "disk", blank=True, size="1M", backend="qcow2")
    missing = new_instance()
    for _ in range(1000):  # warm up allocator pools
        env.ctx.info(inst, "disk")
    before = rss()
    for _ in range(10000):
        env.ctx.info(inst, "disk")
    mid = rss()
    for _ in range(10000):
        try:
            env.ctx.info(missing, "disk")
        except vmdisk.NotFound:
            pass
    after = rss()
    # A leaked dict or exception per call would be > 2 MiB over 10000.
    assert mid - before < 512 * 1024, (before, mid)
    assert after - mid < 512 * 1024, (mid, after)


# ---- results are the --json shapes (doc/schema/, a real validator) ----

from schema import valid  # noqa: E402 (python/tests/schema.py)


def test_results_validate_against_the_json_schemas(tmp_path):
    e = Env(tmp_path, "remove_unused_original_minimum_age_seconds = 0\n")
    base = e.base()
    valid("fetch", e.ctx.fetch(base))
    inst = new_instance()
    valid("create", e.ctx.create(inst, "disk", image=base, backend="qcow2"))
    valid("info", e.ctx.info(inst, "disk"))
    valid("inspect", e.ctx.inspect(base))
    valid("inspect", e.ctx.inspect(hostile_backing(e)))
    valid("cache-list", e.ctx.cache_list())
    valid("cache-prune", e.ctx.cache_prune(dry_run=True))
    e.ctx.close()
