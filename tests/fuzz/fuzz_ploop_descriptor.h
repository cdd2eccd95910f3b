/*
 * The check the fuzz target fuzz_ploop_descriptor.c runs on every input, shared with the
 * corpus replay (replay_corpus.c built for it, see meson.build here) so that
 * each input of corpus/ploop_descriptor/ is a regression test of the ordinary build.
 * True when every rule (listed at the top of fuzz_ploop_descriptor.c) holds; false with
 * the broken one in why.
 */
#ifndef VMDISK_FUZZ_PLOOP_DESCRIPTOR_H
#define VMDISK_FUZZ_PLOOP_DESCRIPTOR_H

#include "fuzz_util.h"

VMD_FUZZ_DECLARE_CHECK(ploop_descriptor);

#endif
