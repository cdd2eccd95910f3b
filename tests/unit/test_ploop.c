/*
 * The ploop backend, judged by qemu-img (which reads Parallels images
 * independently of us), xmllint and virt-xml-validate: disks from raw and
 * qcow2 bases and blank ones, resize across a BAT growth, snapshot extract,
 * a failure before publish leaving nothing, and corrupt images refused.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "cleanup.h"
#include "helpers.h"
#include "mover.h"
#include "parallels.h"
#include "vmd_build_config.h"
#include <vmdisk/vmdisk.h>

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define MIB (1ull << 20)

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *base_raw;
	char *base_qcow2;
};

static int setup(void **state)
{
	struct fixture *f;

	th_require_qemu_img();
	f = TH_FIXTURE_NEW(struct fixture, "ploop");
	f->base_raw = th_fixture_path(&f->th, "base.raw");
	f->base_qcow2 = th_fixture_path(&f->th, "base.qcow2");
	/* Data in clusters 0, 2 and the last, a zero-filled cluster, holes. */
	th_write_pattern(f->base_raw, 1536 * 1024, 11);
	{
		unsigned char *zeros = calloc(1, MIB);
		unsigned char *data = malloc(MIB);

		memset(data, 0x5a, MIB);
		th_pwrite_at(f->base_raw, data, MIB, 2 * MIB);
		th_pwrite_at(f->base_raw, zeros, MIB, 4 * MIB);
		th_pwrite_at(f->base_raw, data, 4096, 12 * MIB - 4096);
		free(zeros);
		free(data);
	}
	assert_int_equal(th_run((const char *[]){"qemu-img", "convert", "-q",
	                                         "-c", "-f", "raw", "-O",
	                                         "qcow2", f->base_raw,
	                                         f->base_qcow2, NULL},
	                        NULL, NULL, NULL),
	                 0);
	f->cfg.images_type = VMD_BACKEND_PLOOP;
	f->cfg.force_raw_images = false;
	th_ctx_renew(&f->ctx, &f->cfg);
	*state = f;
	return 0;
}


static void create_ok(struct fixture *f, const char *disk, const char *image,
                      uint64_t size, struct vmd_disk_info *info)
{
	struct vmd_create_opts o = {.image = image, .size = size};

	th_create_ok(f->ctx, INST, disk, &o, info);
	assert_string_equal(info->backend, "ploop");
	assert_string_equal(info->format, "ploop");
}

/* `qemu-img check -f parallels` finds nothing wrong. */
static void assert_parallels_clean(const char *hds)
{
	char *out = NULL, *errs = NULL;
	int rc = th_run((const char *[]){"qemu-img", "check", "-f",
	                                 "parallels", hds, NULL},
	                NULL, &out, &errs);

	if (rc != 0 || !strstr(out, "No errors were found"))
		fail_msg("qemu-img check %s: %d\n%s%s", hds, rc, out, errs);
	free(out);
	free(errs);
}

static char *qemu_info(const char *path)
{
	char *out = NULL;

	assert_int_equal(th_run((const char *[]){"qemu-img", "info",
	                                         "--output=json", path, NULL},
	                        NULL, &out, NULL),
	                 0);
	return out;
}

/* The descriptor is well-formed and its sizes, in sectors, are `size`. */
static void assert_descriptor(const char *dir, uint64_t size,
                              const char *type)
{
	char *xml = th_path(dir, "DiskDescriptor.xml");
	char *text, want[128];
	unsigned long long cyl, heads, spt;

	assert_int_equal(th_run((const char *[]){"xmllint", "--noout", xml,
	                                         NULL},
	                        NULL, NULL, NULL),
	                 0);
	text = th_read_text(xml);
	snprintf(want, sizeof(want), "<Disk_size>%llu</Disk_size>",
	         (unsigned long long)(size / 512));
	assert_contains(text, want);
	snprintf(want, sizeof(want), "<End>%llu</End>",
	         (unsigned long long)(size / 512));
	assert_contains(text, want);
	snprintf(want, sizeof(want), "<Type>%s</Type>", type);
	assert_contains(text, want);
	assert_contains(text, "<File>root.hds</File>");
	assert_contains(text, "<Blocksize>2048</Blocksize>");
	/* The spec's rule: cylinders x heads x sectors = disk size. */
	assert_int_equal(sscanf(strstr(text, "<Cylinders>"),
	                        "<Cylinders>%llu</Cylinders>", &cyl),
	                 1);
	assert_int_equal(sscanf(strstr(text, "<Heads>"), "<Heads>%llu</Heads>",
	                        &heads),
	                 1);
	assert_int_equal(sscanf(strstr(text, "<Sectors>"),
	                        "<Sectors>%llu</Sectors>", &spt),
	                 1);
	assert_int_equal(cyl * heads * spt, size / 512);
	free(text);
	free(xml);
}

