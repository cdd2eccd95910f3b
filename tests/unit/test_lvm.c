/*
 * The lvm backend against the real device-mapper: run inside the test VM
 * (tests/suite/vm/run.sh), on a volume group made on $VMDISK_VM_DISK. Outside it
 * (no root, no /dev/mapper/control, no disk given) every case skips and
 * says why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert.h"
#include "helpers.h"
#include "internal.h"
#include "privhelper_server.h"
#include "vmd_build_config.h"
#include <vmdisk/vmdisk.h>

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define VG "vmdtest"
#define MIB (1ull << 20)

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *base_raw;
	char *base_qcow2;
};

static const char *why_not;

static void run_ok(const char *const *argv)
{
	th_run_ok(argv, false);
}

static int group_setup(void **state)
{
	const char *disk = getenv("VMDISK_VM_DISK");

	(void)state;
	if (geteuid() != 0)
		why_not = "needs root (run by tests/suite/vm/run.sh)";
	else if (access("/dev/mapper/control", F_OK) != 0)
		why_not = "no device-mapper in this kernel (run by tests/suite/vm/run.sh)";
	else if (!disk)
		why_not = "VMDISK_VM_DISK is not set (run by tests/suite/vm/run.sh)";
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
	if (why_not)
		return 0;
	/* Deactivated by lvm2 first, which takes its /dev/VG links along
	 * (no udev here): removed behind its back, they stay and the next
	 * binary's vgcreate finds /dev/VG taken. */
	th_run((const char *[]){"vgchange", "-q", "-an", VG, NULL}, NULL, NULL,
	       NULL);
	/* Whatever mapping a failed case left open would keep its LV, and
	 * so the VG, busy for the next binary in this guest. */
	th_run((const char *[]){"dmsetup", "remove_all", NULL}, NULL, NULL,
	       NULL);
	th_run((const char *[]){"vgremove", "-q", "-f", VG, NULL}, NULL, NULL,
	       NULL);
	return 0;
}

