/*
 * Tests of lib/config.c: defaults, every key, strictness (unknown sections,
 * keys and bad values are errors naming the key and line), and the order in
 * which the config file is chosen.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmdisk/config.h>
#include <vmdisk/log.h>

#include "helpers.h"

struct dir {
	char path[256];
	char files[4][300];
	int nfiles;
};

static int setup(void **state)
{
	struct dir *d = calloc(1, sizeof(*d));
	const char *tmp = getenv("TMPDIR");

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	if (!d)
		return -1;
	snprintf(d->path, sizeof(d->path), "%s/vmdisk-config-XXXXXX",
	         tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(d->path))
		return -1;
	*state = d;
	return 0;
}

static int teardown(void **state)
{
	struct dir *d = *state;

	for (int i = 0; i < d->nfiles; i++)
		unlink(d->files[i]);
	rmdir(d->path);
	free(d);
	unsetenv("VMDISK_CONFIG");
	return 0;
}

static const char *write_file(struct dir *d, const char *name,
                              const char *text)
{
	char tmp[sizeof(d->files[0])];
	char *path;
	FILE *f;

	assert_true(d->nfiles < 4);
	snprintf(tmp, sizeof(tmp), "%s/%s", d->path, name);
	path = d->files[d->nfiles++];
	memcpy(path, tmp, sizeof(tmp));
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	return path;
}

static void assert_defaults(const struct vmd_config *c)
{
	assert_string_equal(c->instances_path, "/var/lib/vmdisk/instances");
	assert_int_equal(c->images_type, VMD_BACKEND_DEFAULT);
	assert_true(c->use_cow_images);
	assert_true(c->force_raw_images);
	assert_int_equal(c->preallocate_images, VMD_PREALLOCATE_NONE);
	assert_string_equal(c->image_cache_subdirectory_name, "_base");
	assert_string_equal(c->images_volume_group, "");
	assert_false(c->sparse_logical_volumes);
	assert_string_equal(c->images_rbd_pool, "rbd");
	assert_string_equal(c->images_rbd_ceph_conf, "");
	assert_string_equal(c->rbd_user, "");
	assert_string_equal(c->rbd_secret_uuid, "");
	assert_int_equal(c->lock_timeout_seconds, 600);
	assert_int_equal(c->log_target, VMD_LOG_TO_SYSLOG);
	assert_int_equal(c->log_level, VMD_LOG_INFO);
}

static void test_defaults(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	memset(&c, 0x5a, sizeof(c));
	vmd_config_defaults(&c);
	assert_defaults(&c);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_QCOW2);

	/* Empty text and comment-only text change nothing. */
	assert_int_equal(vmd_config_load_string(&c, "", &err), 0);
	assert_int_equal(vmd_config_load_string(
		                 &c, "# hello\n; there\n\n[DEFAULT]\n", &err),
	                 0);
	assert_defaults(&c);
}

static const char full_text[] =
	"# every key, split the way Nova splits them\n"
	"[DEFAULT]\n"
	"instances_path = /srv/nova/instances\n"
	"use_cow_images = False\n"
	"force_raw_images = no\n"
	"preallocate_images = space\n"
	"image_cache_subdirectory_name = cache.d\n"
	"lock_timeout_seconds = 0\n"
	"\n"
	"[libvirt]\n"
	"images_type = lvm\n"
	"images_volume_group = vg-nova_01\n"
	"sparse_logical_volumes = on\n"
	"images_rbd_pool = vms.pool+1\n"
	"images_rbd_ceph_conf = /etc/ceph/ceph.conf\n"
	"rbd_user = cinder.nova\n"
	"rbd_secret_uuid = 457EB676-33DA-42EC-9A8C-9293D545C337\n"
	"[vmdisk]\n"
	"log_target = stderr\n"
	"log_level = debug\n";

