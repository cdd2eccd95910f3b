/*
 * The check the fuzz target fuzz_parallels.c runs on every input, shared with the
 * corpus replay (replay_corpus.c built for it, see meson.build here) so that
 * each input of corpus/parallels/ is a regression test of the ordinary build.
 * True when every rule (listed at the top of fuzz_parallels.c) holds; false with
 * the broken one in why.
 */
#ifndef VMDISK_FUZZ_PARALLELS_H
#define VMDISK_FUZZ_PARALLELS_H

#include "fuzz_util.h"

VMD_FUZZ_DECLARE_CHECK(parallels);

#endif
