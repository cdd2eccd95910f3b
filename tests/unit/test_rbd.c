/*
 * The rbd backend against a real Ceph cluster (tests/suite/ceph/run.sh starts one
 * and sets VMDISK_CEPH_CONF; without it every case skips with the reason).
 * Content is checked by reading the images back through librbd.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <vmdisk/vmdisk.h>

#include "cleanup.h"
#include "helpers.h"
#include "vmd_build_config.h"

#define MIB (1024u * 1024u)
#define BASE_SIZE (12u * MIB) /* three 4 MiB objects, the middle a hole */

static struct {
	const char *conf;
	char *dir;
	char *instances;
	char *config_path;
	char *base_raw;
	char *base_qcow2;
	char fsid[64];
	char key[128];
	struct vmd_config cfg;
	struct vmd_ctx *ctx;
	rados_t cluster;
	rados_ioctx_t vms;
	rados_ioctx_t images;
	struct vmd_buf log; /* everything the library logged */
} g;

static void log_sink(enum vmd_log_level level, const char *line, void *opaque)
{
	(void)level;
	(void)opaque;
	assert_int_equal(vmd_buf_printf(&g.log, "%s\n", line), 0);
}

static void new_uuid(char *out)
{
	FILE *f = fopen("/proc/sys/kernel/random/uuid", "r");

	assert_non_null(f);
	assert_non_null(fgets(out, 37, f));
	fclose(f);
	assert_int_equal(strlen(out), 36);
}

/* The admin key from the cluster's keyring, to prove it is never logged. */
static void read_admin_key(void)
{
	char *path = th_path(g.dir, "unused");
	char *text, *p;
	char kr[4096];

	free(path);
	snprintf(kr, sizeof(kr), "%s", g.conf);
	p = strrchr(kr, '/');
	assert_non_null(p);
	snprintf(p, sizeof(kr) - (size_t)(p - kr), "/keyring");
	text = th_read_text(kr);
	p = strstr(text, "[client.admin]");
	assert_non_null(p);
	p = strstr(p, "key = ");
	assert_non_null(p);
	p += 6;
	snprintf(g.key, sizeof(g.key), "%.*s", (int)strcspn(p, "\n"), p);
	assert_true(strlen(g.key) > 20);
	free(text);
}

static int group_setup(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char text[4096], modules[4096];
	const char *build = getenv("VMDISK_BUILD_DIR");

	(void)state;
	g.conf = getenv("VMDISK_CEPH_CONF");
	if (!g.conf || !g.conf[0])
		return 0;
	assert_non_null(build);
	snprintf(modules, sizeof(modules), "%s/lib", build);
	vmd_backend_set_module_dir(modules);
	g.dir = th_mkdtemp("rbd");
	g.instances = th_path(g.dir, "instances");
	g.base_raw = th_path(g.dir, "base.raw");
	g.base_qcow2 = th_path(g.dir, "base.qcow2");
	g.config_path = th_path(g.dir, "vmdisk.conf");
	/* Data, a hole (a whole RBD object), data: the import skips it. */
	th_write_pattern(g.base_raw, 2 * MIB, 11);
	{
		char *tail = malloc(MIB);

		assert_non_null(tail);
		memset(tail, 0x5a, MIB);
		th_pwrite_at(g.base_raw, tail, MIB, BASE_SIZE - MIB);
		free(tail);
	}
	{
		const char *argv[] = {"qemu-img", "convert", "-f", "raw", "-O",
		                      "qcow2", g.base_raw, g.base_qcow2, NULL};

		th_require_qemu_img();
		assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
	}
	read_admin_key();
	snprintf(text, sizeof(text),
	         "[DEFAULT]\ninstances_path = %s\nimages_type = rbd\n"
	         "[libvirt]\nimages_rbd_pool = vms\nimages_rbd_ceph_conf = %s\n"
	         "rbd_user = admin\n"
	         "rbd_secret_uuid = 5d3c3c2e-9c2b-4bd0-9a53-3c1c1b2d0e11\n"
	         "[vmdisk]\nimages_rbd_glance_store_pool = images\n"
	         "log_target = stderr\nlog_level = debug\n",
	         g.instances, g.conf);
	th_write_text(g.config_path, text);
	vmd_config_defaults(&g.cfg);
	assert_int_equal(vmd_config_load_string(&g.cfg, text, &err), 0);
	g.cfg.log_target = VMD_LOG_TO_NONE;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_DEBUG, "test_rbd");
	vmd_log_set_sink(log_sink, NULL);
	g.ctx = vmd_ctx_new(&g.cfg, &err);
	assert_non_null(g.ctx);

	assert_int_equal(rados_create(&g.cluster, "admin"), 0);
	assert_int_equal(rados_conf_read_file(g.cluster, g.conf), 0);
	assert_int_equal(rados_connect(g.cluster), 0);
	assert_int_equal(rados_ioctx_create(g.cluster, "vms", &g.vms), 0);
	assert_int_equal(rados_ioctx_create(g.cluster, "images", &g.images), 0);
	assert_int_equal(rados_cluster_fsid(g.cluster, g.fsid, sizeof(g.fsid)) >
	                         0,
	                 1);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (!g.conf || !g.conf[0])
		return 0;
	/* Nothing the library logged, at debug level, holds the key. */
	if (g.log.data)
		assert_not_contains(g.log.data, g.key);
	vmd_log_set_sink(NULL, NULL);
	rados_ioctx_destroy(g.vms);
	rados_ioctx_destroy(g.images);
	rados_shutdown(g.cluster);
	vmd_ctx_free(g.ctx);
	th_rmtree(g.dir);
	vmd_buf_free(&g.log);
	free(g.dir);
	free(g.instances);
	free(g.base_raw);
	free(g.base_qcow2);
	free(g.config_path);
	return 0;
}