static int setup(void **state)
{
	struct fixture *f;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_convert_opts co = {.src_format = VMD_FORMAT_RAW,
	                              .dst_format = VMD_FORMAT_QCOW2};
	unsigned char block[65536];

	/* Skipped: a zeroed fixture, which th_teardown ends as well. */
	if (why_not) {
		*state = calloc(1, sizeof(*f));
		return 0;
	}
	f = TH_FIXTURE_NEW(struct fixture, "lvm");
	*state = f;
	f->base_raw = th_fixture_path(&f->th, "base.raw");
	f->base_qcow2 = th_fixture_path(&f->th, "base.qcow2");
	/* 5 MiB: data, a hole, data at the end. */
	th_write_pattern(f->base_raw, 2 * MIB, 5);
	memset(block, 0x77, sizeof(block));
	th_pwrite_at(f->base_raw, block, sizeof(block), 5 * MIB - sizeof(block));
	assert_int_equal(vmd_convert_to_path(f->base_raw, f->base_qcow2, &co,
	                                     &err),
	                 0);
	snprintf(f->cfg.images_volume_group,
	         sizeof(f->cfg.images_volume_group), VG);
	f->cfg.images_type = VMD_BACKEND_LVM;
	f->cfg.force_raw_images = false;
	th_ctx_renew(&f->ctx, &f->cfg);
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
	struct vmd_create_opts o = {.image = image, .fs = fs, .size = size};

	th_create_ok(f->ctx, INST, disk, &o, info);
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
	th_ctx_renew(&f->ctx, &f->cfg);
	create_ok(f, "thin", f->base_raw, VMD_FS_NONE, 1ull << 30, &info);
	assert_int_equal(info.virtual_size, 1ull << 30);
	assert_int_equal(th_run((const char *[]){"lvs", "--noheadings", "-o",
	                                         "segtype,pool_lv",
	                                         VG "/" INST "_thin", NULL},
	                        NULL, &out, NULL),
	                 0);
	assert_contains(out, "thin");
	assert_contains(out, "vmdisk-thinpool");
	free(out);
	assert_reads_back(info.path, f->base_raw, 16 * MIB);
	remove_ok(f, "thin");
	/* A pool that does not zero new blocks would show a guest what a
	 * removed volume left: refused, and no LV is left behind. */
	run_ok((const char *[]){"lvcreate", "-q", "-y", "-L", "16m", "-T",
	                        VG "/nozeropool", "--zero", "n", NULL});
	snprintf(f->cfg.lvm_thin_pool, sizeof(f->cfg.lvm_thin_pool),
	         "nozeropool");
	th_ctx_renew(&f->ctx, &f->cfg);
	{
		struct vmd_error err = VMD_ERROR_INIT;
		struct vmd_create_opts o = {.size = 8 * MIB};

		assert_int_equal(vmd_disk_create(f->ctx, INST, "thin", &o,
		                                 &info, &err),
		                 VMD_E_CONFIG);
		assert_string_equal(err.msg,
		                    "create: lvm: the thin pool does not zero "
		                    "new blocks");
	}
	assert_false(lv_listed(INST "_thin"));
	run_ok((const char *[]){"lvremove", "-q", "-f", VG "/nozeropool",
	                        NULL});
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

/* Whether the first free extents (where the last removed 8 MiB LV was)
 * hold anything but zeroes. */
static bool freed_extents_hold_data(void)
{
	unsigned char buf[65536];
	bool any = false;
	int fd;

	run_ok((const char *[]){"lvcreate", "-q", "-y", "-Wn", "-Zn", "-L",
	                        "8m", "-n", "probe", VG, NULL});
	fd = open("/dev/" VG "/probe", O_RDONLY);
	assert_true(fd >= 0);
	for (off_t off = 0; off < (off_t)(8 * MIB); off += sizeof(buf)) {
		assert_int_equal(pread(fd, buf, sizeof(buf), off),
		                 (ssize_t)sizeof(buf));
		for (size_t k = 0; k < sizeof(buf) && !any; k++)
			any = buf[k] != 0;
	}
	close(fd);
	run_ok((const char *[]){"lvremove", "-q", "-f", VG "/probe", NULL});
	return any;
}

/* What a removed disk held is gone from its extents (volume_clear=zero),
 * and is not with volume_clear=none: the check can tell the two apart. */
static void test_remove_clears_extents(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	struct vmd_error err = VMD_ERROR_INIT;
	static const char *const modes[] = {"zero", "none"};
	int fd;

	NEED_VM();
	/* A disk a guest still has open is neither cleared nor removed. */
	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
	fd = open(info.path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(vmd_disk_remove(f->ctx, INST, "disk", &err),
	                 VMD_E_BUSY);
	assert_string_equal(err.msg, "remove: lvm: volume is in use");
	close(fd);
	assert_true(lv_listed(INST "_disk"));
	assert_reads_back(info.path, f->base_raw, 8 * MIB);
	remove_ok(f, "disk");
	for (size_t i = 0; i < 2; i++) {
		snprintf(f->cfg.volume_clear, sizeof(f->cfg.volume_clear), "%s",
		         modes[i]);
		th_ctx_renew(&f->ctx, &f->cfg);
		create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
		remove_ok(f, "disk");
		/* The next LV gets the same first free extents. */
		if (i == 0)
			assert_false(freed_extents_hold_data());
		else
			assert_true(freed_extents_hold_data());
	}
}

/* A request cannot clear less than the helper's configuration says:
 * volume_clear=none asked of a helper configured with zero still zeroes. */
static void test_remove_request_cannot_weaken_clear(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_priv_reply rep;
	struct vmd_priv_request req = {.op = VMD_PRIV_LVM_REMOVE,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_CLEAR,
	                               .vg = VG,
	                               .lv = INST "_disk",
	                               .volume_clear = VMD_PRIV_CLEAR_NONE};

	NEED_VM();
	snprintf(f->cfg.volume_clear, sizeof(f->cfg.volume_clear), "zero");
	th_ctx_renew(&f->ctx, &f->cfg);
	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
	if (vmd_priv_run(&f->cfg, &req, &rep, &err) != 0)
		fail_msg("lvm_remove: %s (%s)", err.msg, err.detail);
	assert_false(lv_listed(INST "_disk"));
	assert_false(freed_extents_hold_data());
	/* The disk's record goes with the library's remove, not this one. */
	remove_ok(f, "disk");
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
	assert_errc(vmd_disk_create(f->ctx, INST, "disk", &o, NULL, &err),
	            &err, VMD_E_IO);
	unsetenv("VMDISK_FAULT");
	assert_false(lv_listed(INST "_disk"));
	assert_int_equal(vmd_disk_info(f->ctx, INST, "disk", &info, &err),
	                 VMD_E_NOTFOUND);
	/* And the next try works. */
	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 0, &info);
	remove_ok(f, "disk");
}

#define KEY_ID "3c2e8f4a-9b1d-4e6f-a8c7-5d4b3a2f1e0d"

#define FILE_KEY_LEN 64

/* The bytes use_key_file writes, so that a test can look for them. */
static void file_key_bytes(unsigned char key[FILE_KEY_LEN])
{
	for (size_t i = 0; i < FILE_KEY_LEN; i++)
		key[i] = (unsigned char)(0xa5 ^ (i * 37));
}

/* A 0600 key file named by its id in a fresh key directory; the config
 * turned to encryption with the file provider. */
static void use_key_file(struct fixture *f, mode_t mode)
{
	char *dir = th_path(f->dir, "keys"), *path;
	unsigned char key[FILE_KEY_LEN];

	file_key_bytes(key);
	mkdir(dir, 0700);
	path = th_path(dir, KEY_ID);
	unlink(path);
	th_pwrite_at(path, key, sizeof(key), 0);
	assert_int_equal(chmod(path, mode), 0);
	f->cfg.ephemeral_storage_encryption_enabled = true;
	snprintf(f->cfg.key_manager, sizeof(f->cfg.key_manager), "file");
	snprintf(f->cfg.key_file_dir, sizeof(f->cfg.key_file_dir), "%s", dir);
	th_ctx_renew(&f->ctx, &f->cfg);
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

/* Fails the test over a captured log. cmocka cuts a long message and
 * with it the newline before the next TAP line, so the log goes to stderr
 * and the message stays short. */
static void fail_over_log(const char *what, const char *log)
{
	fflush(stdout);
	fprintf(stderr, "%s: captured log:\n%s\n", what, log);
	fail_msg("%s (captured log printed above)", what);
}

/* Whether the log so far holds the key id or the key of use_key_file, as
 * bytes or as hex. */
static bool log_names_key(const char *key_id)
{
	const char *log = th_log_text();
	unsigned char key[FILE_KEY_LEN];
	char hex[2 * FILE_KEY_LEN + 1];

	file_key_bytes(key);
	for (size_t i = 0; i < FILE_KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	return strstr(log, key_id) || strstr(log, hex) ||
	       memmem(log, strlen(log), key, 8);
}

static void test_encrypted_volume(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_create_opts o = {.image = f->base_raw, .key_id = KEY_ID};

	NEED_VM();
	use_key_file(f, 0600);
	th_log_capture_start();
	/* No key id: refused before anything exists. */
	assert_int_equal(vmd_disk_create(f->ctx, INST, "enc",
	                                 &(struct vmd_create_opts){
					         .image = f->base_raw},
	                                 NULL, &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	assert_false(lv_listed(INST "_enc"));
	if (vmd_disk_create(f->ctx, INST, "enc", &o, &info, &err) != 0)
		fail_msg("create: %s (%s)", err.msg, err.detail);
	assert_string_equal(info.path, "/dev/mapper/" INST "_enc-dmcrypt");
	assert_true(info.virtual_size >= 5 * MIB);
	/* The guest's view is the base; the LV holds only ciphertext. */
	assert_reads_back(info.path, f->base_raw, 5 * MIB);
	assert_false(plaintext_on("/dev/" VG "/" INST "_enc"));
	assert_true(plaintext_on(info.path));
	/* Growing it grows the mapping too (the key id from the record). */
	th_ctx_renew(&f->ctx, &f->cfg);
	if (vmd_disk_resize(f->ctx, INST, "enc", 40 * MIB, &err) != 0)
		fail_msg("resize: %s (%s)", err.msg, err.detail);
	assert_int_equal(vmd_disk_info(f->ctx, INST, "enc", &info, &err), 0);
	assert_int_equal(info.virtual_size, 40 * MIB);
	assert_reads_back(info.path, f->base_raw, 5 * MIB);
	/* While a guest holds the mapping, remove neither closes nor
	 * clears anything. */
	{
		int fd = open(info.path, O_RDONLY);

		assert_true(fd >= 0);
		/* cryptsetup's "in use" (EBUSY) comes back as external. */
		assert_errc(vmd_disk_remove(f->ctx, INST, "enc", &err), &err,
		            VMD_E_EXTERNAL);
		vmd_error_clear(&err);
		close(fd);
		assert_true(lv_listed(INST "_enc"));
		assert_reads_back(info.path, f->base_raw, 5 * MIB);
	}
	remove_ok(f, "enc");
	assert_false(lv_listed(INST "_enc"));
	assert_false(th_exists("/dev/mapper/" INST "_enc-dmcrypt"));
	/* The key was read, used and wiped without a trace in the log. */
	if (th_log_text()[0] == '\0' || log_names_key(KEY_ID))
		fail_over_log("encrypted create/resize/remove",
		              th_log_text());
	th_log_capture_stop();
}

/* Key retrieval failures: exit before any volume exists; the key id is in
 * no error message and, with the key itself, in no log line. */
static void test_key_failures_make_nothing(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = f->base_raw,
	                            .key_id = "0e9d8c7b-6a5f-4e3d-9c2b-1a0f9e8d7c6b"};

	NEED_VM();
	use_key_file(f, 0600);
	th_log_capture_start();
	/* No such key file. */
	assert_errc(vmd_disk_create(f->ctx, INST, "enc", &o, NULL, &err), &err,
	            VMD_E_NOTFOUND);
	assert_not_contains(err.msg, o.key_id);
	assert_not_contains(err.detail, o.key_id);
	assert_false(lv_listed(INST "_enc"));
	if (th_log_text()[0] == '\0' || log_names_key(o.key_id))
		fail_over_log("missing key file", th_log_text());
	/* A key file others can read. */
	use_key_file(f, 0644);
	th_log_capture_start();
	o.key_id = KEY_ID;
	vmd_error_clear(&err);
	assert_errc(vmd_disk_create(f->ctx, INST, "enc", &o, NULL, &err), &err,
	            VMD_E_REFUSED);
	assert_not_contains(err.msg, KEY_ID);
	assert_not_contains(err.detail, KEY_ID);
	assert_false(lv_listed(INST "_enc"));
	if (th_log_text()[0] == '\0' || log_names_key(KEY_ID))
		fail_over_log("key file mode 0644", th_log_text());
	th_log_capture_stop();
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
	assert_errc(vmd_disk_create(f->ctx, INST, "enc", &o, NULL, &err), &err,
	            VMD_E_IO);
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
	assert_contains(xml, "<disk type='block' device='disk'>");
	assert_contains(xml, "<source dev='/dev/" VG "/" INST
	                "_disk'/>");
	assert_contains(xml, "io='native'");
	free(xml);
	assert_int_equal(vmd_disk_snapshot_extract(f->ctx, INST, "disk", out,
	                                           VMD_FORMAT_RAW, &err),
	                 0);
	assert_reads_back(info.path, out, 8 * MIB);
	remove_ok(f, "disk");
	free(out);
}

/* The base vmdiskd writes is a file of the image cache, which the caller
 * owns: a symlink (to a host file), a second link to a file, a name that
 * is not there and a file of another format than named are all refused,
 * and the volume keeps what it had. */
static void test_write_image_base_checks(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_priv_reply rep;
	struct vmd_priv_request req = {.op = VMD_PRIV_LVM_WRITE_IMAGE,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_BASE | VMD_PF_FORMAT,
	                               .vg = VG,
	                               .lv = INST "_disk",
	                               .format = "raw"};
	static const struct {
		const char *name, *format;
		int code;
	} cases[] = {
		{"link-to-host-file", "raw", VMD_E_NOTFOUND},
		{"hardlinked", "raw", VMD_E_REFUSED},
		{"no-such-base", "raw", VMD_E_NOTFOUND},
		{"a-qcow2", "raw", VMD_E_REFUSED},
		{"a-raw", "qcow2", VMD_E_REFUSED},
	};
	char *cache, *p;

	NEED_VM();
	create_ok(f, "disk", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
	cache = th_path(f->cfg.instances_path, "_base");
	p = th_path(cache, "link-to-host-file");
	assert_int_equal(symlink("/etc/lvm/lvm.conf", p), 0);
	free(p);
	p = th_path(cache, "hardlinked");
	th_write_pattern(p, 1 * MIB, 9);
	free(p);
	p = th_path(f->dir, "second-link");
	{
		char *src = th_path(cache, "hardlinked");

		assert_int_equal(link(src, p), 0);
		free(src);
	}
	free(p);
	p = th_path(cache, "a-qcow2");
	{
		char cmd_src[PATH_MAX];
		struct vmd_convert_opts co = {.src_format = VMD_FORMAT_RAW,
		                              .dst_format = VMD_FORMAT_QCOW2};

		snprintf(cmd_src, sizeof(cmd_src), "%s", f->base_raw);
		assert_int_equal(vmd_convert_to_path(cmd_src, p, &co, &err), 0);
	}
	free(p);
	p = th_path(cache, "a-raw");
	th_write_pattern(p, 1 * MIB, 11);
	free(p);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(req.base, sizeof(req.base), "%s", cases[i].name);
		snprintf(req.format, sizeof(req.format), "%s", cases[i].format);
		vmd_error_clear(&err);
		if (vmd_priv_run(&f->cfg, &req, &rep, &err) != cases[i].code)
			fail_msg("%s as %s: %d %s (%s)", cases[i].name,
			         cases[i].format, (int)err.code, err.msg,
			         err.detail);
	}
	/* Nothing was written over the disk. */
	assert_reads_back(info.path, f->base_raw, 8 * MIB);
	remove_ok(f, "disk");
	free(cache);
}

/* vmdiskd's mkfs (run in-process as root: the same handler): a file
 * system with its label on the volume; other VGs and the thin pool are
 * not served whatever the request says. */
static void test_mkfs_request_and_served_volumes(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_priv_reply rep;
	struct vmd_priv_request req = {.op = VMD_PRIV_MKFS,
	                               .fields = VMD_PF_VG | VMD_PF_LV |
	                                         VMD_PF_FS | VMD_PF_LABEL,
	                               .vg = VG,
	                               .lv = INST "_raw0",
	                               .fs = "ext4",
	                               .label = "eph0"};
	char *out = NULL;

	NEED_VM();
	create_ok(f, "raw0", NULL, VMD_FS_NONE, 64 * MIB, &info);
	if (vmd_priv_run(&f->cfg, &req, &rep, &err) != 0)
		fail_msg("mkfs: %s (%s)", err.msg, err.detail);
	assert_string_equal(rep.path, "/dev/" VG "/" INST "_raw0");
	assert_int_equal(rep.size, 64 * MIB);
	assert_int_equal(th_run((const char *[]){"blkid", rep.path, NULL},
	                        NULL, &out, NULL),
	                 0);
	if (!strstr(out, "TYPE=\"ext4\"") || !strstr(out, "LABEL=\"eph0\""))
		fail_msg("blkid: %s", out);
	free(out);
	/* Not this configuration's VG: refused before any tool runs. */
	snprintf(req.vg, sizeof(req.vg), "othervg");
	assert_int_equal(vmd_priv_run(&f->cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_string_equal(err.msg, "lvm: volume group not served here");
	/* Nor its thin pool. */
	req = (struct vmd_priv_request){.op = VMD_PRIV_LVM_REMOVE,
	                                .fields = VMD_PF_VG | VMD_PF_LV,
	                                .vg = VG,
	                                .lv = "vmdisk-thinpool"};
	vmd_error_clear(&err);
	assert_int_equal(vmd_priv_run(&f->cfg, &req, &rep, &err),
	                 VMD_E_REFUSED);
	assert_true(lv_listed("vmdisk-thinpool"));
	remove_ok(f, "raw0");
}

/*
 * A plain LV whose mapping name, <lv>-dmcrypt, is held by something else
 * (another volume's LUKS2 mapping, a dm-linear device): the name alone
 * does not make it this volume's. info and extract give the LV itself,
 * and remove leaves the other mapping open.
 */
static void test_foreign_mapping_is_not_the_volume(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *keyfile = th_path(f->dir, "foreign.key");
	const char *mapper = "/dev/mapper/" INST "_plain-dmcrypt";
	const char *foreign = "/dev/" VG "/foreign";

	NEED_VM();
	create_ok(f, "plain", f->base_raw, VMD_FS_NONE, 0, &info);
	run_ok((const char *[]){"lvcreate", "-q", "-y", "-L", "32m", "-n",
	                        "foreign", VG, NULL});
	th_write_text(keyfile, "a foreign passphrase");
	run_ok((const char *[]){"cryptsetup", "luksFormat", "-q", "--type",
	                        "luks2", "--pbkdf", "pbkdf2",
	                        "--pbkdf-force-iterations", "1000",
	                        "--key-file", keyfile, foreign, NULL});
	for (int impostor = 0; impostor < 2; impostor++) {
		if (impostor == 0)
			run_ok((const char *[]){"cryptsetup", "open",
			                        "--key-file", keyfile, foreign,
			                        INST "_plain-dmcrypt", NULL});
		else
			run_ok((const char *[]){"dmsetup", "create",
			                        INST "_plain-dmcrypt", "--table",
			                        "0 8192 linear /dev/" VG
			                        "/foreign 0",
			                        NULL});
		/* No udev in the guest: make sure the node is there. */
		run_ok((const char *[]){"dmsetup", "mknodes",
		                        INST "_plain-dmcrypt", NULL});
		if (!th_exists(mapper))
			fail_msg("impostor %d: no %s", impostor, mapper);
		if (vmd_disk_info(f->ctx, INST, "plain", &info, &err) != 0)
			fail_msg("info: %s (%s)", err.msg, err.detail);
		assert_string_equal(info.path, "/dev/" VG "/" INST "_plain");
		assert_reads_back(info.path, f->base_raw, 5 * MIB);
		if (impostor == 0)
			run_ok((const char *[]){"cryptsetup", "close",
			                        INST "_plain-dmcrypt", NULL});
	}
	remove_ok(f, "plain");
	assert_false(lv_listed(INST "_plain"));
	/* Not closed as if it were the removed volume's. */
	assert_true(th_exists(mapper));
	run_ok((const char *[]){"dmsetup", "remove", INST "_plain-dmcrypt",
	                        NULL});
	run_ok((const char *[]){"lvremove", "-q", "-f", VG "/foreign", NULL});
	free(keyfile);
}

/* ---- vmdisk run by an unprivileged user, through vmdiskd ---- */

#define USER_UID 1000
#define OTHER_UID 1001
#define VMDISK_GID 990
#define INST2 "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

/* Run argv with the given ids (and the vmdisk group) and wait; its output
 * in *out. The exit status, or 128 + signal. */
static int run_as(uid_t uid, const char *const *argv, char **out)
{
	char path[] = "/tmp/run_as.XXXXXX";
	int fd = mkstemp(path), st = 0;
	gid_t groups[] = {VMDISK_GID};
	pid_t pid;

	assert_true(fd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		if (setgroups(1, groups) < 0 ||
		    setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) < 0 ||
		    setresuid(uid, uid, uid) < 0)
			_exit(125);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(fd);
	*out = th_read_text(path);
	unlink(path);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *write_conf(struct fixture *f, const char *name,
                        const char *instances, bool encrypted)
{
	char *path = th_path(f->dir, name), text[2048];

	snprintf(text, sizeof(text),
	         "[vmdisk]\ninstances_path = %s\nimages_type = lvm\n"
	         "images_volume_group = " VG "\nforce_raw_images = false\n"
	         "vmdiskd_socket = %s/vmdiskd.sock\n"
	         "vmdiskd_policy_file = %s/policy\n"
	         "vmdiskd_audit_log = %s/audit.log\n"
	         "ephemeral_storage_encryption_enabled = %s\n"
	         "key_manager = file\nkey_file_dir = %s/keys\n"
	         "log_target = stderr\n",
	         instances, f->dir, f->dir, f->dir,
	         encrypted ? "true" : "false", f->dir);
	th_write_text(path, text);
	chmod(path, 0644);
	return path;
}

static char *owned_dir(struct fixture *f, const char *name, uid_t uid)
{
	char *dir = th_path(f->dir, name);

	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chown(dir, uid, (gid_t)uid), 0);
	return dir;
}

static uint64_t dev_size(const char *dev)
{
	int fd = open(dev, O_RDONLY);
	off_t end = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);

	if (fd >= 0)
		close(fd);
	return end < 0 ? 0 : (uint64_t)end;
}

static void expect_cli(uid_t uid, int want, const char *const *argv,
                       const char *needle)
{
	char *out = NULL;
	int rc = run_as(uid, argv, &out);

	if (rc != want || (needle && !strstr(out, needle)))
		fail_msg("uid %u: %s %s: exit %d (want %d), output: %s",
		         (unsigned)uid, argv[3], argv[4], rc, want, out);
	free(out);
}

/*
 * vmdiskd runs as root; vmdisk runs as uid 1000 (granted the lvm ops and
 * the encryption ops) and uid 1001 (granted nothing). The same commands
 * that work as root work through the daemon; the refused uid gets "not
 * allowed", nothing is made, and the audit log names both.
 */
static void test_unprivileged_through_vmdiskd(void **state)
{
	struct fixture *f = *state;
	const char *build = getenv("VMDISK_BUILD_DIR");
	const char *cli = getenv("VMDISK_CLI");
	char daemon[PATH_MAX], sock[PATH_MAX], policy_text[256];
	char *conf, *conf_enc, *conf_other, *inst, *inst_other, *policy;
	char *audit, *text, *out_raw, *out_enc;
	pid_t pid;

	NEED_VM();
	if (!build || !cli) {
		skip();
		return;
	}
	snprintf(daemon, sizeof(daemon), "%s/tools/vmdiskd", build);
	assert_int_equal(access(daemon, X_OK), 0);
	/* The group the socket is given to. */
	th_write_text("/etc/group", "root:x:0:\nvmdisk:x:990:\n");
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(chmod(f->base_raw, 0644), 0);
	inst = owned_dir(f, "inst-user", USER_UID);
	inst_other = owned_dir(f, "inst-other", OTHER_UID);
	conf = write_conf(f, "user.conf", inst, false);
	conf_enc = write_conf(f, "enc.conf", inst, true);
	conf_other = write_conf(f, "other.conf", inst_other, false);
	policy = th_path(f->dir, "policy");
	snprintf(policy_text, sizeof(policy_text),
	         "[allow]\nuid.%u = all, luks_format, luks_open, luks_close\n",
	         (unsigned)USER_UID);
	th_write_text(policy, policy_text);
	chmod(policy, 0600);
	use_key_file(f, 0600);
	snprintf(sock, sizeof(sock), "%s/vmdiskd.sock", f->dir);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/tmp/vmdiskd.log", O_WRONLY | O_CREAT | O_TRUNC,
		              0600);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(daemon, daemon, "--config", conf, "-v", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !th_exists(sock); i++)
		usleep(50000);
	assert_true(th_exists(sock));

	/* Plain disk: create, info, resize, remove as uid 1000. */
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf, "create", INST,
	                            "udisk", "--image", f->base_raw, "--size",
	                            "8388608", NULL},
	           NULL);
	assert_reads_back("/dev/" VG "/" INST "_udisk", f->base_raw, 8 * MIB);
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf, "--json", "info",
	                            INST, "udisk", NULL},
	           "/dev/" VG "/" INST "_udisk");
	/* extract reads the device through a descriptor vmdiskd passes. */
	out_raw = th_path(inst, "udisk.raw");
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf, "extract", INST,
	                            "udisk", out_raw, NULL},
	           NULL);
	assert_int_equal(th_file_size(out_raw), 8 * MIB);
	assert_reads_back(out_raw, f->base_raw, 8 * MIB);
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf, "resize", INST,
	                            "udisk", "16777216", NULL},
	           NULL);
	assert_int_equal(dev_size("/dev/" VG "/" INST "_udisk"), 16 * MIB);
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf, "remove", INST,
	                            "udisk", NULL},
	           NULL);
	assert_false(lv_listed(INST "_udisk"));

	/* A uid the policy does not name: refused, nothing made. */
	expect_cli(OTHER_UID, 1,
	           (const char *[]){cli, "--config", conf_other, "create",
	                            INST2, "odisk", "--blank", "--size",
	                            "8388608", NULL},
	           "vmdiskd: not allowed");
	assert_false(lv_listed(INST2 "_odisk"));

	/* A key the daemon cannot get: exit 1, nothing made, no key id. */
	{
		char *out = NULL;
		const char *missing = "5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
		int rc = run_as(USER_UID,
		                (const char *[]){cli, "--config", conf_enc,
		                                 "create", INST, "nokey",
		                                 "--image", f->base_raw,
		                                 "--key-id", missing, NULL},
		                &out);

		if (rc != 1 || strstr(out, missing) || !strstr(out, "keys"))
			fail_msg("missing key through vmdiskd: exit %d: %s", rc,
			         out);
		free(out);
		assert_false(lv_listed(INST "_nokey"));
	}
	/* Encrypted, still unprivileged: the daemon fetches the key. */
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf_enc, "create", INST,
	                            "uenc", "--image", f->base_raw,
	                            "--key-id", KEY_ID, NULL},
	           NULL);
	assert_reads_back("/dev/mapper/" INST "_uenc-dmcrypt", f->base_raw,
	                  5 * MIB);
	assert_false(plaintext_on("/dev/" VG "/" INST "_uenc"));
	/* Extracted, an encrypted disk is its plaintext (the mapping). */
	out_enc = th_path(inst, "uenc.raw");
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf_enc, "extract", INST,
	                            "uenc", out_enc, NULL},
	           NULL);
	assert_reads_back(out_enc, f->base_raw, 5 * MIB);
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf_enc, "resize", INST,
	                            "uenc", "33554432", NULL},
	           NULL);
	assert_int_equal(dev_size("/dev/mapper/" INST "_uenc-dmcrypt"),
	                 32 * MIB);
	expect_cli(USER_UID, 0,
	           (const char *[]){cli, "--config", conf_enc, "remove", INST,
	                            "uenc", NULL},
	           NULL);
	assert_false(lv_listed(INST "_uenc"));
	assert_false(th_exists("/dev/mapper/" INST "_uenc-dmcrypt"));

	kill(pid, SIGTERM);
	{
		int st = 0;

		/* A clean stop (in the sanitizer build: no leak found). */
		assert_int_equal(waitpid(pid, &st, 0), pid);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			fail_msg("vmdiskd ended with status %#x: %s", st,
			         th_read_text("/tmp/vmdiskd.log"));
	}
	audit = th_path(f->dir, "audit.log");
	text = th_read_text(audit);
	if (!strstr(text, "uid=1000 ") || !strstr(text, "op=lvm_create") ||
	    !strstr(text, "uid=1001 ") || !strstr(text, "refused") ||
	    !strstr(text, "op=lvm_write_image") ||
	    !strstr(text, "op=lvm_open_read") || strstr(text, KEY_ID))
		fail_over_log("audit log", text);
	free(text);
	free(audit);
	free(policy);
	free(conf);
	free(conf_enc);
	free(conf_other);
	free(inst);
	free(inst_other);
	free(out_raw);
	free(out_enc);
}

