/*
 * The check the qcow2 header decoder's fuzz target (fuzz_qcow2_header.c)
 * runs on every input, shared with the corpus replay (replay_corpus.c built
 * with -DVMD_FUZZ_TARGET=qcow2_header) so that each input of corpus/qcow2_header/
 * is a regression test of the ordinary build.
 */
#ifndef VMDISK_FUZZ_QCOW2_HEADER_H
#define VMDISK_FUZZ_QCOW2_HEADER_H

#include "fuzz_util.h"

/*
 * Decode `size` bytes with vmd_qcow2_decode_header() as the head of a file
 * of `size` bytes, and again of a larger file (its size taken from the
 * input's last 8 bytes), and check what must hold of every result
 * (listed at the top of fuzz_qcow2_header.c). Returns true when all of it
 * holds; false with the broken rule described in `why` (NUL-terminated, at
 * most whysz bytes). The first call turns the library's logging off.
 */
VMD_FUZZ_DECLARE_CHECK(qcow2_header);

#endif