static void need_cluster(void)
{
	if (!g.conf || !g.conf[0]) {
		print_message("skipped: VMDISK_CEPH_CONF not set "
		              "(tests/suite/ceph/run.sh starts a cluster)\n");
		skip();
	}
}

/* A cluster to test on (or the test is skipped), a new instance id, and
 * its disk made with o, which must succeed. */
static void new_disk(char inst[37], const char *disk,
                     const struct vmd_create_opts *o,
                     struct vmd_disk_info *info)
{
	struct vmd_error err = VMD_ERROR_INIT;

	need_cluster();
	new_uuid(inst);
	assert_int_equal(vmd_disk_create(g.ctx, inst, disk, o, info, &err), 0);
}
/* The whole content of image pool/name[@snap], malloc'ed. */
static unsigned char *read_image(rados_ioctx_t io, const char *name,
                                 const char *snap, uint64_t *size)
{
	rbd_image_t img;
	rbd_image_info_t st;
	unsigned char *buf;

	assert_int_equal(rbd_open_read_only(io, name, &img, snap), 0);
	assert_int_equal(rbd_stat(img, &st, sizeof(st)), 0);
	buf = malloc(st.size ? st.size : 1);
	assert_non_null(buf);
	assert_int_equal(rbd_read(img, 0, st.size, (char *)buf),
	                 (ssize_t)st.size);
	rbd_close(img);
	*size = st.size;
	return buf;
}

static unsigned char *read_file_all(const char *path, uint64_t *size)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;

	assert_non_null(f);
	*size = th_file_size(path);
	buf = malloc(*size ? *size : 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, *size, f), *size);
	fclose(f);
	return buf;
}

static void disk_name(const char *inst, const char *disk, char *out)
{
	snprintf(out, 128, "%s_%s", inst, disk);
}

/* The disk holds the base's bytes, then zeroes up to its size. */
static void assert_disk_is_base(const char *inst, const char *disk,
                                uint64_t want_size)
{
	char name[128];
	uint64_t dsize, bsize;
	unsigned char *d, *b;

	disk_name(inst, disk, name);
	d = read_image(g.vms, name, NULL, &dsize);
	b = read_file_all(g.base_raw, &bsize);
	assert_int_equal(dsize, want_size);
	assert_true(dsize >= bsize);
	assert_memory_equal(d, b, bsize);
	for (uint64_t i = bsize; i < dsize; i++)
		assert_int_equal(d[i], 0);
	free(d);
	free(b);
}

static bool image_exists(rados_ioctx_t io, const char *name)
{
	rbd_image_t img;
	int r = rbd_open_read_only(io, name, &img, NULL);

	if (r == 0)
		rbd_close(img);
	assert_true(r == 0 || r == -ENOENT);
	return r == 0;
}

/* Objects of the image's own data in its pool. */
static unsigned count_data_objects(rados_ioctx_t io, const char *name)
{
	rbd_image_t img;
	char prefix[64];
	rados_list_ctx_t lc;
	const char *entry;
	unsigned n = 0;

	assert_int_equal(rbd_open_read_only(io, name, &img, NULL), 0);
	assert_int_equal(rbd_get_block_name_prefix(img, prefix, sizeof(prefix)),
	                 0);
	rbd_close(img);
	assert_int_equal(rados_nobjects_list_open(io, &lc), 0);
	while (rados_nobjects_list_next(lc, &entry, NULL, NULL) == 0)
		if (strncmp(entry, prefix, strlen(prefix)) == 0)
			n++;
	rados_nobjects_list_close(lc);
	return n;
}

static int add_bytes(uint64_t off, size_t len, int exists, void *arg)
{
	(void)off;
	if (exists)
		*(uint64_t *)arg += len;
	return 0;
}

/* Bytes of the first 16 MiB of vms/name that the image itself holds
 * (its parent's do not count). */
static uint64_t own_bytes(const char *name)
{
	rbd_image_t img;
	uint64_t used = 0;

	assert_int_equal(rbd_open_read_only(g.vms, name, &img, NULL), 0);
	assert_int_equal(rbd_diff_iterate2(img, NULL, 0, 16 * MIB, 0, 0,
	                                   add_bytes, &used),
	                 0);
	rbd_close(img);
	return used;
}