/* A qcow2 base: an expanded Parallels image, holes kept. */
static void test_from_qcow2_base_expanded(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	char *dir = th_disk_path(f->cfg.instances_path, INST, "disk"), *json;
	struct stat st;

	create_ok(f, "disk", f->base_qcow2, 20 * MIB, &info);
	assert_int_equal(info.virtual_size, 20 * MIB);
	assert_parallels_clean(info.path);
	json = qemu_info(info.path);
	assert_contains(json, "\"format\": \"parallels\"");
	assert_contains(json, "\"virtual-size\": 20971520");
	free(json);
	th_assert_images_identical(f->base_raw, "raw", info.path, "parallels",
	                           0);
	/* Data in 4 clusters of 1 MiB (0, 1, 2, 11); the zero cluster and the
	 * holes take nothing, the header one cluster. */
	assert_int_equal(stat(info.path, &st), 0);
	assert_int_equal((uint64_t)st.st_size, 5 * MIB);
	assert_descriptor(dir, 20 * MIB, "Compressed");
	free(dir);
}

/* A raw base: root.hds is plain raw, a copy of the base. */
static void test_from_raw_base_plain(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	char *dir = th_disk_path(f->cfg.instances_path, INST, "disk");

	create_ok(f, "disk", f->base_raw, 16 * MIB, &info);
	assert_int_equal(th_file_size(info.path), 16 * MIB);
	th_assert_images_identical(f->base_raw, "raw", info.path, "raw", 0);
	assert_descriptor(dir, 16 * MIB, "Plain");
	free(dir);
}

static void test_blank(void **state)
{
	struct fixture *f = *state;
	struct vmd_disk_info info;
	char *dir = th_disk_path(f->cfg.instances_path, INST, "eph");
	char *json;

	create_ok(f, "eph", NULL, 64 * MIB, &info);
	assert_parallels_clean(info.path);
	json = qemu_info(info.path);
	assert_contains(json, "\"virtual-size\": 67108864");
	free(json);
	/* QEMU's own empty image of that size has the same length. */
	assert_int_equal(th_file_size(info.path), MIB);
	assert_descriptor(dir, 64 * MIB, "Compressed");
	free(dir);
}

/* 300 GiB needs more BAT than the first cluster holds (256 GiB): data
 * clusters move out of the BAT's way, and nothing is lost. */
static void test_resize_across_bat_growth(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *dir = th_disk_path(f->cfg.instances_path, INST, "disk"), *json;
	const uint64_t big = 300ull << 30;

	create_ok(f, "disk", f->base_qcow2, 20 * MIB, &info);
	assert_int_equal(vmd_disk_resize(f->ctx, INST, "disk", 10 * MIB, &err),
	                 VMD_E_TOOSMALL);
	assert_int_equal(vmd_disk_resize(f->ctx, INST, "disk", 100 * MIB, &err),
	                 0);
	assert_parallels_clean(info.path);
	assert_int_equal(vmd_disk_resize(f->ctx, INST, "disk", big, &err), 0);
	assert_parallels_clean(info.path);
	json = qemu_info(info.path);
	assert_contains(json, "\"virtual-size\": 322122547200");
	free(json);
	th_assert_images_identical(f->base_raw, "raw", info.path, "parallels",
	                           0);
	assert_int_equal(vmd_disk_info(f->ctx, INST, "disk", &info, &err), 0);
	assert_int_equal(info.virtual_size, big);
	assert_descriptor(dir, big, "Compressed");

	/* The plain variant grows as a file. */
	create_ok(f, "plain", f->base_raw, 16 * MIB, &info);
	assert_int_equal(vmd_disk_resize(f->ctx, INST, "plain", 1ull << 30,
	                                 &err),
	                 0);
	assert_int_equal(th_file_size(info.path), 1ull << 30);
	th_assert_images_identical(f->base_raw, "raw", info.path, "raw", 0);
	free(dir);
	dir = th_disk_path(f->cfg.instances_path, INST, "plain");
	assert_descriptor(dir, 1ull << 30, "Plain");
	free(dir);
}

