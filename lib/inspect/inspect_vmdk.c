/*
 * VMDK for the inspector: hosted sparse extents ("KDMV"), the legacy COWD
 * header and text descriptor files.
 *
 * A VMDK can name other files: a descriptor's extent lines
 * (`RW 2048 FLAT "/dev/sda" 0`) and its parentFileNameHint (a backing file)
 * are opened by QEMU relative to, or outside, the image's directory. So the
 * only VMDKs we accept are single-file sparse images, monolithicSparse or
 * streamOptimized, whose embedded descriptor holds exactly one SPARSE extent
 * and no parent (oslo.utils' rule after CVE-2024-32498):
 *
 *   - a descriptor-only file (no KDMV header) is refused: its extents can
 *     only be other files;
 *   - the descriptor is read the way QEMU reads it: from the header's
 *     descriptor offset up to the first NUL, at most 1 MiB - 1 bytes, so
 *     nothing hides past the declared descriptor size. Every line must be a
 *     comment, a blank, a ddb line, `key=value` or an extent line. QEMU
 *     finds "createType", "parentFileNameHint" and "parentCID" with a
 *     case-sensitive strstr over the whole text and uses the first match;
 *     we check every occurrence in any case, refuse a key in another case
 *     or given twice, a non-empty parent name and a parentCID other than
 *     ffffffff, so no decoy can make us read a different key than QEMU;
 *   - a header with zero capacity is refused: QEMU then opens the extents
 *     the embedded descriptor lists;
 *   - with gdOffset = GD_AT_END the footer QEMU uses instead of the header
 *     is checked (markers, same version and descriptor) and used.
 * Tables are bounded: the grain directory and a grain table by
 * limits->max_table_size, every offset by the file's length.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "inspect.h"

#define SECTOR 512u
#define HEADER_LEN 79 /* magic .. compressAlgorithm */
#define GD_AT_END UINT64_MAX
#define FLAG_RGD (1u << 1)
#define MAX_GTES_PER_GT 512u    /* QEMU: "L2 table size too big" */
#define MAX_GRAIN 0x200000u     /* sectors; QEMU: "Invalid granularity" */
#define DESC_MAX ((1u << 20) - 1) /* QEMU's bound on a descriptor */
#define DESC_SECTOR 1           /* where QEMU looks for CID and parent */
#define LINE_MAX_LEN 1024
/* A real descriptor has a few dozen lines; more is refused and not read
 * further (the image is refused, so no later line can matter). */
#define MAX_LINES 1024
#define CHUNK 4096
#define MARKER_EOS 0
#define MARKER_FOOTER 3

struct sparse_header {
	uint32_t version;
	uint32_t flags;
	uint64_t capacity; /* sectors */
	uint64_t grain;    /* sectors */
	uint64_t desc_offset;
	uint64_t desc_size;
	uint32_t gtes_per_gt;
	uint64_t rgd_offset;
	uint64_t gd_offset;
	uint64_t overhead;
	uint16_t compress;
};

struct desc_parse {
	struct vmd_inspect_result *r;
	char line[LINE_MAX_LEN + 1];
	size_t len;
	bool overflow;
	unsigned line_no;
	unsigned n_extents;
	uint64_t extent_sectors; /* sum over the extent lines, saturating */
	unsigned n_create_type;  /* occurrences of each key, any case */
	unsigned n_parent_hint;
	unsigned n_parent_cid;
	bool done; /* a NUL ended the text */
};


/*
 * QEMU's probe for a descriptor file: comment and blank lines, then a
 * "version=1|2|3" line. We also take a file that starts with the usual
 * "# Disk DescriptorFile" comment.
 */
