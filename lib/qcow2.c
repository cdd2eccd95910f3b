/*
 * Native qcow2: header reading, image creation and in-place growth.
 *
 * The writer lays an image out the way `qemu-img create` does, so that
 * qemu-img check finds nothing to say about it:
 *   cluster 0  header (v3, 112 bytes), backing-format extension, end
 *              extension, backing file name
 *   cluster 1  refcount table, entry 0 -> cluster 2
 *   cluster 2  refcount block: refcount 1 for clusters 0 .. 2+L1 clusters
 *   cluster 3+ L1 table, all zero (every guest read falls through to the
 *              backing file, or reads zero)
 * Sizes are checked so that one refcount block covers all the metadata.
 *
 * Growth only rewrites the header when the L1 table's last cluster has room
 * for the new entries; moving the L1 table belongs to the allocating engine.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "fsutil.h"
#include "qcow2.h"

#define HEADER_V2_LEN 72
#define HEADER_V3_LEN 112
#define EXT_END 0x00000000u
#define EXT_BACKING_FORMAT 0xe2792acau
#define REFCOUNT_ORDER 4 /* 16-bit refcounts, qemu's default */
#define INCOMPAT_KNOWN 0x1fu
#define MIN_CLUSTER_BITS 9
#define MAX_CLUSTER_BITS 21

static uint64_t div_round_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* Entries of the L1 table needed for `size` bytes. */
static uint64_t l1_entries_for(uint64_t size, uint32_t cluster_bits)
{
	/* One L2 table maps cluster_size/8 clusters. */
	uint32_t shift = cluster_bits + (cluster_bits - 3);

	return (size >> shift) + ((size & ((1ull << shift) - 1)) != 0);
}

static int parse_extensions(const unsigned char *c0, size_t len,
                            struct vmd_qcow2_header *h, struct vmd_error *err)
{
	size_t off = h->version == 2 ? HEADER_V2_LEN : h->header_length;

	while (off + 8 <= len) {
		uint32_t type = vmd_be32(c0 + off);
		uint32_t elen = vmd_be32(c0 + off + 4);

		if (type == EXT_END)
			return 0;
		if ((uint64_t)elen > len - off - 8)
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "qcow2: bad header extension",
			                     "extension 0x%x length %u past cluster 0",
			                     type, elen);
		if (type == EXT_BACKING_FORMAT) {
			if (elen >= sizeof(h->backing_format))
				return vmd_error_set(err, VMD_E_CORRUPT,
				                     "qcow2: bad backing format",
				                     "backing format length %u",
				                     elen);
			memcpy(h->backing_format, c0 + off + 8, elen);
			h->backing_format[elen] = '\0';
		}
		off += 8 + pad8(elen);
	}
	return vmd_error_set(err, VMD_E_CORRUPT, "qcow2: bad header extension",
	                     "no end-of-extensions marker in cluster 0");
}

int vmd_qcow2_read_header(int fd, struct vmd_qcow2_header *h,
                          struct vmd_error *err)
{
	unsigned char buf[4096];
	struct stat st;
	ssize_t n;