static void test_snapshot_extract(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *raw = th_path(f->dir, "out.raw");
	char *q = th_path(f->dir, "out.qcow2");

	create_ok(f, "disk", f->base_qcow2, 0, &info);
	assert_int_equal(vmd_disk_snapshot_extract(f->ctx, INST, "disk", raw,
	                                           VMD_FORMAT_RAW, &err),
	                 0);
	assert_int_equal(vmd_disk_snapshot_extract(f->ctx, INST, "disk", q,
	                                           VMD_FORMAT_QCOW2, &err),
	                 0);
	th_assert_images_identical(f->base_raw, "raw", raw, "raw", 1);
	th_assert_images_identical(f->base_raw, "raw", q, "qcow2", 1);
	th_assert_qcow2_check_clean(q);
	free(raw);
	free(q);
}

static void test_remove_and_xml(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *dir = th_disk_path(f->cfg.instances_path, INST, "disk");
	char *xml = NULL;

	create_ok(f, "disk", f->base_qcow2, 0, &info);
	assert_int_equal(vmd_disk_libvirt_xml(f->ctx, INST, "disk",
	                                      &(struct vmd_xml_opts){.dev = "vda"},
	                                      &xml, &err),
	                 0);
	assert_contains(xml, "type='ploop'");
	assert_contains(xml, "/disk/root.hds'");
	free(xml);
	assert_int_equal(vmd_disk_libvirt_xml(
				 f->ctx, INST, "disk",
				 &(struct vmd_xml_opts){.filesystem_target = "/"},
				 &xml, &err),
	                 0);
	assert_contains(xml, "<driver type='ploop' format='ploop'/>");
	free(xml);
	assert_int_equal(vmd_disk_remove(f->ctx, INST, "disk", &err), 0);
	assert_false(th_exists(dir));
	free(dir);
	dir = th_path(f->cfg.instances_path, INST);
	assert_false(th_exists(dir));
	free(dir);
}

/* A failure after both files are written, just before the directory gets
 * its name: nothing of the disk is left, not even the temporary. */
static void test_failure_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_create_opts o = {.image = f->base_qcow2};
	char *idir = th_path(f->cfg.instances_path, INST);

	if (!VMD_FAULT_INJECTION) {
		skip();
		return;
	}
	create_ok(f, "other", f->base_raw, 0, &info);
	setenv("VMDISK_FAULT", "ploop.before_publish:fail", 1);
	assert_errc(vmd_disk_create(f->ctx, INST, "disk", &o, NULL, &err),
	            &err, VMD_E_IO);
	unsetenv("VMDISK_FAULT");
	/* The record, and the other disk. */
	assert_int_equal(th_count_entries(idir), 2);
	assert_int_equal(vmd_disk_info(f->ctx, INST, "disk", &info, &err),
	                 VMD_E_NOTFOUND);
	/* And the next try succeeds. */
	create_ok(f, "disk", f->base_qcow2, 0, &info);
	assert_parallels_clean(info.path);
	free(idir);
}

static int count_temporaries(const char *idir)
{
	DIR *d = opendir(idir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, ".disk.", 6) == 0)
			n++;
	closedir(d);
	return n;
}

/* A create killed just before the rename leaves its temporary directory,
 * never the disk; the next create of that disk sweeps it away. */
