/*
 * Tests of lib/log.c: targets and level filtering, the sink, and the secret
 * registry behind vmd_redact().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <vmdisk/log.h>

#include "helpers.h"

struct log_capture {
	char lines[16][512];
	enum vmd_log_level levels[16];
	int n;
};

static void capture_sink(enum vmd_log_level level, const char *line,
                         void *opaque)
{
	struct log_capture *c = opaque;

	if (c->n < 16) {
		c->levels[c->n] = level;
		snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s", line);
	}
}

static int setup(void **state)
{
	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	vmd_log_set_sink(NULL, NULL);
	vmd_secret_clear_all();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	vmd_log_set_sink(NULL, NULL);
	vmd_secret_clear_all();
	return 0;
}

static char *redact(const char *in)
{
	static char out[512];

	vmd_redact(in, out, sizeof(out));
	return out;
}

static void test_sink_gets_redacted_lines(void **state)
{
	struct log_capture c = {.n = 0};

	(void)state;
	assert_int_equal(vmd_secret_register("hunter2-pass"), 0);
	vmd_log_set_sink(capture_sink, &c);
	vmd_log_warning("login with %s as %s", "hunter2-pass", "admin");
	vmd_log_error("plain %d", 42);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.levels[0], VMD_LOG_WARNING);
	assert_string_equal(c.lines[0], "login with *** as admin");
	assert_int_equal(c.levels[1], VMD_LOG_ERROR);
	assert_string_equal(c.lines[1], "plain 42");
	/* The sink gets every level, whatever the target's threshold. */
	vmd_log_debug("debug %s", "hunter2-pass!");
	assert_int_equal(c.n, 3);
	assert_int_equal(c.levels[2], VMD_LOG_DEBUG);
	assert_string_equal(c.lines[2], "debug ***!");

	vmd_log_set_sink(NULL, NULL);
	vmd_log_error("after");
	assert_int_equal(c.n, 3);
}

/* Run `emit` with stderr sent to a file; return what was written. */
static char *stderr_of(void (*emit)(void))
{
	char path[] = "/tmp/vmdisk-log-XXXXXX";
	int fd = mkstemp(path);
	int saved;
	char *buf = calloc(1, 8192);
	ssize_t n;

	assert_true(fd >= 0);
	assert_non_null(buf);
	unlink(path);
	fflush(stderr);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	emit();
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	n = pread(fd, buf, 8191, 0);
	assert_true(n >= 0);
	close(fd);
	return buf;
}

static void emit_all_levels(void)
{
	vmd_log_debug("line-debug");
	vmd_log_info("line-info");
	vmd_log_warning("line-warning %s", "sekrit-value");
	vmd_log_error("line-error");
}

static void test_stderr_level_filtering(void **state)
{
	struct log_capture c = {.n = 0};
	char *out;

	(void)state;
	assert_int_equal(vmd_secret_register("sekrit-value"), 0);
	vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_WARNING, "tident");
	assert_int_equal(vmd_log_get_level(), VMD_LOG_WARNING);
	vmd_log_set_sink(capture_sink, &c);
	out = stderr_of(emit_all_levels);
	assert_string_equal(out, "tident: warning: line-warning ***\n"
	                         "tident: error: line-error\n");
	free(out);
	/* The sink still saw all four. */
	assert_int_equal(c.n, 4);
	vmd_log_set_sink(NULL, NULL);

	vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_DEBUG, NULL);
	out = stderr_of(emit_all_levels);
	assert_contains(out, "tident: debug: line-debug\n");
	assert_contains(out, "tident: info: line-info\n");
	assert_contains(out, "tident: warning: line-warning ***\n");
	assert_contains(out, "tident: error: line-error\n");
	assert_not_contains(out, "sekrit");
	free(out);

	vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_ERROR, "tident");
	out = stderr_of(emit_all_levels);
	assert_string_equal(out, "tident: error: line-error\n");
	free(out);
}

static void test_target_none_is_silent(void **state)
{
	char *out;

	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_DEBUG, "tident");
	out = stderr_of(emit_all_levels);
	assert_string_equal(out, "");
	free(out);
}

static void test_short_secret_refused(void **state)
{
	(void)state;
	assert_int_equal(vmd_secret_register("abc"), -1);
	assert_int_equal(vmd_secret_register(""), -1);
	assert_int_equal(vmd_secret_register(NULL), -1);
	assert_string_equal(redact("abc and abcd"), "abc and abcd");
	assert_int_equal(vmd_secret_register("abcd"), 0);
	assert_string_equal(redact("abc and abcd"), "abc and ***");
}