/* ---- LVs that are not vmdisk's (issue 14 item 8) ---- */

/* What lvcreate --addtag gives every LV vmdisk makes (privhelper.h). */
#define OUR_TAG "vmdisk"
#define HOST_UNTAGGED INST "_host" /* named like a disk, made by hand */
#define HOST_TAGGED "hostdata"     /* tagged, not named like a disk */

static bool lv_tagged(const char *name)
{
	char *out = NULL;
	char target[256];
	bool tagged;

	snprintf(target, sizeof(target), VG "/%s", name);
	assert_int_equal(th_run((const char *[]){"lvs", "--noheadings", "-o",
	                                         "lv_tags", target, NULL},
	                        NULL, &out, NULL),
	                 0);
	tagged = strstr(out, OUR_TAG) != NULL;
	free(out);
	return tagged;
}

/* A host LV of 8 MiB, its first MiB 0x5a, made with plain lvcreate. */
static void host_lv(const char *name, bool tagged)
{
	unsigned char b[65536];
	char path[256];

	if (tagged)
		run_ok((const char *[]){"lvcreate", "-q", "-y", "-L", "8m",
		                        "--addtag", OUR_TAG, "-n", name, VG,
		                        NULL});
	else
		run_ok((const char *[]){"lvcreate", "-q", "-y", "-L", "8m",
		                        "-n", name, VG, NULL});
	snprintf(path, sizeof(path), "/dev/" VG "/%s", name);
	memset(b, 0x5a, sizeof(b));
	for (int i = 0; i < 16; i++)
		th_pwrite_at(path, b, sizeof(b), (uint64_t)i * sizeof(b));
}

