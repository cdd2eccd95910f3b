/*
 * The disk calls of libvmdisk: validate, resolve the backend, lock, call the
 * backend's table, keep the instance record.
 *
 * Locks (all in <instances_path>/locks/):
 *   base-<id>       exclusive while the cache fetches the entry; shared
 *                   while a disk is being made from it, so that the cache
 *                   manager (which takes it exclusively to prune) never
 *                   removes a base under a create;
 *   instance-<uuid> exclusive while an instance's disks or record change.
 * A create that fails removes the disk (the backend's job) and the instance
 * directory when it made it and it is empty.
 *
 * Every file under instances_path is reached through lib/beneath.c: the
 * instance directory is opened beneath instances_path (a planted symbolic
 * link there is refused) and a disk_ref carries its descriptor, which the
 * file backends and the record use; the ref's path strings are only
 * printed (libvirt XML, a qcow2 overlay's backing name, logs).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "cache.h"
#include "faultpoint.h"
#include "fsutil.h"
#include "internal.h"
#include "libvirt_xml.h"
#include "progress.h"
#include "rbd_location.h"
#include "record.h"
#include "source.h"
#include "vmd_build_config.h"

#define INSTANCE_DIR_MODE 0755 /* qemu must traverse it to reach a disk */
#define DISK_SIZE_MAX (1ull << 50) /* 1 PiB: see check_size */

const char *vmd_version(void)
{
	return VMD_VERSION;
}

const char *vmd_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

const struct vmd_config *vmd_ctx_config(const struct vmd_ctx *ctx)
{
	return &ctx->cfg;
}

int vmd_cache_dir_of(const struct vmd_config *cfg, char *out)
{
	if (cfg->instances_path[0] != '/' ||
	    snprintf(out, PATH_MAX, "%s/%s", cfg->instances_path,
	             cfg->image_cache_subdirectory_name) >= PATH_MAX)
		return -1;
	return 0;
}

struct vmd_ctx *vmd_ctx_new(const struct vmd_config *cfg, struct vmd_error *err)
{
	struct vmd_ctx *ctx = calloc(1, sizeof(*ctx));

	if (!ctx) {
		vmd_error_set(err, VMD_E_NOMEM, "out of memory", "vmd_ctx");
		return NULL;
	}
	ctx->cfg = *cfg;
	ctx->root_fd = -1;
	if (vmd_cache_dir_of(cfg, ctx->cache_dir) < 0) {
		vmd_error_set(err, VMD_E_CONFIG, "config: bad instances_path",
		              "instances_path '%s'", cfg->instances_path);
		free(ctx);
		return NULL;
	}
	pthread_mutex_init(&ctx->backends_mutex, NULL);
	return ctx;
}

void vmd_ctx_set_progress(struct vmd_ctx *ctx, vmd_step_progress_cb cb,
                          void *opaque)
{
	ctx->progress.fn = cb;
	ctx->progress.opaque = opaque;
}

void vmd_ctx_free(struct vmd_ctx *ctx)
{
	if (ctx) {
		vmd_backend_detach_all(ctx);
		pthread_mutex_destroy(&ctx->backends_mutex);
		closep(&ctx->root_fd);
	}
	free(ctx);
}

static int disk_ref_init(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, struct vmd_disk_ref *ref,
                         struct vmd_error *err)
{
	if (!instance || !vmd_valid_uuid(instance))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "instance id must be a UUID",
		                     "bad instance id");
	if (!disk || !vmd_valid_disk_name(disk))
		return vmd_error_set(err, VMD_E_INVAL, "bad disk name",
		                     "disk name must match "
		                     "[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
	closep(&ref->instance_fd);
	memset(ref, 0, sizeof(*ref));
	ref->instance_fd = -1;
	ref->instance = instance;
	ref->disk = disk;
	if (snprintf(ref->instance_dir, sizeof(ref->instance_dir), "%s/%s",
	             ctx->cfg.instances_path, instance) >=
	            (int)sizeof(ref->instance_dir) ||
	    snprintf(ref->path, sizeof(ref->path), "%s/%s", ref->instance_dir,
	             disk) >= (int)sizeof(ref->path))
		return vmd_error_set(err, VMD_E_INVAL, "disk path too long",
		                     "instances_path too long");
	return 0;
}

static void disk_ref_release(struct vmd_disk_ref *ref)
{
	closep(&ref->instance_fd);
}

/* A ref whose instance directory descriptor is closed on scope exit. */
#define DISK_REF                                                               \
	_cleanup_(disk_ref_release) struct vmd_disk_ref
#define DISK_REF_INIT {.instance_fd = -1}

