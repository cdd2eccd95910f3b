/*
 * The one qcow2 header decoder (see qcow2_header.h): pure, bounded, and
 * with every offset + length computed by __builtin_add_overflow /
 * __builtin_mul_overflow, because every field is chosen by whoever made
 * the image (issue 14: a wrapped backing_file_offset + backing_file_size
 * read before the header buffer).
 */
#include <string.h>

#include "bytes.h"
#include "qcow2_header.h"

struct defect_info {
	unsigned bit;
	const char *msg;  /* the public error message of the reader */
	const char *text; /* one line for the inspector's reasons */
};

static const struct defect_info defects[] = {
	{VMD_QCOW2_BAD_MAGIC, "qcow2: not a qcow2 image",
	 "the image does not start with the qcow2 magic"},
	{VMD_QCOW2_BAD_VERSION, "qcow2: unsupported version",
	 "the qcow version is not 2 or 3"},
	{VMD_QCOW2_TRUNCATED, "qcow2: truncated header", "the header is truncated"},
	{VMD_QCOW2_BAD_CLUSTER_BITS, "qcow2: bad cluster size",
	 "cluster_bits is outside 9..21"},
	{VMD_QCOW2_BAD_HEADER_LENGTH, "qcow2: bad header length",
	 "the header length is impossible"},
	{VMD_QCOW2_BAD_REFCOUNT_ORDER, "qcow2: bad refcount width",
	 "the refcount order is above 6"},
	{VMD_QCOW2_BAD_EXTL2, "qcow2: bad cluster size",
	 "extended L2 entries need 16 KiB clusters"},
	{VMD_QCOW2_BAD_BACKING_NAME, "qcow2: bad backing file name",
	 "the backing file name is out of bounds"},
	{VMD_QCOW2_BAD_EXTENSION, "qcow2: bad header extension",
	 "a header extension runs past cluster 0"},
	{VMD_QCOW2_NO_EXTENSION_END, "qcow2: bad header extension",
	 "the header extensions have no end marker in cluster 0"},
	{VMD_QCOW2_BAD_BACKING_FORMAT, "qcow2: bad backing format",
	 "the backing format is too long or given twice"},
	{VMD_QCOW2_L1_TOO_SMALL, "qcow2: L1 table too small",
	 "the L1 table cannot map the virtual size"},
	{VMD_QCOW2_BAD_L1_TABLE, "qcow2: bad L1 table offset",
	 "the L1 table is not cluster-aligned or lies past the end of the file"},
	{VMD_QCOW2_BAD_REFCOUNT_TABLE, "qcow2: bad refcount table",
	 "the refcount table is missing, not cluster-aligned or lies past the "
	 "end of the file"},
	{VMD_QCOW2_BAD_SNAPSHOT_TABLE, "qcow2: bad snapshot table",
	 "the snapshot table is not cluster-aligned or lies past the end of "
	 "the file"},
	{VMD_QCOW2_OVERLAP, "qcow2: overlapping tables",
	 "the header, L1, refcount and snapshot tables overlap"},
};

const char *vmd_qcow2_defect_text(unsigned defect)
{
	for (size_t i = 0; i < sizeof(defects) / sizeof(defects[0]); i++)
		if (defects[i].bit == defect)
			return defects[i].text;
	return "unknown defect";
}

