"""vmdisk.nova side by side with Nova's own imagebackend.Rbd, on the test
Ceph cluster (tests/suite/ceph/cluster.sh; run by tests/suite/ceph/nova_rbd.sh).

The same base becomes the same instance disk through Nova 26's real
nova.virt.libvirt.imagebackend.Rbd (nova_ref.py, with CONF.libvirt
images_type=rbd, images_rbd_pool=vms, images_rbd_ceph_conf, rbd_user,
rbd_secret_uuid: Nova's rbd_utils talks to the cluster through python3-rbd
and forks `rbd import`) and through vmdisk.nova's Rbd (one library call):
  - `rbd export` of both RBD images compare equal byte for byte, and both
    have the same size;
  - the libvirt XML of both is a network disk, protocol rbd, name
    vms/<uuid>_disk, the cluster's monitor, cephx auth with the secret,
    the flavor's disk QoS, and validates (virt-xml-validate);
  - snapshots: create_snap, a write, rollback_to_snap and remove_snap give
    the same bytes on both sides;
  - clone of a published image (images/NAME@snap), direct_snapshot (the
    location names the Glance image id, as Nova's) and flatten agree.
Nova's Rbd.clone() asks Glance for the image's locations (IMAGE_API) and
then calls its rbd_utils driver's clone(location, rbd_name): with no Glance
here, the Nova side calls that driver step itself.
The vmdisk.Context rbd-only methods (snapshot_*, direct_snapshot, create
with location=, flatten) are exercised with results validated against
doc/schema where a shape exists. Every RBD image made is removed.

Environment (nova_rbd.sh sets it): VMDISK_CEPH_CONF, VMDISK_CEPH_FSID,
NOVA_RBD_VMDISK_CONF (a vmdisk.conf with images_type = rbd),
NOVA_RBD_SECRET_UUID.
"""
import os
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CEPH_CONF = os.environ.get("VMDISK_CEPH_CONF")
if not CEPH_CONF:
    pytest.skip("no test cluster (VMDISK_CEPH_CONF)", allow_module_level=True)
FSID = os.environ["VMDISK_CEPH_FSID"]
VMD_CONF = os.environ["NOVA_RBD_VMDISK_CONF"]
SECRET = os.environ["NOVA_RBD_SECRET_UUID"]

rados = pytest.importorskip("rados")
rbd = pytest.importorskip("rbd")
vmdisk = pytest.importorskip("vmdisk")
vnova = pytest.importorskip("vmdisk.nova")
import nova_ref  # noqa: E402

MAPPING = {"bus": "virtio", "dev": "vda", "type": "disk"}
MiB = 1 << 20
SIZE = 32 * MiB
RBD = ["rbd", "-c", CEPH_CONF, "--id", "admin"]
from schema import valid  # noqa: E402 (python/tests/schema.py)


# ---- the cluster, seen through python3-rbd ----

@pytest.fixture(scope="module")
def cluster():
    c = rados.Rados(conffile=CEPH_CONF, rados_id="admin")
    c.connect(timeout=20)
    yield c
    c.shutdown()


def rbd_image(cluster, pool, name, **kw):
    io = cluster.open_ioctx(pool)
    try:
        return rbd.Image(io, name, **kw), io
    except BaseException:
        io.close()
        raise


def image_info(cluster, pool, name):
    """(size, parent "pool/image@snap" or "", snapshot names)"""
    img, io = rbd_image(cluster, pool, name, read_only=True)
    try:
        try:
            p = img.parent_info()
            parent = "%s/%s@%s" % p
        except rbd.ImageNotFound:
            parent = ""
        return img.size(), parent, sorted(s["name"] for s in img.list_snaps())
    finally:
        img.close()
        io.close()


def write_at(cluster, pool, name, data, offset):
    img, io = rbd_image(cluster, pool, name)
    try:
        img.write(data, offset)
    finally:
        img.close()
        io.close()


def exists(cluster, pool, name):
    io = cluster.open_ioctx(pool)
    try:
        return name in rbd.RBD().list(io)
    finally:
        io.close()


