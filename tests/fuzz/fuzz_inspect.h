/*
 * The check the inspector's fuzz target (fuzz_inspect.c) runs on every
 * input, shared with the corpus replay (replay_corpus.c) so that each input
 * of the corpus is a regression test of the ordinary build.
 */
#ifndef VMDISK_FUZZ_INSPECT_H
#define VMDISK_FUZZ_INSPECT_H

#include "fuzz_util.h"

/*
 * Inspect `size` bytes with the default limits, once without flags and once
 * with VMD_INSPECT_ALLOW_BACKING, and check what must hold of every result
 * whatever the bytes. Returns true when all of it holds; false with the
 * broken rule described in `why` (NUL-terminated, at most whysz bytes).
 * The first call turns the library's logging off.
 */
VMD_FUZZ_DECLARE_CHECK(inspect);

#endif
