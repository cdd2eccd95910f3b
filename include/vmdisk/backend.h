/*
 * The backend interface: one ops table per storage backend.
 *
 * The contract. A backend is one file, lib/backend/backend_<name>.c (or a
 * module, lib/backend/<name>/), that ends with its `struct vmd_backend_ops`.
 * Generic code (lib/api/disk.c) only ever asks the table; it reaches a
 * backend through nothing else.
 *
 * - Required operations: create_from_image, exists, info, remove. The
 *   registry refuses a module whose table lacks one.
 * - Optional operations (create_blank, resize, snapshot_extract,
 *   xml_source, flatten, snap_*, clone_from_location, direct_snapshot) are
 *   NULL where the backend cannot; the generic layer turns a NULL into
 *   "backend X does not support OP" (VMD_E_UNSUPPORTED) in one place,
 *   vmd_backend_require, and never calls it. check_config is an optional
 *   hook: NULL means there is nothing to check; so are open/close, the
 *   per-context state hooks.
 * - There is no capability bitmask: what a backend can do is exactly which
 *   operations it fills in, so the two can never disagree.
 * - Modules. Backends that need heavy libraries (rbd: librbd/librados) are
 *   shared modules vmdisk-<name>.so exporting the table as
 *   `vmd_backend_<name>`; the registry dlopen()s them on first use so that
 *   commands which do not use them do not pay for loading them. A module
 *   is built with the library, from the same tree, and is not an ABI: it
 *   must define the build stamp (VMD_BACKEND_MODULE_STAMP below, once per
 *   module) and the registry refuses one whose stamp differs from the
 *   library's ("backend module built for another vmdisk"), before it reads
 *   the table. There is no "older ABI still accepted".
 * - Backends call the library only through the public headers and one
 *   internal header, lib/backend/module_host.h: its `struct
 *   vmd_backend_host` holds the internal calls a backend may make (reading
 *   a base, making a file, the rbd location parser, fault points). A
 *   module gets the library's table through the pointer it defines with
 *   VMD_BACKEND_MODULE_HOST, set by the registry after the stamp check and
 *   before the table is read; libvmdisk.so exports no internal symbol for
 *   it. Modules include nothing else of lib/ but header-only helpers
 *   (cleanup.h, bytes.h), and export only their table, stamp and host
 *   pointer (tests/suite/source/run.sh checks both). The stamp covers this
 *   header, module_host.h and config.h.
 * - Errors: an operation fills err (vmd_error_set) and returns its
 *   negative code; on failure nothing it made remains.
 * - State: what a backend keeps between calls belongs to the context
 *   (open/close hooks, vmd_ctx_backend_priv; rbd's cluster connection),
 *   not to the process, and is freed with the context. Operations may run
 *   concurrently on different contexts; a backend guards its state
 *   against concurrent calls on one context itself.
 *
 * Out structs. Every call of the public API (vmdisk.h, backend.h) that
 * fills a struct or buffer the caller gives (struct vmd_disk_info,
 * struct vmd_cache_entry, the url of a direct snapshot, the xml pointer...)
 * clears it whole on entry, before anything can fail: on success the
 * fields the backend did not set are zero/"" and on failure the struct is
 * all zero, never what the caller's stack held. The generic layer
 * (lib/disk.c, lib/cache.c, lib/cache_manager.c) does the clearing, so an
 * ops->info or ops->xml_source always receives a zeroed struct and fills
 * only what it knows.
 *
 * Threads and state: the registry (which backend is which table, and the
 * modules loaded so far: a module stays loaded for the life of the
 * process) and the module directory are process-wide, guarded by one
 * mutex; vmd_backend_get, vmd_backend_require and
 * vmd_backend_set_module_dir are thread-safe. A backend's own state is per
 * context (above); vmd_ctx_backend_priv takes the context's backend mutex.
 */
#ifndef VMDISK_BACKEND_H
#define VMDISK_BACKEND_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <limits.h>
/* PATH_MAX sizes the structs (the ABI): in strict ISO C (-std=c11)
 * <limits.h> leaves it out, so it comes from the kernel's header. */
#ifndef PATH_MAX
#include <linux/limits.h>
#endif
#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/error.h>
#include <vmdisk/types.h>
#include <vmdisk/validate.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmd_ctx;

/* A disk of an instance, as the generic layer resolved it. */
struct vmd_disk_ref {
	const char *instance;   /* validated UUID */
	const char *disk;       /* validated disk name */
	char instance_dir[PATH_MAX]; /* <instances_path>/<instance> */
	char path[PATH_MAX];    /* file backends: <instance_dir>/<disk> */
	const char *key_id;     /* key of an encrypted disk (create: given;
	                           later: from the instance record), or NULL */
	char key_id_buf[40];    /* where a recorded key id is kept */
	/* The instance directory, opened beneath instances_path without
	 * following any link (lib/beneath.c); file backends reach their
	 * files through it (openat2/ *at() calls), never through
	 * instance_dir or path, which are for libvirt XML and logs. */
	int instance_fd;
};

/* A base image in the local cache, already checked. */
struct vmd_image {
	const char *path;       /* absolute path of the cached file */
	const char *cache_id;   /* its name in the cache */
	enum vmd_format format;
	uint64_t virtual_size;
	/* The cached file, open read-only (opened beneath instances_path):
	 * read it through this descriptor; path is the name others are
	 * given (a qcow2 overlay's backing file). */
	int fd;
};

struct vmd_disk_info {
	char backend[16];
	char format[16];
	uint64_t virtual_size;
	uint64_t actual_size;   /* bytes allocated on the host */
	char path[PATH_MAX];    /* where the guest's disk lives */
	char backing[PATH_MAX]; /* backing file, "" if none */
	char snapshots[1024];   /* rbd: snapshot names, comma-separated */
};

