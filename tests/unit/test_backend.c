/*
 * Tests of the backend registry (lib/backend.c): built-in tables, loadable
 * modules found on first use, ABI checks, and the one place that turns a
 * missing operation into an error.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "vmd_build_config.h"
#include <vmdisk/vmdisk.h>

static const char *test_module(void)
{
	const char *m = getenv("VMDISK_TEST_MODULE");

	if (!m)
		fail_msg("VMDISK_TEST_MODULE not set");
	return m;
}

static void test_builtin_tables(void **state)
{
	const struct vmd_backend_ops *ops = NULL;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_backend_get(VMD_BACKEND_FLAT, &ops, &err), 0);
	assert_string_equal(ops->name, "flat");
	assert_non_null(ops->create_from_image);
	assert_non_null(ops->remove);
	assert_int_equal(vmd_backend_get(VMD_BACKEND_QCOW2, &ops, &err), 0);
	assert_string_equal(ops->name, "qcow2");
	/* What a backend can do is which operations it fills in. */
	assert_null(ops->flatten);
}

static void test_unimplemented_backends_say_so(void **state)
{
	const struct vmd_backend_ops *ops = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	char *empty = th_mkdtemp("modules");

	(void)state;
	vmd_backend_set_module_dir(empty);
	assert_int_equal(vmd_backend_get(VMD_BACKEND_RBD, &ops, &err),
	                 VMD_E_UNSUPPORTED);
	assert_string_equal(err.msg, "backend rbd: not supported yet");
	/* The public message does not show where modules live. */
	assert_not_contains(err.msg, empty);
	vmd_error_clear(&err);
	/* Built in: no module directory needed. */
	assert_int_equal(vmd_backend_get(VMD_BACKEND_PLOOP, &ops, &err), 0);
	assert_string_equal(ops->name, "ploop");
	assert_int_equal(vmd_backend_get(VMD_BACKEND_LVM, &ops, &err), 0);
	assert_string_equal(ops->name, "lvm");
	th_rmtree(empty);
	free(empty);
}

static void test_load_module(void **state)
{
	const struct vmd_backend_ops *ops = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	bool exists = false;

	(void)state;
	assert_int_equal(vmd_backend_load_module(test_module(), "testbackend",
	                                         &ops, &err),
	                 0);
	assert_string_equal(ops->name, "testbackend");
	assert_int_equal(ops->exists(NULL, NULL, &exists, &err), 0);
	assert_true(exists);
	assert_null(ops->flatten);
}

static void test_module_checks(void **state)
{
	const struct vmd_backend_ops *ops = NULL;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	/* A table without a required operation is refused. */
	assert_int_equal(vmd_backend_load_module(test_module(), "incomplete",
	                                         &ops, &err),
	                 VMD_E_UNSUPPORTED);
	assert_string_equal(err.detail,
	                    "backend incomplete: module lacks required "
	                    "create_from_image");
	vmd_error_clear(&err);
	assert_int_equal(vmd_backend_load_module(test_module(), "absent", &ops,
	                                         &err),
	                 VMD_E_UNSUPPORTED);
	vmd_error_clear(&err);
	assert_int_equal(vmd_backend_load_module("/nonexistent/x.so", "x", &ops,
	                                         &err),
	                 VMD_E_UNSUPPORTED);
}

/* A module of another build (another version, another backend table) or
 * without a stamp is refused by name; only this build's stamp passes. */
static void test_module_stamp(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_backend_check_stamp("rbd", VMD_BUILD_STAMP, &err),
	                 0);
	assert_false(vmd_error_is_set(&err));
	assert_int_equal(vmd_backend_check_stamp("rbd", "vmdisk-0.0.9-0-0",
	                                         &err),
	                 VMD_E_UNSUPPORTED);
	assert_string_equal(err.msg, "backend module built for another vmdisk");
	vmd_error_clear(&err);
	assert_int_equal(vmd_backend_check_stamp("rbd", VMD_BUILD_STAMP "x",
	                                         &err),
	                 VMD_E_UNSUPPORTED);
	vmd_error_clear(&err);
	assert_int_equal(vmd_backend_check_stamp("rbd", NULL, &err),
	                 VMD_E_UNSUPPORTED);
	assert_string_equal(err.msg, "backend module built for another vmdisk");
	vmd_error_clear(&err);
}

