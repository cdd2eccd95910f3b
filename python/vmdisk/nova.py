"""vmdisk.nova: Nova's libvirt image-backend interface over libvmdisk.

The classes here have the method names and arguments of
nova.virt.libvirt.imagebackend (Nova 26) that the libvirt compute driver
calls, so a driver can use them in place of Nova's own:

    from vmdisk import nova as vmdisk_nova
    backend = vmdisk_nova.Backend(use_cow=True, config="/etc/vmdisk/vmdisk.conf")
    disk = backend.by_name(instance, "disk", disk_info_mapping=mapping)
    disk.cache(fetch_func=libvirt_utils.fetch_image, context=context,
               filename=imagecache.get_cache_fname(image_id), size=size,
               image_id=image_id, trusted_certs=None)
    guest_disk = disk.libvirt_info("none", flavor.extra_specs)

Each disk is made by one library call (vmdisk.Context.create): no
qemu-img fork, no Python prlimit wrapper. Nova need not be installed; when
it is, libvirt_info()/libvirt_fs_info() return Nova's own config objects
(LibvirtConfigGuestDisk / LibvirtConfigGuestFilesys) parsed from the
library's XML, else the XML string itself.

fetch_func and the base cache
-----------------------------
Nova's contract: cache(fetch_func, filename, size) calls fetch_func(target=...)
only when the base named `filename` is not cached yet, under a lock on that
name. The adapter keeps that: the base of `filename` is the file
<base_dir>/<filename> (base_dir: <instances_path>/nova-bases, 0700). When it
is absent, fetch_func writes the image into a private temporary, which is
renamed to that name and handed to the library (Context.fetch): vmdisk
inspects it with its own bounded parser, verifies it and publishes it as a
cache entry. The file under base_dir is then replaced by a hard link to that
entry, so the bytes are stored once. The library keys a local file's entry
by its canonical path (sha1 of it), so the same `filename` always finds the
same entry: a later cache() is one Context.create, with no fetch_func call,
no copy and no re-hash (the entry's header is inspected again, as for every
use). The library has no entry point to create from a cache entry named by
its id; the stable path is the cheapest correct route.
After `vmdisk cache-prune` removed an entry, the link still holds the
(already verified) bytes: the next create republishes them without calling
fetch_func. prune_bases() removes the links whose entry is gone.

Where Nova's behaviour was a defect, vmdisk's is kept
------------------------------------------------------
- Untrusted images are never given to `qemu-img info` (Nova's
  get_disk_size(), Flat's format detection and verify_base_size() run it on
  the downloaded base): vmdisk's bounded parser reads the header.
- A qcow2 base with a backing file or an external data file is refused
  (vmdisk.Unsafe) whatever the backend: Nova's Flat backend copies such a
  file as the instance disk and records it as qcow2, so the guest reads the
  host file it names.
- No base is resized or rewritten in place; a disk's backing name is the
  cache entry vmdisk made, never a name read from an image.
- Errors are vmdisk.Error subclasses carrying the public message only
  (e.g. vmdisk.TooSmall where Nova raises FlavorDiskSmallerThanImage).
"""

import configparser
import fcntl
import os
import tempfile
import threading

import vmdisk

__all__ = ["Backend", "Image", "Flat", "Qcow2", "Lvm", "Rbd", "Ploop"]

_DEFAULT_CONFIG = "/etc/vmdisk/vmdisk.conf"
_DEFAULT_INSTANCES = "/var/lib/vmdisk/instances"


def _nova_config():
    """nova.virt.libvirt.config when Nova is importable, else None."""
    try:
        from nova.virt.libvirt import config as vconfig
    except ImportError:
        return None
    return vconfig


