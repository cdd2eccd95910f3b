/*
 * Fuzz target of the rbd:// location parser (lib/rbd_location.c), which
 * reads locations out of Glance image records and --location. The input up
 * to its first NUL is the location. Rules checked on every input:
 *
 *   - the error contract (fuzz_util.h); a refused location leaves the
 *     output all zeroes;
 *   - an accepted one has four parts made only of [A-Za-z0-9._-], none
 *     empty, none starting with '.', '_' or '-', none holding "..", the
 *     FSID a UUID;
 *   - and it prints back as exactly the input: nothing was dropped,
 *     added or cut to fit.
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (meson.build here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "rbd_location.h"

#include "fuzz_rbd_location.h"

static bool part_ok(const char *s)
{
	if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
	      (s[0] >= '0' && s[0] <= '9')))
		return false;
	if (strstr(s, ".."))
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789._-") == strlen(s);
}

VMD_FUZZ_DECLARE_CHECK(rbd_location)
{
	static const struct vmd_rbd_location zero;
	struct vmd_rbd_location loc;
	struct vmd_error err = VMD_ERROR_INIT;
	_cleanup_(freep) char *text = NULL;
	char back[VMD_RBD_LOCATION_MAX + 64];
	int rc;

	vmd_fuzz_start("fuzz_rbd_location", why, whysz);
	text = vmd_fuzz_cstring(data, size);
	if (!text)
		return true;
	memset(&loc, 0xa5, sizeof(loc));
	rc = vmd_rbd_location_parse(text, &loc, &err);
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
		return false;
	if (rc < 0) {
		if (memcmp(&loc, &zero, sizeof(loc)) != 0)
			return vmd_fuzz_broken(why, whysz,
			                       "refused location left output");
		return true;
	}
	if (!part_ok(loc.fsid) || !part_ok(loc.pool) || !part_ok(loc.image) ||
	    !part_ok(loc.snap) || !vmd_valid_uuid(loc.fsid))
		return vmd_fuzz_broken(why, whysz, "accepted a bad part");
	snprintf(back, sizeof(back), "rbd://%s/%s/%s/%s", loc.fsid, loc.pool,
	         loc.image, loc.snap);
	if (strcmp(back, text) != 0)
		return vmd_fuzz_broken(why, whysz,
		                       "parts do not print back as the input");
	return true;
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(rbd_location)
#endif