static void test_full_file(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&c);
	assert_int_equal(vmd_config_load_string(&c, full_text, &err), 0);
	assert_false(vmd_error_is_set(&err));
	assert_string_equal(c.instances_path, "/srv/nova/instances");
	assert_int_equal(c.images_type, VMD_BACKEND_LVM);
	assert_false(c.use_cow_images);
	assert_false(c.force_raw_images);
	assert_int_equal(c.preallocate_images, VMD_PREALLOCATE_SPACE);
	assert_string_equal(c.image_cache_subdirectory_name, "cache.d");
	assert_string_equal(c.images_volume_group, "vg-nova_01");
	assert_true(c.sparse_logical_volumes);
	assert_string_equal(c.images_rbd_pool, "vms.pool+1");
	assert_string_equal(c.images_rbd_ceph_conf, "/etc/ceph/ceph.conf");
	assert_string_equal(c.rbd_user, "cinder.nova");
	assert_string_equal(c.rbd_secret_uuid,
	                    "457EB676-33DA-42EC-9A8C-9293D545C337");
	assert_int_equal(c.lock_timeout_seconds, 0);
	assert_int_equal(c.log_target, VMD_LOG_TO_STDERR);
	assert_int_equal(c.log_level, VMD_LOG_DEBUG);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_LVM);
}

/* Keys are accepted in any allowed section and with no section at all. */
static void test_sections(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&c);
	assert_int_equal(vmd_config_load_string(&c,
	                                        "log_level = error\n"
	                                        "[libvirt]\n"
	                                        "instances_path = /a\n"
	                                        "[vmdisk]\n"
	                                        "images_type = raw\n"
	                                        "[DEFAULT]\n"
	                                        "rbd_user = admin\n",
	                                        &err),
	                 0);
	assert_int_equal(c.log_level, VMD_LOG_ERROR);
	assert_string_equal(c.instances_path, "/a");
	assert_int_equal(c.images_type, VMD_BACKEND_FLAT);
	assert_string_equal(c.rbd_user, "admin");
}

/* Load text that must fail; check code, and that msg holds `want`. */
static void expect_error(const char *text, const char *want)
{
	struct vmd_config c;
	struct vmd_config before;
	struct vmd_error err = VMD_ERROR_INIT;

	vmd_config_defaults(&c);
	before = c;
	if (vmd_config_load_string(&c, text, &err) != VMD_E_CONFIG)
		fail_msg("accepted: %s", text);
	assert_int_equal(err.code, VMD_E_CONFIG);
	if (!strstr(err.msg, want))
		fail_msg("message '%s' lacks '%s'", err.msg, want);
	/* A failed load leaves the config as it was. */
	assert_memory_equal(&c, &before, sizeof(c));
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_error("[DEFAULT]\nuse_cow_images = true\nfoo = 1\n",
	             "config: unknown key 'foo' (line 3)");
	/* Keys are case-sensitive, as in Nova. */
	expect_error("Use_Cow_Images = true\n", "unknown key 'Use_Cow_Images'");
	/* An overlong key name is cut in the message. */
	expect_error("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	             "aaaaaaaaaaaaaaaaaaaaXYZ = 1\n",
	             "unknown key "
	             "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_error("\n\n[libvirt]\nuse_cow_images = maybe\n",
	             "config: bad value for 'use_cow_images' (line 4)");
	expect_error("images_type = RBD\n", "bad value for 'images_type'");
	expect_error("images_type = vmdk\n", "bad value for 'images_type'");
	expect_error("preallocate_images = full\n",
	             "config: bad value for 'preallocate_images' (line 1)");
	expect_error("lock_timeout_seconds = -1\n",
	             "bad value for 'lock_timeout_seconds'");
	expect_error("lock_timeout_seconds = 4294967296\n",
	             "bad value for 'lock_timeout_seconds'");
	expect_error("lock_timeout_seconds = 10s\n",
	             "bad value for 'lock_timeout_seconds'");
	expect_error("log_target = file\n", "bad value for 'log_target'");
	expect_error("log_level = verbose\n", "bad value for 'log_level'");
	expect_error("image_cache_subdirectory_name = ../x\n",
	             "bad value for 'image_cache_subdirectory_name'");
	expect_error("image_cache_subdirectory_name = .cache\n",
	             "bad value for 'image_cache_subdirectory_name'");
	expect_error("images_volume_group = vg/../x\n",
	             "bad value for 'images_volume_group'");
	expect_error("images_volume_group = -vg\n",
	             "bad value for 'images_volume_group'");
	expect_error("images_rbd_pool =\n", "bad value for 'images_rbd_pool'");
	expect_error("images_rbd_pool = a pool\n",
	             "bad value for 'images_rbd_pool'");
	expect_error("rbd_user = admin;rm\n", "bad value for 'rbd_user'");
	expect_error("rbd_user = .admin\n", "bad value for 'rbd_user'");
	expect_error("rbd_secret_uuid = not-a-uuid\n",
	             "bad value for 'rbd_secret_uuid'");
	expect_error("images_rbd_ceph_conf = ceph.conf\n",
	             "bad value for 'images_rbd_ceph_conf'");
	expect_error("use_cow_images = 2\n", "bad value for 'use_cow_images'");
}

