/*
 * Formats QEMU can probe that we never accept: QED, Bochs, cloop and DMG.
 *
 * An image the inspector does not recognise is raw, and raw is safe, so
 * every format QEMU would open instead of raw must be recognised here by
 * its magic (as QEMU's probe functions look for it, or more loosely) and
 * refused with a reason that names it:
 *   - QED: "QED\0" at 0 (qed_probe). It can have a backing file (feature
 *     bit 0, name at backing_filename_offset/size); oslo.utils treats QED
 *     as always unsafe;
 *   - Bochs: "Bochs Virtual HD Image" at 0 (bochs_probe also wants type
 *     "Redolog", subtype "Growing" and a known version; the magic alone
 *     is enough for us to refuse);
 *   - cloop: the V2.0 shell-script header. cloop_probe compares only as
 *     many bytes as it is given (QEMU 7.2 gives it 2 KiB, zero-padded);
 *     we also take a file shorter than the header that is a prefix of it;
 *   - DMG: dmg_probe looks at the file name only, which we never use; the
 *     data ends with a "koly" trailer in the last 512 bytes, which QEMU's
 *     dmg driver reads, so that is what we match.
 * Only QED has fields worth reporting; the other three are refused by the
 * core from their table entries (unsupported_code), without an inspect().
 */
#include <string.h>

#include "inspect.h"

#define QED_HEADER 68
#define QED_F_BACKING_FILE 1ull

static bool qed_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, 0, "QED", 4);
}

static int qed_inspect(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim, unsigned flags,
                       struct vmd_inspect_result *r)
{
	uint64_t features = vmd_le64_at(p->head, p->head_len, 16);
	uint32_t name_off = vmd_le32_at(p->head, p->head_len, 56);
	uint32_t name_len = vmd_le32_at(p->head, p->head_len, 60);
	uint64_t end;

	(void)src;
	(void)lim;
	(void)flags;
	r->format = VMD_IMG_QED;
	r->cluster_size = vmd_le32_at(p->head, p->head_len, 4);
	if (p->head_len >= QED_HEADER)
		r->virtual_size = vmd_le64_at(p->head, p->head_len, 48);
	vmd_inspect_refuse(r, "qed-unsupported",
	                   "qed: QED images are not supported");
	if (features & QED_F_BACKING_FILE) {
		/* Report the name when the head holds it (bounded, checked). */
		if (name_len < sizeof(r->backing_file) &&
		    !__builtin_add_overflow((uint64_t)name_off, name_len, &end) &&
		    end <= p->head_len) {
			memcpy(r->backing_file, p->head + name_off, name_len);
			r->backing_file[name_len] = '\0';
		}
		vmd_inspect_refuse(r, "qed-backing-file",
		                   "qed: the image has a backing file");
	}
	return 0;
}

static bool bochs_probe(const struct vmd_probe_data *p)
{
	static const char magic[] = "Bochs Virtual HD Image";

	return vmd_bytes_at(p->head, p->head_len, 0, magic, sizeof(magic) - 1);
}

static const char cloop_magic[] =
	"#!/bin/sh\n#V2.0 Format\n"
	"modprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n";

static bool cloop_probe(const struct vmd_probe_data *p)
{
	size_t n = sizeof(cloop_magic) - 1;

	if (p->head_len < n)
		n = p->head_len;
	return n > 0 && memcmp(p->head, cloop_magic, n) == 0;
}

static bool dmg_probe(const struct vmd_probe_data *p)
{
	return p->tail_len == 512 &&
	       vmd_bytes_at(p->tail, p->tail_len, 0, "koly", 4);
}

const struct vmd_format_ops vmd_format_qed = {
	.format = VMD_IMG_QED,
	.name = "qed",
	.probe = qed_probe,
	.inspect = qed_inspect,
};

const struct vmd_format_ops vmd_format_bochs = {
	.format = VMD_IMG_BOCHS,
	.name = "bochs",
	.probe = bochs_probe,
	.unsupported_code = "bochs-unsupported",
	.unsupported_what = "bochs",
};

const struct vmd_format_ops vmd_format_cloop = {
	.format = VMD_IMG_CLOOP,
	.name = "cloop",
	.probe = cloop_probe,
	.unsupported_code = "cloop-unsupported",
	.unsupported_what = "cloop",
};

const struct vmd_format_ops vmd_format_dmg = {
	.format = VMD_IMG_DMG,
	.name = "dmg",
	.probe = dmg_probe,
	.unsupported_code = "dmg-unsupported",
	.unsupported_what = "dmg (Apple disk image)",
};
