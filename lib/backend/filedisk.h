/*
 * What the file backends (flat, qcow2, ploop) share: a disk is a file
 * <instance_dir>/<disk>, created through an anonymous temporary and linked
 * into place only when complete, never over an existing disk. Also the
 * last step of every built-in backend's snapshot_extract (lvm's too).
 */
#ifndef VMDISK_FILEDISK_H
#define VMDISK_FILEDISK_H

#include <stdbool.h>
#include <stdint.h>

#include "convert.h"
#include "fsutil.h"
#include "internal.h"

#define VMD_DISK_MODE 0600 /* guest data; libvirt chowns it to qemu */

int vmd_filedisk_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        bool *exists, struct vmd_error *err);
int vmd_filedisk_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        struct vmd_error *err);

/* Start a new disk file: the temporary to fill and then publish. */
int vmd_filedisk_begin(const struct vmd_disk_ref *disk, struct vmd_tmpfile *t,
                       struct vmd_error *err);
/* Give it its final name (refusing to replace an existing disk). */
int vmd_filedisk_commit(struct vmd_tmpfile *t, struct vmd_error *err);

/* Open the disk file (O_RDONLY/O_RDWR) beneath its instance directory:
 * a link in its place is refused. */
int vmd_filedisk_open(const struct vmd_disk_ref *disk, int flags, int *fd,
                      struct vmd_error *err);

/* Fill st-based fields of info (path, actual size). */
int vmd_filedisk_stat(const struct vmd_disk_ref *disk,
                      struct vmd_disk_info *out, uint64_t *file_size,
                      struct vmd_error *err);

/* preallocate_images=space: reserve the whole size; where the file system
 * cannot, log it and go on (a sparse disk still works). */
int vmd_filedisk_preallocate(struct vmd_ctx *ctx, int fd, uint64_t size,
                             struct vmd_error *err);

/* snapshot_extract: the disk's content, open at fd, converted as `o` says
 * into the new file dst_path. The disk is one this library made, so the
 * inspector's virtual size limit is lifted (o->limits is ignored); every
 * other check still holds. */
int vmd_disk_extract_fd(int fd, const char *dst_path,
                        const struct vmd_convert_opts *o,
                        struct vmd_error *err);

/* The libvirt source of a file disk of driver type `format`. */
void vmd_filedisk_xml_source(const struct vmd_disk_ref *disk,
                             const char *format, bool preallocated,
                             struct vmd_xml_source *out);

#endif
