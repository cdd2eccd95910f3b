/*
 * The check the qcow2 reader's fuzz target (fuzz_qcow2_read.c) runs on every
 * input, shared with the corpus replay (replay_corpus.c built with
 * -DVMD_FUZZ_TARGET=qcow2_read) so that each input of corpus/qcow2_read/ is a
 * regression test of the ordinary build.
 */
#ifndef VMDISK_FUZZ_QCOW2_READ_H
#define VMDISK_FUZZ_QCOW2_READ_H

#include "fuzz_util.h"

/*
 * Open `size` bytes (copied into a memfd) as a qcow2 block device with the
 * default limits but a virtual size of at most 64 GiB, walk it with
 * vmd_blockdev_status and read what may be data, then open a copy
 * read-write, make a few small writes derived from the input and close it
 * (which flushes), and check what must hold whatever the bytes (listed at
 * the top of fuzz_qcow2_read.c). Returns true when all of it holds; false
 * with the broken rule described in `why` (NUL-terminated, at most whysz
 * bytes). The first call turns the library's logging off.
 */
VMD_FUZZ_DECLARE_CHECK(qcow2_read);

#endif