static int lock_instance(struct vmd_ctx *ctx, const char *instance,
                         struct vmd_lock *lock, struct vmd_error *err)
{
	char name[64];

	snprintf(name, sizeof(name), "instance-%s", instance);
	return vmd_ctx_lock_acquire(ctx, lock, name, VMD_LOCK_EXCLUSIVE,
	                            ctx->cfg.lock_timeout_seconds, err);
}

/*
 * Fetch the base and hold its lock shared. A prune may remove the entry
 * between the fetch and our lock; then fetch again.
 */
static int fetch_and_hold_base(struct vmd_ctx *ctx,
                               const struct vmd_create_opts *opts,
                               struct vmd_cache_entry *entry,
                               struct vmd_lock *base_lock, int *base_fd,
                               struct vmd_error *err)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		char name[VMD_LOCK_NAME_MAX];
		_cleanup_(closep) int cache_fd = -1;
		struct vmd_fetch_opts fo = {opts->checksum, opts->progress,
		                            opts->progress_opaque};
		int rc = opts->image
			? vmd_cache_fetch_ex(ctx, opts->image, &fo, entry, err)
			: vmd_cache_template(ctx, opts->fs, opts->size,
			                     opts->label, entry, err);

		if (rc < 0)
			return rc;
		vmd_base_lock_name(entry->id, name);
		rc = vmd_ctx_lock_acquire(ctx, base_lock, name, VMD_LOCK_SHARED,
		                          ctx->cfg.lock_timeout_seconds, err);
		if (rc == 0)
			rc = vmd_beneath_cache_dir(ctx, false, 0, &cache_fd, err);
		if (rc < 0 && rc != VMD_E_NOTFOUND)
			return rc;
		/* The backends read the base through this descriptor, opened
		 * beneath instances_path; entry->path is only printed. */
		*base_fd = cache_fd < 0 ? -1
		                        : vmd_bopen(cache_fd, entry->id,
		                                    O_RDONLY | O_NONBLOCK, 0);
		if (*base_fd >= 0)
			return 0;
		if (cache_fd >= 0 && errno != ENOENT)
			return vmd_beneath_error(err, VMD_E_IO, errno,
			                         "open base image failed",
			                         "open %s", entry->id);
		vmd_lock_release(base_lock);
	}
	return vmd_error_set(err, VMD_E_BUSY, "base image kept disappearing",
	                     "cache entry removed three times during create");
}

static int check_size(uint64_t size, struct vmd_error *err)
{
	if (size % 512)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "size must be a multiple of 512 bytes",
		                     "size %llu", (unsigned long long)size);
	/* No file or volume can be larger than off_t allows: refused before
	 * any lock is taken or anything is made (issue 16, hostile input). */
	if (size > (uint64_t)INT64_MAX)
		return vmd_error_set(err, VMD_E_INVAL, "size too large",
		                     "size %llu", (unsigned long long)size);
	/* Nor can any backend make a disk past 1 PiB (qcow2 with its 64 KiB
	 * clusters stops at 2 PiB, ext4 at 16 TiB): found out only after the
	 * instance lock is taken, such a size would leave its lock file. */
	if (size > DISK_SIZE_MAX)
		return vmd_error_set(err, VMD_E_INVAL, "size too large",
		                     "size %llu above %llu",
		                     (unsigned long long)size,
		                     (unsigned long long)DISK_SIZE_MAX);
	return 0;
}

static int check_source_fits(struct vmd_ctx *ctx, const char *source,
                             uint64_t size, struct vmd_error *err)
{
	uint64_t image_size;
	int rc = vmd_cache_source_check(ctx, source, &image_size, err);

	if (rc < 0)
		return rc;
	if (size && size < image_size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "requested size is smaller than the image",
		                     "size %llu < image %llu",
		                     (unsigned long long)size,
		                     (unsigned long long)image_size);
	return 0;
}

/* Record the mtime bump that tells the cache manager the base is used. */
static void touch_base(const struct vmd_cache_entry *entry, int base_fd)
{
	if (futimens(base_fd, NULL) < 0)
		vmd_log_warning("cache: could not touch %s: %s", entry->id,
		                strerror(errno));
}

/* The instance directory create made, removed again if the create fails
 * (only when empty: rmdir). */
struct dir_guard {
	int root_fd;
	const char *name;
	bool armed;
};

static void dir_guard_run(struct dir_guard *g)
{
	if (g->armed && vmd_bunlink(g->root_fd, g->name, AT_REMOVEDIR) < 0 &&
	    errno != ENOENT)
		vmd_log_warning("clean-up: could not remove instance directory "
		                "%s: %s", g->name, strerror(errno));
	g->armed = false;
}

/* Make (if missing) and open the instance directory beneath
 * instances_path; guard is armed when this call made it. */