/* A raw image NAME@snap (protected) in the images pool, from base.raw. */
static void make_parent(const char *name)
{
	rbd_image_t img;
	uint64_t size;
	unsigned char *b = read_file_all(g.base_raw, &size);
	int order = 0;

	assert_int_equal(rbd_create(g.images, name, size, &order), 0);
	assert_int_equal(rbd_open(g.images, name, &img, NULL), 0);
	assert_int_equal(rbd_write(img, 0, size, (const char *)b),
	                 (ssize_t)size);
	assert_int_equal(rbd_snap_create(img, "snap"), 0);
	assert_int_equal(rbd_snap_protect(img, "snap"), 0);
	rbd_close(img);
	free(b);
}

static void remove_parent(const char *name)
{
	rbd_image_t img;

	assert_int_equal(rbd_open(g.images, name, &img, NULL), 0);
	assert_int_equal(rbd_snap_unprotect(img, "snap"), 0);
	assert_int_equal(rbd_snap_remove(img, "snap"), 0);
	rbd_close(img);
	assert_int_equal(rbd_remove(g.images, name), 0);
}

static void remove_disk(const char *inst, const char *disk)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char name[128];

	assert_int_equal(vmd_disk_remove(g.ctx, inst, disk, &err), 0);
	disk_name(inst, disk, name);
	assert_false(image_exists(g.vms, name));
	{
		/* The instance's last disk takes its directory along. */
		char *dir = th_path(g.instances, inst);

		assert_false(th_exists(dir));
		free(dir);
	}
}

/* What vmd_ctx_set_progress reported: its last call. */
struct seen_progress {
	unsigned calls;
	char step[64];
	uint64_t done, total;
};

static void note_progress(const char *step, uint64_t done, uint64_t total,
                          void *opaque)
{
	struct seen_progress *s = opaque;

	s->calls++;
	snprintf(s->step, sizeof(s->step), "%s", step);
	s->done = done;
	s->total = total;
}

static void test_import_raw(void **state)
{
	struct vmd_create_opts o = {.image = g.base_raw, .size = 16 * MIB};
	struct vmd_disk_info info;
	char inst[37], name[128];
	struct seen_progress seen = {0};

	(void)state;
	/* The import reports its progress through the mover, to the end. */
	vmd_ctx_set_progress(g.ctx, note_progress, &seen);
	new_disk(inst, "root", &o, &info);
	vmd_ctx_set_progress(g.ctx, NULL, NULL);
	assert_true(seen.calls > 0);
	assert_string_equal(seen.step, "rbd");
	assert_true(seen.total > 0 && seen.done == seen.total);
	assert_string_equal(info.backend, "rbd");
	assert_int_equal(info.virtual_size, 16 * MIB);
	assert_disk_is_base(inst, "root", 16 * MIB);
	/* Sparse: the middle object, all hole in the base, was not written. */
	disk_name(inst, "root", name);
	assert_int_equal(count_data_objects(g.vms, name), 2);
	assert_true(own_bytes(name) <= 8 * MIB);
	remove_disk(inst, "root");
}

static void test_import_qcow2(void **state)
{
	struct vmd_create_opts o = {.image = g.base_qcow2};
	char inst[37];

	(void)state;
	new_disk(inst, "root", &o, NULL);
	assert_disk_is_base(inst, "root", BASE_SIZE);
	remove_disk(inst, "root");
}

static void test_base_larger_than_size_refused(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = g.base_raw, .size = 4 * MIB};
	char inst[37], name[128];

	(void)state;
	need_cluster();
	new_uuid(inst);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &o, NULL, &err),
	                 VMD_E_TOOSMALL);
	disk_name(inst, "root", name);
	assert_false(image_exists(g.vms, name));
}

