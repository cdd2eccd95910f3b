/*
 * A system library loaded on first use (curl_lazy.c, cryptsetup_lazy.c):
 * dlopen by soname and every symbol resolved at once, so a missing one is
 * an error at load time, never a crash later.
 */
#ifndef VMDISK_LAZYLIB_H
#define VMDISK_LAZYLIB_H

#include <stddef.h>

struct vmd_lazy_sym {
	const char *name;
	void *slot; /* a function pointer field to fill */
};

/* 0 when soname loaded and every symbol filled its slot; else -1 with why
 * in detail (the library is then closed again). */
int vmd_lazylib_open(const char *soname, const struct vmd_lazy_sym *syms,
                     size_t n, char *detail, size_t detailsz);

#endif