def remove_image(cluster, pool, name):
    """Unprotect and purge its snapshots, then remove (children first:
    the caller removes in reverse order of making)."""
    io = cluster.open_ioctx(pool)
    try:
        try:
            img = rbd.Image(io, name)
        except rbd.ImageNotFound:
            return
        with img:
            for s in list(img.list_snaps()):
                if img.is_protected_snap(s["name"]):
                    img.unprotect_snap(s["name"])
                img.remove_snap(s["name"])
        rbd.RBD().remove(io, name)
    finally:
        io.close()


@pytest.fixture
def made(cluster, vmd):
    """Records what a test makes and removes it after, whatever happened:
    ("vmdisk", instance) goes through vmdisk (its record too), ("rbd",
    pool, name) straight to the cluster."""
    things = []
    yield things
    for thing in reversed(things):
        if thing[0] == "vmdisk":
            try:
                vmd.context.remove(thing[1], "disk")
            except vmdisk.NotFound:
                pass
        else:
            remove_image(cluster, thing[1], thing[2])


def export(pool, name, dst):
    subprocess.run(RBD + ["export", "--no-progress", "%s/%s" % (pool, name),
                          dst], check=True, capture_output=True)
    return dst


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MiB), fb.read(MiB)
            if x != y:
                return False
            if not x:
                return True


# ---- the two sides ----

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    s = tmp_path_factory.mktemp("nova-rbd")
    base = s / "base.raw"
    with open(base, "wb") as f:
        f.write(os.urandom(4 * MiB))
        f.seek(12 * MiB)
        f.write(os.urandom(MiB))
        f.truncate(16 * MiB)
    return s


@pytest.fixture(scope="module")
def nova(scratch):
    ref = nova_ref.NovaRef(str(scratch))
    conf = ref.conf
    conf.set_override("images_type", "rbd", group="libvirt")
    conf.set_override("images_rbd_pool", "vms", group="libvirt")
    conf.set_override("images_rbd_ceph_conf", CEPH_CONF, group="libvirt")
    conf.set_override("rbd_user", "admin", group="libvirt")
    conf.set_override("rbd_secret_uuid", SECRET, group="libvirt")
    return ref


@pytest.fixture(scope="module")
def vmd():
    b = vnova.Backend(False, config=VMD_CONF, images_type="rbd")
    yield b
    b.close()


def nova_disk(nova, made, base, image_id, size=SIZE):
    inst = nova.instance()
    made.append(("rbd", "vms", "%s_disk" % inst.uuid))
    return nova.cache(inst, base, "rbd", size=size, image_id=image_id)


def vmd_disk(vmd, made, base, filename, size=SIZE):
    inst = str(uuid.uuid4())
    made.append(("vmdisk", inst))
    img = vmd.by_name(inst, "disk", disk_info_mapping=MAPPING)
    img.cache(fetch_func=nova_ref.copy_fetch(base), context=None,
              filename=filename, size=size, image_id=filename,
              trusted_certs=None)
    return img


def rbd_name(img):
    """vms/<uuid>_disk, for either side's image object."""
    return getattr(img, "rbd_name", None) or "%s_disk" % img.instance_id


def test_same_disk(scratch, cluster, nova, vmd, made, tmp_path):
    base = str(scratch / "base.raw")
    n = nova_disk(nova, made, base, "same")
    v = vmd_disk(vmd, made, base, "same")
    assert isinstance(v, vnova.Rbd)
    ns, np_, nsnaps = image_info(cluster, "vms", rbd_name(n))
    vs, vp, vsnaps = image_info(cluster, "vms", rbd_name(v))
    assert ns == vs == SIZE
    assert np_ == vp == "" and nsnaps == vsnaps == []
    assert same_bytes(export("vms", rbd_name(n), str(tmp_path / "n")),
                      export("vms", rbd_name(v), str(tmp_path / "v")))
    # ... and that is the base, then zeros.
    with open(tmp_path / "v", "rb") as f, open(base, "rb") as b:
        assert f.read(16 * MiB) == b.read()
        assert f.read() == bytes(SIZE - 16 * MiB)
    assert n.exists() and v.exists()
    assert n.get_disk_size("ignored") == SIZE
    assert v.info()["virtual_size"] == SIZE
    # Growing: both to 48 MiB.
    for img in (n, v):
        img.resize_image(48 * MiB)
        assert image_info(cluster, "vms", rbd_name(img))[0] == 48 * MiB


