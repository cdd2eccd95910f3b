/*
 * The ploop descriptor's <Type> element, read from a buffer (see
 * ploop_descriptor.h). The search is bounded by the length given, never
 * by a NUL: a descriptor holding a NUL byte is refused rather than read up
 * to it, and a second <Type> cannot hide behind a first one.
 */
#include <string.h>

#include "ploop_descriptor.h"

#define TYPE_OPEN "<Type>"
#define TYPE_PLAIN "Plain</Type>"
#define TYPE_COMPRESSED "Compressed</Type>"

static int corrupt(struct vmd_error *err, const char *why)
{
	return vmd_error_set(err, VMD_E_CORRUPT,
	                     "ploop: descriptor names no image type", "%s",
	                     why);
}

/* Does [p, end) start with the literal s? */
static int starts(const char *p, const char *end, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(end - p) >= n && memcmp(p, s, n) == 0;
}

int vmd_ploop_descriptor_variant(const char *buf, size_t len,
                                 enum vmd_ploop_variant *v,
                                 struct vmd_error *err)
{
	const size_t open_len = sizeof(TYPE_OPEN) - 1;
	const char *end, *type, *p;

	if (!buf || len > VMD_PLOOP_DESCRIPTOR_MAX)
		return corrupt(err, "descriptor too large");
	if (memchr(buf, '\0', len))
		return corrupt(err, "NUL byte in the descriptor");
	end = buf + len;
	type = memmem(buf, len, TYPE_OPEN, open_len);
	if (!type)
		return corrupt(err, "no <Type>");
	p = type + open_len;
	if (memmem(p, (size_t)(end - p), TYPE_OPEN, open_len))
		return corrupt(err, "more than one <Type>");
	if (starts(p, end, TYPE_PLAIN))
		*v = VMD_PLOOP_RAW;
	else if (starts(p, end, TYPE_COMPRESSED))
		*v = VMD_PLOOP_EXPANDED;
	else
		return corrupt(err, "unknown <Type>");
	return 0;
}
