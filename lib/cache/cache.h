/*
 * Cache internals shared with disk.c and the tests.
 */
#ifndef VMDISK_CACHE_H
#define VMDISK_CACHE_H

#include <stdio.h>
#include <sys/types.h>

#include "internal.h"

/* Lower-case hex sha1 of `source_id`: the entry's name. */
int vmd_cache_id(const char *source_id, char out[41], struct vmd_error *err);

/*
 * Inspect the source where it is and give its virtual size, without
 * fetching it, so that a create that is bound to fail (a refused image, a
 * size too small) leaves no cache entry behind.
 */
int vmd_cache_source_check(struct vmd_ctx *ctx, const char *source,
                           uint64_t *virtual_size, struct vmd_error *err);

/* The hash recorded when `name` was fetched (empty strings if unknown);
 * cache_fd: the cache directory (lib/beneath.c). */
void vmd_cache_read_info(int cache_fd, const char *name, char *algo,
                         size_t algosz, char *hash, size_t hashsz);

/* Open the cache directory beneath instances_path into *cache_fd, made
 * 0750 for image_cache_group when it is ours, and give the group bases
 * are shared with. */
int vmd_cache_dir_prepare(struct vmd_ctx *ctx, int *cache_fd, gid_t *gid,
                          struct vmd_error *err);

/* Give an open file to that group before it is published (refused when
 * the caller may not: it is outside the group). */
int vmd_cache_give_group(int fd, gid_t gid, struct vmd_error *err);

/* Refuse (VMD_E_TOOSMALL, "xfs needs at least 300 MiB") a size below the
 * smallest that fs's mkfs accepts; 0 when it fits or fs is none. */
int vmd_blank_fs_check_size(enum vmd_blank_fs fs, uint64_t size,
                            struct vmd_error *err);

/* mkfs's argv (at most 8 elements with the NULL) for a file system on
 * `path`; every element is ours or validated (label: vmd_valid_fs_label,
 * or NULL). Shared by templates and vmdiskd's mkfs on an LV. */
void vmd_mkfs_argv(enum vmd_blank_fs fs, const char *label, const char *path,
                   const char **argv);

#define VMD_LOCK_NAME_MAX (VMD_CACHE_ID_MAX + 8)

/* "base-<id>": the lock of a cache entry, exclusive while it is fetched or
 * pruned, shared while a disk is made from it. */
static inline void vmd_base_lock_name(const char *id,
                                      char name[VMD_LOCK_NAME_MAX])
{
	snprintf(name, VMD_LOCK_NAME_MAX, "base-%.*s", VMD_CACHE_ID_MAX - 1,
	         id);
}

#endif
