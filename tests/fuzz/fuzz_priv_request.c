/*
 * libFuzzer target for vmdiskd's request parser (lib/privhelper.c), the
 * code an unprivileged caller feeds bytes to. Rules checked on every input:
 *
 *   - the parser returns 0 or a vmd_errc equal to err.code, with a
 *     NUL-terminated public message starting "request: " on failure;
 *   - an accepted request has a known op, exactly the fields that op
 *     requires plus some it allows, and every string passes its
 *     allow-list (checked again through vmd_priv_request_check);
 *   - an accepted request serialises and parses back to the same request;
 *   - no public message contains a byte outside printable ASCII (the
 *     input is never echoed into an error).
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (see meson.build and
 * README.md here).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "privhelper.h"

#include "fuzz_priv_request.h"

static bool printable(const char *s, size_t max)
{
	for (size_t i = 0; i < max && s[i]; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return memchr(s, '\0', max) != NULL;
}

bool vmd_fuzz_priv_request_check(const uint8_t *data, size_t size, char *why,
                                 size_t whysz)
{
	struct vmd_priv_request req, again;
	struct vmd_error err;
	char *json = NULL;
	unsigned need, allowed;
	int rc;

	vmd_fuzz_start("fuzz_priv_request", why, whysz);
	vmd_error_clear(&err);
	rc = vmd_priv_request_parse((const char *)data, size, &req, &err);
	if (rc > 0)
		return vmd_fuzz_broken(why, whysz, "parse returned %d", rc);
	if (rc < 0) {
		if ((int)err.code != rc)
			return vmd_fuzz_broken(why, whysz, "returned %d, err.code %d", rc,
			              (int)err.code);
		if (!printable(err.msg, sizeof(err.msg)) ||
		    strncmp(err.msg, "request: ", 9) != 0)
			return vmd_fuzz_broken(why, whysz, "bad public message");
		return true;
	}
	if (err.code != VMD_OK)
		return vmd_fuzz_broken(why, whysz, "returned 0 with err.code %d",
		              (int)err.code);
	if ((unsigned)req.op >= VMD_PRIV_OP_COUNT)
		return vmd_fuzz_broken(why, whysz, "accepted op %d", (int)req.op);
	need = vmd_priv_fields_required(req.op);
	allowed = vmd_priv_fields_allowed(req.op);
	if ((req.fields & need) != need || (req.fields & ~allowed))
		return vmd_fuzz_broken(why, whysz, "op %s accepted with fields %#x",
		              vmd_priv_op_name(req.op), req.fields);
	if (vmd_priv_request_check(&req, &err) < 0)
		return vmd_fuzz_broken(why, whysz, "accepted request fails the check: %s",
		              err.msg);
	if (vmd_priv_request_to_json(&req, &json, &err) < 0)
		return vmd_fuzz_broken(why, whysz, "cannot serialise: %s", err.msg);
	rc = vmd_priv_request_parse(json, strlen(json), &again, &err);
	free(json);
	if (rc < 0)
		return vmd_fuzz_broken(why, whysz, "serialised request refused: %s",
		              err.msg);
	if (memcmp(&req, &again, sizeof(req)) != 0)
		return vmd_fuzz_broken(why, whysz, "round trip changed the request");
	return true;
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(priv_request)
#endif