static int instance_dir_make(struct vmd_ctx *ctx, struct vmd_disk_ref *ref,
                             struct dir_guard *guard, struct vmd_error *err)
{
	int rc = vmd_beneath_root(ctx, true, &guard->root_fd, err);

	closep(&ref->instance_fd);
	if (rc < 0)
		return rc;
	guard->name = ref->instance;
	if (vmd_bmkdir(guard->root_fd, ref->instance, INSTANCE_DIR_MODE) == 0) {
		guard->armed = true;
		/* The new directory's name is made durable before anything in
		 * it: its record and disk are fsynced with the directory they
		 * are in, which does not make that directory's own entry in
		 * instances_path durable. Once per new instance. (root_fd is
		 * an O_PATH descriptor, which fsync does not take.) */
		_cleanup_(closep) int root = vmd_bopen(
			guard->root_fd, ".", O_RDONLY | O_DIRECTORY, 0);

		if (root < 0 || vmd_fsync(root) < 0)
			return vmd_beneath_error(err, VMD_E_IO, errno,
			                         "sync instance directory failed",
			                         "fsync of the parent of %s",
			                         ref->instance_dir);
	} else if (errno != EEXIST)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "make instance directory failed",
		                         "mkdir %s", ref->instance_dir);
	ref->instance_fd = vmd_bopen(guard->root_fd, ref->instance,
	                             O_RDONLY | O_DIRECTORY, 0);
	if (ref->instance_fd < 0)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "open instance directory failed",
		                         "open %s", ref->instance_dir);
	return 0;
}

/* A pending entry under the instance lock: a create was killed while
 * making this disk. Remove what it made with the backend the entry names,
 * then the entry: VMD_E_NOTFOUND then means "go on as for a new disk". */
static int remove_unfinished(struct vmd_ctx *ctx, struct vmd_disk_ref *ref,
                             const struct vmd_disk_record *rec,
                             struct vmd_error *err)
{
	const struct vmd_backend_ops *ops;
	bool exists = false;
	int rc = vmd_backend_get(rec->backend, &ops, err);

	if (rc == 0)
		rc = vmd_backend_attach(ctx, ops, err);
	if (rc == 0)
		rc = ops->exists(ctx, ref, &exists, err);
	if (rc == 0 && exists)
		rc = ops->remove(ctx, ref, err);
	if (rc == 0)
		rc = vmd_record_drop(ref->instance_fd, ref->disk, err);
	if (rc < 0)
		return rc;
	vmd_log_info("create: removed %s, left unfinished by a create that "
	             "did not end", ref->disk);
	return VMD_E_NOTFOUND;
}

/*
 * After a failed step of a create: the disk goes, then its record entry
 * (pending; or committed, when the record's rename took effect before its
 * directory's fsync failed). A backend removes what it made on failure,
 * unless it could not (vmdiskd's helper died mid-step): then it is removed
 * here. A disk that cannot be removed keeps its pending entry, so that the
 * next create finds and removes it, never a disk without a record.
 */
static void create_undo(struct vmd_ctx *ctx, const struct vmd_backend_ops *ops,
                        const struct vmd_disk_ref *ref)
{
	struct vmd_error ignored = VMD_ERROR_INIT;
	bool exists = true;

	if (ops->exists(ctx, ref, &exists, &ignored) < 0)
		return;
	if (exists && ops->remove(ctx, ref, &ignored) < 0)
		return;
	vmd_record_drop(ref->instance_fd, ref->disk, &ignored);
}

static int create_locked(struct vmd_ctx *ctx, const struct vmd_backend_ops *ops,
                         struct vmd_disk_ref *ref,
                         const struct vmd_create_opts *opts,
                         const struct vmd_cache_entry *entry, int base_fd,
                         const char *location,
                         struct vmd_disk_record *rec, struct vmd_error *err)
{
	_cleanup_(dir_guard_run) struct dir_guard guard = {
		-1, NULL, false};
	struct vmd_disk_record existing;
	uint64_t size = opts->size;
	bool exists = false;
	int rc = instance_dir_make(ctx, ref, &guard, err);

	if (rc < 0)
		return rc;
	rc = vmd_record_get(ref->instance_fd, ref->disk, &existing, err);
	if (rc == 0 && existing.pending)
		rc = remove_unfinished(ctx, ref, &existing, err);
	else if (rc == 0)
		return vmd_error_set(err, VMD_E_EXISTS, "disk already exists",
		                     "record has %s", ref->disk);
	if (rc != VMD_E_NOTFOUND)
		return rc;
	rc = ops->exists(ctx, ref, &exists, err);
	if (rc < 0)
		return rc;
	if (exists)
		return vmd_error_set(err, VMD_E_EXISTS, "disk already exists",
		                     "%s exists without a record", ref->path);

