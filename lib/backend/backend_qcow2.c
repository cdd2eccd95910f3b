/*
 * The qcow2 backend: the disk is a qcow2 v3 overlay whose backing file is
 * the cached base (absolute path, backing format recorded so QEMU never
 * probes it). Creating one writes a few metadata clusters, whatever the
 * base's size: the millisecond path for new VMs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "beneath.h"
#include "convert.h"
#include "filedisk.h"
#include "qcow2.h"
#include "qcow2_image.h"

static int qcow2_create(const struct vmd_disk_ref *disk,
                        const struct vmd_image *base, uint64_t size,
                        struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	int rc = vmd_filedisk_begin(disk, &t, err);

	if (rc < 0)
		return rc;
	rc = vmd_qcow2_write_new(t.fd, size, VMD_QCOW2_DEFAULT_CLUSTER_BITS,
	                         base ? base->path : NULL,
	                         base ? vmd_format_name(base->format) : NULL,
	                         err);
	if (rc < 0)
		return rc;
	return vmd_filedisk_commit(&t, err);
}

static int qcow2_create_from_image(struct vmd_ctx *ctx,
                                   const struct vmd_disk_ref *disk,
                                   const struct vmd_image *base,
                                   uint64_t size, struct vmd_error *err)
{
	(void)ctx;
	/* The base's format was decided by the inspector and goes into the
	 * overlay, so QEMU never probes the base. */
	if (base->format != VMD_FORMAT_RAW && base->format != VMD_FORMAT_QCOW2)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: base image format not supported",
		                     "base %s is %s", base->cache_id,
		                     vmd_format_name(base->format));
	return qcow2_create(disk, base, size, err);
}

static int qcow2_create_blank(struct vmd_ctx *ctx,
                              const struct vmd_disk_ref *disk, uint64_t size,
                              struct vmd_error *err)
{
	(void)ctx;
	return qcow2_create(disk, NULL, size, err);
}

static int qcow2_resize(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        uint64_t new_size, struct vmd_error *err)
{
	_cleanup_(closep) int fd = -1;
	struct vmd_inspect_limits lim;
	struct vmd_qcow2 *q = NULL;
	int rc = vmd_filedisk_open(disk, O_RDWR, &fd, err);

	(void)ctx;
	if (rc < 0)
		return rc;
	/* Our own disk: the limit on untrusted images' sizes is not its. */
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	rc = vmd_qcow2_open(fd, true, &lim, NULL, &q, err);
	if (rc == 0)
		rc = vmd_qcow2_resize(q, new_size, err);
	int crc = vmd_qcow2_close(q, rc == 0 ? err : NULL);

	return rc < 0 ? rc : crc;
}

/*
 * The overlay's backing file is the cached base, named by its printed path
 * <cache_dir>/<id>. That name is for QEMU: we read the base through a
 * descriptor opened beneath instances_path, so a link planted as the cache
 * directory or the entry is refused, and a name pointing anywhere else is
 * not our overlay's.
 */
static int open_cached_backing(struct vmd_ctx *ctx, int disk_fd, int *base_fd,
                               struct vmd_error *err)
{
	struct vmd_qcow2_header h;
	_cleanup_(closep) int cache_fd = -1;
	size_t dirlen = strlen(ctx->cache_dir);
	const char *name;
	int rc = vmd_qcow2_read_header(disk_fd, &h, err);

	if (rc < 0 || !h.backing_file[0])
		return rc;
	name = h.backing_file + dirlen + 1;
	if (strncmp(h.backing_file, ctx->cache_dir, dirlen) != 0 ||
	    h.backing_file[dirlen] != '/' || !vmd_valid_file_token(name))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "backing file is not in the image cache",
		                     "backing file '%s'", h.backing_file);
	rc = vmd_beneath_cache_dir(ctx, false, 0, &cache_fd, err);
	if (rc == VMD_E_NOTFOUND)
		return vmd_error_set(err, VMD_E_NOTFOUND,
		                     "backing file not found", "no cache dir");
	if (rc < 0)
		return rc;
	*base_fd = vmd_bopen(cache_fd, name, O_RDONLY, 0);
	if (*base_fd < 0)
		return vmd_beneath_error(err, errno == ENOENT ? VMD_E_NOTFOUND
		                                              : VMD_E_IO,
		                         errno, "cannot open backing file",
		                         "open %s", h.backing_file);
	return 0;
}

static int qcow2_snapshot_extract(struct vmd_ctx *ctx,
                                  const struct vmd_disk_ref *disk,
                                  const char *dst_path,
                                  enum vmd_format dst_format,
                                  struct vmd_error *err)
{
	char backing[32];
	struct vmd_convert_opts o = {
		.src_format = VMD_FORMAT_QCOW2,
		.dst_format = dst_format,
		.allow_backing = true, /* the cached base: flattened */
		.backing = backing,
	};
	_cleanup_(closep) int fd = -1;
	_cleanup_(closep) int base_fd = -1;
	int rc = vmd_filedisk_open(disk, O_RDONLY, &fd, err);

	if (rc == 0)
		rc = open_cached_backing(ctx, fd, &base_fd, err);
	if (rc < 0)
		return rc;
	if (base_fd >= 0)
		vmd_fd_path(base_fd, backing);
	else
		o.backing = NULL; /* a blank overlay: no backing file */
	return vmd_disk_extract_fd(fd, dst_path, &o, err);
}

static int qcow2_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      struct vmd_disk_info *out, struct vmd_error *err)
{
	struct vmd_qcow2_header h;
	_cleanup_(closep) int fd = -1;
	uint64_t file_size;
	int rc;

	(void)ctx;
	rc = vmd_filedisk_stat(disk, out, &file_size, err);
	if (rc < 0)
		return rc;
	rc = vmd_filedisk_open(disk, O_RDONLY, &fd, err);
	if (rc < 0)
		return rc;
	rc = vmd_qcow2_read_header(fd, &h, err);
	if (rc < 0)
		return rc;
	snprintf(out->format, sizeof(out->format), "qcow2");
	out->virtual_size = h.size;
	snprintf(out->backing, sizeof(out->backing), "%s", h.backing_file);
	return 0;
}

static int qcow2_xml_source(struct vmd_ctx *ctx,
                            const struct vmd_disk_ref *disk,
                            struct vmd_xml_source *out, struct vmd_error *err)
{
	(void)ctx;
	(void)err;
	vmd_filedisk_xml_source(disk, "qcow2", false, out);
	return 0;
}

const struct vmd_backend_ops vmd_backend_qcow2 = {
	.name = "qcow2",
	.create_from_image = qcow2_create_from_image,
	.create_blank = qcow2_create_blank,
	.resize = qcow2_resize,
	.exists = vmd_filedisk_exists,
	.info = qcow2_info,
	.snapshot_extract = qcow2_snapshot_extract,
	.remove = vmd_filedisk_remove,
	.xml_source = qcow2_xml_source,
};
