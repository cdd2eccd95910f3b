/*
 * Planted symbolic links under instances_path (issue 14 defect 3), through
 * the public API only: whoever can write instances_path or an instance
 * directory replaces <INSTANCE>, the cache directory (_base), locks, a disk
 * or a cache entry by a link to a decoy directory or file. Every call that
 * would go through it fails with an error that says so, and nothing in the
 * decoy is written, changed or removed. Uses no internal header, so the
 * same file builds against the code from before lib/beneath.c.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"
#include <vmdisk/vmdisk.h>

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *decoy;     /* a directory outside instances_path */
	char *decoy_file;
	char *image;
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "paths");

	f->decoy = th_fixture_path(&f->th, "decoy");
	f->decoy_file = th_fixture_path(&f->th, "decoy.file");
	f->image = th_fixture_path(&f->th, "image.raw");
	assert_int_equal(mkdir(f->instances, 0755), 0);
	assert_int_equal(mkdir(f->decoy, 0755), 0);
	th_write_text(f->decoy_file, "host data, not a disk\n");
	th_write_pattern(f->image, 1u << 20, 7);
	f->cfg.lock_timeout_seconds = 5;
	f->cfg.remove_unused_original_minimum_age_seconds = 0;
	th_ctx_renew(&f->ctx, &f->cfg);
	*state = f;
	return 0;
}


/* <instances_path>/<name> becomes a link to target. */
static void plant(struct fixture *f, const char *name, const char *target)
{
	char *p = th_path(f->instances, name);

	assert_int_equal(symlink(target, p), 0);
	free(p);
}

/* The call failed, and its message says a link was refused. */
static void assert_refused(int rc, struct vmd_error *err)
{
	assert_errc(rc, err, VMD_E_REFUSED);
	if (!strstr(err->msg, "symbolic link"))
		fail_msg("unclear error: %s (%s)", err->msg, err->detail);
	vmd_error_clear(err);
}

/* Resize, extract (to out) and remove of INST/name: each refused as a
 * link, out never made. */
static void assert_changes_refused(struct fixture *f, const char *name,
                                   const char *out)
{
	struct vmd_error err = VMD_ERROR_INIT;

	assert_refused(vmd_disk_resize(f->ctx, INST, name, 2u << 20, &err),
	               &err);
	assert_refused(vmd_disk_snapshot_extract(f->ctx, INST, name, out,
	                                         VMD_FORMAT_RAW, &err),
	               &err);
	assert_refused(vmd_disk_remove(f->ctx, INST, name, &err), &err);
	assert_false(th_exists(out));
}

static void create_ok(struct fixture *f, const char *disk,
                      enum vmd_backend_kind kind)
{
	struct vmd_create_opts o = {.image = f->image, .backend = kind};

	th_create_ok(f->ctx, INST, disk, &o, NULL);
}

/* <INSTANCE> -> decoy: create writes nothing there, for each backend. */
static void test_instance_dir_link_create(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	static const enum vmd_backend_kind kinds[] = {
		VMD_BACKEND_FLAT, VMD_BACKEND_QCOW2, VMD_BACKEND_PLOOP};

	plant(f, INST, f->decoy);
	for (size_t i = 0; i < 3; i++) {
		struct vmd_create_opts o = {.image = f->image,
		                            .backend = kinds[i]};
		struct vmd_create_opts blank = {.size = 1u << 20,
		                                .backend = kinds[i]};

		assert_refused(vmd_disk_create(f->ctx, INST, "disk", &o, NULL,
		                               &err),
		               &err);
		assert_refused(vmd_disk_create(f->ctx, INST, "blank", &blank,
		                               NULL, &err),
		               &err);
	}
	assert_int_equal(th_count_entries(f->decoy), 0);
}

/* An instance whose directory was swapped for a link to a copy of it:
 * info, resize, remove and extract act on nothing in the copy. */
static void test_instance_dir_link_existing(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *idir = th_path(f->instances, INST);
	char *moved = th_path(f->decoy, INST);
	char *disk = th_path(moved, "disk");
	char *qdisk = th_path(moved, "qdisk");
	char *pdisk = th_path(moved, "pdisk");
	char *out = th_path(f->dir, "extract.raw");

	create_ok(f, "disk", VMD_BACKEND_FLAT);
	create_ok(f, "qdisk", VMD_BACKEND_QCOW2);
	create_ok(f, "pdisk", VMD_BACKEND_PLOOP);
	assert_int_equal(rename(idir, moved), 0);
	plant(f, INST, moved);
	for (int i = 0; i < 3; i++) {
		const char *name = i == 0 ? "disk" : i == 1 ? "qdisk" : "pdisk";

		assert_refused(vmd_disk_info(f->ctx, INST, name, &info, &err),
		               &err);
		assert_changes_refused(f, name, out);
	}
	assert_int_equal(th_file_size(disk), 1u << 20);
	assert_true(th_exists(qdisk));
	assert_true(th_exists(pdisk));
	assert_int_equal(th_count_entries(moved), 4); /* 3 disks + record */
	free(idir);
	free(moved);
	free(disk);
	free(qdisk);
	free(pdisk);
	free(out);
}

/* _base -> decoy: fetch, create and the cache manager put nothing there
 * and remove nothing from it. */