static void test_killed_create_swept(void **state)
{
	struct fixture *f = *state;
	char *conf;
	char *idir = th_path(f->cfg.instances_path, INST);
	char *dir = th_disk_path(f->cfg.instances_path, INST, "disk");
	struct vmd_disk_info info;
	int rc;

	if (!VMD_FAULT_INJECTION) {
		skip();
		return;
	}
	conf = th_fixture_write_config(&f->th, "force_raw_images = false\n");
	create_ok(f, "other", f->base_raw, 0, &info);
	rc = th_cli_run(
	        conf,
	        (const char *[]){"VMDISK_FAULT=ploop.before_publish:kill",
	                         NULL},
	        NULL, NULL,
	        (const char *[]){"create", INST, "disk", "--image",
	                         f->base_qcow2, "--backend", "ploop", NULL});
	assert_int_equal(rc, 128 + 9);
	assert_false(th_exists(dir));
	assert_int_equal(count_temporaries(idir), 1);
	create_ok(f, "disk", f->base_qcow2, 0, &info);
	assert_parallels_clean(info.path);
	assert_int_equal(count_temporaries(idir), 0);
	free(dir);
	free(idir);
}

/* Our reader refuses what does not hold together, before reading data. */
static void test_corrupt_images_refused(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	struct vmd_blockdev *bd = NULL;
	char *copy = th_path(f->dir, "bad.hds");
	static const struct {
		size_t off;
		unsigned char bytes[4];
		enum vmd_errc code;
	} patches[] = {
		/* BAT entry past EOF */
		{64, {0xff, 0xff, 0x00, 0x00}, VMD_E_CORRUPT},
		/* (kept: a hole is fine) */
		{64, {0x00, 0x00, 0x00, 0x00}, VMD_OK},
		/* data_off inside the BAT */
		{48, {0x01, 0x00, 0x00, 0x00}, VMD_E_CORRUPT},
		/* BAT smaller than the disk */
		{32, {0x01, 0x00, 0x00, 0x00}, VMD_E_REFUSED},
		/* cluster not a power of 2 */
		{28, {0x03, 0x00, 0x00, 0x00}, VMD_E_UNSUPPORTED},
		/* version 1 */
		{16, {0x01, 0x00, 0x00, 0x00}, VMD_E_UNSUPPORTED},
	};

	create_ok(f, "disk", f->base_qcow2, 0, &info);
	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		const char *cp[] = {"cp", info.path, copy, NULL};
		int rc;

		unlink(copy);
		assert_int_equal(th_run(cp, NULL, NULL, NULL), 0);
		th_pwrite_at(copy, patches[i].bytes, 4, patches[i].off);
		vmd_error_clear(&err);
		rc = vmd_blockdev_open(copy, VMD_FORMAT_PLOOP, 0, NULL, &bd,
		                       &err);
		if (i == 1) {
			assert_int_equal(rc, 0);
			vmd_blockdev_close(bd);
			bd = NULL;
			continue;
		}
		assert_errc(rc, &err, patches[i].code);
		assert_null(bd);
		assert_true(strncmp(err.msg, "ploop: ", 7) == 0);
	}
	/* A truncated file. */
	assert_int_equal(truncate(copy, 40), 0);
	vmd_error_clear(&err);
	assert_errc(vmd_blockdev_open(copy, VMD_FORMAT_PLOOP, 0, NULL, &bd,
	                              &err),
	            &err, VMD_E_CORRUPT);
	free(copy);
}

/* The CLI with --backend ploop. */
static void test_cli(void **state)
{
	struct fixture *f = *state;
	char *conf;
	char *out = NULL;

	conf = th_fixture_write_config(&f->th, "force_raw_images = false\n");
	assert_int_equal(
	        th_cli_run(conf, NULL, &out, NULL,
	                   (const char *[]){"--json", "create", INST, "root",
	                                    "--image", f->base_qcow2, "--size",
	                                    "32M", "--backend", "ploop", NULL}),
	        0);
	assert_contains(out, "\"backend\":\"ploop\"");
	assert_contains(out, "root.hds");
	free(out);
	assert_int_equal(th_cli_run(conf, NULL, NULL, NULL,
	                            (const char *[]){"resize", INST, "root",
	                                             "64M", NULL}),
	                 0);
	char *hds = th_disk_path(f->cfg.instances_path, INST, "root/root.hds");

	assert_parallels_clean(hds);
	free(hds);
}

/* The first size bytes of path. */
static unsigned char *read_whole(const char *path, uint64_t size)
{
	unsigned char *b = malloc(size);
	FILE *fp = fopen(path, "rb");

	assert_non_null(b);
	assert_non_null(fp);
	assert_int_equal(fread(b, 1, size, fp), size);
	fclose(fp);
	return b;
}