static void test_unregister(void **state)
{
	(void)state;
	assert_int_equal(vmd_secret_register("token-1234"), 0);
	assert_int_equal(vmd_secret_register("other-5678"), 0);
	assert_string_equal(redact("a token-1234 b other-5678"), "a *** b ***");
	vmd_secret_unregister("token-1234");
	assert_string_equal(redact("a token-1234 b other-5678"),
	                    "a token-1234 b ***");
	/* An unknown secret is ignored. */
	vmd_secret_unregister("never-registered");
	assert_string_equal(redact("other-5678"), "***");
	vmd_secret_clear_all();
	assert_string_equal(redact("a token-1234 b other-5678"),
	                    "a token-1234 b other-5678");
}

/* Two users of one secret (two vmdiskd requests with the same key): the
 * first one done does not lift the redaction of the other. */
static void test_registrations_counted(void **state)
{
	(void)state;
	assert_int_equal(vmd_secret_register("shared-key-1"), 0);
	assert_int_equal(vmd_secret_register("shared-key-1"), 0);
	vmd_secret_unregister("shared-key-1");
	assert_string_equal(redact("k=shared-key-1"), "k=***");
	vmd_secret_unregister("shared-key-1");
	assert_string_equal(redact("k=shared-key-1"), "k=shared-key-1");
}

/* 96 distinct secrets fit (six chunks); the 97th is refused, and every
 * one of the 96 is still redacted; a freed slot is used again. */
static void test_capacity(void **state)
{
	char name[32];

	(void)state;
	for (int i = 0; i < 96; i++) {
		snprintf(name, sizeof(name), "secret-%03d", i);
		assert_int_equal(vmd_secret_register(name), 0);
	}
	assert_int_equal(vmd_secret_register("secret-one-too-many"), -1);
	for (int i = 0; i < 96; i++) {
		snprintf(name, sizeof(name), "secret-%03d", i);
		assert_string_equal(redact(name), "***");
	}
	vmd_secret_unregister("secret-042");
	assert_int_equal(vmd_secret_register("secret-one-too-many"), 0);
	assert_string_equal(redact("secret-one-too-many"), "***");
	vmd_secret_clear_all();
	assert_string_equal(redact("secret-000"), "secret-000");
}

static void test_longest_match(void **state)
{
	(void)state;
	/* Registered short first... */
	assert_int_equal(vmd_secret_register("secret"), 0);
	assert_int_equal(vmd_secret_register("secret123"), 0);
	assert_string_equal(redact("x secret123 y secret z"), "x *** y *** z");
	vmd_secret_clear_all();
	/* ...and long first. */
	assert_int_equal(vmd_secret_register("secret123"), 0);
	assert_int_equal(vmd_secret_register("secret"), 0);
	assert_string_equal(redact("x secret123 y secret z"), "x *** y *** z");
	assert_string_equal(redact("secret12"), "***12");
	/* Adjacent secrets. */
	assert_string_equal(redact("secretsecret123"), "******");
}

static void test_redact_truncation(void **state)
{
	static const char in[] = "pw=hunter22 ok";
	static const char full[] = "pw=*** ok";
	char out[32];

	(void)state;
	assert_int_equal(vmd_secret_register("hunter22"), 0);
	memset(out, 'X', sizeof(out));
	assert_int_equal(vmd_redact(in, out, 0), 0);
	assert_int_equal(out[0], 'X');

	for (size_t sz = 1; sz < 20; sz++) {
		size_t n;

		memset(out, 'X', sizeof(out));
		n = vmd_redact(in, out, sz);
		/* Terminated inside the buffer, nothing written past it. */
		assert_true(n < sz);
		assert_int_equal(out[n], '\0');
		assert_int_equal(strlen(out), n);
		for (size_t i = sz; i < sizeof(out); i++)
			assert_int_equal(out[i], 'X');
		/* A prefix of the redacted text: never "pw=hu...". */
		assert_true(strncmp(out, full, n) == 0);
		assert_null(strchr(out, 'h'));
		if (sz > sizeof(full) - 1)
			assert_string_equal(out, full);
	}
	memset(out, 'X', sizeof(out));
	assert_int_equal(vmd_redact(NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sink_gets_redacted_lines,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_stderr_level_filtering,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_target_none_is_silent,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_secret_refused,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_unregister, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_registrations_counted,
		                                setup, teardown),
		cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_longest_match, setup,
		                                teardown),
		cmocka_unit_test_setup_teardown(test_redact_truncation, setup,
		                                teardown),
	};

	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
