/*
 * LUKS (v1 and v2) for the inspector: recognised, described, never used.
 *
 * An encrypted image cannot be a base for us (we hold no key for it), so
 * every LUKS image is refused ("luks-encrypted"). We still say what it is:
 * the version, and the size of the decrypted payload, which is what
 * `qemu-img info -f luks` shows (QEMU opens the header without the key):
 *   - LUKS1: file size minus payload_offset sectors (big-endian u32 at
 *     104);
 *   - LUKS2: file size minus the data segment's offset, read from the JSON
 *     area that follows the 4 KiB binary header ("segments" -> "offset",
 *     bytes as a decimal string). QEMU 7.2 does not open LUKS2 at all.
 * A payload offset past the end of the file leaves the virtual size at 0.
 */
#include <string.h>

#include "inspect.h"

#define SECTOR 512u
#define LUKS2_JSON 4096
#define LUKS2_HDR_MIN 0x4000u
#define LUKS2_HDR_MAX 0x400000u

static bool luks_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, 0, "LUKS\xba\xbe", 6);
}

static const unsigned char *find(const unsigned char *b, size_t len,
                                 const char *needle)
{
	size_t n = strlen(needle);

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(b + i, needle, n) == 0)
			return b + i;
	return NULL;
}

/* The first segment's "offset": "<decimal>" in the LUKS2 JSON, or 0. */
static uint64_t luks2_data_offset(const unsigned char *json, size_t len)
{
	const unsigned char *s = find(json, len, "\"segments\"");
	const unsigned char *end = json + len, *o;
	uint64_t v = 0;

	if (!s)
		return 0;
	o = find(s, (size_t)(end - s), "\"offset\"");
	if (!o)
		return 0;
	o += 8;
	while (o < end && (*o == ' ' || *o == ':' || *o == '\t'))
		o++;
	if (o >= end || *o++ != '"')
		return 0;
	while (o < end && *o >= '0' && *o <= '9') {
		unsigned d = (unsigned)(*o++ - '0');

		if (v > (UINT64_MAX - d) / 10)
			return 0;
		v = v * 10 + d;
	}
	return o < end && *o == '"' ? v : 0;
}

static int luks_inspect(struct vmd_image_source *src,
                        const struct vmd_probe_data *p,
                        const struct vmd_inspect_limits *lim, unsigned flags,
                        struct vmd_inspect_result *r)
{
	unsigned version = 0;
	uint64_t payload = 0;

	(void)src;
	(void)lim;
	(void)flags;
	r->format = VMD_IMG_LUKS;
	if (p->head_len >= 8)
		version = (unsigned)p->head[6] << 8 | p->head[7];
	r->version = version;
	r->virtual_size = 0;
	vmd_inspect_refuse(r, "luks-encrypted",
	                   "encrypted image (LUKS%u): not supported", version);
	if (version == 1) {
		payload = (uint64_t)vmd_be32_at(p->head, p->head_len, 104) *
		          SECTOR;
	} else if (version == 2) {
		uint64_t hdr = vmd_be64_at(p->head, p->head_len, 8);

		/* The JSON area is hdr_size - 4096 bytes; we look at what the
		 * probe read of it. */
		if (hdr >= LUKS2_HDR_MIN && hdr <= LUKS2_HDR_MAX &&
		    p->head_len > LUKS2_JSON)
			payload = luks2_data_offset(
			        p->head + LUKS2_JSON,
			        (size_t)((hdr < p->head_len ? hdr : p->head_len) -
			                 LUKS2_JSON));
	}
	if (payload && payload <= p->file_size)
		r->virtual_size = p->file_size - payload;
	return 0;
}

const struct vmd_format_ops vmd_format_luks = {
	.format = VMD_IMG_LUKS,
	.name = "luks",
	.probe = luks_probe,
	.inspect = luks_inspect,
};