static void test_cache_dir_link(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry e;
	struct vmd_create_opts o = {.image = f->image,
	                            .backend = VMD_BACKEND_QCOW2};
	struct vmd_prune_item *items = NULL;
	struct vmd_cache_item *list = NULL;
	size_t n = 0;
	char *planted = th_path(f->decoy, "0123456789abcdef0123456789abcdef01234567");

	th_write_text(planted, "not an image of ours\n");
	plant(f, f->cfg.image_cache_subdirectory_name, f->decoy);
	assert_refused(vmd_cache_fetch(f->ctx, f->image, &e, &err), &err);
	assert_refused(vmd_disk_create(f->ctx, INST, "disk", &o, NULL, &err),
	               &err);
	assert_refused(vmd_cache_prune(f->ctx, false, &items, &n, &err), &err);
	free(items);
	assert_refused(vmd_cache_list(f->ctx, &list, &n, &err), &err);
	free(list);
	assert_true(th_exists(planted));
	assert_int_equal(th_count_entries(f->decoy), 1);
	free(planted);
}

/* locks -> decoy: no lock file is made there. */
static void test_lock_dir_link(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry e;
	struct vmd_create_opts o = {.size = 1u << 20,
	                            .backend = VMD_BACKEND_FLAT};

	plant(f, "locks", f->decoy);
	assert_refused(vmd_cache_fetch(f->ctx, f->image, &e, &err), &err);
	assert_refused(vmd_disk_create(f->ctx, INST, "disk", &o, NULL, &err),
	               &err);
	assert_int_equal(th_count_entries(f->decoy), 0);
}

/* A disk replaced by a link to a host file: nothing reads, grows or
 * removes the file. */
static void test_disk_name_link(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	char *disk = th_path(f->instances, INST "/disk");
	char *out = th_path(f->dir, "extract.raw");
	uint64_t before = th_file_size(f->decoy_file);

	create_ok(f, "disk", VMD_BACKEND_FLAT);
	assert_int_equal(unlink(disk), 0);
	assert_int_equal(symlink(f->decoy_file, disk), 0);
	assert_errc(vmd_disk_info(f->ctx, INST, "disk", &info, &err), &err,
	            VMD_E_CORRUPT);
	vmd_error_clear(&err);
	assert_changes_refused(f, "disk", out);
	assert_int_equal(th_file_size(f->decoy_file), before);
	/* A create under a linked name refuses too. */
	struct vmd_create_opts o = {.image = f->image,
	                            .backend = VMD_BACKEND_FLAT};
	char *other = th_path(f->instances, INST "/other");

	assert_int_equal(symlink(f->decoy_file, other), 0);
	assert_errc(vmd_disk_create(f->ctx, INST, "other", &o, NULL, &err),
	            &err, VMD_E_EXISTS);
	vmd_error_clear(&err);
	assert_int_equal(th_file_size(f->decoy_file), before);
	free(disk);
	free(out);
	free(other);
}

/* A cache entry replaced by a link to a host file: fetch does not use
 * it as the base, and create does not copy it into a disk. */
static void test_cache_entry_link(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry e;
	struct vmd_create_opts o = {.image = f->image,
	                            .backend = VMD_BACKEND_FLAT};

	assert_int_equal(vmd_cache_fetch(f->ctx, f->image, &e, &err), 0);
	assert_int_equal(unlink(e.path), 0);
	assert_int_equal(symlink(f->decoy_file, e.path), 0);
	assert_refused(vmd_cache_fetch(f->ctx, f->image, &e, &err), &err);
	assert_refused(vmd_disk_create(f->ctx, INST, "disk", &o, NULL, &err),
	               &err);
	assert_true(th_exists(f->decoy_file));
}

/* A qcow2 disk's base is read through the cache directory's descriptor,
 * not through the backing name the overlay records: with the cache
 * directory or the entry replaced by a link, extract refuses and copies
 * nothing of the decoy. */
static void test_extract_backing_link(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry e;
	char *out = th_path(f->dir, "extract.raw");
	char *cache = th_path(f->instances, f->cfg.image_cache_subdirectory_name);
	char *moved = th_path(f->dir, "moved-cache");
	char *decoy_entry;

	create_ok(f, "disk", VMD_BACKEND_QCOW2);
	assert_int_equal(vmd_cache_fetch(f->ctx, f->image, &e, &err), 0);
	/* The entry itself becomes a link to a host file. */
	assert_int_equal(rename(e.path, moved), 0);
	assert_int_equal(symlink(f->decoy_file, e.path), 0);
	assert_refused(vmd_disk_snapshot_extract(f->ctx, INST, "disk", out,
	                                         VMD_FORMAT_RAW, &err),
	               &err);
	assert_false(th_exists(out));
	assert_int_equal(unlink(e.path), 0);
	assert_int_equal(rename(moved, e.path), 0);
	/* The cache directory becomes a link to a decoy holding a file of
	 * the entry's name. */
	decoy_entry = th_path(f->decoy, e.id);
	th_write_pattern(decoy_entry, 1u << 20, 9);
	assert_int_equal(rename(cache, moved), 0);
	plant(f, f->cfg.image_cache_subdirectory_name, f->decoy);
	assert_refused(vmd_disk_snapshot_extract(f->ctx, INST, "disk", out,
	                                         VMD_FORMAT_RAW, &err),
	               &err);
	assert_false(th_exists(out));
	free(decoy_entry);
	free(moved);
	free(cache);
	free(out);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_instance_dir_link_create),
		T(test_instance_dir_link_existing),
		T(test_cache_dir_link),
		T(test_lock_dir_link),
		T(test_disk_name_link),
		T(test_cache_entry_link),
		T(test_extract_backing_link),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("paths", tests, NULL, NULL);
}
