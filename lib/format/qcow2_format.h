/*
 * The qcow2 on-disk constants, in one place for the decoder
 * (qcow2_header.c), the writer (qcow2.c), the engine (qcow2_image.c) and
 * the inspector (inspect_qcow2.c). Values are QEMU's
 * docs/interop/qcow2.txt; ../shared/FORMATS.md has the field layout.
 */
#ifndef VMDISK_QCOW2_FORMAT_H
#define VMDISK_QCOW2_FORMAT_H

/* "QFI\xfb": qcow (version 1) and qcow2 (versions 2 and 3) share it. */
#define VMD_QCOW2_MAGIC 0x514649fbu
#define VMD_QCOW2_MAGIC_BYTES "QFI\xfb"

/* Header lengths: v2 is fixed, v3 says its own (at least 104; qemu
 * writes 112 with the compression type byte and its padding). */
#define VMD_QCOW2_HEADER_V2_LEN 72u
#define VMD_QCOW2_HEADER_V3_MIN_LEN 104u
#define VMD_QCOW2_HEADER_V3_LEN 112u
/* Byte offset of the compression type (v3, header_length > 104). */
#define VMD_QCOW2_COMPRESSION_TYPE_OFF 104u

/* What we read of cluster 0: every name and extension must lie in it. */
#define VMD_QCOW2_HEADER_READ 65536u

/* Cluster sizes QEMU accepts: 512 bytes .. 2 MiB. */
#define VMD_QCOW2_MIN_CLUSTER_BITS 9u
#define VMD_QCOW2_MAX_CLUSTER_BITS 21u
#define VMD_QCOW2_DEFAULT_CLUSTER_BITS 16u
/* Extended L2 entries need subclusters of at least 512 bytes. */
#define VMD_QCOW2_EXTL2_MIN_CLUSTER_BITS 14u
#define VMD_QCOW2_MAX_REFCOUNT_ORDER 6u
#define VMD_QCOW2_DEFAULT_REFCOUNT_ORDER 4u /* 16-bit refcounts */

/* The backing file name: QEMU's limit. */
#define VMD_QCOW2_BACKING_NAME_MAX 1023u
/* The backing format extension: our limit (names like "raw", "qcow2"). */
#define VMD_QCOW2_BACKING_FORMAT_MAX 31u

/* Header extension types. */
#define VMD_QCOW2_EXT_END 0x00000000u
#define VMD_QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define VMD_QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define VMD_QCOW2_EXT_BITMAPS 0x23852875u
#define VMD_QCOW2_EXT_CRYPTO 0x0537be77u
#define VMD_QCOW2_EXT_DATA_FILE 0x44415441u /* "DATA" */

/* Incompatible feature bits. */
#define VMD_QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define VMD_QCOW2_INCOMPAT_CORRUPT (1ull << 1)
#define VMD_QCOW2_INCOMPAT_DATA_FILE (1ull << 2)
#define VMD_QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define VMD_QCOW2_INCOMPAT_EXTL2 (1ull << 4)
#define VMD_QCOW2_INCOMPAT_KNOWN 0x1full

/* Compression types (the byte at VMD_QCOW2_COMPRESSION_TYPE_OFF). */
#define VMD_QCOW2_COMPRESSION_ZLIB 0u
#define VMD_QCOW2_COMPRESSION_ZSTD 1u

/* Snapshot table: a fixed part of 40 bytes per entry at least. */
#define VMD_QCOW2_SNAPSHOT_HEADER_MIN 40u

/* Table entries. */
#define VMD_QCOW2_L1E_OFFSET_MASK 0x00fffffffffffe00ull
#define VMD_QCOW2_L2E_OFFSET_MASK 0x00fffffffffffe00ull
#define VMD_QCOW2_RTE_OFFSET_MASK 0xfffffffffffffe00ull
#define VMD_QCOW2_OFLAG_COPIED (1ull << 63)
#define VMD_QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define VMD_QCOW2_OFLAG_ZERO 1ull

#endif
