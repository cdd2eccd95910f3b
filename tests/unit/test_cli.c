/*
 * Tests of the vmdisk command line, run as a separate process the way users
 * run it: exit codes, one-line errors that leave nothing behind, JSON
 * output, and the cache's behaviour under concurrent and killed callers.
 */
#include <ctype.h>
#include <dirent.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0 /* built without valgrind's header */
#endif
#include "cleanup.h"
#include "runner.h"
#include "vmd_build_config.h"

#define INST "6f1e0a8c-3b5d-4e2f-9a7b-1c2d3e4f5a6b"
#define INST2 "0b6b3a52-7a4e-4f7b-8f5e-2d2b1b0a9c11"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *cache;
	char *config;
	char *base;
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "cli");

	f->cache = th_fixture_own(&f->th, th_path(f->instances, "_base"));
	f->config =
	        th_fixture_write_config(&f->th, "lock_timeout_seconds = 20\n");
	f->base = th_fixture_path(&f->th, "base.raw");
	th_write_pattern(f->base, 2u << 20, 42);
	*state = f;
	return 0;
}

/* Run `vmdisk --config F args...`; returns the exit status. */
static int cli(struct fixture *f, const char *const *env, char **out,
               char **errs, const char *const *args)
{
	return th_cli_run(f->config, env, out, errs, args);
}

static void test_version_and_help(void **state)
{
	struct fixture *f = *state;
	char *out = NULL;

	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"--version", NULL}),
	                 0);
	assert_true(strncmp(out, "vmdisk " VMD_VERSION, 7 + strlen(VMD_VERSION)) == 0);
	free(out);
	const char *cmds[] = {"fetch", "create", "info", "resize", "remove",
	                      "libvirt-xml"};

	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_int_equal(cli(f, NULL, &out, NULL,
		                     (const char *[]){cmds[i], "--help", NULL}),
		                 0);
		assert_contains(out, "usage: vmdisk");
		assert_contains(out, cmds[i]);
		free(out);
	}
}

struct bad_case {
	const char *args[10];
	int status;
};

/* "vmdisk: STEP: what failed": the line names the failed step (issue 16,
 * the rule of tests/suite/reliability/errors_check.py). */
static bool names_step(const char *line)
{
	size_t i = strlen("vmdisk: ");

	if (strncmp(line, "vmdisk: ", i) != 0 || !islower((unsigned char)line[i]))
		return false;
	for (; line[i] && line[i] != ':'; i++)
		if (!islower((unsigned char)line[i]) &&
		    !isdigit((unsigned char)line[i]) && !strchr(" _./-", line[i]))
			return false;
	return line[i] == ':' && line[i + 1] == ' ';
}

static void test_errors_one_line_nothing_left(void **state)
{
	struct fixture *f = *state;
	char *missing = th_path(f->dir, "missing.raw");
	char *nodir = th_path(f->dir, "no-such-dir/out.raw");
	const struct bad_case cases[] = {
		{{"create", INST, "disk", "--image", f->base, "--backend", "zfs", NULL}, 2},
		{{"create", "1234", "disk", "--image", f->base, NULL}, 2},
		{{"create", INST, "a/b", "--image", f->base, NULL}, 2},
		{{"create", INST, "..", "--image", f->base, NULL}, 2},
		{{"create", INST, "disk", "--image", f->base, "--size", "1M", NULL}, 1},
		{{"create", INST, "disk", "--image", f->base, "--size", "ten", NULL}, 2},
		{{"create", INST, "disk", "--image", missing, NULL}, 1},
		{{"create", INST, "disk", "--image", f->base, "--backend", "rbd", NULL}, 1},
		{{"create", INST, "disk", NULL}, 2},
		{{"create", INST, NULL}, 2},
		{{"frobnicate", NULL}, 2},
		{{"info", INST, "disk", NULL}, 1},
		{{"resize", INST, "disk", "1G", NULL}, 1},
		{{"remove", INST, "disk", NULL}, 1},
		{{"fetch", missing, NULL}, 1},
		{{"create", INST, "disk", "--bogus", NULL}, 2},
		{{"create", INST, "disk", "--image", f->base, "--size", "-1", NULL}, 2},
		{{"create", INST, "disk", "--blank", "--size", "1M", "--fs", "zfs", NULL}, 2},
		{{"convert", "-O", "vmdk", f->base, missing, NULL}, 2},
		{{"convert", "-O", "raw", f->base, nodir, NULL}, 1},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL, *errs = NULL;
		int status = cli(f, NULL, &out, &errs, cases[i].args);

		if (status != cases[i].status || th_count_lines(errs) != 1 ||
		    !names_step(errs) || out[0] != '\0')
			fail_msg("case %zu (%s %s): status %d, stdout '%s', "
			         "stderr '%s'",
			         i, cases[i].args[0],
			         cases[i].args[1] ? cases[i].args[1] : "",
			         status, out, errs);
		/* No host path in what the caller sees. */
		assert_not_contains(errs, f->dir);
		free(out);
		free(errs);
	}
	char *idir = th_path(f->instances, INST);

	assert_false(th_exists(idir));
	assert_int_equal(th_count_cache_entries(f->cache), 0);
	free(idir);
	free(missing);
	free(nodir);
}

