/*
 * rbd://FSID/POOL/IMAGE/SNAP locations (see rbd_location.h). Moved out of
 * the rbd module unchanged in what it accepts, so that it can be fuzzed on
 * its own.
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "rbd_location.h"

/* RBD names we accept in a location: [A-Za-z0-9][A-Za-z0-9._-]*, no "..". */
static bool valid_rbd_part(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return false;
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')))
		return false;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		      ch == '-'))
			return false;
		if (ch == '.' && i + 1 < len && s[i + 1] == '.')
			return false;
	}
	return true;
}

int vmd_rbd_location_parse(const char *loc, struct vmd_rbd_location *out,
                           struct vmd_error *err)
{
	static const char prefix[] = "rbd://";
	char *fields[4] = {out->fsid, out->pool, out->image, out->snap};
	const size_t sizes[4] = {sizeof(out->fsid), sizeof(out->pool),
	                         sizeof(out->image), sizeof(out->snap)};
	const char *p;

	memset(out, 0, sizeof(*out));
	if (!loc || strncmp(loc, prefix, sizeof(prefix) - 1) != 0 ||
	    strnlen(loc, VMD_RBD_LOCATION_MAX + 1) > VMD_RBD_LOCATION_MAX)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "rbd: malformed location (want "
		                     "rbd://FSID/POOL/IMAGE/SNAP)",
		                     "location does not start with rbd://");
	p = loc + sizeof(prefix) - 1;
	for (int i = 0; i < 4; i++) {
		size_t len = strcspn(p, "/");

		if ((i < 3 && p[len] != '/') || (i == 3 && p[len] != '\0') ||
		    !valid_rbd_part(p, len, sizes[i] - 1)) {
			memset(out, 0, sizeof(*out));
			return vmd_error_set(err, VMD_E_INVAL,
			                     "rbd: malformed location (want "
			                     "rbd://FSID/POOL/IMAGE/SNAP)",
			                     "location part %d refused", i + 1);
		}
		memcpy(fields[i], p, len);
		fields[i][len] = '\0';
		p += len + (i < 3 ? 1 : 0);
	}
	if (!vmd_valid_uuid(out->fsid)) {
		memset(out, 0, sizeof(*out));
		return vmd_error_set(err, VMD_E_INVAL,
		                     "rbd: malformed location (FSID is not a UUID)",
		                     "fsid refused");
	}
	return 0;
}
