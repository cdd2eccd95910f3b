/*
 * Tests of the qcow2 engine, block devices and conversion (qcow2_image.c,
 * blockdev.c, convert.c) against qemu-img and qemu-io: what we read equals
 * `qemu-img convert -O raw` byte for byte; what we write passes
 * `qemu-img check` and `qemu-img compare` against what it should hold.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "bytes.h"
#include "convert.h"
#include "helpers.h"
#include "qcow2.h"
#include "qcow2_image.h"

/* qemu-io -f FMT -c cmd1 -c cmd2 ... path */
static void qemu_io(const char *path, const char *fmt, const char *const *cmds)
{
	const char *argv[64] = {"qemu-io", "-f", fmt};
	size_t n = 3;

	for (size_t i = 0; cmds[i]; i++) {
		argv[n++] = "-c";
		argv[n++] = cmds[i];
	}
	argv[n++] = path;
	argv[n] = NULL;
	th_run_ok(argv, true);
}

static void qemu_img(const char *const *argv_tail)
{
	const char *argv[32] = {"qemu-img"};
	size_t n = 1;

	for (size_t i = 0; argv_tail[i]; i++)
		argv[n++] = argv_tail[i];
	argv[n] = NULL;
	th_run_ok(argv, true);
}

/* Our reading of img (as raw) must equal qemu-img's, byte for byte; our
 * qcow2 conversion must check clean and compare identical. */
static void assert_reads_like_qemu(struct th_fixture *f, const char *img,
                                   const char *fmt)
{
	char *ours = th_path(f->dir, "ours.raw");
	char *ref = th_path(f->dir, "ref.raw");
	char *q = th_path(f->dir, "ours.qcow2");
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_convert_opts o = {0};

	unlink(ours);
	unlink(ref);
	unlink(q);
	qemu_img((const char *[]){"convert", "-f", fmt, "-O", "raw", img, ref,
	                          NULL});
	vmd_parse_format(fmt, &o.src_format, NULL);
	o.dst_format = VMD_FORMAT_RAW;
	o.allow_backing = true;
	if (vmd_convert_to_path(img, ours, &o, &err) != 0)
		fail_msg("convert %s: %s (%s)", img, err.msg, err.detail);
	if (!th_files_equal(ours, ref))
		fail_msg("%s: our raw differs from qemu-img's", img);
	o.dst_format = VMD_FORMAT_QCOW2;
	if (vmd_convert_to_path(img, q, &o, &err) != 0)
		fail_msg("convert %s: %s (%s)", img, err.msg, err.detail);
	th_assert_qcow2_check_clean(q);
	th_assert_images_identical(ref, "raw", q, "qcow2", 1);
	free(ours);
	free(ref);
	free(q);
}

static const char *const scattered_writes[] = {
	"write -P 0x11 0 64k",     "write -P 0x22 100k 3k",
	"write -P 0x33 1M 1M",     "write -P 0x44 5000k 512",
	"write -z 1M 128k",        "write -P 0x55 30M 64k",
	"write -P 0x66 63M 1M",    NULL,
};

static void test_plain_and_v2_images(void **state)
{
	struct th_fixture *f = *state;
	char *img = th_path(f->dir, "a.qcow2");
	const char *variants[][2] = {
		{"compat=1.1", "64M"},
		{"compat=0.10", "64M"},
		{"cluster_size=512", "64M"},
		{"cluster_size=2M", "64M"},
	};

	th_require_qemu_img();
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		unlink(img);
		qemu_img((const char *[]){"create", "-q", "-f", "qcow2", "-o",
		                          variants[i][0], img, variants[i][1],
		                          NULL});
		qemu_io(img, "qcow2", scattered_writes);
		assert_reads_like_qemu(f, img, "qcow2");
	}
	free(img);
}

/* Text compresses well, so qemu-img really stores compressed clusters. */
static void write_compressible(const char *path, size_t len)
{
	FILE *fp = fopen(path, "we");
	size_t n = 0;

	assert_non_null(fp);
	while (n < len) {
		int k = fprintf(fp, "line %zu of a compressible image\n", n);

		n += (size_t)k;
	}
	fclose(fp);
	assert_int_equal(truncate(path, (off_t)len), 0);
	assert_int_equal(truncate(path, (off_t)len + (3u << 20)), 0);
}

