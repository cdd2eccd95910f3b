/*
 * Tests of the inspector core and its qcow2 checks (lib/inspect.c,
 * lib/inspect_qcow2.c), and of the gate in front of the cache: images made
 * by qemu-img, hostile ones made by qemu-img options or by patching header
 * bytes, each refused with its named check and leaving nothing behind.
 */
#include <dirent.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "helpers.h"
#include "inspect.h" /* vmd_inspect_sparse */
#include "record.h"
#include <vmdisk/inspect.h>
#include <vmdisk/vmdisk.h>

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *img;
	char *conf;
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "inspect");

	f->img = th_fixture_path(&f->th, "img");
	f->conf = th_fixture_write_config(&f->th, "force_raw_images = false\n");
	*state = f;
	return 0;
}

static void inspect(const char *path, unsigned flags,
                    struct vmd_inspect_result *r)
{
	assert_int_equal(th_inspect_path(path, NULL, flags, r), 0);
}

static void test_qemu_made_qcow2_is_safe(void **state)
{
	struct fixture *f = *state;
	const char *compat[] = {"0.10", "1.1"};
	struct vmd_inspect_result r;

	th_require_qemu_img();
	for (int i = 0; i < 2; i++) {
		char opt[32];

		snprintf(opt, sizeof(opt), "compat=%s", compat[i]);
		th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f",
		                           "qcow2", "-o", opt, f->img, "3G",
		                           NULL},
		          false);
		inspect(f->img, 0, &r);
		assert_true(r.safe);
		assert_int_equal(r.format, VMD_IMG_QCOW2);
		assert_int_equal(r.version, i == 0 ? 2 : 3);
		assert_int_equal(r.virtual_size, th_qemu_img_virtual_size(f->img, "qcow2"));
		assert_int_equal(r.cluster_size, 65536);
	}
	/* Small clusters, compressed and zstd images too. */
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-o",
	                           "cluster_size=512,compression_type=zstd",
	                           f->img, "100M", NULL},
	          false);
	inspect(f->img, 0, &r);
	assert_true(r.safe);
	assert_int_equal(r.cluster_size, 512);
	assert_int_equal(r.virtual_size, 100 << 20);
}

static void test_raw_is_raw(void **state)
{
	struct fixture *f = *state;
	struct vmd_inspect_result r;

	th_write_pattern(f->img, 1 << 20, 3);
	inspect(f->img, 0, &r);
	assert_true(r.safe);
	assert_int_equal(r.format, VMD_IMG_RAW);
	assert_int_equal(r.virtual_size, 1 << 20);
	assert_true(vmd_image_format_is_raw(r.format));
}

static void test_backing_file_refused_unless_allowed(void **state)
{
	struct fixture *f = *state;
	struct vmd_inspect_result r;

	th_require_qemu_img();
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-b", "/etc/passwd", "-F", "raw", "-u",
	                           f->img, "1M", NULL},
	          false);
	th_assert_refused_with(f->img, "qcow2-backing-file");
	inspect(f->img, VMD_INSPECT_ALLOW_BACKING, &r);
	assert_true(r.safe);
	assert_string_equal(r.backing_file, "/etc/passwd");
	assert_string_equal(r.backing_format, "raw");
}

static void test_data_file_refused(void **state)
{
	struct fixture *f = *state;
	char *data = th_path(f->dir, "data.raw");
	char opt[4200];

	th_require_qemu_img();
	snprintf(opt, sizeof(opt), "data_file=%s", data);
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-o", opt, f->img, "1M", NULL},
	          false);
	th_assert_refused_with(f->img, "qcow2-data-file");
	/* The extension alone (bit cleared by a crafty writer) is enough. */
	unsigned char zero[8] = {0};

	th_pwrite_at(f->img, zero, 8, 72);
	th_assert_refused_with(f->img, "qcow2-data-file");
	free(data);
}

static void test_encrypted_refused(void **state)
{
	struct fixture *f = *state;

	th_require_qemu_img();
	th_qemu_img_create_encrypted((const char *[]){
	        "qemu-img", "create", "-q", "--object",
	        "secret,id=s0,data=abcdef", "-f", "qcow2", "-o",
	        "encrypt.format=luks,encrypt.key-secret=s0", f->img, "1M",
	        NULL});
	th_assert_refused_with(f->img, "qcow2-encrypted");
}

