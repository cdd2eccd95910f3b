/*
 * Tests of lib/error.c: first error wins, step prefixes, errno text, and
 * redaction of both texts.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "helpers.h"

struct log_capture {
	char lines[8][1024];
	enum vmd_log_level levels[8];
	int n;
};

static struct log_capture logs;

static void capture_sink(enum vmd_log_level level, const char *line,
                         void *opaque)
{
	struct log_capture *c = opaque;

	if (c->n < 8) {
		c->levels[c->n] = level;
		snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s", line);
	}
}

static int setup(void **state)
{
	(void)state;
	memset(&logs, 0, sizeof(logs));
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	vmd_log_set_sink(capture_sink, &logs);
	vmd_secret_clear_all();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vmd_log_set_sink(NULL, NULL);
	vmd_secret_clear_all();
	return 0;
}

static void test_set_and_log(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_false(vmd_error_is_set(&err));
	assert_int_equal(vmd_error_set(&err, VMD_E_IO, "write: data",
	                               "wrote %d of %d bytes", 3, 10),
	                 VMD_E_IO);
	assert_true(vmd_error_is_set(&err));
	assert_int_equal(err.code, VMD_E_IO);
	assert_string_equal(err.msg, "write: data");
	assert_string_equal(err.detail, "wrote 3 of 10 bytes");
	/* Logged once, at error level, where it happened. */
	assert_int_equal(logs.n, 1);
	assert_int_equal(logs.levels[0], VMD_LOG_ERROR);
	assert_contains(logs.lines[0], "write: data");
	assert_contains(logs.lines[0], "wrote 3 of 10 bytes");

	vmd_error_clear(&err);
	assert_false(vmd_error_is_set(&err));
	assert_int_equal(err.code, VMD_OK);
	assert_string_equal(err.msg, "");
	assert_string_equal(err.detail, "");
	assert_false(vmd_error_is_set(NULL));
}

static void test_first_error_wins(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_error_set(&err, VMD_E_IO, "copy: write", "disk full");
	/* A failing clean-up afterwards returns its own code... */
	assert_int_equal(vmd_error_set(&err, VMD_E_NOTFOUND, "cleanup: unlink",
	                               "already gone"),
	                 VMD_E_NOTFOUND);
	assert_int_equal(vmd_error_set_errno(&err, VMD_E_BUSY, EBUSY, "lock",
	                                     "second"),
	                 VMD_E_BUSY);
	/* ...but the stored error is still the cause. */
	assert_int_equal(err.code, VMD_E_IO);
	assert_string_equal(err.msg, "copy: write");
	assert_string_equal(err.detail, "disk full");
	/* Every one of them was still logged. */
	assert_int_equal(logs.n, 3);
	assert_contains(logs.lines[1], "already gone");
}

static void test_null_err_logs(void **state)
{
	(void)state;
	assert_int_equal(vmd_error_set(NULL, VMD_E_CORRUPT, "check: header",
	                               "bad magic %x", 0xdeadU),
	                 VMD_E_CORRUPT);
	assert_int_equal(logs.n, 1);
	assert_contains(logs.lines[0], "bad magic dead");
}

static void test_prefix(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	/* No error: nothing to prefix. */
	vmd_error_prefix(&err, "create");
	assert_string_equal(err.msg, "");
	vmd_error_prefix(NULL, "create");

	vmd_error_set(&err, VMD_E_IO, "copy base image", "eio");
	vmd_error_prefix(&err, "create");
	assert_string_equal(err.msg, "create: copy base image");
	/* The same step is not stacked twice. */
	vmd_error_prefix(&err, "create");
	assert_string_equal(err.msg, "create: copy base image");
	vmd_error_prefix(&err, "cli");
	assert_string_equal(err.msg, "cli: create: copy base image");
	/* A step that only shares a prefix with the message is added. */
	vmd_error_prefix(&err, "cl");
	assert_string_equal(err.msg, "cl: cli: create: copy base image");
	vmd_error_prefix(&err, NULL);
	assert_string_equal(err.msg, "cl: cli: create: copy base image");
	/* The detail is left alone. */
	assert_string_equal(err.detail, "eio");
}

