/*
 * The cache manager: which bases are in use, and removing those that are
 * not (Nova's image cache manager, without its check-then-act race).
 *
 * A base is in use when the per-instance record of a disk refers to it
 * (.vmdisk.json, "base": written by vmdisk when it made the disk, next to
 * the disk's pinned backend and format). Only records are read: never the
 * disks, whose bytes the guest writes (a flat disk holding a qcow2 header
 * that names a base as its backing file must neither pin that base nor be
 * parsed at all). A record that cannot be read stops the prune: a base is
 * never taken as unused because its user's record was unreadable.
 * Everything under instances_path is reached through lib/beneath.c. Pruning takes each candidate's lock exclusively
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
#include "jsonc_lazy.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "beneath.h"
#include "cache.h"
#include "faultpoint.h"
#include "fsutil.h"
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

static int id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Sorted once after the scan: each entry's count is then a binary
 * search, so a listing costs (entries + disks) log disks, not
 * entries x disks (10,000 disks on 1,000 bases: 10M comparisons). */
static void users_sort(struct users *u)
{
	if (u->n > 1)
		qsort(u->ids, u->n, sizeof(*u->ids), id_cmp);
}

static unsigned users_of(const struct users *u, const char *id)
{
	size_t lo = 0, hi = u->n;
	unsigned n = 0;

	while (lo < hi) { /* the first id not below `id` */
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(u->ids[mid], id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < u->n && strcmp(u->ids[lo], id) == 0; lo++)
		n++;
	return n;
}

static void record_user(const char *disk, const struct vmd_disk_record *rec,
                        void *opaque)
{
	(void)disk;
	if (rec->base_id[0])
		users_add(opaque, rec->base_id);
}

/* Every reference to a cache entry from the instances' records. */
static int scan_users(struct vmd_ctx *ctx, struct users *u,
                      struct vmd_error *err)
{
	_cleanup_(closedirp) DIR *top = NULL;
	struct dirent *de;
	int root, rc = vmd_beneath_root(ctx, false, &root, err);

	if (rc == VMD_E_NOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	top = vmd_bopendir(root, ".");
	if (!top)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "cache: scan instances failed",
		                         "opendir %s", ctx->cfg.instances_path);
	while (rc == 0 && (de = readdir(top)) != NULL) {
		_cleanup_(closep) int ifd = -1;

		if (!vmd_valid_uuid(de->d_name))
			continue;
		ifd = vmd_bopen(root, de->d_name, O_RDONLY | O_DIRECTORY, 0);
		if (ifd < 0) {
			/* Not an instance directory vmdisk made (a link, a
			 * file): no record of ours is reachable there. */
			vmd_log_warning("cache: %s is not an instance directory "
			                "(%s): skipped",
			                de->d_name, strerror(errno));
			continue;
		}
		rc = vmd_record_foreach(ifd, record_user, u, err);
	}
	if (rc < 0)
		vmd_error_prefix(err, "cache: read instance record");
	users_sort(u);
	return rc;
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

static void item_from(int cache_fd, const char *name, const struct stat *st,
                      struct vmd_cache_item *it)
{
	memset(it, 0, sizeof(*it));
	memcpy(it->id, name, strlen(name) + 1); /* is_entry_name bounds it */
	it->size = (uint64_t)st->st_size;
	it->allocated = (uint64_t)st->st_blocks * 512;
	it->mtime = st->st_mtime;
	it->resized = is_template_name(name) || name[40] == '_';
	vmd_cache_read_info(cache_fd, name, it->hash_algo, sizeof(it->hash_algo),
	                    it->hash, sizeof(it->hash));
}

static int list_entries(struct vmd_ctx *ctx, int cache_fd,
                        struct vmd_cache_item **out, size_t *n_out,
                        struct vmd_error *err)
{
	_cleanup_(closedirp) DIR *d = NULL;
	struct dirent *de;
	_cleanup_(freep) struct vmd_cache_item *items = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	*n_out = 0;
	if (cache_fd < 0)
		return 0; /* no cache directory yet */
	d = vmd_bopendir(cache_fd, ".");
	if (!d)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "cache: list failed", "opendir %s",
		                         ctx->cache_dir);
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (!is_entry_name(de->d_name) ||
		    vmd_bstat(cache_fd, de->d_name, &st) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 16;
			void *p = realloc(items, ncap * sizeof(*items));

			if (!p)
				return vmd_error_set(err, VMD_E_NOMEM,
				                     "out of memory", "cache list");
			items = p;
			cap = ncap;
		}
		item_from(cache_fd, de->d_name, &st, &items[n++]);
	}
	*out = TAKE_PTR(items);
	*n_out = n;
	return 0;
}

int vmd_cache_list(struct vmd_ctx *ctx, struct vmd_cache_item **items,
                   size_t *n, struct vmd_error *err)
{
	struct users u = {0};
	_cleanup_(closep) int cache_fd = -1;
	int rc = vmd_beneath_cache_dir(ctx, false, 0, &cache_fd, err);

	*items = NULL;
	*n = 0;
	if (rc == VMD_E_NOTFOUND)
		rc = 0;
	if (rc == 0)
		rc = list_entries(ctx, cache_fd, items, n, err);
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

static void remove_entry(int cache_fd, const char *id)
{
	char name[VMD_CACHE_ID_MAX + 16];
	const char *suffixes[] = {"json", "failed"};

	/* The side records first, the entry last: a prune killed in between
	 * leaves an entry (complete, listed, removed by the next prune), never
	 * a side record no listing finds again. A kill before any of the
	 * three unlinks leaves the cache consistent
	 * (tests/suite/reliability/parts/10-crash.sh). */
	for (size_t i = 0; i < 2; i++)
		if (snprintf(name, sizeof(name), ".%s.%s", id, suffixes[i]) <
		    (int)sizeof(name) &&
		    vmd_faultpoint("prune.unlink", NULL) == 0)
			vmd_bunlink(cache_fd, name, 0);
	if (vmd_faultpoint("prune.unlink", NULL) < 0)
		return;
	if (vmd_bunlink(cache_fd, id, 0) < 0 && errno != ENOENT)
		vmd_log_warning("cache: could not remove %s: %s", id,
		                strerror(errno));
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
	_cleanup_(closep) int cache_fd = -1;
	int rc = vmd_beneath_cache_dir(ctx, false, 0, &cache_fd, err);

	*out = NULL;
	*n_out = 0;
	if (rc == VMD_E_NOTFOUND)
		rc = 0;
	if (rc == 0)
		rc = list_entries(ctx, cache_fd, &items, &n, err);
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
		if (vmd_ctx_lock_try(ctx, &locks[i], lockname,
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
			remove_entry(cache_fd, items[i].id);
			res[i].action = VMD_PRUNE_REMOVED;
			vmd_log_info("cache: removed unused base %s (unused, "
			             "%llu s old)",
			             items[i].id,
			             (unsigned long long)res[i].age);
		}
	}
	for (size_t i = 0; i < n; i++)
		vmd_lock_release(&locks[i]);
	if (rc == 0 && cache_fd >= 0 && vmd_fsync(cache_fd) < 0)
		vmd_log_warning("cache: could not sync the cache directory: %s",
		                strerror(errno));
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