/* The host LV is there, 8 MiB, with its data, and nothing maps it. */
static void host_lv_intact(const char *name)
{
	unsigned char b[65536];
	char path[256], mapper[256];
	int fd;

	snprintf(path, sizeof(path), "/dev/" VG "/%s", name);
	snprintf(mapper, sizeof(mapper), "/dev/mapper/%s-dmcrypt", name);
	if (!lv_listed(name))
		fail_msg("%s was removed", name);
	assert_int_equal(dev_size(path), 8 * MIB);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(pread(fd, b, sizeof(b), (off_t)i * sizeof(b)),
		                 (ssize_t)sizeof(b));
		for (size_t k = 0; k < sizeof(b); k++)
			if (b[k] != 0x5a)
				fail_msg("%s was written at %zu", name,
				         (size_t)i * sizeof(b) + k);
	}
	close(fd);
	assert_false(th_exists(mapper));
}

/* Every op that names a volume, asked for `lv` by `call` (in-process or
 * through vmdiskd): refused with `why`; lvm_create fails (the name is
 * taken, or not a disk's). */
static void expect_every_op_refused(struct fixture *f, const char *lv,
                                    const char *why, bool daemon)
{
	for (int op = 0; op < VMD_PRIV_OP_COUNT; op++) {
		struct vmd_priv_request req = {.op = (enum vmd_priv_op)op};
		struct vmd_priv_reply rep;
		struct vmd_error err = VMD_ERROR_INIT;
		int rc;

		if (!(vmd_priv_fields_required(req.op) & VMD_PF_LV))
			continue;
		req.fields = vmd_priv_fields_required(req.op);
		snprintf(req.vg, sizeof(req.vg), VG);
		snprintf(req.lv, sizeof(req.lv), "%s", lv);
		snprintf(req.key_id, sizeof(req.key_id), "%s", KEY_ID);
		snprintf(req.fs, sizeof(req.fs), "ext4");
		req.size = 16 * MIB;
		/* lvm_write_image with no base: zero the whole volume. */
		rc = daemon ? vmd_priv_call(&f->cfg, &req, &rep, &err)
		            : vmd_priv_run(&f->cfg, &req, &rep, &err);
		if (req.op == VMD_PRIV_LVM_CREATE ? rc == 0
		                                  : rc != VMD_E_REFUSED ||
		                                            strcmp(err.msg, why))
			fail_msg("%s %s on %s: %d '%s' (%s)",
			         daemon ? "vmdiskd" : "in-process",
			         vmd_priv_op_name(req.op), lv, rc, err.msg,
			         err.detail);
		host_lv_intact(lv);
	}
}