def _instances_path(config):
    """instances_path of the vmdisk configuration the Context reads (the
    same precedence: explicit path, $VMDISK_CONFIG, the default file)."""
    path = config or os.environ.get("VMDISK_CONFIG") or _DEFAULT_CONFIG
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        with open(path) as f:
            cp.read_file(f)
    except FileNotFoundError:
        return _DEFAULT_INSTANCES
    # [DEFAULT], [libvirt] and [vmdisk] are one namespace for vmdisk.
    for section in ("vmdisk", "libvirt"):
        if cp.has_section(section) and cp.has_option(section,
                                                     "instances_path"):
            return cp.get(section, "instances_path")
    return cp.defaults().get("instances_path", _DEFAULT_INSTANCES)


def _instance_id(instance):
    """Nova passes a nova.objects.Instance; a UUID string works too."""
    return getattr(instance, "uuid", instance)


def _check_filename(filename):
    if (not isinstance(filename, str) or not filename or "/" in filename
            or filename in (".", "..") or filename.startswith(".")
            or "\0" in filename):
        raise vmdisk.InvalidArgument("bad base file name")
    return filename


class Backend:
    """nova.virt.libvirt.imagebackend.Backend over one vmdisk.Context.

    use_cow: as Nova's (image_type 'default' is qcow2 when true, else
    flat). config: the vmdisk configuration (None: $VMDISK_CONFIG, then
    /etc/vmdisk/vmdisk.conf). images_type: Nova's [libvirt] images_type
    (None: Nova's CONF.libvirt.images_type when Nova is importable, else
    'default'). context: share an existing vmdisk.Context. base_dir: where
    the per-filename bases live (default <instances_path>/nova-bases).
    """

    def __init__(self, use_cow, config=None, images_type=None, context=None,
                 base_dir=None):
        self.use_cow = use_cow
        self.config = config
        self.images_type = images_type
        self.context = context or vmdisk.Context(config)
        self.instances_path = _instances_path(config)
        self.base_dir = base_dir or os.path.join(self.instances_path,
                                                 "nova-bases")
        self._locks = {}
        self._locks_guard = threading.Lock()
        self.BACKEND = {
            "raw": Flat,
            "flat": Flat,
            "qcow2": Qcow2,
            "lvm": Lvm,
            "rbd": Rbd,
            "ploop": Ploop,
            "default": Qcow2 if use_cow else Flat,
        }

    def backend(self, image_type=None):
        image_type = image_type or self._default_type()
        image = self.BACKEND.get(image_type)
        if not image:
            raise RuntimeError("Unknown image_type=%s" % image_type)
        return image

    def _default_type(self):
        if self.images_type:
            return self.images_type
        try:
            import nova.conf
            return nova.conf.CONF.libvirt.images_type
        except Exception:  # Nova absent or its options not registered
            return "default"

    def by_name(self, instance, name, image_type=None,
                disk_info_mapping=None):
        return self.backend(image_type)(self, instance, name,
                                        disk_info_mapping=disk_info_mapping)

    def by_libvirt_path(self, instance, path, image_type=None):
        return self.backend(image_type)(self, instance,
                                        os.path.basename(path))

    def close(self):
        self.context.close()

    # ---- the per-filename bases ----

    def _name_lock(self, filename):
        with self._locks_guard:
            return self._locks.setdefault(filename, threading.Lock())

    def base(self, fetch_func, filename, *args, **kwargs):
        """The path of the base `filename`, fetched (fetch_func) and
        published into vmdisk's cache unless it already is there.
        Serialized per filename across threads and processes (Nova's
        external lock on the name)."""
        filename = _check_filename(filename)
        staged = os.path.join(self.base_dir, filename)
        if os.path.exists(staged):
            return staged
        os.makedirs(self.base_dir, mode=0o700, exist_ok=True)
        with self._name_lock(filename):
            lockfd = os.open(os.path.join(self.base_dir,
                                          ".%s.lock" % filename),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(lockfd, fcntl.LOCK_EX)
                if not os.path.exists(staged):
                    self._fetch_locked(fetch_func, filename, staged, *args,
                                       **kwargs)
            finally:
                os.close(lockfd)
        return staged

    def _fetch_locked(self, fetch_func, filename, staged, *args, **kwargs):
        tmpdir = tempfile.mkdtemp(prefix=".fetch-", dir=self.base_dir)
        target = os.path.join(tmpdir, filename)
        try:
            fetch_func(target=target, *args, **kwargs)
            # Only bytes the fetch finished get the stable name; vmdisk
            # inspects them before they become an entry, and again at
            # every use, so even a file left here by a crash is checked.
            os.rename(target, staged)
            try:
                entry = self.context.fetch(staged)
            except BaseException:
                os.unlink(staged)
                raise
            self._link_entry(entry.get("path"), staged)
        finally:
            for leftover in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, leftover))
            os.rmdir(tmpdir)

    @staticmethod
    def _link_entry(entry_path, staged):
        """Store the bytes once: the staged file becomes a link to the
        entry (same canonical path, so the same cache id). Where a link
        cannot be made (another file system) the copy stays."""
        if not entry_path:
            return
        tmp = staged + ".link"
        try:
            os.link(entry_path, tmp)
        except OSError:
            return
        os.rename(tmp, staged)

    def prune_bases(self):
        """Remove the staged bases whose cache entry vmdisk pruned (link
        count 1): their next use calls fetch_func again."""
        removed = []
        try:
            names = os.listdir(self.base_dir)
        except FileNotFoundError:
            return removed
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(self.base_dir, name)
            st = os.lstat(path)
            if st.st_nlink == 1:
                os.unlink(path)
                removed.append(name)
        return removed


