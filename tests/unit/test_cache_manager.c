/*
 * Tests of the cache manager (lib/cache_manager.c): a base that an
 * instance record names is never removed (disks of each file backend),
 * the disks' own bytes never pin anything and are never parsed, unused
 * ones go once old enough, --dry-run changes nothing, and a base whose
 * lock a create holds is left alone.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "cache.h"
#include "helpers.h"
#include "internal.h"
#include <vmdisk/vmdisk.h>

#define INST_A "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define INST_B "0b6b3a52-7a4e-4f7b-8f5e-2d2b1b0a9c11"
#define INST_C "11111111-2222-4333-8444-555555555555"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *img[3];
	struct vmd_cache_entry e[3];
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "cachemgr");
	struct vmd_error err = VMD_ERROR_INIT;

	f->cfg.remove_unused_original_minimum_age_seconds = 0;
	f->cfg.remove_unused_resized_minimum_age_seconds = 0;
	th_ctx_renew(&f->ctx, &f->cfg);
	for (int i = 0; i < 3; i++) {
		char name[16];

		snprintf(name, sizeof(name), "img%d.raw", i);
		f->img[i] = th_fixture_path(&f->th, name);
		th_write_pattern(f->img[i], 1u << 20, (uint32_t)i + 1);
		assert_int_equal(vmd_cache_fetch(f->ctx, f->img[i], &f->e[i], &err),
		                 0);
	}
	*state = f;
	return 0;
}

static void create(struct fixture *f, const char *inst, int img,
                   enum vmd_backend_kind backend)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.image = f->img[img], .backend = backend};

	if (vmd_disk_create(f->ctx, inst, "disk", &o, NULL, &err) != 0)
		fail_msg("create: %s (%s)", err.msg, err.detail);
}

static enum vmd_prune_action action_of(struct vmd_prune_item *items, size_t n,
                                       const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(items[i].id, id) == 0)
			return items[i].action;
	fail_msg("%s not in the prune report", id);
	return VMD_PRUNE_CANDIDATE;
}

static void prune(struct fixture *f, bool dry, struct vmd_prune_item **items,
                  size_t *n)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (vmd_cache_prune(f->ctx, dry, items, n, &err) != 0)
		fail_msg("prune: %s (%s)", err.msg, err.detail);
}

static void test_in_use_bases_are_kept(void **state)
{
	struct fixture *f = *state;
	struct vmd_prune_item *items;
	size_t n;

	create(f, INST_A, 0, VMD_BACKEND_QCOW2);
	create(f, INST_B, 1, VMD_BACKEND_FLAT);
	prune(f, true, &items, &n);
	assert_int_equal(n, 3);
	assert_int_equal(action_of(items, n, f->e[0].id), VMD_PRUNE_KEPT_IN_USE);
	assert_int_equal(action_of(items, n, f->e[1].id), VMD_PRUNE_KEPT_IN_USE);
	assert_int_equal(action_of(items, n, f->e[2].id), VMD_PRUNE_WOULD_REMOVE);
	free(items);
	/* --dry-run changed nothing. */
	for (int i = 0; i < 3; i++)
		assert_true(th_exists(f->e[i].path));
	prune(f, false, &items, &n);
	assert_int_equal(action_of(items, n, f->e[2].id), VMD_PRUNE_REMOVED);
	free(items);
	assert_true(th_exists(f->e[0].path));
	assert_true(th_exists(f->e[1].path));
	assert_false(th_exists(f->e[2].path));
	/* The next fetch of a pruned image starts afresh. */
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry again;

	assert_int_equal(vmd_cache_fetch(f->ctx, f->img[2], &again, &err), 0);
	assert_true(again.fetched);
	/* Once its disk is gone, a base is unused. */
	assert_int_equal(vmd_disk_remove(f->ctx, INST_A, "disk", &err), 0);
	prune(f, false, &items, &n);
	assert_int_equal(action_of(items, n, f->e[0].id), VMD_PRUNE_REMOVED);
	assert_int_equal(action_of(items, n, f->e[1].id), VMD_PRUNE_KEPT_IN_USE);
	free(items);
}

/* Copy the whole file src over the start of dst (a guest writing its
 * disk). */
