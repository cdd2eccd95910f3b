/*
 * Placeholder tables for the formats whose parsers have not landed yet:
 * they recognise the format by its magic and refuse it, so that an image in
 * one of them can never pass as raw (fail closed). Each is replaced by its
 * lib/inspect_<name>.c.
 */
#include "inspect.h"

static bool probe_magic(const struct vmd_probe_data *p, size_t off,
                        const char *magic, size_t len)
{
	return vmd_bytes_at(p->head, p->head_len, off, magic, len);
}

static int refuse_unparsed(struct vmd_image_source *src,
                           const struct vmd_probe_data *p,
                           const struct vmd_inspect_limits *lim,
                           unsigned flags, struct vmd_inspect_result *r)
{
	(void)src;
	(void)p;
	(void)lim;
	(void)flags;
	vmd_inspect_refuse(r, "unsupported-format",
	                   "%s images are not supported yet",
	                   vmd_image_format_name(r->format));
	return 0;
}

static bool never(const struct vmd_probe_data *p)
{
	(void)p;
	return false;
}

static bool vmdk_probe(const struct vmd_probe_data *p)
{
	return probe_magic(p, 0, "KDMV", 4) ||
	       probe_magic(p, 0, "# Disk DescriptorFile", 21);
}

static bool vhd_probe(const struct vmd_probe_data *p)
{
	return probe_magic(p, 0, "conectix", 8) ||
	       vmd_bytes_at(p->tail, p->tail_len, p->tail_len - 512,
	                    "conectix", 8);
}

static bool vhdx_probe(const struct vmd_probe_data *p)
{
	return probe_magic(p, 0, "vhdxfile", 8);
}

static bool vdi_probe(const struct vmd_probe_data *p)
{
	return probe_magic(p, 64, "\x7f\x10\xda\xbe", 4);
}

static bool luks_probe(const struct vmd_probe_data *p)
{
	return probe_magic(p, 0, "LUKS\xba\xbe", 6);
}

static bool parallels_probe(const struct vmd_probe_data *p)
{
	return probe_magic(p, 0, "WithoutFreeSpace", 16) ||
	       probe_magic(p, 0, "WithouFreSpacExt", 16);
}

#define TABLE(n, F, probe_fn)                                                  \
	const struct vmd_format_ops vmd_format_##n = {F, #n, probe_fn,         \
	                                              refuse_unparsed};
TABLE(vmdk, VMD_IMG_VMDK, vmdk_probe)
TABLE(vhd, VMD_IMG_VHD, vhd_probe)
TABLE(vhdx, VMD_IMG_VHDX, vhdx_probe)
TABLE(vdi, VMD_IMG_VDI, vdi_probe)
TABLE(luks, VMD_IMG_LUKS, luks_probe)
TABLE(parallels, VMD_IMG_PARALLELS, parallels_probe)
/* Raw-like: only matter for ambiguity; until parsed, they read as raw. */
TABLE(iso, VMD_IMG_ISO, never)
TABLE(gpt, VMD_IMG_GPT, never)
TABLE(mbr, VMD_IMG_MBR, never)