static void test_clone_resize_flatten(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char inst[37], loc[256], name[128], parent[64], want[256];
	struct vmd_create_opts o = {.location = loc, .size = 16 * MIB};
	struct vmd_disk_info info;

	(void)state;
	need_cluster();
	new_uuid(inst);
	snprintf(parent, sizeof(parent), "img-%.8s", inst);
	make_parent(parent);
	snprintf(loc, sizeof(loc), "rbd://%s/images/%s/snap", g.fsid, parent);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &o, &info, &err),
	                 0);
	snprintf(want, sizeof(want), "rbd:images/%s@snap", parent);
	assert_string_equal(info.backing, want);
	assert_int_equal(info.virtual_size, 16 * MIB);
	assert_disk_is_base(inst, "root", 16 * MIB);
	/* No data copied: the clone owns no object and no extent. */
	disk_name(inst, "root", name);
	assert_int_equal(count_data_objects(g.vms, name), 0);
	assert_int_equal(own_bytes(name), 0);

	assert_int_equal(vmd_disk_resize(g.ctx, inst, "root", 20 * MIB, &err),
	                 0);
	assert_int_equal(vmd_disk_resize(g.ctx, inst, "root", 4 * MIB, &err),
	                 VMD_E_TOOSMALL);
	assert_disk_is_base(inst, "root", 20 * MIB);

	/* The flatten reports its progress (rbd_flatten_with_progress),
	 * ending at its total. */
	struct seen_progress seen = {0};

	vmd_ctx_set_progress(g.ctx, note_progress, &seen);
	assert_int_equal(vmd_disk_flatten(g.ctx, inst, "root", &err), 0);
	vmd_ctx_set_progress(g.ctx, NULL, NULL);
	assert_true(seen.calls > 0);
	assert_string_equal(seen.step, "rbd: flatten");
	assert_true(seen.total > 0);
	assert_true(seen.done == seen.total);
	assert_int_equal(vmd_disk_info(g.ctx, inst, "root", &info, &err), 0);
	assert_string_equal(info.backing, "");
	assert_disk_is_base(inst, "root", 20 * MIB);
	assert_int_equal(vmd_disk_flatten(g.ctx, inst, "root", &err),
	                 VMD_E_INVAL);
	remove_disk(inst, "root");
	remove_parent(parent);
}

static void write_disk(const char *inst, const char *disk, int byte)
{
	char name[128], buf[4096];
	rbd_image_t img;

	memset(buf, byte, sizeof(buf));
	disk_name(inst, disk, name);
	assert_int_equal(rbd_open(g.vms, name, &img, NULL), 0);
	assert_int_equal(rbd_write(img, MIB, sizeof(buf), buf),
	                 (ssize_t)sizeof(buf));
	rbd_close(img);
}

static void test_snapshot_rollback(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = g.base_raw};
	struct vmd_disk_info info;
	char inst[37];

	(void)state;
	new_disk(inst, "root", &o, NULL);
	assert_int_equal(vmd_disk_snap_create(g.ctx, inst, "root", "s1", &err),
	                 0);
	write_disk(inst, "root", 0xee);
	assert_int_equal(vmd_disk_snap_rollback(g.ctx, inst, "root", "s1",
	                                        &err),
	                 0);
	assert_disk_is_base(inst, "root", BASE_SIZE);
	assert_int_equal(vmd_disk_snap_create(g.ctx, inst, "root", "s2", &err),
	                 0);
	assert_int_equal(vmd_disk_info(g.ctx, inst, "root", &info, &err), 0);
	assert_string_equal(info.snapshots, "s1,s2");
	assert_int_equal(vmd_disk_snap_remove(g.ctx, inst, "root", "s2", &err),
	                 0);
	assert_int_equal(vmd_disk_snap_rollback(g.ctx, inst, "root", "nope",
	                                        &err),
	                 VMD_E_NOTFOUND);
	assert_int_equal(vmd_disk_snap_create(g.ctx, inst, "root", "../x",
	                                      &err),
	                 VMD_E_INVAL);
	/* Removed with its remaining snapshot s1. */
	remove_disk(inst, "root");
}

static void test_direct_snapshot(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = g.base_raw};
	struct vmd_disk_info info;
	char inst[37], url[512], want[512], name[128], pub[64];
	unsigned char *d, *p;
	uint64_t dsize, psize;
	rbd_image_t img;
	rbd_linked_image_spec_t pi;
	rbd_snap_spec_t ps;

	(void)state;
	new_disk(inst, "root", &o, NULL);
	snprintf(pub, sizeof(pub), "pub-%.8s", inst);
	write_disk(inst, "root", 0x77);
	assert_int_equal(vmd_disk_direct_snapshot(g.ctx, inst, "root", pub, url,
	                                          sizeof(url), &err),
	                 0);
	snprintf(want, sizeof(want), "rbd://%s/images/%s/snap", g.fsid, pub);
	assert_string_equal(url, want);
	disk_name(inst, "root", name);
	d = read_image(g.vms, name, NULL, &dsize);
	p = read_image(g.images, pub, "snap", &psize);
	assert_int_equal(dsize, psize);
	assert_memory_equal(d, p, dsize);
	free(d);
	free(p);
	/* Flattened (no parent), and the temporary snapshot is gone. */
	assert_int_equal(rbd_open_read_only(g.images, pub, &img, NULL), 0);
	assert_int_equal(rbd_get_parent(img, &pi, &ps), -ENOENT);
	rbd_close(img);
	assert_int_equal(vmd_disk_info(g.ctx, inst, "root", &info, &err), 0);
	assert_string_equal(info.snapshots, "");

	/* The URL is a location new disks clone from. */
	{
		char inst2[37];
		struct vmd_create_opts o2 = {.location = url};

		new_uuid(inst2);
		assert_int_equal(vmd_disk_create(g.ctx, inst2, "root", &o2,
		                                 NULL, &err),
		                 0);
		remove_disk(inst2, "root");
	}
	/* A name already taken is refused and leaves the disk clean. */
	assert_errc(vmd_disk_direct_snapshot(g.ctx, inst, "root", pub, url,
	                                     sizeof(url), &err),
	            &err, VMD_E_EXISTS);
	vmd_error_clear(&err);
	assert_int_equal(vmd_disk_info(g.ctx, inst, "root", &info, &err), 0);
	assert_string_equal(info.snapshots, "");
	remove_disk(inst, "root");
	remove_parent(pub);
}