static void overwrite_with(const char *dst, const char *src)
{
	char *text = NULL;
	int fd = open(src, O_RDONLY);
	struct stat st;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	text = malloc((size_t)st.st_size);
	assert_int_equal(read(fd, text, (size_t)st.st_size), st.st_size);
	close(fd);
	th_pwrite_at(dst, text, (size_t)st.st_size, 0);
	free(text);
}

/*
 * Issue 14 defect 2: which base a disk uses comes from the instance
 * record, never from the disk's bytes. A guest that writes a qcow2 header
 * naming a cache entry as its backing file into its flat disk does not pin
 * that entry, and neither does a qcow2 file another tool left in an
 * instance directory; the base the record names is kept.
 */
static void test_disk_bytes_never_pin(void **state)
{
	struct fixture *f = *state;
	struct vmd_prune_item *items;
	size_t n;
	char *idir = th_path(f->cfg.instances_path, INST_B);
	char *flat = th_path(idir, "disk");
	char *forged = th_path(f->dir, "forged.qcow2");
	char *foreign = th_path(idir, "disk.other");
	const char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b",
	                      f->e[2].path, "-F", "raw", forged, NULL};
	const char *argv2[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-b",
	                       f->e[0].path, "-F", "raw", foreign, NULL};

	th_require_qemu_img();
	create(f, INST_B, 1, VMD_BACKEND_FLAT);
	assert_int_equal(th_run(argv, NULL, NULL, NULL), 0);
	overwrite_with(flat, forged);
	assert_int_equal(th_run(argv2, NULL, NULL, NULL), 0);
	prune(f, false, &items, &n);
	assert_int_equal(action_of(items, n, f->e[1].id), VMD_PRUNE_KEPT_IN_USE);
	assert_int_equal(action_of(items, n, f->e[2].id), VMD_PRUNE_REMOVED);
	assert_int_equal(action_of(items, n, f->e[0].id), VMD_PRUNE_REMOVED);
	free(items);
	assert_true(th_exists(f->e[1].path));
	assert_false(th_exists(f->e[2].path));
	free(idir);
	free(flat);
	free(forged);
	free(foreign);
}

/* The defect-1 header (backing_file_offset + size wraps) as guest bytes
 * of a flat disk: the cache manager never parses it (on 9d6ae65 the
 * ASan build stopped here with a stack-buffer-underflow). */
static void test_hostile_header_in_disk_not_parsed(void **state)
{
	struct fixture *f = *state;
	struct vmd_prune_item *items;
	struct vmd_cache_item *list;
	struct vmd_error err = VMD_ERROR_INIT;
	size_t n;
	char *idir = th_path(f->cfg.instances_path, INST_A);
	char *flat = th_path(idir, "disk");
	unsigned char h[104] = {'Q', 'F', 'I', 0xfb, 0, 0, 0, 3};

	create(f, INST_A, 0, VMD_BACKEND_FLAT);
	/* backing_file_offset 0xFFFFFFFFFFFFFF00, backing_file_size 512 */
	memset(h + 8, 0xff, 7);
	h[18] = 0x02;
	h[23] = 16;   /* cluster_bits */
	h[29] = 0x10; /* size 1 MiB */
	h[99] = 4;    /* refcount_order */
	h[103] = 104; /* header_length */
	th_pwrite_at(flat, h, sizeof(h), 0);
	assert_int_equal(vmd_cache_list(f->ctx, &list, &n, &err), 0);
	free(list);
	prune(f, false, &items, &n);
	assert_int_equal(action_of(items, n, f->e[0].id), VMD_PRUNE_KEPT_IN_USE);
	free(items);
	free(idir);
	free(flat);
}

/* A record that cannot be read stops the prune: its base is never taken
 * as unused (on 9d6ae65 it was removed). */
static void test_damaged_record_stops_prune(void **state)
{
	struct fixture *f = *state;
	struct vmd_prune_item *items = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	size_t n = 0;
	char *rec = th_path(f->cfg.instances_path, INST_A "/.vmdisk.json");

	create(f, INST_A, 0, VMD_BACKEND_FLAT);
	th_write_text(rec, "{\"disks\": {\"disk\": {\"base\": 1}");
	assert_errc(vmd_cache_prune(f->ctx, false, &items, &n, &err), &err,
	            VMD_E_CORRUPT);
	assert_null(items);
	assert_true(th_exists(f->e[0].path));
	assert_true(th_exists(f->e[2].path));
	free(rec);
}

