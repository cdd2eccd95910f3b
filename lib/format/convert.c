/*
 * Image conversion (see convert.h; vmd_image_convert is the public call,
 * include/vmdisk/convert.h).
 *
 * The bytes move through the data mover (mover.h): the source chain is
 * opened per worker (decompression runs in parallel), known-zero runs and
 * all-zero blocks are skipped. Raw output is the mover's fd destination
 * (O_DIRECT where the file system takes it; raw -> raw may reflink or
 * copy_file_range); qcow2 output goes through one engine, a serial
 * destination, which allocates clusters in the order writes arrive.
 */
#include <errno.h>
#include <fcntl.h>
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

/* qcow2 output: one engine, which allocates clusters in the order writes
 * arrive; the mover calls it under its lock (a serial destination). */
static int qcow2_write(void *opaque, const void *buf, size_t len,
                       uint64_t off, struct vmd_error *err)
{
	return vmd_qcow2_pwrite(opaque, buf, len, off, err);
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
	struct vmd_qcow2 *q = NULL;
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

		rc = vmd_qcow2_write_new(dst_fd, qsize ? qsize : 512,
		                         o->cluster_bits ? o->cluster_bits : 16,
		                         NULL, NULL, err);
		if (rc == 0)
			rc = vmd_qcow2_open(dst_fd, true, NULL, NULL, &q, err);
		mdst = (struct vmd_move_dst){
			.fd = -1,
			.reads_zero = true,
			.write = qcow2_write,
			.opaque = q,
			.serial = true,
		};
	} else if (vmd_ftruncate(dst_fd, msrc.size) < 0) {
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "convert: write failed", "ftruncate");
	}
	if (rc == 0)
		rc = vmd_move(&msrc, &mdst, &mo, "convert", err);
	if (q) {
		struct vmd_error cerr = VMD_ERROR_INIT;
		int crc = vmd_qcow2_close(q, &cerr);

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
