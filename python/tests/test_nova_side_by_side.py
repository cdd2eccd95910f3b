"""vmdisk.nova side by side with Nova's own libvirt imagebackend.

The same base and instance are made into a disk through Nova 26's real
nova.virt.libvirt.imagebackend (nova_ref.py: CONF, nova.objects.Instance,
Backend(use_cow).by_name(...).cache(...) as the driver calls it) and through
vmdisk.nova, for qcow2 and flat:
  - qemu-img compare says the disks are equal, with the same virtual size
    and format;
  - the libvirt XML of both (Nova's LibvirtConfigGuestDisk.to_xml()) has the
    disk's path and driver type and validates (virt-xml-validate, in a
    minimal domain);
  - fetch_func runs once per base name, as Nova's contract says.
EXPECTED DIFFERENCES (hostile images Nova's path accepts, vmdisk refuses):
  - flat backend, a qcow2 base with a backing file naming a host file:
    Nova copies it as the instance disk (format qcow2) and the guest would
    read that file; vmdisk.nova raises vmdisk.Unsafe and leaves nothing;
  - flat backend, a qcow2 base with an external data file naming a host
    file: the same.
  (Nova's Qcow2 backend refuses both, since its format_inspector safety
  check; there the two agree, and that is asserted too.)
The "host file" is always a decoy in the test's scratch folder.
rbd is compared in test_nova_rbd.py, run by tests/suite/ceph (it needs
the test Ceph cluster).

Run: PYTHONPATH=build/python /usr/bin/python3 -m pytest python/tests/...
"""
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nova_ref  # noqa: E402

vmdisk = pytest.importorskip("vmdisk")
vnova = pytest.importorskip("vmdisk.nova")

MAPPING = {"bus": "virtio", "dev": "vda", "type": "disk"}
SIZE = 1 << 30
MiB = 1 << 20


