/*
 * Fuzz target of the ploop DiskDescriptor.xml reader
 * (lib/ploop_descriptor.c), on the input bytes as the descriptor. Rules
 * checked on every input:
 *
 *   - the error contract (fuzz_util.h); a refused descriptor leaves the
 *     variant untouched;
 *   - an accepted descriptor holds no NUL byte, is at most
 *     VMD_PLOOP_DESCRIPTOR_MAX bytes, has exactly one "<Type>", and that
 *     one says what the answer is ("Plain" raw, "Compressed" expanded).
 *
 * The rules are counted here on the bytes by a separate, naive walk, so
 * that the parser is compared with a second reading of the same text.
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (meson.build here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ploop_descriptor.h"

#include "fuzz_ploop_descriptor.h"

#define OPEN "<Type>"

VMD_FUZZ_DECLARE_CHECK(ploop_descriptor)
{
	enum vmd_ploop_variant v = (enum vmd_ploop_variant)-1;
	struct vmd_error err = VMD_ERROR_INIT;
	size_t count = 0, at = 0;
	const char *text = (const char *)data;
	int rc;

	vmd_fuzz_start("fuzz_ploop_descriptor", why, whysz);
	rc = vmd_ploop_descriptor_variant(size ? text : "", size, &v, &err);
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
		return false;
	if (rc < 0) {
		if ((int)v != -1)
			return vmd_fuzz_broken(why, whysz,
			                       "refused, but set the variant");
		return true;
	}
	if (size > VMD_PLOOP_DESCRIPTOR_MAX || memchr(data, '\0', size))
		return vmd_fuzz_broken(why, whysz, "accepted NUL or too large");
	for (size_t i = 0; i + strlen(OPEN) <= size; i++) {
		if (memcmp(text + i, OPEN, strlen(OPEN)) == 0) {
			count++;
			at = i + strlen(OPEN);
		}
	}
	if (count != 1)
		return vmd_fuzz_broken(why, whysz, "accepted %zu <Type>", count);
	if (v == VMD_PLOOP_RAW &&
	    !(size - at >= 12 && memcmp(text + at, "Plain</Type>", 12) == 0))
		return vmd_fuzz_broken(why, whysz, "raw, but not Plain");
	if (v == VMD_PLOOP_EXPANDED &&
	    !(size - at >= 17 &&
	      memcmp(text + at, "Compressed</Type>", 17) == 0))
		return vmd_fuzz_broken(why, whysz, "expanded, but not Compressed");
	if (v != VMD_PLOOP_RAW && v != VMD_PLOOP_EXPANDED)
		return vmd_fuzz_broken(why, whysz, "variant %d", (int)v);
	return true;
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(ploop_descriptor)
#endif
