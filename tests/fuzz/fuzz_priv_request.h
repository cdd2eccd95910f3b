/*
 * The check the privileged helper's request parser target
 * (fuzz_priv_request.c) runs on every input, shared with the corpus replay
 * (replay_corpus.c built with -DVMD_FUZZ_PRIV_REQUEST) so that each input
 * of corpus/priv_request/ is a regression test of the ordinary build.
 */
#ifndef VMDISK_FUZZ_PRIV_REQUEST_H
#define VMDISK_FUZZ_PRIV_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parse `size` bytes as one vmdiskd request line and check what must hold
 * whatever the bytes (listed at the top of fuzz_priv_request.c). Returns
 * true when all of it holds; false with the broken rule in `why`.
 * The first call turns the library's logging off.
 */
bool vmd_fuzz_priv_request_check(const uint8_t *data, size_t size, char *why,
                                 size_t whysz);

#endif
