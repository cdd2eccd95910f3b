/*
 * Tests of the native qcow2 writer, header reader and growth (lib/qcow2.c)
 * and of the engine's run allocation for fresh output
 * (vmd_qcow2_alloc_run, lib/format/qcow2_image.c), checked by qemu-img and
 * qemu-io as independent implementations.
 */
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bytes.h"
#include "helpers.h"
#include "fsutil.h"
#include "qcow2.h"
#include "qcow2_image.h"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *base;
	char *img;
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "qcow2");

	f->base = th_fixture_path(&f->th, "base.raw");
	f->img = th_fixture_path(&f->th, "img.qcow2");
	*state = f;
	return 0;
}

static void write_image(const char *path, uint64_t size, const char *backing,
                        const char *fmt)
{
	struct vmd_error err = VMD_ERROR_INIT;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	if (vmd_qcow2_write_new(fd, size, VMD_QCOW2_DEFAULT_CLUSTER_BITS,
	                        backing, fmt, &err) != 0)
		fail_msg("write_new: %s (%s)", err.msg, err.detail);
	close(fd);
}

/* `qemu-img info` of the image as JSON (format given: never probed). */
static struct json_object *qemu_info(const char *path)
{
	const char *argv[] = {"qemu-img", "info", "-f", "qcow2",
	                      "--output=json", path, NULL};
	char *out = NULL;
	struct json_object *o;

	assert_int_equal(th_run(argv, NULL, &out, NULL), 0);
	o = json_tokener_parse(out);
	assert_non_null(o);
	free(out);
	return o;
}

static int64_t json_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_int64(v);
}

static const char *json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

static void qemu_io(const char *path, const char *cmd, int expect_ok)
{
	const char *argv[] = {"qemu-io", "-f", "qcow2", "-c", cmd, path, NULL};
	char *out = NULL, *errs = NULL;
	int status = th_run(argv, NULL, &out, &errs);
	int ok = status == 0 && !strstr(out, "failed") &&
	         !strstr(errs, "failed");

	if (ok != expect_ok)
		fail_msg("qemu-io '%s': status %d\n%s%s", cmd, status, out, errs);
	free(out);
	free(errs);
}

static void test_blank_images_check_clean(void **state)
{
	struct fixture *f = *state;
	const uint64_t sizes[] = {512, 1ull << 30, 10ull << 30, 16ull << 40};

	th_require_qemu_img();
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		write_image(f->img, sizes[i], NULL, NULL);
		th_assert_qcow2_check_clean(f->img);
		struct json_object *info = qemu_info(f->img);

		assert_int_equal(json_int(info, "virtual-size"), sizes[i]);
		assert_null(json_str(info, "backing-filename"));
		json_object_put(info);
	}
}

static void test_overlay_reads_as_base(void **state)
{
	struct fixture *f = *state;

	th_require_qemu_img();
	th_write_pattern(f->base, 3u << 20, 7);
	write_image(f->img, 3u << 20, f->base, "raw");
	th_assert_qcow2_check_clean(f->img);
	th_assert_images_identical(f->base, "raw", f->img, "qcow2", 1);

	struct json_object *info = qemu_info(f->img);

	assert_string_equal(json_str(info, "backing-filename"), f->base);
	assert_string_equal(json_str(info, "backing-filename-format"), "raw");
	json_object_put(info);

	/* A larger overlay: the extra area reads as zeroes. */
	write_image(f->img, 1ull << 30, f->base, "raw");
	th_assert_qcow2_check_clean(f->img);
	th_assert_images_identical(f->base, "raw", f->img, "qcow2", 0);
}

static void test_header_round_trip(void **state)
{
	struct fixture *f = *state;
	struct vmd_qcow2_header h;
	struct vmd_error err = VMD_ERROR_INIT;

	th_write_pattern(f->base, 1u << 20, 3);
	write_image(f->img, 5ull << 30, f->base, "raw");
	int fd = open(f->img, O_RDONLY | O_CLOEXEC);

	assert_int_equal(vmd_qcow2_read_header(fd, &h, &err), 0);
	close(fd);
	assert_int_equal(h.version, 3);
	assert_int_equal(h.size, 5ull << 30);
	assert_int_equal(h.cluster_bits, 16);
	assert_int_equal(h.l1_size, 10);
	assert_string_equal(h.backing_file, f->base);
	assert_string_equal(h.backing_format, "raw");
}

