/*
 * Cache internals shared with disk.c and the tests.
 */
#ifndef VMDISK_CACHE_H
#define VMDISK_CACHE_H

#include "internal.h"

/* Lower-case hex sha1 of `source_id`: the entry's name. */
int vmd_cache_id(const char *source_id, char out[41], struct vmd_error *err);

/* Refuse (VMD_E_UNSUPPORTED) a file that starts like a non-raw format. */
int vmd_cache_sniff_raw(int fd, struct vmd_error *err);

/*
 * The virtual size the source will have once cached, read without fetching
 * it, so that a create that is bound to fail leaves no cache entry behind.
 */
int vmd_cache_source_size(const char *source, uint64_t *size,
                          struct vmd_error *err);

#endif
