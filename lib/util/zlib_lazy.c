/*
 * zlib loaded on first use (see zlib_lazy.h): the table of the calls the
 * project makes, filled once through lazylib.h.
 */
#include "cleanup.h"
#include "lazylib.h"
#include "zlib_lazy.h"

#define LIBZ_SONAME "libz.so.1"

struct vmd_zlib_api vmd_zlib_api;

static struct vmd_lazylib lib = VMD_LAZYLIB_INIT;

static void load(void)
{
	struct vmd_zlib_api api = {0};
	const struct vmd_lazy_sym syms[] = {
		{"inflateInit2_", &api.init2},
		{"inflate", &api.run},
		{"inflateEnd", &api.end},
	};

	if (vmd_lazylib_open(&lib, LIBZ_SONAME, syms, ELEMENTSOF(syms)) == 0)
		vmd_zlib_api = api;
}

int vmd_zlib_load(struct vmd_error *err)
{
	return vmd_lazylib_load(&lib, load,
	                        "deflate-compressed clusters need zlib", err);
}
