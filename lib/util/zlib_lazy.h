/*
 * zlib, loaded on first use: only a qcow2 image with deflate-compressed
 * clusters needs it (qcow2_image.c). vmd_zlib_load() dlopen()s it by
 * soname and fills the table the inflate calls below go through.
 *
 * Include this after <zlib.h>; call vmd_zlib_load() before inflateInit2
 * (qcow2_image.c does).
 */
#ifndef VMDISK_ZLIB_LAZY_H
#define VMDISK_ZLIB_LAZY_H

#include <zlib.h>

#include <vmdisk/error.h>

struct vmd_zlib_api {
	__typeof__(&inflateInit2_) init2;
	__typeof__(&inflate) run;
	__typeof__(&inflateEnd) end;
};

extern struct vmd_zlib_api vmd_zlib_api;

/* Load zlib once (thread-safe); later calls only report the outcome. */
int vmd_zlib_load(struct vmd_error *err);

/* inflateInit2 is zlib's macro over inflateInit2_ (version, struct size). */
#define inflateInit2_ (*vmd_zlib_api.init2)
#define inflate (*vmd_zlib_api.run)
#define inflateEnd (*vmd_zlib_api.end)

#endif
