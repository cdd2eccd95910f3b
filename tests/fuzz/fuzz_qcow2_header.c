/*
 * Fuzz target of the one qcow2 header decoder (lib/qcow2_header.c), pure:
 * the input is the head of a qcow2 file, in memory, no descriptor. What
 * must hold whatever the bytes:
 *
 *  - the call returns 0 exactly when no defect was found, else a negative
 *    vmd_errc (VMD_E_UNSUPPORTED for the version, VMD_E_CORRUPT for the
 *    rest) equal to err.code, with a message;
 *  - decoding twice, with and without err, gives the same answer and the
 *    same struct, byte for byte (no uninitialised or stale field);
 *  - past the fatal defects: cluster_bits in 9..21, the cluster size its
 *    power of two, the derived table sizes their products;
 *  - a backing file name that was read lies inside the input, cluster 0
 *    and the file (checked here with plain 128-bit arithmetic, not the
 *    decoder's), and equals the bytes there; both names are terminated;
 *  - an accepted header (0) has its L1, refcount and snapshot tables
 *    aligned, inside the file and apart, and an L1 table that maps the
 *    virtual size.
 *
 * vmd_fuzz_qcow2_header_check() is compiled into the corpus replay test too
 * (replay_corpus.c); LLVMFuzzerTestOneInput only into the fuzzer, built with
 * -DVMD_FUZZER (see meson.build and README.md here).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "qcow2_header.h"

#include "fuzz_qcow2_header.h"

typedef unsigned __int128 u128;

/* Inside [0, limit): start + len computed without any wrap. An empty
 * range (no snapshots, no L1 entries) may name any offset: QEMU never
 * looks there. */
static bool inside(uint64_t start, uint64_t len, uint64_t limit)
{
	return len == 0 || (u128)start + len <= limit;
}

static bool apart(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return alen == 0 || blen == 0 || (u128)a + alen <= b ||
	       (u128)b + blen <= a;
}

