/*
 * NUL-safe strings from untrusted JSON (see json_string.h): one place that
 * every json-c parser of input we did not write goes through, so that a
 * string is either whole or refused, never cut at an embedded NUL.
 */
#include "jsonc_lazy.h"
#include <string.h>

#include "json_string.h"

bool vmd_json_text_has_nul(const char *text, size_t len)
{
	if (memchr(text, '\0', len))
		return true;
	for (size_t i = 0; i < len; i++) {
		if (text[i] != '\\')
			continue;
		/* An escape: "\u0000" is a NUL; any other escaped character
		 * (a "\\" included) is skipped so that it does not start one. */
		if (len - i >= 6 && memcmp(text + i + 1, "u0000", 5) == 0)
			return true;
		i++;
	}
	return false;
}

const char *vmd_json_str(struct json_object *v, size_t *len)
{
	const char *s;
	int n;

	if (!v || !json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	n = json_object_get_string_len(v);
	if (!s || n < 0 || memchr(s, '\0', (size_t)n))
		return NULL;
	if (len)
		*len = (size_t)n;
	return s;
}

const char *vmd_json_string(struct json_object *obj, const char *key,
                            size_t *len)
{
	struct json_object *v;

	if (!obj || !json_object_object_get_ex(obj, key, &v))
		return NULL;
	return vmd_json_str(v, len);
}
