/*
 * libvmdisk: turn a VM's base image into the disks of an instance.
 *
 * A `struct vmd_ctx` holds the configuration and the directories derived from
 * it. The disk calls validate their arguments, fetch the base into the local
 * cache (one download per image, however many callers), pick the backend and
 * keep a per-instance record of what was made, so later calls (info, resize,
 * remove) use the backend and format the disk was created with.
 *
 * Threads and state: a struct vmd_ctx is not locked as a whole (it opens
 * instances_path on first use without a lock): use each context from one
 * thread at a time. Calls on different contexts may run in parallel, in
 * threads or in processes; the cache entries and instance directories they
 * share are guarded by file locks (flock), which hold between threads as
 * between processes. Process-wide and shared by every context: the logger
 * and the secret registry (log.h), the backend registry and module
 * directory (backend.h), and libcurl/libcryptsetup, each loaded once on
 * first use (pthread_once) and kept.
 */
#ifndef VMDISK_VMDISK_H
#define VMDISK_VMDISK_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <stdbool.h>
#include <stdint.h>

#include <vmdisk/backend.h>
#include <vmdisk/config.h>
#include <vmdisk/convert.h>
#include <vmdisk/error.h>
#include <vmdisk/inspect.h>
#include <vmdisk/log.h>
#include <vmdisk/types.h>
#include <vmdisk/validate.h>