static void test_too_large_refused(void **state)
{
	struct fixture *f = *state;

	th_require_qemu_img();
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           f->img, "2T", NULL},
	          false);
	th_assert_refused_with(f->img, "virtual-size-limit");
}

/* A qemu-made image with header bytes patched. */
struct patch_case {
	size_t off;
	unsigned char bytes[8];
	size_t len;
	const char *code;
};

static void test_patched_headers_refused(void **state)
{
	struct fixture *f = *state;
	const struct patch_case cases[] = {
		/* unknown incompatible feature bit 40 */
		{72, {0, 0, 1, 0, 0, 0, 0, 0}, 8, "qcow2-unknown-features"},
		{72, {0, 0, 0, 0, 0, 0, 0, 2}, 8, "qcow2-corrupt"},
		{4, {0, 0, 0, 1}, 4, "qcow2-version"},
		{20, {0, 0, 0, 8}, 4, "qcow2-cluster-size"},
		/* l1_size 0x10000000: a 2 GiB L1 table */
		{36, {0x10, 0, 0, 0}, 4, "table-size-limit"},
		/* refcount_table_clusters 0x10000 of 64 KiB: 4 GiB */
		{56, {0, 1, 0, 0}, 4, "table-size-limit"},
		/* L1 table far past the end of the file */
		{40, {0, 0, 0, 1, 0, 0, 0, 0}, 8, "header-bounds"},
		/* L1 table on top of the refcount table (0x10000) */
		{40, {0, 0, 0, 0, 0, 1, 0, 0}, 8, "overlapping-tables"},
		/* L1 table inside the header cluster */
		{40, {0, 0, 0, 0, 0, 0, 0, 0}, 8, "overlapping-tables"},
		/* a backing file name past cluster 0 */
		{8, {0, 0, 0, 0, 0, 0, 0xff, 0xf0}, 8, "header-bounds"},
		/* header_length not a multiple of 8 */
		{100, {0, 0, 0, 0x69}, 4, "header-bounds"},
		/* compression type 7 */
		{104, {7}, 1, "qcow2-compression-type"},
		/* 70000 snapshots */
		{60, {0, 1, 0x11, 0x70}, 4, "table-size-limit"},
		/* the virtual size above 1 TiB with an L1 too small for it */
		{24, {0, 0, 0x10, 0, 0, 0, 0, 0}, 8, "virtual-size-limit"},
	};

	th_require_qemu_img();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f",
		                           "qcow2", f->img, "1G", NULL},
		          false);
		th_pwrite_at(f->img, cases[i].bytes, cases[i].len, cases[i].off);
		th_assert_refused_with(f->img, cases[i].code);
	}
}

/* A fixed VHD of a partitioned disk starts with the guest's MBR: that is
 * not ambiguity, it is a VHD. */
static void test_fixed_vhd_of_partitioned_disk(void **state)
{
	struct fixture *f = *state;
	char *raw = th_path(f->dir, "mbr.raw");
	char *vhd = th_path(f->dir, "fixed.vhd");
	unsigned char entry[16] = {0x80, 0, 0, 0, 0x83, 0, 0, 0,
	                           0x00, 0x08, 0, 0, 0x00, 0x10, 0, 0};
	unsigned char sig[2] = {0x55, 0xaa};
	struct vmd_inspect_result r;

	th_require_qemu_img();
	th_pwrite_at(raw, entry, sizeof(entry), 446);
	th_pwrite_at(raw, sig, 2, 510);
	assert_int_equal(truncate(raw, 8u << 20), 0);
	inspect(raw, 0, &r);
	assert_int_equal(r.format, VMD_IMG_MBR);
	th_run_ok((const char *[]){"qemu-img", "convert", "-f", "raw", "-O",
	                           "vpc", "-o", "subformat=fixed,force_size=on",
	                           raw, vhd, NULL},
	          false);
	inspect(vhd, 0, &r);
	assert_true(r.safe);
	assert_int_equal(r.format, VMD_IMG_VHD);
	assert_int_equal(r.virtual_size, th_qemu_img_virtual_size(vhd, "vpc"));
	/* But a qcow2 header plus a VHD footer is still ambiguous. */
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           f->img, "1M", NULL},
	          false);
	int fd = open(vhd, O_RDONLY | O_CLOEXEC);
	unsigned char tail[512];

	assert_int_equal(pread(fd, tail, 512, (off_t)(th_file_size(vhd) - 512)),
	                 512);
	close(fd);
	th_pwrite_at(f->img, tail, 512, th_file_size(f->img));
	th_assert_refused_with(f->img, "ambiguous-format");
	free(raw);
	free(vhd);
}

