/*
 * Image conversion: a raw or qcow2 image (with its backing chain, when
 * asked) into a new raw or qcow2 file, sparse-aware and in parallel, as
 * `vmdisk convert` does it.
 *
 * The source passes the inspector first (every image of its chain), and
 * every offset read from it is bounds-checked. Its format is given, never
 * probed: inspect it (inspect.h) to learn it.
 *
 * Thread-safety: vmd_image_convert may run in several threads at once; it
 * shares nothing between calls but the process-wide logger (log.h). It
 * starts worker threads of its own and calls `progress` from them, one
 * call at a time.
 */
#ifndef VMDISK_CONVERT_H
#define VMDISK_CONVERT_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/types.h>
#include <vmdisk/validate.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start from {0}: every field's zero is the default. */
struct vmd_image_convert_opts {
	enum vmd_format src_format;  /* raw or qcow2 */
	enum vmd_format dst_format;  /* raw or qcow2 */
	/* Follow a qcow2 source's backing chain and flatten it into the
	 * output. Off by default: an image names its backing file, and that
	 * can be any host file. */
	bool allow_backing;
	const struct vmd_inspect_limits *limits; /* NULL: the defaults */
	/* Bytes of the guest view done so far, or NULL. */
	void (*progress)(uint64_t done, uint64_t total, void *opaque);
	void *progress_opaque;
};

/*
 * Convert src into the new file dst_path (mode 0644), published
 * atomically and never over an existing file (VMD_E_EXISTS); on failure
 * nothing remains at dst_path.
 */
int vmd_image_convert(const char *src, const char *dst_path,
                      const struct vmd_image_convert_opts *opts,
                      struct vmd_error *err);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