class Image:
    """One disk of one instance, as nova.virt.libvirt.imagebackend.Image."""

    SUPPORTS_CLONE = False
    kind = None             # vmdisk backend name
    source_type = "file"
    driver_format = "raw"
    is_block_dev = False

    def __init__(self, backend, instance, disk_name, disk_info_mapping=None):
        self.backend = backend
        self.ctx = backend.context
        self.instance = instance
        self.instance_id = _instance_id(instance)
        self.disk_name = disk_name
        self.disk_info_mapping = disk_info_mapping
        self.discard_mode = None
        self.driver_io = None
        self.preallocate = False
        self._info = None

    # ---- what the disk is ----

    def info(self):
        """vmdisk's info dict of the disk (raises vmdisk.NotFound)."""
        self._info = self.ctx.info(self.instance_id, self.disk_name)
        return self._info

    @property
    def path(self):
        if self._info is None:
            try:
                self.info()
            except vmdisk.NotFound:
                return os.path.join(self.backend.instances_path,
                                    self.instance_id, self.disk_name)
        return self._info["path"]

    def exists(self):
        try:
            self.info()
        except vmdisk.NotFound:
            return False
        return True

    def get_disk_size(self, name):
        """Virtual size of `name` in bytes. Nova runs `qemu-img info` on any
        path (the downloaded base among them); vmdisk reads this disk's
        record, or another file's header with its bounded parser."""
        if self._info is not None and name == self._info.get("path"):
            return self._info["virtual_size"]
        return self.ctx.inspect(name)["virtual_size"]

    def resolve_driver_format(self):
        return self.info()["format"]

    # ---- making it ----

    def cache(self, fetch_func, filename, size=None, *args, **kwargs):
        """Create the disk from the base `filename` unless it exists, then
        grow it to `size`. fetch_func(target=..., *args, **kwargs) is
        called only when that base is not cached (see the module doc)."""
        if self.exists():
            if size and size > self._info["virtual_size"]:
                self.resize_image(size)
            return
        self.create_image(
            lambda target, *a, **kw: fetch_func(target=target, *a, **kw),
            os.path.join(self.backend.base_dir, filename), size,
            *args, **kwargs)

    def create_image(self, prepare_template, base, size, *args, **kwargs):
        """Nova: prepare_template(target=base) unless base exists, then the
        disk from base. Here base's name picks the cached base (the
        directory part is vmdisk's base_dir, whatever the caller's), and a
        disk smaller than the image raises vmdisk.TooSmall. Nova's Flat
        writes a generated (ephemeral, swap) image straight to the disk;
        here it becomes a cached template like any base."""
        staged = self.backend.base(prepare_template, os.path.basename(base),
                                   *args, **kwargs)
        if self.exists():
            return
        self._info = self.ctx.create(self.instance_id, self.disk_name,
                                     image=staged, size=size or None,
                                     backend=self.kind)

    def resize_image(self, size):
        """Grow the disk to size bytes; like Nova's disk.extend, a size not
        larger than the disk's is no change."""
        current = self.info()["virtual_size"]
        if size > current:
            self.ctx.resize(self.instance_id, self.disk_name, size)
            self._info = None

    def verify_base_size(self, base, size, base_size=0):
        if size is None:
            return
        base_size = base_size or self.get_disk_size(base)
        if size < base_size:
            raise vmdisk.TooSmall("requested size is smaller than the image")

    def snapshot_extract(self, target, out_format):
        """The disk's content, flattened, into the new file target."""
        self.ctx.extract(self.instance_id, self.disk_name, target,
                         out_format=out_format)

    def flatten(self):
        self.ctx.flatten(self.instance_id, self.disk_name)

    def direct_snapshot(self, context, snapshot_name, image_format, image_id,
                        base_image_id):
        """The URL Glance is given for the snapshot (rbd): as Nova's, the
        disk is published under the new Glance image's id (image_id), in
        vmdisk's images_rbd_glance_store_pool, with a protected snapshot
        "snap". snapshot_name names only Nova's temporary snapshot of the
        disk; vmdisk makes and removes its own."""
        return self.ctx.direct_snapshot(self.instance_id, self.disk_name,
                                        image_id)

    def cleanup_direct_snapshot(self, location, also_destroy_volume=False,
                                ignore_errors=False):
        pass

    def clone(self, context, image_id_or_uri):
        """Nova asks Glance for the image's locations; the adapter takes a
        backend location itself (rbd://FSID/POOL/IMAGE/SNAP)."""
        if not (self.SUPPORTS_CLONE and
                str(image_id_or_uri).startswith("rbd://")):
            raise vmdisk.Unsupported("clone() is not implemented")
        self._info = self.ctx.create(self.instance_id, self.disk_name,
                                     location=image_id_or_uri,
                                     backend=self.kind)

    # Snapshots: no-ops where Nova's are (every backend but rbd).
    def create_snap(self, name):
        pass

    def remove_snap(self, name, ignore_errors=False):
        pass

    def rollback_to_snap(self, name):
        pass

    def import_file(self, instance, local_file, remote_name):
        pass

    @staticmethod
    def is_shared_block_storage():
        return False

    @staticmethod
    def is_file_in_instance_path():
        return True

    # ---- libvirt ----

    def libvirt_xml(self, cache_mode=None, extra_specs=None, boot_order=None):
        """The library's <disk> element (a string)."""
        mapping = self.disk_info_mapping or {}
        qos = ",".join(
            "%s=%s" % (key.split(":", 1)[1][len("disk_"):], value)
            for key, value in sorted((extra_specs or {}).items())
            if key.startswith("quota:disk_") and
            key.split(":", 1)[1] in _QOS_KEYS)
        return self.ctx.libvirt_xml(
            self.instance_id, self.disk_name, dev=mapping.get("dev", "vda"),
            bus=mapping.get("bus"), cache=cache_mode,
            discard=self.discard_mode, boot_order=boot_order,
            qos=qos or None)

    def libvirt_info(self, cache_mode, extra_specs, boot_order=None,
                     disk_unit=None):
        """Nova's LibvirtConfigGuestDisk for this disk when Nova is
        importable (parsed from vmdisk's XML; disk_unit sets the SCSI unit
        as Nova does), else the XML string. Like Nova's, it needs
        disk_info_mapping."""
        if self.disk_info_mapping is None:
            raise AttributeError(
                "Image must have disk_info_mapping to call libvirt_info()")
        text = self.libvirt_xml(cache_mode, extra_specs, boot_order)
        vconfig = _nova_config()
        if vconfig is None:
            return text
        info = vconfig.LibvirtConfigGuestDisk()
        info.parse_str(text)
        _parse_unparsed(info, text)
        if self.disk_info_mapping.get("bus") == "scsi" and \
                disk_unit is not None:
            info.device_addr = vconfig.LibvirtConfigGuestDeviceAddressDrive()
            info.device_addr.controller = 0
            info.device_addr.unit = disk_unit
        return info

    def libvirt_fs_info(self, target, driver_type=None):
        """Nova's LibvirtConfigGuestFilesys (or the XML string without
        Nova). driver_type is vmdisk's choice for the disk's format; a
        caller's is ignored."""
        text = self.ctx.libvirt_xml(self.instance_id, self.disk_name,
                                    filesystem=target)
        vconfig = _nova_config()
        if vconfig is None:
            return text
        info = vconfig.LibvirtConfigGuestFilesys()
        info.parse_str(text)
        return info

    def get_model(self, connection):
        from nova.virt.image import model as imgmodel
        return imgmodel.LocalFileImage(self.path, self.driver_format)


