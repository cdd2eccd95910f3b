/*
 * The check the qcow2 writer's fuzz target (fuzz_qcow2_write.c) runs on
 * every input, shared with the corpus replay (replay_corpus.c built with
 * -DVMD_FUZZ_TARGET=qcow2_write) so that each input of corpus/qcow2_write/ is a
 * regression test of the ordinary build.
 */
#ifndef VMDISK_FUZZ_QCOW2_WRITE_H
#define VMDISK_FUZZ_QCOW2_WRITE_H

#include "fuzz_util.h"

/*
 * Take the parameters of a new image from the input (virtual size,
 * cluster bits, backing file name and format, a size to grow to), write
 * it with vmd_qcow2_write_new() into a memfd, decode it back and check what
 * must hold (listed at the top of fuzz_qcow2_write.c). Returns true when
 * all of it holds; false with the broken rule described in `why`
 * (NUL-terminated, at most whysz bytes). The first call turns the
 * library's logging off.
 */
VMD_FUZZ_DECLARE_CHECK(qcow2_write);

#endif
