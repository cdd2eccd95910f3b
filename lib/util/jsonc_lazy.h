/*
 * json-c, loaded on first use: the instance records, the cache's side
 * records, the privileged helper's protocol, Glance's replies and the
 * CLI's --json output use it, but `vmdisk --version` and `vmdisk inspect`
 * do not, and linking it cost every process its loading (one more object
 * for the dynamic loader, some 0.1 ms). vmd_jsonc_load() dlopen()s it by
 * soname and fills the table the json_* calls below go through.
 *
 * Include this after <json-c/json.h> (it includes it). Every function that
 * starts JSON work with a struct vmd_error at hand calls vmd_jsonc_load()
 * first, so that a missing library is a clean error naming the step
 * (record_load, write_info, the protocol's parsers, the CLI's --json...).
 * Every call below also goes through vmd_jsonc(), which loads the library
 * if that was not done: a path that forgot the explicit load still works,
 * and one that cannot load it stops the process (abort, no NULL call)
 * rather than run on.
 */
#ifndef VMDISK_JSONC_LAZY_H
#define VMDISK_JSONC_LAZY_H

#include <json-c/json.h>

#include <vmdisk/error.h>

struct vmd_jsonc_api {
	__typeof__(&json_object_put) put;
	__typeof__(&json_object_is_type) is_type;
	__typeof__(&json_object_get_type) get_type;
	__typeof__(&json_object_get_object) get_object;
	__typeof__(&json_object_object_length) object_length;
	__typeof__(&json_object_object_add) object_add;
	__typeof__(&json_object_object_get_ex) object_get_ex;
	__typeof__(&json_object_object_del) object_del;
	__typeof__(&json_object_new_object) new_object;
	__typeof__(&json_object_new_array) new_array;
	__typeof__(&json_object_array_add) array_add;
	__typeof__(&json_object_array_length) array_length;
	__typeof__(&json_object_array_get_idx) array_get_idx;
	__typeof__(&json_object_new_string) new_string;
	__typeof__(&json_object_new_boolean) new_boolean;
	__typeof__(&json_object_new_int) new_int;
	__typeof__(&json_object_new_int64) new_int64;
	__typeof__(&json_object_new_uint64) new_uint64;
	__typeof__(&json_object_get_string) get_string;
	__typeof__(&json_object_get_string_len) get_string_len;
	__typeof__(&json_object_get_boolean) get_boolean;
	__typeof__(&json_object_get_int64) get_int64;
	__typeof__(&json_object_to_json_string_ext) to_json_string_ext;
	__typeof__(&json_tokener_new) tokener_new;
	__typeof__(&json_tokener_new_ex) tokener_new_ex;
	__typeof__(&json_tokener_free) tokener_free;
	__typeof__(&json_tokener_set_flags) tokener_set_flags;
	__typeof__(&json_tokener_parse) tokener_parse;
	__typeof__(&json_tokener_parse_ex) tokener_parse_ex;
	__typeof__(&json_tokener_get_error) tokener_get_error;
	__typeof__(&json_tokener_get_parse_end) tokener_get_parse_end;
};

/* Load json-c once (thread-safe); later calls only report the outcome. */
int vmd_jsonc_load(struct vmd_error *err);

/* The table, loaded if it was not; aborts when json-c cannot be loaded
 * (see above: callers that can report an error call vmd_jsonc_load). */
const struct vmd_jsonc_api *vmd_jsonc(void);

#define json_object_put (*vmd_jsonc()->put)
#define json_object_is_type (*vmd_jsonc()->is_type)
#define json_object_get_type (*vmd_jsonc()->get_type)
#define json_object_get_object (*vmd_jsonc()->get_object)
#define json_object_object_length (*vmd_jsonc()->object_length)
#define json_object_object_add (*vmd_jsonc()->object_add)
#define json_object_object_get_ex (*vmd_jsonc()->object_get_ex)
#define json_object_object_del (*vmd_jsonc()->object_del)
#define json_object_new_object (*vmd_jsonc()->new_object)
#define json_object_new_array (*vmd_jsonc()->new_array)
#define json_object_array_add (*vmd_jsonc()->array_add)
#define json_object_array_length (*vmd_jsonc()->array_length)
#define json_object_array_get_idx (*vmd_jsonc()->array_get_idx)
#define json_object_new_string (*vmd_jsonc()->new_string)
#define json_object_new_boolean (*vmd_jsonc()->new_boolean)
#define json_object_new_int (*vmd_jsonc()->new_int)
#define json_object_new_int64 (*vmd_jsonc()->new_int64)
#define json_object_new_uint64 (*vmd_jsonc()->new_uint64)
#define json_object_get_string (*vmd_jsonc()->get_string)
#define json_object_get_string_len (*vmd_jsonc()->get_string_len)
#define json_object_get_boolean (*vmd_jsonc()->get_boolean)
#define json_object_get_int64 (*vmd_jsonc()->get_int64)
#define json_object_to_json_string_ext (*vmd_jsonc()->to_json_string_ext)
#define json_tokener_new (*vmd_jsonc()->tokener_new)
#define json_tokener_new_ex (*vmd_jsonc()->tokener_new_ex)
#define json_tokener_free (*vmd_jsonc()->tokener_free)
#define json_tokener_set_flags (*vmd_jsonc()->tokener_set_flags)
#define json_tokener_parse (*vmd_jsonc()->tokener_parse)
#define json_tokener_parse_ex (*vmd_jsonc()->tokener_parse_ex)
#define json_tokener_get_error (*vmd_jsonc()->tokener_get_error)
#define json_tokener_get_parse_end (*vmd_jsonc()->tokener_get_parse_end)

#endif