def _parse_unparsed(info, text):
    """What Nova's LibvirtConfigGuestDisk.parse_dom (Nova 26) does not
    read back: <auth> (an rbd disk's cephx user and libvirt secret) and
    <iotune> (the flavor's disk QoS). Without this the config object's
    to_xml(), which the driver puts in the domain, would drop both: the
    guest could not authenticate to Ceph and its disk would be unlimited."""
    import xml.etree.ElementTree as ET
    disk = ET.fromstring(text)
    auth = disk.find("auth")
    if auth is not None:
        secret = auth.find("secret")
        info.auth_username = auth.get("username")
        if secret is not None:
            info.auth_secret_type = secret.get("type")
            info.auth_secret_uuid = secret.get("uuid")
    iotune = disk.find("iotune")
    if iotune is not None:
        for child in iotune:
            attr = "disk_" + child.tag
            if hasattr(info, attr) and child.text:
                setattr(info, attr, int(child.text))


_QOS_KEYS = ("disk_read_bytes_sec", "disk_read_iops_sec",
             "disk_write_bytes_sec", "disk_write_iops_sec",
             "disk_total_bytes_sec", "disk_total_iops_sec")


class Flat(Image):
    kind = "flat"
    driver_format = "raw"


class Qcow2(Image):
    kind = "qcow2"
    driver_format = "qcow2"