/*
 * The fill through the data mover, for cluster sizes the format takes
 * (4 KiB to 4 MiB: smaller than the mover's 64 KiB zero blocks, equal,
 * and bigger than its 1 MiB chunks, so one cluster gets pieces from
 * several workers), from a base whose data is nowhere cluster aligned:
 * single bytes, runs across a chunk boundary, a zero 64 KiB block inside
 * a data cluster, written zeroes (alone, and around one byte), the
 * disk's last bytes. qemu-img reads
 * the same bytes and finds the image clean, and exactly the clusters
 * holding a non-zero byte are allocated (the file is the header area
 * plus them).
 */
static void test_fill_cluster_sizes(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 9 * MIB + 1536;
	const uint32_t clusters[] = {4096, 65536, 1u << 20, 2u << 20, 4u << 20};
	char *base = th_fixture_path(&f->th, "unaligned.raw");
	unsigned char *data = malloc(3 * MIB), *zeros = calloc(1, MIB), *img;
	unsigned char one = 1;

	assert_non_null(data);
	assert_non_null(zeros);
	memset(data, 0xa7, 3 * MIB);
	th_pwrite_at(base, &one, 1, 4097);
	th_pwrite_at(base, data, 100, MIB - 50);
	th_pwrite_at(base, data, MIB + 70000 - 12345, 2 * MIB + 12345);
	th_pwrite_at(base, zeros, 65536, 2 * MIB + 512 * 1024);
	th_pwrite_at(base, zeros, MIB, 5 * MIB);
	/* Written zeroes around one byte: the source calls it all data, the
	 * mover hands the block whole, small clusters in it stay zero. */
	zeros[40000] = 0x33;
	th_pwrite_at(base, zeros, 100000, 6 * MIB + 8192);
	zeros[40000] = 0;
	th_pwrite_at(base, data, 7, size - 7);
	img = read_whole(base, size);
	for (size_t i = 0; i < ELEMENTSOF(clusters); i++) {
		uint32_t c = clusters[i];
		char name[32];
		char *hds;
		struct vmd_inspect_limits lim;
		struct vmd_parallels *p = NULL;
		struct vmd_move_bd_src bs = {.path = base,
		                             .format = VMD_FORMAT_RAW};
		struct vmd_move_src src;
		struct vmd_error err = VMD_ERROR_INIT;
		struct stat st;
		uint64_t nbat = (size + c - 1) / c, used = 0, area;
		int fd;

		snprintf(name, sizeof(name), "fill-%u.hds", c);
		hds = th_fixture_path(&f->th, name);
		fd = open(hds, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		assert_true(fd >= 0);
		vmd_inspect_limits_default(&lim);
		assert_int_equal(vmd_parallels_create(fd, size, c, &err), 0);
		assert_int_equal(vmd_parallels_open(fd, true, &lim, &p, &err), 0);
		assert_int_equal(vmd_move_src_blockdev(&bs, &src, &err), 0);
		assert_int_equal(vmd_parallels_fill(p, &src, &err), 0);
		vmd_parallels_close(p);
		assert_int_equal(fstat(fd, &st), 0);
		close(fd);
		assert_parallels_clean(hds);
		th_assert_images_identical(base, "raw", hds, "parallels", 1);
		for (uint64_t k = 0; k < nbat; k++) {
			uint64_t n = size - k * c < c ? size - k * c : c;

			for (uint64_t b = 0; b < n; b++)
				if (img[k * c + b]) {
					used++;
					break;
				}
		}
		area = (64 + 4 * nbat + c - 1) / c * c;
		if ((uint64_t)st.st_size != area + used * c)
			fail_msg("cluster %u: file of %llu bytes, want %llu "
			         "(%llu data clusters)",
			         c, (unsigned long long)st.st_size,
			         (unsigned long long)(area + used * c),
			         (unsigned long long)used);
	}
	free(img);
	free(data);
	free(zeros);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_from_qcow2_base_expanded),
		T(test_from_raw_base_plain),
		T(test_blank),
		T(test_resize_across_bat_growth),
		T(test_snapshot_extract),
		T(test_remove_and_xml),
		T(test_failure_leaves_nothing),
		T(test_corrupt_images_refused),
		T(test_killed_create_swept),
		T(test_cli),
		T(test_fill_cluster_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
