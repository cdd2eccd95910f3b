/*
 * The check the fuzz target fuzz_glance_record.c runs on every input, shared with the
 * corpus replay (replay_corpus.c built for it, see meson.build here) so that
 * each input of corpus/glance_record/ is a regression test of the ordinary build.
 * True when every rule (listed at the top of fuzz_glance_record.c) holds; false with
 * the broken one in why.
 */
#ifndef VMDISK_FUZZ_GLANCE_RECORD_H
#define VMDISK_FUZZ_GLANCE_RECORD_H

#include "fuzz_util.h"

VMD_FUZZ_DECLARE_CHECK(glance_record);

#endif