static void test_create_info_json(void **state)
{
	struct fixture *f = *state;
	char *out = NULL;
	struct json_object *o, *v;

	th_require_qemu_img();
	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"--json", "create", INST, "disk",
	                                      "--image", f->base, "--size",
	                                      "1G", NULL}),
	                 0);
	free(out);
	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"--json", "info", INST, "disk",
	                                      NULL}),
	                 0);
	o = json_tokener_parse(out);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "backend", &v));
	assert_string_equal(json_object_get_string(v), "qcow2");
	assert_true(json_object_object_get_ex(o, "virtual_size", &v));
	assert_int_equal(json_object_get_int64(v), 1ll << 30);
	assert_true(json_object_object_get_ex(o, "path", &v));
	char *disk = strdup(json_object_get_string(v));

	json_object_put(o);
	free(out);
	th_assert_qcow2_check_clean(disk);
	th_assert_images_identical(f->base, "raw", disk, "qcow2", 0);

	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"resize", INST, "disk", "2G", NULL}),
	                 0);
	th_assert_qcow2_check_clean(disk);
	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"libvirt-xml", INST, "disk", NULL}),
	                 0);
	assert_contains(out, "<disk type='file' device='disk'>");
	free(out);
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"remove", INST, "disk", NULL}),
	                 0);
	assert_false(th_exists(disk));
	free(disk);
}

struct racer {
	struct fixture *f;
	const char *const *env;
	const char *args[12];
	int status;
	char *out;
	char *err;
};

static void *race(void *arg)
{
	struct racer *r = arg;

	int status = cli(r->f, r->env, &r->out, &r->err, r->args);

	__atomic_store_n(&r->status, status, __ATOMIC_RELEASE);
	return NULL;
}

static bool json_fetched(const char *out)
{
	struct json_object *o = json_tokener_parse(out), *v;
	bool fetched;

	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "fetched", &v));
	fetched = json_object_get_boolean(v);
	json_object_put(o);
	return fetched;
}

/*
 * Two processes fetch the same uncached image at once. The fault point
 * holds the lock 400 ms so that the second really waits on it; exactly one
 * copies and the other reuses its entry.
 */
static void test_concurrent_fetch_copies_once(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"VMDISK_FAULT=cache.locked:sleep=400", NULL};
	struct racer r[2];
	pthread_t th[2];

	if (!VMD_FAULT_INJECTION) {
		printf("skipped: built without -Dfault_injection=true\n");
		skip();
	}
	for (int i = 0; i < 2; i++) {
		r[i] = (struct racer){f, env, {"--json", "fetch", f->base, NULL},
		                      -1, NULL, NULL};
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++)
		if (r[i].status != 0)
			fail_msg("fetch %d: %d %s", i, r[i].status, r[i].err);
	assert_true(json_fetched(r[0].out) != json_fetched(r[1].out));
	assert_int_equal(th_count_cache_entries(f->cache), 1);
	for (int i = 0; i < 2; i++) {
		free(r[i].out);
		free(r[i].err);
	}
}

