/*
 * qcow2 for the inspector: header, extensions and table positions, with
 * every check an untrusted qcow2 must pass (QEMU docs/interop/qcow2.txt;
 * the refusals follow CVE-2024-32498 and oslo.utils' format_inspector):
 *   - a backing file (unless the caller allows a chain), an external data
 *     file (incompatible bit 2 or the "DATA" extension), encryption,
 *     unknown incompatible bits, the corrupt bit;
 *   - header fields past the end of the file or cluster 0, tables that
 *     overlap each other or the header, tables above the size limit.
 * Only cluster 0 is parsed; tables are checked by position and size and
 * never read, so the work is the same for a 1 MiB and a 1 PiB claim.
 */
#include <stdio.h>
#include <string.h>

#include "inspect.h"

#define QCOW2_MAGIC "QFI\xfb"
#define EXT_END 0x00000000u
#define EXT_BACKING_FORMAT 0xe2792acau
#define EXT_DATA_FILE 0x44415441u
#define INCOMPAT_DIRTY (1ull << 0)
#define INCOMPAT_CORRUPT (1ull << 1)
#define INCOMPAT_DATA_FILE (1ull << 2)
#define INCOMPAT_COMPRESSION (1ull << 3)
#define INCOMPAT_EXTL2 (1ull << 4)
#define INCOMPAT_KNOWN 0x1full
#define MAX_SNAPSHOTS 65536
#define SNAPSHOT_HEADER_MIN 40

struct range {
	const char *name;
	uint64_t start;
	uint64_t len;
};

static bool qcow2_probe(const struct vmd_probe_data *p)
{
	uint32_t version = vmd_be32_at(p->head, p->head_len, 4);

	/* Version 1 shares the magic; it is still a qcow and must not slip
	 * through as raw, so it matches here and is refused below. */
	return vmd_bytes_at(p->head, p->head_len, 0, QCOW2_MAGIC, 4) &&
	       version >= 1 && version <= 3;
}

/* The name fields of the image are data, not text we trust. */
static void copy_name(char *dst, size_t dstsz, const unsigned char *src,
                      size_t len)
{
	size_t n = len < dstsz - 1 ? len : dstsz - 1;

	memcpy(dst, src, n);
	dst[n] = '\0';
}

static void check_extensions(const struct vmd_probe_data *p, size_t start,
                             uint64_t cluster_size,
                             struct vmd_inspect_result *r)
{
	size_t limit = p->head_len < cluster_size ? p->head_len
	                                          : (size_t)cluster_size;
	size_t off = start;
	unsigned seen_backing_fmt = 0;

	while (off + 8 <= limit) {
		uint32_t type = vmd_be32_at(p->head, limit, off);
		uint32_t len = vmd_be32_at(p->head, limit, off + 4);

		if (type == EXT_END)
			return;
		if (len > limit - off - 8) {
			vmd_inspect_refuse(r, "header-bounds",
			                   "header extension 0x%08x runs past "
			                   "cluster 0", type);
			return;
		}
		if (type == EXT_DATA_FILE)
			vmd_inspect_refuse(r, "qcow2-data-file",
			                   "the image names an external data "
			                   "file");
		if (type == EXT_BACKING_FORMAT) {
			if (seen_backing_fmt++)
				vmd_inspect_refuse(r, "header-bounds",
				                   "backing format given twice");
			copy_name(r->backing_format, sizeof(r->backing_format),
			          p->head + off + 8, len);
		}
		off += 8 + (((size_t)len + 7) & ~(size_t)7);
	}
	vmd_inspect_refuse(r, "header-bounds",
	                   "header extensions have no end marker in cluster 0");
}

static void check_table(const char *name, uint64_t offset, uint64_t bytes,
                        uint64_t cluster_size,
                        const struct vmd_inspect_limits *lim,
                        struct vmd_inspect_result *r)
{
	if (bytes > lim->max_table_size)
		vmd_inspect_refuse(r, "table-size-limit",
		                   "%s of %llu bytes is above the limit %llu",
		                   name, (unsigned long long)bytes,
		                   (unsigned long long)lim->max_table_size);
	if (bytes == 0)
		return;
	if (offset % cluster_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "%s offset %llu is not cluster-aligned", name,
		                   (unsigned long long)offset);
	if (vmd_add_sat(offset, bytes) > r->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "%s (offset %llu, %llu bytes) lies past the "
		                   "end of the file",
		                   name, (unsigned long long)offset,
		                   (unsigned long long)bytes);
}

