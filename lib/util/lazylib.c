/*
 * Loading a system library on first use (see lazylib.h).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "lazylib.h"

int vmd_lazylib_open(struct vmd_lazylib *lib, const char *soname,
                     const struct vmd_lazy_sym *syms, size_t n)
{
	char *detail = lib->detail;
	size_t detailsz = sizeof(lib->detail);
	/* RTLD_NODELETE: the filled pointers outlive every handle. */
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);

	if (!h) {
		snprintf(detail, detailsz, "dlopen: %s", dlerror());
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		void *sym = dlsym(h, syms[i].name);

		if (!sym) {
			snprintf(detail, detailsz, "%s lacks %s", soname,
			         syms[i].name);
			dlclose(h);
			return -1;
		}
		/* POSIX: a function pointer converts to and from void *. */
		memcpy(syms[i].slot, &sym, sizeof(sym));
	}
	lib->rc = 0;
	return 0;
}

int vmd_lazylib_load(struct vmd_lazylib *lib, void (*load)(void),
                     const char *msg, struct vmd_error *err)
{
	pthread_once(&lib->once, load);
	if (lib->rc < 0)
		return vmd_error_set(err, VMD_E_UNSUPPORTED, msg, "%s",
		                     lib->detail);
	return 0;
}
