/*
 * The enums the public headers share: which backend holds a disk, which
 * format a disk or a base is kept in, and what the inspector found an
 * image to be. validate.h parses and names the first three, inspect.h the
 * last; both include this file, so do config.h, backend.h and vmdisk.h.
 *
 * Threads and state: types only, no calls and no state.
 */
#ifndef VMDISK_TYPES_H
#define VMDISK_TYPES_H

#ifdef __cplusplus
extern "C" {
#endif

/* Where a disk lives (config images_type, vmdisk create --backend). */
enum vmd_backend_kind {
	VMD_BACKEND_DEFAULT = 0, /* qcow2 if use_cow_images, else flat */
	VMD_BACKEND_FLAT,        /* "flat" and its alias "raw" */
	VMD_BACKEND_QCOW2,
	VMD_BACKEND_LVM,
	VMD_BACKEND_RBD,
	VMD_BACKEND_PLOOP,
};

/* The format a disk or a cached base is kept in. */
enum vmd_format {
	VMD_FORMAT_RAW = 0,
	VMD_FORMAT_QCOW2,
	VMD_FORMAT_PLOOP,
};

/* On-disk variant of a ploop image (root.hds); never passed on as text. */
enum vmd_ploop_variant {
	VMD_PLOOP_EXPANDED = 0,
	VMD_PLOOP_RAW,
};

/* What the inspector found an untrusted image to be (inspect.h). */
enum vmd_image_format {
	VMD_IMG_RAW = 0,
	VMD_IMG_QCOW2,
	VMD_IMG_VMDK,
	VMD_IMG_VHD,
	VMD_IMG_VHDX,
	VMD_IMG_VDI,
	VMD_IMG_ISO,
	VMD_IMG_LUKS,
	VMD_IMG_GPT,
	VMD_IMG_MBR,
	VMD_IMG_PARALLELS,
	/* Recognised only to be refused (QEMU would open them, not raw). */
	VMD_IMG_QED,
	VMD_IMG_BOCHS,
	VMD_IMG_CLOOP,
	VMD_IMG_DMG,
	VMD_IMG_FORMAT_COUNT
};

#ifdef __cplusplus
}
#endif
#endif
