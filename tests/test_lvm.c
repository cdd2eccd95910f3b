/*
 * The lvm backend against the real device-mapper: run inside the test VM
 * (tests/vm/run.sh), on a volume group made on $VMDISK_VM_DISK. Outside it
 * (no root, no /dev/mapper/control, no disk given) every case skips and
 * says why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "helpers.h"
#include "vmd_build_config.h"
#include <vmdisk/vmdisk.h>

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define VG "vmdtest"
#define MIB (1ull << 20)

struct fixture {
	char *dir;
	char *base_raw;
	char *base_qcow2;
	struct vmd_config cfg;
	struct vmd_ctx *ctx;
};

static const char *why_not;

static void fixture_ctx(struct fixture *f)
{
	struct vmd_error err = VMD_ERROR_INIT;

	vmd_ctx_free(f->ctx);
	f->ctx = vmd_ctx_new(&f->cfg, &err);
	assert_non_null(f->ctx);
}

static void run_ok(const char *const *argv)
{
	char *out = NULL, *errs = NULL;
	int rc = th_run(argv, NULL, &out, &errs);

	if (rc != 0)
		fail_msg("%s failed (%d): %s%s", argv[0], rc, out, errs);
	free(out);
	free(errs);
}

static int group_setup(void **state)
{
	const char *disk = getenv("VMDISK_VM_DISK");

	(void)state;
	if (geteuid() != 0)
		why_not = "needs root (run by tests/vm/run.sh)";
	else if (access("/dev/mapper/control", F_OK) != 0)
		why_not = "no device-mapper in this kernel (run by tests/vm/run.sh)";
	else if (!disk)
		why_not = "VMDISK_VM_DISK is not set (run by tests/vm/run.sh)";
	if (why_not) {
		printf("# skipped: %s\n", why_not);
		return 0;
	}
	run_ok((const char *[]){"pvcreate", "-q", "-ff", "-y", disk, NULL});
	run_ok((const char *[]){"vgcreate", "-q", "-s", "4m", VG, disk, NULL});
	run_ok((const char *[]){"lvcreate", "-q", "-y", "-L", "256m", "-T",
	                        VG "/vmdisk-thinpool", NULL});
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (!why_not)
		th_run((const char *[]){"vgremove", "-q", "-f", VG, NULL}, NULL,
		       NULL, NULL);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_convert_opts co = {.src_format = VMD_FORMAT_RAW,
	                              .dst_format = VMD_FORMAT_QCOW2};
	unsigned char block[65536];
	char *instances;

	*state = f;
	if (why_not)
		return 0;
	f->dir = th_mkdtemp("lvm");
	instances = th_path(f->dir, "instances");
	f->base_raw = th_path(f->dir, "base.raw");
	f->base_qcow2 = th_path(f->dir, "base.qcow2");
	/* 5 MiB: data, a hole, data at the end. */
	th_write_pattern(f->base_raw, 2 * MIB, 5);
	memset(block, 0x77, sizeof(block));
	th_pwrite_at(f->base_raw, block, sizeof(block), 5 * MIB - sizeof(block));
	assert_int_equal(vmd_convert_to_path(f->base_raw, f->base_qcow2, &co,
	                                     &err),
	                 0);
	vmd_config_defaults(&f->cfg);
	snprintf(f->cfg.instances_path, sizeof(f->cfg.instances_path), "%s",
	         instances);
	snprintf(f->cfg.images_volume_group,
	         sizeof(f->cfg.images_volume_group), VG);
	f->cfg.images_type = VMD_BACKEND_LVM;
	f->cfg.force_raw_images = false;
	free(instances);
	fixture_ctx(f);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->ctx)
		vmd_ctx_free(f->ctx);
	if (f->dir) {
		th_rmtree(f->dir);
		free(f->dir);
	}
	free(f->base_raw);
	free(f->base_qcow2);
	free(f);
	return 0;
}

#define NEED_VM()                                                              \
	do {                                                                   \
		if (why_not) {                                                 \
			skip();                                                \
			return;                                                \
		}                                                              \
	} while (0)

static void create_ok(struct fixture *f, const char *disk, const char *image,
                      enum vmd_blank_fs fs, uint64_t size,
                      struct vmd_disk_info *info)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = image, .fs = fs, .size = size};

	if (vmd_disk_create(f->ctx, INST, disk, &o, info, &err) != 0)
		fail_msg("create %s: %s (%s)", disk, err.msg, err.detail);
	assert_string_equal(info->backend, "lvm");
}