static void test_truncated_and_empty(void **state)
{
	struct fixture *f = *state;
	const off_t lens[] = {1, 4, 71, 72, 103, 104, 111, 4096, 65536, 100000};
	struct vmd_inspect_result r;
	struct vmd_error err = VMD_ERROR_INIT;

	th_require_qemu_img();
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f",
		                           "qcow2", f->img, "1G", NULL},
		          false);
		assert_int_equal(truncate(f->img, lens[i]), 0);
		int fd = open(f->img, O_RDONLY | O_CLOEXEC);
		int rc = vmd_inspect_fd(fd, NULL, 0, &r, &err);

		close(fd);
		/* Either an error or a refusal: never "safe qcow2". */
		if (rc == 0 && r.format == VMD_IMG_QCOW2)
			assert_false(r.safe);
		vmd_error_clear(&err);
	}
	assert_int_equal(truncate(f->img, 0), 0);
	int fd = open(f->img, O_RDONLY | O_CLOEXEC);

	assert_int_equal(vmd_inspect_fd(fd, NULL, 0, &r, &err), VMD_E_INVAL);
	assert_string_equal(err.msg, "inspect: image is empty");
	close(fd);
}

/* The read budget holds whatever the image claims. */
static void test_read_budget(void **state)
{
	struct fixture *f = *state;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	struct vmd_error err = VMD_ERROR_INIT;
	unsigned char buf[4096];

	(void)f;
	memset(buf, 0, sizeof(buf));
	memcpy(buf, "QFI\xfb", 4);
	vmd_put_be32(buf + 4, 3);
	vmd_inspect_limits_default(&lim);
	lim.max_read_bytes = 100; /* less than the probe wants */
	assert_int_equal(vmd_inspect_buffer(buf, sizeof(buf), &lim, 0, &r, &err),
	                 VMD_E_IO);
}

static int cli(struct fixture *f, char **out, const char *const *args)
{
	return th_cli_run(f->conf, NULL, out, NULL, args);
}

static void test_cli_inspect(void **state)
{
	struct fixture *f = *state;
	char *out = NULL;
	struct json_object *o, *v;

	th_require_qemu_img();
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           f->img, "1G", NULL},
	          false);
	assert_int_equal(cli(f, &out, (const char *[]){"inspect", f->img, NULL}), 0);
	assert_contains(out, "format: qcow2");
	assert_contains(out, "verdict: safe");
	free(out);
	/* Two failed checks: two lines, exit 1. */
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-b", "/etc/passwd", "-F", "raw", "-u",
	                           f->img, "2T", NULL},
	          false);
	assert_int_equal(cli(f, &out, (const char *[]){"inspect", f->img, NULL}), 1);
	assert_int_equal(th_count_lines_starting(out, "refused: "), 2);
	assert_contains(out, "refused: qcow2-backing-file: ");
	assert_contains(out, "refused: virtual-size-limit: ");
	free(out);
	assert_int_equal(cli(f, &out, (const char *[]){"--json", "inspect", f->img,
	                                               NULL}),
	                 1);
	o = json_tokener_parse(out);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "reasons", &v));
	assert_true(json_object_is_type(v, json_type_array));
	assert_int_equal(json_object_array_length(v), 2);
	json_object_put(o);
	free(out);
	assert_int_equal(cli(f, &out, (const char *[]){"inspect", "--allow-backing",
	                                               f->img, NULL}),
	                 1);
	assert_int_equal(th_count_lines_starting(out, "refused: "), 1);
	free(out);
}