static void test_compressed_images(void **state)
{
	struct th_fixture *f = *state;
	char *raw = th_path(f->dir, "text.raw");
	char *z = th_path(f->dir, "z.qcow2");
	char *zs = th_path(f->dir, "zs.qcow2");
	char *out = NULL;

	th_require_qemu_img();
	write_compressible(raw, 5u << 20);
	qemu_img((const char *[]){"convert", "-c", "-f", "raw", "-O", "qcow2",
	                          raw, z, NULL});
	qemu_img((const char *[]){"convert", "-c", "-f", "raw", "-O", "qcow2",
	                          "-o", "compression_type=zstd", raw, zs, NULL});
	/* Make sure the clusters really are compressed. */
	const char *check[] = {"qemu-img", "check", "-f", "qcow2", zs, NULL};

	assert_int_equal(th_run(check, NULL, &out, NULL), 0);
	assert_not_contains(out, " 0.00% compressed");
	assert_contains(out, "% compressed");
	free(out);
	assert_reads_like_qemu(f, z, "qcow2");
	assert_reads_like_qemu(f, zs, "qcow2");
	/* Partial writes over compressed data, through qemu, then read. */
	qemu_io(zs, "qcow2",
	        (const char *[]){"write -P 0x11 3k 3k", "write -z 200k 64k",
	                         "write -P 0x12 4M 100k", NULL});
	assert_reads_like_qemu(f, zs, "qcow2");
	free(raw);
	free(z);
	free(zs);
}

static void test_extended_l2(void **state)
{
	struct th_fixture *f = *state;
	char *img = th_path(f->dir, "x.qcow2");
	char *base = th_path(f->dir, "xbase.raw");
	const char *sub_writes[] = {"write -P 0x77 4k 4k", "write -z 64k 8k",
	                            "write -P 0x78 130k 2k", NULL};

	th_require_qemu_img();
	th_write_pattern(base, 8u << 20, 17);
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", "-o",
	                          "extended_l2=on,cluster_size=128k", "-b", base,
	                          "-F", "raw", img, "8M", NULL});
	qemu_io(img, "qcow2", sub_writes);
	assert_reads_like_qemu(f, img, "qcow2");
	free(img);
	free(base);
}

static void test_backing_chain_depth_3(void **state)
{
	struct th_fixture *f = *state;
	char *base = th_path(f->dir, "c0.raw");
	char *c1 = th_path(f->dir, "c1.qcow2");
	char *c2 = th_path(f->dir, "c2.qcow2");
	char *c3 = th_path(f->dir, "c3.qcow2");

	th_require_qemu_img();
	th_write_pattern(base, 16u << 20, 23);
	/* Relative backing names, as qemu-img writes them when asked. */
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", "-b", "c0.raw",
	                          "-F", "raw", c1, "24M", NULL});
	qemu_io(c1, "qcow2",
	        (const char *[]){"write -P 0xa1 1M 1M", "write -z 3M 64k", NULL});
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", "-b", c1, "-F",
	                          "qcow2", c2, "24M", NULL});
	qemu_io(c2, "qcow2",
	        (const char *[]){"write -P 0xa2 1536k 1M", "write -P 0xa3 20M 8k",
	                         NULL});
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", "-b", "c2.qcow2",
	                          "-F", "qcow2", c3, "32M", NULL});
	qemu_io(c3, "qcow2", (const char *[]){"write -P 0xa4 2000k 5k", NULL});
	assert_reads_like_qemu(f, c3, "qcow2");
	free(base);
	free(c1);
	free(c2);
	free(c3);
}

/* Our writer, random writes mirrored into a raw shadow. */
static void random_writes(struct vmd_blockdev *bd, const char *shadow,
                          uint64_t size, unsigned seed, int n)
{
	struct vmd_error err = VMD_ERROR_INIT;
	unsigned char *buf = malloc(300000);
	int sfd = open(shadow, O_WRONLY | O_CLOEXEC);

	assert_true(sfd >= 0);
	srandom(seed);
	for (int i = 0; i < n; i++) {
		size_t len = (size_t)(random() % 300000) + 1;
		uint64_t off = (uint64_t)random() % (size - len);

		memset(buf, (int)(random() % 255) + 1, len);
		if (vmd_qcow2_pwrite(bd->qcow2, buf, len, off, &err) != 0)
			fail_msg("pwrite: %s (%s)", err.msg, err.detail);
		assert_int_equal(pwrite(sfd, buf, len, (off_t)off), (ssize_t)len);
	}
	close(sfd);
	free(buf);
}

static void new_image(const char *path, uint64_t size, uint32_t cb,
                      const char *backing)
{
	struct vmd_error err = VMD_ERROR_INIT;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(vmd_qcow2_write_new(fd, size, cb, backing,
	                                     backing ? "raw" : NULL, &err),
	                 0);
	close(fd);
}