static void test_grow_within_l1(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;

	th_require_qemu_img();
	th_write_pattern(f->base, 2u << 20, 11);
	write_image(f->img, 1ull << 30, f->base, "raw");
	/* Guest data written by QEMU, past the base, before the resize. */
	qemu_io(f->img, "write -P 0x5a 700M 1M", 1);
	qemu_io(f->img, "write -P 0x33 0 64k", 1);

	int fd = open(f->img, O_RDWR | O_CLOEXEC);

	assert_int_equal(vmd_qcow2_grow(fd, 3ull << 30, &err), 0);
	close(fd);
	th_assert_qcow2_check_clean(f->img);
	struct json_object *info = qemu_info(f->img);

	assert_int_equal(json_int(info, "virtual-size"), 3ull << 30);
	json_object_put(info);
	qemu_io(f->img, "read -P 0x5a 700M 1M", 1);
	qemu_io(f->img, "read -P 0x33 0 64k", 1);
	qemu_io(f->img, "read -P 0 2G 1M", 1);
	/* And the new area is writable. */
	qemu_io(f->img, "write -P 0x77 2500M 1M", 1);
	th_assert_qcow2_check_clean(f->img);
}

/* qemu-img writes only the used L1 entries, so its file ends inside the L1
 * cluster: growth must leave the new entries inside the file, or the
 * decoder (rightly) refuses an L1 table past the end. */
static void test_grow_qemu_made_image(void **state)
{
	struct fixture *f = *state;
	struct vmd_qcow2_header h;
	struct vmd_error err = VMD_ERROR_INIT;
	const char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2",
	                      f->img, "1G", NULL};
	int fd;

	th_require_qemu_img();
	assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
	fd = open(f->img, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(vmd_qcow2_grow(fd, 3ull << 30, &err), 0);
	if (vmd_qcow2_read_header(fd, &h, &err) != 0)
		fail_msg("%s (%s)", err.msg, err.detail);
	close(fd);
	assert_int_equal(h.size, 3ull << 30);
	assert_int_equal(h.l1_size, 6);
	th_assert_qcow2_check_clean(f->img);
	qemu_io(f->img, "write -P 0x11 2500M 64k", 1);
	qemu_io(f->img, "read -P 0x11 2500M 64k", 1);
	th_assert_qcow2_check_clean(f->img);
}