/* vmdiskd as root with uid 0 granted every op, on the fixture's config
 * written out; the socket in f->cfg. */
static pid_t start_vmdiskd(struct fixture *f)
{
	const char *build = getenv("VMDISK_BUILD_DIR");
	char daemon[PATH_MAX], text[4096];
	char *conf = th_path(f->dir, "vmdiskd.conf");
	char *policy = th_path(f->dir, "policy");
	pid_t pid;

	assert_non_null(build);
	snprintf(daemon, sizeof(daemon), "%s/tools/vmdiskd", build);
	snprintf(text, sizeof(text),
	         "[vmdisk]\ninstances_path = %s\nimages_type = lvm\n"
	         "images_volume_group = " VG "\n"
	         "vmdiskd_socket = %s/vmdiskd.sock\n"
	         "vmdiskd_policy_file = %s\n"
	         "vmdiskd_audit_log = %s/audit.log\n"
	         "key_manager = file\nkey_file_dir = %s/keys\n"
	         "log_target = stderr\n",
	         f->cfg.instances_path, f->dir, policy, f->dir, f->dir);
	th_write_text(conf, text);
	th_write_text(policy, "[allow]\nuid.0 = all, luks_format, luks_open, "
	                      "luks_close\n");
	assert_int_equal(chmod(policy, 0600), 0);
	snprintf(f->cfg.vmdiskd_socket, sizeof(f->cfg.vmdiskd_socket),
	         "%s/vmdiskd.sock", f->dir);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/tmp/vmdiskd-ours.log",
		              O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(fd, 1);
		dup2(fd, 2);
		execl(daemon, daemon, "--config", conf, "-v", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !th_exists(f->cfg.vmdiskd_socket); i++)
		usleep(50000);
	assert_true(th_exists(f->cfg.vmdiskd_socket));
	free(conf);
	free(policy);
	return pid;
}

