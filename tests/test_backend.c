/*
 * Tests of the backend registry (lib/backend.c): built-in tables, loadable
 * modules found on first use, ABI checks, and the one place that turns a
 * missing operation into an error.
 */
#include <fcntl.h>
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
	assert_null(strstr(err.msg, empty));
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
		cmocka_unit_test(test_module_loaded_on_first_use),
		cmocka_unit_test(test_require_names_the_operation),
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("backend", tests, NULL, NULL);
}
