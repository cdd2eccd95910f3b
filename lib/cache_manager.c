/*
 * The cache manager: which bases are in use, and removing those that are
 * not (Nova's image cache manager, without its check-then-act race).
 *
 * A base is in use when a disk under instances_path refers to it: the
 * per-instance record of a disk we made (.vmdisk.json, "base"), or the
 * backing file of any qcow2 file in an instance directory (disks other
 * tools made count too). Pruning takes each candidate's lock exclusively
 * (a create holds it shared while it makes a disk from the base, so a base
 * being used right now is never a candidate), then scans the instances
 * again under those locks, and only then removes what is still unused and
 * old enough. A create that comes after finds no entry and fetches again.
 *
 * Entries named "<id>_<suffix>" are resized or derived bases (Nova's
 * "<id>_<size>"); they age by remove_unused_resized_minimum_age_seconds,
 * originals by remove_unused_original_minimum_age_seconds.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bytes.h"
#include "cache.h"
#include "fsutil.h"
#include "qcow2.h"
#include "record.h"

struct users {
	char (*ids)[VMD_CACHE_ID_MAX];
	size_t n, cap;
};

static void users_free(struct users *u)
{
	free(u->ids);
	u->ids = NULL;
	u->n = u->cap = 0;
}

static void users_add(struct users *u, const char *id)
{
	if (strlen(id) >= VMD_CACHE_ID_MAX || !vmd_valid_file_token(id))
		return;
	if (u->n == u->cap) {
		size_t cap = u->cap ? 2 * u->cap : 64;
		void *p = realloc(u->ids, cap * sizeof(*u->ids));

		if (!p)
			return; /* counted as fewer users: see users_failed */
		u->ids = p;
		u->cap = cap;
	}
	snprintf(u->ids[u->n++], VMD_CACHE_ID_MAX, "%s", id);
}

static unsigned users_of(const struct users *u, const char *id)
{
	unsigned n = 0;

	for (size_t i = 0; i < u->n; i++)
		n += strcmp(u->ids[i], id) == 0;
	return n;
}

/* The entry a qcow2 file's backing name points at, if in the cache. */
static void qcow2_user(const struct vmd_ctx *ctx, int dirfd, const char *name,
                       struct users *u)
{
	struct vmd_qcow2_header h;
	size_t clen = strlen(ctx->cache_dir);
	unsigned char magic[4];
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	                                     O_NONBLOCK);

	if (fd < 0)
		return;
	if (pread(fd, magic, 4, 0) == 4 && vmd_be32(magic) == VMD_QCOW2_MAGIC &&
	    vmd_qcow2_read_header(fd, &h, NULL) == 0 &&
	    strncmp(h.backing_file, ctx->cache_dir, clen) == 0 &&
	    h.backing_file[clen] == '/')
		users_add(u, h.backing_file + clen + 1);
	close(fd);
}

static void record_users(const char *instance_dir, struct users *u)
{
	char path[PATH_MAX];
	struct json_object *doc, *disks;

	if (snprintf(path, sizeof(path), "%s/%s", instance_dir,
	             VMD_RECORD_NAME) >= (int)sizeof(path))
		return;
	doc = json_object_from_file(path);
	if (!doc)
		return;
	if (json_object_object_get_ex(doc, "disks", &disks) &&
	    json_object_is_type(disks, json_type_object)) {
		json_object_object_foreach(disks, name, entry)
		{
			struct json_object *base;

			(void)name;
			if (json_object_object_get_ex(entry, "base", &base) &&
			    json_object_is_type(base, json_type_string) &&
			    json_object_get_string_len(base) > 0)
				users_add(u, json_object_get_string(base));
		}
	}
	json_object_put(doc);
}

/* Every reference to a cache entry from the instances' disks. */
static int scan_users(const struct vmd_ctx *ctx, struct users *u,
                      struct vmd_error *err)
{
	DIR *top = opendir(ctx->cfg.instances_path);
	struct dirent *de;