static bool check_one(const uint8_t *data, size_t size, uint64_t file_size,
                      char *why, size_t whysz)
{
	static struct vmd_qcow2_header h, h2;
	struct vmd_error err;
	size_t len = size < file_size ? size : (size_t)file_size;
	int rc, rc2;

	vmd_error_clear(&err);
	/* Dirty both structs first: the decoder must clear them. */
	memset(&h, 0xa5, sizeof(h));
	memset(&h2, 0x5a, sizeof(h2));
	rc = vmd_qcow2_decode_header(data, size, file_size, &h, &err);
	rc2 = vmd_qcow2_decode_header(data, size, file_size, &h2, NULL);
	if (rc != rc2 || memcmp(&h, &h2, sizeof(h)) != 0)
		return vmd_fuzz_broken(why, whysz, "two decodings differ "
		                       "(%d, %d)", rc, rc2);
	if ((rc == 0) != (h.defects == 0))
		return vmd_fuzz_broken(why, whysz, "returned %d with defects "
		                       "0x%x", rc, h.defects);
	if (rc != 0 && rc != VMD_E_CORRUPT && rc != VMD_E_UNSUPPORTED)
		return vmd_fuzz_broken(why, whysz, "returned %d", rc);
	if (rc == VMD_E_UNSUPPORTED && h.defects != VMD_QCOW2_BAD_VERSION)
		return vmd_fuzz_broken(why, whysz, "unsupported with defects "
		                       "0x%x", h.defects);
	if ((int)err.code != rc || (rc < 0 && err.msg[0] == '\0') ||
	    !memchr(err.msg, '\0', sizeof(err.msg)))
		return vmd_fuzz_broken(why, whysz, "error contract: rc %d, "
		                       "code %d", rc, (int)err.code);
	if (!memchr(h.backing_file, '\0', sizeof(h.backing_file)) ||
	    !memchr(h.backing_format, '\0', sizeof(h.backing_format)))
		return vmd_fuzz_broken(why, whysz, "a name is not terminated");
	if (h.defects & VMD_QCOW2_FATAL_DEFECTS)
		return true;

	if (h.cluster_bits < 9 || h.cluster_bits > 21 ||
	    h.cluster_size != 1ull << h.cluster_bits)
		return vmd_fuzz_broken(why, whysz, "cluster_bits %u, size %llu",
		                       h.cluster_bits,
		                       (unsigned long long)h.cluster_size);
	if (h.l1_bytes != (uint64_t)h.l1_size * 8 ||
	    h.refcount_table_bytes !=
	            (uint64_t)h.refcount_table_clusters * h.cluster_size)
		return vmd_fuzz_broken(why, whysz, "derived table sizes wrong");
	if (h.backing_file[0]) {
		uint64_t limit = h.cluster_size;
		size_t n = strlen(h.backing_file);

		if (limit > len)
			limit = len;
		if (h.defects & VMD_QCOW2_BAD_BACKING_NAME)
			return vmd_fuzz_broken(why, whysz, "a name was read from "
			                       "a bad place");
		if (!inside(h.backing_file_offset, h.backing_file_size, limit) ||
		    n > h.backing_file_size ||
		    memcmp(h.backing_file, data + h.backing_file_offset, n) != 0)
			return vmd_fuzz_broken(why, whysz, "backing name at %llu "
			                       "(%u bytes) outside %llu bytes or "
			                       "not the input's",
			                       (unsigned long long)
			                               h.backing_file_offset,
			                       h.backing_file_size,
			                       (unsigned long long)limit);
	}
	if (rc != 0)
		return true;

	uint64_t cs = h.cluster_size;
	uint32_t esz = (h.incompatible_features & VMD_QCOW2_INCOMPAT_EXTL2)
	                       ? 16 : 8;
	/* Guest bytes one L1 entry maps: 2^(2 cluster_bits - log2 esz). */
	u128 per_l1 = (u128)1 << (2 * h.cluster_bits - (esz == 16 ? 4 : 3));

	if ((u128)h.l1_size * per_l1 < h.size)
		return vmd_fuzz_broken(why, whysz, "accepted an L1 table of %u "
		                       "entries for %llu bytes", h.l1_size,
		                       (unsigned long long)h.size);
	if ((h.l1_bytes && h.l1_table_offset % cs) ||
	    h.refcount_table_offset % cs ||
	    (h.snapshot_table_bytes && h.snapshots_offset % cs) ||
	    !inside(h.l1_table_offset, h.l1_bytes, file_size) ||
	    h.refcount_table_bytes == 0 ||
	    !inside(h.refcount_table_offset, h.refcount_table_bytes,
	            file_size) ||
	    !inside(h.snapshots_offset, h.snapshot_table_bytes, file_size))
		return vmd_fuzz_broken(why, whysz, "accepted a table that is "
		                       "unaligned or past the end");
	if (!apart(0, cs, h.l1_table_offset, h.l1_bytes) ||
	    !apart(0, cs, h.refcount_table_offset, h.refcount_table_bytes) ||
	    !apart(0, cs, h.snapshots_offset, h.snapshot_table_bytes) ||
	    !apart(h.l1_table_offset, h.l1_bytes, h.refcount_table_offset,
	           h.refcount_table_bytes) ||
	    !apart(h.l1_table_offset, h.l1_bytes, h.snapshots_offset,
	           h.snapshot_table_bytes) ||
	    !apart(h.refcount_table_offset, h.refcount_table_bytes,
	           h.snapshots_offset, h.snapshot_table_bytes))
		return vmd_fuzz_broken(why, whysz, "accepted overlapping tables");
	if (h.header_length > len || h.header_length > cs)
		return vmd_fuzz_broken(why, whysz, "accepted header length %u",
		                       h.header_length);
	return true;
}

bool vmd_fuzz_qcow2_header_check(const uint8_t *data, size_t size, char *why,
                                 size_t whysz)
{
	uint64_t extra = 0;

	vmd_fuzz_start("fuzz_qcow2_header", why, whysz);
	if (!check_one(data, size, size, why, whysz))
		return false;
	/* The same head of a larger file: tables may lie beyond the input. */
	for (size_t i = 0; i < 8 && i < size; i++)
		extra = extra << 8 | data[size - 1 - i];
	return check_one(data, size,
	                 extra > UINT64_MAX - size ? UINT64_MAX : size + extra,
	                 why, whysz);
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(qcow2_header)
#endif