static void stop_vmdiskd(pid_t pid)
{
	int st = 0;

	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("vmdiskd ended with status %#x: %s", st,
		         th_read_text("/tmp/vmdiskd-ours.log"));
}

/*
 * Host LVs sharing the VG: one named like a disk but made without the
 * tag, one tagged but not named like a disk. Neither is read, written,
 * resized, formatted, mapped or removed, whether the request comes
 * in-process (root), through vmdiskd or through the lvm backend; a disk
 * vmdisk made works beside them, and an LV tagged afterwards
 * (`lvchange --addtag`, the README's way for LVs made before the tag) is
 * served.
 */
static void test_only_our_lvs_served(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_disk_ref ref = {.instance = INST, .disk = "host"};
	struct vmd_priv_request req = {.op = VMD_PRIV_LVM_INFO,
	                               .fields = VMD_PF_VG | VMD_PF_LV,
	                               .vg = VG};
	struct vmd_priv_reply rep;
	struct vmd_xml_source xs;
	const struct vmd_backend_ops *ops = &vmd_backend_lvm;
	char *extract;
	bool exists = true;
	pid_t pid;

	NEED_VM();
	use_key_file(f, 0600);
	f->cfg.ephemeral_storage_encryption_enabled = false;
	th_ctx_renew(&f->ctx, &f->cfg);
	host_lv(HOST_UNTAGGED, false);
	host_lv(HOST_TAGGED, true);

	expect_every_op_refused(f, HOST_UNTAGGED,
	                        "lvm: volume not tagged " OUR_TAG, false);
	expect_every_op_refused(f, HOST_TAGGED, "lvm: volume not served here",
	                        false);

	/* The lvm backend's own calls for instance INST, disk "host". */
	extract = th_path(f->dir, "host.raw");
	assert_int_equal(ops->info(f->ctx, &ref, &info, &err), VMD_E_REFUSED);
	assert_int_equal(ops->exists(f->ctx, &ref, &exists, &err),
	                 VMD_E_REFUSED);
	assert_int_equal(ops->resize(f->ctx, &ref, 16 * MIB, &err),
	                 VMD_E_REFUSED);
	assert_int_equal(ops->xml_source(f->ctx, &ref, &xs, &err),
	                 VMD_E_REFUSED);
	assert_int_equal(ops->snapshot_extract(f->ctx, &ref, extract,
	                                       VMD_FORMAT_RAW, &err),
	                 VMD_E_REFUSED);
	assert_false(th_exists(extract));
	assert_int_equal(ops->remove(f->ctx, &ref, &err), VMD_E_REFUSED);
	/* lvcreate itself refuses the name it finds taken. */
	vmd_error_clear(&err);
	assert_errc(ops->create_blank(f->ctx, &ref, 8 * MIB, &err), &err,
	            VMD_E_EXTERNAL);
	host_lv_intact(HOST_UNTAGGED);

	/* A disk vmdisk makes carries the tag. */
	create_ok(f, "mine", f->base_raw, VMD_FS_NONE, 8 * MIB, &info);
	assert_true(lv_tagged(INST "_mine"));

	/* Through vmdiskd: the same answers. */
	pid = start_vmdiskd(f);
	expect_every_op_refused(f, HOST_UNTAGGED,
	                        "lvm: volume not tagged " OUR_TAG, true);
	expect_every_op_refused(f, HOST_TAGGED, "lvm: volume not served here",
	                        true);
	/* vmdisk's own volume is served. */
	snprintf(req.lv, sizeof(req.lv), INST "_mine");
	if (vmd_priv_call(&f->cfg, &req, &rep, &err) != 0)
		fail_msg("vmdiskd lvm_info on our LV: %s (%s)", err.msg,
		         err.detail);
	assert_string_equal(rep.path, "/dev/" VG "/" INST "_mine");
	stop_vmdiskd(pid);
	if (vmd_disk_info(f->ctx, INST, "mine", &info, &err) != 0)
		fail_msg("info mine: %s (%s)", err.msg, err.detail);
	assert_reads_back(info.path, f->base_raw, 8 * MIB);
	remove_ok(f, "mine");
	assert_false(lv_listed(INST "_mine"));

	/* Tagged by the operator: served from then on. */
	run_ok((const char *[]){"lvchange", "-q", "--addtag", OUR_TAG,
	                        VG "/" HOST_UNTAGGED, NULL});
	vmd_error_clear(&err);
	if (ops->info(f->ctx, &ref, &info, &err) != 0)
		fail_msg("info after lvchange --addtag: %s (%s)", err.msg,
		         err.detail);
	assert_string_equal(info.path, "/dev/" VG "/" HOST_UNTAGGED);
	if (ops->remove(f->ctx, &ref, &err) != 0)
		fail_msg("remove after lvchange --addtag: %s (%s)", err.msg,
		         err.detail);
	assert_false(lv_listed(HOST_UNTAGGED));
	run_ok((const char *[]){"lvremove", "-q", "-f", VG "/" HOST_TAGGED,
	                        NULL});
	free(extract);
}

