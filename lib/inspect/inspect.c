/*
 * The inspector's core (see include/vmdisk/inspect.h and lib/inspect.h).
 *
 * 1. Read the head (64 KiB) and tail (512 bytes) of the image once.
 * 2. Run every format's probe over those bytes.
 * 3. More than one match is "ambiguous" and refused, except the overlaps
 *    listed (and justified) in benign_overlaps[]: GPT always carries a
 *    protective MBR, a hybrid ISO is also an MBR and/or GPT disk, and a
 *    fixed VHD is a raw disk with a footer.
 * 4. The winning format's inspect() fills the result; raw-like formats
 *    (raw, gpt, mbr, iso) have no inspect() and keep the file's length as
 *    virtual size; formats recognised only to be refused (bochs, cloop,
 *    dmg) have no inspect() either and get their table's refusal.
 * 5. Checks every format shares (virtual size limit) run last.
 * Reads go through vmd_src_read(), which enforces the read budget. The
 * source is a file, bytes in memory, or a sparse file in memory (chunks at
 * offsets, zeros elsewhere: the fuzz target's way to reach large offsets).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "fsutil.h"
#include "inspect.h"

#define MiB (1024ull * 1024)

static const struct vmd_format_ops *const formats[] = {
	&vmd_format_qcow2, &vmd_format_vmdk, &vmd_format_vhd,
	&vmd_format_vhdx,  &vmd_format_vdi,  &vmd_format_iso,
	&vmd_format_luks,  &vmd_format_gpt,  &vmd_format_mbr,
	&vmd_format_parallels,
	&vmd_format_qed,   &vmd_format_bochs, &vmd_format_cloop,
	&vmd_format_dmg,
};

static const char *const format_names[VMD_IMG_FORMAT_COUNT] = {
	[VMD_IMG_RAW] = "raw",     [VMD_IMG_QCOW2] = "qcow2",
	[VMD_IMG_VMDK] = "vmdk",   [VMD_IMG_VHD] = "vpc",
	[VMD_IMG_VHDX] = "vhdx",   [VMD_IMG_VDI] = "vdi",
	[VMD_IMG_ISO] = "iso",     [VMD_IMG_LUKS] = "luks",
	[VMD_IMG_GPT] = "gpt",     [VMD_IMG_MBR] = "mbr",
	[VMD_IMG_PARALLELS] = "parallels",
	[VMD_IMG_QED] = "qed",     [VMD_IMG_BOCHS] = "bochs",
	[VMD_IMG_CLOOP] = "cloop", [VMD_IMG_DMG] = "dmg",
};

const char *vmd_image_format_name(enum vmd_image_format f)
{
	return (unsigned)f < VMD_IMG_FORMAT_COUNT ? format_names[f] : "unknown";
}

bool vmd_image_format_is_raw(enum vmd_image_format f)
{
	return f == VMD_IMG_RAW || f == VMD_IMG_GPT || f == VMD_IMG_MBR ||
	       f == VMD_IMG_ISO;
}

void vmd_inspect_limits_default(struct vmd_inspect_limits *l)
{
	l->max_virtual_size = 1024ull * 1024 * MiB; /* 1 TiB */
	l->max_table_size = 32 * MiB;
	l->max_read_bytes = 4 * MiB;
}

/* Saturating: an overflowed offset or size is UINT64_MAX, which every
 * "within the file / below the limit" test then rejects. */
uint64_t vmd_add_sat(uint64_t a, uint64_t b)
{
	uint64_t v;

	return __builtin_add_overflow(a, b, &v) ? UINT64_MAX : v;
}

uint64_t vmd_mul_sat(uint64_t a, uint64_t b)
{
	uint64_t v;

	return __builtin_mul_overflow(a, b, &v) ? UINT64_MAX : v;
}

/* len bytes hold n bytes at off (no overflow: off <= len is checked
 * first). */
static bool holds(size_t len, size_t off, size_t n)
{
	return off <= len && len - off >= n;
}

uint16_t vmd_le16_at(const unsigned char *b, size_t len, size_t off)
{
	if (!holds(len, off, 2))
		return 0;
	return (uint16_t)(b[off] | b[off + 1] << 8);
}

uint32_t vmd_le32_at(const unsigned char *b, size_t len, size_t off)
{
	return holds(len, off, 4) ? vmd_le32(b + off) : 0;
}