static void check_overlaps(const struct range *rs, size_t n,
                           struct vmd_inspect_result *r)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = i + 1; j < n; j++) {
			if (rs[i].len == 0 || rs[j].len == 0)
				continue;
			if (rs[i].start < vmd_add_sat(rs[j].start, rs[j].len) &&
			    rs[j].start < vmd_add_sat(rs[i].start, rs[i].len))
				vmd_inspect_refuse(r, "overlapping-tables",
				                   "%s and %s overlap", rs[i].name,
				                   rs[j].name);
		}
	}
}

static int qcow2_inspect(struct vmd_image_source *src,
                         const struct vmd_probe_data *p,
                         const struct vmd_inspect_limits *lim, unsigned flags,
                         struct vmd_inspect_result *r)
{
	const unsigned char *h = p->head;
	size_t hl = p->head_len;
	uint32_t version = vmd_be32_at(h, hl, 4);
	uint64_t backing_off = vmd_be64_at(h, hl, 8);
	uint32_t backing_len = vmd_be32_at(h, hl, 16);
	uint32_t cluster_bits = vmd_be32_at(h, hl, 20);
	uint64_t size = vmd_be64_at(h, hl, 24);
	uint32_t crypt = vmd_be32_at(h, hl, 32);
	uint32_t l1_size = vmd_be32_at(h, hl, 36);
	uint64_t l1_off = vmd_be64_at(h, hl, 40);
	uint64_t rt_off = vmd_be64_at(h, hl, 48);
	uint32_t rt_clusters = vmd_be32_at(h, hl, 56);
	uint32_t nb_snapshots = vmd_be32_at(h, hl, 60);
	uint64_t snap_off = vmd_be64_at(h, hl, 64);
	uint32_t header_len = 72, refcount_order = 4;
	uint64_t cs, l2_entries, needed_l1;

	r->format = VMD_IMG_QCOW2;
	r->version = version;
	r->virtual_size = size;
	if (version != 2 && version != 3) {
		vmd_inspect_refuse(r, "qcow2-version",
		                   "qcow version %u is not supported", version);
		return 0;
	}
	if (hl < 72 || (version == 3 && hl < 104)) {
		vmd_inspect_refuse(r, "header-bounds", "the header is truncated");
		return 0;
	}
	if (version == 3) {
		r->incompatible_features = vmd_be64_at(h, hl, 72);
		r->compatible_features = vmd_be64_at(h, hl, 80);
		r->autoclear_features = vmd_be64_at(h, hl, 88);
		refcount_order = vmd_be32_at(h, hl, 96);
		header_len = vmd_be32_at(h, hl, 100);
	}
	if (cluster_bits < 9 || cluster_bits > 21) {
		vmd_inspect_refuse(r, "qcow2-cluster-size",
		                   "cluster_bits %u is outside 9..21",
		                   cluster_bits);
		return 0;
	}
	cs = 1ull << cluster_bits;
	r->cluster_size = (uint32_t)cs;
	if (header_len < (version == 3 ? 104u : 72u) || header_len % 8 ||
	    header_len > cs || header_len > hl)
		vmd_inspect_refuse(r, "header-bounds",
		                   "header length %u is impossible", header_len);
	if (refcount_order > 6)
		vmd_inspect_refuse(r, "header-bounds",
		                   "refcount order %u is above 6", refcount_order);

