"""Nova's own libvirt image backend, driven standalone as its compute driver
drives it: the reference the side-by-side tests and bench/nova measure
vmdisk.nova against.

Nothing here is faked: the configuration is nova.conf's CONF (parsed from no
file, then overridden), the instance is a real nova.objects.Instance, the
image classes are nova.virt.libvirt.imagebackend's, and privsep runs its
entry points in this process (as root here; a deployment runs them in the
privsep daemon, which only adds a round trip).

    ref = NovaRef(scratch)            # instances_path, lock_path in scratch
    inst = ref.instance()             # a new Instance (uuid)
    img = ref.cache(inst, base_file, 'qcow2', size=...)
    img.path                          # <instances_path>/<uuid>/disk

fetch_func copies base_file into the target, as nova.virt.images.fetch_to_raw
leaves a raw image there; `filename` is Nova's cache name for an image id
(sha1 of the id, imagecache.get_cache_fname).
"""
import hashlib
import os
import shutil
import uuid as uuidlib

_configured = None


def configure(scratch):
    """Point nova.conf at scratch (once a process: CONF is global)."""
    global _configured
    import nova.conf
    import nova.objects
    import nova.privsep
    from oslo_concurrency import lockutils

    instances = os.path.join(scratch, 'nova-instances')
    locks = os.path.join(scratch, 'nova-locks')
    for d in (instances, locks):
        os.makedirs(d, exist_ok=True)
    conf = nova.conf.CONF
    if _configured is None:
        conf([], project='nova', default_config_files=[],
             default_config_dirs=[])
        nova.objects.register_all()
        # Privileged entry points (utime of the base, qemu-img info) run
        # here rather than through a privsep-helper daemon and sudo.
        nova.privsep.sys_admin_pctxt.set_client_mode(False)
    conf.set_override('instances_path', instances)
    conf.set_override('lock_path', locks, group='oslo_concurrency')
    lockutils.set_defaults(locks)
    conf.set_override('virt_type', 'kvm', group='libvirt')
    _configured = scratch
    return conf


def cache_fname(image_id):
    """Nova's name of an image's base (nova.virt.libvirt.imagecache)."""
    from nova.virt.libvirt import imagecache
    return imagecache.get_cache_fname(image_id)


def copy_fetch(src):
    """A fetch_func as Nova's driver passes one (libvirt_utils.fetch_image
    signature): writes the image to `target`."""
    def fetch(context=None, target=None, image_id=None, trusted_certs=None,
              **kwargs):
        shutil.copyfile(src, target)
        return None
    return fetch


class NovaRef:
    def __init__(self, scratch):
        self.conf = configure(scratch)
        from nova.virt.libvirt import imagebackend
        self.imagebackend = imagebackend
        self.instances_path = self.conf.instances_path

    def instance(self, uid=None):
        import nova.objects
        return nova.objects.Instance(uuid=uid or str(uuidlib.uuid4()),
                                     os_type='linux')

    def image(self, instance, image_type, name='disk', use_cow=True,
              mapping=None):
        backend = self.imagebackend.Backend(use_cow)
        return backend.by_name(instance, name, image_type=image_type,
                               disk_info_mapping=mapping or
                               {'bus': 'virtio', 'dev': 'vda',
                                'type': 'disk'})

    def cache(self, instance, base_file, image_type, size=None,
              image_id=None, name='disk'):
        """Create `name` of instance from base_file as the driver's
        _create_and_inject_local_root does."""
        image_id = image_id or hashlib.sha1(
            os.path.realpath(base_file).encode()).hexdigest()
        # The driver makes the instance folder first (_create_image).
        os.makedirs(os.path.join(self.instances_path, instance.uuid),
                    exist_ok=True)
        img = self.image(instance, image_type, name)
        img.cache(fetch_func=copy_fetch(base_file), context=None,
                  filename=cache_fname(image_id), size=size,
                  image_id=image_id, trusted_certs=None)
        return img