/* Two creates of different instances from one uncached image. */
static void test_concurrent_creates_share_one_copy(void **state)
{
	struct fixture *f = *state;
	struct racer r[2];
	pthread_t th[2];
	const char *insts[2] = {INST, INST2};
	int copies = 0;

	th_require_qemu_img();
	for (int i = 0; i < 2; i++) {
		r[i] = (struct racer){f, NULL,
		                      {"-v", "create", insts[i], "disk", "--image",
		                       f->base, NULL},
		                      -1, NULL, NULL};
		assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 2; i++) {
		if (r[i].status != 0)
			fail_msg("create %d: %d %s", i, r[i].status, r[i].err);
		copies += strstr(r[i].err, "cache: fetched") != NULL;
		char *p;

		assert_true(asprintf(&p, "%s/%s/disk", f->instances, insts[i]) > 0);
		th_assert_qcow2_check_clean(p);
		th_assert_images_identical(f->base, "raw", p, "qcow2", 1);
		free(p);
		free(r[i].out);
		free(r[i].err);
	}
	assert_int_equal(copies, 1);
	assert_int_equal(th_count_cache_entries(f->cache), 1);
}

/* SIGKILL while holding the lock, just before publishing: no entry under
 * the final name, and the next caller is not blocked. */
static void test_killed_fetch_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	const char *kill_env[] = {"VMDISK_FAULT=cache.before_publish:kill", NULL};
	char *out = NULL;
	struct timespec t0, t1;

	if (!VMD_FAULT_INJECTION) {
		printf("skipped: built without -Dfault_injection=true\n");
		skip();
	}
	assert_int_equal(cli(f, kill_env, NULL, NULL,
	                     (const char *[]){"fetch", f->base, NULL}),
	                 128 + 9);
	assert_int_equal(th_count_cache_entries(f->cache), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"--json", "fetch", f->base, NULL}),
	                 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(json_fetched(out));
	/* Well under the 20 s lock timeout: the dead holder's lock was gone. */
	assert_true(t1.tv_sec - t0.tv_sec < 10);
	assert_int_equal(th_count_cache_entries(f->cache), 1);
	free(out);
}

/* While a fetch is under way, poll the cache: a file under a final name
 * is always complete. */
static void test_no_partial_file_under_final_name(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"VMDISK_FAULT=cache.before_publish:sleep=500", NULL};
	struct racer r = {f, env, {"fetch", f->base, NULL}, -1, NULL, NULL};
	pthread_t th;
	int polls_empty = 0;

	if (!VMD_FAULT_INJECTION) {
		printf("skipped: built without -Dfault_injection=true\n");
		skip();
	}
	th_write_pattern(f->base, 32u << 20, 9);
	assert_int_equal(pthread_create(&th, NULL, race, &r), 0);
	for (int i = 0; i < 2000 && __atomic_load_n(&r.status, __ATOMIC_ACQUIRE) == -1;
	     i++) {
		DIR *d = opendir(f->cache);
		struct dirent *de;

		if (d) {
			int seen = 0;

			while ((de = readdir(d)) != NULL) {
				if (de->d_name[0] == '.')
					continue;
				char *p = th_path(f->cache, de->d_name);

				assert_int_equal(th_file_size(p), 32u << 20);
				free(p);
				seen = 1;
			}
			closedir(d);
			polls_empty += !seen;
		}
		usleep(2000);
	}
	pthread_join(th, NULL);
	assert_int_equal(r.status, 0);
	/* The poll did watch the fetch in progress. */
	assert_true(polls_empty > 10);
	assert_int_equal(th_count_cache_entries(f->cache), 1);
	free(r.out);
	free(r.err);
}

static char *sha256_of(const char *path)
{
	const char *argv[] = {"sha256sum", path, NULL};
	char *out = NULL;

	assert_int_equal(th_run(argv, NULL, &out, NULL), 0);
	out[64] = '\0';
	return out;
}

