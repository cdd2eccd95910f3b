/*
 * The native qcow2 code of this release: read a header (with the bounds
 * checks that reading needs), write a blank image or an overlay on a backing
 * file, and grow an image whose L1 table has room. Layout follows QEMU's
 * docs/interop/qcow2.txt; the writer produces what `qemu-img create` does
 * (header, refcount table, one refcount block, L1 table, in that order).
 */
#ifndef VMDISK_QCOW2_H
#define VMDISK_QCOW2_H

#include <stdint.h>

#include <vmdisk/error.h>

#include "qcow2_header.h"

/* Read the start of cluster 0 and decode it (vmd_qcow2_decode_header):
 * any structural defect is an error. */
int vmd_qcow2_read_header(int fd, struct vmd_qcow2_header *h,
                          struct vmd_error *err);

/*
 * Write a new qcow2 v3 image into the empty file `fd`: `size` bytes, with
 * 2^cluster_bits clusters, overlaying `backing` (absolute path, or NULL for
 * a blank image) whose format is `backing_format`.
 */
int vmd_qcow2_write_new(int fd, uint64_t size, uint32_t cluster_bits,
                        const char *backing, const char *backing_format,
                        struct vmd_error *err);

/* Grow to new_size. Refuses to shrink; VMD_E_UNSUPPORTED when the L1 table
 * would have to move (that needs the allocating engine). */
int vmd_qcow2_grow(int fd, uint64_t new_size, struct vmd_error *err);

#endif