static void test_extract_and_xml(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = g.base_raw, .size = 14 * MIB};
	struct vmd_xml_opts xo = {0};
	char inst[37], *raw, *q, *xml = NULL;

	(void)state;
	need_cluster();
	new_uuid(inst);
	raw = th_path(g.dir, "x.raw");
	q = th_path(g.dir, "x.qcow2");
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &o, NULL, &err),
	                 0);
	assert_int_equal(vmd_disk_snapshot_extract(g.ctx, inst, "root", raw,
	                                           VMD_FORMAT_RAW, &err),
	                 0);
	assert_int_equal(th_file_size(raw), 14 * MIB);
	assert_int_equal(vmd_disk_snapshot_extract(g.ctx, inst, "root", q,
	                                           VMD_FORMAT_QCOW2, &err),
	                 0);
	th_assert_qcow2_check_clean(q);
	th_assert_images_identical(raw, "raw", q, "qcow2", 1);
	th_assert_images_identical(g.base_raw, "raw", raw, "raw", 0);
	/* Never over an existing file. */
	assert_errc(vmd_disk_snapshot_extract(g.ctx, inst, "root", raw,
	                                      VMD_FORMAT_RAW, &err),
	            &err, VMD_E_EXISTS);
	vmd_error_clear(&err);

	assert_int_equal(vmd_disk_libvirt_xml(g.ctx, inst, "root", &xo, &xml,
	                                      &err),
	                 0);
	assert_contains(xml, "<disk type='network' device='disk'>");
	assert_contains(xml, "protocol='rbd'");
	assert_contains(xml, "name='vms/");
	assert_contains(xml, "<host name='127.0.0.1' port='6789'/>");
	assert_contains(xml, "<auth username='admin'>");
	assert_contains(xml, "<secret type='ceph' "
	                "uuid='5d3c3c2e-9c2b-4bd0-9a53-3c1c1b2d0e11'/>");
	assert_not_contains(xml, g.key);
	free(xml);
	remove_disk(inst, "root");
	free(raw);
	free(q);
}

/* Extract inst's disk as raw to g.dir/file: the base's bytes (then
 * zeroes), sized as the disk, with at most max_allocated bytes allocated
 * (zero runs left as holes). */
static void assert_extract_is(const char *inst, const char *disk,
                              const char *file, uint64_t size,
                              uint64_t max_allocated)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *path = th_path(g.dir, file);
	struct stat st;

	assert_int_equal(vmd_disk_snapshot_extract(g.ctx, inst, disk, path,
	                                           VMD_FORMAT_RAW, &err),
	                 0);
	assert_int_equal(th_file_size(path), size);
	th_assert_images_identical(g.base_raw, "raw", path, "raw", 0);
	assert_int_equal(stat(path, &st), 0);
	if ((uint64_t)st.st_blocks * 512 > max_allocated)
		fail_msg("%s: %llu bytes allocated, at most %llu expected", file,
		         (unsigned long long)st.st_blocks * 512,
		         (unsigned long long)max_allocated);
	assert_int_equal(unlink(path), 0);
	free(path);
}

/*
 * The extract asks librbd where the disk holds data (rbd_diff_iterate2)
 * and reads only there: a clone's data is its parent's (it holds none of
 * its own), and an image without fast-diff or an object map is answered
 * by its objects. Both extract to the base's bytes, its hole a hole.
 */
static void test_extract_clone_and_no_fast_diff(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char inst[37], loc[256], parent[64], name[128];
	struct vmd_create_opts clone = {.location = loc, .size = 16 * MIB};
	struct vmd_create_opts import = {.image = g.base_raw, .size = 14 * MIB};
	rbd_image_t img;
	uint64_t features = 0;

	(void)state;
	need_cluster();
	new_uuid(inst);
	snprintf(parent, sizeof(parent), "img-%.8s", inst);
	make_parent(parent);
	snprintf(loc, sizeof(loc), "rbd://%s/images/%s/snap", g.fsid, parent);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &clone, NULL,
	                                 &err),
	                 0);
	/* Base: 3 MiB of data in objects 0 and 2. */
	assert_extract_is(inst, "root", "clone.raw", 16 * MIB, 4 * MIB);

	assert_int_equal(vmd_disk_create(g.ctx, inst, "eph", &import, NULL,
	                                 &err),
	                 0);
	disk_name(inst, "eph", name);
	assert_int_equal(rbd_open(g.vms, name, &img, NULL), 0);
	assert_int_equal(rbd_get_features(img, &features), 0);
	if (features & (RBD_FEATURE_FAST_DIFF | RBD_FEATURE_OBJECT_MAP))
		assert_int_equal(rbd_update_features(
					 img,
					 features & (RBD_FEATURE_FAST_DIFF |
					             RBD_FEATURE_OBJECT_MAP),
					 0),
		                 0);
	assert_int_equal(rbd_get_features(img, &features), 0);
	rbd_close(img);
	assert_int_equal(features & (RBD_FEATURE_FAST_DIFF |
	                             RBD_FEATURE_OBJECT_MAP),
	                 0);
	assert_extract_is(inst, "eph", "nofastdiff.raw", 14 * MIB, 4 * MIB);

	assert_int_equal(vmd_disk_remove(g.ctx, inst, "eph", &err), 0);
	remove_disk(inst, "root");
	remove_parent(parent);
}

