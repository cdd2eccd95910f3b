/*
 * Tests of the key providers (lib/keys.c), file provider on real files:
 * a good key; missing, mode 0644, 0640, a symlink, a directory, too short,
 * too long, a bad id; and a planted key (and its id) that never appears in
 * any log line or error while the provider is used, logs at debug level
 * and the key is printed on purpose. The barbican provider is tested
 * against a real Barbican by tests/suite/barbican/run.sh.
 */
#include <errno.h>
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

#include <vmdisk/config.h>
#include <vmdisk/log.h>

#include "helpers.h"
#include "keys.h"

#define KEY_ID "6a0f3c0e-8b9a-4c53-9d8e-3f1c2b7a9e11"
#define PLANTED "PLANTED-KEY-7f3a9c2e1b5d4e6f8a0b"

struct env {
	char *dir;
	struct vmd_config cfg;
};

static int setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	th_log_capture_start();
	e->dir = th_mkdtemp("keys");
	vmd_config_defaults(&e->cfg);
	snprintf(e->cfg.key_file_dir, sizeof(e->cfg.key_file_dir), "%s",
	         e->dir);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;

	th_log_capture_stop();
	th_rmtree(e->dir);
	free(e->dir);
	free(e);
	return 0;
}

static char *plant(struct env *e, const char *name, const char *text,
                   mode_t mode)
{
	char *p = th_path(e->dir, name);

	th_write_text(p, text);
	assert_int_equal(chmod(p, mode), 0);
	return p;
}

/* Neither the key nor its id appear in the log or in err. */
static void assert_nothing_leaked(const struct vmd_error *err)
{
	const char *log = th_log_text();

	if (strstr(log, PLANTED) || strstr(log, KEY_ID))
		fail_msg("log leaks the key or its id:\n%s", log);
	assert_not_contains(err->msg, PLANTED);
	assert_not_contains(err->detail, PLANTED);
	assert_not_contains(err->msg, KEY_ID);
	assert_not_contains(err->detail, KEY_ID);
}

static int get(struct env *e, struct vmd_secret_key **k,
               struct vmd_error *err)
{
	vmd_error_clear(err);
	return vmd_key_get(&e->cfg, KEY_ID, k, err);
}

static void test_file_ok(void **state)
{
	struct env *e = *state;
	struct vmd_secret_key *k = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	char line[256];

	free(plant(e, KEY_ID, PLANTED "\n", 0600));
	assert_int_equal(get(e, &k, &err), 0);
	assert_non_null(k);
	assert_int_equal(k->len, strlen(PLANTED) + 1);
	assert_memory_equal(k->bytes, PLANTED "\n", k->len);
	/* Printed on purpose, with and without the newline, and as hex:
	 * the redaction catches all three. */
	vmd_log_error("key is %s here", PLANTED);
	vmd_log_error("key is %.*s here", (int)k->len, (const char *)k->bytes);
	vmd_redact(PLANTED, line, sizeof(line));
	assert_string_equal(line, "***");
	vmd_log_error("hex %s", k->hex);
	assert_nothing_leaked(&err);
	/* The lines did reach the log, redacted. */
	assert_contains(th_log_text(), "key is *** here");
	assert_contains(th_log_text(), "hex ***");
	vmd_key_free(k);
	/* After the free the registry no longer holds it. */
	vmd_redact(PLANTED, line, sizeof(line));
	assert_string_equal(line, PLANTED);
}

/* With the redaction registry all but full, a key whose forms cannot all
 * be registered is refused, and nothing of it stays registered. */
static void test_registry_full_refuses_key(void **state)
{
	struct env *e = *state;
	struct vmd_secret_key *k = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	char name[32], line[256];

	free(plant(e, KEY_ID, PLANTED "\n", 0600));
	/* Room for the key id and one form of the key, not for all three
	 * (raw, trimmed, hex). */
	for (int i = 0; i < 94; i++) {
		snprintf(name, sizeof(name), "filler-%03d", i);
		assert_int_equal(vmd_secret_register(name), 0);
	}
	assert_int_equal(get(e, &k, &err), VMD_E_REFUSED);
	assert_null(k);
	assert_string_equal(err.msg, "keys: cannot protect the key in logs");
	vmd_redact(PLANTED, line, sizeof(line));
	assert_string_equal(line, PLANTED);
	/* The slots it took came back: one form and the id fit again. */
	assert_int_equal(vmd_secret_register("filler-x94"), 0);
	assert_int_equal(vmd_secret_register("filler-x95"), 0);
	assert_int_equal(vmd_secret_register("filler-x96"), -1);
	vmd_secret_clear_all();
	assert_int_equal(get(e, &k, &err), 0);
	vmd_key_free(k);
}

static void expect_refused(struct env *e, int code, const char *what)
{
	struct vmd_secret_key *k = NULL;
	struct vmd_error err = VMD_ERROR_INIT;

	assert_int_equal(get(e, &k, &err), code);
	assert_null(k);
	if (!strstr(err.msg, what))
		fail_msg("error '%s' lacks '%s'", err.msg, what);
	/* The failure was logged (with its detail), and leaks nothing. */
	assert_true(th_log_text()[0] != '\0');
	assert_nothing_leaked(&err);
}

static void test_file_missing(void **state)
{
	expect_refused(*state, VMD_E_NOTFOUND, "keys: key file: not found");
}