def qemu_info(path):
    out = subprocess.run(["qemu-img", "info", "--output=json", path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    s = tmp_path_factory.mktemp("nova")
    base = s / "base.raw"
    with open(base, "wb") as f:
        f.write(os.urandom(8 * MiB))
        f.seek(32 * MiB)
        f.write(os.urandom(MiB))
        f.truncate(64 * MiB)
    (s / "vmdisk.conf").write_text(
        "[DEFAULT]\ninstances_path = %s\nlog_target = none\n"
        % (s / "vmd-instances"))
    return s


@pytest.fixture(scope="module")
def nova(scratch):
    return nova_ref.NovaRef(str(scratch))


@pytest.fixture(scope="module")
def vmd(scratch):
    b = vnova.Backend(True, config=str(scratch / "vmdisk.conf"))
    yield b
    b.close()


class CountingFetch:
    def __init__(self, src):
        self.src = src
        self.calls = 0

    def __call__(self, target, context=None, image_id=None,
                 trusted_certs=None):
        self.calls += 1
        shutil.copyfile(self.src, target)


def vmd_create(vmd, image_type, base, filename, size=SIZE, fetch=None):
    img = vmd.by_name(str(uuid.uuid4()), "disk", image_type=image_type,
                      disk_info_mapping=MAPPING)
    img.cache(fetch_func=fetch or CountingFetch(base), context=None,
              filename=filename, size=size, image_id=filename,
              trusted_certs=None)
    return img


def validate_disk_xml(tmp_path, disk_xml):
    dom = ("<domain type='kvm'><name>t</name><memory>65536</memory>"
           "<os><type>hvm</type></os><devices>%s</devices></domain>"
           % disk_xml)
    f = tmp_path / ("domain-%s.xml" % uuid.uuid4())
    f.write_text(dom)
    r = subprocess.run(["virt-xml-validate", str(f), "domain"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("image_type", ["qcow2", "flat"])
def test_same_disk(scratch, nova, vmd, image_type):
    base = str(scratch / "base.raw")
    n = nova.cache(nova.instance(), base, image_type, size=SIZE,
                   image_id="same-" + image_type)
    v = vmd_create(vmd, image_type, base, "same-" + image_type)
    ni, vi = qemu_info(n.path), qemu_info(v.path)
    assert ni["format"] == vi["format"] == \
        {"qcow2": "qcow2", "flat": "raw"}[image_type]
    assert ni["virtual-size"] == vi["virtual-size"] == SIZE
    r = subprocess.run(["qemu-img", "compare", "-f", ni["format"],
                        "-F", vi["format"], n.path, v.path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert v.exists() and n.exists()
    assert v.get_disk_size(v.path) == SIZE


@pytest.mark.parametrize("image_type", ["qcow2", "flat"])
def test_libvirt_xml(scratch, nova, vmd, image_type, tmp_path):
    base = str(scratch / "base.raw")
    n = nova.cache(nova.instance(), base, image_type, size=SIZE,
                   image_id="xml-" + image_type)
    v = vmd_create(vmd, image_type, base, "xml-" + image_type)
    fmt = {"qcow2": "qcow2", "flat": "raw"}[image_type]
    import xml.etree.ElementTree as ET
    for img in (n, v):
        text = img.libvirt_info("none", {}).to_xml()
        validate_disk_xml(tmp_path, text)
        disk = ET.fromstring(text)
        assert disk.get("type") == "file" and disk.get("device") == "disk"
        assert disk.find("source").get("file") == img.path
        assert disk.find("driver").get("type") == fmt
        assert disk.find("driver").get("cache") == "none"
        assert disk.find("target").get("dev") == "vda"
        assert disk.find("target").get("bus") == "virtio"
    # Without Nova's config objects: the library's string, valid too.
    validate_disk_xml(tmp_path, v.libvirt_xml("none", {}))


def test_fetch_once_per_base(scratch, vmd):
    fetch = CountingFetch(str(scratch / "base.raw"))
    disks = [vmd_create(vmd, t, None, "once", fetch=fetch)
             for t in ("qcow2", "flat", "qcow2")]
    assert fetch.calls == 1
    assert all(d.exists() for d in disks)
    # The base is stored once: its name under base_dir is the cache entry.
    assert os.stat(os.path.join(vmd.base_dir, "once")).st_nlink == 2


@pytest.mark.parametrize("image_type", ["qcow2", "flat"])
def test_resize_and_extract(scratch, nova, vmd, image_type, tmp_path):
    base = str(scratch / "base.raw")
    n = nova.cache(nova.instance(), base, image_type, size=SIZE,
                   image_id="rs-" + image_type)
    v = vmd_create(vmd, image_type, base, "rs-" + image_type)
    for img in (n, v):
        img.resize_image(2 * SIZE)
        assert qemu_info(img.path)["virtual-size"] == 2 * SIZE
    outs = []
    for name, img in (("nova", n), ("vmdisk", v)):
        out = str(tmp_path / ("%s.qcow2" % name))
        img.snapshot_extract(out, "qcow2")
        outs.append(out)
    r = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F",
                        "qcow2"] + outs, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_smaller_than_image_refused_by_both(scratch, nova, vmd):
    base = str(scratch / "base.raw")
    from nova import exception
    with pytest.raises(exception.FlavorDiskSmallerThanImage):
        nova.cache(nova.instance(), base, "qcow2", size=32 * MiB,
                   image_id="small")
    with pytest.raises(vmdisk.TooSmall):
        vmd_create(vmd, "qcow2", base, "small", size=32 * MiB)


def hostile(scratch, kind):
    """A qcow2 that makes its reader open a decoy file in scratch."""
    decoy = scratch / ("decoy-" + kind)
    decoy.write_bytes(b"")
    path = scratch / ("hostile-%s.qcow2" % kind)
    if kind == "backing":
        opts = ["-b", str(decoy), "-F", "raw"]
    else:
        opts = ["-o", "data_file=%s,data_file_raw=on" % decoy]
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2"] + opts +
                   [str(path), "1M"], check=True)
    # Written after the create, which may truncate a data file.
    with open(decoy, "r+b") as f:
        f.write(b"DECOY-HOST-FILE\n")
        f.truncate(MiB)
    return str(path)


def reads_decoy(path, tmp_path):
    out = tmp_path / ("guest-view-%s.raw" % uuid.uuid4())
    subprocess.run(["qemu-img", "convert", "-O", "raw", path, str(out)],
                   check=True, capture_output=True)
    with open(out, "rb") as f:
        return f.read(64).startswith(b"DECOY-HOST-FILE")


@pytest.mark.parametrize("kind", ["backing", "data_file"])
def test_expected_difference_flat_hostile(scratch, nova, vmd, kind,
                                          tmp_path):
    """EXPECTED DIFFERENCE: Nova's Flat accepts, vmdisk refuses."""
    src = hostile(scratch, kind)
    n = nova.cache(nova.instance(), src, "flat", size=MiB,
                   image_id="hostile-flat-" + kind)
    assert qemu_info(n.path)["format"] == "qcow2"
    assert reads_decoy(n.path, tmp_path), "Nova's disk reads the decoy host file"
    before = sorted(os.listdir(vmd.base_dir)) if os.path.isdir(
        vmd.base_dir) else []
    inst = str(uuid.uuid4())
    img = vmd.by_name(inst, "disk", image_type="flat")
    with pytest.raises(vmdisk.Unsafe):
        img.cache(fetch_func=CountingFetch(src), filename="hostile-" + kind,
                  size=MiB, image_id="hostile-" + kind)
    assert not img.exists()
    assert sorted(os.listdir(vmd.base_dir)) == sorted(
        before + [".hostile-%s.lock" % kind])


@pytest.mark.parametrize("kind", ["backing", "data_file"])
def test_qcow2_hostile_refused_by_both(scratch, nova, vmd, kind):
    src = hostile(scratch, kind)
    from nova import exception
    with pytest.raises(exception.InvalidDiskInfo):
        nova.cache(nova.instance(), src, "qcow2", size=MiB,
                   image_id="hostile-qcow2-" + kind)
    img = vmd.by_name(str(uuid.uuid4()), "disk", image_type="qcow2")
    with pytest.raises(vmdisk.Unsafe):
        img.cache(fetch_func=CountingFetch(src),
                  filename="hostile-q-" + kind, size=MiB)
    assert not img.exists()


def test_failed_fetch_leaves_nothing(scratch, vmd):
    """A fetch_func that fails leaves no base, no disk, no temporary, and
    the next cache() of that name fetches again (Nova's contract)."""
    def broken(target, **kwargs):
        with open(target, "wb") as f:
            f.write(b"partial")
        raise OSError("download cut")

    img = vmd.by_name(str(uuid.uuid4()), "disk", image_type="qcow2")
    with pytest.raises(OSError):
        img.cache(fetch_func=broken, filename="broken", size=SIZE)
    assert not img.exists()
    assert [n for n in os.listdir(vmd.base_dir)
            if "broken" in n or n.startswith(".fetch-")] == [".broken.lock"]
    fetch = CountingFetch(str(scratch / "base.raw"))
    img.cache(fetch_func=fetch, filename="broken", size=SIZE)
    assert fetch.calls == 1 and img.exists()
