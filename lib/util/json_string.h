/*
 * Strings out of JSON we did not write (a Glance image record, a vmdiskd
 * request or reply, an lvs report), taken so that a NUL inside one cannot
 * make it compare as something else.
 *
 * JSON can carry a NUL in a string as "\u0000". json-c keeps it in a value
 * and reports the full length apart, but a C string comparison stops at it:
 * "active\u0000x" would equal "active", "raw\u0000qcow2" would equal "raw".
 * In a member name json-c itself cuts at the NUL, so "status\u0000x" becomes
 * a second "status" that replaces the first; no check after parsing can see
 * that. Hence two checks: the text holds no NUL, raw or escaped, before it
 * is parsed, and every string taken from the tree holds none either.
 */
#ifndef VMDISK_JSON_STRING_H
#define VMDISK_JSON_STRING_H

#include <stdbool.h>
#include <stddef.h>

struct json_object;

/* Whether `text` (len bytes of JSON) holds a NUL byte or a "\u0000"
 * escape anywhere (names and values alike). */
bool vmd_json_text_has_nul(const char *text, size_t len);

/* The string value v, with its length in *len (when len is not NULL);
 * NULL when v is NULL, not a string, or holds a NUL. */
const char *vmd_json_str(struct json_object *v, size_t *len);

/* The same for the member `key` of obj (NULL when absent too). */
const char *vmd_json_string(struct json_object *obj, const char *key,
                            size_t *len);

#endif
