/*
 * Replays a fuzz corpus as cmocka tests: every file is one test case (named
 * after the file) that runs the fuzz target's own check, so any input the
 * fuzzer ever crashed on stays a regression test of the ordinary (and the
 * ASan) build. Compiled once per target (meson.build here), with
 *
 *   -DVMD_FUZZ_TARGET=NAME -DVMD_FUZZ_HEADER="fuzz_NAME.h"
 *       the check: vmd_fuzz_NAME_check() from fuzz_NAME.c
 *   -DVMD_FUZZ_PROG="test_fuzz_NAME_corpus" -DVMD_FUZZ_GROUP="fuzz-NAME-corpus"
 *       the program's name in messages and the cmocka group's (the meson
 *       test's); the inspector's are test_fuzz_corpus and fuzz-corpus
 *
 *   test_fuzz_corpus PATH...
 *
 * A PATH is a directory (its regular files, hidden ones excepted, in name
 * order) or a file. meson passes the target's corpus directory; without a
 * PATH $VMDISK_FUZZ_CORPUS is used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define FUZZ_CAT3(a, b, c) a##b##c
#define FUZZ_CHECK_OF(t) FUZZ_CAT3(vmd_fuzz_, t, _check)
#include VMD_FUZZ_HEADER
#define FUZZ_CHECK FUZZ_CHECK_OF(VMD_FUZZ_TARGET)
#define FUZZ_PROG VMD_FUZZ_PROG
#define FUZZ_GROUP VMD_FUZZ_GROUP

/* No input the fuzzer makes comes near this; a bigger file is a mistake. */
#define CORPUS_MAX_INPUT (64u * 1024 * 1024)

struct corpus_case {
	char *path;
	const char *name; /* points into path */
};

struct case_list {
	struct corpus_case *v;
	size_t n, cap;
};

static int add_case(struct case_list *l, const char *dir, const char *name)
{
	struct corpus_case *c;
	size_t dlen = dir ? strlen(dir) : 0, nlen = strlen(name);

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct corpus_case *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -1;
		l->v = v;
		l->cap = cap;
	}
	c = &l->v[l->n];
	c->path = malloc(dlen + 1 + nlen + 1);
	if (!c->path)
		return -1;
	if (dir)
		snprintf(c->path, dlen + 1 + nlen + 1, "%s/%s", dir, name);
	else
		memcpy(c->path, name, nlen + 1);
	c->name = strrchr(c->path, '/') ? strrchr(c->path, '/') + 1 : c->path;
	l->n++;
	return 0;
}

static int by_name(const void *a, const void *b)
{
	const struct corpus_case *x = a, *y = b;

	return strcmp(x->path, y->path);
}

/* Add the regular files of dir, in name order. */
static int add_dir(struct case_list *l, const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t first = l->n;
	int rc = 0;

	if (!d) {
		fprintf(stderr, FUZZ_PROG ": %s: %s\n", dir,
		        strerror(errno));
		return -1;
	}
	while (rc == 0 && (e = readdir(d)) != NULL) {
		struct stat st;

		if (e->d_name[0] == '.')
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, 0) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		rc = add_case(l, dir, e->d_name);
	}
	closedir(d);
	if (rc == 0)
		qsort(l->v + first, l->n - first, sizeof(l->v[0]), by_name);
	return rc;
}

static int add_path(struct case_list *l, const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		fprintf(stderr, FUZZ_PROG ": %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	return S_ISDIR(st.st_mode) ? add_dir(l, path) : add_case(l, NULL, path);
}

/* The whole file, malloc'ed (never NULL on success, even when empty). */
static uint8_t *read_input(const char *path, size_t *size, char *why,
                           size_t whysz)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, whysz, "open: %s", strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || st.st_size < 0 ||
	    (uint64_t)st.st_size > CORPUS_MAX_INPUT) {
		snprintf(why, whysz, "not a readable input of at most %u bytes",
		         CORPUS_MAX_INPUT);
		close(fd);
		return NULL;
	}
	*size = (size_t)st.st_size;
	buf = malloc(*size ? *size : 1);
	if (!buf) {
		snprintf(why, whysz, "out of memory");
		close(fd);
		return NULL;
	}
	while (got < *size) {
		ssize_t n = read(fd, buf + got, *size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(why, whysz, "read: %s",
			         n < 0 ? strerror(errno) : "file shrank");
			free(buf);
			close(fd);
			return NULL;
		}
		got += (size_t)n;
	}
	close(fd);
	return buf;
}

static void replay_one(void **state)
{
	const struct corpus_case *c = *state;
	char why[512] = "";
	size_t size = 0;
	uint8_t *data = read_input(c->path, &size, why, sizeof(why));
	bool ok;

	if (!data)
		fail_msg("%s: %s", c->path, why);
	/* Exactly `size` bytes of heap: under ASan an over-read is caught. */
	ok = FUZZ_CHECK(data, size, why, sizeof(why));
	free(data);
	if (!ok)
		fail_msg("%s (%zu bytes): %s", c->path, size, why);
}

int main(int argc, char **argv)
{
	struct case_list l = {0};
	struct CMUnitTest *tests;
	const char *env = getenv("VMDISK_FUZZ_CORPUS");
	int rc = 0;

	if (argc > 1) {
		for (int i = 1; i < argc && rc == 0; i++)
			rc = add_path(&l, argv[i]);
	} else if (env && *env) {
		rc = add_path(&l, env);
	} else {
		fprintf(stderr, "usage: " FUZZ_PROG " PATH... (or set "
		                "VMDISK_FUZZ_CORPUS)\n");
		return 2;
	}
	if (rc == 0 && l.n == 0) {
		fprintf(stderr, FUZZ_PROG ": no input found\n");
		rc = -1;
	}
	tests = rc == 0 ? calloc(l.n, sizeof(*tests)) : NULL;
	if (rc == 0 && !tests) {
		fprintf(stderr, FUZZ_PROG ": out of memory\n");
		rc = -1;
	}
	if (rc == 0) {
		for (size_t i = 0; i < l.n; i++) {
			struct CMUnitTest t =
				cmocka_unit_test_prestate(replay_one, &l.v[i]);

			t.name = l.v[i].name;
			tests[i] = t;
		}
		rc = _cmocka_run_group_tests(FUZZ_GROUP, tests, l.n, NULL,
		                             NULL);
	} else {
		rc = 1;
	}
	free(tests);
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i].path);
	free(l.v);
	return rc;
}