static void test_file_mode_0644(void **state)
{
	struct env *e = *state;

	free(plant(e, KEY_ID, PLANTED, 0644));
	expect_refused(e, VMD_E_REFUSED, "mode 0600");
}

static void test_file_mode_0640_and_0400(void **state)
{
	struct env *e = *state;
	char *p = plant(e, KEY_ID, PLANTED, 0640);

	expect_refused(e, VMD_E_REFUSED, "mode 0600");
	assert_int_equal(chmod(p, 0400), 0);
	expect_refused(e, VMD_E_REFUSED, "mode 0600");
	free(p);
}

static void test_file_symlink(void **state)
{
	struct env *e = *state;
	char *target = plant(e, "real-key", PLANTED, 0600);
	char *link = th_path(e->dir, KEY_ID);

	assert_int_equal(symlink(target, link), 0);
	expect_refused(e, VMD_E_REFUSED, "symlink");
	free(target);
	free(link);
}

static void test_file_directory(void **state)
{
	struct env *e = *state;
	char *p = th_path(e->dir, KEY_ID);

	assert_int_equal(mkdir(p, 0700), 0);
	expect_refused(e, VMD_E_REFUSED, "not a regular file");
	free(p);
}

static void test_file_too_short_and_too_long(void **state)
{
	struct env *e = *state;
	char *p = plant(e, KEY_ID, "short-key", 0600);
	char big[VMD_KEY_MAX + 2];

	expect_refused(e, VMD_E_REFUSED, "size must be 16 to 1024 bytes");
	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	th_write_text(p, big);
	expect_refused(e, VMD_E_REFUSED, "size must be 16 to 1024 bytes");
	free(p);
}

static void test_bad_id(void **state)
{
	struct env *e = *state;
	static const char *const ids[] = {
		"../../etc/shadow", "", "6a0f3c0e-8b9a-4c53-9d8e-3f1c2b7a9e1",
		"6a0f3c0e-8b9a-4c53-9d8e-3f1c2b7a9e11/..",
		"6a0f3c0e_8b9a_4c53_9d8e_3f1c2b7a9e11",
	};
	struct vmd_secret_key *k = NULL;
	struct vmd_error err = VMD_ERROR_INIT;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		vmd_error_clear(&err);
		assert_int_equal(vmd_key_get(&e->cfg, ids[i], &k, &err),
		                 VMD_E_INVAL);
		assert_null(k);
		assert_string_equal(err.msg, "keys: bad key id");
	}
	vmd_error_clear(&err);
	assert_int_equal(vmd_key_get(&e->cfg, NULL, &k, &err), VMD_E_INVAL);
}

static void test_barbican_needs_config(void **state)
{
	struct env *e = *state;

	snprintf(e->cfg.key_manager, sizeof(e->cfg.key_manager), "barbican");
	expect_refused(e, VMD_E_CONFIG, "barbican_endpoint is not set");
	snprintf(e->cfg.barbican_endpoint, sizeof(e->cfg.barbican_endpoint),
	         "http://127.0.0.1:9");
	expect_refused(e, VMD_E_CONFIG, "barbican_token_file is not set");
}

static void test_config_keys(void **state)
{
	struct vmd_config cfg;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	vmd_config_defaults(&cfg);
	assert_false(cfg.ephemeral_storage_encryption_enabled);
	assert_string_equal(cfg.ephemeral_storage_encryption_cipher,
	                    "aes-xts-plain64");
	assert_int_equal(cfg.ephemeral_storage_encryption_key_size, 512);
	assert_string_equal(cfg.key_manager, "file");
	assert_int_equal(vmd_config_load_string(
	                         &cfg,
	                         "[DEFAULT]\n"
	                         "ephemeral_storage_encryption_enabled = true\n"
	                         "ephemeral_storage_encryption_cipher = "
	                         "aes-cbc-essiv:sha256\n"
	                         "ephemeral_storage_encryption_key_size = 256\n"
	                         "key_manager = barbican\n"
	                         "barbican_endpoint = http://127.0.0.1:9311\n"
	                         "barbican_token_file = /etc/vmdisk/token\n",
	                         &err),
	                 0);
	assert_true(cfg.ephemeral_storage_encryption_enabled);
	assert_string_equal(cfg.key_manager, "barbican");
	assert_errc(vmd_config_load_string(&cfg, "key_manager = vault\n",
	                                   &err),
	            &err, VMD_E_CONFIG);
	vmd_error_clear(&err);
	assert_errc(vmd_config_load_string(
	                    &cfg,
	                    "ephemeral_storage_encryption_cipher = aes;rm\n",
	                    &err),
	            &err, VMD_E_CONFIG);
	vmd_error_clear(&err);
	assert_errc(vmd_config_load_string(&cfg,
	                                   "barbican_endpoint = ftp://x\n",
	                                   &err),
	            &err, VMD_E_CONFIG);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_file_ok),
		T(test_file_missing),
		T(test_registry_full_refuses_key),
		T(test_file_mode_0644),
		T(test_file_mode_0640_and_0400),
		T(test_file_symlink),
		T(test_file_directory),
		T(test_file_too_short_and_too_long),
		T(test_bad_id),
		T(test_barbican_needs_config),
		cmocka_unit_test(test_config_keys),
	};

	return cmocka_run_group_tests_name("keys", tests, NULL, NULL);
}
