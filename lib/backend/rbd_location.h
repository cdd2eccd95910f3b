/*
 * The rbd:// location of an image snapshot (Glance's rbd store writes them
 * into an image's direct_url and locations): rbd://FSID/POOL/IMAGE/SNAP.
 * Pure (a string in, the four parts out, no I/O) and in the library rather
 * than in the rbd module, so that the fuzz target (tests/fuzz/
 * fuzz_rbd_location.c) links it without librbd.
 */
#ifndef VMDISK_RBD_LOCATION_H
#define VMDISK_RBD_LOCATION_H

/* Some of these calls are in the private version node VMDISK_PRIVATE_0
 * of lib/libvmdisk.sym (the rbd module and the CLI use them); the version
 * script, not this pragma, decides which are exported. */
#pragma GCC visibility push(default)

#include <vmdisk/config.h>
#include <vmdisk/error.h>
#include <vmdisk/validate.h>

#define VMD_RBD_IMAGE_NAME_MAX 128 /* "<uuid>_<disk>" fits */
#define VMD_RBD_LOCATION_MAX 512   /* longer is refused */

struct vmd_rbd_location {
	char fsid[VMD_UUID_LEN + 1];
	char pool[VMD_NAME_MAX];
	char image[VMD_RBD_IMAGE_NAME_MAX];
	char snap[VMD_NAME_MAX];
};

/*
 * Exactly four parts, each [A-Za-z0-9][A-Za-z0-9._-]* with no "..", FSID
 * a UUID. Fills out (cleared first, also on failure) and returns 0, or
 * VMD_E_INVAL. The public message never quotes the location.
 */
int vmd_rbd_location_parse(const char *loc, struct vmd_rbd_location *out,
                           struct vmd_error *err);

#pragma GCC visibility pop
#endif