static bool probe_descriptor(const unsigned char *b, size_t len)
{
	static const char banner[] = "# Disk DescriptorFile";
	size_t i = 0;

	if (vmd_bytes_at(b, len, 0, banner, sizeof(banner) - 1))
		return true;
	while (i < len) {
		if (b[i] == '#') {
			while (i < len && b[i] != '\n')
				i++;
			i++;
			continue;
		}
		if (b[i] == ' ' || b[i] == '\r' || b[i] == '\n') {
			while (i < len && b[i] == ' ')
				i++;
			if (i < len && b[i] == '\r')
				i++;
			if (i >= len || b[i] != '\n')
				return false;
			i++;
			continue;
		}
		if (len - i >= 10 && memcmp(b + i, "version=", 8) == 0 &&
		    b[i + 8] >= '1' && b[i + 8] <= '3')
			return b[i + 9] == '\n' ||
			       (b[i + 9] == '\r' && len - i >= 11 &&
			        b[i + 10] == '\n');
		return false;
	}
	return false;
}

static bool vmdk_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, 0, "KDMV", 4) ||
	       vmd_bytes_at(p->head, p->head_len, 0, "COWD", 4) ||
	       probe_descriptor(p->head, p->head_len);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * QEMU takes an option's value by skipping `name` and two more characters
 * (`="`) and reading up to the next quote. Returns the value's length, or
 * -1 when the line has no closing quote.
 */
static long option_value(const char *line, size_t len, const char *at,
                         size_t name_len, const char **value)
{
	size_t start = (size_t)(at - line) + name_len + 2;
	const char *q;

	if (start > len)
		return -1;
	q = memchr(line + start, '"', len - start);
	if (!q)
		return -1;
	*value = line + start;
	return (long)(q - (line + start));
}

/*
 * One descriptor key as QEMU reads it: strstr() (case-sensitive, anywhere,
 * comments included) and the first match in the whole text wins. We look
 * at every occurrence in any letter case, so a decoy QEMU skips cannot
 * hide the one it uses: a key in another case, or a key given twice, is
 * refused (parse_descriptor counts them over the whole text).
 */
static void check_create_type(struct desc_parse *d, const char *line,
                              size_t len, const char *at)
{
	const char *v;
	long n = option_value(line, len, at, sizeof("createType") - 1, &v);

	if (n < 0)
		vmd_inspect_refuse(d->r, "vmdk-create-type",
		                   "vmdk: malformed createType on descriptor "
		                   "line %u",
		                   d->line_no);
	else if (!((n == 16 && memcmp(v, "monolithicSparse", 16) == 0) ||
	           (n == 15 && memcmp(v, "streamOptimized", 15) == 0)))
		vmd_inspect_refuse(d->r, "vmdk-create-type",
		                   "vmdk: createType \"%.*s\" is not "
		                   "monolithicSparse or streamOptimized",
		                   n > 40 ? 40 : (int)n, v);
}

/* QEMU's vmdk_parent_open: the name starts two bytes past the key and
 * runs to the next quote; anything but an empty name is a backing file. */
static void check_parent_hint(struct desc_parse *d, const char *line,
                              size_t len, const char *at)
{
	const char *v;

	if (option_value(line, len, at, sizeof("parentFileNameHint") - 1,
	                 &v) != 0)
		vmd_inspect_refuse(d->r, "vmdk-parent",
		                   "vmdk: the descriptor names a parent image "
		                   "(parentFileNameHint, line %u)",
		                   d->line_no);
}

/* parentCID=ffffffff is "no parent"; anything else is a child image. */
static void check_parent_cid(struct desc_parse *d, const char *line,
                             size_t len, const char *at)
{
	static const char none[] = "=ffffffff";
	size_t start = (size_t)(at - line) + sizeof("parentCID") - 1;
	size_t end = start + sizeof(none) - 1;

	if (end > len || strncasecmp(line + start, none, sizeof(none) - 1) ||
	    (end < len && !is_blank(line[end])))
		vmd_inspect_refuse(d->r, "vmdk-parent",
		                   "vmdk: parentCID on descriptor line %u is not "
		                   "ffffffff (the image has a parent)",
		                   d->line_no);
}

enum { KEY_CREATE_TYPE, KEY_PARENT_HINT, KEY_PARENT_CID, KEY_COUNT };

