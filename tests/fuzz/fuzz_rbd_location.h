/*
 * The check the fuzz target fuzz_rbd_location.c runs on every input, shared with the
 * corpus replay (replay_corpus.c built for it, see meson.build here) so that
 * each input of corpus/rbd_location/ is a regression test of the ordinary build.
 * True when every rule (listed at the top of fuzz_rbd_location.c) holds; false with
 * the broken one in why.
 */
#ifndef VMDISK_FUZZ_RBD_LOCATION_H
#define VMDISK_FUZZ_RBD_LOCATION_H

#include "fuzz_util.h"

VMD_FUZZ_DECLARE_CHECK(rbd_location);

#endif