uint64_t vmd_le64_at(const unsigned char *b, size_t len, size_t off)
{
	return holds(len, off, 8) ? vmd_le64(b + off) : 0;
}

uint32_t vmd_be32_at(const unsigned char *b, size_t len, size_t off)
{
	return holds(len, off, 4) ? vmd_be32(b + off) : 0;
}

uint64_t vmd_be64_at(const unsigned char *b, size_t len, size_t off)
{
	return holds(len, off, 8) ? vmd_be64(b + off) : 0;
}

bool vmd_bytes_at(const unsigned char *b, size_t len, size_t off,
                  const void *want, size_t wlen)
{
	return holds(len, off, wlen) && memcmp(b + off, want, wlen) == 0;
}

/* buf[0..n) = the sparse file's bytes at off (off + n <= size). */
static void sparse_read(const struct vmd_image_source *src, void *buf,
                        size_t n, uint64_t off) VMD_NO_COVERAGE;

static void sparse_read(const struct vmd_image_source *src, void *buf,
                        size_t n, uint64_t off)
{
	uint64_t end = off + n; /* <= src->size: vmd_src_read clipped n */

	memset(buf, 0, n);
	for (size_t i = 0; i < src->n_chunks; i++) {
		const struct vmd_inspect_chunk *c = &src->chunks[i];
		uint64_t c_end, from, to;

		if (__builtin_add_overflow(c->offset, (uint64_t)c->len, &c_end))
			c_end = UINT64_MAX;
		from = c->offset > off ? c->offset : off;
		to = c_end < end ? c_end : end;
		if (from < to)
			memcpy((unsigned char *)buf + (from - off),
			       (const unsigned char *)c->data +
			               (from - c->offset),
			       (size_t)(to - from));
	}
}

long vmd_src_read(struct vmd_image_source *src, void *buf, size_t len,
                  uint64_t off)
{
	size_t n;

	if (off >= src->size)
		return 0;
	n = src->size - off < len ? (size_t)(src->size - off) : len;
	if (n > src->budget)
		return -1;
	src->budget -= n;
	if (src->sparse) {
		sparse_read(src, buf, n, off);
		return (long)n;
	}
	if (src->mem) {
		memcpy(buf, src->mem + off, n);
		return (long)n;
	}
	if (vmd_pread_full(src->fd, buf, n, off) < 0)
		return -1;
	return (long)n;
}

long vmd_probe_read(struct vmd_image_source *src,
                    const struct vmd_probe_data *p, void *buf, size_t len,
                    uint64_t off)
{
	/* Served from the probe buffers when they hold the range: free, and
	 * not counted against the read budget a second time. */
	if (off < p->head_len && len <= p->head_len - off) {
		memcpy(buf, p->head + off, len);
		return (long)len;
	}
	if (p->tail_len && off >= p->file_size - p->tail_len &&
	    off <= p->file_size && len <= p->file_size - off) {
		memcpy(buf, p->tail + (off - (p->file_size - p->tail_len)),
		       len);
		return (long)len;
	}
	return vmd_src_read(src, buf, len, off);
}

/* strcmp without the fuzzer's hooks: refusals repeat once per line of a
 * bad descriptor. */
static bool same_code(const char *a, const char *b) VMD_NO_COVERAGE;

