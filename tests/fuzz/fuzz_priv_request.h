/*
 * The check the privileged helper's request parser target
 * (fuzz_priv_request.c) runs on every input, shared with the corpus replay
 * (replay_corpus.c built with -DVMD_FUZZ_TARGET=priv_request) so that each input
 * of corpus/priv_request/ is a regression test of the ordinary build.
 */
#ifndef VMDISK_FUZZ_PRIV_REQUEST_H
#define VMDISK_FUZZ_PRIV_REQUEST_H

#include "fuzz_util.h"

/*
 * Parse `size` bytes as one vmdiskd request line and check what must hold
 * whatever the bytes (listed at the top of fuzz_priv_request.c). Returns
 * true when all of it holds; false with the broken rule in `why`.
 * The first call turns the library's logging off.
 */
VMD_FUZZ_DECLARE_CHECK(priv_request);

#endif