static void remove_ok(struct fixture *f, const char *disk)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (vmd_disk_remove(f->ctx, INST, disk, &err) != 0)
		fail_msg("remove %s: %s (%s)", disk, err.msg, err.detail);
}

/* The first len bytes of dev equal file, and the rest up to end is zero. */
static void assert_reads_back(const char *dev, const char *file,
                              uint64_t end)
{
	int a = open(dev, O_RDONLY), b = open(file, O_RDONLY);
	unsigned char x[65536], y[65536];
	struct stat st;
	uint64_t off = 0;

	assert_true(a >= 0 && b >= 0);
	assert_int_equal(fstat(b, &st), 0);
	for (; off < end; off += sizeof(x)) {
		ssize_t n = pread(a, x, sizeof(x), (off_t)off);

		assert_int_equal(n, (ssize_t)sizeof(x));
		if (off < (uint64_t)st.st_size) {
			assert_int_equal(pread(b, y, sizeof(y), (off_t)off),
			                 (ssize_t)sizeof(y));
		} else {
			memset(y, 0, sizeof(y));
		}
		if (memcmp(x, y, sizeof(x)) != 0)
			fail_msg("%s differs from %s in the 64 KiB at %llu", dev,
			         file, (unsigned long long)off);
	}
	close(a);
	close(b);
}

static bool lv_listed(const char *name)
{
	char *out = NULL;
	bool found;

	assert_int_equal(th_run((const char *[]){"lvs", "--noheadings", "-o",
	                                         "lv_name", VG, NULL},
	                        NULL, &out, NULL),
	                 0);
	found = strstr(out, name) != NULL;
	free(out);
	return found;
}

/* Extents that held other data: the holes of the base still read zero. */
static void test_thick_from_raw_base(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	unsigned char ff[65536];

	NEED_VM();
	/* Dirty the VG's first free extents, then free them unwiped. */
	run_ok((const char *[]){"lvcreate", "-q", "-y", "-L", "16m", "-n",
	                        "dirty", VG, NULL});
	memset(ff, 0xff, sizeof(ff));
	for (int i = 0; i < 256; i++)
		th_pwrite_at("/dev/" VG "/dirty", ff, sizeof(ff),
		             (uint64_t)i * sizeof(ff));
	run_ok((const char *[]){"lvremove", "-q", "-f", VG "/dirty", NULL});

	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 10 * MIB, &info);
	/* Rounded up to whole 4 MiB extents. */
	assert_int_equal(info.virtual_size, 12 * MIB);
	assert_string_equal(info.path, "/dev/" VG "/" INST "_disk");
	assert_reads_back(info.path, f->base_raw, 12 * MIB);
	remove_ok(f, "disk");
	assert_false(lv_listed(INST "_disk"));
}

static void test_from_qcow2_base_and_name_escaping(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;

	NEED_VM();
	create_ok(f, "disk_1", f->base_qcow2, VMD_FS_NONE, 0, &info);
	/* Nova's rule: '_' in the disk name is doubled. */
	assert_string_equal(info.path, "/dev/" VG "/" INST "_disk__1");
	assert_reads_back(info.path, f->base_raw, 8 * MIB);
	remove_ok(f, "disk_1");
}

static void test_sparse_thin(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	char *out = NULL;

	NEED_VM();
	f->cfg.sparse_logical_volumes = true;
	fixture_ctx(f);
	create_ok(f, "thin", f->base_raw, VMD_FS_NONE, 1ull << 30, &info);
	assert_int_equal(info.virtual_size, 1ull << 30);
	assert_int_equal(th_run((const char *[]){"lvs", "--noheadings", "-o",
	                                         "segtype,pool_lv",
	                                         VG "/" INST "_thin", NULL},
	                        NULL, &out, NULL),
	                 0);
	assert_non_null(strstr(out, "thin"));
	assert_non_null(strstr(out, "vmdisk-thinpool"));
	free(out);
	assert_reads_back(info.path, f->base_raw, 16 * MIB);
	remove_ok(f, "thin");
}

static void test_blank_filesystems(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	static const struct {
		enum vmd_blank_fs fs;
		const char *type;
	} cases[] = {{VMD_FS_EXT4, "TYPE=\"ext4\""}, {VMD_FS_SWAP, "TYPE=\"swap\""}};

	NEED_VM();
	for (size_t i = 0; i < 2; i++) {
		char *out = NULL;

		create_ok(f, "eph", NULL, cases[i].fs, 64 * MIB, &info);
		assert_int_equal(th_run((const char *[]){"blkid", info.path,
		                                         NULL},
		                        NULL, &out, NULL),
		                 0);
		if (!strstr(out, cases[i].type))
			fail_msg("blkid %s: %s", info.path, out);
		free(out);
		remove_ok(f, "eph");
	}
}