static void test_instances_path(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	expect_error("instances_path = var/lib/nova\n",
	             "config: bad value for 'instances_path' (line 1)");
	expect_error("instances_path = \n", "bad value for 'instances_path'");
	expect_error("instances_path = /srv/../etc\n",
	             "bad value for 'instances_path'");
	expect_error("instances_path = /srv/..\n",
	             "bad value for 'instances_path'");
	vmd_config_defaults(&c);
	/* ".." inside a name is not a parent reference. */
	assert_int_equal(vmd_config_load_string(
		                 &c, "instances_path = /srv/a..b/..c/\n", &err),
	                 0);
	assert_string_equal(c.instances_path, "/srv/a..b/..c/");
	/* Paths are text: UTF-8 is a path, other bytes past ASCII are not
	 * (a lone Latin-1 byte, an overlong '/', a surrogate, a cut
	 * sequence). */
	assert_int_equal(vmd_config_load_string(
		                 &c, "instances_path = /srv/donn\xc3\xa9" "es\n",
		                 &err),
	                 0);
	assert_string_equal(c.instances_path, "/srv/donn\xc3\xa9" "es");
	expect_error("instances_path = /srv/donn\xe9" "es\n",
	             "bad value for 'instances_path'");
	expect_error("instances_path = /srv/\xc0\xaf" "etc\n",
	             "bad value for 'instances_path'");
	expect_error("instances_path = /srv/\xed\xa0\x80\n",
	             "bad value for 'instances_path'");
	expect_error("instances_path = /srv/\xe2\x82\n",
	             "bad value for 'instances_path'");
}

static void test_bad_section(void **state)
{
	(void)state;
	expect_error("[DEFAULT]\nuse_cow_images = true\n[glance]\n"
	             "use_cow_images = true\n",
	             "config: unknown section 'glance' (line 4)");
	/* Sections are case-sensitive. */
	expect_error("[Libvirt]\nimages_type = qcow2\n",
	             "unknown section 'Libvirt'");
}

static void test_syntax_error(void **state)
{
	(void)state;
	expect_error("[DEFAULT]\nuse_cow_images\n", "(line 2)");
	expect_error("[DEFAULT\nuse_cow_images = true\n", "(line 1)");
	/* The first problem is the one reported. */
	expect_error("use_cow_images = true\nnot a line\nfoo = 1\n",
	             "config: syntax error (line 2)");
	expect_error("foo = 1\nnot a line\n", "unknown key 'foo' (line 1)");
}

static void test_value_too_long(void **state)
{
	char text[300];
	char value[VMD_NAME_MAX + 1];
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	/* 128 characters do not fit the 128-byte buffer with its NUL... */
	memset(value, 'u', sizeof(value));
	value[VMD_NAME_MAX] = '\0';
	snprintf(text, sizeof(text), "rbd_user = %s\n", value);
	expect_error(text, "config: value too long for 'rbd_user' (line 1)");
	/* ...127 do. */
	value[VMD_NAME_MAX - 1] = '\0';
	snprintf(text, sizeof(text), "rbd_user = %s\n", value);
	vmd_config_defaults(&c);
	assert_int_equal(vmd_config_load_string(&c, text, &err), 0);
	assert_int_equal(strlen(c.rbd_user), VMD_NAME_MAX - 1);

	expect_error("rbd_secret_uuid = "
	             "457eb676-33da-42ec-9a8c-9293d545c3370\n",
	             "value too long for 'rbd_secret_uuid'");
}

