/*
 * Block devices for the data path: a raw file, or a qcow2 image with its
 * backing chain, read (and, for the top image, written) at guest offsets.
 *
 * The format of every element is given, never probed: the top image's by
 * the caller (the instance record or the inspector), each backing file's
 * by the backing-format extension of the image above it; a backing file
 * without a recorded format is refused. Every qcow2 in a chain passes the
 * inspector (backing allowed) before it is opened, and every offset read
 * from an image is bounds-checked before use.
 */
#ifndef VMDISK_BLOCKDEV_H
#define VMDISK_BLOCKDEV_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/validate.h>

#define VMD_CHAIN_MAX_DEPTH 16

struct vmd_qcow2;
struct vmd_parallels;

struct vmd_blockdev {
	enum vmd_format format;
	uint64_t size;
	int fd;
	struct vmd_qcow2 *qcow2;
	struct vmd_parallels *parallels; /* ploop's expanded root.hds */
	struct vmd_blockdev *backing; /* owned; NULL at the end of the chain */
	char path[PATH_MAX];
};

enum vmd_blockdev_flags {
	VMD_BD_WRITE = 1u << 0,         /* open the top image read-write */
	VMD_BD_ALLOW_BACKING = 1u << 1, /* follow backing files */
};

int vmd_blockdev_open(const char *path, enum vmd_format format,
                      unsigned flags, const struct vmd_inspect_limits *lim,
                      struct vmd_blockdev **out, struct vmd_error *err);
/*
 * The same, but the top image's backing file is read from `backing` (the
 * "/proc/self/fd/N" of a descriptor the caller opened safely, such as a
 * cached base opened beneath instances_path), never from the name the
 * image records, and that backing file may not have one of its own.
 */
int vmd_blockdev_open_backed(const char *path, enum vmd_format format,
                             unsigned flags, const char *backing,
                             const struct vmd_inspect_limits *lim,
                             struct vmd_blockdev **out,
                             struct vmd_error *err);
void vmd_blockdev_close(struct vmd_blockdev *bd);
void vmd_blockdev_closep(struct vmd_blockdev **bd);

/* Read guest bytes; past the end of the device reads zeroes. */
int vmd_blockdev_pread(struct vmd_blockdev *bd, void *buf, size_t len,
                       uint64_t off, struct vmd_error *err);

/*
 * How [off, off+len) starts: *run bytes from off that are all known-zero
 * (*zero = true: a hole, an unallocated cluster at every level, a zero
 * cluster) or all possibly-data (*zero = false). *run >= 1 and <= len.
 */
int vmd_blockdev_status(struct vmd_blockdev *bd, uint64_t off, uint64_t len,
                        uint64_t *run, bool *zero, struct vmd_error *err);

#endif