	memset(h, 0, sizeof(*h));
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read header failed", "fstat");
	n = pread(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read header failed", "pread");
	if (n < HEADER_V2_LEN || vmd_be32(buf) != VMD_QCOW2_MAGIC)
		return vmd_error_set(err, VMD_E_CORRUPT, "qcow2: not a qcow2 image",
		                     "bad magic or file too short (%zd bytes)", n);
	h->version = vmd_be32(buf + 4);
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
	if (h->version != 2 && h->version != 3)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: unsupported version",
		                     "version %u", h->version);
	if (h->version == 3) {
		if (n < HEADER_V3_LEN - 8)
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "qcow2: truncated header",
			                     "%zd bytes", n);
		h->incompatible_features = vmd_be64(buf + 72);
		h->compatible_features = vmd_be64(buf + 80);
		h->autoclear_features = vmd_be64(buf + 88);
		h->refcount_order = vmd_be32(buf + 96);
		h->header_length = vmd_be32(buf + 100);
		if (h->header_length < 104 || h->header_length % 8 ||
		    h->header_length > (uint64_t)n)
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "qcow2: bad header length",
			                     "header_length %u", h->header_length);
	} else {
		h->refcount_order = 4;
		h->header_length = HEADER_V2_LEN;
	}
	if (h->cluster_bits < MIN_CLUSTER_BITS ||
	    h->cluster_bits > MAX_CLUSTER_BITS)
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "qcow2: bad cluster size",
		                     "cluster_bits %u", h->cluster_bits);
	if (h->refcount_order > 6)
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "qcow2: bad refcount width",
		                     "refcount_order %u", h->refcount_order);
	if (l1_entries_for(h->size, h->cluster_bits) > h->l1_size)
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "qcow2: L1 table too small",
		                     "l1_size %u for size %llu", h->l1_size,
		                     (unsigned long long)h->size);
	if (h->l1_table_offset % (1ull << h->cluster_bits) ||
	    h->l1_table_offset + (uint64_t)h->l1_size * 8 >
	            (uint64_t)st.st_size + (1ull << h->cluster_bits))
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "qcow2: bad L1 table offset",
		                     "l1_table_offset %llu",
		                     (unsigned long long)h->l1_table_offset);
	if (h->backing_file_offset) {
		uint64_t cs = 1ull << h->cluster_bits;
		uint64_t end;

		/* The sum must not wrap (issue 14 defect 1). */
		if (__builtin_add_overflow(h->backing_file_offset,
		                           (uint64_t)h->backing_file_size, &end) ||
		    h->backing_file_size == 0 ||
		    h->backing_file_size > VMD_QCOW2_BACKING_NAME_MAX ||
		    end > cs || end > (uint64_t)n)
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "qcow2: bad backing file name",
			                     "offset %llu size %u",
			                     (unsigned long long)h->backing_file_offset,
			                     h->backing_file_size);
		memcpy(h->backing_file, buf + h->backing_file_offset,
		       h->backing_file_size);
		h->backing_file[h->backing_file_size] = '\0';
	}
	size_t c0len = (size_t)n;

	if ((uint64_t)c0len > (1ull << h->cluster_bits))
		c0len = (size_t)(1ull << h->cluster_bits);
	return parse_extensions(buf, c0len, h, err);
}

int vmd_qcow2_write_new(int fd, uint64_t size, uint32_t cluster_bits,
                        const char *backing, const char *backing_format,
                        struct vmd_error *err)
{
	uint64_t cs = 1ull << cluster_bits;
	uint64_t l1_entries, l1_clusters, meta_clusters;
	size_t blen = backing ? strlen(backing) : 0;
	size_t flen = backing_format ? strlen(backing_format) : 0;
	VMD_AUTOFREE unsigned char *c0 = NULL;
	VMD_AUTOFREE unsigned char *refblock = NULL;
	unsigned char reftable[8];
	size_t off;

