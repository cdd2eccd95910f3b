/*
 * The host table (module_host.h): the library's internal calls a backend
 * module may make. The registry (backend.c) hands a loaded module a
 * pointer to it; the module calls these, never an internal symbol, so
 * libvmdisk.so exports only its public API and the module still uses the
 * library's one copy of its state (log sink, secrets, fault points).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "beneath.h"
#include "cleanup.h"
#include "convert.h"
#include "faultpoint.h"
#include "fsutil.h"
#include "module_host.h"
#include "mover.h"
#include "progress.h"
#include "rbd_location.h"

/* A module has a descriptor (struct vmd_image.fd, opened beneath
 * instances_path), never a path it could be tricked into: the mover's
 * workers open the descriptor's /proc/self/fd name, one each. The sink
 * is not serial: a module's store takes writes at once (librbd's image
 * handle does). */
static int host_move_base(int fd, enum vmd_format format,
                          const struct vmd_inspect_limits *limits,
                          vmd_host_sink_fn sink, void *opaque,
                          const char *step, struct vmd_error *err)
{
	struct vmd_inspect_limits lim;
	char path[32];
	struct vmd_move_bd_src bs = {.format = format, .lim = &lim};
	struct vmd_move_src src;
	struct vmd_move_dst dst = {
		.fd = -1,
		.reads_zero = true,
		.write = sink,
		.opaque = opaque,
	};
	/* A module's store is remote: requests in flight set the pace, not
	 * CPUs (the RBD import kept 8 writes in flight before the mover). */
	struct vmd_move_opts opts = {.workers = VMD_MOVE_MAX_WORKERS};
	int rc;

	if (limits)
		lim = *limits;
	else
		vmd_inspect_limits_default(&lim);
	vmd_fd_path(fd, path);
	bs.path = path;
	rc = vmd_move_src_blockdev(&bs, &src, err);
	if (rc < 0) {
		vmd_error_prefix(err, step);
		return rc;
	}
	return vmd_move(&src, &dst, &opts, step, err);
}

/* A module's source, in the mover's shape. */
static int host_move_to_fd(const struct vmd_host_move_src *hs, int fd,
                           const char *step, struct vmd_error *err)
{
	const struct vmd_move_src_ops ops = {
		.open = hs->open,
		.close = hs->close,
		.status = hs->status,
		.pread = hs->pread,
	};
	struct vmd_move_src src = {
		.ops = &ops,
		.opaque = hs->opaque,
		.size = hs->size,
		.raw_fd = -1,
	};
	struct vmd_move_dst dst = {.fd = fd, .reads_zero = true};
	/* Reads from a remote store: as many in flight as the mover has. */
	struct vmd_move_opts opts = {.workers = VMD_MOVE_MAX_WORKERS};

	if (vmd_ftruncate(fd, 0) < 0 || vmd_ftruncate(fd, hs->size) < 0) {
		vmd_error_set_errno(err, VMD_E_IO, errno, "sizing the copy failed",
		                    "ftruncate %llu",
		                    (unsigned long long)hs->size);
		vmd_error_prefix(err, step);
		return VMD_E_IO;
	}
	return vmd_move(&src, &dst, &opts, step, err);
}

/* dst_path into its directory ("." when relative) and file name. */
static int split_path(const char *path, char *dir, size_t dsize,
                      const char **base, struct vmd_error *err)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;

	if (!*name || (slash && (size_t)(slash - path) >= dsize))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "extract: destination is not a file name",
		                     "dst %s", path);
	if (slash == path)
		snprintf(dir, dsize, "/");
	else if (slash)
		snprintf(dir, dsize, "%.*s", (int)(slash - path), path);
	else
		snprintf(dir, dsize, ".");
	*base = name;
	return 0;
}

/* qcow2: fill writes raw bytes into a named temporary beside the target
 * (0600, removed on every path out), which the converter reads by path. */
static int write_qcow2(const char *dir, const char *base,
                       const char *dst_path, vmd_host_fill_fn fill,
                       void *opaque, struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	char tmp_path[PATH_MAX];
	struct vmd_inspect_limits lim;
	struct vmd_convert_opts o = {
		.src_format = VMD_FORMAT_RAW,
		.dst_format = VMD_FORMAT_QCOW2,
		.limits = &lim,
	};
	int rc = vmd_tmpfile_open_named(&t, dir, base, 0600, err);

	if (rc == 0)
		rc = fill(t.fd, opaque, err);
	if (rc == 0 && snprintf(tmp_path, sizeof(tmp_path), "%s/%s", dir,
	                        t.tmpname) >= (int)sizeof(tmp_path))
		rc = vmd_error_set(err, VMD_E_INVAL, "destination path too long",
		                   "tmp path");
	if (rc < 0)
		return rc;
	/* The raw bytes are the module's own, already sized by it. */
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	return vmd_convert_to_path(tmp_path, dst_path, &o, err);
}

static int host_write_file(const char *dst_path, enum vmd_format format,
                           vmd_host_fill_fn fill, void *opaque,
                           struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	char dir[PATH_MAX];
	const char *base = NULL;
	int rc;

	if (format != VMD_FORMAT_RAW && format != VMD_FORMAT_QCOW2)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "extract: only raw or qcow2", "format %s",
		                     vmd_format_name(format));
	rc = split_path(dst_path, dir, sizeof(dir), &base, err);
	if (rc < 0)
		return rc;
	if (format == VMD_FORMAT_QCOW2)
		return write_qcow2(dir, base, dst_path, fill, opaque, err);
	rc = vmd_tmpfile_open(&t, dir, base, 0644, err);
	if (rc == 0)
		rc = fill(t.fd, opaque, err);
	if (rc == 0)
		rc = vmd_tmpfile_publish(&t, false, 0644, err);
	return rc;
}

/* A function, not the inline 0 of a build without fault points, so that
 * the table is the same in every build. */
static int host_faultpoint(const char *point, struct vmd_error *err)
{
	return vmd_faultpoint(point, err);
}

static vmd_step_progress_cb host_progress_current(void **opaque)
{
	struct vmd_progress_hook h = vmd_progress_current();

	*opaque = h.opaque;
	return h.fn;
}

const struct vmd_backend_host vmd_backend_host_table = {
	.write_file = host_write_file,
	.move_base = host_move_base,
	.move_to_fd = host_move_to_fd,
	.rbd_location_parse = vmd_rbd_location_parse,
	.faultpoint = host_faultpoint,
	.progress_current = host_progress_current,
};
