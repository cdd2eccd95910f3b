/*
 * qcow2 for the inspector: the header is decoded by the one qcow2 decoder
 * (qcow2_header.c, which checks every offset and length the header names:
 * header length, extensions, backing file name, tables inside the file and
 * apart from each other); this file turns its findings into reasons and
 * adds the policy an untrusted qcow2 must pass (QEMU docs/interop/qcow2.txt;
 * the refusals follow CVE-2024-32498 and oslo.utils' format_inspector):
 *   - any version but 2 and 3 (version 1 is the old qcow format, and
 *     QEMU probes any version as qcow2: none of them may pass as raw);
 *   - a backing file (unless the caller allows a chain), an external data
 *     file (incompatible bit 2 or the "DATA" extension), encryption,
 *     unknown incompatible bits, the corrupt bit, an unknown compression;
 *   - tables above the size limit.
 * Only cluster 0 (as far as the probe buffer holds it) is parsed; tables
 * are checked by position and size and never read, so the work is the same
 * for a 1 MiB and a 1 PiB claim.
 */
#include <stdio.h>
#include <string.h>

#include "inspect.h"
#include "qcow2_header.h"

#define MAX_SNAPSHOTS 65536

/* Any version: QEMU probes the magic alone, so whatever follows it is a
 * qcow of some kind and never raw. */
static bool qcow2_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, 0, VMD_QCOW2_MAGIC_BYTES, 4);
}

/* The decoder's structural findings as reasons. */
static void refuse_defects(const struct vmd_qcow2_header *h,
                           struct vmd_inspect_result *r)
{
	for (unsigned bit = 1; bit != 0 && bit <= h->defects; bit <<= 1) {
		if (!(h->defects & bit))
			continue;
		if (bit == VMD_QCOW2_BAD_VERSION && h->version == 1)
			vmd_inspect_refuse(r, "qcow2-version",
			                   "qcow (version 1) images are not "
			                   "supported");
		else if (bit == VMD_QCOW2_BAD_VERSION)
			vmd_inspect_refuse(r, "qcow2-version",
			                   "qcow version %u is not supported",
			                   h->version);
		else if (bit == VMD_QCOW2_BAD_CLUSTER_BITS)
			vmd_inspect_refuse(r, "qcow2-cluster-size",
			                   "cluster_bits %u is outside 9..21",
			                   h->cluster_bits);
		else if (bit == VMD_QCOW2_OVERLAP)
			vmd_inspect_refuse(r, "overlapping-tables", "%s",
			                   vmd_qcow2_defect_text(bit));
		else if (bit == VMD_QCOW2_BAD_EXTENSION)
			vmd_inspect_refuse(r, "header-bounds",
			                   "header extension 0x%08x runs past "
			                   "cluster 0", h->bad_extension_type);
		else
			vmd_inspect_refuse(r, "header-bounds", "%s",
			                   vmd_qcow2_defect_text(bit));
	}
}

/*
 * Stage 1, decode: the one header decoder reads cluster 0, and its
 * structural findings become reasons. false when the header is too broken
 * for the later stages to mean anything.
 */
static bool decode(const struct vmd_probe_data *p,
                   struct vmd_qcow2_header *h, struct vmd_inspect_result *r)
{
	vmd_qcow2_decode_header(p->head, p->head_len, r->file_size, h, NULL);
	r->format = VMD_IMG_QCOW2;
	r->version = h->version;
	r->virtual_size = h->size;
	refuse_defects(h, r);
	if (h->defects & VMD_QCOW2_FATAL_DEFECTS)
		return false;
	r->cluster_size = (uint32_t)h->cluster_size;
	return true;
}

/* Stage 2, features: what the image asks of its reader (feature bits,
 * an external data file, compression, encryption). */
static void check_features(const struct vmd_qcow2_header *h,
                           struct vmd_inspect_result *r)
{
	uint64_t incompat = h->incompatible_features;

