/*
 * The data mover: the one loop in vmdisk that copies an image's bytes.
 *
 * Every bulk copy goes through vmd_move: convert (raw/qcow2/parallels in,
 * raw or qcow2 out), flat copy and qcow2 flatten into a flat disk, ploop
 * fill, a base read from a local file into the cache, an LV written from a
 * base (vmdiskd), an RBD image imported from a base and an RBD disk
 * extracted to a file. No other file walks SEEK_DATA/SEEK_HOLE
 * (tests/suite/source/run.sh checks): a source says where its data is
 * through `status`, a destination takes bytes through `write`.
 *
 * How it moves:
 *   - The guest range is cut into fixed chunks (VMD_MOVE_CHUNK) that
 *     workers take in turn. Each worker has its own reader (own
 *     descriptors, own caches: qcow2 decompression runs in parallel) and
 *     one buffer: memory is workers x chunk whatever the image size.
 *   - Runs the source knows are zero are never read; the rest is read and
 *     all-zero blocks (VMD_MOVE_ZERO_BLOCK) are dropped, unless the
 *     destination does not read zero where it is not written, in which
 *     case the mover zeroes them (`zero`).
 *   - A raw file or block device destination (dst->fd) is written with
 *     write-behind (vmd_writebehind below): through the page cache, each
 *     write's write-back started at once, waited for and its pages dropped
 *     some writes later, so the device always has large requests queued,
 *     the cache holds a few MiB of the copy, and the caller's final fsync
 *     finds little to do. Measured on this project's VM (ext4 on virtio,
 *     a 2 GiB raw image and its qcow2 with 512 MiB of data, converted to
 *     raw and synced, three interleaved runs each, shared machine):
 *     O_DIRECT 1 MiB writes, 4 in flight, 0.63-1.76 s (ext4 allocates an
 *     extent per request into the new file's holes); plain buffered
 *     writes then fsync 1.21-2.17 s; write-behind 0.37-0.64 s;
 *     `qemu-img convert` + sync 0.42-1.18 s.
 *   - raw fd -> raw fd on one file system: a whole-file reflink when the
 *     caller allows it (VMD_MOVE_REFLINK), else copy_file_range per data
 *     extent; the pipeline when the kernel says no.
 *   - An ordered destination (a hashing sink) gets every byte in order,
 *     zero runs through `skip`, from one worker.
 *
 * Durability stays with the caller: the mover returns once every byte is
 * written (or handed to the destination); the caller flushes the target
 * (vmd_tmpfile_publish, fsync, rbd_flush) before publishing it.
 *
 * Thread-safety: vmd_move is reentrant. Reader callbacks are called from
 * the worker that opened the reader only; a destination's write and zero
 * are called from many workers at once unless it is `serial` or `ordered`.
 */
#ifndef VMDISK_MOVER_H
#define VMDISK_MOVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>

#define VMD_MOVE_CHUNK (1u << 20)
#define VMD_MOVE_ZERO_BLOCK 65536u
#define VMD_MOVE_MAX_WORKERS 8u

/* Where the bytes come from. A reader is opened per worker. */
struct vmd_move_src_ops {
	int (*open)(void *opaque, void **reader, struct vmd_error *err);
	void (*close)(void *reader);
	/* As vmd_blockdev_status: [off, off+*run) is all known-zero (*zero)
	 * or all possibly-data; 1 <= *run <= len. */
	int (*status)(void *reader, uint64_t off, uint64_t len, uint64_t *run,
	              bool *zero, struct vmd_error *err);
	/* Read exactly len guest bytes at off. */
	int (*pread)(void *reader, void *buf, size_t len, uint64_t off,
	             struct vmd_error *err);
};

struct vmd_move_src {
	const struct vmd_move_src_ops *ops;
	void *opaque;
	uint64_t size; /* guest bytes to move, from 0 */
	/* A raw file the fast paths may use directly (reflink,
	 * copy_file_range); -1 for anything else. */
	int raw_fd;
};

/* Where they go: an fd, or callbacks (a qcow2/parallels engine, librbd, a
 * hashing sink). */