/* ---- keys from a real Barbican ---- */

/*
 * tests/suite/barbican/run.sh boots this VM with its Barbican reachable from the
 * guest (qemu's user network: 10.0.2.2 is the host's loopback) and names,
 * in the environment, a stored secret (VMDISK_VM_KEY_GOOD, whose bytes are
 * VMDISK_VM_PLANTED), one whose ciphertext it damaged so that Barbican
 * answers 500 (VMDISK_VM_KEY_BROKEN) and the token. Only these cases run
 * then (see main).
 */
static void use_barbican(struct fixture *f)
{
	char *token = th_path(f->dir, "token");
	char text[256];

	snprintf(text, sizeof(text), "%s\n", getenv("VMDISK_VM_BARBICAN_TOKEN"));
	th_write_text(token, text);
	assert_int_equal(chmod(token, 0600), 0);
	f->cfg.ephemeral_storage_encryption_enabled = true;
	snprintf(f->cfg.key_manager, sizeof(f->cfg.key_manager), "barbican");
	snprintf(f->cfg.barbican_endpoint, sizeof(f->cfg.barbican_endpoint),
	         "%s", getenv("VMDISK_VM_BARBICAN"));
	snprintf(f->cfg.barbican_token_file,
	         sizeof(f->cfg.barbican_token_file), "%s", token);
	snprintf(f->cfg.barbican_project_id,
	         sizeof(f->cfg.barbican_project_id), "%s",
	         getenv("VMDISK_VM_BARBICAN_PROJECT"));
	th_ctx_renew(&f->ctx, &f->cfg);
	th_log_capture_start();
	free(token);
}

