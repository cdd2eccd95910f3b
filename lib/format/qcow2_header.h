/*
 * The one qcow2 header decoder: bytes in, struct out, no I/O. The reader
 * (qcow2.c), the engine (qcow2_image.c, through the reader and the
 * inspector) and the inspector (inspect_qcow2.c) all decode through it, so
 * the bounds of every offset the header names are checked in one place,
 * with overflow-checked arithmetic.
 *
 * The decoder checks structure (what would make a later read go out of
 * bounds or mean two things at once); what is allowed (features, backing
 * files, encryption, table size limits) is the caller's policy.
 */
#ifndef VMDISK_QCOW2_HEADER_H
#define VMDISK_QCOW2_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmdisk/error.h>

#include "qcow2_format.h"

/*
 * Structural defects, one bit each, so that the inspector can list every
 * one and the reader can refuse on the first. The first four stop the
 * decoding (the rest of the header means nothing then).
 */
enum vmd_qcow2_defect {
	VMD_QCOW2_BAD_MAGIC = 1u << 0,        /* not "QFI\xfb" */
	VMD_QCOW2_BAD_VERSION = 1u << 1,      /* not 2 or 3 (1 is qcow) */
	VMD_QCOW2_TRUNCATED = 1u << 2,        /* shorter than its header */
	VMD_QCOW2_BAD_CLUSTER_BITS = 1u << 3, /* outside 9..21 */
	VMD_QCOW2_BAD_HEADER_LENGTH = 1u << 4,
	VMD_QCOW2_BAD_REFCOUNT_ORDER = 1u << 5,
	VMD_QCOW2_BAD_EXTL2 = 1u << 6,        /* extended L2, small clusters */
	VMD_QCOW2_BAD_BACKING_NAME = 1u << 7, /* out of bounds */
	VMD_QCOW2_BAD_EXTENSION = 1u << 8,    /* runs past cluster 0 */
	VMD_QCOW2_NO_EXTENSION_END = 1u << 9,
	VMD_QCOW2_BAD_BACKING_FORMAT = 1u << 10, /* too long, or twice */
	VMD_QCOW2_L1_TOO_SMALL = 1u << 11,    /* cannot map the virtual size */
	VMD_QCOW2_BAD_L1_TABLE = 1u << 12,    /* unaligned or past the end */
	VMD_QCOW2_BAD_REFCOUNT_TABLE = 1u << 13, /* missing, unaligned, past */
	VMD_QCOW2_BAD_SNAPSHOT_TABLE = 1u << 14, /* unaligned or past the end */
	VMD_QCOW2_OVERLAP = 1u << 15,         /* header and tables overlap */
};
#define VMD_QCOW2_FATAL_DEFECTS                                             \
	(VMD_QCOW2_BAD_MAGIC | VMD_QCOW2_BAD_VERSION | VMD_QCOW2_TRUNCATED | \
	 VMD_QCOW2_BAD_CLUSTER_BITS)

struct vmd_qcow2_header {
	uint32_t version;
	uint64_t backing_file_offset;
	uint32_t backing_file_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_table_offset;
	uint64_t refcount_table_offset;
	uint32_t refcount_table_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	uint32_t refcount_order;
	uint32_t header_length;
	uint32_t compression_type; /* the byte at 104, or 0 */

	/* Derived, valid when no fatal defect is set. */
	uint64_t cluster_size;
	uint64_t l1_bytes;           /* l1_size * 8 */
	uint64_t refcount_table_bytes;
	uint64_t snapshot_table_bytes; /* nb_snapshots * the minimal entry */
	bool has_backing;            /* backing_file_offset != 0 */
	bool has_data_file_ext;      /* a "DATA" extension is present */
	unsigned n_backing_format_ext;
	char backing_file[VMD_QCOW2_BACKING_NAME_MAX + 1]; /* "" if unread */
	char backing_format[VMD_QCOW2_BACKING_FORMAT_MAX + 1];

	unsigned defects;            /* enum vmd_qcow2_defect bits */
	uint32_t bad_extension_type; /* VMD_QCOW2_BAD_EXTENSION: which */
};

/*
 * Decode the header from buf, the first len bytes of a file of file_size
 * bytes (len <= file_size; read at most VMD_QCOW2_HEADER_READ). Anything
 * the header places past len is out of bounds. Clears *h first. Returns 0
 * when no defect was found, else the error of the first one (err set;
 * VMD_E_UNSUPPORTED for the version, VMD_E_CORRUPT for the rest; set and
 * logged only when err is given), with every defect found in h->defects.
 */
int vmd_qcow2_decode_header(const unsigned char *buf, size_t len,
                            uint64_t file_size, struct vmd_qcow2_header *h,
                            struct vmd_error *err);

/* One line for people about one defect bit. */
const char *vmd_qcow2_defect_text(unsigned defect);

/* L1 entries needed to map size bytes with 2^cluster_bits clusters and
 * l2_entry_bytes (8, or 16 for extended L2) per L2 entry. */
uint64_t vmd_qcow2_l1_entries_for(uint64_t size, uint32_t cluster_bits,
                                  uint32_t l2_entry_bytes);

#endif
