/*
 * Native qcow2: header reading (decoded by qcow2_header.c), image creation
 * and in-place growth.
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

static uint64_t div_round_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static uint64_t pad8(uint64_t n)
{
	return (n + 7) & ~(uint64_t)7;
}

/* Entries of the L1 table needed for `size` bytes (standard L2 entries:
 * the only kind we write). */
static uint64_t l1_entries_for(uint64_t size, uint32_t cluster_bits)
{
	return vmd_qcow2_l1_entries_for(size, cluster_bits, 8);
}

int vmd_qcow2_read_header(int fd, struct vmd_qcow2_header *h,
                          struct vmd_error *err)
{
	_cleanup_(freep) unsigned char *buf = NULL;
	unsigned char head[1u << VMD_QCOW2_MIN_CLUSTER_BITS];
	struct stat st;
	size_t want = VMD_QCOW2_HEADER_READ;
	ssize_t n;
	uint32_t bits;

	memset(h, 0, sizeof(*h));
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read header failed", "fstat");
	/* Cluster 0 as far as we parse it, and no more than the file. */
	if (st.st_size >= 0 && (uint64_t)st.st_size < want)
		want = st.st_size > 0 ? (size_t)st.st_size : 1;
	/* The decoder looks at no more than cluster 0, and at the first 112
	 * bytes only when the magic or the cluster size is wrong: read the
	 * smallest cluster first, the rest only when the header says cluster
	 * 0 is bigger (a read of 64 KiB per open was most of its cost). */
	n = pread(fd, head, want < sizeof(head) ? want : sizeof(head), 0);
	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read header failed", "pread");
	if ((size_t)n == sizeof(head) && vmd_be32(head) == VMD_QCOW2_MAGIC) {
		bits = vmd_be32(head + 20);
		if (bits >= VMD_QCOW2_MIN_CLUSTER_BITS &&
		    bits <= VMD_QCOW2_MAX_CLUSTER_BITS && (1ull << bits) < want)
			want = (size_t)1 << bits;
		else if (bits < VMD_QCOW2_MIN_CLUSTER_BITS ||
		         bits > VMD_QCOW2_MAX_CLUSTER_BITS)
			want = sizeof(head);
	} else {
		want = (size_t)n; /* not qcow2, or all of a short file */
	}
	if (want <= sizeof(head))
		return vmd_qcow2_decode_header(head, (size_t)n,
		                               (uint64_t)st.st_size, h, err);
	buf = malloc(want);
	if (!buf)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "header buffer");
	n = pread(fd, buf, want, 0);
	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read header failed", "pread");
	return vmd_qcow2_decode_header(buf, (size_t)n, (uint64_t)st.st_size, h,
	                               err);
}

int vmd_qcow2_write_new(int fd, uint64_t size, uint32_t cluster_bits,
                        const char *backing, const char *backing_format,
                        struct vmd_error *err)
{
	uint64_t cs;
	uint64_t l1_entries, l1_clusters, meta_clusters;
	size_t blen = backing ? strlen(backing) : 0;
	size_t flen = backing_format ? strlen(backing_format) : 0;
	_cleanup_(freep) unsigned char *c0 = NULL;
	_cleanup_(freep) unsigned char *refblock = NULL;
	unsigned char reftable[8];
	size_t off;

	if (cluster_bits < VMD_QCOW2_MIN_CLUSTER_BITS || cluster_bits > VMD_QCOW2_MAX_CLUSTER_BITS)
		return vmd_error_set(err, VMD_E_INVAL, "qcow2: bad cluster size",
		                     "cluster_bits %u", cluster_bits);
	/* Only now: a shift by an unchecked count is undefined. */
	cs = 1ull << cluster_bits;
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
	                flen == 0 || flen > VMD_QCOW2_BACKING_FORMAT_MAX ||
	                VMD_QCOW2_HEADER_V3_LEN + 8 + pad8(flen) + 8 + blen > cs))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: backing file name too long",
		                     "backing name length %zu", blen);

	/* The used heads only (checked above to fit their clusters). */
	c0 = calloc(1, VMD_QCOW2_HEADER_V3_LEN + 8 + pad8(flen) + 8 + blen);
	refblock = calloc(meta_clusters, 2);
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
	vmd_put_be32(c0 + 96, VMD_QCOW2_DEFAULT_REFCOUNT_ORDER);
	vmd_put_be32(c0 + 100, VMD_QCOW2_HEADER_V3_LEN);
	off = VMD_QCOW2_HEADER_V3_LEN;
	if (backing) {
		vmd_put_be32(c0 + off, VMD_QCOW2_EXT_BACKING_FORMAT);
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

	/* Truncating to 0 first makes every byte we do not write a zero
	 * (whatever the file held), so only the used heads of cluster 0 and
	 * of the refcount block are written: up to 2 MiB clusters, that is
	 * most of the I/O of a new image otherwise. */
	if (vmd_ftruncate(fd, 0) < 0 ||
	    vmd_ftruncate(fd, ((3 + l1_clusters) * cs)) < 0 ||
	    vmd_pwrite_full(fd, c0, off + blen, 0) < 0 ||
	    vmd_pwrite_full(fd, reftable, sizeof(reftable), cs) < 0 ||
	    vmd_pwrite_full(fd, refblock, 2 * meta_clusters, 2 * cs) < 0)
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
	if (h.incompatible_features & ~(uint64_t)VMD_QCOW2_INCOMPAT_KNOWN)
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
	new_l1 = vmd_qcow2_l1_entries_for(
		new_size, h.cluster_bits,
		(h.incompatible_features & VMD_QCOW2_INCOMPAT_EXTL2) ? 16 : 8);
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
	/* A table that ends the file (qemu-img writes only the entries) must
	 * be inside it once it has the new entries: the decoder refuses an
	 * L1 table past the end of the file. Extending reads as zeroes. */
	if (new_l1 > h.l1_size) {
		struct stat st;
		uint64_t l1_end = h.l1_table_offset + 8 * new_l1; /* < room */

		if (fstat(fd, &st) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "qcow2: read failed", "fstat");
		if (l1_end > (uint64_t)st.st_size &&
		    vmd_ftruncate(fd, l1_end) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "qcow2: write failed",
			                           "extending the L1 table");
	}
	/* size (offset 24) and l1_size (offset 36) share one sector: a
	 * single write updates both together. */
	if (vmd_pread_full(fd, field, sizeof(field), 24) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read failed", "header");
	vmd_put_be64(field, new_size);
	if (new_l1 > h.l1_size)
		vmd_put_be32(field + 12, (uint32_t)new_l1);
	if (vmd_pwrite_full(fd, field, sizeof(field), 24) < 0 || vmd_fsync(fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed", "header");
	return 0;
}
