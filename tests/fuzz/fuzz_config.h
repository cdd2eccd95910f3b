/*
 * The check the fuzz target fuzz_config.c runs on every input, shared with the
 * corpus replay (replay_corpus.c built for it, see meson.build here) so that
 * each input of corpus/config/ is a regression test of the ordinary build.
 * True when every rule (listed at the top of fuzz_config.c) holds; false with
 * the broken one in why.
 */
#ifndef VMDISK_FUZZ_CONFIG_H
#define VMDISK_FUZZ_CONFIG_H

#include "fuzz_util.h"

VMD_FUZZ_DECLARE_CHECK(config);

#endif