	if (!top) {
		if (errno == ENOENT)
			return 0;
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: scan instances failed",
		                           "opendir %s",
		                           ctx->cfg.instances_path);
	}
	while ((de = readdir(top)) != NULL) {
		char idir[PATH_MAX];
		DIR *d;
		struct dirent *f;

		if (!vmd_valid_uuid(de->d_name))
			continue;
		if (snprintf(idir, sizeof(idir), "%s/%s", ctx->cfg.instances_path,
		             de->d_name) >= (int)sizeof(idir))
			continue;
		record_users(idir, u);
		d = opendir(idir);
		if (!d)
			continue;
		while ((f = readdir(d)) != NULL)
			if (f->d_name[0] != '.' &&
			    (f->d_type == DT_REG || f->d_type == DT_UNKNOWN))
				qcow2_user(ctx, dirfd(d), f->d_name, u);
		closedir(d);
	}
	closedir(top);
	return 0;
}

/* Blank-disk templates (lib/template.c) age like derived bases. */
static bool is_template_name(const char *name)
{
	return strncmp(name, "ephemeral_", 10) == 0 ||
	       strncmp(name, "swap_", 5) == 0;
}

static bool is_entry_name(const char *name)
{
	size_t n = strspn(name, "0123456789abcdef");

	if (strlen(name) >= VMD_CACHE_ID_MAX || !vmd_valid_file_token(name))
		return false;
	if (is_template_name(name))
		return true;
	return n == 40 && (name[40] == '\0' ||
	                   (name[40] == '_' && vmd_valid_file_token(name + 41)));
}

static void item_from(const struct vmd_ctx *ctx, const char *name,
                      const struct stat *st, struct vmd_cache_item *it)
{
	memset(it, 0, sizeof(*it));
	memcpy(it->id, name, strlen(name) + 1); /* is_entry_name bounds it */
	it->size = (uint64_t)st->st_size;
	it->allocated = (uint64_t)st->st_blocks * 512;
	it->mtime = st->st_mtime;
	it->resized = is_template_name(name) || name[40] == '_';
	vmd_cache_read_info(ctx, name, it->hash_algo, sizeof(it->hash_algo),
	                    it->hash, sizeof(it->hash));
}

static int list_entries(const struct vmd_ctx *ctx, struct vmd_cache_item **out,
                        size_t *n_out, struct vmd_error *err)
{
	DIR *d = opendir(ctx->cache_dir);
	struct dirent *de;
	struct vmd_cache_item *items = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	*n_out = 0;
	if (!d) {
		if (errno == ENOENT)
			return 0;
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: list failed", "opendir %s",
		                           ctx->cache_dir);
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (!is_entry_name(de->d_name) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			void *p = realloc(items, ncap * sizeof(*items));

			if (!p) {
				free(items);
				closedir(d);
				return vmd_error_set(err, VMD_E_NOMEM,
				                     "out of memory", "cache list");
			}
			items = p;
			cap = ncap;
		}
		item_from(ctx, de->d_name, &st, &items[n++]);
	}
	closedir(d);
	*out = items;
	*n_out = n;
	return 0;
}

int vmd_cache_list(struct vmd_ctx *ctx, struct vmd_cache_item **items,
                   size_t *n, struct vmd_error *err)
{
	struct users u = {0};
	int rc = list_entries(ctx, items, n, err);

	if (rc == 0)
		rc = scan_users(ctx, &u, err);
	for (size_t i = 0; rc == 0 && i < *n; i++)
		(*items)[i].users = users_of(&u, (*items)[i].id);
	users_free(&u);
	if (rc < 0) {
		free(*items);
		*items = NULL;
		*n = 0;
	}
	return rc;
}

