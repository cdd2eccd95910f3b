/*
 * The flat backend: the disk is a raw file, a full copy of the base.
 *
 * The copy is as cheap as the file system allows: a reflink (FICLONE) when
 * base and disk share a file system that can share blocks (btrfs, xfs), else
 * a sparse-aware copy in which holes and zero runs of the base stay holes.
 * The disk is then grown to the requested size and, with
 * preallocate_images=space, fully allocated.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "convert.h"
#include "filedisk.h"
#include "mover.h"

/* The last steps of a new disk: its size (msg names the step), its space
 * (preallocate_images), its name. */
static int flat_finish(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       struct vmd_tmpfile *t, uint64_t size,
                       const char *msg, struct vmd_error *err)
{
	int rc;

	if (vmd_ftruncate(t->fd, size) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno, msg,
		                           "ftruncate %s", disk->path);
	rc = vmd_filedisk_preallocate(ctx, t->fd, size, err);
	if (rc < 0)
		return rc;
	return vmd_filedisk_commit(t, err);
}

static int flat_create_from_image(struct vmd_ctx *ctx,
                                  const struct vmd_disk_ref *disk,
                                  const struct vmd_image *base, uint64_t size,
                                  struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	char src[32];
	int rc;

	if (base->format != VMD_FORMAT_RAW && base->format != VMD_FORMAT_QCOW2)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "flat: base image format not supported",
		                     "base %s is %s", base->cache_id,
		                     vmd_format_name(base->format));
	rc = vmd_filedisk_begin(disk, &t, err);
	if (rc < 0)
		return rc;
	if (base->format == VMD_FORMAT_QCOW2) {
		/* force_raw_images=false keeps qcow2 bases: flatten into the
		 * disk with the native reader (the cache checked the image). */
		struct vmd_convert_opts o = {
			.src_format = VMD_FORMAT_QCOW2,
			.dst_format = VMD_FORMAT_RAW,
		};

		vmd_fd_path(base->fd, src);
		rc = vmd_convert_to_fd(src, t.fd, &o, err);
	} else {
		rc = vmd_move_file(base->fd, t.fd, VMD_MOVE_REFLINK,
		                   "flat: copy base image", err);
	}
	if (rc < 0) {
		vmd_error_prefix(err, "flat: copy base image");
		return rc;
	}
	return flat_finish(ctx, disk, &t, size, "flat: grow disk failed", err);
}

static int flat_create_blank(struct vmd_ctx *ctx,
                             const struct vmd_disk_ref *disk, uint64_t size,
                             struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	int rc = vmd_filedisk_begin(disk, &t, err);

	if (rc < 0)
		return rc;
	return flat_finish(ctx, disk, &t, size, "flat: size disk failed", err);
}

static int flat_resize(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       uint64_t new_size, struct vmd_error *err)
{
	_cleanup_(closep) int fd = -1;
	struct stat st;
	int rc = vmd_filedisk_open(disk, O_RDWR, &fd, err);

	if (rc < 0)
		return rc;
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "flat: open disk failed", "fstat %s",
		                           disk->path);
	if (new_size < (uint64_t)st.st_size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "flat: shrinking is not supported",
		                     "%llu < %lld", (unsigned long long)new_size,
		                     (long long)st.st_size);
	if (vmd_ftruncate(fd, new_size) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "flat: grow disk failed",
		                           "ftruncate %s", disk->path);
	rc = vmd_filedisk_preallocate(ctx, fd, new_size, err);
	if (rc < 0)
		return rc;
	if (vmd_fsync(fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "flat: grow disk failed", "fsync %s",
		                           disk->path);
	return 0;
}

static int flat_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                     struct vmd_disk_info *out, struct vmd_error *err)
{
	uint64_t size;
	int rc;

	(void)ctx;
	rc = vmd_filedisk_stat(disk, out, &size, err);
	if (rc < 0)
		return rc;
	snprintf(out->format, sizeof(out->format), "raw");
	out->virtual_size = size;
	out->backing[0] = '\0';
	return 0;
}

static int flat_snapshot_extract(struct vmd_ctx *ctx,
                                 const struct vmd_disk_ref *disk,
                                 const char *dst_path,
                                 enum vmd_format dst_format,
                                 struct vmd_error *err)
{
	struct vmd_convert_opts o = {
		.src_format = VMD_FORMAT_RAW,
		.dst_format = dst_format,
	};
	_cleanup_(closep) int fd = -1;
	int rc = vmd_filedisk_open(disk, O_RDONLY, &fd, err);

	(void)ctx;
	if (rc < 0)
		return rc;
	return vmd_disk_extract_fd(fd, dst_path, &o, err);
}

static int flat_xml_source(struct vmd_ctx *ctx,
                            const struct vmd_disk_ref *disk,
                            struct vmd_xml_source *out, struct vmd_error *err)
{
	(void)err;
	vmd_filedisk_xml_source(
		disk, "raw",
		vmd_ctx_config(ctx)->preallocate_images == VMD_PREALLOCATE_SPACE, out);
	return 0;
}

const struct vmd_backend_ops vmd_backend_flat = {
	.name = "flat",
	.create_from_image = flat_create_from_image,
	.create_blank = flat_create_blank,
	.resize = flat_resize,
	.exists = vmd_filedisk_exists,
	.info = flat_info,
	.snapshot_extract = flat_snapshot_extract,
	.remove = vmd_filedisk_remove,
	.xml_source = flat_xml_source,
};