	r->incompatible_features = incompat;
	r->compatible_features = h->compatible_features;
	r->autoclear_features = h->autoclear_features;
	if (incompat & ~VMD_QCOW2_INCOMPAT_KNOWN)
		vmd_inspect_refuse(r, "qcow2-unknown-features",
		                   "unknown incompatible feature bits 0x%llx",
		                   (unsigned long long)(incompat &
		                                        ~VMD_QCOW2_INCOMPAT_KNOWN));
	if ((incompat & VMD_QCOW2_INCOMPAT_DATA_FILE) || h->has_data_file_ext)
		vmd_inspect_refuse(r, "qcow2-data-file",
		                   "the image keeps its data in an external file");
	if (incompat & VMD_QCOW2_INCOMPAT_CORRUPT)
		vmd_inspect_refuse(r, "qcow2-corrupt",
		                   "the image is marked corrupt");
	if (h->compression_type > VMD_QCOW2_COMPRESSION_ZSTD)
		vmd_inspect_refuse(r, "qcow2-compression-type",
		                   "unknown compression type %u",
		                   h->compression_type);
	else if ((h->compression_type != VMD_QCOW2_COMPRESSION_ZLIB) !=
	         !!(incompat & VMD_QCOW2_INCOMPAT_COMPRESSION))
		vmd_inspect_refuse(r, "qcow2-compression-type",
		                   "compression type and feature bit disagree");
	if (h->crypt_method != 0)
		vmd_inspect_refuse(r, "qcow2-encrypted",
		                   "encrypted images (method %u) are not "
		                   "supported", h->crypt_method);
}

/* Stage 3, backing: the name is reported; a chain passes only when the
 * caller allows one (VMD_INSPECT_ALLOW_BACKING: the qcow2 reader, whose
 * block layer inspects each link it opens). */
static void check_backing(const struct vmd_qcow2_header *h, unsigned flags,
                          struct vmd_inspect_result *r)
{
	snprintf(r->backing_file, sizeof(r->backing_file), "%s",
	         h->backing_file);
	snprintf(r->backing_format, sizeof(r->backing_format), "%s",
	         h->backing_format);
	if (h->has_backing && !(flags & VMD_INSPECT_ALLOW_BACKING))
		vmd_inspect_refuse(r, "qcow2-backing-file",
		                   "the image has a backing file (%s)",
		                   h->backing_file[0] ? h->backing_file
		                                      : "unreadable");
}

/* Stage 4, tables: sizes against the limits (their positions were the
 * decoder's to check). */
static void check_tables(const struct vmd_qcow2_header *h,
                         const struct vmd_inspect_limits *lim,
                         struct vmd_inspect_result *r)
{
	vmd_inspect_table_limit(r, lim, "L1 table", h->l1_bytes);
	vmd_inspect_table_limit(r, lim, "refcount table",
	                        h->refcount_table_bytes);
	if (h->nb_snapshots > MAX_SNAPSHOTS)
		vmd_inspect_refuse(r, "table-size-limit",
		                   "%u snapshots is above the limit %u",
		                   h->nb_snapshots, MAX_SNAPSHOTS);
	if (h->nb_snapshots)
		vmd_inspect_table_limit(r, lim, "snapshot table",
		                        h->snapshot_table_bytes);
}

static int qcow2_inspect(struct vmd_image_source *src,
                         const struct vmd_probe_data *p,
                         const struct vmd_inspect_limits *lim, unsigned flags,
                         struct vmd_inspect_result *r)
{
	struct vmd_qcow2_header h;

	(void)src; /* everything we parse is in the probe buffer */
	if (!decode(p, &h, r))
		return 0;
	check_features(&h, r);
	check_backing(&h, flags, r);
	check_tables(&h, lim, r);
	return 0;
}

const struct vmd_format_ops vmd_format_qcow2 = {
	.format = VMD_IMG_QCOW2,
	.name = "qcow2",
	.probe = qcow2_probe,
	.inspect = qcow2_inspect,
};