static void test_prefix_truncates(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char longmsg[VMD_ERROR_MSG_MAX + 50];

	(void)state;
	memset(longmsg, 'm', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	vmd_error_set(&err, VMD_E_IO, longmsg, "x");
	assert_int_equal(strlen(err.msg), VMD_ERROR_MSG_MAX - 1);
	vmd_error_prefix(&err, "step");
	assert_int_equal(strlen(err.msg), VMD_ERROR_MSG_MAX - 1);
	assert_true(strncmp(err.msg, "step: mmm", 9) == 0);
}

static void test_errno_detail(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char want[256];

	(void)state;
	assert_int_equal(vmd_error_set_errno(&err, VMD_E_NOTFOUND, ENOENT,
	                                     "open: base image", "open %s",
	                                     "/var/lib/x"),
	                 VMD_E_NOTFOUND);
	snprintf(want, sizeof(want), "open /var/lib/x: %s", strerror(ENOENT));
	assert_string_equal(err.detail, want);
	assert_string_equal(err.msg, "open: base image");
	assert_int_equal(err.code, VMD_E_NOTFOUND);

	vmd_error_clear(&err);
	vmd_error_set_errno(&err, VMD_E_IO, ENOSPC, "write", "pwrite");
	snprintf(want, sizeof(want), "pwrite: %s", strerror(ENOSPC));
	assert_string_equal(err.detail, want);
}

static void test_detail_truncated(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char big[2000];

	(void)state;
	memset(big, 'd', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	vmd_error_set(&err, VMD_E_IO, "m", "%s", big);
	assert_int_equal(strlen(err.detail), VMD_ERROR_DETAIL_MAX - 1);
	vmd_error_clear(&err);
	vmd_error_set_errno(&err, VMD_E_IO, EIO, "m", "%s", big);
	assert_int_equal(strlen(err.detail), VMD_ERROR_DETAIL_MAX - 1);
}

static void test_redacted(void **state)
{
	static const char secret[] = "Pa55phrase!";
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	/* Without registration the text is kept as is. */
	vmd_error_set(&err, VMD_E_INVAL, "key Pa55phrase! refused", "x");
	assert_string_equal(err.msg, "key Pa55phrase! refused");

	vmd_error_clear(&err);
	logs.n = 0;
	assert_int_equal(vmd_secret_register(secret), 0);
	vmd_error_set(&err, VMD_E_INVAL, "key Pa55phrase! refused",
	              "luks open with '%s' failed", secret);
	assert_string_equal(err.msg, "key *** refused");
	assert_string_equal(err.detail, "luks open with '***' failed");
	assert_int_equal(logs.n, 1);
	assert_not_contains(logs.lines[0], secret);
	assert_contains(logs.lines[0], "***");

	vmd_error_clear(&err);
	vmd_error_set_errno(&err, VMD_E_IO, EACCES, secret, "%s", secret);
	assert_string_equal(err.msg, "***");
	assert_not_contains(err.detail, secret);
}

static void test_errc_name(void **state)
{
	static const struct {
		enum vmd_errc code;
		const char *name;
	} names[] = {
		{VMD_OK, "ok"},
		{VMD_E_INVAL, "invalid"},
		{VMD_E_NOTFOUND, "not-found"},
		{VMD_E_EXISTS, "exists"},
		{VMD_E_IO, "io"},
		{VMD_E_NOMEM, "no-memory"},
		{VMD_E_EXTERNAL, "external"},
		{VMD_E_UNSUPPORTED, "unsupported"},
		{VMD_E_CONFIG, "config"},
		{VMD_E_REFUSED, "refused"},
		{VMD_E_TOOSMALL, "too-small"},
		{VMD_E_BUSY, "busy"},
		{VMD_E_CORRUPT, "corrupt"},
	};
	const size_t n = sizeof(names) / sizeof(names[0]);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(vmd_errc_name(names[i].code),
		                    names[i].name);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(vmd_errc_name(names[i].code),
			                        vmd_errc_name(names[j].code));
	}
	assert_string_equal(vmd_errc_name((enum vmd_errc)-99), "unknown");
	assert_string_equal(vmd_errc_name((enum vmd_errc)5), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_set_and_log, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_first_error_wins, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_null_err_logs, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefix_truncates, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_errno_detail, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_detail_truncated, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_redacted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errc_name, setup,
		                                teardown),
	};

	return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