static void test_blank(void **state)
{
	struct vmd_create_opts o = {.size = 32 * MIB};
	struct vmd_disk_info info;
	char inst[37];

	(void)state;
	new_disk(inst, "data", &o, &info);
	assert_int_equal(info.virtual_size, 32 * MIB);
	assert_int_equal(info.actual_size, 0);
	remove_disk(inst, "data");
}

/* Run the CLI; returns its status, stdout in *outp, stderr in *errp. */
static int cli_out(const char *const *args, char **outp, char **errp)
{
	char cfgenv[4200], modenv[4200];
	const char *build = getenv("VMDISK_BUILD_DIR");
	const char *env[] = {cfgenv, modenv, NULL};
	const char *argv[16] = {th_cli(), "-q"};
	size_t n = 2;

	snprintf(cfgenv, sizeof(cfgenv), "VMDISK_CONFIG=%s", g.config_path);
	snprintf(modenv, sizeof(modenv), "VMDISK_MODULE_DIR=%s/lib", build);
	for (size_t i = 0; args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	return th_run(argv, env, outp, errp);
}

static int cli(const char *const *args, char **errp)
{
	return cli_out(args, NULL, errp);
}

static unsigned count_lines(const char *s)
{
	unsigned n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void test_bad_locations_refused(void **state)
{
	char inst[37], parent[64], other[37];
	char locs[12][300];
	size_t n = 0;

	(void)state;
	need_cluster();
	new_uuid(inst);
	new_uuid(other);
	snprintf(parent, sizeof(parent), "bad-%.8s", inst);
	make_parent(parent);
	snprintf(locs[n++], 300, "rbd://%s/images/%s/snap", other, parent);
	snprintf(locs[n++], 300, "rbd://%s/images/%s/nosnap", g.fsid, parent);
	snprintf(locs[n++], 300, "rbd://%s/images/missing/snap", g.fsid);
	snprintf(locs[n++], 300, "rbd://%s/nopool/%s/snap", g.fsid, parent);
	snprintf(locs[n++], 300, "rbd://%s/images/%s", g.fsid, parent);
	snprintf(locs[n++], 300, "rbd://%s/images/%s/snap/x", g.fsid, parent);
	snprintf(locs[n++], 300, "rbd://%s/images/../snap", g.fsid);
	snprintf(locs[n++], 300, "rbd://%s/images/a..b/snap", g.fsid);
	snprintf(locs[n++], 300, "rbd://%s/images//%s/snap", g.fsid, parent);
	snprintf(locs[n++], 300, "rbd://not-a-uuid/images/%s/snap", parent);
	snprintf(locs[n++], 300, "http://%s/images/%s/snap", g.fsid, parent);
	snprintf(locs[n++], 300, "rbd://%s/images/%s%%2Fx/snap", g.fsid, parent);
	for (size_t i = 0; i < n; i++) {
		const char *args[] = {"create", inst, "root", "--location",
		                      locs[i], NULL};
		char *errs = NULL;
		char name[128];

		assert_int_equal(cli(args, &errs), 1);
		print_message("  %s -> %s", locs[i], errs);
		assert_int_equal(count_lines(errs), 1);
		assert_not_contains(errs, g.key);
		free(errs);
		disk_name(inst, "root", name);
		assert_false(image_exists(g.vms, name));
	}
	remove_parent(parent);
}

static void test_fallback_to_import(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char inst[37], other[37], loc[256];
	struct vmd_create_opts o = {.location = loc, .image = g.base_raw};
	struct vmd_disk_info info;

	(void)state;
	need_cluster();
	new_uuid(inst);
	new_uuid(other);
	snprintf(loc, sizeof(loc), "rbd://%s/images/x/snap", other);
	/* Configured off: refused. */
	g.cfg.rbd_clone_fallback_import = false;
	vmd_ctx_free(g.ctx);
	g.ctx = vmd_ctx_new(&g.cfg, &err);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &o, NULL, &err),
	                 VMD_E_REFUSED);
	/* On (the default): imported from the image instead. */
	g.cfg.rbd_clone_fallback_import = true;
	vmd_ctx_free(g.ctx);
	g.ctx = vmd_ctx_new(&g.cfg, &err);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &o, &info, &err),
	                 0);
	assert_string_equal(info.backing, "");
	assert_disk_is_base(inst, "root", BASE_SIZE);
	/* A malformed location never falls back. */
	snprintf(loc, sizeof(loc), "rbd://%s/images/../snap", g.fsid);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "other", &o, NULL, &err),
	                 VMD_E_INVAL);
	remove_disk(inst, "root");
}

