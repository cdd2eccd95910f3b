/*
 * Tests of who can read the image cache (lib/cache.c), issue 14 defect 6:
 * a base was published 0644 whatever its source was, so fetching a
 * root-only 0600 file made a copy every user could read. Now a base is
 * 0640 and belongs to image_cache_group (default: the group that owns
 * instances_path), the cache directory is 0750 of that group, a local
 * file's copy has no permission bit the file lacks, and the side record
 * .<id>.json is 0640 too.
 */
#include <dirent.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "helpers.h"
#include <vmdisk/vmdisk.h>

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *cache;
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "cache");

	f->cache = th_fixture_own(&f->th, th_path(f->instances, "_base"));
	assert_int_equal(mkdir(f->instances, 0755), 0);
	f->cfg.lock_timeout_seconds = 10;
	th_ctx_renew(&f->ctx, &f->cfg);
	*state = f;
	return 0;
}

/* A 1 MiB raw image `name` in the scratch directory, of mode `mode`. */
static char *image(struct fixture *f, const char *name, mode_t mode)
{
	char *path = th_path(f->dir, name);

	th_write_pattern(path, 1u << 20, 7);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void fetch_ok(struct fixture *f, const char *src,
                     struct vmd_cache_entry *e)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (vmd_cache_fetch(f->ctx, src, e, &err) != 0)
		fail_msg("fetch %s: %s (%s)", src, err.msg, err.detail);
	assert_true(e->fetched);
}

static struct stat stat_of(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		fail_msg("stat %s failed", path);
	return st;
}

static char *info_path(struct fixture *f, const struct vmd_cache_entry *e)
{
	char *p;

	assert_true(asprintf(&p, "%s/.%s.json", f->cache, e->id) > 0);
	return p;
}

/* A world-readable source: the base is 0640 of the group of
 * instances_path, in a 0750 directory of that group; the record 0640. */
static void test_base_mode_and_group(void **state)
{
	struct fixture *f = *state;
	struct vmd_cache_entry e;
	char *src = image(f, "pub.raw", 0644);
	gid_t gid = stat_of(f->instances).st_gid;
	char *info;
	struct stat st;

	fetch_ok(f, src, &e);
	info = info_path(f, &e);
	st = stat_of(e.path);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(st.st_gid, gid);
	st = stat_of(f->cache);
	assert_int_equal(st.st_mode & 07777, 0750);
	assert_int_equal(st.st_gid, gid);
	assert_int_equal(stat_of(info).st_mode & 07777, 0640);
	/* instances_path itself is left as it was. */
	assert_int_equal(stat_of(f->instances).st_mode & 07777, 0755);
	assert_true(th_files_equal(src, e.path));
	free(info);
	free(src);
}

/* A copy never has a permission bit its local source lacks. */
static void test_mode_capped_by_source(void **state)
{
	static const struct {
		mode_t src, want;
	} cases[] = {
		{0600, 0600}, {0400, 0400}, {0640, 0640},
		{0604, 0600}, {0444, 0440}, {0666, 0640},
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char name[32];
		struct vmd_cache_entry e;
		char *src;
		mode_t got;

		snprintf(name, sizeof(name), "img-%04o.raw",
		         (unsigned)cases[i].src);
		src = image(f, name, cases[i].src);
		fetch_ok(f, src, &e);
		got = stat_of(e.path).st_mode & 07777;
		if (got != cases[i].want)
			fail_msg("source %04o: base %04o, want %04o",
			         (unsigned)cases[i].src, (unsigned)got,
			         (unsigned)cases[i].want);
		free(src);
	}
}

/* A cache directory from before (0755, or wider) is narrowed. */
static void test_existing_dir_narrowed(void **state)
{
	struct fixture *f = *state;
	struct vmd_cache_entry e;
	char *src = image(f, "b.raw", 0644);

	assert_int_equal(mkdir(f->cache, 0700), 0);
	assert_int_equal(chmod(f->cache, 0777), 0);
	fetch_ok(f, src, &e);
	assert_int_equal(stat_of(f->cache).st_mode & 07777, 0750);
	free(src);
}

