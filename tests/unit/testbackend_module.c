/*
 * A backend module that exists only for the registry's dlopen test: it
 * proves a loadable table is found by name, checked and used.
 */
#include <vmdisk/backend.h>

#include "vmd_build_config.h"

/* Built in this tree, so it carries the library's stamp. */
VMD_BACKEND_MODULE_STAMP;

static int test_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       bool *exists, struct vmd_error *err)
{
	(void)ctx;
	(void)disk;
	(void)err;
	*exists = true;
	return 0;
}

/* The other required operations: never called by the test. */
static int test_create(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       const struct vmd_image *base, uint64_t size,
                       struct vmd_error *err)
{
	(void)ctx;
	(void)disk;
	(void)base;
	(void)size;
	(void)err;
	return -1;
}

static int test_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                     struct vmd_disk_info *out, struct vmd_error *err)
{
	(void)ctx;
	(void)disk;
	(void)out;
	(void)err;
	return -1;
}

static int test_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       struct vmd_error *err)
{
	(void)ctx;
	(void)disk;
	(void)err;
	return -1;
}

extern const struct vmd_backend_ops vmd_backend_testbackend;
const struct vmd_backend_ops vmd_backend_testbackend = {
	.name = "testbackend",
	.create_from_image = test_create,
	.exists = test_exists,
	.info = test_info,
	.remove = test_remove,
};

/* Same file, a table without the required operations: must be refused. */
extern const struct vmd_backend_ops vmd_backend_incomplete;
const struct vmd_backend_ops vmd_backend_incomplete = {
	.name = "incomplete",
	.exists = test_exists,
};

/* Copied to <dir>/vmdisk-rbd.so by the test, it stands in for the real rbd
 * module to show vmd_backend_get loads a module on first use. */
extern const struct vmd_backend_ops vmd_backend_rbd;
const struct vmd_backend_ops vmd_backend_rbd = {
	.name = "rbd",
	.create_from_image = test_create,
	.exists = test_exists,
	.info = test_info,
	.remove = test_remove,
};