static const struct desc_key {
	const char *name;
	size_t len;
	const char *code; /* refusal code */
	void (*check)(struct desc_parse *d, const char *line, size_t len,
	              const char *at);
} desc_keys[KEY_COUNT] = {
	[KEY_CREATE_TYPE] = {"createType", 10, "vmdk-create-type",
	                     check_create_type},
	[KEY_PARENT_HINT] = {"parentFileNameHint", 18, "vmdk-parent",
	                     check_parent_hint},
	[KEY_PARENT_CID] = {"parentCID", 9, "vmdk-parent", check_parent_cid},
};

/*
 * The first occurrence of any key, in any letter case, in s[0..len): its
 * index, with the key in *key; or len when there is none. One pass over
 * the line for all keys.
 */
static size_t next_key(const char *s, size_t len, size_t *key)
	VMD_NO_COVERAGE;

static size_t next_key(const char *s, size_t len, size_t *key)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i] | 0x20;

		if (c != 'c' && c != 'p')
			continue;
		for (size_t k = 0; k < KEY_COUNT; k++) {
			const struct desc_key *dk = &desc_keys[k];
			size_t j = 0;

			if (len - i < dk->len)
				continue;
			/* | 0x20 folds ASCII letters; keys are letters. */
			while (j < dk->len && ((unsigned char)s[i + j] | 0x20) ==
			                              ((unsigned char)dk->name[j] |
			                               0x20))
				j++;
			if (j == dk->len) {
				*key = k;
				return i;
			}
		}
	}
	return len;
}

/* Every occurrence of every key: counted (parse_descriptor refuses a key
 * given twice), refused in another letter case, its value checked. */
static void check_options(struct desc_parse *d, const char *line, size_t len)
{
	unsigned *count[KEY_COUNT] = {&d->n_create_type, &d->n_parent_hint,
	                              &d->n_parent_cid};
	size_t off = 0, at, k;

	while ((at = next_key(line + off, len - off, &k)) < len - off) {
		const struct desc_key *dk = &desc_keys[k];
		const char *p = line + off + at;

		(*count[k])++;
		if (memcmp(p, dk->name, dk->len) != 0)
			vmd_inspect_refuse(d->r, dk->code,
			                   "vmdk: \"%s\" in another letter case "
			                   "on descriptor line %u",
			                   dk->name, d->line_no);
		dk->check(d, line, len, p);
		off += at + dk->len;
	}
}

static size_t skip_blank(const char *s, size_t i, size_t len)
	VMD_NO_COVERAGE;
static size_t skip_word(const char *s, size_t i, size_t len) VMD_NO_COVERAGE;
static size_t trim_end(const char *s, size_t start, size_t end)
	VMD_NO_COVERAGE;

static size_t trim_end(const char *s, size_t start, size_t end)
{
	while (end > start && is_blank(s[end - 1]))
		end--;
	return end;
}

static size_t skip_blank(const char *s, size_t i, size_t len)
{
	while (i < len && is_blank(s[i]))
		i++;
	return i;
}

static size_t skip_word(const char *s, size_t i, size_t len)
{
	while (i < len && !is_blank(s[i]))
		i++;
	return i;
}

/* Decimal digits at s[*i..]; false when none or on overflow. */
static bool parse_u64(const char *s, size_t *i, size_t len, uint64_t *v)
{
	size_t start = *i;

	*v = 0;
	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		unsigned digit = (unsigned)(s[*i] - '0');

		if (*v > (UINT64_MAX - digit) / 10)
			return false;
		*v = *v * 10 + digit;
		(*i)++;
	}
	return *i > start;
}

struct extent {
	uint64_t sectors;
	const char *type, *name;
	size_t type_len, name_len;
};