	/* Recorded first, as pending: a create killed from here on leaves an
	 * entry that says so, and the next create removes what it made (a
	 * disk without any record is never taken for ours). */
	rec->pending = true;
	rc = vmd_record_put(ref->instance_fd, ref->disk, rec, err);
	rec->pending = false;
	if (rc < 0) {
		/* Its rename may have taken effect before the directory's
		 * fsync failed. */
		create_undo(ctx, ops, ref);
		return rc;
	}
	if (location) {
		rc = vmd_backend_require(
			ops, (const void *)ops->clone_from_location,
			"clone_from_location", err);
		if (rc == 0)
			rc = ops->clone_from_location(ctx, ref, location, size,
			                              err);
	} else if (entry) {
		if (size == 0)
			size = vmd_round_sector(entry->virtual_size);
		if (size < entry->virtual_size)
			return vmd_error_set(
				err, VMD_E_TOOSMALL,
				"requested size is smaller than the image",
				"size %llu < image %llu",
				(unsigned long long)size,
				(unsigned long long)entry->virtual_size);
		struct vmd_image base = {
			.path = entry->path,
			.cache_id = entry->id,
			.format = entry->format,
			.virtual_size = entry->virtual_size,
			.fd = base_fd,
		};

		rc = ops->create_from_image(ctx, ref, &base, size, err);
	} else {
		if (size == 0)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "a blank disk needs a size",
			                     "size 0");
		rc = vmd_backend_require(ops, (const void *)ops->create_blank,
		                         "create_blank", err);
		if (rc == 0)
			rc = ops->create_blank(ctx, ref, size, err);
	}
	if (rc < 0) {
		create_undo(ctx, ops, ref);
		return rc;
	}
	rc = vmd_faultpoint("disk.before_record", err);
	if (rc == 0)
		rc = vmd_record_commit(ref->instance_fd, ref->disk, err);
	if (rc < 0) {
		create_undo(ctx, ops, ref);
		return rc;
	}
	guard.armed = false;
	return 0;
}

/* A new disk's record: backend, format and key, pinned now for good (later
 * calls never probe the disk, which the guest can write: a qcow2 header in
 * a raw disk stays raw). The key is kept so that a resize can open an
 * encrypted disk's mapping. */
static void record_init(struct vmd_disk_record *rec,
                        enum vmd_backend_kind kind, enum vmd_format format,
                        const struct vmd_create_opts *opts)
{
	rec->backend = kind;
	rec->format = format;
	if (opts->key_id)
		snprintf(rec->key_id, sizeof(rec->key_id), "%s", opts->key_id);
}

/* The disk as its backend sees it, named by the backend, into the
 * caller's out (none: nothing to do). */
static int backend_info(struct vmd_ctx *ctx,
                          const struct vmd_backend_ops *ops,
                          struct vmd_disk_ref *ref, struct vmd_disk_info *out,
                          struct vmd_error *err)
{
	int rc;

	if (!out)
		return 0;
	rc = ops->info(ctx, ref, out, err);
	if (rc == 0)
		snprintf(out->backend, sizeof(out->backend), "%s", ops->name);
	return rc;
}

/* A copy-on-write clone of a backend location: no base is fetched. */
static int create_by_location(struct vmd_ctx *ctx,
                              const struct vmd_backend_ops *ops,
                              struct vmd_disk_ref *ref,
                              const struct vmd_create_opts *opts,
                              enum vmd_backend_kind kind,
                              struct vmd_disk_info *out, struct vmd_error *err)
{
	_cleanup_(vmd_lock_release) struct vmd_lock inst_lock = VMD_LOCK_INIT;
	struct vmd_disk_record rec = {0};
	int rc = lock_instance(ctx, ref->instance, &inst_lock, err);

	if (out) /* a location tried before may have filled part of it */
		memset(out, 0, sizeof(*out));
	record_init(&rec, kind, VMD_FORMAT_RAW, opts);
	if (rc == 0)
		rc = create_locked(ctx, ops, ref, opts, NULL, -1,
		                   opts->location, &rec, err);
	if (rc == 0)
		rc = backend_info(ctx, ops, ref, out, err);
	if (rc < 0)
		vmd_error_prefix(err, "create");
	return rc;
}

/* Create, stage 1: the options, the disk's name and the backend. */
static int create_check_opts(struct vmd_ctx *ctx, const char *instance,
                             const char *disk,
                             const struct vmd_create_opts *opts,
                             struct vmd_disk_ref *ref,
                             enum vmd_backend_kind *kind,
                             const struct vmd_backend_ops **ops,
                             struct vmd_error *err)
{
	int rc;

