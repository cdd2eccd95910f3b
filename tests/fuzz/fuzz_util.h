/*
 * What every fuzz target shares: logging off once, the error contract every
 * library call keeps, and the one-line header each target declares (a check
 * run by the fuzzer and by the corpus replay, replay_corpus.c).
 */
#ifndef VMDISK_FUZZ_UTIL_H
#define VMDISK_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "fuzz_broken.h"

/* The library logs every error's detail: nowhere, while fuzzing. */
static inline void vmd_fuzz_log_off(const char *tag)
{
	static bool off;

	if (!off) {
		vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, tag);
		off = true;
	}
}

/* Every check's first step: logging off, and `why` empty until a rule breaks. */
static inline void vmd_fuzz_start(const char *tag, char *why, size_t whysz)
{
	vmd_fuzz_log_off(tag);
	if (why && whysz > 0)
		why[0] = '\0';
}

/* NUL-terminated within max, printable ASCII only. */
static inline bool vmd_fuzz_printable(const char *s, size_t max)
{
	for (size_t i = 0; i < max && s[i]; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return memchr(s, '\0', max) != NULL;
}

/*
 * rc is 0 with err clear, or a negative vmd_errc equal to err->code with
 * a non-empty printable public message (the input is never echoed raw).
 */
static inline bool vmd_fuzz_error_contract(int rc, const struct vmd_error *err,
                                           char *why, size_t whysz)
{
	if (rc > 0)
		return vmd_fuzz_broken(why, whysz, "returned %d", rc);
	if (rc == 0) {
		if (err->code != VMD_OK)
			return vmd_fuzz_broken(why, whysz,
			                       "returned 0 with err.code %d",
			                       (int)err->code);
		return true;
	}
	if ((int)err->code != rc)
		return vmd_fuzz_broken(why, whysz, "returned %d, err.code %d", rc,
		                       (int)err->code);
	if (!err->msg[0] || !vmd_fuzz_printable(err->msg, sizeof(err->msg)))
		return vmd_fuzz_broken(why, whysz,
		                       "empty or unprintable public message");
	return true;
}

/* The input as a C string (up to its first NUL), malloc'ed; NULL: OOM. */
static inline char *vmd_fuzz_cstring(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t n = nul ? (size_t)(nul - data) : size;
	char *s = malloc(n + 1);

	if (s) {
		if (n)
			memcpy(s, data, n);
		s[n] = '\0';
	}
	return s;
}

/* Declares vmd_fuzz_<name>_check, as every fuzz_<name>.h does. */
#define VMD_FUZZ_DECLARE_CHECK(name)                                         \
	bool vmd_fuzz_##name##_check(const uint8_t *data, size_t size,       \
	                             char *why, size_t whysz)

/*
 * LLVMFuzzerTestOneInput over check(data, size, why, whysz), for the
 * -DVMD_FUZZER build: a broken rule is printed as "LABEL: broken: ..." (the
 * line bench/fuzz looks for) and aborts.
 */
#define VMD_FUZZ_ENTRY_OF(label, check)                                      \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);        \
	int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)         \
	{                                                                    \
		char why[512];                                               \
                                                                             \
		if (!check(data, size, why, sizeof(why))) {                  \
			fprintf(stderr, label ": broken: %s\n", why);        \
			abort();                                             \
		}                                                            \
		return 0;                                                    \
	}

/* The same over vmd_fuzz_<name>_check, labelled fuzz_<name>. */
#define VMD_FUZZ_ENTRY(name)                                                 \
	VMD_FUZZ_ENTRY_OF("fuzz_" #name, vmd_fuzz_##name##_check)

#endif
