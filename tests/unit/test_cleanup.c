/*
 * Tests of lib/cleanup.h and lib/cleanup.c: the cleanup functions run on
 * scope exit and leave the variable empty, TAKE_FD/TAKE_PTR hand a value
 * over so it is not cleaned, closep keeps errno, ELEMENTSOF counts, and
 * struct vmd_buf grows, stays terminated and never passes its bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cleanup.h"

static int open_null(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

static void test_closep_on_scope_exit(void **state)
{
	int seen;

	(void)state;
	{
		_cleanup_(closep) int fd = open_null();

		seen = fd;
		assert_true(fd_is_open(seen));
	}
	assert_false(fd_is_open(seen));
}

static void test_closep_keeps_errno(void **state)
{
	int fd = open_null();

	(void)state;
	errno = ENOSPC;
	closep(&fd);
	assert_int_equal(errno, ENOSPC);
	assert_int_equal(fd, -1);
	closep(&fd); /* -1: nothing to do */
	assert_int_equal(errno, ENOSPC);
}

static int handed_over(void)
{
	_cleanup_(closep) int fd = open_null();

	return TAKE_FD(fd);
}

static char *handed_over_ptr(void)
{
	_cleanup_(freep) char *p = strdup("kept");

	assert_non_null(p);
	return TAKE_PTR(p);
}

static void test_take(void **state)
{
	int fd = handed_over();
	char *p = handed_over_ptr();

	(void)state;
	assert_true(fd_is_open(fd));
	close(fd);
	assert_string_equal(p, "kept");
	free(p);
}

static void test_freep_and_defined(void **state)
{
	char *p = strdup("x");
	FILE *f = fopen("/dev/null", "r");

	(void)state;
	freep(&p);
	assert_null(p);
	assert_non_null(f);
	fclosep(&f);
	assert_null(f);
	fclosep(&f); /* NULL: nothing to do */
}

static void test_elementsof(void **state)
{
	static const int a[7];
	struct {
		char names[3][8];
	} s;

	(void)state;
	(void)a;
	assert_int_equal(ELEMENTSOF(a), 7);
	assert_int_equal(ELEMENTSOF(s.names), 3);
	_Static_assert(ELEMENTSOF(a) == 7, "usable in constant expressions");
}

static void test_buf_grows(void **state)
{
	_cleanup_(vmd_buf_free) struct vmd_buf b = VMD_BUF_INIT;
	char big[5000];

	(void)state;
	memset(big, 'a', sizeof(big));
	assert_int_equal(vmd_buf_puts(&b, "<disk"), 0);
	assert_int_equal(vmd_buf_printf(&b, " n='%d'", 42), 0);
	assert_string_equal(b.data, "<disk n='42'");
	assert_int_equal(vmd_buf_append(&b, big, sizeof(big)), 0);
	assert_int_equal(b.len, 12 + sizeof(big));
	assert_int_equal(b.data[b.len], '\0');
	assert_false(b.failed);
}

static void test_buf_bound(void **state)
{
	_cleanup_(vmd_buf_free) struct vmd_buf b = {.max = 8};

	(void)state;
	assert_int_equal(vmd_buf_append(&b, "12345678", 8), 0);
	assert_true(b.cap <= 9); /* never more than max + 1 allocated */
	errno = 0;
	assert_int_equal(vmd_buf_append(&b, "9", 1), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_true(b.failed);
	assert_string_equal(b.data, "12345678"); /* unchanged */
	/* Sticky: a later append that would fit fails too. */
	vmd_buf_clear(&b);
	assert_false(b.failed);
	assert_int_equal(b.len, 0);
	assert_string_equal(b.data, "");
	assert_int_equal(vmd_buf_printf(&b, "%s", "123456789"), -1);
	assert_int_equal(vmd_buf_append(&b, "1", 1), -1);
}

static void test_buf_bound_size_max(void **state)
{
	_cleanup_(vmd_buf_free) struct vmd_buf b = {.max = SIZE_MAX};

	(void)state;
	assert_int_equal(vmd_buf_append(&b, "abc", 3), 0);
	assert_string_equal(b.data, "abc");
}

static void test_buf_steal(void **state)
{
	struct vmd_buf b = VMD_BUF_INIT;
	char *s;

	(void)state;
	s = vmd_buf_steal(&b);
	assert_string_equal(s, "");
	free(s);
	assert_int_equal(vmd_buf_puts(&b, "text"), 0);
	s = vmd_buf_steal(&b);
	assert_string_equal(s, "text");
	assert_null(b.data);
	assert_int_equal(b.len, 0);
	free(s);
	vmd_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_closep_on_scope_exit),
		cmocka_unit_test(test_closep_keeps_errno),
		cmocka_unit_test(test_take),
		cmocka_unit_test(test_freep_and_defined),
		cmocka_unit_test(test_elementsof),
		cmocka_unit_test(test_buf_grows),
		cmocka_unit_test(test_buf_bound),
		cmocka_unit_test(test_buf_bound_size_max),
		cmocka_unit_test(test_buf_steal),
	};

	return cmocka_run_group_tests_name("cleanup", tests, NULL, NULL);
}