static void test_ages_and_switch(void **state)
{
	struct fixture *f = *state;
	struct vmd_prune_item *items;
	size_t n;
	char *resized;

	assert_true(asprintf(&resized, "%s_10G", f->e[0].path) > 0);
	th_write_text(resized, "derived");
	f->cfg.remove_unused_original_minimum_age_seconds = 3600;
	f->cfg.remove_unused_resized_minimum_age_seconds = 0;
	th_ctx_renew(&f->ctx, &f->cfg);
	prune(f, false, &items, &n);
	assert_int_equal(n, 4);
	assert_int_equal(action_of(items, n, f->e[1].id), VMD_PRUNE_KEPT_YOUNG);
	assert_int_equal(action_of(items, n, vmd_basename(resized)),
	                 VMD_PRUNE_REMOVED);
	free(items);
	assert_false(th_exists(resized));
	f->cfg.remove_unused_original_minimum_age_seconds = 0;
	f->cfg.remove_unused_base_images = false;
	th_ctx_renew(&f->ctx, &f->cfg);
	prune(f, false, &items, &n);
	assert_int_equal(action_of(items, n, f->e[1].id), VMD_PRUNE_KEPT_DISABLED);
	free(items);
	assert_true(th_exists(f->e[1].path));
	free(resized);
}

/* A create in progress holds the base's lock shared: prune keeps it. */
static void test_locked_base_kept(void **state)
{
	struct fixture *f = *state;
	struct vmd_prune_item *items;
	size_t n;
	struct vmd_lock l = VMD_LOCK_INIT;
	struct vmd_error err = VMD_ERROR_INIT;
	char *locks = th_path(f->cfg.instances_path, "locks");
	char name[VMD_LOCK_NAME_MAX];

	vmd_base_lock_name(f->e[1].id, name);
	int ldfd = open(locks, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(ldfd >= 0);
	assert_int_equal(vmd_lock_acquire(&l, ldfd, name, VMD_LOCK_SHARED, 1,
	                                  &err),
	                 0);
	close(ldfd);
	prune(f, false, &items, &n);
	assert_int_equal(action_of(items, n, f->e[1].id), VMD_PRUNE_KEPT_IN_USE);
	free(items);
	assert_true(th_exists(f->e[1].path));
	vmd_lock_release(&l);
	free(locks);
}

static void test_list(void **state)
{
	struct fixture *f = *state;
	struct vmd_cache_item *items;
	struct vmd_error err = VMD_ERROR_INIT;
	size_t n;
	int found = 0;

	create(f, INST_A, 0, VMD_BACKEND_QCOW2);
	create(f, INST_B, 0, VMD_BACKEND_FLAT);
	create(f, INST_C, 1, VMD_BACKEND_QCOW2);
	assert_int_equal(vmd_cache_list(f->ctx, &items, &n, &err), 0);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		/* Each entry counts its own users only (the counts come from
		 * one sorted list of every record's base). */
		if (strcmp(items[i].id, f->e[1].id) == 0)
			assert_int_equal(items[i].users, 1);
		else if (strcmp(items[i].id, f->e[0].id) != 0)
			assert_int_equal(items[i].users, 0);
		if (strcmp(items[i].id, f->e[0].id) != 0)
			continue;
		found = 1;
		/* The records of A and B (the disks' bytes are not read). */
		assert_int_equal(items[i].users, 2);
		assert_int_equal(items[i].size, 1u << 20);
		assert_string_equal(items[i].hash_algo, "sha256");
		assert_int_equal(strlen(items[i].hash), 64);
	}
	assert_true(found);
	free(items);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_in_use_bases_are_kept),
		T(test_disk_bytes_never_pin),
		T(test_hostile_header_in_disk_not_parsed),
		T(test_damaged_record_stops_prune),
		T(test_ages_and_switch),
		T(test_locked_base_kept),
		T(test_list),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("cache_manager", tests, NULL, NULL);
}