static void test_checksum(void **state)
{
	struct fixture *f = *state;
	char *hex = sha256_of(f->base), *good, *bad, *out = NULL, *errs = NULL;
	struct json_object *o, *v;

	assert_true(asprintf(&good, "sha256:%s", hex) > 0);
	assert_true(asprintf(&bad, "sha256:%064d", 0) > 0);
	assert_int_equal(cli(f, NULL, NULL, &errs,
	                     (const char *[]){"fetch", f->base, "--checksum", bad,
	                                      NULL}),
	                 1);
	assert_string_equal(errs, "vmdisk: cache: sha256 checksum mismatch\n");
	assert_int_equal(th_count_cache_entries(f->cache), 0);
	free(errs);
	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"--json", "fetch", f->base,
	                                      "--checksum", good, NULL}),
	                 0);
	o = json_tokener_parse(out);
	assert_true(json_object_object_get_ex(o, "hash", &v));
	assert_string_equal(json_object_get_string(v), hex);
	assert_true(json_object_object_get_ex(o, "size", &v));
	assert_int_equal(json_object_get_int64(v), 2 << 20);
	json_object_put(o);
	free(out);
	/* The cached entry is held to the same checksum. */
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"create", INST, "disk", "--image",
	                                      f->base, "--checksum", bad, NULL}),
	                 1);
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"create", INST, "disk", "--image",
	                                      f->base, "--checksum", good, NULL}),
	                 0);
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"fetch", f->base, "--checksum",
	                                      "crc32:00", NULL}),
	                 1);
	free(hex);
	free(good);
	free(bad);
}

/* A create that makes the instance directory makes its name durable
 * before anything in it (an fsync of instances_path): the fsyncs of the
 * record and the disk with their own directory do not make that directory's
 * entry durable. The first fsync of such a create is that one: failing it
 * fails the create on that step, and the new directory goes. */
static void test_new_instance_dir_is_synced(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"VMDISK_FAULT=io.fsync@1:fail", NULL};
	char *errs = NULL, *dir = th_path(f->instances, INST);

	if (!VMD_FAULT_INJECTION) {
		printf("skipped: built without -Dfault_injection=true\n");
		skip();
	}
	/* the base cached first, by another process */
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"fetch", f->base, NULL}),
	                 0);
	assert_int_equal(cli(f, env, NULL, &errs,
	                     (const char *[]){"create", INST, "disk", "--image",
	                                      f->base, NULL}),
	                 1);
	assert_contains(errs, "sync instance directory failed");
	assert_false(th_exists(dir));
	free(errs);
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"create", INST, "disk", "--image",
	                                      f->base, NULL}),
	                 0);
	free(dir);
}

/* Libraries a command does not need are not loaded (issue 17: start-up):
 * json-c, libcrypto, zlib and libzstd are dlopen()ed on first use. The
 * dynamic loader's LD_DEBUG=files trace names every object it maps;
 * `--version` and `inspect` of a raw image must map none of them, and a
 * checksum (libcrypto's digests) and --json (json-c) still work, loading
 * them then. */
static bool maps(const char *trace, const char *soname)
{
	char *needle;
	bool found;

	assert_true(asprintf(&needle, "file=%s", soname) > 0);
	found = strstr(trace, needle) != NULL;
	free(needle);
	return found;
}

static void test_lazy_libraries(void **state)
{
	struct fixture *f = *state;
	const char *env[] = {"LD_DEBUG=files", NULL};
	const char *lazy[] = {"libcrypto.so", "libzstd.so", "libz.so",
	                      "libjson-c.so"};
	const char *const cmds[][3] = {{"--version", NULL, NULL},
	                               {"inspect", f->base, NULL}};
	char *hex = sha256_of(f->base), *good, *errs = NULL;

	for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
		assert_int_equal(cli(f, env, NULL, &errs, cmds[c]), 0);
		/* the trace is there: libc is always mapped */
		assert_true(maps(errs, "libc.so"));
		for (size_t i = 0; i < sizeof(lazy) / sizeof(lazy[0]); i++)
			if (maps(errs, lazy[i]))
				fail_msg("`vmdisk %s` loaded %s", cmds[c][0],
				         lazy[i]);
		free(errs);
	}
	assert_true(asprintf(&good, "sha256:%s", hex) > 0);
	assert_int_equal(cli(f, env, NULL, &errs,
	                     (const char *[]){"fetch", f->base, "--checksum",
	                                      good, NULL}),
	                 0);
	assert_true(maps(errs, "libcrypto.so"));
	free(errs);
	assert_int_equal(cli(f, env, NULL, &errs,
	                     (const char *[]){"--json", "inspect", f->base,
	                                      NULL}),
	                 0);
	assert_true(maps(errs, "libjson-c.so"));
	free(errs);
	free(good);
	free(hex);
}

