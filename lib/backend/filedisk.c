/*
 * Shared code of the file backends (see filedisk.h). Every access goes
 * through the instance directory's descriptor (lib/beneath.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "faultpoint.h"
#include "filedisk.h"

int vmd_filedisk_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        bool *exists, struct vmd_error *err)
{
	struct stat st;

	(void)ctx;
	/* lstat semantics: a link under the disk's name counts as a disk,
	 * so create refuses to make one there. */
	if (vmd_bstat(disk->instance_fd, disk->disk, &st) == 0) {
		*exists = true;
		return 0;
	}
	if (errno == ENOENT) {
		*exists = false;
		return 0;
	}
	return vmd_beneath_error(err, VMD_E_IO, errno, "check disk failed",
	                         "lstat %s", disk->path);
}

int vmd_filedisk_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        struct vmd_error *err)
{
	struct stat st;

	(void)ctx;
	if (vmd_bstat(disk->instance_fd, disk->disk, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "remove disk failed", "lstat %s",
		                         disk->path);
	}
	/* Not ours: a link or anything else planted under the disk's name
	 * is left for a human to look at. */
	if (!S_ISREG(st.st_mode))
		return vmd_beneath_error(err, VMD_E_IO,
		                         S_ISLNK(st.st_mode) ? ELOOP : EINVAL,
		                         "remove disk failed",
		                         "%s is not a regular file", disk->path);
	if (vmd_bunlink(disk->instance_fd, disk->disk, 0) < 0 &&
	    errno != ENOENT)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "remove disk failed", "unlink %s",
		                         disk->path);
	if (vmd_fsync(disk->instance_fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "sync directory failed", "fsync %s",
		                           disk->instance_dir);
	return 0;
}

int vmd_filedisk_begin(const struct vmd_disk_ref *disk, struct vmd_tmpfile *t,
                       struct vmd_error *err)
{
	return vmd_tmpfile_openat(t, disk->instance_fd, disk->disk,
	                          VMD_DISK_MODE, err);
}

int vmd_filedisk_commit(struct vmd_tmpfile *t, struct vmd_error *err)
{
	int rc = vmd_faultpoint("filedisk.before_publish", err);

	if (rc < 0)
		return rc;
	return vmd_tmpfile_publish(t, false, VMD_DISK_MODE, err);
}

int vmd_filedisk_open(const struct vmd_disk_ref *disk, int flags, int *fd,
                      struct vmd_error *err)
{
	*fd = vmd_bopen(disk->instance_fd, disk->disk, flags | O_NONBLOCK, 0);
	if (*fd < 0)
		return vmd_beneath_error(err,
		                         errno == ENOENT ? VMD_E_NOTFOUND
		                                         : VMD_E_IO,
		                         errno, "open disk failed", "open %s",
		                         disk->path);
	return 0;
}

int vmd_filedisk_stat(const struct vmd_disk_ref *disk,
                      struct vmd_disk_info *out, uint64_t *file_size,
                      struct vmd_error *err)
{
	struct stat st;

	if (vmd_bstat(disk->instance_fd, disk->disk, &st) < 0)
		return vmd_beneath_error(err,
		                         errno == ENOENT ? VMD_E_NOTFOUND
		                                         : VMD_E_IO,
		                         errno, "disk not found", "lstat %s",
		                         disk->path);
	if (!S_ISREG(st.st_mode))
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "disk is not a regular file", "%s",
		                     disk->path);
	snprintf(out->path, sizeof(out->path), "%s", disk->path);
	out->actual_size = (uint64_t)st.st_blocks * 512;
	*file_size = (uint64_t)st.st_size;
	return 0;
}

int vmd_filedisk_preallocate(struct vmd_ctx *ctx, int fd, uint64_t size,
                             struct vmd_error *err)
{
	if (ctx->cfg.preallocate_images != VMD_PREALLOCATE_SPACE)
		return 0;
	int rc = vmd_fallocate(fd, 0, size);

	if (rc == EOPNOTSUPP || rc == EINVAL) {
		vmd_log_info("preallocate: not supported by this file system; "
		             "the disk stays sparse");
		return 0;
	}
	if (rc != 0)
		return vmd_error_set_errno(err, VMD_E_IO, rc,
		                           "preallocate disk failed",
		                           "fallocate %llu bytes",
		                           (unsigned long long)size);
	return 0;
}

void vmd_filedisk_xml_source(const struct vmd_disk_ref *disk,
                             const char *format, bool preallocated,
                             struct vmd_xml_source *out)
{
	memset(out, 0, sizeof(*out));
	out->type = VMD_XML_FILE;
	snprintf(out->driver_type, sizeof(out->driver_type), "%s", format);
	snprintf(out->path, sizeof(out->path), "%s", disk->path);
	out->preallocated = preallocated;
}

int vmd_disk_extract_fd(int fd, const char *dst_path,
                        const struct vmd_convert_opts *o,
                        struct vmd_error *err)
{
	struct vmd_convert_opts opts = *o;
	struct vmd_inspect_limits lim;
	char src[32];

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	opts.limits = &lim;
	/* The descriptor, not a name: what was checked is what is read (an
	 * encrypted LV's descriptor is its mapping's). */
	vmd_fd_path(fd, src);
	return vmd_convert_to_path(src, dst_path, &opts, err);
}
