/*
 * Image conversion: any device we can read (raw, qcow2 with its backing
 * chain) into a new raw or qcow2 file, sparse-aware and in parallel.
 * The library's own calls; programs use vmd_image_convert
 * (include/vmdisk/convert.h), which is this with fewer options.
 */
#ifndef VMDISK_FORMAT_CONVERT_H
#define VMDISK_FORMAT_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/convert.h>
#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/validate.h>

typedef void (*vmd_progress_fn)(uint64_t done, uint64_t total, void *opaque);

struct vmd_convert_opts {
	enum vmd_format src_format;
	enum vmd_format dst_format;
	bool allow_backing;      /* follow (and flatten) a backing chain */
	uint32_t cluster_bits;   /* qcow2 output; 0 = 16 (64 KiB) */
	unsigned threads;        /* 0 = min(online CPUs, 4) */
	const struct vmd_inspect_limits *limits; /* NULL = defaults */
	vmd_progress_fn progress;
	void *progress_opaque;
	const char *backing;     /* with allow_backing: read the source's
	                            backing file from here (a descriptor's
	                            /proc/self/fd/N), not from the name it
	                            records (vmd_blockdev_open_backed) */
};

/* Write the guest view of src into the empty file dst_fd. Nothing is
 * fsynced here (qcow2 metadata included): the caller fsyncs dst_fd before
 * it gives the file a name. */
int vmd_convert_to_fd(const char *src, int dst_fd,
                      const struct vmd_convert_opts *o, struct vmd_error *err);

/* Convert into a new file dst_path, published atomically (never over an
 * existing file). */
int vmd_convert_to_path(const char *src, const char *dst_path,
                        const struct vmd_convert_opts *o,
                        struct vmd_error *err);

#endif