/* The second racer starts once the first holds the cache lock: its fault
 * trace (VMDISK_FAULT_TRACE) names cache.locked. A fixed delay lost the
 * race when the first process started slowly (valgrind on a busy host). */
static const char *race_trace;

static void *race_later(void *arg)
{
	for (int i = 0; i < 600; i++) {
		char *text = th_read_text(race_trace);
		bool locked = text && strstr(text, "cache.locked");

		free(text);
		if (locked)
			break;
		usleep(50000);
	}
	return race(arg);
}

/* Callers that waited on a fetch that failed get its error; a caller who
 * comes later starts afresh and succeeds. */
static void test_waiters_share_the_winners_error(void **state)
{
	struct fixture *f = *state;
	char *trace = th_path(f->dir, "fault.trace");
	char *trace_env = NULL;
	/* The first holds the lock long enough for the second to start and
	 * wait on it: under valgrind (the suite's third pass) a process takes
	 * seconds to start on a busy host, and the second then came after
	 * the first had failed, fetched afresh and succeeded. */
	const char *env[] = {
		RUNNING_ON_VALGRIND
		        ? "VMDISK_FAULT=cache.locked:sleep=8000,cache.downloaded:fail"
		        : "VMDISK_FAULT=cache.locked:sleep=700,cache.downloaded:fail",
		NULL, NULL};
	struct racer a = {f, env, {"fetch", f->base, NULL}, -1, NULL, NULL};
	struct racer b = {f, NULL, {"fetch", f->base, NULL}, -1, NULL, NULL};
	pthread_t ta, tb;

	if (!VMD_FAULT_INJECTION) {
		printf("skipped: built without -Dfault_injection=true\n");
		skip();
	}
	assert_true(asprintf(&trace_env, "VMDISK_FAULT_TRACE=%s", trace) > 0);
	env[1] = trace_env;
	race_trace = trace;
	assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
	assert_int_equal(pthread_create(&tb, NULL, race_later, &b), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	assert_int_equal(a.status, 1);
	assert_int_equal(b.status, 1);
	assert_string_equal(a.err, "vmdisk: cache: injected failure\n");
	assert_string_equal(b.err, a.err);
	assert_int_equal(th_count_cache_entries(f->cache), 0);
	assert_int_equal(cli(f, NULL, NULL, NULL,
	                     (const char *[]){"fetch", f->base, NULL}),
	                 0);
	assert_int_equal(th_count_cache_entries(f->cache), 1);
	free(a.out);
	free(a.err);
	free(b.out);
	free(b.err);
	free(trace_env);
	free(trace);
}

/*
 * SIGKILL at random points of a fetch (the runner's timeout kills the
 * process group), 50 times: never a file under a final name that is not
 * complete, and the next fetch always succeeds.
 */
static void test_random_kills_never_leave_partial_entries(void **state)
{
	struct fixture *f = *state;
	char *hex;
	int killed = 0;

	th_write_pattern(f->base, 48u << 20, 4242);
	hex = NULL;
	const char *sha[] = {"sha256sum", f->base, NULL};

	assert_int_equal(th_run(sha, NULL, &hex, NULL), 0);
	srandom(7);
	for (int trial = 0; trial < 50; trial++) {
		const char *argv[] = {th_cli(), "--config", f->config, "fetch",
		                      f->base, NULL};
		struct vmd_run_opts o = {.timeout_ms = 5 + (int)(random() % 120)};
		struct vmd_run_result res = {0};
		struct vmd_error err = VMD_ERROR_INIT;
		DIR *d;
		struct dirent *de;

		vmd_run("kill trial", argv, &o, &res, &err);
		killed += res.timed_out;
		vmd_run_result_free(&res);
		d = opendir(f->cache);
		while (d && (de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			char *p = th_path(f->cache, de->d_name);

			/* Whatever has a final name is whole. */
			assert_int_equal(th_file_size(p), 48u << 20);
			assert_true(th_files_equal(p, f->base));
			free(p);
		}
		if (d)
			closedir(d);
		/* Start clean for the next trial half of the time. */
		if (trial % 2 == 0) {
			char *entry = NULL;
			d = opendir(f->cache);
			while (d && (de = readdir(d)) != NULL)
				if (de->d_name[0] != '.')
					entry = th_path(f->cache, de->d_name);
			if (d)
				closedir(d);
			if (entry)
				unlink(entry);
			free(entry);
		}
	}
	/* The kills did land while work was going on. */
	assert_true(killed > 10);
	char *out = NULL;

	assert_int_equal(cli(f, NULL, &out, NULL,
	                     (const char *[]){"--json", "fetch", f->base, NULL}),
	                 0);
	assert_contains(out, "\"hash\":\"");
	hex[64] = '\0';
	assert_contains(out, hex);
	assert_int_equal(th_count_cache_entries(f->cache), 1);
	free(out);
	free(hex);
}

/*
 * Issue 14 defect 7: `convert` followed an untrusted qcow2's backing file
 * and flattened it into the output, so a crafted image copied any host file
 * it named. It is refused now, as `inspect` and `create` refuse it, unless
 * --allow-backing says the chain is wanted. The backing file here is a
 * decoy in the scratch directory.
 */
static void test_convert_refuses_backing_file(void **state)
{
	struct fixture *f = *state;
	char *decoy = th_path(f->dir, "decoy.raw");
	char *evil = th_path(f->dir, "evil.qcow2");
	char *out = th_path(f->dir, "out.raw");
	char *errs = NULL, *text = NULL;
	const char *mk[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-F",
	                    "raw", "-b", decoy, evil, "1M", NULL};

	th_require_qemu_img();
	th_write_text(decoy, "DECOY-CONTENT-NOT-FOR-THE-OUTPUT\n");
	assert_int_equal(truncate(decoy, 1 << 20), 0);
	assert_int_equal(th_run(mk, NULL, NULL, NULL), 0);

	/* Probed format and -f qcow2 alike: refused, nothing written. */
	for (int i = 0; i < 2; i++) {
		int st = i == 0 ? cli(f, NULL, NULL, &errs,
		                      (const char *[]){"convert", evil, out, "-O",
		                                       "raw", NULL})
		                : cli(f, NULL, NULL, &errs,
		                      (const char *[]){"convert", "-f", "qcow2",
		                                       evil, out, "-O", "raw",
		                                       NULL});

		assert_int_equal(st, 1);
		assert_contains(errs, "backing file");
		assert_int_equal(th_count_lines(errs), 1);
		assert_int_equal(access(out, F_OK), -1);
		free(errs);
		errs = NULL;
	}
	/* The operator who wants the chain says so. */
	assert_int_equal(cli(f, NULL, NULL, &errs,
	                     (const char *[]){"convert", "--allow-backing", evil,
	                                      out, "-O", "raw", NULL}),
	                 0);
	text = th_read_text(out);
	assert_contains(text, "DECOY-CONTENT");
	free(text);
	free(errs);
	free(decoy);
	free(evil);
	free(out);
}

/* stdout of `vmdisk --config F args...`, which must exit `status`. */
static char *cli_out(struct fixture *f, int status, const char *const *args)
{
	char *out = NULL, *errs = NULL;
	int rc = cli(f, NULL, &out, &errs, args);

	if (rc != status)
		fail_msg("%s %s: exit %d (want %d), stderr '%s'", args[0],
		         args[1] ? args[1] : "", rc, status, errs);
	free(errs);
	return out;
}

/* Issue 18: global options where qemu-img and rbd users type them, after
 * the command (`vmdisk inspect FILE --json`), with the same output as
 * before it; --output=json is --json's qemu-img spelling. */
static void test_global_options_after_command(void **state)
{
	struct fixture *f = *state;
	char *want = cli_out(
		f, 0, (const char *[]){"--json", "inspect", f->base, NULL});
	char *human = cli_out(f, 0, (const char *[]){"inspect", f->base, NULL});
	const char *const json_forms[][6] = {
		{"inspect", f->base, "--json", NULL},
		{"inspect", "--json", f->base, NULL},
		{"inspect", f->base, "--output=json", NULL},
		{"inspect", f->base, "--output", "json", NULL},
		{"--output=json", "inspect", f->base, NULL},
		{"inspect", "-q", f->base, "-v", "--json", NULL},
		{"--output=human", "inspect", f->base, "--json", NULL},
	};
	const char *const human_forms[][6] = {
		{"inspect", f->base, "--output=human", NULL},
		{"--json", "inspect", f->base, "--output", "text", NULL},
	};

	assert_int_equal(want[0], '{');
	for (size_t i = 0; i < ELEMENTSOF(json_forms); i++) {
		char *out = cli_out(f, 0, json_forms[i]);

		assert_string_equal(out, want);
		free(out);
	}
	for (size_t i = 0; i < ELEMENTSOF(human_forms); i++) {
		char *out = cli_out(f, 0, human_forms[i]);

		assert_string_equal(out, human);
		free(out);
	}
	/* --config after the command, in its three spellings (no --config
	 * in front: th_run, not cli()). */
	char *eq = NULL;

	assert_true(asprintf(&eq, "--config=%s", f->config) > 0);
	const char *const config_forms[][7] = {
		{th_cli(), "inspect", f->base, "--json", "--config", f->config,
		 NULL},
		{th_cli(), "inspect", "--json", eq, f->base, NULL},
		{th_cli(), "inspect", f->base, "-c", f->config, "--json", NULL},
	};

	for (size_t i = 0; i < ELEMENTSOF(config_forms); i++) {
		char *out = NULL;

		assert_int_equal(th_run(config_forms[i], NULL, &out, NULL), 0);
		assert_string_equal(out, want);
		free(out);
	}
	/* And it is read: a missing file named after the command fails. */
	char *errs = NULL;

	assert_int_equal(th_run((const char *[]){th_cli(), "inspect", f->base,
	                                         "--config", "/nonexistent/x",
	                                         NULL},
	                        NULL, NULL, &errs),
	                 1);
	assert_contains(errs, "config");
	free(errs);
	free(eq);
	free(want);
	free(human);
}

/* Issue 18's "Done when": `vmdisk info I D --output=json` works. */
static void test_info_output_json_after_command(void **state)
{
	struct fixture *f = *state;
	char *out, *want;
	struct json_object *o, *v;

	th_require_qemu_img();
	out = cli_out(f, 0,
	              (const char *[]){"create", INST, "disk", "--image",
	                               f->base, "--output=json", NULL});
	o = json_tokener_parse(out);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "backend", &v));
	json_object_put(o);
	free(out);
	want = cli_out(f, 0,
	               (const char *[]){"--json", "info", INST, "disk", NULL});
	out = cli_out(f, 0, (const char *[]){"info", INST, "disk",
	                                     "--output=json", NULL});
	assert_string_equal(out, want);
	free(out);
	out = cli_out(f, 0, (const char *[]){"info", "--output", "json", INST,
	                                     "disk", NULL});
	assert_string_equal(out, want);
	free(out);
	free(want);
	assert_int_equal(th_run((const char *[]){th_cli(), "info", INST, "disk",
	                                         "--config", f->config, NULL},
	                        NULL, &out, NULL),
	                 0);
	assert_contains(out, "backend: ");
	free(out);
}