static void test_cli_verbose_never_shows_key(void **state)
{
	char inst[37], *errs = NULL;
	const char *create[] = {"-v", "-v", "create", inst, "root", "--blank",
	                        "--size", "4M", NULL};
	const char *remove[] = {"remove", inst, "root", NULL};
	const char *bad[] = {"-v", "-v", "snapshot", "rollback", inst, "root",
	                     "missing", NULL};

	(void)state;
	need_cluster();
	new_uuid(inst);
	assert_int_equal(cli(create, &errs), 0);
	assert_not_contains(errs, g.key);
	free(errs);
	assert_int_equal(cli(bad, &errs), 1);
	assert_not_contains(errs, g.key);
	assert_contains(errs, "pool vms");
	free(errs);
	assert_int_equal(cli(remove, NULL), 0);
}

/* A refused publish of inst's root as pub left no image behind and no
 * snapshot on the disk. */
static void assert_not_published(const char *inst, const char *pub)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;

	assert_false(image_exists(g.images, pub));
	assert_int_equal(vmd_disk_info(g.ctx, inst, "root", &info, &err), 0);
	assert_string_equal(info.snapshots, "");
}

/* With the fault point `fault` armed, publishing inst's root as pub fails
 * with exactly `want`, the error in err. */
static void direct_snapshot_fails(const char *inst, const char *pub,
                                  const char *fault, enum vmd_errc want,
                                  struct vmd_error *err)
{
	char url[512];

	setenv("VMDISK_FAULT", fault, 1);
	vmd_error_clear(err);
	assert_errc(vmd_disk_direct_snapshot(g.ctx, inst, "root", pub, url,
	                                     sizeof(url), err),
	            err, want);
	unsetenv("VMDISK_FAULT");
}

/* Fail closed: an import or a direct snapshot stopped midway leaves nothing
 * (no disk, no record, no published image, no temporary snapshot). */
static void test_failures_leave_nothing(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = g.base_raw};
	char inst[37], name[128], pub[64], *dir;
	static const char *const points[] = {"rbd.after_import:fail",
	                                     "disk.before_record:fail"};

	(void)state;
	need_cluster();
	if (!VMD_FAULT_INJECTION) {
		print_message("skipped: needs -Dfault_injection=true\n");
		skip();
	}
	new_uuid(inst);
	disk_name(inst, "root", name);
	dir = th_path(g.instances, inst);
	for (size_t i = 0; i < 2; i++) {
		setenv("VMDISK_FAULT", points[i], 1);
		vmd_error_clear(&err);
		assert_errc(vmd_disk_create(g.ctx, inst, "root", &o, NULL,
		                            &err),
		            &err, VMD_E_IO);
		unsetenv("VMDISK_FAULT");
		assert_false(image_exists(g.vms, name));
		assert_false(th_exists(dir));
	}
	free(dir);

	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &o, NULL, &err),
	                 0);
	snprintf(pub, sizeof(pub), "fail-%.8s", inst);
	direct_snapshot_fails(inst, pub, "rbd.direct_after_clone:fail",
	                      VMD_E_IO, &err);
	assert_not_published(inst, pub);

	/* librbd's flatten of the published clone answering -EIO (stood in
	 * for by the fault point): the call returns the code it stored in
	 * err, VMD_E_EXTERNAL, not -EIO (VMD_E_NOMEM's value). */
	direct_snapshot_fails(inst, pub, "rbd.publish_flatten:fail",
	                      VMD_E_EXTERNAL, &err);
	assert_contains(err.msg, "flatten failed");
	assert_not_published(inst, pub);
	remove_disk(inst, "root");
}

/* Replace vms/NAME with an empty image of `size` without any feature
 * (no layering): librbd then refuses to protect a snapshot of it. */
static void recreate_without_layering(const char *name, uint64_t size)
{
	rbd_image_options_t opts;
	rbd_image_t img;
	uint64_t features = 1;

	assert_int_equal(rbd_remove(g.vms, name), 0);
	rbd_image_options_create(&opts);
	assert_int_equal(rbd_image_options_set_uint64(
				 opts, RBD_IMAGE_OPTION_FEATURES, 0),
	                 0);
	assert_int_equal(rbd_create4(g.vms, name, size, opts), 0);
	rbd_image_options_destroy(opts);
	assert_int_equal(rbd_open(g.vms, name, &img, NULL), 0);
	assert_int_equal(rbd_get_features(img, &features), 0);
	rbd_close(img);
	assert_int_equal(features & RBD_FEATURE_LAYERING, 0);
}

