/*
 * Fuzz target of the qcow2 reader (lib/qcow2_image.c through
 * lib/blockdev.c) and the checks it makes, whatever the input bytes:
 *
 *  - every call returns 0, or a negative vmd_errc with err.code equal to it
 *    and a non-empty message (err is cleared before each call, so a call
 *    that returns 0 must leave it clear);
 *  - a failed open leaves the device pointer NULL; an opened device is a
 *    qcow2 one no larger than the virtual size limit (64 GiB here);
 *  - vmd_blockdev_status answers a run of 1..len bytes;
 *  - a run it calls zero reads as zeroes (the first 4 KiB of it are read:
 *    there is no backing file, so nothing there touches the image), and so
 *    do 512 bytes past the end of the device;
 *  - a read-only device refuses vmd_qcow2_pwrite;
 *  - on a read-write copy, a write past the end fails, and a write that
 *    succeeds reads back as written.
 *
 * The walk covers the device from 0 to its size in at most 128 status
 * calls of at most 16 clusters each (skipping ahead on big devices, and
 * stopping after 8 that failed), reads
 * at most 256 KiB in all (fuzz_qcow2_rw alone: 64 calls, 128 KiB), and
 * then makes 4 writes whose offsets, lengths and
 * bytes come from the input's last 32 bytes. Errors are expected (most
 * inputs are corrupt); crashes, sanitizer reports and broken rules are not.
 *
 * vmd_fuzz_qcow2_read_check() is compiled into the corpus replay test too
 * (replay_corpus.c) and runs both halves; LLVMFuzzerTestOneInput only into
 * the fuzzers, built with -DVMD_FUZZER (see meson.build and README.md here).
 * The work is split between two fuzzers over the same corpus, so that each
 * runs thousands of inputs a second: fuzz_qcow2_read the read-only half
 * (open, walk, a refused write), fuzz_qcow2_rw (-DVMD_FUZZ_QCOW2_RW) the
 * read-write half (writes on a copy, then open and walk what the flush
 * left). A crash either finds lands in corpus/qcow2_read/, where the replay
 * runs both.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "blockdev.h"
#include "qcow2_image.h"

#include "fuzz_qcow2_read.h"

#define MAX_VIRTUAL_SIZE (64ull << 30) /* 64 GiB */
/* Per input: enough to touch every kind of cluster of a small image, and
 * little enough for thousands of inputs a second (what is read is checked
 * byte by byte, and each comparison is a coverage callback). */
#define READ_BUDGET (256ull << 10)     /* bytes read per input */
#define MAX_STEPS 128u                 /* status calls per walk */
#define MAX_ERRORS 8u                  /* failed status calls per walk */
#define STEP_CLUSTERS 16u              /* clusters asked per status call */
#define CHUNK (256u << 10)             /* bytes per read call */
#define ZERO_PROBE 4096u               /* bytes read of a zero run */
#define N_WRITES 4u
#define WRITE_MAX (64u << 10)          /* bytes of one write */

/* What one input's run needs: the reason of a broken rule, two buffers. */
struct ctx {
	char *why;
	size_t whysz;
	unsigned char *buf;  /* CHUNK bytes */
	unsigned char *wbuf; /* WRITE_MAX bytes */
	uint64_t budget;     /* bytes still to read */
	unsigned max_steps;  /* status calls per walk */
};

