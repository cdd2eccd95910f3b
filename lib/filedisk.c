/*
 * Shared code of the file backends (see filedisk.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filedisk.h"

int vmd_filedisk_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        bool *exists, struct vmd_error *err)
{
	struct stat st;

	(void)ctx;
	if (lstat(disk->path, &st) == 0) {
		*exists = true;
		return 0;
	}
	if (errno == ENOENT) {
		*exists = false;
		return 0;
	}
	return vmd_error_set_errno(err, VMD_E_IO, errno, "check disk failed",
	                           "lstat %s", disk->path);
}

int vmd_filedisk_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        struct vmd_error *err)
{
	(void)ctx;
	if (unlink(disk->path) < 0 && errno != ENOENT)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "remove disk failed", "unlink %s",
		                           disk->path);
	return vmd_fsync_dir(disk->instance_dir, err);
}

int vmd_filedisk_begin(const struct vmd_disk_ref *disk, struct vmd_tmpfile *t,
                       struct vmd_error *err)
{
	return vmd_tmpfile_open(t, disk->instance_dir, disk->disk,
	                        VMD_DISK_MODE, err);
}

int vmd_filedisk_commit(struct vmd_tmpfile *t, struct vmd_error *err)
{
	return vmd_tmpfile_publish(t, false, VMD_DISK_MODE, err);
}

int vmd_filedisk_stat(const struct vmd_disk_ref *disk,
                      struct vmd_disk_info *out, uint64_t *file_size,
                      struct vmd_error *err)
{
	struct stat st;

	if (lstat(disk->path, &st) < 0)
		return vmd_error_set_errno(err,
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
	int rc = posix_fallocate(fd, 0, (off_t)size);

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

/* Append `s` XML-escaped for use inside a single-quoted attribute. */
static void xml_escape_into(char *out, size_t outsz, const char *s)
{
	size_t o = strlen(out);

	for (; *s && o + 7 < outsz; s++) {
		const char *rep = NULL;

		switch (*s) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '\'': rep = "&apos;"; break;
		case '"': rep = "&quot;"; break;
		default: break;
		}
		if (rep) {
			memcpy(out + o, rep, strlen(rep));
			o += strlen(rep);
		} else {
			out[o++] = *s;
		}
	}
	out[o] = '\0';
}

static bool valid_target_dev(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 8)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((s[i] < 'a' || s[i] > 'z') && (s[i] < '0' || s[i] > '9'))
			return false;
	return true;
}

int vmd_filedisk_xml(const struct vmd_disk_ref *disk, const char *format,
                     const char *target_dev, char **xml_out,
                     struct vmd_error *err)
{
	char path[PATH_MAX * 6];
	size_t cap = sizeof(path) + 512;
	char *xml;

	if (!target_dev)
		target_dev = "vda";
	if (!valid_target_dev(target_dev))
		return vmd_error_set(err, VMD_E_INVAL, "xml: bad target device",
		                     "target %.16s", target_dev);
	path[0] = '\0';
	xml_escape_into(path, sizeof(path), disk->path);
	xml = malloc(cap);
	if (!xml)
		return vmd_error_set(err, VMD_E_NOMEM, "xml: out of memory",
		                     "xml buffer");
	snprintf(xml, cap,
	         "<disk type='file' device='disk'>\n"
	         "  <driver name='qemu' type='%s' cache='none' io='native'/>\n"
	         "  <source file='%s'/>\n"
	         "  <target dev='%s' bus='%s'/>\n"
	         "</disk>\n",
	         format, path, target_dev,
	         strncmp(target_dev, "vd", 2) == 0   ? "virtio"
	         : strncmp(target_dev, "hd", 2) == 0 ? "ide"
	                                             : "scsi");
	*xml_out = xml;
	return 0;
}
