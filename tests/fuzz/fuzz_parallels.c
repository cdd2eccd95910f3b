/*
 * Fuzz target of the Parallels/ploop image reader and resizer
 * (lib/parallels.c). The input is the image file, placed in one memfd that
 * is made once and rewritten for each input (the reader works on a
 * descriptor; no file system is touched). Rules checked on every input:
 *
 *   - the error contract (fuzz_util.h) of open, read, status and resize; a
 *     failed open leaves the handle NULL;
 *   - an opened image is no larger than the limit given (64 GiB here),
 *     its cluster a power of two of at least 512 bytes;
 *   - vmd_parallels_status answers a run of 1..len bytes; a run it calls
 *     zero reads as zeroes, and so do 512 bytes past the end (the walk
 *     asks at most 256 times for 64 clusters, skipping ahead on big disks,
 *     and reads the first 4 KiB of each run);
 *   - on a small image (at most 256 KiB, clusters of at most 64 KiB) whose
 *     every cluster reads: growing it by 1..16 clusters (or by a few
 *     sectors) gives an image that opens again, has the new size, reads
 *     the same bytes where the old one had data and zeroes after.
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (meson.build here).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vmdisk/inspect.h>

#include "fsutil.h"
#include "parallels.h"

#include "fuzz_parallels.h"

#define MAX_VIRTUAL_SIZE (64ull << 30)
#define MAX_STEPS 256u
#define STEP_CLUSTERS 64u
#define READ_MAX (4u << 10)
#define RESIZE_MAX_SIZE (256u << 10)
#define RESIZE_MAX_CLUSTER (64u << 10)

static int memfd = -1;
static unsigned char readbuf[READ_MAX];
/* Made once: a fresh malloc per input costs page faults, not checks. */
#define GROW_MAX (RESIZE_MAX_SIZE + 16ull * RESIZE_MAX_CLUSTER)
static unsigned char before[GROW_MAX], after[GROW_MAX];

/* The input as the image file: written over the same memfd every time. */
static bool load(const uint8_t *data, size_t size)
{
	if (memfd < 0) {
		memfd = memfd_create("fuzz_parallels", MFD_CLOEXEC);
		if (memfd < 0)
			return false;
	}
	return ftruncate(memfd, (off_t)size) == 0 &&
	       (size == 0 || vmd_pwrite_full(memfd, data, size, 0) == 0);
}

