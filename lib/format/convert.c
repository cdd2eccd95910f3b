/*
 * Image conversion (see convert.h; vmd_image_convert is the public call,
 * include/vmdisk/convert.h).
 *
 * The bytes move through the data mover (mover.h): the source chain is opened
 * per worker (decompression runs in parallel), known-zero runs and all-zero
 * blocks are skipped. Raw output is the mover's fd destination (write-behind;
 * raw -> raw may reflink or copy_file_range); qcow2 output goes through one
 * engine, which allocates clusters in the order writes arrive: under a lock it
 * gives a run of whole clusters contiguous host clusters (vmd_qcow2_alloc_run),
 * then the worker writes the data there with no lock held, so the workers'
 * writes overlap. Pieces that are not whole clusters (the disk's last cluster,
 * clusters larger than the mover's chunk) go through vmd_qcow2_pwrite under
 * the lock. The output is a temporary: the L2 entries pointing at clusters
 * not yet written are never seen by anyone, and the one fsync before
 * publishing makes it all durable.
 *
 * The data clusters are written with the mover's write-behind (mover.h),
 * as raw output is: measured here, raw -> qcow2 of 1 GiB with 512 MiB of
 * data, medians of 6 interleaved runs: O_DIRECT ~540 ms, buffered then
 * one fsync ~500 ms, write-behind ~300 ms (bare `qemu-img convert`, no
 * sync, ~200; with sync ~530).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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
#include "mover.h"
#include "qcow2.h"
#include "qcow2_image.h"

/* qcow2 output, written from all the mover's workers at once. */
struct qcow2_out {
	struct vmd_qcow2 *q;
	pthread_mutex_t lock; /* every call into q */
	uint64_t cs;
	struct vmd_writebehind wb; /* the data clusters' writes */
};

static int qcow2_write(void *opaque, const void *buf, size_t len,
                       uint64_t off, struct vmd_error *err)
{
	struct qcow2_out *o = opaque;
	const unsigned char *p = buf;

	while (len > 0) {
		uint64_t in = off & (o->cs - 1);
		uint64_t host = 0;
		size_t n;
		int rc;

		if (in != 0 || len < o->cs) {
			/* Part of a cluster: the engine merges it. */
			n = (size_t)(o->cs - in) < len ? (size_t)(o->cs - in)
			                               : len;
			pthread_mutex_lock(&o->lock);
			rc = vmd_qcow2_pwrite(o->q, p, n, off, err);
			pthread_mutex_unlock(&o->lock);
		} else {
			/* Whole clusters: placed under the lock, written
			 * outside it, so the workers' writes overlap. */
			n = len & ~(size_t)(o->cs - 1);
			pthread_mutex_lock(&o->lock);
			rc = vmd_qcow2_alloc_run(o->q, off, n, &host, err);
			pthread_mutex_unlock(&o->lock);
			if (rc == 0)
				rc = vmd_writebehind_pwrite(&o->wb, p, n, host,
				                            err);
		}
		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static void convert_progress(uint64_t done, uint64_t total, void *opaque)
{
	const struct vmd_convert_opts *o = opaque;

	o->progress(done, total, o->progress_opaque);
}

int vmd_convert_to_fd(const char *src, int dst_fd,
                      const struct vmd_convert_opts *o, struct vmd_error *err)
{
	struct vmd_inspect_limits lim;
	_cleanup_(vmd_blockdev_closep) struct vmd_blockdev *probe = NULL;
	struct vmd_move_bd_src bs = {
		.path = src,
		.format = o->src_format,
		.bd_flags = o->allow_backing ? VMD_BD_ALLOW_BACKING : 0,
		.backing = o->backing,
		.lim = &lim,
	};
	struct vmd_move_src msrc = {.ops = &vmd_move_bd_ops, .opaque = &bs,
	                            .raw_fd = -1};
	struct vmd_move_dst mdst = {.fd = dst_fd, .reads_zero = true};
	struct vmd_move_opts mo = {
		.workers = o->threads,
		.progress = o->progress ? convert_progress : NULL,
		.progress_opaque = (void *)o,
	};
	struct qcow2_out qo = {0};
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
	 * reported before any worker starts; a raw source's descriptor is
	 * what the mover's raw -> raw fast paths use. */
	rc = vmd_blockdev_open_backed(src, o->src_format, bs.bd_flags,
	                              o->backing, &lim, &probe, err);
	if (rc < 0)
		return rc;
	msrc.size = probe->size;
	if (o->src_format == VMD_FORMAT_RAW && o->dst_format == VMD_FORMAT_RAW)
		msrc.raw_fd = probe->fd;
	if (o->dst_format == VMD_FORMAT_QCOW2) {
		uint64_t qsize = (msrc.size + 511) & ~(uint64_t)511;
		uint32_t cb = o->cluster_bits ? o->cluster_bits : 16;

		rc = vmd_qcow2_write_new(dst_fd, qsize ? qsize : 512, cb, NULL,
		                         NULL, err);
		if (rc == 0)
			rc = vmd_qcow2_open(dst_fd, true, NULL, NULL, &qo.q, err);
		if (rc == 0) {
			/* The caller fsyncs the output before it publishes
			 * it (vmd_convert_to_path, as for raw output). */
			vmd_qcow2_defer_sync(qo.q);
			qo.cs = 1ull << cb;
		}
		pthread_mutex_init(&qo.lock, NULL);
		vmd_writebehind_init(&qo.wb, dst_fd);
		mdst = (struct vmd_move_dst){
			.fd = -1,
			.reads_zero = true,
			.write = qcow2_write,
			.opaque = &qo,
		};
	} else if (vmd_ftruncate(dst_fd, msrc.size) < 0) {
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "convert: write failed", "ftruncate");
	}
	if (rc == 0)
		rc = vmd_move(&msrc, &mdst, &mo, "convert", err);
	if (rc == 0 && qo.q) {
		rc = vmd_writebehind_drain(&qo.wb, err);
		if (rc < 0)
			vmd_error_prefix(err, "convert");
	}
	if (o->dst_format == VMD_FORMAT_QCOW2) {
		vmd_writebehind_destroy(&qo.wb);
		pthread_mutex_destroy(&qo.lock);
	}
	if (qo.q) {
		struct vmd_error cerr = VMD_ERROR_INIT;
		int crc = vmd_qcow2_close(qo.q, &cerr);

		if (crc < 0 && rc == 0) {
			rc = crc;
			if (err)
				*err = cerr;
		}
	}
	return rc;
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
