/*
 * libzstd, loaded on first use: only a qcow2 image with zstd-compressed
 * clusters needs it (qcow2_image.c), and linking it cost every vmdisk
 * process its loading and relocation. vmd_zstd_load() dlopen()s it by
 * soname and fills the table the ZSTD_* calls below go through.
 *
 * Include this after <zstd.h>; call vmd_zstd_load() before any ZSTD_*
 * call below (qcow2_image.c does before it makes its context).
 */
#ifndef VMDISK_ZSTD_LAZY_H
#define VMDISK_ZSTD_LAZY_H

#include <zstd.h>

#include <vmdisk/error.h>

struct vmd_zstd_api {
	__typeof__(&ZSTD_createDCtx) create_dctx;
	__typeof__(&ZSTD_freeDCtx) free_dctx;
	__typeof__(&ZSTD_DCtx_reset) dctx_reset;
	__typeof__(&ZSTD_decompressStream) decompress_stream;
	__typeof__(&ZSTD_isError) is_error;
};

extern struct vmd_zstd_api vmd_zstd_api;

/* Load libzstd once (thread-safe); later calls only report the outcome. */
int vmd_zstd_load(struct vmd_error *err);

#define ZSTD_createDCtx (*vmd_zstd_api.create_dctx)
#define ZSTD_freeDCtx (*vmd_zstd_api.free_dctx)
#define ZSTD_DCtx_reset (*vmd_zstd_api.dctx_reset)
#define ZSTD_decompressStream (*vmd_zstd_api.decompress_stream)
#define ZSTD_isError (*vmd_zstd_api.is_error)

#endif