static void test_our_writes(void **state)
{
	struct th_fixture *f = *state;
	char *img = th_path(f->dir, "w.qcow2");
	char *shadow = th_path(f->dir, "shadow.raw");
	char *base = th_path(f->dir, "wbase.raw");
	const uint32_t cbs[] = {16, 9, 12};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_blockdev *bd;

	th_require_qemu_img();
	for (size_t i = 0; i < sizeof(cbs) / sizeof(cbs[0]); i++) {
		/* 512-byte clusters: 256 clusters per refcount block and 64
		 * blocks per table cluster, so the table has to grow. */
		new_image(img, 48u << 20, cbs[i], NULL);
		th_write_text(shadow, "");
		assert_int_equal(truncate(shadow, 48u << 20), 0);
		assert_int_equal(vmd_blockdev_open(img, VMD_FORMAT_QCOW2,
		                                   VMD_BD_WRITE, NULL, &bd, &err),
		                 0);
		random_writes(bd, shadow, 48u << 20, (unsigned)i + 1, 120);
		vmd_blockdev_close(bd);
		th_assert_qcow2_check_clean(img);
		th_assert_images_identical(shadow, "raw", img, "qcow2", 1);
	}
	/* An overlay: partial writes copy in what the backing file holds. */
	th_write_pattern(base, 8u << 20, 31);
	new_image(img, 8u << 20, 16, base);
	const char *cp[] = {"cp", base, shadow, NULL};

	assert_int_equal(th_run(cp, NULL, NULL, NULL), 0);
	assert_int_equal(vmd_blockdev_open(img, VMD_FORMAT_QCOW2,
	                                   VMD_BD_WRITE | VMD_BD_ALLOW_BACKING,
	                                   NULL, &bd, &err),
	                 0);
	random_writes(bd, shadow, 8u << 20, 99, 40);
	vmd_blockdev_close(bd);
	th_assert_qcow2_check_clean(img);
	th_assert_images_identical(shadow, "raw", img, "qcow2", 1);
	free(img);
	free(shadow);
	free(base);
}

static void resize(const char *img, uint64_t size)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_limits lim;
	struct vmd_qcow2 *q = NULL;
	int fd = open(img, O_RDWR | O_CLOEXEC);

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	assert_int_equal(vmd_qcow2_open(fd, true, &lim, NULL, &q, &err), 0);
	if (vmd_qcow2_resize(q, size, &err) != 0)
		fail_msg("resize: %s (%s)", err.msg, err.detail);
	assert_int_equal(vmd_qcow2_close(q, &err), 0);
	close(fd);
}

static void test_resize_across_l1_growth(void **state)
{
	struct th_fixture *f = *state;
	char *img = th_path(f->dir, "r.qcow2");
	char *ref = th_path(f->dir, "r.raw");
	const char *writes[] = {"write -P 0x5a 0 1M", "write -P 0x5b 700M 64k",
	                        NULL};

	th_require_qemu_img();
	/* qemu's image: L1 of 2 entries in one cluster; 5 TiB needs 10240
	 * entries, three clusters: the table moves. */
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", img, "1G",
	                          NULL});
	qemu_io(img, "qcow2", writes);
	qemu_img((const char *[]){"convert", "-f", "qcow2", "-O", "raw", img, ref,
	                          NULL});
	resize(img, 5ull << 40);
	th_assert_qcow2_check_clean(img);
	assert_int_equal(th_qemu_img_virtual_size(img, "qcow2"), 5ll << 40);
	qemu_io(img, "qcow2",
	        (const char *[]){"read -P 0x5a 0 1M", "read -P 0x5b 700M 64k",
	                         "read -P 0 4T 1M", "write -P 0x5c 4T 1M",
	                         "read -P 0x5c 4T 1M", NULL});
	th_assert_qcow2_check_clean(img);
	/* Our own image, grown twice. */
	unlink(img);
	new_image(img, 1u << 30, 16, NULL);
	qemu_io(img, "qcow2", writes);
	resize(img, 600ull << 30);
	resize(img, 6ull << 40);
	th_assert_qcow2_check_clean(img);
	assert_int_equal(th_qemu_img_virtual_size(img, "qcow2"), 6ll << 40);
	qemu_io(img, "qcow2",
	        (const char *[]){"read -P 0x5a 0 1M", "read -P 0x5b 700M 64k",
	                         NULL});
	free(img);
	free(ref);
}

/* The 8 bytes at off of img set to the big-endian value: converting it
 * (qcow2 to raw, no chain) is then VMD_E_CORRUPT and writes nothing. */
