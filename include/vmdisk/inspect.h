/*
 * The image-format inspector: the gate every untrusted image passes.
 *
 * It reads only the bytes it needs (headers, a few tables' positions, never
 * the data), runs no external program, allocates a bounded amount of memory
 * and reads a bounded number of bytes whatever the image claims. Every
 * format's probe runs over the same bytes; more than one non-raw match is
 * refused as ambiguous (a bootable ISO that is also an MBR/GPT disk is the
 * one legitimate overlap). The result says what the image is and, in
 * `reasons`, every safety check it fails.
 *
 * Threads and state: no state; every call is thread-safe and works on the
 * caller's result, limits and descriptor only (errors go to the
 * process-wide logger, log.h).
 */
#ifndef VMDISK_INSPECT_H
#define VMDISK_INSPECT_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/types.h>

#ifdef __cplusplus
extern "C" {
#endif

const char *vmd_image_format_name(enum vmd_image_format f);

struct vmd_inspect_limits {
	uint64_t max_virtual_size;  /* default 1 TiB */
	uint64_t max_table_size;    /* bytes of any one metadata table
	                               (qcow2 L1/refcount, BAT...): 32 MiB */
	uint64_t max_read_bytes;    /* total bytes the inspector may read:
	                               4 MiB */
};

void vmd_inspect_limits_default(struct vmd_inspect_limits *l);

enum vmd_inspect_flags {
	/* Accept a qcow2 backing file (a chain inside the cache); the name is
	 * still reported and checked by the caller. */
	VMD_INSPECT_ALLOW_BACKING = 1u << 0,
};

#define VMD_INSPECT_MAX_REASONS 16

struct vmd_inspect_reason {
	char code[40];  /* stable name of the check, e.g. "qcow2-backing-file" */
	char text[200]; /* one line for people */
};

struct vmd_inspect_result {
	enum vmd_image_format format;
	uint64_t file_size;
	uint64_t virtual_size;
	uint64_t actual_size;        /* allocated bytes where known, else 0 */
	uint32_t cluster_size;       /* 0 where the format has none */
	uint32_t version;            /* format version where it has one */
	char backing_file[1024];     /* "" when none */
	char backing_format[32];
	uint64_t incompatible_features; /* qcow2 */
	uint64_t compatible_features;
	uint64_t autoclear_features;
	unsigned matched;            /* bit per enum vmd_image_format probed */
	bool safe;
	unsigned n_reasons;
	struct vmd_inspect_reason reasons[VMD_INSPECT_MAX_REASONS];
};

/*
 * Inspect an open file. Returns 0 when the inspection ran (safe or not:
 * look at out->safe), a negative vmd_errc when it could not (read error,
 * empty file).
 */
int vmd_inspect_fd(int fd, const struct vmd_inspect_limits *limits,
                   unsigned flags, struct vmd_inspect_result *out,
                   struct vmd_error *err);

/* The same over bytes in memory (the fuzz target's entry). */
int vmd_inspect_buffer(const void *data, size_t len,
                       const struct vmd_inspect_limits *limits,
                       unsigned flags, struct vmd_inspect_result *out,
                       struct vmd_error *err);

/* Whether the format's bytes are what a guest sees (raw, gpt, mbr, iso). */
bool vmd_image_format_is_raw(enum vmd_image_format f);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