static void remove_entry(struct vmd_ctx *ctx, const char *id)
{
	char path[PATH_MAX];
	const char *suffixes[] = {"json", "failed"};

	if (snprintf(path, sizeof(path), "%s/%s", ctx->cache_dir, id) <
	            (int)sizeof(path) &&
	    unlink(path) < 0 && errno != ENOENT)
		vmd_log_warning("cache: could not remove %s: %s", id,
		                strerror(errno));
	for (size_t i = 0; i < 2; i++)
		if (snprintf(path, sizeof(path), "%s/.%s.%s", ctx->cache_dir, id,
		             suffixes[i]) < (int)sizeof(path))
			unlink(path);
}

int vmd_cache_prune(struct vmd_ctx *ctx, bool dry_run,
                    struct vmd_prune_item **out, size_t *n_out,
                    struct vmd_error *err)
{
	struct vmd_cache_item *items = NULL;
	struct vmd_lock *locks = NULL;
	struct vmd_prune_item *res = NULL;
	struct users u = {0};
	time_t now = time(NULL);
	size_t n = 0;
	int rc = list_entries(ctx, &items, &n, err);

	*out = NULL;
	*n_out = 0;
	if (rc < 0)
		return rc;
	res = calloc(n ? n : 1, sizeof(*res));
	locks = calloc(n ? n : 1, sizeof(*locks));
	if (!res || !locks) {
		free(items);
		free(res);
		free(locks);
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "prune");
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t min_age = items[i].resized
			? ctx->cfg.remove_unused_resized_minimum_age_seconds
			: ctx->cfg.remove_unused_original_minimum_age_seconds;
		char lockname[VMD_LOCK_NAME_MAX];

		locks[i].fd = -1;
		snprintf(res[i].id, sizeof(res[i].id), "%s", items[i].id);
		res[i].age = now > items[i].mtime ? (uint64_t)(now - items[i].mtime)
		                                  : 0;
		res[i].size = items[i].size;
		res[i].action = VMD_PRUNE_CANDIDATE;
		if (res[i].age < min_age) {
			res[i].action = VMD_PRUNE_KEPT_YOUNG;
			continue;
		}
		/* The lock a create holds shared while it uses the base. */
		vmd_base_lock_name(items[i].id, lockname);
		if (vmd_lock_try(&locks[i], ctx->lock_dir, lockname,
		                 VMD_LOCK_EXCLUSIVE, NULL) < 0)
			res[i].action = VMD_PRUNE_KEPT_IN_USE;
	}
	/* Under the locks: who refers to what, now. */
	rc = scan_users(ctx, &u, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		res[i].users = users_of(&u, items[i].id);
		if (res[i].users > 0)
			res[i].action = VMD_PRUNE_KEPT_IN_USE;
		if (res[i].action != VMD_PRUNE_CANDIDATE)
			continue;
		if (!ctx->cfg.remove_unused_base_images)
			res[i].action = VMD_PRUNE_KEPT_DISABLED;
		else if (dry_run)
			res[i].action = VMD_PRUNE_WOULD_REMOVE;
		else {
			remove_entry(ctx, items[i].id);
			res[i].action = VMD_PRUNE_REMOVED;
			vmd_log_info("cache: removed unused base %s (unused, "
			             "%llu s old)",
			             items[i].id,
			             (unsigned long long)res[i].age);
		}
	}
	for (size_t i = 0; i < n; i++)
		vmd_lock_release(&locks[i]);
	if (rc == 0)
		vmd_fsync_dir(ctx->cache_dir, NULL);
	users_free(&u);
	free(items);
	free(locks);
	if (rc < 0) {
		free(res);
		return rc;
	}
	*out = res;
	*n_out = n;
	return 0;
}

const char *vmd_prune_action_name(enum vmd_prune_action a)
{
	switch (a) {
	case VMD_PRUNE_CANDIDATE: return "candidate";
	case VMD_PRUNE_REMOVED: return "removed";
	case VMD_PRUNE_WOULD_REMOVE: return "would-remove";
	case VMD_PRUNE_KEPT_IN_USE: return "in-use";
	case VMD_PRUNE_KEPT_YOUNG: return "too-young";
	case VMD_PRUNE_KEPT_DISABLED: return "removal-disabled";
	}
	return "?";
}