	*kind = opts->backend;
	if (*kind == VMD_BACKEND_DEFAULT)
		*kind = vmd_config_backend(&ctx->cfg);
	rc = disk_ref_init(ctx, instance, disk, ref, err);
	ref->key_id = opts->key_id;
	if (rc == 0 && opts->key_id && !vmd_valid_uuid(opts->key_id))
		rc = vmd_error_set(err, VMD_E_INVAL, "key id must be a UUID",
		                   "bad key id");
	if (rc == 0)
		rc = check_size(opts->size, err);
	/* A blank file system too small for its mkfs is refused here, before
	 * any lock or file: mkfs itself would fail without saying why. */
	if (rc == 0 && !opts->image && opts->size > 0)
		rc = vmd_blank_fs_check_size(opts->fs, opts->size, err);
	/* A backend that cannot clone ignores a location (as Nova does), but
	 * only a well-formed one: garbage is refused whatever the backend. */
	if (rc == 0 && opts->location) {
		struct vmd_rbd_location loc;

		rc = vmd_rbd_location_parse(opts->location, &loc, err);
	}
	if (rc == 0)
		rc = vmd_backend_get(*kind, ops, err);
	if (rc == 0)
		rc = vmd_backend_attach(ctx, *ops, err);
	if (rc == 0 && (*ops)->check_config)
		rc = (*ops)->check_config(ctx, err);
	return rc;
}

/*
 * Create, stage 2: clone a location instead of importing, when there is
 * one. *done says the call's outcome is rc (made, or failed for good,
 * the error prefixed); otherwise the caller makes the disk from its base.
 */
static int create_from_locations(struct vmd_ctx *ctx,
                                 const struct vmd_backend_ops *ops,
                                 struct vmd_disk_ref *ref,
                                 const struct vmd_create_opts *opts,
                                 enum vmd_backend_kind kind,
                                 struct vmd_disk_info *out, bool *done,
                                 struct vmd_error *err)
{
	/* An image whose source records locations (Glance's rbd://
	 * direct_url and locations) is cloned from the first that clones, as
	 * if it were given: O(1) instead of a download and an import. Not
	 * when a checksum is asked for: only an import hashes the bytes. */
	struct vmd_locations found = {0};
	struct vmd_create_opts with_loc = *opts;
	int rc = 0;

	*done = true;
	if (!opts->location && opts->image && !opts->checksum &&
	    ops->clone_from_location) {
		rc = vmd_source_location(ctx, opts->image, &found, err);
		if (rc < 0) {
			vmd_error_prefix(err, "create");
			return rc;
		}
		if (found.n > 0)
			vmd_log_info("create: %s/%s: cloning the image's "
			             "location", ref->instance, ref->disk);
	}
	/* A location means nothing to a backend that cannot clone one: with
	 * an image to import it is ignored, as Nova does. */
	if (!(opts->location || found.n > 0) ||
	    !(ops->clone_from_location || !opts->image)) {
		*done = false;
		return 0;
	}
	/* found: one or more; --location: exactly one. */
	for (size_t i = 0; i < (found.n > 0 ? found.n : 1); i++) {
		if (found.n > 0)
			with_loc.location = vmd_locations_at(&found, i);
		rc = create_by_location(ctx, ops, ref, &with_loc, kind, out,
		                        err);
		/* Only a location that is well formed but not clonable here
		 * falls back (to the next one, then to an import), and to an
		 * import only when configured and a source is given. */
		if (rc == 0 || (rc != VMD_E_REFUSED && rc != VMD_E_NOTFOUND))
			return rc;
		if (i + 1 < found.n) {
			vmd_log_warning("create: %s/%s: location not clonable, "
			                "trying the next one", ref->instance,
			                ref->disk);
			vmd_error_clear(err);
		}
	}
	if (!opts->image || !ctx->cfg.rbd_clone_fallback_import)
		return rc;
	vmd_log_warning("create: %s/%s: location not clonable, "
	                "importing the image instead", ref->instance,
	                ref->disk);
	vmd_error_clear(err);
	*done = false;
	return 0;
}

/* Create, stage 3: from the image (fetched into the cache), a blank file
 * system or nothing, under the instance lock, and the disk's record. */
static int create_from_base(struct vmd_ctx *ctx,
                            const struct vmd_backend_ops *ops,
                            struct vmd_disk_ref *ref,
                            const struct vmd_create_opts *opts,
                            enum vmd_backend_kind kind,
                            struct vmd_disk_info *out, struct vmd_error *err)
{
	struct vmd_cache_entry entry;
	_cleanup_(closep) int base_fd = -1;
	_cleanup_(vmd_lock_release) struct vmd_lock base_lock = VMD_LOCK_INIT;
	_cleanup_(vmd_lock_release) struct vmd_lock inst_lock = VMD_LOCK_INIT;
	struct vmd_disk_record rec = {0};
	bool from_base = opts->image || opts->fs != VMD_FS_NONE;
	int rc = 0;