/* --output takes json or human (or text); anything else is a usage error
 * that says so, before or after the command. */
static void test_output_bad_value(void **state)
{
	struct fixture *f = *state;
	const struct bad_case cases[] = {
		{{"--output=xml", "inspect", f->base, NULL}, 2},
		{{"inspect", f->base, "--output=xml", NULL}, 2},
		{{"inspect", f->base, "--output", "JSON", NULL}, 2},
		{{"info", INST, "disk", "--output=", NULL}, 2},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *out = NULL, *errs = NULL;

		assert_int_equal(cli(f, NULL, &out, &errs, cases[i].args),
		                 cases[i].status);
		assert_int_equal(th_count_lines(errs), 1);
		assert_true(names_step(errs));
		assert_contains(errs, "--output takes json or human");
		assert_string_equal(out, "");
		free(out);
		free(errs);
	}
	/* A global option after the command is still checked as one. */
	const struct bad_case more[] = {
		{{"inspect", f->base, "--output", NULL}, 2},
		{{"inspect", f->base, "--json=yes", NULL}, 2},
		{{"inspect", f->base, "--config", NULL}, 2},
	};

	for (size_t i = 0; i < ELEMENTSOF(more); i++) {
		char *out = NULL, *errs = NULL;

		assert_int_equal(cli(f, NULL, &out, &errs, more[i].args),
		                 more[i].status);
		assert_true(names_step(errs));
		assert_string_equal(out, "");
		free(out);
		free(errs);
	}
}

