/*
 * json-c loaded on first use (see jsonc_lazy.h): the table of the calls
 * the project makes, filled once through lazylib.h; the cleanup helpers of
 * cleanup.h (json_object_putp, json_tokener_freep) call through it too.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cleanup.h"
#include "jsonc_lazy.h"
#include "lazylib.h"

#if JSON_C_MAJOR_VERSION != 0 || JSON_C_MINOR_VERSION < 14
#error "LIBJSONC_SONAME below names json-c 0.14 and later's library"
#endif
#define LIBJSONC_SONAME "libjson-c.so.5"

static struct vmd_jsonc_api api_table;

static struct vmd_lazylib lib = VMD_LAZYLIB_INIT;

static void load(void)
{
	struct vmd_jsonc_api api = {0};
	const struct vmd_lazy_sym syms[] = {
		{"json_object_put", &api.put},
		{"json_object_is_type", &api.is_type},
		{"json_object_get_type", &api.get_type},
		{"json_object_get_object", &api.get_object},
		{"json_object_object_length", &api.object_length},
		{"json_object_object_add", &api.object_add},
		{"json_object_object_get_ex", &api.object_get_ex},
		{"json_object_object_del", &api.object_del},
		{"json_object_new_object", &api.new_object},
		{"json_object_new_array", &api.new_array},
		{"json_object_array_add", &api.array_add},
		{"json_object_array_length", &api.array_length},
		{"json_object_array_get_idx", &api.array_get_idx},
		{"json_object_new_string", &api.new_string},
		{"json_object_new_boolean", &api.new_boolean},
		{"json_object_new_int", &api.new_int},
		{"json_object_new_int64", &api.new_int64},
		{"json_object_new_uint64", &api.new_uint64},
		{"json_object_get_string", &api.get_string},
		{"json_object_get_string_len", &api.get_string_len},
		{"json_object_get_boolean", &api.get_boolean},
		{"json_object_get_int64", &api.get_int64},
		{"json_object_to_json_string_ext", &api.to_json_string_ext},
		{"json_tokener_new", &api.tokener_new},
		{"json_tokener_new_ex", &api.tokener_new_ex},
		{"json_tokener_free", &api.tokener_free},
		{"json_tokener_set_flags", &api.tokener_set_flags},
		{"json_tokener_parse", &api.tokener_parse},
		{"json_tokener_parse_ex", &api.tokener_parse_ex},
		{"json_tokener_get_error", &api.tokener_get_error},
		{"json_tokener_get_parse_end", &api.tokener_get_parse_end},
	};

	if (vmd_lazylib_open(&lib, LIBJSONC_SONAME, syms, ELEMENTSOF(syms)) == 0)
		api_table = api;
}

int vmd_jsonc_load(struct vmd_error *err)
{
	return vmd_lazylib_load(&lib, load, "records and JSON need libjson-c",
	                        err);
}

const struct vmd_jsonc_api *vmd_jsonc(void)
{
	pthread_once(&lib.once, load);
	if (lib.rc < 0) {
		/* Only a path without vmd_jsonc_load() gets here: stop rather
		 * than call through an empty table. */
		fprintf(stderr, "vmdisk: json: libjson-c not loaded: %s\n",
		        lib.detail);
		abort();
	}
	return &api_table;
}

/* An object or a tokener exists only once json-c is loaded. */
void vmd_jsonc_put(struct json_object *obj)
{
	json_object_put(obj);
}

void vmd_jsonc_tokener_free(struct json_tokener *tok)
{
	json_tokener_free(tok);
}
