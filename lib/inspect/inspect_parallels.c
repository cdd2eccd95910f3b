/*
 * Parallels / ploop expandable images ("root.hds") for the inspector.
 *
 * A 64-byte little-endian header ("WithoutFreeSpace", or "WithouFreSpacExt"
 * for the v2 layout QEMU and ploop write), then the BAT: one u32 per
 * cluster. Nothing in the image names another file, so the checks are about
 * sizes: version 2, a non-zero cluster size QEMU accepts, a BAT that covers
 * the disk, fits limits->max_table_size and the file, and data and format
 * extension offsets inside the file. The virtual size is nb_sectors * 512
 * (only its low 32 bits for the old magic, as QEMU does).
 */
#include <string.h>

#include "inspect.h"

#define SECTOR 512u
#define HEADER_LEN 64
#define PARALLELS_VERSION 2
#define MAX_TRACKS (INT32_MAX / 513) /* QEMU: "Too big cluster" */

#define MAGIC_V1 "WithoutFreeSpace"
#define MAGIC_V2 "WithouFreSpacExt"
#define MAGIC_LEN 16

static bool parallels_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, 0, MAGIC_V1, MAGIC_LEN) ||
	       vmd_bytes_at(p->head, p->head_len, 0, MAGIC_V2, MAGIC_LEN);
}

static int parallels_inspect(struct vmd_image_source *src,
                             const struct vmd_probe_data *p,
                             const struct vmd_inspect_limits *lim,
                             unsigned flags, struct vmd_inspect_result *r)
{
	const unsigned char *h = p->head;
	size_t len = p->head_len;
	uint32_t version, tracks, bat_entries, data_off;
	uint64_t sectors, ext_off, bat_bytes;

	(void)src;
	(void)flags;
	r->format = VMD_IMG_PARALLELS;
	if (len < HEADER_LEN) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "parallels: file too short for a header");
		return 0;
	}
	version = vmd_le32_at(h, len, 16);
	tracks = vmd_le32_at(h, len, 28);
	bat_entries = vmd_le32_at(h, len, 32);
	sectors = vmd_le64_at(h, len, 36);
	data_off = vmd_le32_at(h, len, 48);
	ext_off = vmd_le64_at(h, len, 56);
	if (memcmp(h, MAGIC_V1, MAGIC_LEN) == 0)
		sectors &= 0xffffffffu;

	r->version = version;
	r->virtual_size = vmd_mul_sat(sectors, SECTOR);
	if (version != PARALLELS_VERSION)
		vmd_inspect_refuse(r, "parallels-header",
		                   "parallels: unsupported version %u", version);
	if (tracks == 0 || tracks > MAX_TRACKS) {
		vmd_inspect_refuse(r, "parallels-header",
		                   "parallels: bad cluster size of %u sectors",
		                   tracks);
	} else {
		r->cluster_size = tracks * SECTOR; /* < INT32_MAX */
		if ((uint64_t)bat_entries * tracks < sectors)
			vmd_inspect_refuse(r, "parallels-header",
			                   "parallels: %u BAT entries do not "
			                   "cover %llu sectors",
			                   bat_entries,
			                   (unsigned long long)sectors);
	}
	bat_bytes = (uint64_t)bat_entries * 4;
	if (!vmd_inspect_table_limit(r, lim, "parallels: BAT", bat_bytes) &&
	    HEADER_LEN + bat_bytes > p->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "parallels: BAT of %llu bytes is not within "
		                   "the file",
		                   (unsigned long long)bat_bytes);
	if ((uint64_t)data_off * SECTOR > p->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "parallels: data offset (sector %u) is past "
		                   "the end of the file",
		                   data_off);
	if (ext_off &&
	    vmd_add_sat(vmd_mul_sat(ext_off, SECTOR), SECTOR) > p->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "parallels: format extension (sector %llu) is "
		                   "past the end of the file",
		                   (unsigned long long)ext_off);
	return 0;
}

const struct vmd_format_ops vmd_format_parallels = {
	.format = VMD_IMG_PARALLELS,
	.name = "parallels",
	.probe = parallels_probe,
	.inspect = parallels_inspect,
};
