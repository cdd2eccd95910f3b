/*
 * A system library loaded on first use (curl_lazy.c, cryptsetup_lazy.c):
 * dlopen by soname and every symbol resolved at once, so a missing one is
 * an error at load time, never a crash later. Loaded once per process
 * (pthread_once); the outcome, success or why not, is kept.
 */
#ifndef VMDISK_LAZYLIB_H
#define VMDISK_LAZYLIB_H

#include <pthread.h>
#include <stddef.h>

#include <vmdisk/error.h>

struct vmd_lazy_sym {
	const char *name;
	void *slot; /* a function pointer field to fill */
};

/* One library's load state, a static of its *_lazy.c. */
struct vmd_lazylib {
	pthread_once_t once;
	int rc;           /* 0 once loaded */
	char detail[256]; /* why it is not */
};

#define VMD_LAZYLIB_INIT {PTHREAD_ONCE_INIT, VMD_E_UNSUPPORTED, ""}

/* For the library's load function: 0 (and lib->rc 0) when soname loaded
 * and every symbol filled its slot; else -1 with why in lib->detail (the
 * library is then closed again). */
int vmd_lazylib_open(struct vmd_lazylib *lib, const char *soname,
                     const struct vmd_lazy_sym *syms, size_t n);

/* Run load once per process, then 0 or VMD_E_UNSUPPORTED with msg (what
 * needs the library) and the reason it did not load. */
int vmd_lazylib_load(struct vmd_lazylib *lib, void (*load)(void),
                     const char *msg, struct vmd_error *err);

#endif