static bool same_code(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

void vmd_inspect_refuse(struct vmd_inspect_result *r, const char *code,
                        const char *fmt, ...)
{
	struct vmd_inspect_reason *reason;
	va_list ap;

	r->safe = false;
	for (unsigned i = 0; i < r->n_reasons; i++)
		if (same_code(r->reasons[i].code, code))
			return; /* one line per check is enough */
	if (r->n_reasons >= VMD_INSPECT_MAX_REASONS)
		return;
	reason = &r->reasons[r->n_reasons++];
	snprintf(reason->code, sizeof(reason->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(reason->text, sizeof(reason->text), fmt, ap);
	va_end(ap);
	/* The text comes partly from the image: keep it one printable line. */
	for (char *c = reason->text; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
			*c = '?';
}

bool vmd_inspect_table_limit(struct vmd_inspect_result *r,
                             const struct vmd_inspect_limits *lim,
                             const char *what, uint64_t bytes)
{
	if (bytes <= lim->max_table_size)
		return false;
	vmd_inspect_refuse(r, "table-size-limit",
	                   "%s of %llu bytes is above the limit %llu", what,
	                   (unsigned long long)bytes,
	                   (unsigned long long)lim->max_table_size);
	return true;
}

/*
 * A fixed VHD is the guest's raw disk followed by a footer: its first
 * sectors are the guest's own MBR, GPT or ISO. (A dynamic VHD starts with
 * its footer copy, "conectix" at offset 0, so it gets no such pass.)
 */
static bool fixed_vhd(const struct vmd_probe_data *p)
{
	return !vmd_bytes_at(p->head, p->head_len, 0, "conectix", 8);
}

#define F(x) (1u << VMD_IMG_##x)

/*
 * The one list of formats that may match the same file. A file whose
 * probes match two or more formats is refused as ambiguous unless every
 * format it matched is in one row here (and the row's condition holds):
 * two readers could otherwise see two different disks in one file (a
 * qcow2 header with a partition table planted in its unused bytes is
 * "qcow2" to qemu-img and a GPT disk to the kernel). Raw is never a match.
 */
static const struct benign_overlap {
	unsigned formats;
	bool (*when)(const struct vmd_probe_data *p); /* NULL: always */
} benign_overlaps[] = {
	/* A GPT disk always starts with a protective (or hybrid) MBR: one
	 * disk described twice, the bytes are the guest's either way. */
	{F(GPT) | F(MBR), NULL},
	/* A bootable hybrid ISO (isohybrid, xorriso) carries an MBR and/or a
	 * GPT so that the same image boots as a CD and from a USB disk; all
	 * three are raw bytes the guest sees. oslo.utils allows this pair
	 * (an ISO with an MBR/GPT) as its one legitimate overlap. */
	{F(ISO) | F(MBR) | F(GPT), NULL},
	/* A fixed VHD: a raw disk (with whatever partition table or ISO it
	 * holds) plus a 512-byte footer at the end. */
	{F(VHD) | F(ISO) | F(MBR) | F(GPT), fixed_vhd},
};

static bool allowed_overlap(unsigned matched, const struct vmd_probe_data *p)
{
	if ((matched & (matched - 1)) == 0)
		return true; /* one format or none */
	for (size_t i = 0;
	     i < sizeof(benign_overlaps) / sizeof(benign_overlaps[0]); i++) {
		const struct benign_overlap *o = &benign_overlaps[i];

		if ((matched & ~o->formats) == 0 && (!o->when || o->when(p)))
			return true;
	}
	return false;
}

static enum vmd_image_format pick_format(unsigned matched,
                                         const struct vmd_probe_data *p)
{
	if (matched == 0)
		return VMD_IMG_RAW;
	if ((matched & F(VHD)) && fixed_vhd(p))
		return VMD_IMG_VHD;
	if (matched & (1u << VMD_IMG_ISO))
		return VMD_IMG_ISO;
	if (matched & (1u << VMD_IMG_GPT))
		return VMD_IMG_GPT;
	for (unsigned f = 0; f < VMD_IMG_FORMAT_COUNT; f++)
		if (matched & (1u << f))
			return (enum vmd_image_format)f;
	return VMD_IMG_RAW;
}

static void names_of(unsigned matched, char *buf, size_t bufsz)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned f = 0; f < VMD_IMG_FORMAT_COUNT; f++) {
		if (!(matched & (1u << f)))
			continue;
		int n = snprintf(buf + o, bufsz - o, "%s%s", o ? ", " : "",
		                 format_names[f]);

		if (n < 0 || (size_t)n >= bufsz - o)
			break;
		o += (size_t)n;
	}
}

static int inspect_source(struct vmd_image_source *src,
                          const struct vmd_inspect_limits *limits_in,
                          unsigned flags, struct vmd_inspect_result *out,
                          struct vmd_error *err)
{
	struct vmd_inspect_limits limits;
	struct vmd_probe_data p = {0};
	unsigned char head[VMD_PROBE_HEAD], tail[VMD_PROBE_TAIL];
	long n;

	if (limits_in)
		limits = *limits_in;
	else
		vmd_inspect_limits_default(&limits);
	memset(out, 0, sizeof(*out));
	out->safe = true;
	out->file_size = src->size;
	if (src->size == 0)
		return vmd_error_set(err, VMD_E_INVAL, "inspect: image is empty",
		                     "zero-length file");
	/* The head lives on the stack (no allocation per image) and is
	 * zero-padded past the file's end, as QEMU's probe buffer is: a
	 * parser that strays past head_len reads zeros, never stale bytes. */
	n = vmd_src_read(src, head, src->size < VMD_PROBE_HEAD
	                                    ? (size_t)src->size
	                                    : VMD_PROBE_HEAD,
	                 0);
	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "inspect: read image failed", "head");
	memset(head + n, 0, VMD_PROBE_HEAD - (size_t)n);
	p.head = head;
	p.head_len = (size_t)n;
	p.tail_len = src->size < VMD_PROBE_TAIL ? (size_t)src->size
	                                        : VMD_PROBE_TAIL;
	n = vmd_src_read(src, tail, p.tail_len, src->size - p.tail_len);
	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "inspect: read image failed", "tail");
	p.tail = tail;
	p.file_size = src->size;

	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (formats[i]->probe(&p))
			out->matched |= 1u << formats[i]->format;
	out->format = pick_format(out->matched, &p);
	out->virtual_size = src->size;
	if (!allowed_overlap(out->matched, &p)) {
		char names[128];

		names_of(out->matched, names, sizeof(names));
		vmd_inspect_refuse(out, "ambiguous-format",
		                   "the image matches more than one format (%s)",
		                   names);
	}
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		const struct vmd_format_ops *f = formats[i];

		if (f->format != out->format)
			continue;
		if (f->unsupported_code)
			vmd_inspect_refuse(out, f->unsupported_code,
			                   "%s images are not supported",
			                   f->unsupported_what);
		if (f->inspect && f->inspect(src, &p, &limits, flags, out) < 0)
			return vmd_error_set(err, VMD_E_IO,
			                     "inspect: read image failed",
			                     "reading %s metadata (or read "
			                     "budget of %llu bytes exhausted)",
			                     f->name,
			                     (unsigned long long)
			                             limits.max_read_bytes);
	}
	if (out->virtual_size > limits.max_virtual_size)
		vmd_inspect_refuse(out, "virtual-size-limit",
		                   "virtual size %llu is above the limit %llu",
		                   (unsigned long long)out->virtual_size,
		                   (unsigned long long)limits.max_virtual_size);
	return 0;
}