	if (opts->image)
		rc = check_source_fits(ctx, opts->image, opts->size, err);
	if (rc == 0 && !opts->image && opts->fs != VMD_FS_NONE &&
	    opts->label && !vmd_valid_fs_label(opts->fs, opts->label))
		rc = vmd_error_set(err, VMD_E_INVAL, "bad file system label",
		                   "label refused");
	if (rc == 0 && from_base)
		rc = fetch_and_hold_base(ctx, opts, &entry, &base_lock,
		                         &base_fd, err);
	if (rc == 0)
		rc = lock_instance(ctx, ref->instance, &inst_lock, err);
	if (rc < 0)
		return rc;
	record_init(&rec, kind,
	            kind == VMD_BACKEND_QCOW2   ? VMD_FORMAT_QCOW2
	            : kind == VMD_BACKEND_PLOOP ? VMD_FORMAT_PLOOP
	                                        : VMD_FORMAT_RAW,
	            opts);
	if (from_base)
		snprintf(rec.base_id, sizeof(rec.base_id), "%s", entry.id);
	rc = create_locked(ctx, ops, ref, opts, from_base ? &entry : NULL,
	                   base_fd, NULL, &rec, err);
	if (rc == 0 && from_base)
		touch_base(&entry, base_fd);
	if (rc == 0)
		rc = backend_info(ctx, ops, ref, out, err);
	return rc;
}

int vmd_disk_create(struct vmd_ctx *ctx, const char *instance,
                    const char *disk, const struct vmd_create_opts *opts,
                    struct vmd_disk_info *out, struct vmd_error *err)
{
	DISK_REF ref = DISK_REF_INIT;
	const struct vmd_backend_ops *ops = NULL;
	enum vmd_backend_kind kind;
	bool done = false;
	int rc;
	VMD_PROGRESS_SCOPE(ctx->progress);

	/* The out-struct contract (vmdisk/backend.h): cleared before anything
	 * can fail, so no byte of the caller's stack is ever printed. */
	if (out)
		memset(out, 0, sizeof(*out));
	rc = create_check_opts(ctx, instance, disk, opts, &ref, &kind, &ops,
	                       err);
	if (rc < 0) {
		vmd_error_prefix(err, "create");
		return rc;
	}
	/* Its errors are prefixed where they are made. */
	rc = create_from_locations(ctx, ops, &ref, opts, kind, out, &done,
	                           err);
	if (done)
		return rc;
	rc = create_from_base(ctx, ops, &ref, opts, kind, out, err);
	if (rc < 0)
		vmd_error_prefix(err, "create");
	return rc;
}

/* Resolve an existing disk: its ref and the backend its record names. */
static int open_existing(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, struct vmd_disk_ref *ref,
                         const struct vmd_backend_ops **ops,
                         struct vmd_error *err)
{
	struct vmd_disk_record rec;
	int rc = disk_ref_init(ctx, instance, disk, ref, err);

	if (rc == 0)
		rc = vmd_beneath_dir(ctx, instance, false, 0,
		                     "open instance directory failed",
		                     &ref->instance_fd, err);
	if (rc == 0)
		rc = vmd_record_get(ref->instance_fd, disk, &rec, err);
	if (rc == VMD_E_NOTFOUND)
		return vmd_error_set(err, VMD_E_NOTFOUND, "disk not found",
		                     "no record of %s in %s", disk,
		                     ref->instance_dir);
	if (rc < 0)
		return rc;
	if (rec.pending)
		return vmd_error_set(err, VMD_E_NOTFOUND, "disk not found",
		                     "%s: its create did not finish", disk);
	if (rec.key_id[0]) {
		snprintf(ref->key_id_buf, sizeof(ref->key_id_buf), "%s",
		         rec.key_id);
		ref->key_id = ref->key_id_buf;
	}
	rc = vmd_backend_get(rec.backend, ops, err);
	if (rc == 0)
		rc = vmd_backend_attach(ctx, *ops, err);
	return rc;
}

/* An existing disk under its instance's lock, which every call that
 * changes a disk or reads its content holds: the names are checked before
 * the lock is named after them. */
static int open_existing_locked(struct vmd_ctx *ctx, const char *instance,
                                const char *disk, struct vmd_disk_ref *ref,
                                const struct vmd_backend_ops **ops,
                                struct vmd_lock *lock, struct vmd_error *err)
{
	int rc = disk_ref_init(ctx, instance, disk, ref, err);