/* `ACCESS SECTORS TYPE ["NAME" [OFFSET]]`, nothing else. */
static bool split_extent(const char *s, size_t len, struct extent *e)
{
	size_t i, at;
	uint64_t offset;

	i = skip_blank(s, skip_word(s, 0, len), len);
	if (!parse_u64(s, &i, len, &e->sectors) || i >= len || !is_blank(s[i]))
		return false;
	at = skip_blank(s, i, len);
	i = skip_word(s, at, len);
	e->type = s + at;
	e->type_len = i - at;
	i = skip_blank(s, i, len);
	e->name = NULL;
	e->name_len = 0;
	if (i == len) /* only a ZERO extent has no file */
		return e->type_len == 4 && memcmp(e->type, "ZERO", 4) == 0;
	if (e->type_len == 0 || s[i] != '"')
		return false;
	at = ++i;
	while (i < len && s[i] != '"')
		i++;
	if (i >= len)
		return false;
	e->name = s + at;
	e->name_len = i - at;
	i = skip_blank(s, i + 1, len);
	return i == len ||
	       (parse_u64(s, &i, len, &offset) && skip_blank(s, i, len) == len);
}

static void parse_extent(struct desc_parse *d, const char *s, size_t len)
{
	struct extent e;

	if (!split_extent(s, len, &e)) {
		vmd_inspect_refuse(d->r, "vmdk-extent",
		                   "vmdk: malformed extent on descriptor line %u",
		                   d->line_no);
		return;
	}
	d->n_extents++;
	d->extent_sectors =
	        vmd_add_sat(d->extent_sectors, vmd_mul_sat(e.sectors, SECTOR));
	if (e.type_len != 6 || memcmp(e.type, "SPARSE", 6) != 0)
		vmd_inspect_refuse(d->r, "vmdk-extent",
		                   "vmdk: extent of type %.*s (only a SPARSE "
		                   "extent in the image itself is allowed)",
		                   e.type_len > 16 ? 16 : (int)e.type_len, e.type);
	if (e.name && (e.name_len == 0 || memchr(e.name, '/', e.name_len)))
		vmd_inspect_refuse(d->r, "vmdk-extent",
		                   "vmdk: extent file name \"%.*s\" refers to "
		                   "another file",
		                   e.name_len > 64 ? 64 : (int)e.name_len, e.name);
}

/* Index of the first byte that is neither printable ASCII nor a blank,
 * or len. */
static size_t not_text(const char *s, size_t len) VMD_NO_COVERAGE;

static size_t not_text(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if ((c < 0x20 && !is_blank((char)c)) || c >= 0x7f)
			return i;
	}
	return len;
}

static void parse_line(struct desc_parse *d)
{
	const char *s = d->line, *eq;
	size_t len = d->len, start, end, word, bad;

	d->line_no++;
	if (d->line_no > MAX_LINES) {
		vmd_inspect_refuse(d->r, "vmdk-descriptor",
		                   "vmdk: the descriptor has more than %d lines",
		                   MAX_LINES);
		d->done = true;
		return;
	}
	if (d->overflow) {
		vmd_inspect_refuse(d->r, "vmdk-descriptor",
		                   "vmdk: descriptor line %u is longer than %d "
		                   "bytes",
		                   d->line_no, LINE_MAX_LEN);
		return;
	}
	bad = not_text(s, len);
	if (bad < len) {
		vmd_inspect_refuse(d->r, "vmdk-descriptor",
		                   "vmdk: byte 0x%02x on descriptor line %u is "
		                   "not text",
		                   (unsigned char)s[bad], d->line_no);
		return;
	}
	check_options(d, s, len);
	start = skip_blank(s, 0, len);
	end = trim_end(s, start, len);
	s += start;
	len = end - start;
	if (len == 0 || s[0] == '#' ||
	    (len >= 3 && strncasecmp(s, "ddb", 3) == 0))
		return;
	eq = memchr(s, '=', len);
	if (eq && eq > s) {
		size_t k = (size_t)(eq - s);

		while (k > 0 && is_blank(s[k - 1]))
			k--;
		if (k > 0 && skip_word(s, 0, k) == k)
			return; /* key = value */
	}
	word = skip_word(s, 0, len);
	if ((word == 2 && strncasecmp(s, "RW", 2) == 0) ||
	    (word == 6 && strncasecmp(s, "RDONLY", 6) == 0) ||
	    (word == 8 && strncasecmp(s, "NOACCESS", 8) == 0)) {
		parse_extent(d, s, len);
		return;
	}
	vmd_inspect_refuse(d->r, "vmdk-descriptor",
	                   "vmdk: unexpected text on descriptor line %u",
	                   d->line_no);
}