static void assert_patched_corrupt(const char *img, const char *out,
                                   uint64_t off, uint64_t value)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_convert_opts o = {VMD_FORMAT_QCOW2,
	                             VMD_FORMAT_RAW,
	                             false,
	                             0,
	                             0,
	                             NULL,
	                             NULL,
	                             NULL,
	                             NULL};
	unsigned char e[8];

	vmd_put_be64(e, value);
	th_pwrite_at(img, e, sizeof(e), off);
	assert_errc(vmd_convert_to_path(img, out, &o, &err), &err,
	            VMD_E_CORRUPT);
	assert_false(th_exists(out));
}

/* A damaged image is an error, never a crash or a read elsewhere. */
static void test_corrupt_inputs(void **state)
{
	struct th_fixture *f = *state;
	char *img = th_path(f->dir, "bad.qcow2");
	char *out = th_path(f->dir, "bad.raw");
	unsigned char hdr[112], e[8];
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_convert_opts o = {VMD_FORMAT_QCOW2, VMD_FORMAT_RAW, false, 0,
	                             0, NULL, NULL, NULL, NULL};
	uint64_t l1_off, l2_off, bad_values[5];

	th_require_qemu_img();
	for (size_t k = 0; k < 5; k++) {
		unlink(img);
		unlink(out);
		qemu_img((const char *[]){"create", "-q", "-f", "qcow2", img,
		                          "16M", NULL});
		qemu_io(img, "qcow2",
		        (const char *[]){"write -P 0x42 0 128k", NULL});
		int fd = open(img, O_RDONLY | O_CLOEXEC);

		assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
		l1_off = vmd_be64(hdr + 40);
		assert_int_equal(pread(fd, e, 8, (off_t)l1_off), 8);
		l2_off = vmd_be64(e) & 0x00fffffffffffe00ull;
		bad_values[0] = 0x8000000000000000ull | 0x10200; /* unaligned */
		bad_values[1] = 0x8000000000000000ull | l1_off;     /* L1 table */
		bad_values[2] = 0x8000000000000000ull | (1ull << 40); /* past EOF */
		/* compressed, 2 KiB at an offset past the end of the file */
		bad_values[3] = (1ull << 62) | (1ull << 40);
		bad_values[4] = 0x8000000000000000ull | 0x10000; /* refcounts */
		close(fd);
		assert_patched_corrupt(img, out, l2_off, bad_values[k]);
	}
	/* An L1 entry pointing past the end of the file. */
	unlink(img);
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", img, "16M", NULL});
	int fd = open(img, O_RDONLY | O_CLOEXEC);

	assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
	close(fd);
	assert_patched_corrupt(img, out, vmd_be64(hdr + 40),
	                       0x8000000000000000ull | (1ull << 44));
	/* A chain is not followed unless asked, and never to an unnamed
	 * format. */
	unlink(img);
	qemu_img((const char *[]){"create", "-q", "-f", "qcow2", "-b", "/etc/passwd",
	                          "-F", "raw", "-u", img, "1M", NULL});
	vmd_error_clear(&err);
	assert_int_equal(vmd_convert_to_path(img, out, &o, &err), VMD_E_REFUSED);
	free(img);
	free(out);
}

static void test_raw_to_raw_keeps_holes(void **state)
{
	struct th_fixture *f = *state;
	char *src = th_path(f->dir, "s.raw");
	char *dst = th_path(f->dir, "d.raw");
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_convert_opts o = {VMD_FORMAT_RAW, VMD_FORMAT_RAW, false, 0,
	                             0, NULL, NULL, NULL, NULL};
	unsigned char block[65536];
	struct stat st;

	memset(block, 0x9d, sizeof(block));
	th_pwrite_at(src, block, sizeof(block), 1u << 20);
	th_pwrite_at(src, block, sizeof(block), 40u << 20);
	assert_int_equal(truncate(src, 64u << 20), 0);
	assert_int_equal(vmd_convert_to_path(src, dst, &o, &err), 0);
	assert_true(th_files_equal(src, dst));
	assert_int_equal(stat(dst, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 <= 4 * 65536);
	/* Never over an existing file. */
	assert_int_equal(vmd_convert_to_path(src, dst, &o, &err), VMD_E_EXISTS);
	free(src);
	free(dst);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, th_setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_plain_and_v2_images),
		T(test_compressed_images),
		T(test_extended_l2),
		T(test_backing_chain_depth_3),
		T(test_our_writes),
		T(test_resize_across_l1_growth),
		T(test_corrupt_inputs),
		T(test_raw_to_raw_keeps_holes),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