static bool broken(struct ctx *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool broken(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmd_fuzz_vbroken(c->why, c->whysz, fmt, ap);
	va_end(ap);
	return false;
}

/* The error contract of one call, err having been cleared before it. */
static bool check_rc(struct ctx *c, const char *call, int rc,
                     const struct vmd_error *err)
{
	if (rc > 0 ||
	    (rc < 0 && strcmp(vmd_errc_name((enum vmd_errc)rc), "unknown") == 0))
		return broken(c, "%s: returned %d, not 0 or a vmd_errc", call, rc);
	if (!memchr(err->msg, '\0', sizeof(err->msg)) ||
	    !memchr(err->detail, '\0', sizeof(err->detail)))
		return broken(c, "%s: error text not NUL-terminated", call);
	if (rc == 0 && err->code != VMD_OK)
		return broken(c, "%s: returned 0 with err.code %d (%s)", call,
		              (int)err->code, err->msg);
	if (rc < 0 && (int)err->code != rc)
		return broken(c, "%s: returned %d with err.code %d", call, rc,
		              (int)err->code);
	if (rc < 0 && err->msg[0] == '\0')
		return broken(c, "%s: returned %d without an error message",
		              call, rc);
	return true;
}

/* memcmp against zeroes: one call, not one instrumented compare a byte. */
static bool all_zero(const unsigned char *p, size_t n)
{
	static const unsigned char zero[4096];

	while (n > 0) {
		size_t k = n < sizeof(zero) ? n : sizeof(zero);

		if (memcmp(p, zero, k) != 0)
			return false;
		p += k;
		n -= k;
	}
	return true;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/*
 * *fd, a memfd made on first use and kept, made to hold exactly the bytes;
 * its path ("/proc/self/fd/N") in path. Rewriting one memfd in place
 * keeps its pages: a new one per input, filled and freed, was a tenth of
 * the run. The engine's writes to the copy are undone by the next fill.
 */
static int memfd_fill(int *fd, const uint8_t *data, size_t size, char *path,
                      size_t pathsz)
{
	size_t done = 0;

	if (*fd < 0)
		*fd = memfd_create("vmdisk-fuzz-qcow2", MFD_CLOEXEC);
	if (*fd < 0)
		return -1;
	while (done < size) {
		ssize_t n = pwrite(*fd, data + done, size - done, (off_t)done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	if (ftruncate(*fd, (off_t)size) < 0)
		return -1;
	snprintf(path, pathsz, "/proc/self/fd/%d", *fd);
	return *fd;
}

static bool open_bd(struct ctx *c, const char *call, const char *path,
                    unsigned flags, struct vmd_blockdev **bd)
{
	struct vmd_inspect_limits lim;
	struct vmd_error err;
	int rc;

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = MAX_VIRTUAL_SIZE;
	vmd_error_clear(&err);
	*bd = NULL;
	rc = vmd_blockdev_open(path, VMD_FORMAT_QCOW2, flags, &lim, bd, &err);
	if (!check_rc(c, call, rc, &err))
		return false;
	if (rc < 0 && *bd)
		return broken(c, "%s: failed (%d) but gave a device", call, rc);
	if (rc == 0 && !*bd)
		return broken(c, "%s: succeeded without a device", call);
	if (rc == 0 && (!(*bd)->qcow2 || (*bd)->format != VMD_FORMAT_QCOW2))
		return broken(c, "%s: opened, but not as a qcow2 device", call);
	if (rc == 0 && (*bd)->size > MAX_VIRTUAL_SIZE)
		return broken(c, "%s: opened a device of %llu bytes, above the "
		              "limit", call, (unsigned long long)(*bd)->size);
	return true;
}

/* Read [off, off+len) in chunks; a zero run must read as zeroes. */
static bool read_run(struct ctx *c, struct vmd_blockdev *bd, uint64_t off,
                     uint64_t len, bool zero)
{
	while (len > 0) {
		struct vmd_error err;
		size_t n = len < CHUNK ? (size_t)len : CHUNK;
		int rc;

		vmd_error_clear(&err);
		memset(c->buf, 0xa5, n);
		rc = vmd_blockdev_pread(bd, c->buf, n, off, &err);
		c->budget -= n;
		if (!check_rc(c, "vmd_blockdev_pread", rc, &err))
			return false;
		if (rc < 0 && zero)
			return broken(c, "pread of %zu bytes at %llu failed (%s) "
			              "in a run status calls zero", n,
			              (unsigned long long)off, err.msg);
		if (rc < 0)
			return true; /* a corrupt cluster: go on walking */
		if (zero && !all_zero(c->buf, n))
			return broken(c, "%zu bytes at %llu are not zero in a run "
			              "status calls zero", n,
			              (unsigned long long)off);
		off += n;
		len -= n;
	}
	return true;
}

static bool walk(struct ctx *c, struct vmd_blockdev *bd)
{
	uint64_t cs = 1ull << vmd_qcow2_header_of(bd->qcow2)->cluster_bits;
	uint64_t size = bd->size;
	uint64_t stride = div_up(div_up(size, c->max_steps), cs) * cs;
	uint64_t off = 0;
	unsigned errors = 0;
	struct vmd_error err;
	int rc;

	for (unsigned step = 0; step < c->max_steps && errors < MAX_ERRORS;
	     step++) {
		uint64_t len, run = 0, n;
		bool zero = false;

		/* Big devices are sampled: step i starts at i * stride at
		 * the earliest, so that max_steps reach the end. */
		if (off < step * stride)
			off = step * stride;
		if (off >= size)
			break;
		len = size - off;
		if (len > STEP_CLUSTERS * cs)
			len = STEP_CLUSTERS * cs;
		vmd_error_clear(&err);
		rc = vmd_blockdev_status(bd, off, len, &run, &zero, &err);
		if (!check_rc(c, "vmd_blockdev_status", rc, &err))
			return false;
		if (rc < 0) {
			/* A corrupt entry: go on after its cluster (a few
			 * times: every error is formatted and logged). */
			errors++;
			off = (off & ~(cs - 1)) + cs;
			continue;
		}
		if (run < 1 || run > len)
			return broken(c, "status at %llu for %llu bytes answered a "
			              "run of %llu", (unsigned long long)off,
			              (unsigned long long)len,
			              (unsigned long long)run);
		n = run < c->budget ? run : c->budget;
		if (zero && n > ZERO_PROBE)
			n = ZERO_PROBE;
		if (!read_run(c, bd, off, n, zero))
			return false;
		off += run;
	}

	/* Past the end reads zero; a read across a cluster boundary. */
	vmd_error_clear(&err);
	memset(c->buf, 0xa5, 512);
	rc = vmd_blockdev_pread(bd, c->buf, 512, size, &err);
	if (!check_rc(c, "vmd_blockdev_pread past the end", rc, &err))
		return false;
	if (rc < 0 || !all_zero(c->buf, 512))
		return broken(c, "512 bytes past the end (%llu) %s",
		              (unsigned long long)size,
		              rc < 0 ? "failed to read" : "are not zero");
	if (size > cs) {
		vmd_error_clear(&err);
		rc = vmd_blockdev_pread(bd, c->buf, 2, cs - 1, &err);
		if (!check_rc(c, "vmd_blockdev_pread across a cluster", rc,
		               &err))
			return false;
	}
	return true;
}

/* The i-th 8 bytes from the input's end, big-endian, zero-padded. */
static uint64_t tail64(const uint8_t *data, size_t size, unsigned i)
{
	uint64_t v = 0;

	for (size_t k = 0; k < 8; k++) {
		size_t back = 8 * (size_t)i + 8 - k; /* 1-based from the end */

		v = v << 8 | (back <= size ? data[size - back] : 0);
	}
	return v;
}

/* Small writes on a read-write copy, each read back when it succeeded. */
static bool write_some(struct ctx *c, struct vmd_blockdev *bd,
                       const uint8_t *data, size_t size)
{
	uint64_t cs = 1ull << vmd_qcow2_header_of(bd->qcow2)->cluster_bits;

	for (unsigned i = 0; i < N_WRITES; i++) {
		uint64_t v = tail64(data, size, i) ^
		             (0x9e3779b97f4a7c15ull * (i + 1));
		uint64_t dsize = bd->size;
		uint64_t off = (v >> 2) % (dsize + cs), end;
		size_t len;
		struct vmd_error err;
		int rc;

		switch (v & 3) {
		case 0: /* a few bytes anywhere */
			len = 1 + (size_t)((v >> 40) & 0x1ff);
			break;
		case 1: /* one whole cluster (or its first 64 KiB) */
			off &= ~(cs - 1);
			len = cs < WRITE_MAX ? (size_t)cs : WRITE_MAX;
			break;
		case 2: /* across a cluster boundary */
			off = (off & ~(cs - 1)) + cs - 256;
			len = 512;
			break;
		default: /* at the end of the device */
			off = dsize > 1024 ? dsize - 1024 : 0;
			off += (v >> 40) & 0x7ff;
			len = 512;
			break;
		}
		memset(c->wbuf, (int)((v >> 56) | 1), len);
		c->wbuf[0] = (unsigned char)i;
		vmd_error_clear(&err);
		rc = vmd_qcow2_pwrite(bd->qcow2, c->wbuf, len, off, &err);
		if (!check_rc(c, "vmd_qcow2_pwrite", rc, &err))
			return false;
		end = off + len;
		if (rc == 0 && end > dsize)
			return broken(c, "a write of %zu bytes at %llu past the end "
			              "(%llu) succeeded", len,
			              (unsigned long long)off,
			              (unsigned long long)dsize);
		if (rc < 0)
			continue;
		if (len > c->budget)
			continue;
		c->budget -= len;
		vmd_error_clear(&err);
		memset(c->buf, 0xa5, len);
		rc = vmd_qcow2_pread(bd->qcow2, c->buf, len, off, &err);
		if (!check_rc(c, "vmd_qcow2_pread after a write", rc, &err))
			return false;
		if (rc < 0 || memcmp(c->buf, c->wbuf, len) != 0)
			return broken(c, "write %u of %zu bytes at %llu then a read "
			              "%s", i, len, (unsigned long long)off,
			              rc < 0 ? "failed" : "differs");
	}
	return true;
}

/* Which halves of the check run (the replay: both). */
enum check_part {
	PART_READ = 1u << 0,
	PART_RW = 1u << 1,
};

/* The read-only half: open, walk, and a write that must be refused. */
static bool check_read_half(struct ctx *c, const char *path)
{
	struct vmd_blockdev *bd = NULL;
	struct vmd_error err;
	bool ok;
	int rc;

	if (!open_bd(c, "vmd_blockdev_open", path, 0, &bd))
		return false;
	if (!bd)
		return true;
	ok = walk(c, bd);
	if (ok) {
		vmd_error_clear(&err);
		c->buf[0] = 1;
		rc = vmd_qcow2_pwrite(bd->qcow2, c->buf, 1, 0, &err);
		ok = check_rc(c, "vmd_qcow2_pwrite (read-only)", rc, &err);
		if (ok && rc == 0)
			ok = broken(c, "a read-only device took a write");
	}
	vmd_blockdev_close(bd);
	return ok;
}

/* The read-write half: writes on a copy, then what the flush left must
 * still open and walk, or fail properly. */
static bool check_rw_half(struct ctx *c, const uint8_t *data, size_t size)
{
	static int wfd = -1;
	struct vmd_blockdev *bd = NULL;
	char wpath[64];
	bool ok;

	if (memfd_fill(&wfd, data, size, wpath, sizeof(wpath)) < 0)
		return broken(c, "memfd for the copy: %s", strerror(errno));
	ok = open_bd(c, "vmd_blockdev_open (write)", wpath, VMD_BD_WRITE, &bd);
	if (ok && bd)
		ok = write_some(c, bd, data, size);
	vmd_blockdev_close(bd); /* flushes */
	bd = NULL;
	if (ok)
		ok = open_bd(c, "vmd_blockdev_open (after writes)", wpath, 0, &bd);
	if (ok && bd)
		ok = walk(c, bd);
	vmd_blockdev_close(bd);
	return ok;
}

static bool check(const uint8_t *data, size_t size, char *why, size_t whysz,
                  unsigned parts)
{
	static unsigned char *buf, *wbuf;
	static int fd = -1;
	struct ctx c = {why, whysz, NULL, NULL, READ_BUDGET, MAX_STEPS};
	char path[64];

	vmd_fuzz_start("fuzz_qcow2_read", why, whysz);
	if (!buf)
		buf = malloc(CHUNK);
	if (!wbuf)
		wbuf = malloc(WRITE_MAX);
	if (!buf || !wbuf)
		return broken(&c, "out of memory");
	c.buf = buf;
	c.wbuf = wbuf;
	/* The read-write fuzzer alone walks the flushed copy at half the
	 * depth: the read-only one walks the unchanged image in full, and the
	 * replay (both halves) keeps the full walk and budget. */
	if (parts == PART_RW) {
		c.budget = READ_BUDGET / 2;
		c.max_steps = MAX_STEPS / 2;
	}
	if (parts & PART_READ) {
		if (memfd_fill(&fd, data, size, path, sizeof(path)) < 0)
			return broken(&c, "memfd: %s", strerror(errno));
		if (!check_read_half(&c, path))
			return false;
	}
	return !(parts & PART_RW) || check_rw_half(&c, data, size);
}

bool vmd_fuzz_qcow2_read_check(const uint8_t *data, size_t size, char *why,
                               size_t whysz)
{
	return check(data, size, why, whysz, PART_READ | PART_RW);
}

#ifdef VMD_FUZZER
#ifdef VMD_FUZZ_QCOW2_RW
#define FUZZ_PARTS PART_RW
#define FUZZ_NAME "fuzz_qcow2_rw"
#else
#define FUZZ_PARTS PART_READ
#define FUZZ_NAME "fuzz_qcow2_read"
#endif
static bool fuzz_parts_check(const uint8_t *data, size_t size, char *why,
                             size_t whysz)
{
	return check(data, size, why, whysz, FUZZ_PARTS);
}

VMD_FUZZ_ENTRY_OF(FUZZ_NAME, fuzz_parts_check)
#endif