/* Add b[0..n) to the current line (the rest of a too long line is only
 * noted). */
static void line_append(struct desc_parse *d, const unsigned char *b,
                        size_t n)
{
	size_t room = LINE_MAX_LEN - d->len;

	if (n > room) {
		d->overflow = true;
		n = room;
	}
	memcpy(d->line + d->len, b, n);
	d->len += n;
}

/* Split text into lines at '\n'; a NUL ends the text (QEMU's strings). */
static void desc_feed(struct desc_parse *d, const unsigned char *b, size_t n)
{
	size_t i = 0;

	while (i < n && !d->done) {
		const unsigned char *nl = memchr(b + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - b) : n;
		const unsigned char *nul = memchr(b + i, '\0', end - i);

		if (nul) {
			line_append(d, b + i, (size_t)(nul - (b + i)));
			d->done = true;
			return;
		}
		line_append(d, b + i, end - i);
		if (!nl)
			return;
		parse_line(d);
		d->len = 0;
		d->overflow = false;
		i = end + 1;
	}
}

/*
 * Parse the descriptor QEMU would parse: from `off` to the first NUL, at
 * most DESC_MAX bytes. Returns -1 on a read failure (or an exhausted read
 * budget), else 0 with the findings in d.
 */
static int parse_descriptor(struct vmd_image_source *src,
                            const struct vmd_probe_data *p, uint64_t off,
                            struct desc_parse *d)
{
	unsigned char chunk[CHUNK];
	uint64_t left = DESC_MAX;

	while (!d->done && left > 0 && off < p->file_size) {
		size_t want = left < sizeof(chunk) ? (size_t)left : sizeof(chunk);
		long n = vmd_probe_read(src, p, chunk, want, off);

		if (n < 0)
			return -1;
		if (n == 0)
			break;
		desc_feed(d, chunk, (size_t)n);
		off += (uint64_t)n;
		left -= (uint64_t)n;
	}
	if (d->len || d->overflow)
		parse_line(d);
	if (d->n_create_type == 0)
		vmd_inspect_refuse(d->r, "vmdk-create-type",
		                   "vmdk: the descriptor has no createType");
	if (d->n_create_type > 1)
		vmd_inspect_refuse(d->r, "vmdk-create-type",
		                   "vmdk: createType appears %u times",
		                   d->n_create_type);
	if (d->n_parent_hint > 1 || d->n_parent_cid > 1)
		vmd_inspect_refuse(d->r, "vmdk-parent",
		                   "vmdk: parentFileNameHint or parentCID appears "
		                   "more than once");
	if (d->n_extents != 1)
		vmd_inspect_refuse(d->r, "vmdk-extent",
		                   "vmdk: the descriptor has %u extents (exactly "
		                   "one, in the image itself, is allowed)",
		                   d->n_extents);
	return 0;
}

static void read_sparse_header(const unsigned char *b, size_t len,
                               struct sparse_header *h)
{
	h->version = vmd_le32_at(b, len, 4);
	h->flags = vmd_le32_at(b, len, 8);
	h->capacity = vmd_le64_at(b, len, 12);
	h->grain = vmd_le64_at(b, len, 20);
	h->desc_offset = vmd_le64_at(b, len, 28);
	h->desc_size = vmd_le64_at(b, len, 36);
	h->gtes_per_gt = vmd_le32_at(b, len, 44);
	h->rgd_offset = vmd_le64_at(b, len, 48);
	h->gd_offset = vmd_le64_at(b, len, 56);
	h->overhead = vmd_le64_at(b, len, 64);
	h->compress = vmd_le16_at(b, len, 77);
}

/* A marker sector: u64 value, u32 size, u32 type. */
static bool marker_is(const unsigned char *m, uint32_t type, bool zero_val)
{
	return vmd_le32_at(m, SECTOR, 8) == 0 &&
	       vmd_le32_at(m, SECTOR, 12) == type &&
	       (!zero_val || vmd_le64_at(m, SECTOR, 0) == 0);
}

