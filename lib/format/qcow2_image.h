/*
 * The qcow2 engine: an open image that can be read (standard and extended
 * L2 entries, zero clusters, zlib and zstd compressed clusters, a backing
 * device for unallocated clusters) and written (cluster allocation with
 * refcounts, growth of the L1 and refcount tables).
 *
 * Metadata is cached in memory and written back by vmd_qcow2_flush(). New
 * clusters are always appended at the end of the file; freed ones are not
 * reused (they read as free to qemu-img check, not as leaks).
 */
#ifndef VMDISK_QCOW2_IMAGE_H
#define VMDISK_QCOW2_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>

#include "blockdev.h"
#include "qcow2.h"

/* Open the qcow2 in fd (kept open by the caller until close). backing may
 * be NULL; the image does not own it. */
int vmd_qcow2_open(int fd, bool writable, const struct vmd_inspect_limits *lim,
                   struct vmd_blockdev *backing, struct vmd_qcow2 **out,
                   struct vmd_error *err);
/* Flushes a writable image, then frees. Returns the flush's result. */
int vmd_qcow2_close(struct vmd_qcow2 *q, struct vmd_error *err);

const struct vmd_qcow2_header *vmd_qcow2_header_of(const struct vmd_qcow2 *q);

int vmd_qcow2_pread(struct vmd_qcow2 *q, void *buf, size_t len, uint64_t off,
                    struct vmd_error *err);
int vmd_qcow2_pwrite(struct vmd_qcow2 *q, const void *buf, size_t len,
                     uint64_t off, struct vmd_error *err);

/* Fresh output: the whole guest clusters [off, off+len) (off and len
 * cluster multiples, inside the disk, every one unallocated) get len bytes
 * of new contiguous host clusters at *host_off, refcounts and L2 entries
 * set (in the metadata caches, written by flush). The caller writes the
 * data there itself, with no lock held: the entries point at the clusters
 * before it has, so this is for an image nobody reads until the caller
 * has written every run and flushed (a temporary published after its
 * fsync). Pieces that are not whole clusters go through vmd_qcow2_pwrite.
 * Not thread-safe: the caller serialises it with its other calls. */
int vmd_qcow2_alloc_run(struct vmd_qcow2 *q, uint64_t off, uint64_t len,
                        uint64_t *host_off, struct vmd_error *err);

/* The image is a temporary that the caller fsyncs before it gets a name:
 * flush (and close) still write the metadata in order, header last, but
 * do not fsync in between; a crash leaves only a temporary nobody
 * publishes, and the caller's one fsync makes it all durable. */
void vmd_qcow2_defer_sync(struct vmd_qcow2 *q);

/* Kind of the cluster holding guest offset off. */
enum vmd_qcow2_kind {
	VMD_QCOW2_UNALLOCATED, /* reads from the backing device, or zero */
	VMD_QCOW2_ZERO,
	VMD_QCOW2_DATA,
	VMD_QCOW2_COMPRESSED,
	VMD_QCOW2_MIXED,       /* extended L2: subclusters differ */
};
int vmd_qcow2_cluster_kind(struct vmd_qcow2 *q, uint64_t off,
                           enum vmd_qcow2_kind *kind, struct vmd_error *err);
/* Kinds of up to n clusters from the one holding off, as many as share its
 * L2 table: *got of them, stopping before the first whose entry is bad
 * (no error for it: vmd_qcow2_cluster_kind() on it says what is wrong), so
 * *got may be 0. One table lookup for a run instead of one a cluster. */
int vmd_qcow2_cluster_kinds(struct vmd_qcow2 *q, uint64_t off, size_t n,
                            enum vmd_qcow2_kind *kinds, size_t *got,
                            struct vmd_error *err);

/* Grow the virtual size, moving the L1 table when it must grow. */
int vmd_qcow2_resize(struct vmd_qcow2 *q, uint64_t new_size,
                     struct vmd_error *err);

int vmd_qcow2_flush(struct vmd_qcow2 *q, struct vmd_error *err);

#endif