static void test_hostile_image_creates_nothing(void **state)
{
	struct fixture *f = *state;
	char *errs = NULL;
	char *cache = th_path(f->instances, "_base");
	char *idir = th_path(f->instances, INST);
	const char *argv[] = {th_cli(), "--config", f->conf, "create", INST,
	                      "disk", "--image", f->img, NULL};

	th_require_qemu_img();
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-b", "/etc/passwd", "-F", "raw", "-u",
	                           f->img, "1M", NULL},
	          false);
	assert_int_equal(th_run(argv, NULL, NULL, &errs), 1);
	assert_string_equal(errs, "vmdisk: create: cache: image refused: "
	                          "qcow2-backing-file\n");
	assert_int_equal(th_count_cache_entries(cache), 0);
	assert_false(th_exists(idir));
	free(errs);
	const char *fetch[] = {th_cli(), "--config", f->conf, "fetch", f->img,
	                       NULL};

	assert_int_equal(th_run(fetch, NULL, NULL, NULL), 1);
	assert_int_equal(th_count_cache_entries(cache), 0);
	free(cache);
	free(idir);
}

static struct vmd_ctx *ctx_for(struct fixture *f, bool force_raw)
{
	struct vmd_config cfg;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_ctx *ctx;

	vmd_config_defaults(&cfg);
	snprintf(cfg.instances_path, sizeof(cfg.instances_path), "%s",
	         f->instances);
	cfg.force_raw_images = force_raw;
	ctx = vmd_ctx_new(&cfg, &err);
	assert_non_null(ctx);
	return ctx;
}

/* force_raw_images=false: a qcow2 base is overlaid as qcow2. */
static void test_qcow2_base_overlay(void **state)
{
	struct fixture *f = *state;
	struct vmd_ctx *ctx = ctx_for(f, false);
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts opts = {.image = f->img, .size = 0, .backend = VMD_BACKEND_QCOW2};
	struct vmd_disk_info info;
	char *raw = th_path(f->dir, "src.raw");
	char *disk;

	th_require_qemu_img();
	th_write_pattern(raw, 2 << 20, 77);
	th_run_ok((const char *[]){"qemu-img", "convert", "-q", "-f", "raw",
	                           "-O", "qcow2", raw, f->img, NULL},
	          false);
	assert_int_equal(vmd_disk_create(ctx, INST, "disk", &opts, &info, &err), 0);
	disk = strdup(info.path);
	th_assert_qcow2_check_clean(disk);
	th_assert_images_identical(raw, "raw", disk, "qcow2", 1);
	/* The flat backend flattens the qcow2 base into a raw disk. */
	opts.backend = VMD_BACKEND_FLAT;
	assert_int_equal(vmd_disk_create(ctx, INST, "flat", &opts, &info, &err),
	                 0);
	assert_string_equal(info.format, "raw");
	th_assert_images_identical(raw, "raw", info.path, "raw", 1);
	vmd_ctx_free(ctx);
	free(disk);
	free(raw);
}

/* A cached entry is inspected again on every use. */
static void test_cached_entry_inspected_again(void **state)
{
	struct fixture *f = *state;
	struct vmd_ctx *ctx = ctx_for(f, true);
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry entry;
	struct vmd_create_opts opts = {.image = f->img, .size = 0, .backend = VMD_BACKEND_QCOW2};
	char *evil = th_path(f->dir, "evil.qcow2");

	th_require_qemu_img();
	th_write_pattern(f->img, 1 << 20, 5);
	assert_int_equal(vmd_cache_fetch(ctx, f->img, &entry, &err), 0);
	/* Someone (or a bug) replaces the entry's bytes with a hostile qcow2. */
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-b", "/etc/shadow", "-F", "raw", "-u", evil,
	                           "1M", NULL},
	          false);
	const char *cp[] = {"cp", evil, entry.path, NULL};

	assert_int_equal(th_run(cp, NULL, NULL, NULL), 0);
	assert_int_equal(vmd_disk_create(ctx, INST, "disk", &opts, NULL, &err),
	                 VMD_E_REFUSED);
	assert_contains(err.msg, "qcow2-backing-file");
	vmd_ctx_free(ctx);
	free(evil);
}