/* A line longer than inih's buffer is refused, not split in two. */
static void test_line_too_long(void **state)
{
	char text[1200];
	size_t n;

	(void)state;
	n = (size_t)snprintf(text, sizeof(text),
	                     "[DEFAULT]\ninstances_path = /");
	memset(text + n, 'p', 1000);
	/* What would be read as a line of its own if the line were split. */
	snprintf(text + n + 1000, sizeof(text) - n - 1000,
	         "use_cow_images=false\n");
	expect_error(text, "config: line too long (line 2)");
}

/*
 * Issue 14, defect 9: a key given twice was taken silently (the last one
 * won), so a typo'd second instances_path went unnoticed. It is refused,
 * naming the key and both lines: in one section, across the section
 * aliases, and as an indented continuation line (inih's multi-line value,
 * which also replaced the value).
 */
static void test_duplicate_key(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	expect_error("[DEFAULT]\ninstances_path = /srv/a\nuse_cow_images = "
	             "true\ninstances_path = /srv/b\n",
	             "config: duplicate key 'instances_path' (lines 2 and 4)");
	expect_error("[DEFAULT]\nimages_type = qcow2\n[libvirt]\n"
	             "images_type = lvm\n",
	             "config: duplicate key 'images_type' (lines 2 and 4)");
	expect_error("log_level = info\n[vmdisk]\nlog_level = debug\n",
	             "config: duplicate key 'log_level' (lines 1 and 3)");
	expect_error("[libvirt]\nrbd_user = a\n[DEFAULT]\nrbd_user = a\n",
	             "config: duplicate key 'rbd_user' (lines 2 and 4)");
	expect_error("instances_path = /srv/a\n  /srv/b\n",
	             "config: continuation line for 'instances_path' "
	             "(lines 1 and 2)");
	/* The detail says what to do about it. */
	vmd_config_defaults(&c);
	assert_int_equal(vmd_config_load_string(&c,
	                                        "rbd_user = a\nrbd_user = b\n",
	                                        &err),
	                 VMD_E_CONFIG);
	assert_contains(err.detail, "given once");
	/* Each load is a parse of its own: a key again in the next one is
	 * not a duplicate. */
	vmd_error_clear(&err);
	vmd_config_defaults(&c);
	assert_int_equal(vmd_config_load_string(&c, "rbd_user = a\n", &err), 0);
	assert_int_equal(vmd_config_load_string(&c, "rbd_user = b\n", &err), 0);
	assert_string_equal(c.rbd_user, "b");
}

/* image_cache_group: a group name or empty (the default: the group of
 * instances_path). */
static void test_image_cache_group(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&c);
	assert_string_equal(c.image_cache_group, "");
	assert_int_equal(vmd_config_load_string(
		                 &c, "[libvirt]\nimage_cache_group = libvirt-qemu\n",
		                 &err),
	                 0);
	assert_string_equal(c.image_cache_group, "libvirt-qemu");
	assert_int_equal(vmd_config_load_string(
		                 &c, "image_cache_group = _kvm.1\n", &err),
	                 0);
	assert_string_equal(c.image_cache_group, "_kvm.1");
	expect_error("image_cache_group = kvm;id\n",
	             "bad value for 'image_cache_group'");
	expect_error("image_cache_group = -kvm\n",
	             "bad value for 'image_cache_group'");
	expect_error("image_cache_group = a/b\n",
	             "bad value for 'image_cache_group'");
	expect_error("image_cache_group = "
	             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	             "image_cache_group");
}