	if (cluster_bits < MIN_CLUSTER_BITS || cluster_bits > MAX_CLUSTER_BITS)
		return vmd_error_set(err, VMD_E_INVAL, "qcow2: bad cluster size",
		                     "cluster_bits %u", cluster_bits);
	if (size == 0 || size % 512)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: size must be a positive multiple of 512",
		                     "size %llu", (unsigned long long)size);
	l1_entries = l1_entries_for(size, cluster_bits);
	l1_clusters = div_round_up(l1_entries * 8, cs);
	meta_clusters = 3 + l1_clusters;
	/* One refcount block (cs * 8 / 16 entries) must cover the metadata;
	 * that allows virtual sizes far beyond any disk we make. */
	if (l1_entries > UINT32_MAX || meta_clusters > cs / 2)
		return vmd_error_set(err, VMD_E_INVAL, "qcow2: size too large",
		                     "size %llu", (unsigned long long)size);
	if (backing && (blen == 0 || blen > VMD_QCOW2_BACKING_NAME_MAX ||
	                flen == 0 || flen >= 32 ||
	                HEADER_V3_LEN + 8 + pad8(flen) + 8 + blen > cs))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: backing file name too long",
		                     "backing name length %zu", blen);

	c0 = calloc(1, cs);
	refblock = calloc(1, cs);
	if (!c0 || !refblock)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "cluster buffers");
	vmd_put_be32(c0, VMD_QCOW2_MAGIC);
	vmd_put_be32(c0 + 4, 3);
	vmd_put_be32(c0 + 20, cluster_bits);
	vmd_put_be64(c0 + 24, size);
	vmd_put_be32(c0 + 32, 0);
	vmd_put_be32(c0 + 36, (uint32_t)l1_entries);
	vmd_put_be64(c0 + 40, 3 * cs);
	vmd_put_be64(c0 + 48, cs);
	vmd_put_be32(c0 + 56, 1);
	vmd_put_be32(c0 + 96, REFCOUNT_ORDER);
	vmd_put_be32(c0 + 100, HEADER_V3_LEN);
	off = HEADER_V3_LEN;
	if (backing) {
		vmd_put_be32(c0 + off, EXT_BACKING_FORMAT);
		vmd_put_be32(c0 + off + 4, (uint32_t)flen);
		memcpy(c0 + off + 8, backing_format, flen);
		off += 8 + pad8(flen);
	}
	off += 8; /* end-of-extensions: already zero */
	if (backing) {
		vmd_put_be64(c0 + 8, off);
		vmd_put_be32(c0 + 16, (uint32_t)blen);
		memcpy(c0 + off, backing, blen);
	}
	vmd_put_be64(reftable, 2 * cs);
	for (uint64_t i = 0; i < meta_clusters; i++)
		vmd_put_be16(refblock + 2 * i, 1);

	if (ftruncate(fd, (off_t)((3 + l1_clusters) * cs)) < 0 ||
	    vmd_pwrite_full(fd, c0, cs, 0) < 0 ||
	    vmd_pwrite_full(fd, reftable, sizeof(reftable), cs) < 0 ||
	    vmd_pwrite_full(fd, refblock, cs, 2 * cs) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed",
		                           "writing image metadata");
	return 0;
}

int vmd_qcow2_grow(int fd, uint64_t new_size, struct vmd_error *err)
{
	struct vmd_qcow2_header h;
	unsigned char field[16];
	uint64_t cs, new_l1, room;
	int rc = vmd_qcow2_read_header(fd, &h, err);

	if (rc < 0)
		return rc;
	if (h.incompatible_features & ~(uint64_t)INCOMPAT_KNOWN)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: unknown incompatible features",
		                     "incompatible_features 0x%llx",
		                     (unsigned long long)h.incompatible_features);
	if (new_size < h.size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "qcow2: shrinking is not supported",
		                     "%llu < %llu", (unsigned long long)new_size,
		                     (unsigned long long)h.size);
	if (new_size % 512)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: size must be a multiple of 512",
		                     "size %llu", (unsigned long long)new_size);
	if (new_size == h.size)
		return 0;
	cs = 1ull << h.cluster_bits;
	new_l1 = l1_entries_for(new_size, h.cluster_bits);
	room = div_round_up((uint64_t)h.l1_size * 8, cs) * cs / 8;
	if (new_l1 > room || new_l1 > UINT32_MAX)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: growing the L1 table is not supported yet",
		                     "need %llu L1 entries, room for %llu",
		                     (unsigned long long)new_l1,
		                     (unsigned long long)room);
	/* The spare tail of the L1 cluster must really be unused. */
	for (uint64_t i = h.l1_size; i < new_l1; i++) {
		unsigned char e[8] = {0};
		ssize_t n = pread(fd, e, 8,
		                  (off_t)(h.l1_table_offset + 8 * i));

		if (n < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "qcow2: read failed", "L1 tail");
		if (vmd_be64(e) != 0)
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "qcow2: L1 table tail not empty",
			                     "entry %llu", (unsigned long long)i);
	}
	/* size (offset 24) and l1_size (offset 36) share one sector: a
	 * single write updates both together. */
	if (vmd_pread_full(fd, field, sizeof(field), 24) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read failed", "header");
	vmd_put_be64(field, new_size);
	if (new_l1 > h.l1_size)
		vmd_put_be32(field + 12, (uint32_t)new_l1);
	if (vmd_pwrite_full(fd, field, sizeof(field), 24) < 0 || fsync(fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed", "header");
	return 0;
}
