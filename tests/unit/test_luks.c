/*
 * Tests of lib/luks.c on the host (no device-mapper here: opening a
 * mapping is tested in the VM, tests/suite/vm/): LUKS2 format of a file with
 * the cipher and key size from the config and a key from the file
 * provider; the header is LUKS2 for our inspector and for `cryptsetup
 * luksDump`; the key opens it (checked without a mapping), another key
 * does not; the key is in no log line, error or in the file in clear.
 */
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

#include <vmdisk/config.h>
#include <vmdisk/inspect.h>
#include <vmdisk/log.h>

#include "helpers.h"
#include "keys.h"
#include "luks.h"

#define KEY_ID "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
#define OTHER_ID "1b4e28ba-2fa1-11d2-883f-0016d3cca428"
#define PLANTED "LUKS-PLANTED-KEY-c0ffee1234567890abcdef"

static void plant(const char *dir, const char *id, const char *text)
{
	char *p = th_path(dir, id);

	th_write_text(p, text);
	assert_int_equal(chmod(p, 0600), 0);
	free(p);
}

static bool file_contains(const char *path, const char *needle)
{
	FILE *f = fopen(path, "rb");
	size_t n = strlen(needle), got;
	char *buf = malloc(1 << 20);
	bool found = false;

	assert_non_null(f);
	/* Overlapping windows so a match across two reads is seen. */
	while ((got = fread(buf, 1, 1 << 20, f)) > 0 && !found) {
		found = memmem(buf, got, needle, n) != NULL;
		if (got == (1 << 20))
			fseek(f, -(long)n, SEEK_CUR);
		else
			break;
	}
	fclose(f);
	free(buf);
	return found;
}

static void test_format_and_check(void **state)
{
	char *dir = th_mkdtemp("luks");
	char *keys = th_path(dir, "keys");
	char *img = th_path(dir, "disk.img");
	struct vmd_config cfg;
	struct vmd_secret_key *key = NULL, *other = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result res;
	char *out = NULL, *errout = NULL;
	int fd;

	(void)state;
	th_log_capture_start();
	assert_int_equal(mkdir(keys, 0700), 0);
	plant(keys, KEY_ID, PLANTED);
	plant(keys, OTHER_ID, "another-key-of-enough-bytes");
	vmd_config_defaults(&cfg);
	snprintf(cfg.key_file_dir, sizeof(cfg.key_file_dir), "%s", keys);
	assert_int_equal(vmd_key_get(&cfg, KEY_ID, &key, &err), 0);
	assert_int_equal(vmd_key_get(&cfg, OTHER_ID, &other, &err), 0);

	fd = open(img, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 32 << 20), 0);
	close(fd);

	assert_int_equal(vmd_luks_format(&cfg, img, key, &err), 0);

	/* Our inspector sees LUKS... */
	fd = open(img, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	vmd_inspect_limits_default(&lim);
	assert_int_equal(vmd_inspect_fd(fd, &lim, 0, &res, &err), 0);
	close(fd);
	assert_int_equal(res.format, VMD_IMG_LUKS);

	/* ... and cryptsetup reads a LUKS2 header with our cipher. */
	{
		const char *argv[] = {"cryptsetup", "luksDump", img, NULL};

		assert_int_equal(th_run(argv, NULL, &out, &errout), 0);
		assert_contains(out, "Version:       \t2");
		assert_contains(out, "aes-xts-plain64");
		assert_contains(out, "512 bits");
		assert_contains(out, "pbkdf2");
		assert_not_contains(out, PLANTED);
		free(out);
		free(errout);
	}

	assert_int_equal(vmd_luks_check_key(img, key, &err), 0);
	assert_int_equal(vmd_luks_check_key(img, other, &err), VMD_E_REFUSED);
	assert_string_equal(err.msg, "luks: the key does not open the volume");

	/* The key nowhere in clear: not in the file, log or error. */
	assert_false(file_contains(img, PLANTED));
	assert_contains(th_log_text(), "LUKS2");
	assert_not_contains(th_log_text(), PLANTED);
	assert_not_contains(th_log_text(), KEY_ID);
	assert_not_contains(err.detail, PLANTED);

	vmd_key_free(key);
	vmd_key_free(other);
	th_log_capture_stop();
	th_rmtree(dir);
	free(img);
	free(keys);
	free(dir);
}

static void test_bad_params(void **state)
{
	char *dir = th_mkdtemp("luks");
	char *keys = th_path(dir, "keys");
	char *img = th_path(dir, "disk.img");
	struct vmd_config cfg;
	struct vmd_secret_key *key = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	char path[256];

	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	assert_int_equal(mkdir(keys, 0700), 0);
	plant(keys, KEY_ID, PLANTED);
	vmd_config_defaults(&cfg);
	snprintf(cfg.key_file_dir, sizeof(cfg.key_file_dir), "%s", keys);
	assert_int_equal(vmd_key_get(&cfg, KEY_ID, &key, &err), 0);
	th_write_pattern(img, 32 << 20, 7);

	cfg.ephemeral_storage_encryption_key_size = 500;
	assert_int_equal(vmd_luks_format(&cfg, img, key, &err), VMD_E_CONFIG);
	vmd_error_clear(&err);
	cfg.ephemeral_storage_encryption_key_size = 512;
	snprintf(cfg.ephemeral_storage_encryption_cipher,
	         sizeof(cfg.ephemeral_storage_encryption_cipher), "aes");
	assert_int_equal(vmd_luks_format(&cfg, img, key, &err), VMD_E_CONFIG);
	/* Not a LUKS device. */
	vmd_error_clear(&err);
	assert_int_equal(vmd_luks_check_key(img, key, &err), VMD_E_CORRUPT);
	/* Mapping names are file tokens. */
	vmd_error_clear(&err);
	assert_int_equal(vmd_luks_open(img, "../x", key, path, sizeof(path),
	                               &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	assert_int_equal(vmd_luks_close("a/b", &err), VMD_E_INVAL);
	vmd_key_free(key);
	th_rmtree(dir);
	free(img);
	free(keys);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_and_check),
		cmocka_unit_test(test_bad_params),
	};

	return cmocka_run_group_tests_name("luks", tests, NULL, NULL);
}
