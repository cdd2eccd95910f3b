/*
 * Reading back the ploop DiskDescriptor.xml that lib/backend_ploop.c
 * writes: which variant of root.hds the disk holds. Pure (bytes in, the
 * variant out, no I/O), so that tests/fuzz/fuzz_ploop_descriptor.c can
 * fuzz it on memory buffers.
 */
#ifndef VMDISK_PLOOP_DESCRIPTOR_H
#define VMDISK_PLOOP_DESCRIPTOR_H

#include <stddef.h>

#include <vmdisk/error.h>
#include <vmdisk/validate.h>

#define VMD_PLOOP_DESCRIPTOR_MAX 65536 /* bytes; a bigger one is refused */

/*
 * The variant named by the descriptor's only <Type> element:
 * "<Type>Plain</Type>" is VMD_PLOOP_RAW, "<Type>Compressed</Type>"
 * VMD_PLOOP_EXPANDED. VMD_E_CORRUPT (*v untouched) for anything else: no
 * <Type>, two of them, another type, a NUL byte, or more than
 * VMD_PLOOP_DESCRIPTOR_MAX bytes.
 */
int vmd_ploop_descriptor_variant(const char *buf, size_t len,
                                 enum vmd_ploop_variant *v,
                                 struct vmd_error *err);

#endif
