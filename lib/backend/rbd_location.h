/*
 * The rbd:// location of an image snapshot (Glance's rbd store writes them
 * into an image's direct_url and locations): rbd://FSID/POOL/IMAGE/SNAP.
 * Pure (a string in, the four parts out, no I/O) and in the library rather
 * than in the rbd module, so that the fuzz target (tests/fuzz/
 * fuzz_rbd_location.c) links it without librbd.
 */
#ifndef VMDISK_RBD_LOCATION_H
#define VMDISK_RBD_LOCATION_H

#include <vmdisk/error.h>

/* struct vmd_rbd_location and its sizes are in the header of what modules
 * may use: the rbd module gets the parser through the host table. */
#include "module_host.h"

/*
 * Exactly four parts, each [A-Za-z0-9][A-Za-z0-9._-]* with no "..", FSID
 * a UUID. Fills out (cleared first, also on failure) and returns 0, or
 * VMD_E_INVAL. The public message never quotes the location.
 */
int vmd_rbd_location_parse(const char *loc, struct vmd_rbd_location *out,
                           struct vmd_error *err);

#endif
