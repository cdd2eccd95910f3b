/*
 * A backend module that exists only for the registry's dlopen test: it
 * proves a loadable table is found by name, checked and used.
 */
#include <vmdisk/backend.h>

static int test_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       bool *exists, struct vmd_error *err)
{
	(void)ctx;
	(void)disk;
	(void)err;
	*exists = true;
	return 0;
}

extern const struct vmd_backend_ops vmd_backend_testbackend;
const struct vmd_backend_ops vmd_backend_testbackend = {
	.abi_version = VMD_BACKEND_ABI_VERSION,
	.name = "testbackend",
	.features = VMD_FEAT_SNAPSHOTS,
	.exists = test_exists,
};

/* Same file, a table claiming a future ABI: must be refused. */
extern const struct vmd_backend_ops vmd_backend_future;
const struct vmd_backend_ops vmd_backend_future = {
	.abi_version = VMD_BACKEND_ABI_VERSION + 1,
	.name = "future",
};

/* Copied to <dir>/vmdisk-rbd.so by the test, it stands in for the real rbd
 * module to show vmd_backend_get loads a module on first use. */
extern const struct vmd_backend_ops vmd_backend_rbd;
const struct vmd_backend_ops vmd_backend_rbd = {
	.abi_version = VMD_BACKEND_ABI_VERSION,
	.name = "rbd",
	.exists = test_exists,
};