/* "--" ends the options: what follows is an argument even when it looks
 * like a global option or --help. */
static void test_double_dash_ends_options(void **state)
{
	struct fixture *f = *state;
	const char *const cases[][5] = {
		{"inspect", "-q", "--", "--json", NULL},
		{"inspect", "--", "--help", NULL},
		{"inspect", "--", "-q", NULL},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *out = NULL, *errs = NULL;

		assert_int_equal(cli(f, NULL, &out, &errs, cases[i]), 1);
		assert_contains(errs, "inspect: cannot open the image");
		assert_string_equal(out, "");
		free(out);
		free(errs);
	}
}

/* A value of the command's own option is the command's, even when it is
 * spelled like a global option (`--image --json`): a missing image (1),
 * not a usage error nor help. */
static void test_option_value_not_taken_as_global(void **state)
{
	struct fixture *f = *state;
	const char *const cases[][8] = {
		{"create", INST, "disk", "--image", "--json", "--output=json",
		 NULL},
		{"create", INST, "disk", "--image", "--help", NULL},
		{"create", INST, "disk", "--ima", "-q", "-q", NULL},
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *out = NULL, *errs = NULL;

		if (cli(f, NULL, &out, &errs, cases[i]) != 1)
			fail_msg("case %zu: stdout '%s', stderr '%s'", i, out,
			         errs);
		assert_true(names_step(errs));
		assert_string_equal(out, "");
		free(out);
		free(errs);
	}
	/* convert's short -O takes the next word too. */
	char *errs = NULL;

	assert_int_equal(cli(f, NULL, NULL, &errs,
	                     (const char *[]){"convert", "-O", "--json", "a",
	                                      "b", "-q", NULL}),
	                 2);
	assert_contains(errs, "'--json'");
	free(errs);
}