#ifdef __cplusplus
extern "C" {
#endif

const char *vmd_version(void);

struct vmd_ctx *vmd_ctx_new(const struct vmd_config *cfg, struct vmd_error *err)
	__attribute__((warn_unused_result));
void vmd_ctx_free(struct vmd_ctx *ctx);

/*
 * Progress of the long steps of the disk calls made with ctx, in the
 * calling thread: the copy of a base into a backend (create), an rbd
 * flatten; not lvm's write or clear, which vmdiskd does. step names it
 * ("flat: copy base image", "rbd: flatten"); done of total bytes (total
 * 0: unknown). It may be called from the library's worker threads, one
 * call at a time. NULL stops it. A download has its own callback
 * (vmd_fetch_opts, vmd_create_opts).
 */
typedef void (*vmd_step_progress_cb)(const char *step, uint64_t done,
                                     uint64_t total, void *opaque);
void vmd_ctx_set_progress(struct vmd_ctx *ctx, vmd_step_progress_cb cb,
                          void *opaque);

#define VMD_CACHE_ID_MAX 128

struct vmd_cache_entry {
	char id[VMD_CACHE_ID_MAX]; /* hex sha1 of the source id, or a template
	                              name (ephemeral_..., swap_...) */
	char path[PATH_MAX];      /* <instances_path>/<cache dir>/<id> */
	enum vmd_format format;
	uint64_t virtual_size;
	bool fetched;             /* this call copied it (else it was cached) */
	char hash_algo[8];        /* of the bytes as fetched: md5/sha256/sha512 */
	char hash[129];           /* hex */
};

typedef void (*vmd_progress_cb)(uint64_t done, uint64_t total, void *opaque);

struct vmd_fetch_opts {
	const char *checksum;     /* "ALG:HEX" the image must hash to, or NULL */
	vmd_progress_cb progress; /* called as bytes arrive (total 0: unknown) */
	void *progress_opaque;
};

/*
 * Make sure the image `source` is in the cache: under the entry's lock, check
 * for it and, if absent, copy it into a temporary and publish it atomically.
 * A second caller waits on the lock and then reuses the entry.
 */
int vmd_cache_fetch(struct vmd_ctx *ctx, const char *source,
                    struct vmd_cache_entry *out, struct vmd_error *err);
/* The same, checking a checksum and reporting progress. */
int vmd_cache_fetch_ex(struct vmd_ctx *ctx, const char *source,
                       const struct vmd_fetch_opts *opts,
                       struct vmd_cache_entry *out, struct vmd_error *err);

/* ---- the cache manager ---- */

struct vmd_cache_item {
	char id[VMD_CACHE_ID_MAX];
	uint64_t size;          /* bytes */
	uint64_t allocated;     /* bytes on disk */
	int64_t mtime;          /* last fetched or used */
	bool resized;           /* "<id>_<suffix>": a derived base */
	unsigned users;         /* disks that refer to it */
	char hash_algo[8];
	char hash[129];
};

int vmd_cache_list(struct vmd_ctx *ctx, struct vmd_cache_item **items,
                   size_t *n, struct vmd_error *err);

enum vmd_prune_action {
	VMD_PRUNE_CANDIDATE = 0, /* internal */
	VMD_PRUNE_REMOVED,
	VMD_PRUNE_WOULD_REMOVE,  /* --dry-run */
	VMD_PRUNE_KEPT_IN_USE,
	VMD_PRUNE_KEPT_YOUNG,
	VMD_PRUNE_KEPT_DISABLED, /* remove_unused_base_images = false */
};

struct vmd_prune_item {
	char id[VMD_CACHE_ID_MAX];
	enum vmd_prune_action action;
	uint64_t age;           /* seconds since last fetched or used */
	uint64_t size;
	unsigned users;
};

/* Remove unused bases past their age (dry_run: only say which). */
int vmd_cache_prune(struct vmd_ctx *ctx, bool dry_run,
                    struct vmd_prune_item **items, size_t *n,
                    struct vmd_error *err);
const char *vmd_prune_action_name(enum vmd_prune_action a);

/* File systems a blank (ephemeral or swap) disk can be made with. */
enum vmd_blank_fs {
	VMD_FS_NONE = 0, /* unformatted */
	VMD_FS_EXT4,
	VMD_FS_XFS,
	VMD_FS_VFAT,
	VMD_FS_SWAP,
};

int vmd_parse_blank_fs(const char *s, enum vmd_blank_fs *fs,
                       struct vmd_error *err);
const char *vmd_blank_fs_name(enum vmd_blank_fs fs);
/* Labels: [A-Za-z0-9][A-Za-z0-9._-]*, at most what the file system takes
 * (ext4 16, xfs 12, vfat 11, swap 15). Never quoted into anything. */
bool vmd_valid_fs_label(enum vmd_blank_fs fs, const char *label);

/*
 * The cached template for blank disks of (fs, size, label): made once with
 * mkfs (through the runner) and then used like a base image (Nova's
 * ephemeral_<size>_<fs> and swap_<size> bases).
 */
int vmd_cache_template(struct vmd_ctx *ctx, enum vmd_blank_fs fs,
                       uint64_t size, const char *label,
                       struct vmd_cache_entry *out, struct vmd_error *err);

struct vmd_create_opts {
	const char *image;            /* image source; NULL for a blank disk */
	enum vmd_blank_fs fs;         /* blank disks: the file system */
	const char *label;            /* blank disks: its label, or NULL */
	uint64_t size;                /* 0 = the image's virtual size */
	enum vmd_backend_kind backend; /* DEFAULT = from the configuration */
	const char *checksum;         /* "ALG:HEX" the image must hash to */
	vmd_progress_cb progress;     /* download progress, or NULL */
	void *progress_opaque;
	const char *location;         /* backend location to clone from
	                                 (rbd://FSID/POOL/IMAGE/SNAP), or NULL */
	const char *key_id;           /* encrypted disks (lvm with
	                                 ephemeral_storage_encryption_enabled):
	                                 the UUID of the key in key_manager */
};

int vmd_disk_create(struct vmd_ctx *ctx, const char *instance,
                    const char *disk, const struct vmd_create_opts *opts,
                    struct vmd_disk_info *out, struct vmd_error *err);
int vmd_disk_info(struct vmd_ctx *ctx, const char *instance, const char *disk,
                  struct vmd_disk_info *out, struct vmd_error *err);
int vmd_disk_resize(struct vmd_ctx *ctx, const char *instance,
                    const char *disk, uint64_t new_size, struct vmd_error *err);
int vmd_disk_remove(struct vmd_ctx *ctx, const char *instance,
                    const char *disk, struct vmd_error *err);
/* Write the disk's current content, flattened, into the new file dst_path
 * (never over an existing file), as raw or qcow2. */
int vmd_disk_snapshot_extract(struct vmd_ctx *ctx, const char *instance,
                              const char *disk, const char *dst_path,
                              enum vmd_format dst_format,
                              struct vmd_error *err);
/* How the guest sees the disk. Every field is checked against an
 * allow-list; a value outside it is refused, never escaped into XML. */
struct vmd_xml_opts {
	const char *dev;               /* vd*, sd*, hd* (default vda) */
	const char *bus;               /* virtio|scsi|sata|ide; NULL: from dev */
	const char *cache;             /* none|writeback|writethrough|
	                                  directsync|unsafe; NULL: none */
	const char *discard;           /* unmap|ignore, or NULL */
	unsigned boot_order;           /* 0: none */
	const char *qos;               /* "total_bytes_sec=N,read_iops_sec=N" */
	const char *filesystem_target; /* set: the <filesystem> form */
};

/* A malloc'ed libvirt <disk> (or <filesystem>) element for the disk. */
int vmd_disk_libvirt_xml(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, const struct vmd_xml_opts *opts,
                         char **xml, struct vmd_error *err);

/* Backend snapshots of a disk (rbd). */
int vmd_disk_snap_create(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, const char *snap,
                         struct vmd_error *err);
int vmd_disk_snap_remove(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, const char *snap,
                         struct vmd_error *err);
int vmd_disk_snap_rollback(struct vmd_ctx *ctx, const char *instance,
                           const char *disk, const char *snap,
                           struct vmd_error *err);
/* Copy the parent's data into the disk so that it no longer has one. */
int vmd_disk_flatten(struct vmd_ctx *ctx, const char *instance,
                     const char *disk, struct vmd_error *err);
/* Publish the disk as image `name` in the backend's image store; its
 * location (rbd://...) is written to url. */
int vmd_disk_direct_snapshot(struct vmd_ctx *ctx, const char *instance,
                             const char *disk, const char *name, char *url,
                             size_t url_size, struct vmd_error *err);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