uint64_t vmd_qcow2_l1_entries_for(uint64_t size, uint32_t cluster_bits,
                                  uint32_t l2_entry_bytes)
{
	/* One L2 table maps cluster_size / l2_entry_bytes clusters; with
	 * cluster_bits <= 21 the shift is at most 39. */
	uint32_t shift = cluster_bits + cluster_bits -
	                 (l2_entry_bytes == 16 ? 4u : 3u);

	return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

/* a + b, or UINT64_MAX when it wraps: only for comparisons. */
static uint64_t end_of(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* A table of bytes at offset: cluster-aligned and inside the file. */
static bool table_ok(uint64_t offset, uint64_t bytes, uint64_t cs,
                     uint64_t file_size)
{
	uint64_t end;

	if (bytes == 0)
		return true;
	return offset % cs == 0 &&
	       !__builtin_add_overflow(offset, bytes, &end) && end <= file_size;
}

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen && blen && a < end_of(b, blen) && b < end_of(a, alen);
}

/* Walk the extensions from the end of the header to the end marker, all
 * inside limit (cluster 0 as far as we have it). */
static void decode_extensions(const unsigned char *buf, size_t limit,
                              struct vmd_qcow2_header *h)
{
	size_t off = h->header_length;

	for (;;) {
		size_t data, next;
		uint32_t type, elen;

		if (__builtin_add_overflow(off, (size_t)8, &data) ||
		    data > limit) {
			h->defects |= VMD_QCOW2_NO_EXTENSION_END;
			return;
		}
		type = vmd_be32(buf + off);
		elen = vmd_be32(buf + off + 4);
		if (type == VMD_QCOW2_EXT_END)
			return;
		/* The data, padded to 8 bytes, must end inside limit too;
		 * elen < 2^32 so the padding cannot wrap a size_t of 64 bits,
		 * but the sums are checked all the same. */
		if (__builtin_add_overflow(data, (size_t)elen, &next) ||
		    next > limit) {
			h->defects |= VMD_QCOW2_BAD_EXTENSION;
			h->bad_extension_type = type;
			return;
		}
		if (type == VMD_QCOW2_EXT_DATA_FILE)
			h->has_data_file_ext = true;
		if (type == VMD_QCOW2_EXT_BACKING_FORMAT) {
			if (h->n_backing_format_ext++ ||
			    elen > VMD_QCOW2_BACKING_FORMAT_MAX) {
				h->defects |= VMD_QCOW2_BAD_BACKING_FORMAT;
			} else {
				memcpy(h->backing_format, buf + data, elen);
				h->backing_format[elen] = '\0';
			}
		}
		if (__builtin_add_overflow(next, (size_t)((8 - elen % 8) % 8),
		                           &off)) {
			h->defects |= VMD_QCOW2_BAD_EXTENSION;
			h->bad_extension_type = type;
			return;
		}
	}
}

static void decode_backing_name(const unsigned char *buf, uint64_t limit,
                                struct vmd_qcow2_header *h)
{
	uint64_t end;

	if (!h->has_backing)
		return;
	if (h->backing_file_size == 0 ||
	    h->backing_file_size > VMD_QCOW2_BACKING_NAME_MAX ||
	    h->backing_file_offset < h->header_length ||
	    __builtin_add_overflow(h->backing_file_offset,
	                           (uint64_t)h->backing_file_size, &end) ||
	    end > limit) {
		h->defects |= VMD_QCOW2_BAD_BACKING_NAME;
		return;
	}
	memcpy(h->backing_file, buf + h->backing_file_offset,
	       h->backing_file_size);
	h->backing_file[h->backing_file_size] = '\0';
}

static void decode_tables(uint64_t file_size, struct vmd_qcow2_header *h)
{
	uint64_t cs = h->cluster_size;
	uint32_t esz = (h->incompatible_features & VMD_QCOW2_INCOMPAT_EXTL2)
	                       ? 16
	                       : 8;

	/* l1_size, refcount_table_clusters and nb_snapshots are 32-bit and
	 * the factors at most 2^21: the products fit, checked anyway. */
	if (__builtin_mul_overflow((uint64_t)h->l1_size, 8, &h->l1_bytes) ||
	    __builtin_mul_overflow((uint64_t)h->refcount_table_clusters, cs,
	                           &h->refcount_table_bytes) ||
	    __builtin_mul_overflow((uint64_t)h->nb_snapshots,
	                           VMD_QCOW2_SNAPSHOT_HEADER_MIN,
	                           &h->snapshot_table_bytes)) {
		h->defects |= VMD_QCOW2_BAD_L1_TABLE;
		return;
	}
	if (vmd_qcow2_l1_entries_for(h->size, h->cluster_bits, esz) >
	    h->l1_size)
		h->defects |= VMD_QCOW2_L1_TOO_SMALL;
	if (!table_ok(h->l1_table_offset, h->l1_bytes, cs, file_size))
		h->defects |= VMD_QCOW2_BAD_L1_TABLE;
	if (h->refcount_table_clusters == 0 || h->refcount_table_offset == 0 ||
	    !table_ok(h->refcount_table_offset, h->refcount_table_bytes, cs,
	              file_size))
		h->defects |= VMD_QCOW2_BAD_REFCOUNT_TABLE;
	if (!table_ok(h->snapshots_offset, h->snapshot_table_bytes, cs,
	              file_size))
		h->defects |= VMD_QCOW2_BAD_SNAPSHOT_TABLE;

	const struct {
		uint64_t start, len;
	} r[] = {
		{0, cs},
		{h->l1_table_offset, h->l1_bytes},
		{h->refcount_table_offset, h->refcount_table_bytes},
		{h->snapshots_offset, h->snapshot_table_bytes},
	};
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		for (size_t j = i + 1; j < sizeof(r) / sizeof(r[0]); j++)
			if (overlap(r[i].start, r[i].len, r[j].start, r[j].len))
				h->defects |= VMD_QCOW2_OVERLAP;
}

/* The fields after the magic, each read only when len holds it. */
static void decode_fields(const unsigned char *buf, size_t len,
                          struct vmd_qcow2_header *h)
{
	h->version = vmd_be32(buf + 4);
	if (len < VMD_QCOW2_HEADER_V2_LEN)
		return;
	h->backing_file_offset = vmd_be64(buf + 8);
	h->backing_file_size = vmd_be32(buf + 16);
	h->cluster_bits = vmd_be32(buf + 20);
	h->size = vmd_be64(buf + 24);
	h->crypt_method = vmd_be32(buf + 32);
	h->l1_size = vmd_be32(buf + 36);
	h->l1_table_offset = vmd_be64(buf + 40);
	h->refcount_table_offset = vmd_be64(buf + 48);
	h->refcount_table_clusters = vmd_be32(buf + 56);
	h->nb_snapshots = vmd_be32(buf + 60);
	h->snapshots_offset = vmd_be64(buf + 64);
	h->has_backing = h->backing_file_offset != 0;
	h->refcount_order = VMD_QCOW2_DEFAULT_REFCOUNT_ORDER;
	h->header_length = VMD_QCOW2_HEADER_V2_LEN;
	if (h->version != 3 || len < VMD_QCOW2_HEADER_V3_MIN_LEN)
		return;
	h->incompatible_features = vmd_be64(buf + 72);
	h->compatible_features = vmd_be64(buf + 80);
	h->autoclear_features = vmd_be64(buf + 88);
	h->refcount_order = vmd_be32(buf + 96);
	h->header_length = vmd_be32(buf + 100);
}

static void decode(const unsigned char *buf, size_t len, uint64_t file_size,
                   struct vmd_qcow2_header *h)
{
	uint64_t limit;

	if (len < 4 || vmd_be32(buf) != VMD_QCOW2_MAGIC) {
		h->defects |= VMD_QCOW2_BAD_MAGIC;
		return;
	}
	if (len < 8) {
		h->defects |= VMD_QCOW2_TRUNCATED;
		return;
	}
	decode_fields(buf, len, h);
	if (h->version != 2 && h->version != 3) {
		h->defects |= VMD_QCOW2_BAD_VERSION;
		return;
	}
	if (len < VMD_QCOW2_HEADER_V2_LEN ||
	    (h->version == 3 && len < VMD_QCOW2_HEADER_V3_MIN_LEN)) {
		h->defects |= VMD_QCOW2_TRUNCATED;
		return;
	}
	if (h->cluster_bits < VMD_QCOW2_MIN_CLUSTER_BITS ||
	    h->cluster_bits > VMD_QCOW2_MAX_CLUSTER_BITS) {
		h->defects |= VMD_QCOW2_BAD_CLUSTER_BITS;
		return;
	}
	h->cluster_size = 1ull << h->cluster_bits;
	/* What of cluster 0 we can see: names and extensions live there. */
	limit = h->cluster_size;
	if (limit > len)
		limit = len;
	if (limit > file_size)
		limit = file_size;

	if (h->header_length < (h->version == 3 ? VMD_QCOW2_HEADER_V3_MIN_LEN
	                                        : VMD_QCOW2_HEADER_V2_LEN) ||
	    h->header_length % 8 || h->header_length > limit)
		h->defects |= VMD_QCOW2_BAD_HEADER_LENGTH;
	else if (h->header_length > VMD_QCOW2_COMPRESSION_TYPE_OFF)
		h->compression_type = buf[VMD_QCOW2_COMPRESSION_TYPE_OFF];
	if (h->refcount_order > VMD_QCOW2_MAX_REFCOUNT_ORDER)
		h->defects |= VMD_QCOW2_BAD_REFCOUNT_ORDER;
	if ((h->incompatible_features & VMD_QCOW2_INCOMPAT_EXTL2) &&
	    h->cluster_bits < VMD_QCOW2_EXTL2_MIN_CLUSTER_BITS)
		h->defects |= VMD_QCOW2_BAD_EXTL2;
	/* With an impossible header length, where the extensions start is
	 * unknown: refused already, nothing more to read there. */
	if (!(h->defects & VMD_QCOW2_BAD_HEADER_LENGTH)) {
		decode_backing_name(buf, limit, h);
		decode_extensions(buf, (size_t)limit, h);
	} else if (h->has_backing) {
		h->defects |= VMD_QCOW2_BAD_BACKING_NAME;
	}
	decode_tables(file_size, h);
}

int vmd_qcow2_decode_header(const unsigned char *buf, size_t len,
                            uint64_t file_size, struct vmd_qcow2_header *h,
                            struct vmd_error *err)
{
	memset(h, 0, sizeof(*h));
	if (len > file_size)
		len = (size_t)file_size;
	decode(buf, len, file_size, h);
	for (size_t i = 0; i < sizeof(defects) / sizeof(defects[0]); i++) {
		int code = defects[i].bit == VMD_QCOW2_BAD_VERSION
		                   ? VMD_E_UNSUPPORTED
		                   : VMD_E_CORRUPT;

		if (!(h->defects & defects[i].bit))
			continue;
		/* Without err (the inspector, which reports the defects
		 * itself) nothing is logged: a refusal is not an error. */
		if (!err)
			return code;
		return vmd_error_set(err, code, defects[i].msg,
		                     "%s (version %u, %zu header bytes of a "
		                     "%llu-byte file)",
		                     defects[i].text, h->version, len,
		                     (unsigned long long)file_size);
	}
	return 0;
}