def validate_disk_xml(tmp_path, disk_xml):
    dom = ("<domain type='kvm'><name>t</name><memory>65536</memory>"
           "<os><type>hvm</type></os><devices>%s</devices></domain>"
           % disk_xml)
    f = tmp_path / ("domain-%s.xml" % uuid.uuid4())
    f.write_text(dom)
    r = subprocess.run(["virt-xml-validate", str(f), "domain"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_libvirt_xml(scratch, nova, vmd, made, tmp_path):
    base = str(scratch / "base.raw")
    n = nova_disk(nova, made, base, "xml")
    v = vmd_disk(vmd, made, base, "xml")
    specs = {"quota:disk_read_bytes_sec": "10485760",
             "quota:disk_write_iops_sec": "200"}
    mon = None
    texts = [n.libvirt_info("none", specs).to_xml(),
             v.libvirt_info("none", specs).to_xml(),
             v.libvirt_xml("none", specs)]
    for img, text in zip((n, v, v), texts):
        validate_disk_xml(tmp_path, text)
        disk = ET.fromstring(text)
        assert disk.get("type") == "network", text
        src = disk.find("source")
        assert src.get("protocol") == "rbd"
        assert src.get("name") == "vms/" + rbd_name(img)
        host = src.find("host")
        assert host is not None and host.get("name"), text
        mon = mon or (host.get("name"), host.get("port"))
        assert (host.get("name"), host.get("port")) == mon, text
        assert disk.find("driver").get("type") == "raw"
        assert disk.find("driver").get("cache") == "none"
        assert disk.find("target").get("dev") == "vda"
        auth = disk.find("auth")
        assert auth is not None, "no <auth> (cephx): " + text
        assert auth.get("username") == "admin"
        assert auth.find("secret").get("type") == "ceph"
        assert auth.find("secret").get("uuid") == SECRET
        iotune = disk.find("iotune")
        assert iotune is not None, "no <iotune> (flavor QoS): " + text
        assert iotune.findtext("read_bytes_sec") == "10485760"
        assert iotune.findtext("write_iops_sec") == "200"


def test_snapshots(scratch, cluster, nova, vmd, made, tmp_path):
    base = str(scratch / "base.raw")
    n = nova_disk(nova, made, base, "snap")
    v = vmd_disk(vmd, made, base, "snap")
    junk = os.urandom(MiB)
    for side, img in (("n", n), ("v", v)):
        name = rbd_name(img)
        img.create_snap("s1")
        assert image_info(cluster, "vms", name)[2] == ["s1"]
        write_at(cluster, "vms", name, junk, 2 * MiB)
        img.rollback_to_snap("s1")
        img.remove_snap("s1")
        assert image_info(cluster, "vms", name)[2] == []
        img.remove_snap("s1", ignore_errors=True)   # gone: no error
        export("vms", name, str(tmp_path / side))
    assert same_bytes(tmp_path / "n", tmp_path / "v")
    with open(tmp_path / "v", "rb") as f, open(base, "rb") as b:
        assert f.read(16 * MiB) == b.read()


@pytest.fixture
def published(scratch, cluster, made):
    """The base as Glance's rbd store publishes an image: images/NAME with
    a protected snapshot "snap"; its location."""
    name = "base-" + uuid.uuid4().hex[:8]
    subprocess.run(RBD + ["import", "--no-progress", "--image-format=2",
                          str(scratch / "base.raw"), "images/" + name],
                   check=True, capture_output=True)
    made.append(("rbd", "images", name))
    img, io = rbd_image(cluster, "images", name)
    try:
        img.create_snap("snap")
        img.protect_snap("snap")
    finally:
        img.close()
        io.close()
    return name, "rbd://%s/images/%s/snap" % (FSID, name)


def test_clone_direct_snapshot_flatten(scratch, cluster, nova, vmd, made,
                                       published, tmp_path):
    name, location = published
    # Nova: Rbd.clone() picks the location from Glance, then this.
    inst = nova.instance()
    n = nova.image(inst, "rbd")
    made.append(("rbd", "vms", n.rbd_name))
    n.driver.clone({"url": location}, n.rbd_name)
    v = vmd.by_name(str(uuid.uuid4()), "disk", disk_info_mapping=MAPPING)
    made.append(("vmdisk", v.instance_id))
    v.clone(None, location)
    for img in (n, v):
        assert img.exists()
        assert image_info(cluster, "vms", rbd_name(img))[1] == \
            "images/%s@snap" % name
    assert same_bytes(export("vms", rbd_name(n), str(tmp_path / "n")),
                      export("vms", rbd_name(v), str(tmp_path / "v")))

    # direct_snapshot: the disk published as Glance image image_id.
    locs = {}
    for side, img in (("n", n), ("v", v)):
        image_id = str(uuid.uuid4())
        made.append(("rbd", "images", image_id))
        locs[side] = img.direct_snapshot(None, uuid.uuid4().hex, "raw",
                                         image_id, name)
        made.append(("rbd", "images", locs[side].split("/")[-2]))
        assert locs[side] == "rbd://%s/images/%s/snap" % (FSID, image_id)
        size, parent, snaps = image_info(cluster, "images", image_id)
        assert parent == "" and snaps == ["snap"]
        # The disk keeps no snapshot of the operation.
        assert image_info(cluster, "vms", rbd_name(img))[2] == []
    nd, vd = (locs[s].split("/")[-2] for s in ("n", "v"))
    assert same_bytes(export("images", nd, str(tmp_path / "nd")),
                      export("images", vd, str(tmp_path / "vd")))

    for img in (n, v):
        img.flatten()
        assert image_info(cluster, "vms", rbd_name(img))[1] == ""
        img.flatten()   # already flat: no change, no error (as Nova's)
    assert same_bytes(export("vms", rbd_name(n), str(tmp_path / "n2")),
                      export("vms", rbd_name(v), str(tmp_path / "v2")))
    assert same_bytes(tmp_path / "n", tmp_path / "v2")


def test_context_rbd_methods(scratch, cluster, vmd, made, tmp_path):
    ctx = vmd.context
    base = str(scratch / "base.raw")
    u = str(uuid.uuid4())
    made.append(("vmdisk", u))
    doc = ctx.create(u, "disk", image=base, size=SIZE, backend="rbd")
    valid("create", doc)
    assert doc["virtual_size"] == SIZE
    valid("info", ctx.info(u, "disk"))
    name = "%s_disk" % u
    export("vms", name, str(tmp_path / "before"))

    assert ctx.snapshot_create(u, "disk", "s1") is None
    assert image_info(cluster, "vms", name)[2] == ["s1"]
    write_at(cluster, "vms", name, os.urandom(MiB), 0)
    assert ctx.snapshot_rollback(u, "disk", "s1") is None
    assert ctx.snapshot_remove(u, "disk", "s1") is None
    assert image_info(cluster, "vms", name)[2] == []
    assert same_bytes(tmp_path / "before",
                      export("vms", name, str(tmp_path / "after")))
    with pytest.raises(vmdisk.NotFound):
        ctx.snapshot_rollback(u, "disk", "s1")

    pub = "ctx-" + uuid.uuid4().hex[:8]
    made.append(("rbd", "images", pub))
    location = ctx.direct_snapshot(u, "disk", pub)
    valid("direct-snapshot", {"instance": u, "disk": "disk", "name": pub,
                              "location": location})
    assert location == "rbd://%s/images/%s/snap" % (FSID, pub)
    assert image_info(cluster, "images", pub)[2] == ["snap"]

    w = str(uuid.uuid4())
    made.append(("vmdisk", w))
    valid("create", ctx.create(w, "disk", location=location))
    assert image_info(cluster, "vms", "%s_disk" % w)[1] == \
        "images/%s@snap" % pub
    assert ctx.flatten(w, "disk") is None
    assert image_info(cluster, "vms", "%s_disk" % w)[1] == ""
    assert same_bytes(tmp_path / "before",
                      export("vms", "%s_disk" % w, str(tmp_path / "w")))
    ctx.remove(w, "disk")
    assert not exists(cluster, "vms", "%s_disk" % w)
    with pytest.raises(vmdisk.Error):
        ctx.create(str(uuid.uuid4()), "disk",
                   location="rbd://%s/images/../%s/snap" % (FSID, pub))