	/* Features. */
	if (r->incompatible_features & ~INCOMPAT_KNOWN)
		vmd_inspect_refuse(r, "qcow2-unknown-features",
		                   "unknown incompatible feature bits 0x%llx",
		                   (unsigned long long)(r->incompatible_features &
		                                        ~INCOMPAT_KNOWN));
	if (r->incompatible_features & INCOMPAT_DATA_FILE)
		vmd_inspect_refuse(r, "qcow2-data-file",
		                   "the image keeps its data in an external file");
	if (r->incompatible_features & INCOMPAT_CORRUPT)
		vmd_inspect_refuse(r, "qcow2-corrupt",
		                   "the image is marked corrupt");
	if ((r->incompatible_features & INCOMPAT_EXTL2) && cluster_bits < 14)
		vmd_inspect_refuse(r, "header-bounds",
		                   "extended L2 entries need 16 KiB clusters");
	if (header_len > 104 && vmd_be32_at(h, hl, 104) >> 24 > 1)
		vmd_inspect_refuse(r, "qcow2-compression-type",
		                   "unknown compression type %u",
		                   vmd_be32_at(h, hl, 104) >> 24);
	else if (header_len > 104 && (h[104] != 0) !=
	                                     !!(r->incompatible_features &
	                                        INCOMPAT_COMPRESSION))
		vmd_inspect_refuse(r, "qcow2-compression-type",
		                   "compression type and feature bit disagree");
	if (crypt != 0)
		vmd_inspect_refuse(r, "qcow2-encrypted",
		                   "encrypted images (method %u) are not "
		                   "supported", crypt);

	/* Backing file: name inside cluster 0 and inside the file. */
	if (backing_off != 0) {
		if (backing_len == 0 || backing_len > 1023 ||
		    vmd_add_sat(backing_off, backing_len) > cs ||
		    vmd_add_sat(backing_off, backing_len) > r->file_size ||
		    backing_off < header_len) {
			vmd_inspect_refuse(r, "header-bounds",
			                   "backing file name (offset %llu, %u "
			                   "bytes) is out of bounds",
			                   (unsigned long long)backing_off,
			                   backing_len);
		} else {
			unsigned char name[1024];
			long n = vmd_src_read(src, name, backing_len,
			                      backing_off);

			if (n < 0)
				return -1;
			copy_name(r->backing_file, sizeof(r->backing_file), name,
			          (size_t)n);
		}
		if (!(flags & VMD_INSPECT_ALLOW_BACKING))
			vmd_inspect_refuse(r, "qcow2-backing-file",
			                   "the image has a backing file (%s)",
			                   r->backing_file[0] ? r->backing_file
			                                      : "unreadable");
	}
	if (header_len <= hl && header_len <= cs)
		check_extensions(p, header_len, cs, r);

	/* Tables: size limits, bounds, overlaps. */
	l2_entries = cs / ((r->incompatible_features & INCOMPAT_EXTL2) ? 16 : 8);
	needed_l1 = size / (cs * l2_entries) + (size % (cs * l2_entries) != 0);
	if (needed_l1 > l1_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "L1 table of %u entries cannot map %llu bytes",
		                   l1_size, (unsigned long long)size);
	check_table("L1 table", l1_off, (uint64_t)l1_size * 8, cs, lim, r);
	check_table("refcount table", rt_off, (uint64_t)rt_clusters * cs, cs,
	            lim, r);
	if (rt_clusters == 0 || rt_off == 0)
		vmd_inspect_refuse(r, "header-bounds", "no refcount table");
	if (nb_snapshots > MAX_SNAPSHOTS)
		vmd_inspect_refuse(r, "table-size-limit",
		                   "%u snapshots is above the limit %u",
		                   nb_snapshots, MAX_SNAPSHOTS);
	if (nb_snapshots)
		check_table("snapshot table", snap_off,
		            (uint64_t)nb_snapshots * SNAPSHOT_HEADER_MIN, cs, lim,
		            r);
	const struct range ranges[] = {
		{"the header", 0, cs},
		{"the L1 table", l1_off, (uint64_t)l1_size * 8},
		{"the refcount table", rt_off, (uint64_t)rt_clusters * cs},
		{"the snapshot table", snap_off,
		 nb_snapshots ? (uint64_t)nb_snapshots * SNAPSHOT_HEADER_MIN : 0},
	};

	check_overlaps(ranges, sizeof(ranges) / sizeof(ranges[0]), r);
	return 0;
}

const struct vmd_format_ops vmd_format_qcow2 = {
	.format = VMD_IMG_QCOW2,
	.name = "qcow2",
	.probe = qcow2_probe,
	.inspect = qcow2_inspect,
};