/* A key retrieval failure leaves no LV and names neither key nor id. */
static void expect_key_failure(struct fixture *f, const char *key_id,
                               const char *what)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = f->base_raw, .key_id = key_id};
	const char *planted = getenv("VMDISK_VM_PLANTED");

	if (vmd_disk_create(f->ctx, INST, "bk", &o, NULL, &err) == 0)
		fail_msg("%s: create succeeded", what);
	assert_false(lv_listed(INST "_bk"));
	assert_false(th_exists("/dev/mapper/" INST "_bk-dmcrypt"));
	if (strstr(err.msg, key_id) || strstr(err.detail, key_id) ||
	    strstr(err.msg, planted) || strstr(err.detail, planted))
		fail_msg("%s: the error names the key: %s (%s)", what, err.msg,
		         err.detail);
	if (!strstr(err.msg, "barbican"))
		fail_msg("%s: the error does not name the step: %s", what,
		         err.msg);
}

static void test_barbican_key_cases(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	const char *good = getenv("VMDISK_VM_KEY_GOOD");
	const char *broken = getenv("VMDISK_VM_KEY_BROKEN");
	const char *planted = getenv("VMDISK_VM_PLANTED");
	const char *unknown = "7d9c1b2a-5e4f-4a3b-9c8d-0e1f2a3b4c5d";
	const char *log;
	struct vmd_create_opts o = {.image = f->base_raw, .key_id = good};

	NEED_VM();
	assert_non_null(good);
	assert_non_null(broken);
	assert_non_null(planted);
	use_barbican(f);
	/* The stored secret: the disk is made and reads back the base. */
	if (vmd_disk_create(f->ctx, INST, "bk", &o, &info, &err) != 0)
		fail_msg("create with a Barbican key: %s (%s)", err.msg,
		         err.detail);
	assert_string_equal(info.path, "/dev/mapper/" INST "_bk-dmcrypt");
	assert_reads_back(info.path, f->base_raw, 5 * MIB);
	assert_false(plaintext_on("/dev/" VG "/" INST "_bk"));
	remove_ok(f, "bk");
	/* 404 and 500: nothing made. */
	expect_key_failure(f, unknown, "unknown secret (404)");
	expect_key_failure(f, broken, "damaged secret (500)");
	log = th_log_text();
	if (!strstr(log, "404") || !strstr(log, "500"))
		fail_over_log("the log does not show both answers", log);
	/* The whole log: no key bytes, no key id. */
	if (strstr(log, planted) || strstr(log, good) ||
	    strstr(log, unknown) || strstr(log, broken))
		fail_over_log("the log names a key or key id", log);
	th_log_capture_stop();
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_thick_from_raw_base),
		T(test_from_qcow2_base_and_name_escaping),
		T(test_sparse_thin),
		T(test_blank_filesystems),
		T(test_resize),
		T(test_remove_clears_extents),
		T(test_remove_request_cannot_weaken_clear),
		T(test_failure_after_create_leaves_no_lv),
		T(test_xml_and_extract),
		T(test_encrypted_volume),
		T(test_key_failures_make_nothing),
		T(test_failure_after_luks_open),
		T(test_mkfs_request_and_served_volumes),
		T(test_foreign_mapping_is_not_the_volume),
		T(test_write_image_base_checks),
		T(test_unprivileged_through_vmdiskd),
		T(test_only_our_lvs_served),
	};
	const struct CMUnitTest barbican[] = {
		T(test_barbican_key_cases),
	};

	/* tests/suite/vm/run.sh passes VMDISK_VM_FILTER (a cmocka glob of test
	 * names) to run only some cases: TCG is slow. */
	if (getenv("VMDISK_VM_FILTER"))
		cmocka_set_test_filter(getenv("VMDISK_VM_FILTER"));
	if (getenv("VMDISK_VM_BARBICAN"))
		return cmocka_run_group_tests(barbican, group_setup,
		                              group_teardown);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