static void test_load_file(void **state)
{
	struct dir *d = *state;
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;
	char missing[300];
	const char *path;

	vmd_config_defaults(&c);
	path = write_file(d, "good.conf", full_text);
	assert_int_equal(vmd_config_load_file(&c, path, &err), 0);
	assert_string_equal(c.instances_path, "/srv/nova/instances");
	assert_int_equal(c.log_level, VMD_LOG_DEBUG);

	snprintf(missing, sizeof(missing), "%s/nope.conf", d->path);
	assert_int_equal(vmd_config_load_file(&c, missing, &err),
	                 VMD_E_NOTFOUND);
	assert_int_equal(err.code, VMD_E_NOTFOUND);
	/* The path goes to the detail, never to the public message. */
	assert_not_contains(err.msg, d->path);
	assert_contains(err.detail, missing);

	/* A directory is not a config file. */
	vmd_error_clear(&err);
	assert_int_equal(vmd_config_load_file(&c, d->path, &err), VMD_E_CONFIG);

	/* Errors in a file name the key and line, the path is in detail. */
	vmd_error_clear(&err);
	path = write_file(d, "bad.conf", "[DEFAULT]\n\nbogus_key = 1\n");
	assert_int_equal(vmd_config_load_file(&c, path, &err), VMD_E_CONFIG);
	assert_string_equal(err.msg,
	                    "config: unknown key 'bogus_key' (line 3)");
	assert_contains(err.detail, path);
}

static void test_load_order(void **state)
{
	struct dir *d = *state;
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;
	const char *env_file, *explicit_file;
	char missing[300];

	env_file = write_file(d, "env.conf", "instances_path = /from/env\n");
	explicit_file = write_file(d, "explicit.conf",
	                           "instances_path = /from/explicit\n");
	snprintf(missing, sizeof(missing), "%s/missing.conf", d->path);

	/* $VMDISK_CONFIG when there is no explicit path... */
	assert_int_equal(setenv("VMDISK_CONFIG", env_file, 1), 0);
	assert_int_equal(vmd_config_load(&c, NULL, &err), 0);
	assert_string_equal(c.instances_path, "/from/env");
	/* ...and load starts from the defaults, not from what was in c. */
	assert_true(c.use_cow_images);
	assert_int_equal(c.lock_timeout_seconds, 600);

	/* The explicit path wins over the environment. */
	assert_int_equal(vmd_config_load(&c, explicit_file, &err), 0);
	assert_string_equal(c.instances_path, "/from/explicit");

	/* A missing explicit or $VMDISK_CONFIG file is an error. */
	assert_int_equal(vmd_config_load(&c, missing, &err), VMD_E_NOTFOUND);
	vmd_error_clear(&err);
	assert_int_equal(setenv("VMDISK_CONFIG", missing, 1), 0);
	assert_int_equal(vmd_config_load(&c, NULL, &err), VMD_E_NOTFOUND);
	vmd_error_clear(&err);

	/* An empty $VMDISK_CONFIG counts as unset: the default path. */
	assert_int_equal(setenv("VMDISK_CONFIG", "", 1), 0);
	if (access(VMD_DEFAULT_CONFIG_PATH, F_OK) == 0 || errno != ENOENT) {
		skip();
		return;
	}
	assert_int_equal(vmd_config_load(&c, NULL, &err), 0);
	assert_defaults(&c);
	unsetenv("VMDISK_CONFIG");
	assert_int_equal(vmd_config_load(&c, NULL, &err), 0);
	assert_defaults(&c);
}

static void test_backend_resolution(void **state)
{
	struct vmd_config c;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&c);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_QCOW2);
	assert_int_equal(vmd_config_load_string(&c, "use_cow_images = false\n",
	                                        &err),
	                 0);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_FLAT);
	/* An explicit images_type ignores use_cow_images. */
	assert_int_equal(vmd_config_load_string(&c, "images_type = qcow2\n",
	                                        &err),
	                 0);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_QCOW2);
	assert_int_equal(vmd_config_load_string(&c,
	                                        "images_type = rbd\n"
	                                        "use_cow_images = true\n",
	                                        &err),
	                 0);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_RBD);
	assert_int_equal(vmd_config_load_string(&c, "images_type = flat\n",
	                                        &err),
	                 0);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_FLAT);
	assert_int_equal(vmd_config_load_string(&c, "images_type = default\n",
	                                        &err),
	                 0);
	assert_int_equal(vmd_config_backend(&c), VMD_BACKEND_QCOW2);
	assert_false(vmd_error_is_set(&err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_instances_path),
		cmocka_unit_test(test_bad_section),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_value_too_long),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_image_cache_group),
		cmocka_unit_test_setup_teardown(test_load_file, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_load_order, setup,
		                                teardown),
		cmocka_unit_test(test_backend_resolution),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