/* The guest writes a qcow2 header into its raw disk: nothing changes. */
static void test_format_pinned(void **state)
{
	struct fixture *f = *state;
	struct vmd_ctx *ctx = ctx_for(f, true);
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts opts = {.image = f->img, .size = 0, .backend = VMD_BACKEND_FLAT};
	struct vmd_disk_info info;
	struct vmd_disk_record rec = {VMD_BACKEND_QCOW2, VMD_FORMAT_QCOW2, "", "", false};
	char *xml = NULL;
	char *evil = th_path(f->dir, "evil.qcow2");
	char *idir = th_path(f->instances, INST);

	th_require_qemu_img();
	th_write_pattern(f->img, 1 << 20, 5);
	assert_int_equal(vmd_disk_create(ctx, INST, "disk", &opts, &info, &err), 0);
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow2",
	                           "-b", "/etc/shadow", "-F", "raw", "-u", evil,
	                           "1M", NULL},
	          false);
	const char *dd[] = {"dd", "status=none", "conv=notrunc", "bs=4096",
	                    "count=1", NULL, NULL, NULL};
	char *in, *of;

	assert_true(asprintf(&in, "if=%s", evil) > 0);
	assert_true(asprintf(&of, "of=%s", info.path) > 0);
	dd[5] = in;
	dd[6] = of;
	assert_int_equal(th_run(dd, NULL, NULL, NULL), 0);
	assert_int_equal(vmd_disk_info(ctx, INST, "disk", &info, &err), 0);
	assert_string_equal(info.format, "raw");
	assert_string_equal(info.backend, "flat");
	assert_int_equal(vmd_disk_libvirt_xml(ctx, INST, "disk",
	                                      &(struct vmd_xml_opts){.dev = "vda"},
	                                      &xml, &err),
	                 0);
	assert_contains(xml, "type='raw'");
	assert_not_contains(xml, "qcow2");
	free(xml);
	/* And the record refuses to have the entry rewritten. */
	int ifd = open(idir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_int_equal(vmd_record_put(ifd, "disk", &rec, &err), VMD_E_EXISTS);
	close(ifd);
	vmd_ctx_free(ctx);
	free(in);
	free(of);
	free(evil);
	free(idir);
}

/*
 * Issue 14 defect 11: QEMU probes "QFI\xfb" as qcow2 whatever version
 * follows (and version 1 is qcow); the inspector called a version 4 header
 * raw and safe. Every version but 2 and 3 is recognised and refused.
 */
static void test_qcow_any_version_refused(void **state)
{
	struct fixture *f = *state;
	const uint32_t versions[] = {0, 1, 4, 5, 0x100, 0xffffffffu};
	struct vmd_inspect_result r;

	th_require_qemu_img();
	/* A real qcow (version 1) image, as qemu-img makes it. */
	th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f", "qcow",
	                           f->img, "1G", NULL},
	          false);
	inspect(f->img, 0, &r);
	assert_false(r.safe);
	assert_int_equal(r.format, VMD_IMG_QCOW2);
	assert_int_equal(r.version, 1);
	assert_true(th_has_reason(&r, "qcow2-version"));
	assert_contains(r.reasons[0].text, "qcow (version 1)");
	/* qcow2 headers with the version patched. */
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		unsigned char v[4];

		th_run_ok((const char *[]){"qemu-img", "create", "-q", "-f",
		                           "qcow2", f->img, "1G", NULL},
		          false);
		vmd_put_be32(v, versions[i]);
		th_pwrite_at(f->img, v, sizeof(v), 4);
		inspect(f->img, VMD_INSPECT_ALLOW_BACKING, &r);
		assert_false(r.safe);
		assert_int_equal(r.format, VMD_IMG_QCOW2);
		assert_true(th_has_reason(&r, "qcow2-version"));
	}
	/* Even a bare magic (shorter than any header) is not raw. */
	th_write_text(f->img, "QFI\xfb");
	inspect(f->img, 0, &r);
	assert_false(r.safe);
	assert_int_equal(r.format, VMD_IMG_QCOW2);
}

