/*
 * Tests of the inspector's format parsers (lib/inspect_vmdk.c, _vhd.c,
 * _vdi.c, _disk.c, _luks.c, _parallels.c).
 *
 * Real images come from `qemu-img create`/`convert`; what we report (format,
 * virtual size) must agree with `qemu-img info --output=json -f FMT` (the
 * format is always given: qemu-img never probes). Hostile images are real
 * ones with a field patched (checksums fixed where the format has them) and
 * each must be refused with the named check. Truncated files, a small read
 * budget and random damage must give an error or a refusal, never a crash
 * (the suite also runs under ASan/UBSan).
 */
#include <fcntl.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmdisk/inspect.h>

#include "cleanup.h"
#include "helpers.h"

#define KiB 1024ull
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

/* --- helpers ------------------------------------------------------------ */

static char *path_in(struct th_fixture *f, const char *name)
{
	return th_path(f->dir, name);
}

static void qemu_create(const char *fmt, const char *opts, const char *path,
                        const char *size)
{
	const char *with[] = {"qemu-img", "create", "-q", "-f", fmt,
	                      "-o",       opts,     path, size, NULL};
	const char *without[] = {"qemu-img", "create", "-q", "-f",
	                         fmt,        path,     size, NULL};

	th_require_qemu_img();
	th_run_ok(opts ? with : without, false);
}

/* `qemu-img info` as JSON, or NULL when qemu-img cannot open the image. */
static struct json_object *qemu_info(const char *path, const char *fmt)
{
	const char *argv[] = {"qemu-img", "info",        "-f", fmt,
	                      "--output=json", path, NULL};
	char *out = NULL;
	struct json_object *o = NULL;

	if (th_run(argv, NULL, &out, NULL) == 0)
		o = json_tokener_parse(out);
	free(out);
	return o;
}

static int64_t qemu_vsize(const char *path, const char *fmt)
{
	struct json_object *o = qemu_info(path, fmt), *v;
	int64_t size;

	if (!o)
		fail_msg("qemu-img info -f %s %s failed", fmt, path);
	assert_true(json_object_object_get_ex(o, "format", &v));
	assert_string_equal(json_object_get_string(v), fmt);
	assert_true(json_object_object_get_ex(o, "virtual-size", &v));
	size = json_object_get_int64(v);
	json_object_put(o);
	return size;
}

static int inspect_limited(const char *path,
                           const struct vmd_inspect_limits *lim,
                           struct vmd_inspect_result *r)
{
	return th_inspect_path(path, lim, 0, r);
}

static void inspect(const char *path, struct vmd_inspect_result *r)
{
	assert_int_equal(inspect_limited(path, NULL, r), 0);
}

static void print_reasons(const struct vmd_inspect_result *r)
{
	for (unsigned i = 0; i < r->n_reasons; i++)
		print_message("    %s: %s\n", r->reasons[i].code,
		              r->reasons[i].text);
}

/* Our format and virtual size agree with qemu-img; the image is safe. */
static void assert_matches_qemu(const char *path, enum vmd_image_format fmt,
                                const char *qemu_fmt)
{
	struct vmd_inspect_result r;

	inspect(path, &r);
	if (!r.safe)
		print_reasons(&r);
	assert_true(r.safe);
	assert_string_equal(vmd_image_format_name(r.format),
	                    vmd_image_format_name(fmt));
	assert_int_equal(r.virtual_size, qemu_vsize(path, qemu_fmt));
}

static unsigned char *slurp(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *b;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	*len = (size_t)st.st_size;
	b = malloc(*len ? *len : 1);
	assert_non_null(b);
	assert_int_equal(pread(fd, b, *len, 0), (ssize_t)*len);
	close(fd);
	return b;
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	unsigned char *b = slurp(from, &len);

	unlink(to);
	th_pwrite_at(to, b, len, 0);
	free(b);
}