static void test_resize(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;

	NEED_VM();
	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
	assert_int_equal(vmd_disk_resize(f->ctx, INST, "disk", 4 * MIB, &err),
	                 VMD_E_TOOSMALL);
	assert_int_equal(vmd_disk_resize(f->ctx, INST, "disk", 20 * MIB, &err),
	                 0);
	assert_int_equal(vmd_disk_info(f->ctx, INST, "disk", &info, &err), 0);
	assert_int_equal(info.virtual_size, 20 * MIB);
	assert_reads_back(info.path, f->base_raw, 8 * MIB);
	remove_ok(f, "disk");
}

/* What a removed disk held is gone from its extents (volume_clear=zero),
 * and is not with volume_clear=none: the check can tell the two apart. */
static void test_remove_clears_extents(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	static const char *const modes[] = {"zero", "none"};

	NEED_VM();
	for (size_t i = 0; i < 2; i++) {
		unsigned char buf[65536];
		bool any = false;
		int fd;

		snprintf(f->cfg.volume_clear, sizeof(f->cfg.volume_clear), "%s",
		         modes[i]);
		fixture_ctx(f);
		create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
		remove_ok(f, "disk");
		/* The next LV gets the same first free extents. */
		run_ok((const char *[]){"lvcreate", "-q", "-y", "-Wn", "-Zn",
		                        "-L", "8m", "-n", "probe", VG, NULL});
		fd = open("/dev/" VG "/probe", O_RDONLY);
		assert_true(fd >= 0);
		for (off_t off = 0; off < (off_t)(8 * MIB); off += sizeof(buf)) {
			assert_int_equal(pread(fd, buf, sizeof(buf), off),
			                 (ssize_t)sizeof(buf));
			for (size_t k = 0; k < sizeof(buf) && !any; k++)
				any = buf[k] != 0;
		}
		close(fd);
		run_ok((const char *[]){"lvremove", "-q", "-f", VG "/probe",
		                        NULL});
		if (i == 0)
			assert_false(any);
		else
			assert_true(any);
	}
}

static void test_failure_after_create_leaves_no_lv(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_create_opts o = {.image = f->base_raw};

	NEED_VM();
	if (!VMD_FAULT_INJECTION) {
		skip();
		return;
	}
	setenv("VMDISK_FAULT", "lvm.after_create:fail", 1);
	assert_int_not_equal(vmd_disk_create(f->ctx, INST, "disk", &o, NULL,
	                                     &err),
	                     0);
	unsetenv("VMDISK_FAULT");
	assert_false(lv_listed(INST "_disk"));
	assert_int_equal(vmd_disk_info(f->ctx, INST, "disk", &info, &err),
	                 VMD_E_NOTFOUND);
	/* And the next try works. */
	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 0, &info);
	remove_ok(f, "disk");
}

#define KEY_ID "3c2e8f4a-9b1d-4e6f-a8c7-5d4b3a2f1e0d"

/* A 0600 key file named by its id in a fresh key directory; the config
 * turned to encryption with the file provider. */
static void use_key_file(struct fixture *f, mode_t mode)
{
	char *dir = th_path(f->dir, "keys"), *path;
	unsigned char key[64];

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(0xa5 ^ (i * 37));
	mkdir(dir, 0700);
	path = th_path(dir, KEY_ID);
	unlink(path);
	th_pwrite_at(path, key, sizeof(key), 0);
	assert_int_equal(chmod(path, mode), 0);
	f->cfg.ephemeral_storage_encryption_enabled = true;
	snprintf(f->cfg.key_manager, sizeof(f->cfg.key_manager), "file");
	snprintf(f->cfg.key_file_dir, sizeof(f->cfg.key_file_dir), "%s", dir);
	fixture_ctx(f);
	free(path);
	free(dir);
}

/* Whether 64 KiB of 0x77 (the base's last block) are anywhere on dev. */
static bool plaintext_on(const char *dev)
{
	unsigned char buf[1 << 20];
	int fd = open(dev, O_RDONLY);
	ssize_t n;
	off_t off = 0;
	size_t run = 0;

	assert_true(fd >= 0);
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			run = buf[i] == 0x77 ? run + 1 : 0;
			if (run >= 65536) {
				close(fd);
				return true;
			}
		}
		off += n;
	}
	close(fd);
	return false;
}

