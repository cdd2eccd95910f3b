/*
 * Image conversion (see convert.h; vmd_image_convert is the public call,
 * include/vmdisk/convert.h).
 *
 * raw -> raw copies the source's data extents (SEEK_DATA/SEEK_HOLE) with
 * copy_file_range, so holes stay holes and the kernel moves the bytes.
 * Everything else goes through block devices: the guest range is cut into
 * chunks that worker threads take in turn; each worker has its own open
 * source chain (own descriptors, own caches), asks which runs are known to
 * be zero (skipped: the new file reads zero there), reads the rest (this is
 * where decompression happens, in parallel) and drops all-zero blocks.
 * Raw output is written with pwrite from every worker; qcow2 output goes
 * through one engine under a mutex, which allocates clusters in the order
 * they arrive.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "blockdev.h"
#include "convert.h"
#include "faultpoint.h"
#include "fsutil.h"
#include "qcow2.h"
#include "qcow2_image.h"

#define CHUNK (2u << 20)
#define ZERO_BLOCK 65536u

struct job {
	const char *src;
	const struct vmd_convert_opts *o;
	const struct vmd_inspect_limits *lim;
	uint64_t size;
	int dst_fd;
	struct vmd_qcow2 *dst_q;     /* qcow2 output */
	pthread_mutex_t lock;        /* dst_q, progress, first error */
	atomic_uint_fast64_t next_chunk;
	atomic_uint_fast64_t done;
	atomic_int failed;
	struct vmd_error err;
};

static int write_out(struct job *j, const unsigned char *buf, size_t len,
                     uint64_t off, struct vmd_error *err)
{
	int rc = 0;

	if (!j->dst_q) {
		if (vmd_pwrite_full(j->dst_fd, buf, len, off) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "convert: write failed",
			                           "at %llu",
			                           (unsigned long long)off);
		return 0;
	}
	pthread_mutex_lock(&j->lock);
	rc = vmd_qcow2_pwrite(j->dst_q, buf, len, off, err);
	pthread_mutex_unlock(&j->lock);
	return rc;
}

/* Write the non-zero blocks of buf (guest range [off, off+len)). */
static int write_nonzero(struct job *j, const unsigned char *buf, size_t len,
                         uint64_t off, struct vmd_error *err)
{
	size_t start = 0;

	while (start < len) {
		size_t end = start;

		while (end < len) {
			size_t n = len - end < ZERO_BLOCK ? len - end : ZERO_BLOCK;

			if (vmd_all_zero(buf + end, n))
				break;
			end += n;
		}
		if (end > start) {
			int rc = write_out(j, buf + start, end - start,
			                   off + start, err);

			if (rc < 0)
				return rc;
		}
		/* Skip the zero block that stopped the run. */
		start = end + (len - end < ZERO_BLOCK ? len - end : ZERO_BLOCK);
	}
	return 0;
}

static void report(struct job *j, uint64_t n)
{
	uint64_t done = atomic_fetch_add(&j->done, n) + n;

	if (j->o->progress) {
		pthread_mutex_lock(&j->lock);
		j->o->progress(done, j->size, j->o->progress_opaque);
		pthread_mutex_unlock(&j->lock);
	}
}

static void fail(struct job *j, const struct vmd_error *e)
{
	pthread_mutex_lock(&j->lock);
	if (!atomic_exchange(&j->failed, 1))
		j->err = *e;
	pthread_mutex_unlock(&j->lock);
}

static void *worker(void *arg)
{
	struct job *j = arg;
	struct vmd_error err = VMD_ERROR_INIT;
	_cleanup_(freep) unsigned char *buf = malloc(CHUNK);
	struct vmd_blockdev *bd = NULL;
	unsigned flags = j->o->allow_backing ? VMD_BD_ALLOW_BACKING : 0;
	int rc = buf ? vmd_blockdev_open_backed(j->src, j->o->src_format, flags,
	                                        j->o->backing, j->lim, &bd,
	                                        &err)
	             : vmd_error_set(&err, VMD_E_NOMEM, "convert: out of memory",
	                             "chunk buffer");

	while (rc == 0 && !atomic_load(&j->failed)) {
		uint64_t c = atomic_fetch_add(&j->next_chunk, 1);
		uint64_t off = c * CHUNK, end;

		if (off >= j->size)
			break;
		end = j->size - off < CHUNK ? j->size : off + CHUNK;
		for (uint64_t o = off; o < end && rc == 0;) {
			uint64_t run;
			bool zero;

			rc = vmd_blockdev_status(bd, o, end - o, &run, &zero,
			                         &err);
			if (rc == 0 && !zero)
				rc = vmd_blockdev_pread(bd, buf, (size_t)run, o,
				                        &err);
			if (rc == 0 && !zero)
				rc = write_nonzero(j, buf, (size_t)run, o, &err);
			o += run;
		}
		if (rc == 0)
			report(j, end - off);
	}
	if (rc < 0)
		fail(j, &err);
	vmd_blockdev_close(bd);
	return NULL;
}

static unsigned pick_threads(const struct vmd_convert_opts *o)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (o->threads)
		return o->threads;
	if (n < 1)
		n = 1;
	return n > 4 ? 4 : (unsigned)n;
}