static void put_le(unsigned char *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

static void put_be(unsigned char *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		b[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_le(const unsigned char *b, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

static void patch_le(const char *path, uint64_t off, uint64_t v, int n)
{
	unsigned char b[8];

	put_le(b, v, n);
	th_pwrite_at(path, b, (size_t)n, off);
}

static void patch_be(const char *path, uint64_t off, uint64_t v, int n)
{
	unsigned char b[8];

	put_be(b, v, n);
	th_pwrite_at(path, b, (size_t)n, off);
}

static void read_at(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void set_size(const char *path, uint64_t size)
{
	assert_int_equal(truncate(path, (off_t)size), 0);
}

/* A field of a copy of the base patched (little-endian, `width` bytes;
 * a second field too when width2 is set), and the refusal it brings. */
struct patched {
	uint64_t off, value;
	int width;
	const char *code;
	uint64_t off2, value2;
	int width2;
};
#define PATCH(off, value, width, code)                                         \
	{                                                                      \
		(off), (value), (width), (code), 0, 0, 0                       \
	}

static void assert_patches_refused(const char *base, const char *img,
                                   const struct patched *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		copy_file(base, img);
		patch_le(img, p[i].off, p[i].value, p[i].width);
		if (p[i].width2)
			patch_le(img, p[i].off2, p[i].value2, p[i].width2);
		th_assert_refused_with(img, p[i].code);
	}
}

/* --- VMDK ---------------------------------------------------------------- */

#define VMDK_DESC 512

/* Replace the embedded descriptor's text (sector 1 on) with `text`. */
static void vmdk_set_descriptor(const char *path, const char *text)
{
	unsigned char zero[10240] = {0};

	th_pwrite_at(path, zero, sizeof(zero), VMDK_DESC);
	th_pwrite_at(path, text, strlen(text), VMDK_DESC);
}

static const char sparse_desc_head[] = "# Disk DescriptorFile\n"
                                       "version=1\n"
                                       "CID=12345678\n"
                                       "parentCID=ffffffff\n"
                                       "createType=\"monolithicSparse\"\n"
                                       "\n"
                                       "# Extent description\n";

static void vmdk_with_extents(const char *path, const char *base,
                              const char *extents)
{
	char text[4096];

	copy_file(base, path);
	snprintf(text, sizeof(text), "%s%s\nddb.adapterType = \"ide\"\n",
	         sparse_desc_head, extents);
	vmdk_set_descriptor(path, text);
}

static void test_vmdk_matches_qemu(void **state)
{
	struct th_fixture *f = *state;
	char *sparse = path_in(f, "a.vmdk"), *so = path_in(f, "so.vmdk");
	char *raw = path_in(f, "data.raw"), *so2 = path_in(f, "so2.vmdk");
	char *big = path_in(f, "big.vmdk");
	const char *conv[] = {"qemu-img", "convert", "-f", "raw", "-O",
	                      "vmdk", "-o", "subformat=streamOptimized",
	                      raw, so2, NULL};
	const char *conv0[] = {"qemu-img", "convert", "-f", "vmdk", "-O",
	                       "vmdk", "-o", "subformat=streamOptimized",
	                       sparse, so, NULL};
	struct vmd_inspect_result r;

	qemu_create("vmdk", NULL, sparse, "1G");
	assert_matches_qemu(sparse, VMD_IMG_VMDK, "vmdk");
	inspect(sparse, &r);
	assert_int_equal(r.cluster_size, 65536);
	qemu_create("vmdk", "subformat=monolithicSparse", big, "3000001536");
	assert_matches_qemu(big, VMD_IMG_VMDK, "vmdk");
	th_run_ok(conv0, false);
	assert_matches_qemu(so, VMD_IMG_VMDK, "vmdk");
	th_write_pattern(raw, 3000000, 11);
	th_run_ok(conv, false);
	assert_matches_qemu(so2, VMD_IMG_VMDK, "vmdk");
	inspect(so2, &r);
	assert_int_equal(r.version, 3);
	free(sparse);
	free(so);
	free(raw);
	free(so2);
	free(big);
}

static void test_vmdk_descriptor_only_refused(void **state)
{
	struct th_fixture *f = *state;
	char *flat = path_in(f, "flat.vmdk"), *two = path_in(f, "two.vmdk");
	char *evil = path_in(f, "evil.vmdk"), *plain = path_in(f, "p.vmdk");
	struct vmd_inspect_result r;

	qemu_create("vmdk", "subformat=monolithicFlat", flat, "10M");
	th_assert_refused_with(flat, "vmdk-descriptor-only");
	th_assert_refused_with(flat, "vmdk-create-type");
	th_assert_refused_with(flat, "vmdk-extent");
	inspect(flat, &r);
	assert_int_equal(r.format, VMD_IMG_VMDK);
	assert_int_equal(r.virtual_size, qemu_vsize(flat, "vmdk"));

	qemu_create("vmdk", "subformat=twoGbMaxExtentSparse", two, "100M");
	th_assert_refused_with(two, "vmdk-descriptor-only");
	th_assert_refused_with(two, "vmdk-create-type");

	/* Claims to be monolithicSparse, names /etc/passwd. */
	th_write_text(evil, "# Disk DescriptorFile\nversion=1\nCID=1\n"
	                    "parentCID=ffffffff\n"
	                    "createType=\"monolithicSparse\"\n"
	                    "RW 2048 FLAT \"/etc/passwd\" 0\n");
	th_assert_refused_with(evil, "vmdk-descriptor-only");
	th_assert_refused_with(evil, "vmdk-extent");

	/* Even a "perfect" one: a descriptor has no data of its own. */
	th_write_text(plain, "\n# comment\nversion=1\n"
	                     "createType=\"monolithicSparse\"\n"
	                     "RW 2048 SPARSE \"p.vmdk\"\n");
	th_assert_refused_with(plain, "vmdk-descriptor-only");
	inspect(plain, &r);
	assert_int_equal(r.virtual_size, 2048 * 512);
	free(flat);
	free(two);
	free(evil);
	free(plain);
}

static void test_vmdk_descriptor_attacks(void **state)
{
	struct th_fixture *f = *state;
	char *base = path_in(f, "base.vmdk"), *img = path_in(f, "img.vmdk");
	char text[4096];
	struct vmd_inspect_result r;

	qemu_create("vmdk", NULL, base, "1G");

	/* createType patched in place (same length). */
	copy_file(base, img);
	{
		unsigned char d[1024];
		char *at;

		read_at(img, d, sizeof(d), VMDK_DESC);
		d[sizeof(d) - 1] = 0;
		at = strstr((char *)d, "monolithicSparse");
		assert_non_null(at);
		memcpy(at, "vmfsRawDeviceMap", 16);
		th_pwrite_at(img, d, sizeof(d) - 1, VMDK_DESC);
	}
	th_assert_refused_with(img, "vmdk-create-type");

	/* The first "createType" in the text is the one QEMU uses. */
	copy_file(base, img);
	snprintf(text, sizeof(text),
	         "# Disk DescriptorFile createType=\"vmfs\"\n%s"
	         "RW 2097152 SPARSE \"img.vmdk\"\n",
	         sparse_desc_head + 22);
	vmdk_set_descriptor(img, text);
	th_assert_refused_with(img, "vmdk-create-type");

	vmdk_with_extents(img, base, "RW 2097152 FLAT \"/etc/passwd\" 0");
	th_assert_refused_with(img, "vmdk-extent");
	vmdk_with_extents(img, base,
	                  "RW 1048576 SPARSE \"img.vmdk\"\n"
	                  "RW 1048576 SPARSE \"img.vmdk\"");
	th_assert_refused_with(img, "vmdk-extent");
	vmdk_with_extents(img, base, "RW 2097152 SPARSE \"../other.vmdk\"");
	th_assert_refused_with(img, "vmdk-extent");
	vmdk_with_extents(img, base, "RDONLY 2097152 VMFS \"x.vmdk\"");
	th_assert_refused_with(img, "vmdk-extent");
	vmdk_with_extents(img, base, "");
	th_assert_refused_with(img, "vmdk-extent");
	vmdk_with_extents(img, base, "RW 2097152 ZERO");
	th_assert_refused_with(img, "vmdk-extent");
	vmdk_with_extents(img, base, "RW 2097152 SPARSE");
	th_assert_refused_with(img, "vmdk-extent");
	/* Tabs: oslo's "key=value" test split on spaces only. */
	vmdk_with_extents(img, base,
	                  "RW 2097152 SPARSE \"img.vmdk\"\n"
	                  "RW\t2048\tFLAT\t\"/dev/sda=x\"\t0");
	th_assert_refused_with(img, "vmdk-extent");
	/* QEMU's strstr finds a parent hint even in a comment. */
	vmdk_with_extents(img, base,
	                  "RW 2097152 SPARSE \"img.vmdk\"\n"
	                  "# parentFileNameHint=\"/var/lib/secret.img\"");
	th_assert_refused_with(img, "vmdk-parent");
	vmdk_with_extents(img, base,
	                  "RW 2097152 SPARSE \"img.vmdk\"\nbogus line here");
	th_assert_refused_with(img, "vmdk-descriptor");
	vmdk_with_extents(img, base,
	                  "RW 2097152 SPARSE \"img.vmdk\"\nddb.x = \"\x01\"");
	th_assert_refused_with(img, "vmdk-descriptor");

	/* Text past the declared descriptor size is still QEMU's text. */
	copy_file(base, img);
	patch_le(img, 36, 1, 8); /* descriptor: 1 sector */
	{
		char pad[600];

		memset(pad, '#', sizeof(pad));
		pad[0] = '\n';
		pad[sizeof(pad) - 1] = '\n';
		snprintf(text, sizeof(text),
		         "%sRW 2097152 SPARSE \"img.vmdk\"\n%.*sRW 8 FLAT "
		         "\"/etc/shadow\" 0\n",
		         sparse_desc_head, (int)sizeof(pad), pad);
	}
	vmdk_set_descriptor(img, text);
	th_assert_refused_with(img, "vmdk-extent");

	/* Accepted as it should be: the original, whitespace variations. */
	vmdk_with_extents(img, base, "  RW   2097152  SPARSE  \"img.vmdk\"  \r");
	inspect(img, &r);
	if (!r.safe)
		print_reasons(&r);
	assert_true(r.safe);
	free(base);
	free(img);
}

static void test_vmdk_parent_refused(void **state)
{
	struct th_fixture *f = *state;
	char *base = path_in(f, "base.vmdk"), *child = path_in(f, "c.vmdk");
	const char *argv[] = {"qemu-img", "create", "-q", "-f", "vmdk", "-b",
	                      base, "-F", "vmdk", child, NULL};

	qemu_create("vmdk", NULL, base, "64M");
	th_run_ok(argv, false);
	th_assert_refused_with(child, "vmdk-parent");
	free(base);
	free(child);
}

/* The embedded descriptor's CID=, as qemu-img wrote it. */
static unsigned long vmdk_cid(const char *path)
{
	char d[1024], *at;

	read_at(path, d, sizeof(d), VMDK_DESC);
	d[sizeof(d) - 1] = 0;
	at = strstr(d, "\nCID=");
	assert_non_null(at);
	return strtoul(at + 5, NULL, 16);
}

/*
 * Issue 14, defect 10 (CVE-2024-32498 class): QEMU finds
 * parentFileNameHint with a case-sensitive strstr, so a key in another
 * case placed first must not hide the one QEMU uses. qemu-img itself shows
 * it reads the decoy into the output.
 */
static void test_vmdk_parent_hint_decoy(void **state)
{
	struct th_fixture *f = *state;
	char *decoy = path_in(f, "decoy.vmdk"), *img = path_in(f, "img.vmdk");
	char *out = path_in(f, "out.raw");
	const char *io[] = {"qemu-io", "-f", "vmdk", "-c",
	                    "write -P 0x5a 0 64k", decoy, NULL};
	const char *conv[] = {"qemu-img", "convert", "-f", "vmdk", "-O", "raw",
	                      img, out, NULL};
	/* Each with whether QEMU reads the decoy (the first exact match). */
	static const struct {
		const char *line;
		bool decoy;
	} lines[] = {
		{"PARENTFILENAMEHINT=\"\" parentFileNameHint=\"decoy.vmdk\"",
		 true},
		{"parentfilenamehint=\"\"\nparentFileNameHint=\"decoy.vmdk\"",
		 true},
		/* QEMU takes the empty one; a second is still refused. */
		{"parentFileNameHint=\"\"\nparentFileNameHint=\"decoy.vmdk\"",
		 false},
	};
	unsigned char got[16], want[16];
	char text[2048], cid[16];

	qemu_create("vmdk", NULL, decoy, "1M");
	th_run_ok(io, false);
	memset(want, 0x5a, sizeof(want));
	for (size_t c = 0; c < 2; c++) {
		if (c == 0) /* the decoy's own CID, then "no parent" */
			snprintf(cid, sizeof(cid), "%08lx", vmdk_cid(decoy));
		else
			snprintf(cid, sizeof(cid), "ffffffff");
		for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
			qemu_create("vmdk", NULL, img, "1M");
			snprintf(text, sizeof(text),
			         "# Disk DescriptorFile\nversion=1\n"
			         "CID=12345678\nparentCID=%s\n"
			         "createType=\"monolithicSparse\"\n%s\n\n"
			         "RW 2048 SPARSE \"img.vmdk\"\n\n"
			         "ddb.adapterType = \"ide\"\n",
			         cid, lines[i].line);
			vmdk_set_descriptor(img, text);
			th_assert_refused_with(img, "vmdk-parent");
			if (c == 1) /* QEMU fails its reads on a CID mismatch */
				continue;
			/* With the decoy's CID, QEMU reads decoy.vmdk into the
			 * output. */
			unlink(out);
			th_run_ok(conv, false);
			read_at(out, got, sizeof(got), 0);
			assert_int_equal(memcmp(got, want, sizeof(want)) == 0,
			                 lines[i].decoy);
		}
	}
	/* Wrongly cased or repeated createType and parentCID. */
	qemu_create("vmdk", NULL, img, "1M");
	vmdk_set_descriptor(img, "# Disk DescriptorFile\nversion=1\n"
	                         "CID=12345678\nparentCID=ffffffff\n"
	                         "createtype=\"vmfs\"\n"
	                         "createType=\"monolithicSparse\"\n"
	                         "RW 2048 SPARSE \"img.vmdk\"\n");
	th_assert_refused_with(img, "vmdk-create-type");
	vmdk_set_descriptor(img, "# Disk DescriptorFile\nversion=1\n"
	                         "CID=12345678\nparentCID=ffffffff\n"
	                         "parentCID=0000abcd\n"
	                         "createType=\"monolithicSparse\"\n"
	                         "RW 2048 SPARSE \"img.vmdk\"\n");
	th_assert_refused_with(img, "vmdk-parent");
	free(decoy);
	free(img);
	free(out);
}

static void test_vmdk_header_checks(void **state)
{
	struct th_fixture *f = *state;
	char *base = path_in(f, "base.vmdk"), *img = path_in(f, "img.vmdk");

	static const struct patched cases[] = {
	        /* capacity 0: QEMU follows the extents */
	        PATCH(12, 0, 8, "vmdk-extent"),
	        /* grain directory */
	        PATCH(56, 1ull << 40, 8, "header-bounds"),
	        /* redundant grain directory */
	        PATCH(48, 1ull << 40, 8, "header-bounds"),
	        /* descriptor offset */
	        PATCH(28, 1ull << 30, 8, "header-bounds"),
	        /* a huge descriptor size */
	        PATCH(36, 1ull << 40, 8, "header-bounds"),
	        /* 512 TiB in 512-byte grains */
	        {12, 1ull << 40, 8, "table-size-limit", 20, 1, 8},
	        /* grain table entries */
	        PATCH(44, 4096, 4, "vmdk-header"),
	        PATCH(4, 4, 4, "vmdk-version"),
	        /* grains start past the end */
	        PATCH(64, 1ull << 30, 8, "header-bounds"),
	};

	qemu_create("vmdk", NULL, base, "1G");
	assert_patches_refused(base, img, cases, ELEMENTSOF(cases));
	copy_file(base, img);
	th_pwrite_at(img, "COWD", 4, 0);
	th_assert_refused_with(img, "vmdk-cowd");
	free(base);
	free(img);
}

/* gdOffset = GD_AT_END: header from the footer, as QEMU does. */
static void test_vmdk_footer(void **state)
{
	struct th_fixture *f = *state;
	char *raw = path_in(f, "d.raw"), *so = path_in(f, "so.vmdk");
	char *img = path_in(f, "foot.vmdk");
	const char *conv[] = {"qemu-img", "convert", "-f", "raw", "-O",
	                      "vmdk", "-o", "subformat=streamOptimized",
	                      raw, so, NULL};
	unsigned char hdr[512], tail[1536] = {0};
	uint64_t size;

	th_require_qemu_img();
	th_write_pattern(raw, 2 * MiB + 4096, 5);
	th_run_ok(conv, false);
	copy_file(so, img);
	read_at(img, hdr, sizeof(hdr), 0);
	size = th_file_size(img);
	put_le(tail, 1, 8);       /* footer marker: 1 sector ... */
	put_le(tail + 12, 3, 4);  /* ... of type footer */
	memcpy(tail + 512, hdr, 512);
	put_le(tail + 512 + 12, get_le(hdr + 12, 8) + 128, 8);
	th_pwrite_at(img, tail, sizeof(tail), size);
	patch_le(img, 56, UINT64_MAX, 8);
	assert_matches_qemu(img, VMD_IMG_VMDK, "vmdk");

	/* A broken end-of-stream marker: QEMU refuses, so do we. */
	patch_le(img, size + 1024 + 12, 7, 4);
	assert_null(qemu_info(img, "vmdk"));
	th_assert_refused_with(img, "vmdk-footer");
	/* A footer that differs from the header. */
	patch_le(img, size + 1024 + 12, 0, 4);
	patch_le(img, size + 512 + 28, 2, 8);
	th_assert_refused_with(img, "vmdk-footer");
	/* No footer at all. */
	set_size(img, size);
	patch_le(img, 56, UINT64_MAX, 8);
	th_assert_refused_with(img, "vmdk-footer");
	free(raw);
	free(so);
	free(img);
}

/* A 1 MiB descriptor of 30,000 lines is refused at line 1025 (a real one
 * has a few dozen; QEMU reads up to 1 MiB); with a small read budget the
 * inspection stops with an error or a refusal, never reads on. */
static void test_vmdk_huge_descriptor_bounded(void **state)
{
	struct th_fixture *f = *state;
	char *base = path_in(f, "base.vmdk"), *img = path_in(f, "big.vmdk");
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	const uint64_t text_len = MiB + 100 * KiB;
	char *text = malloc(text_len + 1);
	size_t o;
	int rc;

	assert_non_null(text);
	qemu_create("vmdk", NULL, base, "1G");
	copy_file(base, img);
	o = (size_t)snprintf(text, text_len, "%sRW 2097152 SPARSE \"big.vmdk\"\n",
	                     sparse_desc_head);
	while (o + 32 < text_len)
		o += (size_t)snprintf(text + o, text_len - o,
		                      "ddb.comment%08zu = \"x\"\n", o);
	th_pwrite_at(img, text, o, VMDK_DESC);
	patch_le(img, 36, (o + 511) / 512, 8);
	/* Move the tables after the text. */
	patch_le(img, 56, (VMDK_DESC + o) / 512 + 8, 8);
	patch_le(img, 48, (VMDK_DESC + o) / 512 + 8, 8);
	patch_le(img, 64, (VMDK_DESC + o) / 512 + 64, 8);
	set_size(img, VMDK_DESC + o + 64 * KiB);

	th_assert_refused_with(img, "vmdk-descriptor");
	/* The same text cut to 1024 lines is fine. */
	{
		size_t cut = 0;

		for (int line = 0; line < 1024; line++)
			cut += (size_t)(strchr(text + cut, '\n') - (text + cut)) +
			       1;
		char *zero = calloc(1, o - cut);

		assert_non_null(zero);
		th_pwrite_at(img, zero, o - cut, VMDK_DESC + cut);
		free(zero);
		inspect(img, &r);
		if (!r.safe)
			print_reasons(&r);
		assert_true(r.safe);
		th_pwrite_at(img, text, o, VMDK_DESC);
	}

	vmd_inspect_limits_default(&lim);
	lim.max_read_bytes = 70000;
	rc = inspect_limited(img, &lim, &r);
	assert_int_equal(rc, 0);
	assert_false(r.safe);
	assert_true(th_has_reason(&r, "vmdk-descriptor"));

	/* A descriptor of non-stop text (no NUL, no newline). */
	memset(text, 'A', text_len);
	th_pwrite_at(img, text, text_len, VMDK_DESC);
	th_assert_refused_with(img, "vmdk-descriptor");
	/* Read whole, it is more than the budget allows. */
	rc = inspect_limited(img, &lim, &r);
	assert_int_equal(rc, VMD_E_IO);
	free(text);
	free(base);
	free(img);
}

/* --- VHD (vpc) ----------------------------------------------------------- */

/* Fix the footer checksum at `off` (one's complement of the byte sum). */
static void vhd_fix_checksum(const char *path, uint64_t off)
{
	unsigned char b[512];
	uint32_t sum = 0;

	read_at(path, b, sizeof(b), off);
	memset(b + 64, 0, 4);
	for (size_t i = 0; i < sizeof(b); i++)
		sum += b[i];
	patch_be(path, off + 64, ~sum, 4);
}

/* Patch a footer field in both copies (offset 0 if dynamic, and the end). */
static void vhd_patch_footer(const char *path, uint64_t field, uint64_t v,
                             int n, bool dynamic)
{
	uint64_t end = th_file_size(path) - 512;

	patch_be(path, end + field, v, n);
	vhd_fix_checksum(path, end);
	if (dynamic) {
		patch_be(path, field, v, n);
		vhd_fix_checksum(path, 0);
	}
}

static void test_vpc_matches_qemu(void **state)
{
	struct th_fixture *f = *state;
	static const struct {
		const char *opts, *size;
	} cases[] = {
		{NULL, "1G"},
		{NULL, "100000000"},
		{"subformat=fixed", "16M"},
		{"subformat=fixed", "10000000"},
		{"force_size=on", "1G"},
		{"force_size=on", "100000000"},
		{"subformat=fixed,force_size=on", "10000000"},
	};
	char *img = path_in(f, "img.vhd");
	struct vmd_inspect_result r;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unlink(img);
		qemu_create("vpc", cases[i].opts, img, cases[i].size);
		assert_matches_qemu(img, VMD_IMG_VHD, "vpc");
	}

	/* Hyper-V's creator: the footer's current size, not CHS. */
	unlink(img);
	qemu_create("vpc", NULL, img, "1G");
	vhd_patch_footer(img, 28, 0x77696e20, 4, true); /* "win " */
	vhd_patch_footer(img, 48, 1000 * MiB, 8, true);
	assert_matches_qemu(img, VMD_IMG_VHD, "vpc");
	inspect(img, &r);
	assert_int_equal(r.virtual_size, 1000 * MiB);
	assert_int_equal(r.cluster_size, 2 * MiB);
	free(img);
}

static void test_vpc_refusals(void **state)
{
	struct th_fixture *f = *state;
	char *dyn = path_in(f, "d.vhd"), *fixed = path_in(f, "f.vhd");
	char *img = path_in(f, "img.vhd");
	uint64_t end;

	qemu_create("vpc", NULL, dyn, "1G");
	qemu_create("vpc", "subformat=fixed", fixed, "16M");

	/* qemu-img cannot make a differencing VHD: patch the type. */
	copy_file(dyn, img);
	vhd_patch_footer(img, 60, 4, 4, true);
	th_assert_refused_with(img, "vhd-differencing");
	copy_file(fixed, img);
	vhd_patch_footer(img, 60, 4, 4, false);
	th_assert_refused_with(img, "vhd-differencing");
	/* A dynamic disk whose header names a parent. */
	copy_file(dyn, img);
	patch_be(img, 512 + 576, 0x57326b75, 4); /* locator "W2ku" */
	th_assert_refused_with(img, "vhd-differencing");

	copy_file(dyn, img);
	patch_be(img, 60, 0x12345678, 4); /* checksum now wrong */
	assert_null(qemu_info(img, "vpc"));
	th_assert_refused_with(img, "vhd-checksum");

	copy_file(dyn, img);
	patch_be(img, 512 + 16, 1ull << 40, 8); /* BAT offset */
	th_assert_refused_with(img, "header-bounds");
	copy_file(dyn, img);
	patch_be(img, 512 + 28, 0x40000000, 4); /* BAT entries: 4 GiB */
	th_assert_refused_with(img, "table-size-limit");
	copy_file(dyn, img);
	vhd_patch_footer(img, 16, 1ull << 40, 8, true); /* header offset */
	th_assert_refused_with(img, "header-bounds");
	copy_file(dyn, img);
	patch_be(img, 512 + 32, 3000, 4); /* block size */
	th_assert_refused_with(img, "vhd-header");

	/* A fixed disk whose data was cut off. */
	copy_file(fixed, img);
	end = th_file_size(img) - 512;
	{
		unsigned char footer[512];

		read_at(img, footer, sizeof(footer), end);
		set_size(img, 4096);
		th_pwrite_at(img, footer, sizeof(footer), 4096);
	}
	th_assert_refused_with(img, "header-bounds");
	free(dyn);
	free(fixed);
	free(img);
}

/* --- VHDX ---------------------------------------------------------------- */

static uint32_t crc32c(const unsigned char *b, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= b[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

/* Recompute the CRC-32C of the `len`-byte structure at `off`. */
static void vhdx_fix_crc(const char *path, uint64_t off, size_t len)
{
	unsigned char *b = malloc(len);

	assert_non_null(b);
	read_at(path, b, len, off);
	memset(b + 4, 0, 4);
	patch_le(path, off + 4, crc32c(b, len), 4);
	free(b);
}

#define VHDX_H1 (64 * KiB)
#define VHDX_H2 (128 * KiB)
#define VHDX_RT (192 * KiB)

static uint64_t vhdx_metadata_offset(const char *path)
{
	unsigned char rt[16 + 2 * 32];
	static const unsigned char meta_guid[4] = {0x06, 0xa2, 0x7c, 0x8b};

	read_at(path, rt, sizeof(rt), VHDX_RT);
	for (int i = 0; i < 2; i++)
		if (memcmp(rt + 16 + 32 * i, meta_guid, 4) == 0)
			return get_le(rt + 16 + 32 * i + 16, 8);
	fail_msg("no metadata region in %s", path);
	return 0;
}

/* The metadata table entry whose GUID starts with `guid4`. */
static uint64_t vhdx_item_entry(const char *path, const unsigned char *guid4)
{
	uint64_t meta = vhdx_metadata_offset(path);
	unsigned char e[32];

	for (int i = 0; i < 16; i++) {
		read_at(path, e, sizeof(e), meta + 32 + 32 * (uint64_t)i);
		if (memcmp(e, guid4, 4) == 0)
			return meta + 32 + 32 * (uint64_t)i;
	}
	fail_msg("no such metadata item in %s", path);
	return 0;
}

static const unsigned char file_params_guid[4] = {0x37, 0x67, 0xa1, 0xca};
static const unsigned char page83_guid[4] = {0xab, 0x12, 0xca, 0xbe};

static void test_vhdx_matches_qemu(void **state)
{
	struct th_fixture *f = *state;
	char *img = path_in(f, "img.vhdx");
	struct vmd_inspect_result r;

	qemu_create("vhdx", NULL, img, "1G");
	assert_matches_qemu(img, VMD_IMG_VHDX, "vhdx");
	inspect(img, &r);
	assert_int_equal(r.cluster_size, 8 * MiB);
	unlink(img);
	qemu_create("vhdx", "subformat=fixed", img, "16M");
	assert_matches_qemu(img, VMD_IMG_VHDX, "vhdx");
	unlink(img);
	qemu_create("vhdx", "block_size=1M", img, "100000256");
	assert_matches_qemu(img, VMD_IMG_VHDX, "vhdx");
	free(img);
}

static void test_vhdx_refusals(void **state)
{
	struct th_fixture *f = *state;
	char *base = path_in(f, "base.vhdx"), *img = path_in(f, "img.vhdx");
	uint64_t entry, meta;
	unsigned char b[16];

	qemu_create("vhdx", NULL, base, "1G");
	meta = vhdx_metadata_offset(base);

	copy_file(base, img);
	patch_le(img, VHDX_RT + 8, 5000, 4); /* region entries */
	vhdx_fix_crc(img, VHDX_RT, 64 * KiB);
	th_assert_refused_with(img, "header-bounds");

	copy_file(base, img);
	patch_le(img, meta + 10, 5000, 2); /* metadata entries */
	th_assert_refused_with(img, "header-bounds");

	copy_file(base, img);
	{
		/* The metadata region moved past the end of the file. */
		unsigned char rt[16 + 2 * 32];

		read_at(img, rt, sizeof(rt), VHDX_RT);
		for (int i = 0; i < 2; i++)
			if (rt[16 + 32 * i] == 0x06)
				patch_le(img, VHDX_RT + 16 + 32 * (uint64_t)i + 16,
				         1ull << 40, 8);
	}
	vhdx_fix_crc(img, VHDX_RT, 64 * KiB);
	th_assert_refused_with(img, "header-bounds");

	copy_file(base, img);
	patch_le(img, VHDX_RT + 8, 3, 4); /* CRC now wrong */
	th_assert_refused_with(img, "vhdx-checksum");

	copy_file(base, img);
	entry = vhdx_item_entry(img, file_params_guid);
	read_at(img, b, 4, entry + 16);
	patch_le(img, meta + get_le(b, 4) + 4, 2, 4); /* HasParent */
	th_assert_refused_with(img, "vhdx-parent");

	copy_file(base, img);
	entry = vhdx_item_entry(img, page83_guid);
	{
		static const unsigned char parent_locator[16] = {
			0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45,
			0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};

		th_pwrite_at(img, parent_locator, 16, entry);
	}
	th_assert_refused_with(img, "vhdx-parent");

	copy_file(base, img);
	entry = vhdx_item_entry(img, page83_guid);
	patch_le(img, entry + 16, 0x7fffffff, 4); /* item offset */
	th_assert_refused_with(img, "header-bounds");

	/* A log to replay, in both headers. */
	copy_file(base, img);
	patch_le(img, VHDX_H1 + 48, 0x1234, 8);
	patch_le(img, VHDX_H2 + 48, 0x1234, 8);
	vhdx_fix_crc(img, VHDX_H1, 4 * KiB);
	vhdx_fix_crc(img, VHDX_H2, 4 * KiB);
	th_assert_refused_with(img, "vhdx-log");

	copy_file(base, img);
	patch_le(img, VHDX_H1 + 66, 2, 2);
	patch_le(img, VHDX_H2 + 66, 2, 2);
	th_assert_refused_with(img, "vhdx-header");
	free(base);
	free(img);
}

/* --- VDI ----------------------------------------------------------------- */

static void test_vdi(void **state)
{
	struct th_fixture *f = *state;
	char *dyn = path_in(f, "d.vdi"), *fixed = path_in(f, "s.vdi");
	char *img = path_in(f, "img.vdi");
	static const struct patched cases[] = {
	        /* blocks in image, and the disk size to match */
	        {0x180, 0x3fffffff, 4, "table-size-limit", 0x170,
	         0x3fffffffull << 20, 8},
	        /* differencing */
	        PATCH(0x4c, 4, 4, "vdi-differencing"),
	        /* parent UUID */
	        PATCH(0x1b8, 0xdeadbeef, 4, "vdi-differencing"),
	        /* block map offset */
	        PATCH(0x154, 0x10000000, 4, "header-bounds"),
	        /* data offset */
	        PATCH(0x158, 0x10000000, 4, "header-bounds"),
	        /* block size QEMU cannot read */
	        PATCH(0x178, 4096, 4, "vdi-header"),
	};

	qemu_create("vdi", NULL, dyn, "1G");
	assert_matches_qemu(dyn, VMD_IMG_VDI, "vdi");
	qemu_create("vdi", "static=on", fixed, "10000000");
	assert_matches_qemu(fixed, VMD_IMG_VDI, "vdi");

	assert_patches_refused(dyn, img, cases, ELEMENTSOF(cases));
	copy_file(fixed, img);
	set_size(img, 8192); /* the data of a fixed image cut off */
	th_assert_refused_with(img, "header-bounds");
	free(dyn);
	free(fixed);
	free(img);
}

/* --- Parallels ----------------------------------------------------------- */

static void test_parallels(void **state)
{
	struct th_fixture *f = *state;
	char *base = path_in(f, "p.hds"), *img = path_in(f, "img.hds");
	static const struct patched cases[] = {
	        /* BAT entries */
	        PATCH(32, 0xfffffff0, 4, "table-size-limit"),
	        /* 4 MiB of BAT in a 1 MiB file */
	        PATCH(32, 0x100000, 4, "header-bounds"),
	        /* data offset */
	        PATCH(48, 0x10000000, 4, "header-bounds"),
	        /* format extension */
	        PATCH(56, UINT64_MAX / 2, 8, "header-bounds"),
	        /* version */
	        PATCH(16, 3, 4, "parallels-header"),
	        /* cluster size 0 */
	        PATCH(28, 0, 4, "parallels-header"),
	};

	qemu_create("parallels", NULL, base, "1G");
	assert_matches_qemu(base, VMD_IMG_PARALLELS, "parallels");
	unlink(base);
	qemu_create("parallels", NULL, base, "100000256");
	assert_matches_qemu(base, VMD_IMG_PARALLELS, "parallels");

	assert_patches_refused(base, img, cases, ELEMENTSOF(cases));
	free(base);
	free(img);
}

/* --- LUKS ---------------------------------------------------------------- */

static void test_luks(void **state)
{
	struct th_fixture *f = *state;
	char *v1 = path_in(f, "v1.luks"), *v2 = path_in(f, "v2.luks");
	const char *argv[] = {"qemu-img", "create", "-q", "-f", "luks",
	                      "--object", "secret,id=s0,data=abc", "-o",
	                      "key-secret=s0,iter-time=10", v1, "16M", NULL};
	struct vmd_inspect_result r;
	unsigned char hdr[4096] = {0};
	static const char json[] =
	        "{\"keyslots\":{},\"tokens\":{},\"segments\":{\"0\":"
	        "{\"type\":\"crypt\",\"offset\":\"16777216\",\"size\":"
	        "\"dynamic\",\"iv_tweak\":\"0\",\"encryption\":"
	        "\"aes-xts-plain64\",\"sector_size\":512}},\"digests\":{},"
	        "\"config\":{\"json_size\":\"12288\",\"keyslots_size\":"
	        "\"16744448\"}}";

	th_require_qemu_img();
	th_qemu_img_create_encrypted(argv);
	/* qemu-img info shows the payload size without the key. */
	inspect(v1, &r);
	assert_false(r.safe);
	assert_true(th_has_reason(&r, "luks-encrypted"));
	assert_int_equal(r.format, VMD_IMG_LUKS);
	assert_int_equal(r.version, 1);
	assert_int_equal(r.virtual_size, qemu_vsize(v1, "luks"));

	/* LUKS2, as cryptsetup lays it out (binary header + JSON). */
	memcpy(hdr, "LUKS\xba\xbe\x00\x02", 8);
	put_be(hdr + 8, 0x4000, 8);
	th_pwrite_at(v2, hdr, sizeof(hdr), 0);
	th_pwrite_at(v2, json, sizeof(json) - 1, 4096);
	set_size(v2, 16 * MiB + 8 * MiB);
	inspect(v2, &r);
	assert_false(r.safe);
	assert_true(th_has_reason(&r, "luks-encrypted"));
	assert_int_equal(r.version, 2);
	assert_int_equal(r.virtual_size, 8 * MiB);
	free(v1);
	free(v2);
}

/* --- ISO, GPT, MBR ------------------------------------------------------- */

static void make_file(const char *path, uint64_t size)
{
	unlink(path);
	th_pwrite_at(path, "", 0, 0);
	set_size(path, size);
}

static void write_mbr_entry(const char *path, int i, unsigned status,
                            unsigned type, uint32_t start, uint32_t count)
{
	unsigned char e[16] = {0};

	e[0] = (unsigned char)status;
	e[2] = 2; /* CHS 0/0/2 */
	e[4] = (unsigned char)type;
	put_le(e + 8, start, 4);
	put_le(e + 12, count, 4);
	th_pwrite_at(path, e, sizeof(e), 446 + 16 * (uint64_t)i);
	th_pwrite_at(path, "\x55\xaa", 2, 510);
}

/* Protective MBR + GPT header at LBA 1 (sector size `ss`). */
static void write_gpt(const char *path, uint64_t size, unsigned ss)
{
	unsigned char h[92] = {0};

	write_mbr_entry(path, 0, 0, 0xee, 1,
	                (uint32_t)(size / ss - 1 > 0xffffffffu
	                                   ? 0xffffffffu
	                                   : size / ss - 1));
	memcpy(h, "EFI PART", 8);
	put_le(h + 8, 0x00010000, 4);
	put_le(h + 12, 92, 4);
	put_le(h + 24, 1, 8);
	put_le(h + 32, size / ss - 1, 8);
	put_le(h + 40, 34, 8);
	put_le(h + 48, size / ss - 34, 8);
	put_le(h + 72, 2, 8);
	put_le(h + 80, 128, 4);
	put_le(h + 84, 128, 4);
	th_pwrite_at(path, h, sizeof(h), ss);
}

static void assert_raw_like(const char *path, enum vmd_image_format fmt)
{
	struct vmd_inspect_result r;

	inspect(path, &r);
	if (!r.safe)
		print_reasons(&r);
	assert_true(r.safe);
	assert_string_equal(vmd_image_format_name(r.format),
	                    vmd_image_format_name(fmt));
	assert_int_equal(r.virtual_size, th_file_size(path));
	assert_int_equal(r.virtual_size, qemu_vsize(path, "raw"));
}

static void test_iso(void **state)
{
	struct th_fixture *f = *state;
	char *iso = path_in(f, "cd.iso"), *udf = path_in(f, "udf.iso");
	unsigned char pvd[2048] = {0};

	th_require_qemu_img();
	make_file(iso, 4 * MiB);
	pvd[0] = 1;
	memcpy(pvd + 1, "CD001", 5);
	pvd[6] = 1;
	put_le(pvd + 80, 2048, 4);
	put_be(pvd + 84, 2048, 4);
	put_le(pvd + 128, 2048, 2);
	th_pwrite_at(iso, pvd, sizeof(pvd), 0x8000);
	assert_raw_like(iso, VMD_IMG_ISO);
	/* A hybrid ISO (also an MBR disk) is an ISO, not ambiguous. */
	write_mbr_entry(iso, 0, 0x80, 0x17, 1, 8191);
	assert_raw_like(iso, VMD_IMG_ISO);
	/* ... and a hybrid with a GPT too. */
	write_gpt(iso, 4 * MiB, 512);
	assert_raw_like(iso, VMD_IMG_ISO);

	make_file(udf, 4 * MiB);
	memset(pvd, 0, sizeof(pvd));
	memcpy(pvd + 1, "BEA01", 5);
	th_pwrite_at(udf, pvd, sizeof(pvd), 0x8000);
	memcpy(pvd + 1, "NSR02", 5);
	th_pwrite_at(udf, pvd, sizeof(pvd), 0x8800);
	memcpy(pvd + 1, "TEA01", 5);
	th_pwrite_at(udf, pvd, sizeof(pvd), 0x9000);
	assert_raw_like(udf, VMD_IMG_ISO);
	free(iso);
	free(udf);
}

static void test_gpt_mbr(void **state)
{
	struct th_fixture *f = *state;
	char *img = path_in(f, "disk.img");
	unsigned char vbr[512] = {0};
	const char *mkfs[] = {"mkfs.ext4", "-q", "-F", img, NULL};
	struct vmd_inspect_result r;

	th_require_qemu_img();
	make_file(img, 8 * MiB);
	write_gpt(img, 8 * MiB, 512);
	assert_raw_like(img, VMD_IMG_GPT);
	inspect(img, &r);
	assert_true(r.matched & (1u << VMD_IMG_MBR)); /* protective MBR */
	/* Impossible header values are data, not a reason to refuse. */
	patch_le(img, 512 + 72, UINT64_MAX, 8);
	patch_le(img, 512 + 80, 0xffffffff, 4);
	assert_raw_like(img, VMD_IMG_GPT);

	make_file(img, 8 * MiB);
	write_gpt(img, 8 * MiB, 4096);
	assert_raw_like(img, VMD_IMG_GPT);

	make_file(img, 8 * MiB);
	write_mbr_entry(img, 0, 0x80, 0x83, 2048, 8192);
	write_mbr_entry(img, 1, 0x00, 0x82, 10240, 6144);
	assert_raw_like(img, VMD_IMG_MBR);
	/* The MBR probe is as loose as oslo.utils' (a boot signature and no
	 * FAT boot sector) so that the ambiguity check sees what oslo sees:
	 * a bad status byte, an entry over sector 0 or a bare signature are
	 * still "mbr" (raw-like and safe on their own). */
	write_mbr_entry(img, 2, 0x12, 0x83, 1, 1);
	assert_raw_like(img, VMD_IMG_MBR);
	make_file(img, 8 * MiB);
	write_mbr_entry(img, 0, 0x80, 0x83, 0, 8192);
	assert_raw_like(img, VMD_IMG_MBR);
	make_file(img, 8 * MiB);
	th_pwrite_at(img, "\x55\xaa", 2, 510);
	assert_raw_like(img, VMD_IMG_MBR);
	/* GPT without a protective MBR (Linux reads it with gpt=force). */
	make_file(img, 8 * MiB);
	th_pwrite_at(img, "EFI PART", 8, 512);
	assert_raw_like(img, VMD_IMG_GPT);

	/* A FAT boot sector (no partition table) is a file system. */
	make_file(img, 8 * MiB);
	memcpy(vbr, "\xeb\x3c\x90MSDOS5.0", 11);
	put_le(vbr + 11, 512, 2);
	vbr[13] = 4;
	put_le(vbr + 14, 4, 2);
	vbr[16] = 2;
	vbr[21] = 0xf8;
	vbr[510] = 0x55;
	vbr[511] = 0xaa;
	th_pwrite_at(img, vbr, sizeof(vbr), 0);
	assert_raw_like(img, VMD_IMG_RAW);
	/* Boot code bytes that look like a partition entry: Linux's msdos
	 * reader finds that partition, so it is an MBR too. */
	vbr[446 + 4] = 0x06;
	vbr[446 + 8] = 1;
	vbr[446 + 12] = 1;
	th_pwrite_at(img, vbr, sizeof(vbr), 0);
	assert_raw_like(img, VMD_IMG_MBR);

	/* An ext4 file system without a partition table. */
	make_file(img, 8 * MiB);
	th_run_ok(mkfs, false);
	assert_raw_like(img, VMD_IMG_RAW);
	free(img);
}

/* One file, two headers: refused whatever either says. */
static void test_ambiguous(void **state)
{
	struct th_fixture *f = *state;
	char *img = path_in(f, "two.img");
	struct vmd_inspect_result r;

	unlink(img);
	qemu_create("qcow2", "compat=0.10", img, "64M");
	write_gpt(img, 64 * MiB, 512);
	th_assert_refused_with(img, "ambiguous-format");
	inspect(img, &r);
	assert_true(r.matched & (1u << VMD_IMG_QCOW2));
	assert_true(r.matched & (1u << VMD_IMG_GPT));

	unlink(img);
	qemu_create("vmdk", NULL, img, "64M");
	write_gpt(img, 64 * MiB, 512);
	th_assert_refused_with(img, "ambiguous-format");

	unlink(img);
	qemu_create("vdi", NULL, img, "64M");
	th_pwrite_at(img, "KDMV", 4, 0);
	th_assert_refused_with(img, "ambiguous-format");
	free(img);
}

/*
 * Issue 14, defect 5: a qcow2 v3 image (its feature-name table fills
 * bytes 0x80-0x207) with a protective MBR entry, the boot signature and a
 * GPT header planted in cluster 0 was "qcow2, safe": the old MBR probe
 * wanted four clean partition entries. oslo.utils refuses it ("multiple
 * formats detected"), and so must we, for every format that can carry
 * another's marks: each image from qemu-img gets (a) only the boot
 * signature (oslo's MBR match), (b) a protective entry + GPT header,
 * (c) an ISO primary volume descriptor at 0x8000.
 */
static void test_ambiguous_every_pair(void **state)
{
	struct th_fixture *f = *state;
	static const struct {
		const char *fmt, *opts;
		enum vmd_image_format want;
	} bases[] = {
		{"qcow2", NULL, VMD_IMG_QCOW2},
		{"qcow2", "compat=0.10", VMD_IMG_QCOW2},
		{"vmdk", NULL, VMD_IMG_VMDK},
		{"vmdk", "subformat=streamOptimized", VMD_IMG_VMDK},
		{"vpc", NULL, VMD_IMG_VHD},
		{"vhdx", NULL, VMD_IMG_VHDX},
		{"vdi", NULL, VMD_IMG_VDI},
		{"parallels", NULL, VMD_IMG_PARALLELS},
	};
	char *base = path_in(f, "base.img"), *img = path_in(f, "img.img");
	unsigned char pvd[2048] = {0};
	struct vmd_inspect_result r;

	pvd[0] = 1;
	memcpy(pvd + 1, "CD001", 5);
	pvd[6] = 1;
	for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
		unlink(base);
		qemu_create(bases[i].fmt, bases[i].opts, base, "64M");
		inspect(base, &r);
		assert_int_equal(r.format, bases[i].want);
		assert_true(r.safe);
		for (int mark = 0; mark < 3; mark++) {
			copy_file(base, img);
			if (mark == 0)
				th_pwrite_at(img, "\x55\xaa", 2, 510);
			else if (mark == 1)
				write_gpt(img, 64 * MiB, 512);
			else
				th_pwrite_at(img, pvd, sizeof(pvd), 0x8000);
			inspect(img, &r);
			if (r.safe || !th_has_reason(&r, "ambiguous-format") ||
			    !(r.matched & (1u << bases[i].want))) {
				print_reasons(&r);
				fail_msg("%s %s, mark %d: not refused as "
				         "ambiguous (format %s)",
				         bases[i].fmt,
				         bases[i].opts ? bases[i].opts : "",
				         mark, vmd_image_format_name(r.format));
			}
		}
	}
	free(base);
	free(img);
}

/* --- formats QEMU opens that we never accept ------------------------------ */

/* `qemu-img info` without -f: what QEMU's own probe makes of the file
 * (only ever run on the harmless files made here). */
static char *qemu_probe(const char *path)
{
	const char *argv[] = {"qemu-img", "info", "--output=json", path, NULL};
	char *out = NULL, *fmt = NULL;
	struct json_object *o, *v;

	if (th_run(argv, NULL, &out, NULL) == 0 &&
	    (o = json_tokener_parse(out)) != NULL) {
		if (json_object_object_get_ex(o, "format", &v))
			fmt = strdup(json_object_get_string(v));
		json_object_put(o);
	}
	free(out);
	return fmt;
}

static void assert_refused_as(const char *path, enum vmd_image_format fmt,
                              const char *code)
{
	struct vmd_inspect_result r;

	th_assert_refused_with(path, code);
	inspect(path, &r);
	assert_string_equal(vmd_image_format_name(r.format),
	                    vmd_image_format_name(fmt));
}

/*
 * Issue 14, defect 11: a format the inspector did not know was "raw,
 * safe", so a QED image with a backing file passed. QED, Bochs, cloop and
 * DMG are now recognised by magic and refused by name.
 */
static void test_legacy_formats(void **state)
{
	struct th_fixture *f = *state;
	char *qed = path_in(f, "a.qed"), *child = path_in(f, "child.qed");
	char *decoy = path_in(f, "decoy.raw"), *bochs = path_in(f, "b.img");
	char *cloop = path_in(f, "c.img"), *dmg = path_in(f, "d.img");
	char *tiny = path_in(f, "tiny.img"), *fmt;
	const char *mkchild[] = {"qemu-img", "create", "-q", "-f", "qed", "-b",
	                         decoy, "-F", "raw", child, "1M", NULL};
	static const char cloop_magic[] =
		"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount "
		"-r -t iso9660 /dev/cloop $1\n";
	unsigned char h[512] = {0}, c[128 + 8 + 16] = {0};
	struct vmd_inspect_result r;

	qemu_create("qed", NULL, qed, "64M");
	assert_refused_as(qed, VMD_IMG_QED, "qed-unsupported");
	th_write_pattern(decoy, 1 * MiB, 3);
	th_run_ok(mkchild, false);
	assert_refused_as(child, VMD_IMG_QED, "qed-backing-file");
	inspect(child, &r);
	assert_string_equal(r.backing_file, decoy);
	assert_int_equal(r.virtual_size, 1 * MiB);

	/* Bochs "Redolog/Growing" v2 header: QEMU's probe says bochs. */
	memcpy(h, "Bochs Virtual HD Image", 22);
	memcpy(h + 32, "Redolog", 7);
	memcpy(h + 48, "Growing", 7);
	put_le(h + 64, 0x00020000, 4);
	put_le(h + 68, 512, 4);
	put_le(h + 72, 8, 4);     /* catalog entries */
	put_le(h + 76, 1, 4);     /* bitmap */
	put_le(h + 80, 4096, 4);  /* extent */
	put_le(h + 88, 32768, 8); /* disk size */
	unlink(bochs);
	th_pwrite_at(bochs, h, sizeof(h), 0);
	th_pwrite_at(bochs, "\xff\xff\xff\xff\xff\xff\xff\xff", 8, 512);
	set_size(bochs, 512 + 32 + 32768);
	fmt = qemu_probe(bochs);
	assert_non_null(fmt);
	assert_string_equal(fmt, "bochs");
	free(fmt);
	assert_refused_as(bochs, VMD_IMG_BOCHS, "bochs-unsupported");

	/* cloop V2.0: the script header, block size, block count, offsets. */
	memcpy(c, cloop_magic, sizeof(cloop_magic) - 1);
	put_be(c + 128, 512, 4);
	put_be(c + 132, 1, 4);
	put_be(c + 136, sizeof(c), 8);
	put_be(c + 144, sizeof(c) + 8, 8);
	unlink(cloop);
	th_pwrite_at(cloop, c, sizeof(c), 0);
	th_pwrite_at(cloop, "\x78\x9c\x63\x60\x18\x05\x00\x00", 8, sizeof(c));
	fmt = qemu_probe(cloop);
	if (fmt) /* QEMU may fail to open the data; its probe chose cloop */
		assert_string_equal(fmt, "cloop");
	free(fmt);
	assert_refused_as(cloop, VMD_IMG_CLOOP, "cloop-unsupported");
	/* A file shorter than the header that is a prefix of it. */
	unlink(tiny);
	th_pwrite_at(tiny, cloop_magic, 11, 0);
	assert_refused_as(tiny, VMD_IMG_CLOOP, "cloop-unsupported");

	/* DMG: the "koly" trailer in the last 512 bytes. */
	make_file(dmg, 1 * MiB);
	th_pwrite_at(dmg, "koly", 4, 1 * MiB - 512);
	assert_refused_as(dmg, VMD_IMG_DMG, "dmg-unsupported");
	free(qed);
	free(child);
	free(decoy);
	free(bochs);
	free(cloop);
	free(dmg);
	free(tiny);
}

/* --- damage: truncation, read budget, random bytes ----------------------- */

struct sample {
	const char *name, *fmt, *opts, *size;
};

static const struct sample samples[] = {
	{"a.vmdk", "vmdk", NULL, "64M"},
	{"so.vmdk", "vmdk", "subformat=streamOptimized", "64M"},
	{"flat.vmdk", "vmdk", "subformat=monolithicFlat", "1M"},
	{"d.vhd", "vpc", NULL, "64M"},
	{"f.vhd", "vpc", "subformat=fixed", "1M"},
	{"x.vhdx", "vhdx", NULL, "64M"},
	{"d.vdi", "vdi", NULL, "64M"},
	{"s.vdi", "vdi", "static=on", "1M"},
	{"p.hds", "parallels", NULL, "64M"},
};

static void make_samples(struct th_fixture *f)
{
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char *p = path_in(f, samples[i].name);

		qemu_create(samples[i].fmt, samples[i].opts, p,
		            samples[i].size);
		free(p);
	}
}

static void test_truncated_samples(void **state)
{
	struct th_fixture *f = *state;
	static const uint64_t cuts[] = {0, 1, 100, 511, 4096};
	char *img = path_in(f, "cut.img");
	struct vmd_inspect_result r;

	make_samples(f);
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char *p = path_in(f, samples[i].name);

		for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
			int rc;

			copy_file(p, img);
			set_size(img, cuts[k]);
			rc = inspect_limited(img, NULL, &r);
			if (cuts[k] == 0) {
				assert_int_equal(rc, VMD_E_INVAL);
				continue;
			}
			assert_int_equal(rc, 0);
			assert_true(r.format < VMD_IMG_FORMAT_COUNT);
			assert_true(r.n_reasons <= VMD_INSPECT_MAX_REASONS);
			/* A surviving header must not claim data it cannot
			 * have: 100 bytes of a sparse format is never a
			 * usable image. */
			if (cuts[k] == 100 && r.format != VMD_IMG_RAW)
				assert_false(r.safe);
		}
		free(p);
	}
	free(img);
}