struct vmd_move_dst {
	int fd; /* raw file or block device, already sized; -1: callbacks */
	/* Unwritten ranges read zero already (a fresh sparse file, a thin LV,
	 * a new RBD image): zero runs are skipped, not written. */
	bool reads_zero;
	/* Callbacks (fd == -1). write must take the bytes at guest offset off;
	 * zero (needed when !reads_zero) makes [off, off+len) read zero. */
	int (*write)(void *opaque, const void *buf, size_t len, uint64_t off,
	             struct vmd_error *err);
	int (*zero)(void *opaque, uint64_t off, uint64_t len,
	            struct vmd_error *err);
	/* skip (ordered only): len zero bytes follow at the current offset. */
	int (*skip)(void *opaque, uint64_t len, struct vmd_error *err);
	void *opaque;
	bool serial;  /* write/zero called under the mover's lock */
	bool ordered; /* every byte in order, one worker; implies serial */
};

enum vmd_move_flags {
	/* dst->fd may become a reflink of src->raw_fd (same size, whole
	 * file: the caller made dst empty and src is a file it trusts). */
	VMD_MOVE_REFLINK = 1u << 0,
};

typedef void (*vmd_move_progress_fn)(uint64_t done, uint64_t total,
                                     void *opaque);

struct vmd_move_opts {
	unsigned flags;   /* enum vmd_move_flags */
	unsigned workers; /* 0: the default (up to 4, by CPUs) */
	vmd_move_progress_fn progress;
	void *progress_opaque;
};

/* Move src->size bytes from src to dst. On failure dst holds some of
 * them: the caller discards it (it is a temporary). `step` names the
 * operation in errors the mover makes ("convert", "lvm: write volume"). */
int vmd_move(const struct vmd_move_src *src, const struct vmd_move_dst *dst,
             const struct vmd_move_opts *opts, const char *step,
             struct vmd_error *err);

/* Sources the library has: a block device chain opened per worker from
 * path (a "/proc/self/fd/N" of a descriptor opened safely is a path), as
 * vmd_blockdev_open_backed takes it. The struct must outlive vmd_move. */
struct vmd_move_bd_src {
	const char *path;
	enum vmd_format format;
	unsigned bd_flags; /* VMD_BD_* */
	const char *backing;
	const struct vmd_inspect_limits *lim;
};
extern const struct vmd_move_src_ops vmd_move_bd_ops;

/* Fill a vmd_move_src for the chain at bs->path: opens it once to learn
 * its size and report refusals before any worker starts; sets raw_fd to
 * -1 (the caller sets it for a raw file it holds). */
int vmd_move_src_blockdev(struct vmd_move_bd_src *bs, struct vmd_move_src *src,
                          struct vmd_error *err);

/* dst_fd becomes a copy of the raw file or block device src_fd (both at
 * offset 0): truncated to its size, holes and zero blocks left holes, a
 * reflink where flags has VMD_MOVE_REFLINK and the file system shares
 * blocks. For the backends' flat copies (the core layer cannot call the
 * mover). */
int vmd_move_file(int src_fd, int dst_fd, unsigned flags, const char *step,
                  struct vmd_error *err);

/*
 * Write-behind for a file or block device: the mover's descriptor
 * destinations, and writers that place data themselves (convert's qcow2
 * output). vmd_writebehind_pwrite may be called from many threads at once;
 * drain (one thread, after the writers) waits for what is still in
 * flight. Durability stays with the caller's fsync.
 */
#define VMD_WRITEBEHIND_DEPTH 16u /* writes in flight (up to a chunk each) */

struct vmd_writebehind {
	int fd;
	pthread_mutex_t lock;
	struct {
		uint64_t off, len;
	} ring[VMD_WRITEBEHIND_DEPTH]; /* oldest at head */
	unsigned head, count;
};

void vmd_writebehind_init(struct vmd_writebehind *w, int fd);
int vmd_writebehind_pwrite(struct vmd_writebehind *w, const void *buf,
                           size_t len, uint64_t off, struct vmd_error *err);
int vmd_writebehind_drain(struct vmd_writebehind *w, struct vmd_error *err);
void vmd_writebehind_destroy(struct vmd_writebehind *w);

#endif