/*
 * gdOffset = GD_AT_END: QEMU takes the whole header from the footer in the
 * file's last 1536 bytes (footer marker, footer, end-of-stream marker).
 * Returns -1 on a read failure, 1 when the footer is unusable (refused),
 * 0 with *h replaced by the footer.
 */
static int use_footer(struct vmd_image_source *src,
                      const struct vmd_probe_data *p,
                      struct vmd_inspect_result *r, struct sparse_header *h)
{
	unsigned char f[3 * SECTOR];
	struct sparse_header fh;
	long n;

	if (p->file_size < 4 * SECTOR) {
		vmd_inspect_refuse(r, "vmdk-footer",
		                   "vmdk: grain directory at end but the file "
		                   "is too short for a footer");
		return 1;
	}
	n = vmd_probe_read(src, p, f, sizeof(f), p->file_size - sizeof(f));
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(f) || !marker_is(f, MARKER_FOOTER, false) ||
	    !vmd_bytes_at(f, sizeof(f), SECTOR, "KDMV", 4) ||
	    !marker_is(f + 2 * SECTOR, MARKER_EOS, true)) {
		vmd_inspect_refuse(r, "vmdk-footer",
		                   "vmdk: grain directory at end but no valid "
		                   "footer and end-of-stream marker");
		return 1;
	}
	read_sparse_header(f + SECTOR, SECTOR, &fh);
	if (fh.version != h->version || fh.desc_offset != h->desc_offset ||
	    fh.desc_size != h->desc_size || fh.gd_offset == GD_AT_END) {
		vmd_inspect_refuse(r, "vmdk-footer",
		                   "vmdk: the footer does not match the header");
		return 1;
	}
	*h = fh;
	return 0;
}

/* offset (sectors) + len bytes must lie within the file. */
static bool within_file(const struct vmd_probe_data *p, uint64_t sectors,
                        uint64_t len)
{
	return vmd_add_sat(vmd_mul_sat(sectors, SECTOR), len) <= p->file_size;
}

static void check_tables(const struct vmd_probe_data *p,
                         const struct vmd_inspect_limits *lim,
                         struct vmd_inspect_result *r,
                         const struct sparse_header *h)
{
	uint64_t per_gd_entry, gd_entries, gd_bytes, gt_bytes;

	if (h->gtes_per_gt > MAX_GTES_PER_GT || h->gtes_per_gt == 0 ||
	    h->grain == 0 || h->grain > MAX_GRAIN) {
		vmd_inspect_refuse(r, "vmdk-header",
		                   "vmdk: bad grain size %llu or grain table "
		                   "size %u",
		                   (unsigned long long)h->grain, h->gtes_per_gt);
		return;
	}
	per_gd_entry = h->grain * h->gtes_per_gt; /* <= 2^30 */
	gd_entries = h->capacity / per_gd_entry +
	             (h->capacity % per_gd_entry != 0);
	gd_bytes = vmd_mul_sat(gd_entries, 4);
	gt_bytes = (uint64_t)h->gtes_per_gt * 4;
	if (gd_bytes > lim->max_table_size || gt_bytes > lim->max_table_size) {
		vmd_inspect_refuse(r, "table-size-limit",
		                   "vmdk: grain directory of %llu bytes is above "
		                   "the limit %llu",
		                   (unsigned long long)gd_bytes,
		                   (unsigned long long)lim->max_table_size);
		return;
	}
	if (h->gd_offset == 0 || !within_file(p, h->gd_offset, gd_bytes) ||
	    ((h->flags & FLAG_RGD) &&
	     (h->rgd_offset == 0 || !within_file(p, h->rgd_offset, gd_bytes))))
		vmd_inspect_refuse(r, "header-bounds",
		                   "vmdk: grain directory (sector %llu, %llu "
		                   "bytes) is not within the file",
		                   (unsigned long long)h->gd_offset,
		                   (unsigned long long)gd_bytes);
}