/* Per-context state: open runs once per context, on its first use of the
 * backend; each context has its own; close gets it back in vmd_ctx_free. */
static int hook_opened, hook_closed;
static void *hook_last_closed;

static int hook_open(struct vmd_ctx *ctx, void **priv, struct vmd_error *err)
{
	(void)ctx;
	(void)err;
	hook_opened++;
	*priv = malloc(1);
	return *priv ? 0 : VMD_E_NOMEM;
}

static void hook_close(void *priv)
{
	hook_closed++;
	hook_last_closed = priv;
	free(priv);
}

static const struct vmd_backend_ops hooked = {
	.name = "hooked",
	.open = hook_open,
	.close = hook_close,
};

static void test_context_hooks(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_config cfg;
	struct vmd_ctx *a, *b;
	const struct vmd_backend_ops *flat = NULL;
	void *pa, *pb;

	(void)state;
	vmd_config_defaults(&cfg);
	snprintf(cfg.instances_path, sizeof(cfg.instances_path), "/nonexistent");
	a = vmd_ctx_new(&cfg, &err);
	b = vmd_ctx_new(&cfg, &err);
	assert_non_null(a);
	assert_non_null(b);
	assert_null(vmd_ctx_backend_priv(a, &hooked));
	assert_int_equal(vmd_backend_attach(a, &hooked, &err), 0);
	assert_int_equal(vmd_backend_attach(a, &hooked, &err), 0);
	assert_int_equal(hook_opened, 1);
	assert_int_equal(vmd_backend_attach(b, &hooked, &err), 0);
	assert_int_equal(hook_opened, 2);
	pa = vmd_ctx_backend_priv(a, &hooked);
	pb = vmd_ctx_backend_priv(b, &hooked);
	assert_non_null(pa);
	assert_non_null(pb);
	assert_ptr_not_equal(pa, pb);
	/* A backend without hooks: attached, no state. */
	assert_int_equal(vmd_backend_get(VMD_BACKEND_FLAT, &flat, &err), 0);
	assert_int_equal(vmd_backend_attach(a, flat, &err), 0);
	assert_null(vmd_ctx_backend_priv(a, flat));
	vmd_ctx_free(a);
	assert_int_equal(hook_closed, 1);
	assert_ptr_equal(hook_last_closed, pa);
	vmd_ctx_free(b);
	assert_int_equal(hook_closed, 2);
	assert_ptr_equal(hook_last_closed, pb);
}

static void test_module_loaded_on_first_use(void **state)
{
	const struct vmd_backend_ops *ops = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	char *dir = th_mkdtemp("modules");
	char *dst = th_path(dir, "vmdisk-rbd.so");
	const char *cp[] = {"cp", test_module(), dst, NULL};

	(void)state;
	assert_int_equal(th_run(cp, NULL, NULL, NULL), 0);
	vmd_backend_set_module_dir(dir);
	assert_int_equal(vmd_backend_get(VMD_BACKEND_RBD, &ops, &err), 0);
	assert_string_equal(ops->name, "rbd");
	assert_non_null(ops->exists);
	th_rmtree(dir);
	free(dst);
	free(dir);
}

static void test_require_names_the_operation(void **state)
{
	const struct vmd_backend_ops *ops = NULL;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_backend_get(VMD_BACKEND_QCOW2, &ops, &err), 0);
	assert_int_equal(vmd_backend_require(ops, (const void *)ops->flatten,
	                                     "flatten", &err),
	                 VMD_E_UNSUPPORTED);
	assert_string_equal(err.msg, "backend qcow2 does not support flatten");
	vmd_error_clear(&err);
	assert_int_equal(vmd_backend_require(ops, (const void *)ops->resize,
	                                     "resize", &err),
	                 0);
	assert_false(vmd_error_is_set(&err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_tables),
		cmocka_unit_test(test_unimplemented_backends_say_so),
		cmocka_unit_test(test_load_module),
		cmocka_unit_test(test_module_checks),
		cmocka_unit_test(test_module_stamp),
		cmocka_unit_test(test_context_hooks),
		cmocka_unit_test(test_module_loaded_on_first_use),
		cmocka_unit_test(test_require_names_the_operation),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
