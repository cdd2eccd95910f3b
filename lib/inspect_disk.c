/*
 * Raw-like formats for the inspector: ISO 9660/UDF, GPT and MBR disks.
 *
 * Their bytes are what the guest sees, so they are raw images with a name:
 * the virtual size is the file's length and nothing here refuses (a GPT
 * header that says something impossible is only data). They exist for the
 * ambiguity check: a file that is both, say, a qcow2 image and a GPT disk
 * is refused by the core, while the legitimate overlaps (a GPT disk's
 * protective MBR, a hybrid ISO) are allowed there.
 *
 * The probes are strict enough not to fire on other formats' headers or on
 * bare file systems:
 *   - ISO: volume descriptor type 1 + "CD001" at 0x8000, or a UDF volume
 *     recognition sequence (BEA01 then NSR02/NSR03) in sectors 16-31;
 *   - GPT: "EFI PART" at LBA 1 (offset 512, or 4096 on 4Kn disks) behind a
 *     protective MBR (0x55AA and a partition of type 0xEE);
 *   - MBR: 0x55AA, every partition entry's status 0x00 or 0x80, at least
 *     one used entry, each used entry starting after sector 0 with a
 *     non-zero length; and sector 0 is not a file system's boot sector
 *     (a FAT/NTFS/exFAT BPB, or oslo's FAT test: two FATs and media 0xF8).
 *     A disk of zeros with only the boot signature is not an MBR.
 */
#include <string.h>

#include "inspect.h"

#define SECTOR 512u
#define ISO_PVD 0x8000
#define ISO_SECTOR 2048
#define MBR_TABLE 446
#define MBR_ENTRIES 4
#define GPT_PROTECTIVE 0xee

static bool iso_probe(const struct vmd_probe_data *p)
{
	bool bea = false;

	if (p->head_len > ISO_PVD + 6 && p->head[ISO_PVD] == 1 &&
	    memcmp(p->head + ISO_PVD + 1, "CD001", 5) == 0)
		return true;
	for (size_t off = ISO_PVD; off + 6 <= p->head_len; off += ISO_SECTOR) {
		const unsigned char *id = p->head + off + 1;

		if (memcmp(id, "BEA01", 5) == 0)
			bea = true;
		else if (bea && (memcmp(id, "NSR02", 5) == 0 ||
		                 memcmp(id, "NSR03", 5) == 0))
			return true;
	}
	return false;
}

static bool has_boot_signature(const struct vmd_probe_data *p)
{
	return p->head_len >= SECTOR && p->head[510] == 0x55 &&
	       p->head[511] == 0xaa;
}

/* A file system's boot sector (FAT, NTFS, exFAT) rather than an MBR. */
static bool is_boot_sector(const unsigned char *b)
{
	unsigned bps = (unsigned)b[11] | (unsigned)b[12] << 8;
	unsigned spc = b[13], reserved = (unsigned)b[14] | (unsigned)b[15] << 8;
	unsigned fats = b[16], media = b[21];
	bool jump = (b[0] == 0xeb && b[2] == 0x90) || b[0] == 0xe9;

	if (memcmp(b + 3, "NTFS    ", 8) == 0 ||
	    memcmp(b + 3, "EXFAT   ", 8) == 0)
		return true;
	if (fats == 2 && media == 0xf8)
		return true; /* oslo.utils' FAT test */
	return jump && (bps == 512 || bps == 1024 || bps == 2048 ||
	                bps == 4096) &&
	       spc && !(spc & (spc - 1)) && reserved >= 1 &&
	       (fats == 1 || fats == 2) && (media == 0xf0 || media >= 0xf8);
}

/* Plausible partition table; *protective when an entry is type 0xEE. */
static bool mbr_table(const struct vmd_probe_data *p, bool *protective)
{
	unsigned used = 0;

	*protective = false;
	for (size_t i = 0; i < MBR_ENTRIES; i++) {
		const unsigned char *e = p->head + MBR_TABLE + i * 16;
		uint32_t start = vmd_le32_at(e, 16, 8);
		uint32_t count = vmd_le32_at(e, 16, 12);

		if (e[0] != 0x00 && e[0] != 0x80)
			return false;
		if (e[4] == 0)
			continue;
		if (start == 0 || count == 0)
			return false;
		if (e[4] == GPT_PROTECTIVE)
			*protective = true;
		used++;
	}
	return used > 0;
}

static bool mbr_probe(const struct vmd_probe_data *p)
{
	bool protective;

	return has_boot_signature(p) && !is_boot_sector(p->head) &&
	       mbr_table(p, &protective);
}

static bool gpt_probe(const struct vmd_probe_data *p)
{
	bool protective;

	if (!has_boot_signature(p) || !mbr_table(p, &protective) ||
	    !protective)
		return false;
	return vmd_bytes_at(p->head, p->head_len, SECTOR, "EFI PART", 8) ||
	       vmd_bytes_at(p->head, p->head_len, 4096, "EFI PART", 8);
}

/* The guest sees the file's bytes: the file's length is the disk's. */
static int raw_like(struct vmd_inspect_result *r, enum vmd_image_format f,
                    const struct vmd_probe_data *p)
{
	r->format = f;
	r->virtual_size = p->file_size;
	return 0;
}

static int iso_inspect(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim, unsigned flags,
                       struct vmd_inspect_result *r)
{
	(void)src;
	(void)lim;
	(void)flags;
	return raw_like(r, VMD_IMG_ISO, p);
}

static int gpt_inspect(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim, unsigned flags,
                       struct vmd_inspect_result *r)
{
	(void)src;
	(void)lim;
	(void)flags;
	return raw_like(r, VMD_IMG_GPT, p);
}

static int mbr_inspect(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim, unsigned flags,
                       struct vmd_inspect_result *r)
{
	(void)src;
	(void)lim;
	(void)flags;
	return raw_like(r, VMD_IMG_MBR, p);
}

const struct vmd_format_ops vmd_format_iso = {
	.format = VMD_IMG_ISO,
	.name = "iso",
	.probe = iso_probe,
	.inspect = iso_inspect,
};

const struct vmd_format_ops vmd_format_gpt = {
	.format = VMD_IMG_GPT,
	.name = "gpt",
	.probe = gpt_probe,
	.inspect = gpt_inspect,
};

const struct vmd_format_ops vmd_format_mbr = {
	.format = VMD_IMG_MBR,
	.name = "mbr",
	.probe = mbr_probe,
	.inspect = mbr_inspect,
};