/* Every command of `vmdisk --help` (the command table) prints its own
 * help for --help or -h after it, wherever, and for `vmdisk help CMD`. */
static void test_help_after_every_command(void **state)
{
	struct fixture *f = *state;
	char *list = cli_out(f, 0, (const char *[]){"--help", NULL});
	char *p = strstr(list, "\nCommands:\n");
	int n = 0;

	assert_non_null(p);
	for (p = strchr(p + 1, '\n') + 1; p[0] == ' ' && p[1] == ' ';
	     p = strchr(p, '\n') + 1) {
		char name[32], want[48];

		if (!islower((unsigned char)p[2]))
			continue; /* a usage's continuation line */
		assert_int_equal(sscanf(p + 2, "%31s", name), 1);
		snprintf(want, sizeof(want), " %s ", name);
		const char *const forms[][6] = {
			{name, "--help", NULL},
			{name, "-h", NULL},
			{name, "-vh", NULL}, /* -v -h, joined as getopt may */
			{name, "--json", "--help", NULL},
			{name, INST, "disk", "--output=json", "-h", NULL},
			{"help", name, NULL},
		};

		for (size_t i = 0; i < ELEMENTSOF(forms); i++) {
			char *out = cli_out(f, 0, forms[i]);

			assert_true(strncmp(out, "usage: vmdisk ", 14) == 0);
			assert_contains(out, want);
			free(out);
		}
		n++;
	}
	assert_true(n >= 13);
	free(list);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, th_teardown)
	const struct CMUnitTest tests[] = {
		T(test_convert_refuses_backing_file),
		T(test_version_and_help),
		T(test_errors_one_line_nothing_left),
		T(test_create_info_json),
		T(test_concurrent_fetch_copies_once),
		T(test_concurrent_creates_share_one_copy),
		T(test_killed_fetch_leaves_nothing),
		T(test_no_partial_file_under_final_name),
		T(test_checksum),
		T(test_lazy_libraries),
		T(test_new_instance_dir_is_synced),
		T(test_waiters_share_the_winners_error),
		T(test_random_kills_never_leave_partial_entries),
		T(test_global_options_after_command),
		T(test_info_output_json_after_command),
		T(test_output_bad_value),
		T(test_double_dash_ends_options),
		T(test_option_value_not_taken_as_global),
		T(test_help_after_every_command),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
