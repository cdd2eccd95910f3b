/*
 * VirtualBox VDI for the inspector.
 *
 * One little-endian header in the first 512 bytes: signature 0xbeda107f at
 * 0x40 after a text banner, then version, image type, the offsets of the
 * block map and of the data, the disk size and the block geometry. Undo and
 * differencing images (types 3 and 4, or a parent or link UUID) depend on
 * another image and are refused; so is anything QEMU's vdi driver would not
 * open (version other than 1.1, unaligned offsets, a block size other than
 * 1 MiB, a block map too small for the disk). The block map is bounded by
 * limits->max_table_size and, like the data offset, by the file's length.
 * QEMU shows the disk size rounded down to whole sectors; so do we.
 */

#include "inspect.h"

#define SECTOR 512u
#define VDI_SIGNATURE 0xbeda107fu
#define VDI_VERSION_1_1 0x00010001u
#define VDI_TYPE_NORMAL 1
#define VDI_TYPE_FIXED 2
#define VDI_TYPE_UNDO 3
#define VDI_TYPE_DIFF 4
#define VDI_BLOCK_SIZE (1u << 20)

static bool vdi_probe(const struct vmd_probe_data *p)
{
	return vmd_le32_at(p->head, p->head_len, 0x40) == VDI_SIGNATURE;
}

static bool uuid_set(const unsigned char *b, size_t len, size_t off)
{
	for (size_t i = 0; i < 16; i++)
		if (off + i < len && b[off + i])
			return true;
	return false;
}

static int vdi_inspect(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim, unsigned flags,
                       struct vmd_inspect_result *r)
{
	const unsigned char *h = p->head;
	size_t len = p->head_len;
	uint32_t version, type, off_bmap, off_data, sector, block, extra;
	uint32_t blocks, allocated;
	uint64_t disk, bmap_bytes, data_end;

	(void)src;
	(void)flags;
	r->format = VMD_IMG_VDI;
	if (len < 0x1c8) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vdi: file too short for a header");
		return 0;
	}
	version = vmd_le32_at(h, len, 0x44);
	type = vmd_le32_at(h, len, 0x4c);
	off_bmap = vmd_le32_at(h, len, 0x154);
	off_data = vmd_le32_at(h, len, 0x158);
	sector = vmd_le32_at(h, len, 0x168);
	disk = vmd_le64_at(h, len, 0x170);
	block = vmd_le32_at(h, len, 0x178);
	extra = vmd_le32_at(h, len, 0x17c);
	blocks = vmd_le32_at(h, len, 0x180);
	allocated = vmd_le32_at(h, len, 0x184);

	r->version = version >> 16;
	r->cluster_size = block;
	r->virtual_size = disk / SECTOR * SECTOR;
	if (type == VDI_TYPE_UNDO || type == VDI_TYPE_DIFF ||
	    uuid_set(h, len, 0x1a8) || uuid_set(h, len, 0x1b8))
		vmd_inspect_refuse(r, "vdi-differencing",
		                   "vdi: undo or differencing image (type %u, "
		                   "or a link/parent UUID)",
		                   type);
	else if (type != VDI_TYPE_NORMAL && type != VDI_TYPE_FIXED)
		vmd_inspect_refuse(r, "vdi-header", "vdi: unknown image type %u",
		                   type);
	if (version != VDI_VERSION_1_1 || off_bmap % SECTOR ||
	    off_data % SECTOR || sector != SECTOR || block != VDI_BLOCK_SIZE)
		vmd_inspect_refuse(r, "vdi-header",
		                   "vdi: unsupported header (version 0x%x, "
		                   "sector %u, block %u, unaligned offsets?)",
		                   version, sector, block);
	else if (disk > (uint64_t)blocks * block)
		vmd_inspect_refuse(r, "vdi-header",
		                   "vdi: disk size %llu but the block map holds "
		                   "%u blocks",
		                   (unsigned long long)disk, blocks);

	/* u32 fields widened to 64 bits: these sums and products are below
	 * 2^35 and cannot wrap. */
	bmap_bytes = ((uint64_t)blocks * 4 + SECTOR - 1) / SECTOR * SECTOR;
	if (!vmd_inspect_table_limit(r, lim, "vdi: block map", bmap_bytes) &&
	    (uint64_t)off_bmap + bmap_bytes > p->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "vdi: block map (offset %u, %llu bytes) is not "
		                   "within the file",
		                   off_bmap, (unsigned long long)bmap_bytes);
	data_end = vmd_add_sat(off_data,
	                       vmd_mul_sat(allocated, (uint64_t)block + extra));
	if (off_data > p->file_size || data_end > p->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "vdi: data (offset %u, %u blocks) is not "
		                   "within the file",
		                   off_data, allocated);
	return 0;
}

const struct vmd_format_ops vmd_format_vdi = {
	.format = VMD_IMG_VDI,
	.name = "vdi",
	.probe = vdi_probe,
	.inspect = vdi_inspect,
};