/* raw -> raw: data extents by copy_file_range, holes kept. */
static int copy_raw(int src, int dst, uint64_t size,
                    const struct vmd_convert_opts *o, struct vmd_error *err)
{
	uint64_t off = 0;

	if (vmd_ftruncate(dst, size) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "convert: write failed", "ftruncate");
	while (off < size) {
		off_t data = lseek(src, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = (off_t)off;
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0)
			hole = (off_t)size;
		loff_t in = data, out = data;

		while (in < hole) {
			ssize_t n = vmd_copy_file_range(src, &in, dst, &out,
			                                (size_t)(hole - in));

			if (n < 0 && (errno == EXDEV || errno == ENOSYS ||
			              errno == EOPNOTSUPP || errno == EINVAL)) {
				/* Fall back to the sparse copy for all. */
				return vmd_copy_sparse(src, dst, err);
			}
			if (n <= 0)
				return vmd_error_set_errno(
					err, VMD_E_IO, n < 0 ? errno : EIO,
					"convert: copy failed", "copy_file_range");
		}
		off = (uint64_t)hole;
		if (o->progress)
			o->progress(off, size, o->progress_opaque);
	}
	if (o->progress)
		o->progress(size, size, o->progress_opaque);
	return 0;
}

int vmd_convert_to_fd(const char *src, int dst_fd,
                      const struct vmd_convert_opts *o, struct vmd_error *err)
{
	struct vmd_inspect_limits lim;
	struct vmd_blockdev *probe = NULL;
	struct job j;
	unsigned nthreads;
	pthread_t tids[16];
	unsigned started = 0;
	int rc;

	if (o->limits)
		lim = *o->limits;
	else
		vmd_inspect_limits_default(&lim);
	if (o->dst_format != VMD_FORMAT_RAW && o->dst_format != VMD_FORMAT_QCOW2)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "convert: output format not supported",
		                     "format %s", vmd_format_name(o->dst_format));
	/* Open once up front: errors (refusals, missing backing files) are
	 * reported before any thread starts. */
	rc = vmd_blockdev_open_backed(src, o->src_format,
	                              o->allow_backing ? VMD_BD_ALLOW_BACKING
	                                               : 0,
	                              o->backing, &lim, &probe, err);
	if (rc < 0)
		return rc;
	memset(&j, 0, sizeof(j));
	j.src = src;
	j.o = o;
	j.lim = &lim;
	j.size = probe->size;
	j.dst_fd = dst_fd;
	if (o->src_format == VMD_FORMAT_RAW && o->dst_format == VMD_FORMAT_RAW) {
		rc = copy_raw(probe->fd, dst_fd, j.size, o, err);
		vmd_blockdev_close(probe);
		return rc;
	}
	vmd_blockdev_close(probe);
	if (o->dst_format == VMD_FORMAT_QCOW2) {
		uint64_t qsize = (j.size + 511) & ~(uint64_t)511;

		rc = vmd_qcow2_write_new(dst_fd, qsize ? qsize : 512,
		                         o->cluster_bits ? o->cluster_bits : 16,
		                         NULL, NULL, err);
		if (rc == 0)
			rc = vmd_qcow2_open(dst_fd, true, NULL, NULL, &j.dst_q,
			                    err);
	} else if (vmd_ftruncate(dst_fd, j.size) < 0) {
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "convert: write failed", "ftruncate");
	}
	if (rc < 0)
		return rc;
	pthread_mutex_init(&j.lock, NULL);
	nthreads = pick_threads(o);
	if (nthreads > sizeof(tids) / sizeof(tids[0]))
		nthreads = sizeof(tids) / sizeof(tids[0]);
	for (; started < nthreads; started++)
		if (pthread_create(&tids[started], NULL, worker, &j) != 0)
			break;
	if (started == 0)
		worker(&j);
	for (unsigned i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	pthread_mutex_destroy(&j.lock);
	if (j.dst_q) {
		struct vmd_error cerr = VMD_ERROR_INIT;

		if (vmd_qcow2_close(j.dst_q, &cerr) < 0 && !j.failed) {
			j.failed = 1;
			j.err = cerr;
		}
	}
	if (j.failed) {
		if (err && !vmd_error_is_set(err))
			*err = j.err;
		return j.err.code;
	}
	return 0;
}

int vmd_convert_to_path(const char *src, const char *dst_path,
                        const struct vmd_convert_opts *o,
                        struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	char dir[PATH_MAX];
	const char *slash = strrchr(dst_path, '/');
	const char *name = slash ? slash + 1 : dst_path;
	int rc;

	if (!*name)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "convert: destination is not a file name",
		                     "%s", dst_path);
	if (slash == dst_path)
		snprintf(dir, sizeof(dir), "/");
	else if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - dst_path),
		         dst_path);
	else
		snprintf(dir, sizeof(dir), ".");
	rc = vmd_tmpfile_open(&t, dir, name, 0600, err);
	if (rc == 0)
		rc = vmd_convert_to_fd(src, t.fd, o, err);
	if (rc == 0)
		rc = vmd_faultpoint("convert.before_publish", err);
	if (rc == 0)
		rc = vmd_tmpfile_publish(&t, false, 0644, err);
	/* The file steps say only "create file failed": name ours. */
	if (rc < 0)
		vmd_error_prefix(err, "convert");
	return rc;
}

int vmd_image_convert(const char *src, const char *dst_path,
                      const struct vmd_image_convert_opts *opts,
                      struct vmd_error *err)
{
	struct vmd_convert_opts o = {
		.src_format = opts->src_format,
		.dst_format = opts->dst_format,
		.allow_backing = opts->allow_backing,
		.limits = opts->limits,
		.progress = opts->progress,
		.progress_opaque = opts->progress_opaque,
	};

	return vmd_convert_to_path(src, dst_path, &o, err);
}