/* The file as chunks of its non-zero 4 KiB blocks (adjacent ones merged). */
static size_t file_chunks(const unsigned char *b, size_t len,
                          struct vmd_inspect_chunk *c, size_t max)
{
	static const unsigned char zero[4096];
	size_t n = 0;

	for (size_t off = 0; off < len; off += sizeof(zero)) {
		size_t l = len - off < sizeof(zero) ? len - off : sizeof(zero);

		if (memcmp(b + off, zero, l) == 0)
			continue;
		if (n && c[n - 1].offset + c[n - 1].len == off) {
			c[n - 1].len += l;
			continue;
		}
		assert_true(n < max);
		c[n].offset = off;
		c[n].data = b + off;
		c[n].len = l;
		n++;
	}
	return n;
}

/*
 * vmd_inspect_sparse (the fuzz target's way to reach large offsets) sees
 * what vmd_inspect_fd sees in the same file, for images whose headers are
 * far apart (VHDX at 64 and 128 KiB, a VHD footer at the end).
 */
static void test_sparse_source(void **state)
{
	struct fixture *f = *state;
	static const char *const fmts[][2] = {
		{"vhdx", "64M"}, {"vpc", "64M"}, {"qcow2", "1G"},
		{"vmdk", "1G"},  {"parallels", "64M"}, {"vdi", "64M"},
	};
	struct vmd_inspect_chunk c[256];
	struct vmd_inspect_result a, b;
	struct vmd_error err = VMD_ERROR_INIT;

	th_require_qemu_img();
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		const char *argv[] = {"qemu-img", "create", "-q", "-f",
		                      fmts[i][0], f->img, fmts[i][1], NULL};
		unsigned char *bytes;
		size_t len, n;
		int fd;

		unlink(f->img);
		assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
		len = th_file_size(f->img);
		bytes = malloc(len);
		assert_non_null(bytes);
		fd = open(f->img, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, bytes, len, 0), (ssize_t)len);
		assert_int_equal(vmd_inspect_fd(fd, NULL, 0, &a, &err), 0);
		close(fd);
		n = file_chunks(bytes, len, c, sizeof(c) / sizeof(c[0]));
		assert_int_equal(vmd_inspect_sparse(c, n, len, NULL, 0, &b,
		                                    &err),
		                 0);
		assert_int_equal(b.format, a.format);
		assert_true(b.safe);
		assert_true(a.safe);
		assert_int_equal(b.matched, a.matched);
		assert_int_equal(b.virtual_size, a.virtual_size);
		assert_int_equal(b.file_size, len);
		free(bytes);
	}

	/* A later chunk over an earlier one; a chunk whose end wraps. */
	c[0] = (struct vmd_inspect_chunk){0, "KDMV", 4};
	c[1] = (struct vmd_inspect_chunk){0, "QED", 4};
	c[2] = (struct vmd_inspect_chunk){UINT64_MAX - 3, "xxxxxxxx", 8};
	assert_int_equal(vmd_inspect_sparse(c, 3, 1ull << 40, NULL, 0, &b,
	                                    &err),
	                 0);
	assert_int_equal(b.format, VMD_IMG_QED);
	assert_false(b.safe);
	assert_int_equal(b.file_size, 1ull << 40);
	/* No chunks: a file of zeros. */
	assert_int_equal(vmd_inspect_sparse(NULL, 0, 4096, NULL, 0, &b, &err),
	                 0);
	assert_int_equal(b.format, VMD_IMG_RAW);
	assert_true(b.safe);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_qemu_made_qcow2_is_safe),
		T(test_raw_is_raw),
		T(test_backing_file_refused_unless_allowed),
		T(test_data_file_refused),
		T(test_encrypted_refused),
		T(test_too_large_refused),
		T(test_patched_headers_refused),
		T(test_qcow_any_version_refused),
		T(test_fixed_vhd_of_partitioned_disk),
		T(test_truncated_and_empty),
		T(test_read_budget),
		T(test_cli_inspect),
		T(test_hostile_image_creates_nothing),
		T(test_qcow2_base_overlay),
		T(test_cached_entry_inspected_again),
		T(test_format_pinned),
		T(test_sparse_source),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("inspect", tests, NULL, NULL);
}