/* memcmp, not a byte loop: this file is instrumented for coverage. */
static bool is_zero(const unsigned char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Walk the disk with status, reading a bit of every run. */
static bool walk(struct vmd_parallels *p, char *why, size_t whysz)
{
	uint64_t size = vmd_parallels_size(p);
	uint64_t ask = (uint64_t)vmd_parallels_cluster_size(p) * STEP_CLUSTERS;
	uint64_t step = ask, off = 0;
	struct vmd_error err;

	/* Big disks: skip ahead so that the walk covers all of it. */
	if (size / step > MAX_STEPS)
		step = size / MAX_STEPS + 1;
	for (unsigned i = 0; i < MAX_STEPS && off < size; i++) {
		uint64_t len = size - off < ask ? size - off : ask, run = 0;
		bool zero = false;
		size_t n;
		int rc;

		vmd_error_clear(&err);
		rc = vmd_parallels_status(p, off, len, &run, &zero, &err);
		if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
			return false;
		if (rc < 0)
			return true;
		if (run == 0 || run > len)
			return vmd_fuzz_broken(why, whysz,
			                       "status run %llu of %llu",
			                       (unsigned long long)run,
			                       (unsigned long long)len);
		n = run < READ_MAX ? (size_t)run : READ_MAX;
		vmd_error_clear(&err);
		rc = vmd_parallels_pread(p, readbuf, n, off, &err);
		if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
			return false;
		if (rc == 0 && zero && !is_zero(readbuf, n))
			return vmd_fuzz_broken(why, whysz,
			                       "zero run at %llu reads data",
			                       (unsigned long long)off);
		off += run < len ? run : step;
	}
	vmd_error_clear(&err);
	memset(readbuf, 0xa5, 512);
	if (vmd_parallels_pread(p, readbuf, 512, size, &err) != 0 ||
	    !is_zero(readbuf, 512))
		return vmd_fuzz_broken(why, whysz, "past the end is not zeroes");
	return true;
}

/* Grow a small image and check what it reads before and after. */
static bool grow(const uint8_t *data, size_t size, char *why, size_t whysz)
{
	static const struct vmd_inspect_limits lim = {
		MAX_VIRTUAL_SIZE, 32u << 20, 4u << 20};
	struct vmd_parallels *p = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	uint64_t old_size, new_size;
	uint32_t cluster;
	unsigned char knob = size ? data[size - 1] : 0;
	bool ok = true;
	int rc;

	if (vmd_parallels_open(memfd, true, &lim, &p, &err) != 0)
		return vmd_fuzz_broken(why, whysz, "writable open refused");
	old_size = vmd_parallels_size(p);
	cluster = vmd_parallels_cluster_size(p);
	if (old_size > RESIZE_MAX_SIZE || cluster > RESIZE_MAX_CLUSTER ||
	    old_size % 512) {
		vmd_parallels_close(p);
		return true;
	}
	/* Whole clusters, or a few sectors: both paths of the BAT growth. */
	new_size = knob & 1 ? old_size + 512ull * (1 + (knob >> 1) % 8)
	                    : old_size + (uint64_t)cluster * (1 + (knob >> 1) % 16);
	if (vmd_parallels_pread(p, before, (size_t)old_size, 0, &err) != 0) {
		/* A cluster past the end of the file: nothing to compare. */
		vmd_parallels_close(p);
		return true;
	}
	memset(before + old_size, 0, (size_t)(new_size - old_size));
	vmd_error_clear(&err);
	rc = vmd_parallels_resize(p, new_size, &err);
	vmd_parallels_close(p);
	p = NULL;
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz)) {
		ok = false;
	} else if (rc == 0) {
		vmd_error_clear(&err);
		if (vmd_parallels_open(memfd, false, &lim, &p, &err) != 0)
			ok = vmd_fuzz_broken(why, whysz,
			                     "resized image refused: %s", err.detail);
		else if (vmd_parallels_size(p) != new_size)
			ok = vmd_fuzz_broken(why, whysz, "resized to %llu, not %llu",
			                     (unsigned long long)vmd_parallels_size(p),
			                     (unsigned long long)new_size);
		else if (vmd_parallels_pread(p, after, (size_t)new_size, 0,
		                             &err) != 0)
			ok = vmd_fuzz_broken(why, whysz, "resized image unreadable");
		else if (memcmp(before, after, (size_t)new_size) != 0)
			ok = vmd_fuzz_broken(why, whysz, "resize changed the data");
		vmd_parallels_close(p);
	}
	return ok;
}

VMD_FUZZ_DECLARE_CHECK(parallels)
{
	static const struct vmd_inspect_limits lim = {
		MAX_VIRTUAL_SIZE, 32u << 20, 4u << 20};
	struct vmd_parallels *p = (struct vmd_parallels *)&p; /* not NULL */
	struct vmd_error err = VMD_ERROR_INIT;
	uint64_t vsize;
	uint32_t cluster;
	bool ok;
	int rc;

	vmd_fuzz_start("fuzz_parallels", why, whysz);
	if (!load(data, size))
		return vmd_fuzz_broken(why, whysz, "memfd: %s", strerror(errno));
	rc = vmd_parallels_open(memfd, false, &lim, &p, &err);
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
		return false;
	if (rc < 0)
		return p == NULL ? true
		                 : vmd_fuzz_broken(why, whysz,
		                                   "failed open left a handle");
	cluster = vmd_parallels_cluster_size(p);
	vsize = vmd_parallels_size(p);
	if (vsize > MAX_VIRTUAL_SIZE || cluster < 512 ||
	    (cluster & (cluster - 1))) {
		vmd_parallels_close(p);
		return vmd_fuzz_broken(why, whysz, "opened size %llu cluster %u",
		                       (unsigned long long)vsize, cluster);
	}
	ok = walk(p, why, whysz);
	vmd_parallels_close(p);
	return ok && grow(data, size, why, whysz);
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(parallels)
#endif
