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
 * For the ambiguity check a probe must fire whenever *some* consumer of the
 * file would see that format, so the partition-table probes are as loose
 * as the loosest reader we know of, and the core's table of benign
 * overlaps (lib/inspect.c) decides what may share a file:
 *   - ISO: volume descriptor type 1 + "CD001" at 0x8000, or a UDF volume
 *     recognition sequence (BEA01 then NSR02/NSR03) in sectors 16-31;
 *   - GPT: "EFI PART" at LBA 1 (offset 512, or 4096 on 4Kn disks). No
 *     protective MBR is required: Linux (gpt=force) and other tools read a
 *     GPT header without one;
 *   - MBR: the boot signature 0x55AA, and either every partition entry's
 *     status byte is 0x00 or 0x80 with one entry used (Linux then finds a
 *     partition, whatever else sector 0 holds) or sector 0 is not a FAT
 *     boot sector by
 *     oslo.utils' test (two FATs, media 0xF8), which is oslo's whole MBR
 *     match. So a qcow2 header with a planted boot signature is an MBR
 *     too, as it is to oslo.utils, even when the "partition entries" are
 *     header bytes.
 * None of them has an inspect(): the core has already given the result the
 * format and the file's length, which is all there is to say.
 */
#include <string.h>

#include "inspect.h"

#define SECTOR 512u
#define ISO_PVD 0x8000
#define ISO_SECTOR 2048
#define MBR_TABLE 446
#define MBR_ENTRIES 4

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

/* oslo.utils' test for a FAT volume boot record: two FATs, media 0xF8. */
static bool oslo_fat(const unsigned char *b)
{
	return b[16] == 2 && b[21] == 0xf8;
}

/* Every partition entry's status byte is valid and one entry is used:
 * Linux's msdos reader then finds a partition, whatever else sector 0
 * holds (a file system's boot code included). */
static bool linux_table(const unsigned char *b)
{
	bool used = false;

	for (size_t i = 0; i < MBR_ENTRIES; i++) {
		const unsigned char *e = b + MBR_TABLE + i * 16;

		if (e[0] != 0x00 && e[0] != 0x80)
			return false;
		used |= e[4] != 0;
	}
	return used;
}

static bool mbr_probe(const struct vmd_probe_data *p)
{
	return has_boot_signature(p) &&
	       (linux_table(p->head) || !oslo_fat(p->head));
}

static bool gpt_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, SECTOR, "EFI PART", 8) ||
	       vmd_bytes_at(p->head, p->head_len, 4096, "EFI PART", 8);
}

const struct vmd_format_ops vmd_format_iso = {
	.format = VMD_IMG_ISO,
	.name = "iso",
	.probe = iso_probe,
};

const struct vmd_format_ops vmd_format_gpt = {
	.format = VMD_IMG_GPT,
	.name = "gpt",
	.probe = gpt_probe,
};

const struct vmd_format_ops vmd_format_mbr = {
	.format = VMD_IMG_MBR,
	.name = "mbr",
	.probe = mbr_probe,
};