/*
 * A step librbd refuses returns the vmd_errc it stored in err, never
 * librbd's raw errno (which may read as another VMD_E_* code: -EIO is
 * VMD_E_NOMEM's value), and leaves nothing behind. Real refusals: a size
 * the object map cannot cover (the grow after an import), a disk without
 * layering (protecting the temporary snapshot of a direct snapshot).
 */
static void test_librbd_errors_are_vmd_codes(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	/* 1 PiB, the largest size the library takes: over the object map's
	 * 256,000,000 objects of 4 MiB (about 0.95 PiB), so librbd refuses
	 * the grow. */
	struct vmd_create_opts big = {.image = g.base_raw,
	                              .size = UINT64_C(1) << 50};
	struct vmd_create_opts blank = {.size = 4 * MIB};
	char inst[37], name[128], pub[64], url[512], *dir;

	(void)state;
	need_cluster();
	new_uuid(inst);
	disk_name(inst, "root", name);
	dir = th_path(g.instances, inst);
	assert_errc(vmd_disk_create(g.ctx, inst, "root", &big, NULL, &err),
	            &err, VMD_E_EXTERNAL);
	assert_contains(err.msg, "growing the disk failed");
	assert_false(image_exists(g.vms, name));
	assert_false(th_exists(dir));
	free(dir);

	vmd_error_clear(&err);
	assert_int_equal(vmd_disk_create(g.ctx, inst, "root", &blank, NULL,
	                                 &err),
	                 0);
	recreate_without_layering(name, 4 * MIB);
	snprintf(pub, sizeof(pub), "nolayer-%.8s", inst);
	assert_errc(vmd_disk_direct_snapshot(g.ctx, inst, "root", pub, url,
	                                     sizeof(url), &err),
	            &err, VMD_E_EXTERNAL);
	assert_contains(err.msg, "protecting the temporary snapshot failed");
	assert_not_published(inst, pub);
	remove_disk(inst, "root");
}

/* The rbd commands of the CLI, end to end. */
static void test_cli_commands(void **state)
{
	char inst[37], parent[64], loc[256], pub[64], want[256];
	char *out = NULL;
	const char *create[] = {"create", inst, "root", "--location", loc,
	                        "--size", "16M", NULL};
	const char *snap[] = {"snapshot", "create", inst, "root", "s1", NULL};
	const char *info[] = {"--json", "info", inst, "root", NULL};
	const char *flatten[] = {"flatten", inst, "root", NULL};
	const char *direct[] = {"direct-snapshot", inst, "root", pub, NULL};
	const char *snaprm[] = {"snapshot", "remove", inst, "root", "s1", NULL};
	const char *remove[] = {"remove", inst, "root", NULL};

	(void)state;
	need_cluster();
	new_uuid(inst);
	snprintf(parent, sizeof(parent), "cli-%.8s", inst);
	snprintf(pub, sizeof(pub), "clipub-%.8s", inst);
	make_parent(parent);
	snprintf(loc, sizeof(loc), "rbd://%s/images/%s/snap", g.fsid, parent);
	assert_int_equal(cli_out(create, &out, NULL), 0);
	snprintf(want, sizeof(want), "backing file: rbd:images/%s@snap",
	         parent);
	assert_contains(out, want);
	free(out);
	assert_int_equal(cli(snap, NULL), 0);
	assert_int_equal(cli_out(info, &out, NULL), 0);
	{
		/* Pretty-printed JSON: "snapshots": [ "s1" ] over lines. */
		const char *k = strstr(out, "\"snapshots\":");

		assert_non_null(k);
		assert_non_null(strchr(k, '['));
		assert_contains(k, "\"s1\"");
	}
	free(out);
	assert_int_equal(cli(flatten, NULL), 0);
	assert_int_equal(cli_out(direct, &out, NULL), 0);
	snprintf(want, sizeof(want), "rbd://%s/images/%s/snap\n", g.fsid, pub);
	assert_string_equal(out, want);
	free(out);
	assert_int_equal(cli(snaprm, NULL), 0);
	assert_int_equal(cli(remove, NULL), 0);
	{
		char name[128];

		disk_name(inst, "root", name);
		assert_false(image_exists(g.vms, name));
	}
	remove_parent(parent);
	remove_parent(pub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_import_raw),
		cmocka_unit_test(test_import_qcow2),
		cmocka_unit_test(test_base_larger_than_size_refused),
		cmocka_unit_test(test_clone_resize_flatten),
		cmocka_unit_test(test_snapshot_rollback),
		cmocka_unit_test(test_direct_snapshot),
		cmocka_unit_test(test_extract_and_xml),
		cmocka_unit_test(test_extract_clone_and_no_fast_diff),
		cmocka_unit_test(test_blank),
		cmocka_unit_test(test_bad_locations_refused),
		cmocka_unit_test(test_fallback_to_import),
		cmocka_unit_test(test_cli_verbose_never_shows_key),
		cmocka_unit_test(test_failures_leave_nothing),
		cmocka_unit_test(test_librbd_errors_are_vmd_codes),
		cmocka_unit_test(test_cli_commands),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