class Ploop(Image):
    kind = "ploop"
    driver_format = "ploop"


class Lvm(Image):
    kind = "lvm"
    source_type = "block"
    is_block_dev = True

    @staticmethod
    def is_file_in_instance_path():
        return False


class Rbd(Image):
    """rbd: the snapshot calls reach vmdisk's (Nova's act on the volume)."""
    kind = "rbd"
    source_type = "network"
    SUPPORTS_CLONE = True

    @staticmethod
    def is_shared_block_storage():
        return True

    @staticmethod
    def is_file_in_instance_path():
        return False

    def create_snap(self, name):
        self.ctx.snapshot_create(self.instance_id, self.disk_name, name)

    def remove_snap(self, name, ignore_errors=False):
        try:
            self.ctx.snapshot_remove(self.instance_id, self.disk_name, name)
        except vmdisk.NotFound:
            if not ignore_errors:
                raise

    def rollback_to_snap(self, name):
        self.ctx.snapshot_rollback(self.instance_id, self.disk_name, name)

    def flatten(self):
        """As Nova's: a disk that is no clone (no parent) is already flat,
        no change and no error (the driver flattens after an unshelve or
        rescue whether or not the disk was cloned)."""
        if self.info().get("backing"):
            self.ctx.flatten(self.instance_id, self.disk_name)

    def get_model(self, connection):
        raise NotImplementedError("get_model() of an rbd disk")