enum vmd_xml_source_type {
	VMD_XML_FILE,
	VMD_XML_BLOCK,
	VMD_XML_NETWORK,
};

#define VMD_XML_MAX_HOSTS 8

/* A disk as libvirt opens it. Empty strings mean "absent". */
struct vmd_xml_source {
	enum vmd_xml_source_type type;
	char driver_type[16];   /* libvirt names: raw, qcow2, ploop */
	char path[PATH_MAX];    /* file or block device */
	bool preallocated;      /* io='native' */
	/* network (rbd) */
	char protocol[8];       /* "rbd" */
	char name[256];         /* pool/image */
	char hosts[VMD_XML_MAX_HOSTS][64]; /* "host:port" or "host" */
	char auth_user[64];
	char auth_secret_uuid[37];
	/* LUKS opened by QEMU (libvirt's <encryption>) */
	char encryption_secret_uuid[37];
};

struct vmd_backend_ops {
	const char *name;

	/* Required. Make `disk` from `base`, `size` bytes (>= base->virtual_size, which
	 * the caller checked). On failure nothing of the disk remains. */
	int (*create_from_image)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                         const struct vmd_image *base, uint64_t size,
	                         struct vmd_error *err);
	/* Optional from here to xml_source. */
	int (*create_blank)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                    uint64_t size, struct vmd_error *err);
	/* Grow only: a smaller size is VMD_E_TOOSMALL. */
	int (*resize)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	              uint64_t new_size, struct vmd_error *err);
	/* Required. */
	int (*exists)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	              bool *exists, struct vmd_error *err);
	/* Required. */
	int (*info)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	            struct vmd_disk_info *out, struct vmd_error *err);
	int (*snapshot_extract)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                        const char *dst_path, enum vmd_format dst_format,
	                        struct vmd_error *err);
	/* Required. */
	int (*remove)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	              struct vmd_error *err);
	/* What the guest's disk is, for libvirt XML (lib/libvirt_xml.c renders
	 * it with the caller's options, so backends never write XML). */
	int (*xml_source)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                  struct vmd_xml_source *out, struct vmd_error *err);

	/* Optional: NULL where the backend cannot. */
	int (*flatten)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	               struct vmd_error *err);
	int (*snap_create)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                   const char *snap, struct vmd_error *err);
	int (*snap_remove)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                   const char *snap, struct vmd_error *err);
	int (*snap_rollback)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                     const char *snap, struct vmd_error *err);

	/* Optional. Make `disk` as a copy-on-write clone of a backend location
	 * (rbd://FSID/POOL/IMAGE/SNAP), `size` bytes (0: the parent's). A
	 * malformed location is VMD_E_INVAL; one that is well formed but cannot
	 * be cloned here (other cluster, missing snapshot) is VMD_E_REFUSED or
	 * VMD_E_NOTFOUND, which the caller may answer by importing instead. */
	int (*clone_from_location)(struct vmd_ctx *ctx,
	                           const struct vmd_disk_ref *disk,
	                           const char *location, uint64_t size,
	                           struct vmd_error *err);
	/* Optional. Publish the disk's current content as a new image `name` in
	 * the image store, without a local copy; its location goes to url. */
	int (*direct_snapshot)(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
	                       const char *name, char *url, size_t url_size,
	                       struct vmd_error *err);
	/* Optional hooks, per context. open runs once for a context, the
	 * first time the context uses this backend (before the operation);
	 * what it stores in *priv the backend's operations find again with
	 * vmd_ctx_backend_priv. close runs in vmd_ctx_free with that
	 * pointer. Without open, priv stays NULL. */
	int (*open)(struct vmd_ctx *ctx, void **priv, struct vmd_error *err);
	void (*close)(void *priv);
	/* Optional hook. Refuse a configuration the backend cannot work with, before
	 * anything is fetched or made (VMD_E_CONFIG). */
	int (*check_config)(struct vmd_ctx *ctx, struct vmd_error *err);
};

/*
 * The build stamp of a module: write VMD_BACKEND_MODULE_STAMP; once in the
 * module, where vmd_build_config.h (VMD_BUILD_STAMP, made by meson from
 * the version and hashes of this header, lib/backend/module_host.h,
 * config.h and lib/libvmdisk.sym) is included. The registry compares it with its own before using the table.
 */
#define VMD_BACKEND_STAMP_SYMBOL "vmd_backend_build_stamp"
#define VMD_BACKEND_MODULE_STAMP                                               \
	extern const char vmd_backend_build_stamp[];                           \
	const char vmd_backend_build_stamp[] = VMD_BUILD_STAMP

/*
 * Find the ops table for a backend (never VMD_BACKEND_DEFAULT: resolve it
 * first with vmd_config_backend). Loads the module on first use.
 */
int vmd_backend_get(enum vmd_backend_kind kind,
                    const struct vmd_backend_ops **ops, struct vmd_error *err);

/* Directory modules are loaded from (default: the build's module dir). */
void vmd_backend_set_module_dir(const char *dir);

/* Turn a NULL operation into a VMD_E_UNSUPPORTED error naming it. */
int vmd_backend_require(const struct vmd_backend_ops *ops, const void *op,
                        const char *op_name, struct vmd_error *err);

/* Context accessors for backends. */
const struct vmd_config *vmd_ctx_config(const struct vmd_ctx *ctx);
/* What ops->open stored for this context, or NULL (no open hook, or the
 * context has not used the backend through the generic layer). */
void *vmd_ctx_backend_priv(struct vmd_ctx *ctx,
                           const struct vmd_backend_ops *ops);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