static void test_small_read_budget(void **state)
{
	struct th_fixture *f = *state;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;

	make_samples(f);
	vmd_inspect_limits_default(&lim);
	lim.max_read_bytes = 70000;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char *p = path_in(f, samples[i].name);
		int rc = inspect_limited(p, &lim, &r);

		/* Completed: an answer, or "budget exhausted" for VHDX,
		 * whose headers and region table (8 + 64 KiB) alone are
		 * more than the budget. */
		assert_int_equal(rc, strcmp(samples[i].fmt, "vhdx") == 0
		                             ? VMD_E_IO
		                             : 0);
		free(p);
	}
}

/* Random damage where the formats keep their metadata (the first 300 KiB,
 * the VHDX metadata region, the last sectors), inspected from memory:
 * never a crash, never an out-of-bounds read (ASan build). */
static void test_random_damage(void **state)
{
	struct th_fixture *f = *state;
	static const uint64_t hot[] = {0, 64 * KiB, 128 * KiB, 192 * KiB,
	                               3 * MiB};
	uint32_t x = 12345;

	make_samples(f);
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		char *p = path_in(f, samples[i].name);
		size_t len;
		unsigned char *orig = slurp(p, &len), *b = malloc(len);

		assert_non_null(b);
		for (int iter = 0; iter < 300; iter++) {
			struct vmd_inspect_result r;
			struct vmd_error err = VMD_ERROR_INIT;

			memcpy(b, orig, len);
			for (int k = 0; k < 1 + iter % 16; k++) {
				uint64_t base;
				size_t at;

				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				base = x % 7 < 5 ? hot[x % 7]
				                 : (len > 1536 ? len - 1536 : 0);
				at = (size_t)(base + (x >> 8) % (64 * KiB));
				if (at >= len)
					at = (x >> 8) % len;
				b[at] = (unsigned char)(x >> 24);
				if (x & 0x200 && at + 8 <= len)
					memset(b + at, x & 0x400 ? 0xff : 0, 8);
			}
			(void)vmd_inspect_buffer(b, len, NULL, 0, &r, &err);
		}
		free(orig);
		free(b);
		free(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, th_setup, th_teardown)
		T(test_vmdk_matches_qemu),
		T(test_vmdk_descriptor_only_refused),
		T(test_vmdk_descriptor_attacks),
		T(test_vmdk_parent_refused),
		T(test_vmdk_parent_hint_decoy),
		T(test_vmdk_header_checks),
		T(test_vmdk_footer),
		T(test_vmdk_huge_descriptor_bounded),
		T(test_vpc_matches_qemu),
		T(test_vpc_refusals),
		T(test_vhdx_matches_qemu),
		T(test_vhdx_refusals),
		T(test_vdi),
		T(test_parallels),
		T(test_luks),
		T(test_iso),
		T(test_gpt_mbr),
		T(test_ambiguous),
		T(test_ambiguous_every_pair),
		T(test_legacy_formats),
		T(test_truncated_samples),
		T(test_small_read_budget),
		T(test_random_damage),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
