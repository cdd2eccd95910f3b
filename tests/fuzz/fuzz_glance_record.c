/*
 * Fuzz target of the Glance image record parser (vmd_glance_parse_image,
 * lib/source_glance.c): the input is the body of GET /v2/images/ID, asked
 * for image ID with allowed_disk_formats "raw,qcow2". Rules checked on
 * every input:
 *
 *   - the error contract (fuzz_util.h);
 *   - an accepted record is for ID, and is read by json-c (a second,
 *     independent parse here) as an object whose "status" is exactly
 *     "active" and whose "disk_format" is exactly what meta says, one of
 *     the allowed ones: with the lengths json-c reports, so a string with
 *     a NUL inside ("active\u0000x") never passes as "active" (issue 14,
 *     item 13); no string member the parser reads holds a NUL;
 *   - meta has a positive size, a hash of a known algorithm in lower-case
 *     hex of that algorithm's length, and locations that are '\n'-separated
 *     rbd:// urls of printable ASCII, none twice.
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (meson.build here).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_common.h"
#include "source.h"

#include "fuzz_glance_record.h"

#define ID "c0ffee00-1234-4abc-8def-0123456789ab"
#define ALLOWED "raw,qcow2"

/* The member `key` as json-c holds it: its bytes and its real length. */
static bool member(json_object *o, const char *key, const char **s,
                   size_t *len)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return false;
	*s = json_object_get_string(v);
	*len = (size_t)json_object_get_string_len(v);
	return true;
}

static bool no_nul(json_object *o, const char *key)
{
	const char *s;
	size_t len;

	return !member(o, key, &s, &len) || memchr(s, '\0', len) == NULL;
}

static bool check_record(const uint8_t *data, size_t size, char *why,
                         size_t whysz, const struct vmd_source_meta *m)
{
	static const char *const read_keys[] = {
		"id", "status", "disk_format", "os_hash_algo", "os_hash_value",
		"checksum", "direct_url"};
	json_tokener *tok = json_tokener_new();
	json_object *o;
	const char *s;
	size_t len;
	bool ok = true;

	if (!tok)
		return true;
	o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object))
		ok = vmd_fuzz_broken(why, whysz, "accepted, not a JSON object");
	else if (!member(o, "status", &s, &len) || len != 6 ||
	         memcmp(s, "active", 6) != 0)
		ok = vmd_fuzz_broken(why, whysz, "accepted a status that is "
		                                 "not exactly \"active\"");
	else if (!member(o, "disk_format", &s, &len) ||
	         len != strlen(m->disk_format) ||
	         memcmp(s, m->disk_format, len) != 0)
		ok = vmd_fuzz_broken(why, whysz, "disk_format is not what meta "
		                                 "says");
	else if (!member(o, "id", &s, &len) || len != strlen(ID))
		ok = vmd_fuzz_broken(why, whysz, "accepted another id");
	for (size_t i = 0; ok && i < sizeof(read_keys) / sizeof(*read_keys);
	     i++)
		if (!no_nul(o, read_keys[i]))
			ok = vmd_fuzz_broken(why, whysz, "accepted a NUL in %s",
			                     read_keys[i]);
	json_object_put(o);
	return ok;
}

static bool check_meta(const struct vmd_source_meta *m, char *why,
                       size_t whysz)
{
	size_t want = m->hash_algo == VMD_HASH_MD5      ? 32
	              : m->hash_algo == VMD_HASH_SHA256 ? 64
	              : m->hash_algo == VMD_HASH_SHA512 ? 128
	                                                : 0;
	const char *p;

	if (strcmp(m->disk_format, "raw") && strcmp(m->disk_format, "qcow2"))
		return vmd_fuzz_broken(why, whysz, "format not allowed");
	if (m->size == 0 || m->size > INT64_MAX)
		return vmd_fuzz_broken(why, whysz, "size %llu",
		                       (unsigned long long)m->size);
	if (!want || strnlen(m->hash_hex, sizeof(m->hash_hex)) != want ||
	    strspn(m->hash_hex, "0123456789abcdef") != want)
		return vmd_fuzz_broken(why, whysz, "hash unusable");
	const struct vmd_locations *l = &m->locations;

	if (l->n > VMD_LOCATIONS_MAX || l->used > sizeof(l->buf))
		return vmd_fuzz_broken(why, whysz, "locations out of bounds");
	for (size_t k = 0; k < l->n; k++) {
		size_t n;

		if (l->off[k] >= l->used)
			return vmd_fuzz_broken(why, whysz, "location past the end");
		p = vmd_locations_at(l, k);
		if (!memchr(p, '\0', l->used - l->off[k]))
			return vmd_fuzz_broken(why, whysz,
			                       "location not terminated");
		n = strlen(p);
		if (n < 6 || strncmp(p, "rbd://", 6) != 0)
			return vmd_fuzz_broken(why, whysz, "location not rbd://");
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] <= 0x20 ||
			    (unsigned char)p[i] > 0x7e)
				return vmd_fuzz_broken(why, whysz,
				                       "unprintable location");
		for (size_t q = 0; q < k; q++)
			if (strcmp(vmd_locations_at(l, q), p) == 0)
				return vmd_fuzz_broken(why, whysz,
				                       "location twice");
	}
	return true;
}

VMD_FUZZ_DECLARE_CHECK(glance_record)
{
	static struct vmd_source_meta meta;
	struct vmd_error err = VMD_ERROR_INIT;
	int rc;

	vmd_fuzz_start("fuzz_glance_record", why, whysz);
	memset(&meta, 0, sizeof(meta));
	rc = vmd_glance_parse_image(size ? (const char *)data : "", size, ID,
	                            ALLOWED, &meta, &err);
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
		return false;
	if (rc < 0)
		return true;
	return check_meta(&meta, why, whysz) &&
	       check_record(data, size, why, whysz, &meta);
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(glance_record)
#endif
