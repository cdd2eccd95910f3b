/*
 * What a backend module (lib/backend/<name>/, a dlopen()ed vmdisk-<name>.so)
 * may call in the library, and how it gets it.
 *
 * A module may use:
 *   - the public headers (include/vmdisk/): the calls libvmdisk.so exports
 *     (vmd_error_set, vmd_log, vmd_ctx_config, vmd_ctx_backend_priv...);
 *   - this header: `struct vmd_backend_host`, the library's internal calls
 *     a module needs (reading a base image, making a file, fault points),
 *     reached only through the table the registry hands it;
 *   - header-only helpers that have no state and call nothing in the
 *     library: bytes.h, and cleanup.h's macros and inline functions (not
 *     struct vmd_buf: its functions are the library's, not exported).
 * Nothing else: no other header under lib/.
 *
 * Why a table and not exported internal symbols: libvmdisk.so exports
 * exactly what include/vmdisk/ declares (lib/libvmdisk.sym; tests/suite/source/
 * run.sh checks `nm -D`), so nothing internal becomes ABI by accident. And
 * a module must use the library's one copy of its state (the log sink,
 * the secrets to redact, the fault points), never one of its own, as a
 * copy of the internal code linked into the module would have: the
 * table's functions are the library's own.
 *
 * How: the module defines the pointer with VMD_BACKEND_MODULE_HOST (once,
 * beside VMD_BACKEND_MODULE_STAMP). The registry (lib/backend/backend.c)
 * checks the module's build stamp first, then points it at the library's
 * table, and only then reads the ops table: the pointer is set before any
 * operation of the module can run, and stays set (modules are never
 * unloaded). A module that calls nothing internal leaves it out.
 *
 * Not an ABI either: the build stamp covers this header (meson.build), so
 * a module built against another version of it is refused before its
 * pointer is written. Add to the table what a module needs; take away
 * only what no module uses.
 */
#ifndef VMDISK_MODULE_HOST_H
#define VMDISK_MODULE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vmdisk/config.h>
#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/validate.h>

/* A base image's guest view, read through the library's block devices
 * (lib/format/blockdev.h): opaque here. */
struct vmd_blockdev;

/* The parts of an rbd://FSID/POOL/IMAGE/SNAP location (the parser is in
 * the library, lib/backend/rbd_location.c, so that its fuzz target links
 * without librbd). */
#define VMD_RBD_IMAGE_NAME_MAX 128 /* "<uuid>_<disk>" fits */
#define VMD_RBD_LOCATION_MAX 512   /* longer is refused */

struct vmd_rbd_location {
	char fsid[VMD_UUID_LEN + 1];
	char pool[VMD_NAME_MAX];
	char image[VMD_RBD_IMAGE_NAME_MAX];
	char snap[VMD_NAME_MAX];
};

/* Writes the content of a new file into fd (empty, opened for writing):
 * 0, or a negative code with err set. */
typedef int (*vmd_host_fill_fn)(int fd, void *opaque, struct vmd_error *err);

struct vmd_backend_host {
	/* A cached base (struct vmd_image: its fd and format), opened to
	 * read its guest view; limits bound what the inspector accepts
	 * (NULL: the defaults). No backing file is followed. */
	int (*blockdev_open_fd)(int fd, enum vmd_format format,
	                        const struct vmd_inspect_limits *limits,
	                        struct vmd_blockdev **out,
	                        struct vmd_error *err);
	/* How [off, off+len) starts: *run bytes that are all known-zero
	 * (*zero) or all possibly-data; 1 <= *run <= len. */
	int (*blockdev_status)(struct vmd_blockdev *bd, uint64_t off,
	                       uint64_t len, uint64_t *run, bool *zero,
	                       struct vmd_error *err);
	/* Guest bytes; past the end reads zeroes. */
	int (*blockdev_pread)(struct vmd_blockdev *bd, void *buf, size_t len,
	                      uint64_t off, struct vmd_error *err);
	/* NULL is fine. */
	void (*blockdev_close)(struct vmd_blockdev *bd);

	/* Make the new file dst_path (never over an existing one) with
	 * what fill writes, as `format`: raw is published as written
	 * (mode 0644); for qcow2 fill writes raw bytes into a temporary
	 * beside dst_path, which the library's converter turns into the
	 * qcow2 file. Temporary, fsync, rename: on failure nothing remains
	 * at dst_path. Formats other than raw and qcow2: VMD_E_UNSUPPORTED.
	 * The public messages name the step ("extract: ..."). */
	int (*write_file)(const char *dst_path, enum vmd_format format,
	                  vmd_host_fill_fn fill, void *opaque,
	                  struct vmd_error *err);
	/* The whole buffer at off, retrying short writes and EINTR: 0, or
	 * -1 with errno. */
	int (*pwrite_full)(int fd, const void *buf, size_t len, uint64_t off);

	/* Exactly four parts, each a plain name, FSID a UUID; out is
	 * cleared first. 0 or VMD_E_INVAL (the message never quotes loc). */
	int (*rbd_location_parse)(const char *loc, struct vmd_rbd_location *out,
	                          struct vmd_error *err);

	/* The library's fault point `point` (lib/util/faultpoint.h): with
	 * -Dfault_injection=true, what $VMDISK_FAULT says for it; else
	 * always 0. Present in every build so the table is the same. */
	int (*faultpoint)(const char *point, struct vmd_error *err);
};

/* The name the module's pointer is exported under, and its definition
 * (write VMD_BACKEND_MODULE_HOST; once, in the module). The registry sets
 * it; the module reads it as `vmd_module_host->call(...)`. */
#define VMD_BACKEND_HOST_SYMBOL "vmd_module_host"
#define VMD_BACKEND_MODULE_HOST                                                \
	extern const struct vmd_backend_host *vmd_module_host;                 \
	const struct vmd_backend_host *vmd_module_host

/* The library's table (lib/backend/module_host.c), for the registry. Not
 * exported: a module gets it only through its pointer. */
extern const struct vmd_backend_host vmd_backend_host_table;

#endif