/* Some group other than the one that owns `dir`, or -1. */
static gid_t other_group(const char *dir, char *name, size_t namesz)
{
	static const char *const names[] = {"nogroup", "daemon", "users",
	                                    "adm", "bin", "sys"};
	gid_t mine = stat_of(dir).st_gid;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct group *gr = getgrnam(names[i]);

		if (gr && gr->gr_gid != mine) {
			snprintf(name, namesz, "%s", names[i]);
			return gr->gr_gid;
		}
	}
	return (gid_t)-1;
}

/* image_cache_group names the group; an unknown one is an error that
 * leaves no entry. */
static void test_image_cache_group(void **state)
{
	struct fixture *f = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry e;
	char name[32];
	char *src = image(f, "g.raw", 0644);
	gid_t gid = other_group(f->instances, name, sizeof(name));
	struct group *mine = getgrgid(getegid());

	/* As root any group will do; otherwise only one of ours. */
	if (gid == (gid_t)-1 || (geteuid() != 0 && !mine)) {
		printf("skipped: no second group to give the cache to\n");
		free(src);
		skip();
		return;
	}
	if (geteuid() != 0) {
		snprintf(name, sizeof(name), "%s", mine->gr_name);
		gid = mine->gr_gid;
	}
	snprintf(f->cfg.image_cache_group, sizeof(f->cfg.image_cache_group),
	         "%s", name);
	th_ctx_renew(&f->ctx, &f->cfg);
	fetch_ok(f, src, &e);
	assert_int_equal(stat_of(e.path).st_gid, gid);
	assert_int_equal(stat_of(e.path).st_mode & 07777, 0640);
	assert_int_equal(stat_of(f->cache).st_gid, gid);
	free(src);

	src = image(f, "h.raw", 0644);
	snprintf(f->cfg.image_cache_group, sizeof(f->cfg.image_cache_group),
	         "%s", "vmdisk-no-such-group");
	th_ctx_renew(&f->ctx, &f->cfg);
	assert_int_equal(vmd_cache_fetch(f->ctx, src, &e, &err),
	                 VMD_E_CONFIG);
	assert_contains(err.msg, "image_cache_group");
	assert_int_equal(th_count_cache_entries(f->cache), 1);
	free(src);
}

/* The cache's names are the SHA-1 of the source id (Nova's naming), by
 * libcrypto loaded on first use: FIPS 180's vectors, the padding's one-
 * and two-block cases (55, 56 and 64 bytes) and a long message. */
static void test_cache_id_is_sha1(void **state)
{
	static const struct {
		const char *in;
		const char *hex;
	} v[] = {
		{"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
		{"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
		 "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		 "a49b2446a02c645bf419f995b67091253a04a259"},
	};
	char id[41];
	struct vmd_error err = VMD_ERROR_INIT;
	char *big = malloc(1000001);

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		assert_int_equal(vmd_cache_id(v[i].in, id, &err), 0);
		assert_string_equal(id, v[i].hex);
	}
	assert_non_null(big);
	memset(big, 'a', 1000000);
	big[1000000] = 0;
	assert_int_equal(vmd_cache_id(big, id, &err), 0);
	assert_string_equal(id, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
	/* 55, 56 and 64 bytes: the length fits in the last block or not. */
	static const char *const pad_hex[] = {
		"c1c8bbdc22796e28c0e15163d20899b65621d65a",
		"c2db330f6083854c99d4b5bfb6e8f29f201be699",
		"0098ba824b5c16427bd7a1122a5a442a25ec644d",
	};
	static const size_t pad_len[] = {55, 56, 64};

	for (size_t i = 3; i-- > 0;) { /* longest first: each cut shortens */
		big[pad_len[i]] = 0;
		assert_int_equal(vmd_cache_id(big, id, &err), 0);
		assert_string_equal(id, pad_hex[i]);
	}
	free(big);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_base_mode_and_group),
		T(test_mode_capped_by_source),
		T(test_existing_dir_narrowed),
		T(test_image_cache_group),
		cmocka_unit_test(test_cache_id_is_sha1),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