static void test_encrypted_volume(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_create_opts o = {.image = f->base_raw, .key_id = KEY_ID};

	NEED_VM();
	use_key_file(f, 0600);
	/* No key id: refused before anything exists. */
	assert_int_equal(vmd_disk_create(f->ctx, INST, "enc",
	                                 &(struct vmd_create_opts){
					         .image = f->base_raw},
	                                 NULL, &err),
	                 VMD_E_INVAL);
	assert_false(lv_listed(INST "_enc"));
	if (vmd_disk_create(f->ctx, INST, "enc", &o, &info, &err) != 0)
		fail_msg("create: %s (%s)", err.msg, err.detail);
	assert_string_equal(info.path, "/dev/mapper/" INST "_enc-dmcrypt");
	assert_true(info.virtual_size >= 5 * MIB);
	/* The guest's view is the base; the LV holds only ciphertext. */
	assert_reads_back(info.path, f->base_raw, 5 * MIB);
	assert_false(plaintext_on("/dev/" VG "/" INST "_enc"));
	assert_true(plaintext_on(info.path));
	remove_ok(f, "enc");
	assert_false(lv_listed(INST "_enc"));
	assert_false(th_exists("/dev/mapper/" INST "_enc-dmcrypt"));
}

/* Key retrieval failures: exit before any volume exists; the key id is in
 * no error message. */
static void test_key_failures_make_nothing(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = f->base_raw,
	                            .key_id = "0e9d8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b"};

	NEED_VM();
	use_key_file(f, 0600);
	/* No such key file. */
	assert_true(vmd_disk_create(f->ctx, INST, "enc", &o, NULL, &err) < 0);
	assert_null(strstr(err.msg, o.key_id));
	assert_null(strstr(err.detail, o.key_id));
	assert_false(lv_listed(INST "_enc"));
	/* A key file others can read. */
	use_key_file(f, 0644);
	o.key_id = KEY_ID;
	vmd_error_clear(&err);
	assert_true(vmd_disk_create(f->ctx, INST, "enc", &o, NULL, &err) < 0);
	assert_null(strstr(err.msg, KEY_ID));
	assert_false(lv_listed(INST "_enc"));
}

/* A failure once the mapping is open: mapping closed, LV removed. */
static void test_failure_after_luks_open(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = f->base_raw, .key_id = KEY_ID};

	NEED_VM();
	if (!VMD_FAULT_INJECTION) {
		skip();
		return;
	}
	use_key_file(f, 0600);
	setenv("VMDISK_FAULT", "lvm.after_luks_open:fail", 1);
	assert_true(vmd_disk_create(f->ctx, INST, "enc", &o, NULL, &err) < 0);
	unsetenv("VMDISK_FAULT");
	assert_false(lv_listed(INST "_enc"));
	assert_false(th_exists("/dev/mapper/" INST "_enc-dmcrypt"));
}

static void test_xml_and_extract(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *xml = NULL, *out = th_path(f->dir, "out.raw");

	NEED_VM();
	create_ok(f, "disk", f->base_qcow2, VMD_FS_NONE, 0, &info);
	assert_int_equal(vmd_disk_libvirt_xml(f->ctx, INST, "disk",
	                                      &(struct vmd_xml_opts){.dev = "vdb"},
	                                      &xml, &err),
	                 0);
	assert_non_null(strstr(xml, "<disk type='block' device='disk'>"));
	assert_non_null(strstr(xml, "<source dev='/dev/" VG "/" INST
	                            "_disk'/>"));
	assert_non_null(strstr(xml, "io='native'"));
	free(xml);
	assert_int_equal(vmd_disk_snapshot_extract(f->ctx, INST, "disk", out,
	                                           VMD_FORMAT_RAW, &err),
	                 0);
	assert_reads_back(info.path, out, 8 * MIB);
	remove_ok(f, "disk");
	free(out);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_thick_from_raw_base),
		T(test_from_qcow2_base_and_name_escaping),
		T(test_sparse_thin),
		T(test_blank_filesystems),
		T(test_resize),
		T(test_remove_clears_extents),
		T(test_failure_after_create_leaves_no_lv),
		T(test_xml_and_extract),
		T(test_encrypted_volume),
		T(test_key_failures_make_nothing),
		T(test_failure_after_luks_open),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
