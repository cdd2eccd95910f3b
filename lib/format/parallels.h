/*
 * Parallels "expanded" images (ploop's root.hds), read and written natively
 * from QEMU's docs/interop/parallels.txt: a 64-byte little-endian header, a
 * BAT of one u32 per cluster (0 = unallocated, else the cluster's offset in
 * clusters), data clusters after the header and BAT, which are rounded up
 * to a whole cluster.
 */
#ifndef VMDISK_PARALLELS_H
#define VMDISK_PARALLELS_H

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>

#define VMD_PARALLELS_CLUSTER (1u << 20) /* ploop's and QEMU's default */

struct vmd_parallels;
struct vmd_move_src;

/* Write an empty image of `size` bytes (a multiple of 512) into fd. */
int vmd_parallels_create(int fd, uint64_t size, uint32_t cluster_size,
                         struct vmd_error *err);

/* Open an image; lim bounds the BAT it may hold in memory. */
int vmd_parallels_open(int fd, bool writable,
                       const struct vmd_inspect_limits *lim,
                       struct vmd_parallels **out, struct vmd_error *err);
void vmd_parallels_close(struct vmd_parallels *p);

uint64_t vmd_parallels_size(const struct vmd_parallels *p);
uint32_t vmd_parallels_cluster_size(const struct vmd_parallels *p);

int vmd_parallels_pread(struct vmd_parallels *p, void *buf, size_t len,
                        uint64_t off, struct vmd_error *err);
/* How far from off (at most len) the answer "zero" or "data" holds. */
int vmd_parallels_status(struct vmd_parallels *p, uint64_t off, uint64_t len,
                         uint64_t *run, bool *zero, struct vmd_error *err);

/*
 * Copy what src holds (its first vmd_parallels_size bytes at most) into
 * the image, an empty one, through the data mover (mover.h): clusters
 * that read as zeroes stay unallocated. Then write the BAT.
 */
int vmd_parallels_fill(struct vmd_parallels *p, const struct vmd_move_src *src,
                       struct vmd_error *err);

/* Grow to new_size bytes (never shrink), moving data clusters out of the
 * way when the BAT needs more room. */
int vmd_parallels_resize(struct vmd_parallels *p, uint64_t new_size,
                         struct vmd_error *err);

#endif
