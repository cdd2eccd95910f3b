/*
 * libzstd loaded on first use (see zstd_lazy.h): the table of the calls
 * the project makes, filled once through lazylib.h.
 */
#include "cleanup.h"
#include "lazylib.h"
#include "zstd_lazy.h"

#if ZSTD_VERSION_MAJOR != 1
#error "LIBZSTD_SONAME below names zstd 1's library"
#endif
#define LIBZSTD_SONAME "libzstd.so.1"

struct vmd_zstd_api vmd_zstd_api;

static struct vmd_lazylib lib = VMD_LAZYLIB_INIT;

static void load(void)
{
	struct vmd_zstd_api api = {0};
	const struct vmd_lazy_sym syms[] = {
		{"ZSTD_createDCtx", &api.create_dctx},
		{"ZSTD_freeDCtx", &api.free_dctx},
		{"ZSTD_DCtx_reset", &api.dctx_reset},
		{"ZSTD_decompressStream", &api.decompress_stream},
		{"ZSTD_isError", &api.is_error},
	};

	if (vmd_lazylib_open(&lib, LIBZSTD_SONAME, syms, ELEMENTSOF(syms)) == 0)
		vmd_zstd_api = api;
}

int vmd_zstd_load(struct vmd_error *err)
{
	return vmd_lazylib_load(&lib, load,
	                        "zstd-compressed clusters need libzstd", err);
}
