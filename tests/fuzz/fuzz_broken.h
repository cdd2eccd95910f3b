/*
 * What the fuzz targets' checks share: a rule was broken, so say which in
 * `why` (when the caller gave room for it) and answer false, letting a
 * check read `return vmd_fuzz_broken(why, whysz, "...", ...)`.
 */
#ifndef VMDISK_FUZZ_BROKEN_H
#define VMDISK_FUZZ_BROKEN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

static inline bool vmd_fuzz_vbroken(char *why, size_t whysz, const char *fmt,
                                    va_list ap)
	__attribute__((format(printf, 3, 0)));

static inline bool vmd_fuzz_vbroken(char *why, size_t whysz, const char *fmt,
                                    va_list ap)
{
	if (why && whysz > 0)
		vsnprintf(why, whysz, fmt, ap);
	return false;
}

static inline bool vmd_fuzz_broken(char *why, size_t whysz, const char *fmt,
                                   ...) __attribute__((format(printf, 3, 4)));

static inline bool vmd_fuzz_broken(char *why, size_t whysz, const char *fmt,
                                   ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmd_fuzz_vbroken(why, whysz, fmt, ap);
	va_end(ap);
	return false;
}

#endif