static int inspect_sparse(struct vmd_image_source *src,
                          const struct vmd_probe_data *p,
                          const struct vmd_inspect_limits *lim,
                          struct vmd_inspect_result *r)
{
	struct sparse_header h, hdr;
	struct desc_parse d = {.r = r};
	int rc;

	if (p->head_len < HEADER_LEN) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vmdk: file too short for a sparse header");
		return 0;
	}
	read_sparse_header(p->head, p->head_len, &hdr);
	h = hdr;
	if (hdr.gd_offset == GD_AT_END) {
		rc = use_footer(src, p, r, &h);
		if (rc < 0)
			return -1;
	}
	r->version = h.version;
	r->virtual_size = vmd_mul_sat(h.capacity, SECTOR);
	if (h.grain && h.grain <= MAX_GRAIN)
		r->cluster_size = (uint32_t)(h.grain * SECTOR);
	if (h.version < 1 || h.version > 3)
		vmd_inspect_refuse(r, "vmdk-version",
		                   "vmdk: unsupported version %u", h.version);
	if (h.capacity == 0)
		vmd_inspect_refuse(r, "vmdk-extent",
		                   "vmdk: zero capacity (QEMU would open the "
		                   "extents the descriptor lists instead)");
	if (h.overhead > p->file_size / SECTOR)
		vmd_inspect_refuse(r, "header-bounds",
		                   "vmdk: grains start at sector %llu, past the "
		                   "end of the file",
		                   (unsigned long long)h.overhead);
	check_tables(p, lim, r, &h);

	/* The descriptor (QEMU reads CID and parent from sector 1). */
	if (h.desc_offset != DESC_SECTOR) {
		vmd_inspect_refuse(r, "vmdk-descriptor",
		                   "vmdk: embedded descriptor at sector %llu, not "
		                   "%d",
		                   (unsigned long long)h.desc_offset, DESC_SECTOR);
		if (!within_file(p, h.desc_offset, 1))
			vmd_inspect_refuse(r, "header-bounds",
			                   "vmdk: descriptor offset past the "
			                   "end of the file");
		return 0;
	}
	if (!within_file(p, h.desc_offset,
	                 vmd_mul_sat(h.desc_size, SECTOR)) ||
	    h.desc_offset * SECTOR >= p->file_size) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vmdk: descriptor (sector %llu, %llu sectors) "
		                   "is not within the file",
		                   (unsigned long long)h.desc_offset,
		                   (unsigned long long)h.desc_size);
		return 0;
	}
	return parse_descriptor(src, p, h.desc_offset * SECTOR, &d);
}

static int vmdk_inspect(struct vmd_image_source *src,
                        const struct vmd_probe_data *p,
                        const struct vmd_inspect_limits *lim, unsigned flags,
                        struct vmd_inspect_result *r)
{
	(void)flags;
	r->format = VMD_IMG_VMDK;
	if (vmd_bytes_at(p->head, p->head_len, 0, "KDMV", 4))
		return inspect_sparse(src, p, lim, r);
	if (vmd_bytes_at(p->head, p->head_len, 0, "COWD", 4)) {
		r->virtual_size = (uint64_t)vmd_le32_at(p->head, p->head_len,
		                                        12) *
		                  SECTOR;
		vmd_inspect_refuse(r, "vmdk-cowd",
		                   "vmdk: legacy COWD (ESX sparse) image: not "
		                   "supported");
		return 0;
	}

	/* A descriptor file: everything it describes lives in other files. */
	struct desc_parse d = {.r = r};

	vmd_inspect_refuse(r, "vmdk-descriptor-only",
	                   "vmdk: a descriptor file without data: its "
	                   "extents are other files");
	if (parse_descriptor(src, p, 0, &d) < 0)
		return -1;
	r->virtual_size = d.extent_sectors;
	return 0;
}

const struct vmd_format_ops vmd_format_vmdk = {
	.format = VMD_IMG_VMDK,
	.name = "vmdk",
	.probe = vmdk_probe,
	.inspect = vmdk_inspect,
};