static void test_grow_refusals(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	int fd;

	write_image(f->img, 1ull << 30, NULL, NULL);
	fd = open(f->img, O_RDWR | O_CLOEXEC);
	assert_int_equal(vmd_qcow2_grow(fd, 512ull << 20, &err), VMD_E_TOOSMALL);
	vmd_error_clear(&err);
	assert_int_equal(vmd_qcow2_grow(fd, (2ull << 30) + 1, &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	/* 5 TiB needs 10240 L1 entries; one 64 KiB L1 cluster holds 8192. */
	assert_int_equal(vmd_qcow2_grow(fd, 5ull << 40, &err),
	                 VMD_E_UNSUPPORTED);
	vmd_error_clear(&err);
	assert_int_equal(vmd_qcow2_grow(fd, 4ull << 40, &err), 0);
	close(fd);
}

static void test_write_refusals(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	char longname[1100];
	int fd = open(f->img, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	assert_int_equal(vmd_qcow2_write_new(fd, 1000, 16, NULL, NULL, &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	assert_int_equal(vmd_qcow2_write_new(fd, 1ull << 62, 16, NULL, NULL,
	                                     &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	/* Out of range cluster bits, even past the width of a shift
	 * (UBSan saw 1ull << 158 before the check). */
	assert_int_equal(vmd_qcow2_write_new(fd, 1 << 20, 158, NULL, NULL,
	                                     &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(vmd_qcow2_write_new(fd, 1 << 20, 16, longname, "raw",
	                                     &err),
	                 VMD_E_INVAL);
	close(fd);
}

/* vmd_qcow2_alloc_run: runs of whole free clusters get contiguous host
 * clusters the caller fills; anything else is refused; the image the
 * caller writes that way (with a partial last cluster through pwrite) is
 * clean to qemu-img check and reads back what was written. */
static void test_alloc_run(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	const uint64_t cs = 65536, size = (3u << 20) + 512;
	static unsigned char buf[3 * 65536];
	struct vmd_qcow2 *q = NULL;
	uint64_t h1 = 0, h2 = 0, h;
	int fd;

	th_require_qemu_img();
	write_image(f->img, size, NULL, NULL);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 % 253 + 1);
	th_pwrite_at(f->base, buf, 3 * cs, cs);
	th_pwrite_at(f->base, buf, 2 * cs, 1u << 20);
	th_pwrite_at(f->base, buf, 512, 3u << 20);
	assert_int_equal(th_file_size(f->base), size);

	/* Read-only: refused. */
	fd = open(f->img, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(vmd_qcow2_open(fd, false, NULL, NULL, &q, &err), 0);
	assert_int_equal(vmd_qcow2_alloc_run(q, 0, cs, &h, &err), VMD_E_INVAL);
	vmd_error_clear(&err);
	vmd_qcow2_close(q, NULL);
	close(fd);

	fd = open(f->img, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(vmd_qcow2_open(fd, true, NULL, NULL, &q, &err), 0);
	vmd_qcow2_defer_sync(q);
	if (vmd_qcow2_alloc_run(q, cs, 3 * cs, &h1, &err) != 0)
		fail_msg("alloc_run: %s (%s)", err.msg, err.detail);
	assert_int_equal(h1 % cs, 0);
	assert_int_equal(vmd_pwrite_full(fd, buf, 3 * cs, h1), 0);
	/* The next run follows it (its L2 table exists already). */
	assert_int_equal(vmd_qcow2_alloc_run(q, 1u << 20, 2 * cs, &h2, &err), 0);
	assert_int_equal(h2, h1 + 3 * cs);
	assert_int_equal(vmd_pwrite_full(fd, buf, 2 * cs, h2), 0);
	/* Allocated already, not on cluster boundaries, empty, past the
	 * end (the partial last cluster too), wrapping. */
	const uint64_t bad[][2] = {
		{2 * cs, cs},     {1000, cs},
		{0, 1000},        {0, 0},
		{3u << 20, cs},   {2u << 20, 2u << 20},
		{UINT64_MAX - cs + 1, cs}, {cs, UINT64_MAX - cs + 1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h = 1;
		assert_int_equal(vmd_qcow2_alloc_run(q, bad[i][0], bad[i][1], &h,
		                                     &err),
		                 VMD_E_INVAL);
		assert_int_equal(h, 0);
		vmd_error_clear(&err);
	}
	assert_int_equal(vmd_qcow2_pwrite(q, buf, 512, 3u << 20, &err), 0);
	assert_int_equal(vmd_qcow2_close(q, &err), 0);
	assert_int_equal(fsync(fd), 0);
	close(fd);
	th_assert_qcow2_check_clean(f->img);
	th_assert_images_identical(f->base, "raw", f->img, "qcow2", 1);
}

/* Damaged headers are errors, never crashes or reads out of bounds. */
static void test_reader_rejects_damage(void **state)
{
	struct fixture *f = *state;
	struct vmd_qcow2_header h;
	struct {
		size_t off;
		unsigned char bytes[8];
		size_t len;
		int expect;
	} cases[] = {
		{0, {0, 0, 0, 0}, 4, VMD_E_CORRUPT},             /* magic */
		{4, {0, 0, 0, 1}, 4, VMD_E_UNSUPPORTED},         /* version 1 */
		{20, {0, 0, 0, 30}, 4, VMD_E_CORRUPT},           /* cluster bits */
		{36, {0, 0, 0, 0}, 4, VMD_E_CORRUPT},            /* l1 too small */
		{8, {0, 0, 0, 0, 0, 0, 0xff, 0xf0}, 8, VMD_E_CORRUPT}, /* name */
		{100, {0, 0, 0, 0x69}, 4, VMD_E_CORRUPT},        /* hdr length */
		{40, {0, 0, 0x10, 0, 0, 0, 0, 0}, 8, VMD_E_CORRUPT}, /* L1 off */
	};

	th_write_pattern(f->base, 1u << 20, 5);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct vmd_error err = VMD_ERROR_INIT;

		write_image(f->img, 1ull << 30, f->base, "raw");
		th_pwrite_at(f->img, cases[i].bytes, cases[i].len, cases[i].off);
		int fd = open(f->img, O_RDONLY | O_CLOEXEC);

		assert_int_equal(vmd_qcow2_read_header(fd, &h, &err),
		                 cases[i].expect);
		close(fd);
	}
	/* Empty and truncated files. */
	for (uint64_t len = 0; len <= 104; len += 52) {
		struct vmd_error err = VMD_ERROR_INIT;

		write_image(f->img, 1ull << 30, NULL, NULL);
		assert_int_equal(truncate(f->img, (off_t)len), 0);
		int fd = open(f->img, O_RDONLY | O_CLOEXEC);

		assert_errc(vmd_qcow2_read_header(fd, &h, &err), &err,
		            VMD_E_CORRUPT);
		close(fd);
	}
}

/*
 * Issue 14 defect 1: backing_file_offset + backing_file_size wrapped
 * (0xFFFFFFFFFFFFFF00 + 512 = 256, "inside cluster 0"), and the name was
 * copied from 256 bytes before the header buffer: ASan reported a
 * stack-buffer-underflow. The sum must be checked, not computed.
 */
static void test_reader_backing_offset_wraps(void **state)
{
	struct fixture *f = *state;
	struct vmd_qcow2_header h;
	const unsigned char off[8] = {0xff, 0xff, 0xff, 0xff,
	                              0xff, 0xff, 0xff, 0x00};
	const unsigned char len[4] = {0, 0, 2, 0}; /* 512 */
	const uint64_t sizes[] = {512, 0xff, 0x100, 0x3ff};

	th_write_pattern(f->base, 1u << 20, 5);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct vmd_error err = VMD_ERROR_INIT;
		unsigned char l[4];

		write_image(f->img, 1ull << 30, f->base, "raw");
		th_pwrite_at(f->img, off, sizeof(off), 8);
		vmd_put_be32(l, (uint32_t)sizes[i]);
		th_pwrite_at(f->img, i == 0 ? len : l, 4, 16);
		int fd = open(f->img, O_RDONLY | O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(vmd_qcow2_read_header(fd, &h, &err),
		                 VMD_E_CORRUPT);
		close(fd);
	}
}

/* The whole file in memory (small images only). */
static unsigned char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end;
	unsigned char *buf;

	assert_true(fd >= 0);
	end = lseek(fd, 0, SEEK_END);
	assert_true(end > 0 && end < (16 << 20));
	buf = malloc((size_t)end);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)end, 0), end);
	close(fd);
	*len = (size_t)end;
	return buf;
}

/*
 * The pure decoder against qemu-img: what qemu-img makes decodes with no
 * defect and the values qemu-img info reports; one damaged header lists
 * every defect it has, and the issue 14 wrap is a defect, not a read.
 */
static void test_decoder_matches_qemu(void **state)
{
	struct fixture *f = *state;
	const char *opts[] = {
		"cluster_size=512",
		"compat=0.10",
		"cluster_size=2M",
		"compression_type=zstd",
		"cluster_size=16k,extended_l2=on",
	};
	struct vmd_qcow2_header h;
	struct vmd_error err = VMD_ERROR_INIT;
	unsigned char *buf;
	size_t len;

	th_require_qemu_img();
	th_write_pattern(f->base, 1u << 20, 5);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2",
		                      "-o", opts[i], "-F", "raw", "-b", f->base,
		                      f->img, "3G", NULL};
		struct json_object *info;

		assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
		info = qemu_info(f->img);
		buf = slurp(f->img, &len);
		if (vmd_qcow2_decode_header(buf, len, len, &h, &err) != 0)
			fail_msg("%s: %s (%s)", opts[i], err.msg, err.detail);
		assert_int_equal(h.defects, 0);
		assert_int_equal(h.size, json_int(info, "virtual-size"));
		assert_int_equal(h.cluster_size, json_int(info, "cluster-size"));
		assert_int_equal(h.version, i == 1 ? 2 : 3);
		assert_string_equal(h.backing_file, f->base);
		assert_string_equal(h.backing_format, "raw");
		assert_int_equal(h.compression_type, i == 3 ? 1 : 0);
		json_object_put(info);

		/* Several defects at once, all listed; the name not read. */
		vmd_put_be64(buf + 8, 0xffffffffffffff00ull);  /* wraps */
		vmd_put_be32(buf + 16, 512);
		vmd_put_be64(buf + 40, 1);      /* L1 off: in the header */
		vmd_put_be32(buf + 56, 0);                      /* no RT */
		assert_int_equal(vmd_qcow2_decode_header(buf, len, len, &h,
		                                         NULL),
		                 VMD_E_CORRUPT);
		assert_int_equal(h.defects, VMD_QCOW2_BAD_BACKING_NAME |
		                                    VMD_QCOW2_BAD_L1_TABLE |
		                                    VMD_QCOW2_BAD_REFCOUNT_TABLE |
		                                    VMD_QCOW2_OVERLAP);
		assert_string_equal(h.backing_file, "");
		free(buf);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_blank_images_check_clean,
	                                        setup, th_teardown),
	        cmocka_unit_test_setup_teardown(test_overlay_reads_as_base,
	                                        setup, th_teardown),
	        cmocka_unit_test_setup_teardown(test_header_round_trip, setup,
	                                        th_teardown),
	        cmocka_unit_test_setup_teardown(test_grow_within_l1, setup,
	                                        th_teardown),
	        cmocka_unit_test_setup_teardown(test_grow_qemu_made_image,
	                                        setup, th_teardown),
	        cmocka_unit_test_setup_teardown(test_grow_refusals, setup,
	                                        th_teardown),
	        cmocka_unit_test_setup_teardown(test_write_refusals, setup,
	                                        th_teardown),
	        cmocka_unit_test_setup_teardown(test_alloc_run, setup,
	                                        th_teardown),
	        cmocka_unit_test_setup_teardown(test_reader_rejects_damage,
	                                        setup, th_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_reader_backing_offset_wraps, setup, th_teardown),
	        cmocka_unit_test_setup_teardown(test_decoder_matches_qemu,
	                                        setup, th_teardown),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("qcow2", tests, NULL, NULL);
}