	if (rc == 0)
		rc = lock_instance(ctx, instance, lock, err);
	if (rc == 0)
		rc = open_existing(ctx, instance, disk, ref, ops, err);
	return rc;
}

int vmd_disk_info(struct vmd_ctx *ctx, const char *instance, const char *disk,
                  struct vmd_disk_info *out, struct vmd_error *err)
{
	DISK_REF ref = DISK_REF_INIT;
	const struct vmd_backend_ops *ops;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = open_existing(ctx, instance, disk, &ref, &ops, err);
	if (rc == 0)
		rc = backend_info(ctx, ops, &ref, out, err);
	if (rc < 0)
		vmd_error_prefix(err, "info");
	return rc;
}

int vmd_disk_resize(struct vmd_ctx *ctx, const char *instance,
                    const char *disk, uint64_t new_size, struct vmd_error *err)
{
	DISK_REF ref = DISK_REF_INIT;
	const struct vmd_backend_ops *ops;
	_cleanup_(vmd_lock_release) struct vmd_lock lock = VMD_LOCK_INIT;
	int rc = check_size(new_size, err);

	if (rc == 0 && new_size == 0)
		rc = vmd_error_set(err, VMD_E_INVAL, "size must be positive",
		                   "size 0");
	if (rc == 0)
		rc = open_existing_locked(ctx, instance, disk, &ref, &ops,
		                          &lock, err);
	if (rc == 0)
		rc = vmd_backend_require(ops, (const void *)ops->resize,
		                         "resize", err);
	if (rc == 0)
		rc = ops->resize(ctx, &ref, new_size, err);
	if (rc < 0)
		vmd_error_prefix(err, "resize");
	return rc;
}

int vmd_disk_remove(struct vmd_ctx *ctx, const char *instance,
                    const char *disk, struct vmd_error *err)
{
	DISK_REF ref = DISK_REF_INIT;
	const struct vmd_backend_ops *ops;
	_cleanup_(vmd_lock_release) struct vmd_lock lock = VMD_LOCK_INIT;
	VMD_PROGRESS_SCOPE(ctx->progress);
	int rc = open_existing_locked(ctx, instance, disk, &ref, &ops, &lock,
	                              err);

	if (rc == 0)
		rc = ops->remove(ctx, &ref, err);
	if (rc == 0)
		rc = vmd_faultpoint("disk.before_record_drop", err);
	if (rc == 0)
		rc = vmd_record_drop(ref.instance_fd, disk, err);
	if (rc < 0) {
		vmd_error_prefix(err, "remove");
		return rc;
	}
	/* The last disk takes the instance directory with it. */
	int root;

	if (vmd_faultpoint("disk.before_rmdir", NULL) == 0 &&
	    vmd_beneath_root(ctx, false, &root, NULL) == 0 &&
	    vmd_bunlink(root, instance, AT_REMOVEDIR) < 0 &&
	    errno != ENOTEMPTY && errno != EEXIST)
		vmd_log_warning("remove: could not remove %s: %s",
		                ref.instance_dir, strerror(errno));
	return 0;
}

int vmd_disk_snapshot_extract(struct vmd_ctx *ctx, const char *instance,
                              const char *disk, const char *dst_path,
                              enum vmd_format dst_format,
                              struct vmd_error *err)
{
	DISK_REF ref = DISK_REF_INIT;
	const struct vmd_backend_ops *ops;
	_cleanup_(vmd_lock_release) struct vmd_lock lock = VMD_LOCK_INIT;
	VMD_PROGRESS_SCOPE(ctx->progress);
	/* Held so that no resize or remove runs under the copy. */
	int rc = open_existing_locked(ctx, instance, disk, &ref, &ops, &lock,
	                              err);

	if (rc == 0)
		rc = vmd_backend_require(ops, (const void *)ops->snapshot_extract,
		                         "snapshot_extract", err);
	if (rc == 0)
		rc = ops->snapshot_extract(ctx, &ref, dst_path, dst_format, err);
	if (rc < 0)
		vmd_error_prefix(err, "extract");
	return rc;
}