int vmd_inspect_fd(int fd, const struct vmd_inspect_limits *limits,
                   unsigned flags, struct vmd_inspect_result *out,
                   struct vmd_error *err)
{
	struct vmd_image_source src = {.fd = fd};
	struct stat st;

	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "inspect: read image failed", "fstat");
	if (!S_ISREG(st.st_mode))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "inspect: not a regular file", "mode %o",
		                     (unsigned)st.st_mode);
	src.size = (uint64_t)st.st_size;
	src.budget = limits ? limits->max_read_bytes : 4 * MiB;
	int rc = inspect_source(&src, limits, flags, out, err);

	if (rc == 0 && out->actual_size == 0)
		out->actual_size = (uint64_t)st.st_blocks * 512;
	return rc;
}

int vmd_inspect_buffer(const void *data, size_t len,
                       const struct vmd_inspect_limits *limits,
                       unsigned flags, struct vmd_inspect_result *out,
                       struct vmd_error *err)
{
	struct vmd_image_source src = {.fd = -1, .mem = data, .size = len};

	src.budget = limits ? limits->max_read_bytes : 4 * MiB;
	return inspect_source(&src, limits, flags, out, err);
}

int vmd_inspect_sparse(const struct vmd_inspect_chunk *chunks, size_t n,
                       uint64_t size, const struct vmd_inspect_limits *limits,
                       unsigned flags, struct vmd_inspect_result *out,
                       struct vmd_error *err)
{
	struct vmd_image_source src = {
		.fd = -1, .size = size, .sparse = true, .chunks = chunks,
		.n_chunks = n};

	if (n && !chunks) {
		memset(out, 0, sizeof(*out));
		return vmd_error_set(err, VMD_E_INVAL,
		                     "inspect: bad sparse image", "no chunks");
	}
	src.budget = limits ? limits->max_read_bytes : 4 * MiB;
	return inspect_source(&src, limits, flags, out, err);
}
