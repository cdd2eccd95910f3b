/*
 * What a backend module (lib/backend/<name>/, a dlopen()ed vmdisk-<name>.so)
 * may call in the library, and how it gets it.
 *
 * A module may use:
 *   - the public headers (include/vmdisk/): the calls libvmdisk.so exports
 *     (vmd_error_set, vmd_log, vmd_ctx_config, vmd_ctx_backend_priv...);
 *   - this header: `struct vmd_backend_host`, the library's internal calls
 *     a module needs (moving a base's bytes or its own through the data
 *     mover, making a file, fault points),
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
#include <vmdisk/vmdisk.h> /* vmd_step_progress_cb */

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

/*
 * The library's data mover (lib/format/mover.h), as a module reaches it.
 * Not mover.h's own types: that header is the library's (its calls are
 * not exported, its knobs - fd destinations, reflink, ordered sinks -
 * are no module's business), and including it here would hand a module
 * every header it pulls in. A module moves bytes two ways only, a base
 * into the module's store and the module's store into a file: these two
 * shapes say exactly that, module_host.c turns them into the mover's,
 * and the mover can change without a module seeing it.
 */

/* Where a module's bytes come from (as mover.h's source): open is called
 * once per worker, and that worker alone then uses the reader. */
struct vmd_host_move_src {
	int (*open)(void *opaque, void **reader, struct vmd_error *err);
	void (*close)(void *reader);
	/* [off, off+*run) is all known-zero (*zero) or all possibly-data;
	 * 1 <= *run <= len. */
	int (*status)(void *reader, uint64_t off, uint64_t len, uint64_t *run,
	              bool *zero, struct vmd_error *err);
	/* Exactly len bytes at off. */
	int (*pread)(void *reader, void *buf, size_t len, uint64_t off,
	             struct vmd_error *err);
	void *opaque;
	uint64_t size; /* bytes to move, from 0 */
};

/* Takes len bytes at off of the module's store, from several workers at
 * once: where nothing is written must read zero already (a new image). */
typedef int (*vmd_host_sink_fn)(void *opaque, const void *buf, size_t len,
                                uint64_t off, struct vmd_error *err);

struct vmd_backend_host {
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
	/* The guest view of a cached base (struct vmd_image: its fd and
	 * format) moved into sink, each worker reading its own open of the
	 * base; limits bound what the inspector accepts (NULL: the
	 * defaults), no backing file is followed. Runs known zero and
	 * all-zero blocks never reach sink. Errors are prefixed with step. */
	int (*move_base)(int fd, enum vmd_format format,
	                 const struct vmd_inspect_limits *limits,
	                 vmd_host_sink_fn sink, void *opaque, const char *step,
	                 struct vmd_error *err);
	/* src moved into fd, an empty regular file opened for writing (a
	 * write_file fill's): sized to src->size here, zero runs left as
	 * holes. Not flushed: write_file does that before it publishes. */
	int (*move_to_fd)(const struct vmd_host_move_src *src, int fd,
	                  const char *step, struct vmd_error *err);

	/* Exactly four parts, each a plain name, FSID a UUID; out is
	 * cleared first. 0 or VMD_E_INVAL (the message never quotes loc). */
	int (*rbd_location_parse)(const char *loc, struct vmd_rbd_location *out,
	                          struct vmd_error *err);

	/* The library's fault point `point` (lib/util/faultpoint.h): with
	 * -Dfault_injection=true, what $VMDISK_FAULT says for it; else
	 * always 0. Present in every build so the table is the same. */
	int (*faultpoint)(const char *point, struct vmd_error *err);
	/* The progress callback of the public call the calling thread runs
	 * under (vmd_ctx_set_progress; lib/util/progress.h), NULL when none:
	 * taken in that thread, called from any (one call at a time). */
	vmd_step_progress_cb (*progress_current)(void **opaque);
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
