/*
 * key_fetch: fetch one key through the product's key providers
 * (lib/keys.c), for the script suites (tests/suite/barbican/run.sh).
 *
 *   key_fetch CONFIG KEY_ID [EXPECTED_FILE]
 *
 * Logs at debug level to stderr (so a suite can grep the whole log for a
 * planted key, its id and the token). Prints "ok N bytes" and, with
 * EXPECTED_FILE, "matches" or "differs"; on failure prints the public
 * error message and exits 1. The key itself is never printed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/config.h>
#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "keys.h"

int main(int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_secret_key *key = NULL;
	struct vmd_config cfg;
	unsigned char want[VMD_KEY_MAX + 1];
	size_t wlen = 0;
	FILE *f;
	int same;

	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: key_fetch CONFIG KEY_ID [EXPECTED]\n");
		return 2;
	}
	vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_DEBUG, "key_fetch");
	if (vmd_config_load(&cfg, argv[1], &err) < 0) {
		printf("error: %s\n", err.msg);
		return 1;
	}
	vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_DEBUG, "key_fetch");
	if (vmd_key_get(&cfg, argv[2], &key, &err) < 0) {
		printf("error: %s\n", err.msg);
		vmd_log_error("key_fetch failed: %s (%s)", err.msg, err.detail);
		return 1;
	}
	printf("ok %zu bytes\n", key->len);
	if (argc == 4) {
		f = fopen(argv[3], "rb");
		if (f) {
			wlen = fread(want, 1, sizeof(want), f);
			fclose(f);
		}
		same = wlen == key->len && memcmp(want, key->bytes, wlen) == 0;
		printf("%s\n", same ? "matches" : "differs");
	}
	/* The suite checks this line is redacted in the log. */
	vmd_log_debug("key_fetch: the key is %s", key->raw);
	vmd_key_free(key);
	return 0;
}