int vmd_disk_libvirt_xml(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, const struct vmd_xml_opts *opts,
                         char **xml, struct vmd_error *err)
{
	DISK_REF ref = DISK_REF_INIT;
	struct vmd_xml_source src;
	const struct vmd_backend_ops *ops;
	struct vmd_xml_opts o = *opts;
	int rc;

	*xml = NULL;
	memset(&src, 0, sizeof(src)); /* backends fill what they know */
	rc = open_existing(ctx, instance, disk, &ref, &ops, err);

	if (!o.dev)
		o.dev = "vda";
	if (rc == 0)
		rc = vmd_backend_require(ops, (const void *)ops->xml_source,
		                         "xml_source", err);
	if (rc == 0)
		rc = ops->xml_source(ctx, &ref, &src, err);
	if (rc == 0)
		rc = vmd_xml_render_disk(&src, &o, xml, err);
	if (rc < 0)
		vmd_error_prefix(err, "xml");
	return rc;
}

/* The optional per-disk operations share this: lock, resolve, check, call. */
enum disk_op { OP_SNAP_CREATE, OP_SNAP_REMOVE, OP_SNAP_ROLLBACK, OP_FLATTEN,
	       OP_DIRECT_SNAPSHOT };

static int disk_op_run(struct vmd_ctx *ctx, const char *instance,
                       const char *disk, enum disk_op op, const char *name,
                       char *url, size_t url_size, struct vmd_error *err)
{
	static const char *const op_names[] = {
		"snapshot create", "snapshot remove", "snapshot rollback",
		"flatten", "direct snapshot"};
	DISK_REF ref = DISK_REF_INIT;
	const struct vmd_backend_ops *ops;
	_cleanup_(vmd_lock_release) struct vmd_lock lock = VMD_LOCK_INIT;
	const void *fn = NULL;
	int rc = 0;
	VMD_PROGRESS_SCOPE(ctx->progress);

	if (url && url_size)
		memset(url, 0, url_size);
	if (op != OP_FLATTEN && (!name || !vmd_valid_disk_name(name)))
		rc = vmd_error_set(err, VMD_E_INVAL, "bad snapshot name",
		                   "snapshot name must match "
		                   "[A-Za-z0-9][A-Za-z0-9._-]{0,63}");
	if (rc == 0)
		rc = open_existing_locked(ctx, instance, disk, &ref, &ops,
		                          &lock, err);
	if (rc == 0) {
		switch (op) {
		case OP_SNAP_CREATE: fn = (const void *)ops->snap_create; break;
		case OP_SNAP_REMOVE: fn = (const void *)ops->snap_remove; break;
		case OP_SNAP_ROLLBACK:
			fn = (const void *)ops->snap_rollback;
			break;
		case OP_FLATTEN: fn = (const void *)ops->flatten; break;
		case OP_DIRECT_SNAPSHOT:
			fn = (const void *)ops->direct_snapshot;
			break;
		}
		rc = vmd_backend_require(ops, fn, op_names[op], err);
	}
	if (rc == 0) {
		switch (op) {
		case OP_SNAP_CREATE:
			rc = ops->snap_create(ctx, &ref, name, err);
			break;
		case OP_SNAP_REMOVE:
			rc = ops->snap_remove(ctx, &ref, name, err);
			break;
		case OP_SNAP_ROLLBACK:
			rc = ops->snap_rollback(ctx, &ref, name, err);
			break;
		case OP_FLATTEN: rc = ops->flatten(ctx, &ref, err); break;
		case OP_DIRECT_SNAPSHOT:
			rc = ops->direct_snapshot(ctx, &ref, name, url, url_size,
			                          err);
			break;
		}
	}
	if (rc < 0)
		vmd_error_prefix(err, op_names[op]);
	return rc;
}

int vmd_disk_snap_create(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, const char *snap,
                         struct vmd_error *err)
{
	return disk_op_run(ctx, instance, disk, OP_SNAP_CREATE, snap, NULL, 0,
	                   err);
}

int vmd_disk_snap_remove(struct vmd_ctx *ctx, const char *instance,
                         const char *disk, const char *snap,
                         struct vmd_error *err)
{
	return disk_op_run(ctx, instance, disk, OP_SNAP_REMOVE, snap, NULL, 0,
	                   err);
}

int vmd_disk_snap_rollback(struct vmd_ctx *ctx, const char *instance,
                           const char *disk, const char *snap,
                           struct vmd_error *err)
{
	return disk_op_run(ctx, instance, disk, OP_SNAP_ROLLBACK, snap, NULL, 0,
	                   err);
}

int vmd_disk_flatten(struct vmd_ctx *ctx, const char *instance,
                     const char *disk, struct vmd_error *err)
{
	return disk_op_run(ctx, instance, disk, OP_FLATTEN, NULL, NULL, 0, err);
}

int vmd_disk_direct_snapshot(struct vmd_ctx *ctx, const char *instance,
                             const char *disk, const char *name, char *url,
                             size_t url_size, struct vmd_error *err)
{
	return disk_op_run(ctx, instance, disk, OP_DIRECT_SNAPSHOT, name, url,
	                   url_size, err);
}
