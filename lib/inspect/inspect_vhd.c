/*
 * VHD ("vpc" to QEMU) and VHDX for the inspector.
 *
 * VHD: a 512-byte big-endian footer ("conectix") ends the file; dynamic
 * disks keep a copy at offset 0 and a "cxsparse" header (block size, BAT)
 * where the footer's data offset points. Like QEMU, the copy at 0 wins and
 * means "dynamic"; a file with only the trailing footer is a fixed disk (we
 * match that only when the footer's checksum is right, so that a raw disk
 * whose last sector happens to say "conectix" stays raw). Differencing disks
 * (type 4, or a dynamic header naming a parent) have a backing file and are
 * refused. The virtual size is what QEMU 7.2 computes: CHS geometry, except
 * for creators known to use the footer's current size ("win ", "qem2",
 * "d2v ", "CTXS", "tap\0", i.e. `qemu-img create -o force_size=on`) and for
 * the maximum geometry.
 *
 * VHDX: little-endian; two headers at 64 and 128 KiB (CRC-32C, the higher
 * sequence number wins), a region table at 192 KiB locating the BAT and the
 * metadata region, whose table holds the virtual disk size, block size,
 * logical sector size (QEMU 7.2 opens only 512) and file parameters. A parent locator or the
 * HasParent flag means a differencing disk: refused. A non-empty log would
 * be replayed into the file by QEMU before use, changing what we checked:
 * refused. Counts are bounded (2047 entries) and every offset checked
 * against the file's length; the BAT by limits->max_table_size.
 */
#include <stdlib.h>
#include <string.h>

#include "bytes.h"
#include "inspect.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define SECTOR 512u

/* --- VHD ---------------------------------------------------------------- */

#define VHD_FOOTER 512
#define VHD_DYN_HEADER 1024
#define VHD_FIXED 2
#define VHD_DYNAMIC 3
#define VHD_DIFFERENCING 4
#define VHD_MAX_GEOMETRY (65535ull * 16 * 255)
#define VHD_MAX_SECTORS 0xff000000ull /* QEMU: 2040 GiB */
#define VHD_NO_OFFSET UINT64_MAX


/* One's complement of the byte sum, the checksum field counting as 0. */
static uint32_t vhd_checksum(const unsigned char *b, size_t len,
                             size_t field)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < field || i >= field + 4)
			sum += b[i];
	return ~sum;
}

static bool vhd_footer_valid(const unsigned char *f, size_t len)
{
	return len >= VHD_FOOTER && memcmp(f, "conectix", 8) == 0 &&
	       vhd_checksum(f, VHD_FOOTER, 64) == vmd_be32_at(f, len, 64);
}

static bool vhd_probe(const struct vmd_probe_data *p)
{
	if (vmd_bytes_at(p->head, p->head_len, 0, "conectix", 8))
		return true;
	return p->file_size > VHD_FOOTER && p->tail_len == VHD_FOOTER &&
	       vhd_footer_valid(p->tail, p->tail_len);
}

/* QEMU 7.2's vpc_open: CHS unless the creator is known to use the size. */
static uint64_t vhd_sectors(const unsigned char *f)
{
	static const char *const use_size[] = {"win ", "qem2", "d2v ",
	                                       "CTXS", "tap\0"};
	uint64_t chs = (uint64_t)((unsigned)f[56] << 8 | f[57]) * f[58] * f[59];

	if (chs == VHD_MAX_GEOMETRY)
		return vmd_be64_at(f, VHD_FOOTER, 48) / SECTOR;
	for (size_t i = 0; i < sizeof(use_size) / sizeof(use_size[0]); i++)
		if (memcmp(f + 28, use_size[i], 4) == 0)
			return vmd_be64_at(f, VHD_FOOTER, 48) / SECTOR;
	return chs;
}

static int vhd_dynamic(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim,
                       struct vmd_inspect_result *r, const unsigned char *f,
                       uint64_t sectors)
{
	unsigned char h[VHD_DYN_HEADER];
	uint64_t off = vmd_be64_at(f, VHD_FOOTER, 16), bat_off, bat_bytes;
	uint32_t entries, block;
	long n;

	if (vmd_add_sat(off, sizeof(h)) > p->file_size) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vpc: dynamic header offset %llu is past the "
		                   "end of the file",
		                   (unsigned long long)off);
		return 0;
	}
	n = vmd_probe_read(src, p, h, sizeof(h), off);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(h) || memcmp(h, "cxsparse", 8) != 0) {
		vmd_inspect_refuse(r, "vhd-header",
		                   "vpc: no dynamic disk header at offset %llu",
		                   (unsigned long long)off);
		return 0;
	}
	bat_off = vmd_be64_at(h, sizeof(h), 16);
	entries = vmd_be32_at(h, sizeof(h), 28);
	block = vmd_be32_at(h, sizeof(h), 32);
	bat_bytes = (uint64_t)entries * 4;
	if (block < SECTOR || (block & (block - 1))) {
		vmd_inspect_refuse(r, "vhd-header",
		                   "vpc: bad block size %u", block);
	} else {
		r->cluster_size = block;
		/* sectors is a size / 512 or a CHS product, so * 512 cannot
		 * wrap; u32 * u32 fits in 64 bits. */
		if (sectors * SECTOR / block > UINT32_MAX ||
		    (uint64_t)entries * block < sectors * SECTOR)
			vmd_inspect_refuse(r, "vhd-header",
			                   "vpc: %u BAT entries of %u bytes do "
			                   "not cover the disk",
			                   entries, block);
	}
	if (!vmd_inspect_table_limit(r, lim, "vpc: BAT", bat_bytes) &&
	    vmd_add_sat(bat_off, bat_bytes) > p->file_size)
		vmd_inspect_refuse(r, "header-bounds",
		                   "vpc: BAT (offset %llu, %llu bytes) is not "
		                   "within the file",
		                   (unsigned long long)bat_off,
		                   (unsigned long long)bat_bytes);
	/* A parent name or parent locators: a differencing disk in disguise
	 * (QEMU ignores them, other tools may not). */
	if (!vmd_all_zero(h + 64, 512))
		vmd_inspect_refuse(r, "vhd-differencing",
		                   "vpc: the dynamic header names a parent disk");
	for (size_t i = 0; i < 8; i++)
		if (vmd_be32_at(h, sizeof(h), 576 + i * 24) != 0)
			vmd_inspect_refuse(r, "vhd-differencing",
			                   "vpc: the dynamic header has a parent "
			                   "locator");
	return 0;
}

static int vhd_inspect(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       const struct vmd_inspect_limits *lim, unsigned flags,
                       struct vmd_inspect_result *r)
{
	unsigned char f[VHD_FOOTER];
	bool at_start = vmd_bytes_at(p->head, p->head_len, 0, "conectix", 8);
	uint32_t type;
	uint64_t sectors;

	(void)flags;
	r->format = VMD_IMG_VHD;
	if (at_start && p->head_len >= VHD_FOOTER)
		memcpy(f, p->head, VHD_FOOTER);
	else if (!at_start && p->tail_len == VHD_FOOTER)
		memcpy(f, p->tail, VHD_FOOTER);
	else {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vpc: file too short for a footer");
		return 0;
	}
	if (!vhd_footer_valid(f, sizeof(f)))
		vmd_inspect_refuse(r, "vhd-checksum",
		                   "vpc: footer checksum mismatch");
	r->version = vmd_be32_at(f, sizeof(f), 12) >> 16;
	sectors = vhd_sectors(f);
	r->virtual_size = sectors * SECTOR;
	if (sectors > VHD_MAX_SECTORS)
		vmd_inspect_refuse(r, "vhd-header",
		                   "vpc: %llu sectors is above the format's "
		                   "2040 GiB",
		                   (unsigned long long)sectors);
	type = vmd_be32_at(f, sizeof(f), 60);
	if (type == VHD_DIFFERENCING) {
		vmd_inspect_refuse(r, "vhd-differencing",
		                   "vpc: differencing disk (it has a parent)");
		return 0;
	}
	if (type != VHD_FIXED && type != VHD_DYNAMIC) {
		vmd_inspect_refuse(r, "vhd-header", "vpc: unknown disk type %u",
		                   type);
		return 0;
	}
	/* QEMU reads a footer at offset 0 as dynamic, one at the end as
	 * fixed, whatever the type field says: they must agree. */
	if ((type == VHD_DYNAMIC) != at_start) {
		vmd_inspect_refuse(r, "vhd-header",
		                   "vpc: disk type %u with the footer %s", type,
		                   at_start ? "copied at offset 0"
		                            : "only at the end");
		return 0;
	}
	if (type == VHD_DYNAMIC)
		return vhd_dynamic(src, p, lim, r, f, sectors);
	if (r->virtual_size > p->file_size - VHD_FOOTER)
		vmd_inspect_refuse(r, "header-bounds",
		                   "vpc: fixed disk of %llu bytes in a %llu-byte "
		                   "file",
		                   (unsigned long long)r->virtual_size,
		                   (unsigned long long)p->file_size);
	return 0;
}

/* --- VHDX --------------------------------------------------------------- */

#define VHDX_HEADER1 (64 * KiB)
#define VHDX_HEADER2 (128 * KiB)
#define VHDX_HEADER_SIZE (4 * KiB)
#define VHDX_REGION_TABLE (192 * KiB)
#define VHDX_TABLE_SIZE (64 * KiB) /* region and metadata tables */
#define VHDX_MAX_ENTRIES 2047
#define VHDX_REGION_REQUIRED 1u
#define VHDX_META_REQUIRED 4u
#define VHDX_HAS_PARENT 2u
#define VHDX_BLOCK_MIN MiB
#define VHDX_BLOCK_MAX (256 * MiB)
#define VHDX_SECTORS_PER_CHUNK (1ull << 23)

/* GUIDs as stored: the first three fields little-endian. */
static const unsigned char guid_bat[16] = {
	0x66, 0x77, 0xc2, 0x2d, 0x23, 0xf6, 0x00, 0x42,
	0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
static const unsigned char guid_metadata[16] = {
	0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b,
	0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};

enum vhdx_item {
	ITEM_FILE_PARAMS,
	ITEM_DISK_SIZE,
	ITEM_PAGE83,
	ITEM_LOGICAL_SECTOR,
	ITEM_PHYSICAL_SECTOR,
	ITEM_PARENT_LOCATOR,
	ITEM_COUNT
};

static const unsigned char item_guids[ITEM_COUNT][16] = {
	[ITEM_FILE_PARAMS] = {0x37, 0x67, 0xa1, 0xca, 0x36, 0xfa, 0x43, 0x4d,
	                      0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b},
	[ITEM_DISK_SIZE] = {0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48,
	                    0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8},
	[ITEM_PAGE83] = {0xab, 0x12, 0xca, 0xbe, 0xe6, 0xb2, 0x23, 0x45,
	                 0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46},
	[ITEM_LOGICAL_SECTOR] = {0x1d, 0xbf, 0x41, 0x81, 0x6f, 0xa9, 0x09,
	                         0x47, 0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa,
	                         0xab, 0x5f},
	[ITEM_PHYSICAL_SECTOR] = {0xc7, 0x48, 0xa3, 0xcd, 0x5d, 0x44, 0x71,
	                          0x44, 0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51,
	                          0xc5, 0x56},
	[ITEM_PARENT_LOCATOR] = {0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d,
	                         0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34,
	                         0xab, 0x0c},
};

struct vhdx_region {
	bool found;
	uint64_t offset;
	uint32_t length;
};

struct vhdx_meta {
	bool found;
	uint32_t offset; /* from the metadata region's start */
	uint32_t length;
};

/* CRC-32C (Castagnoli), the checksum of every VHDX structure, computed
 * with the 4-byte field at `field` taken as zero. */
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one byte a step. */
static const uint32_t crc32c_table[256] = {
	0x00000000u, 0xf26b8303u, 0xe13b70f7u, 0x1350f3f4u,
	0xc79a971fu, 0x35f1141cu, 0x26a1e7e8u, 0xd4ca64ebu,
	0x8ad958cfu, 0x78b2dbccu, 0x6be22838u, 0x9989ab3bu,
	0x4d43cfd0u, 0xbf284cd3u, 0xac78bf27u, 0x5e133c24u,
	0x105ec76fu, 0xe235446cu, 0xf165b798u, 0x030e349bu,
	0xd7c45070u, 0x25afd373u, 0x36ff2087u, 0xc494a384u,
	0x9a879fa0u, 0x68ec1ca3u, 0x7bbcef57u, 0x89d76c54u,
	0x5d1d08bfu, 0xaf768bbcu, 0xbc267848u, 0x4e4dfb4bu,
	0x20bd8edeu, 0xd2d60dddu, 0xc186fe29u, 0x33ed7d2au,
	0xe72719c1u, 0x154c9ac2u, 0x061c6936u, 0xf477ea35u,
	0xaa64d611u, 0x580f5512u, 0x4b5fa6e6u, 0xb93425e5u,
	0x6dfe410eu, 0x9f95c20du, 0x8cc531f9u, 0x7eaeb2fau,
	0x30e349b1u, 0xc288cab2u, 0xd1d83946u, 0x23b3ba45u,
	0xf779deaeu, 0x05125dadu, 0x1642ae59u, 0xe4292d5au,
	0xba3a117eu, 0x4851927du, 0x5b016189u, 0xa96ae28au,
	0x7da08661u, 0x8fcb0562u, 0x9c9bf696u, 0x6ef07595u,
	0x417b1dbcu, 0xb3109ebfu, 0xa0406d4bu, 0x522bee48u,
	0x86e18aa3u, 0x748a09a0u, 0x67dafa54u, 0x95b17957u,
	0xcba24573u, 0x39c9c670u, 0x2a993584u, 0xd8f2b687u,
	0x0c38d26cu, 0xfe53516fu, 0xed03a29bu, 0x1f682198u,
	0x5125dad3u, 0xa34e59d0u, 0xb01eaa24u, 0x42752927u,
	0x96bf4dccu, 0x64d4cecfu, 0x77843d3bu, 0x85efbe38u,
	0xdbfc821cu, 0x2997011fu, 0x3ac7f2ebu, 0xc8ac71e8u,
	0x1c661503u, 0xee0d9600u, 0xfd5d65f4u, 0x0f36e6f7u,
	0x61c69362u, 0x93ad1061u, 0x80fde395u, 0x72966096u,
	0xa65c047du, 0x5437877eu, 0x4767748au, 0xb50cf789u,
	0xeb1fcbadu, 0x197448aeu, 0x0a24bb5au, 0xf84f3859u,
	0x2c855cb2u, 0xdeeedfb1u, 0xcdbe2c45u, 0x3fd5af46u,
	0x7198540du, 0x83f3d70eu, 0x90a324fau, 0x62c8a7f9u,
	0xb602c312u, 0x44694011u, 0x5739b3e5u, 0xa55230e6u,
	0xfb410cc2u, 0x092a8fc1u, 0x1a7a7c35u, 0xe811ff36u,
	0x3cdb9bddu, 0xceb018deu, 0xdde0eb2au, 0x2f8b6829u,
	0x82f63b78u, 0x709db87bu, 0x63cd4b8fu, 0x91a6c88cu,
	0x456cac67u, 0xb7072f64u, 0xa457dc90u, 0x563c5f93u,
	0x082f63b7u, 0xfa44e0b4u, 0xe9141340u, 0x1b7f9043u,
	0xcfb5f4a8u, 0x3dde77abu, 0x2e8e845fu, 0xdce5075cu,
	0x92a8fc17u, 0x60c37f14u, 0x73938ce0u, 0x81f80fe3u,
	0x55326b08u, 0xa759e80bu, 0xb4091bffu, 0x466298fcu,
	0x1871a4d8u, 0xea1a27dbu, 0xf94ad42fu, 0x0b21572cu,
	0xdfeb33c7u, 0x2d80b0c4u, 0x3ed04330u, 0xccbbc033u,
	0xa24bb5a6u, 0x502036a5u, 0x4370c551u, 0xb11b4652u,
	0x65d122b9u, 0x97baa1bau, 0x84ea524eu, 0x7681d14du,
	0x2892ed69u, 0xdaf96e6au, 0xc9a99d9eu, 0x3bc21e9du,
	0xef087a76u, 0x1d63f975u, 0x0e330a81u, 0xfc588982u,
	0xb21572c9u, 0x407ef1cau, 0x532e023eu, 0xa145813du,
	0x758fe5d6u, 0x87e466d5u, 0x94b49521u, 0x66df1622u,
	0x38cc2a06u, 0xcaa7a905u, 0xd9f75af1u, 0x2b9cd9f2u,
	0xff56bd19u, 0x0d3d3e1au, 0x1e6dcdeeu, 0xec064eedu,
	0xc38d26c4u, 0x31e6a5c7u, 0x22b65633u, 0xd0ddd530u,
	0x0417b1dbu, 0xf67c32d8u, 0xe52cc12cu, 0x1747422fu,
	0x49547e0bu, 0xbb3ffd08u, 0xa86f0efcu, 0x5a048dffu,
	0x8ecee914u, 0x7ca56a17u, 0x6ff599e3u, 0x9d9e1ae0u,
	0xd3d3e1abu, 0x21b862a8u, 0x32e8915cu, 0xc083125fu,
	0x144976b4u, 0xe622f5b7u, 0xf5720643u, 0x07198540u,
	0x590ab964u, 0xab613a67u, 0xb831c993u, 0x4a5a4a90u,
	0x9e902e7bu, 0x6cfbad78u, 0x7fab5e8cu, 0x8dc0dd8fu,
	0xe330a81au, 0x115b2b19u, 0x020bd8edu, 0xf0605beeu,
	0x24aa3f05u, 0xd6c1bc06u, 0xc5914ff2u, 0x37faccf1u,
	0x69e9f0d5u, 0x9b8273d6u, 0x88d28022u, 0x7ab90321u,
	0xae7367cau, 0x5c18e4c9u, 0x4f48173du, 0xbd23943eu,
	0xf36e6f75u, 0x0105ec76u, 0x12551f82u, 0xe03e9c81u,
	0x34f4f86au, 0xc69f7b69u, 0xd5cf889du, 0x27a40b9eu,
	0x79b737bau, 0x8bdcb4b9u, 0x988c474du, 0x6ae7c44eu,
	0xbe2da0a5u, 0x4c4623a6u, 0x5f16d052u, 0xad7d5351u,
};

static uint32_t crc32c_update(uint32_t crc, const unsigned char *b,
                              size_t len) VMD_NO_COVERAGE;

#if defined(__x86_64__)
/* SSE4.2's crc32 instruction computes CRC-32C: 8 bytes a step. */
static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *b, size_t len)
	__attribute__((target("sse4.2"))) VMD_NO_COVERAGE;

static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *b, size_t len)
{
	uint64_t c = crc, w;
	size_t i = 0;

	for (; len - i >= 8; i += 8) {
		memcpy(&w, b + i, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	for (; i < len; i++)
		c = __builtin_ia32_crc32qi((uint32_t)c, b[i]);
	return (uint32_t)c;
}
#endif

static uint32_t crc32c_update(uint32_t crc, const unsigned char *b,
                              size_t len)
{
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return crc32c_sse42(crc, b, len);
#endif
	for (size_t i = 0; i < len; i++)
		crc = crc32c_table[(crc ^ b[i]) & 0xff] ^ (crc >> 8);
	return crc;
}

/* CRC-32C of b[0..len) with the 4-byte checksum field at `field` taken as
 * zeros (field + 4 <= len). */
static uint32_t crc32c(const unsigned char *b, size_t len, size_t field)
{
	static const unsigned char zero[4];
	uint32_t crc = 0xffffffffu;

	crc = crc32c_update(crc, b, field);
	crc = crc32c_update(crc, zero, sizeof(zero));
	crc = crc32c_update(crc, b + field + 4, len - field - 4);
	return ~crc;
}

static bool vhdx_probe(const struct vmd_probe_data *p)
{
	return vmd_bytes_at(p->head, p->head_len, 0, "vhdxfile", 8);
}

/*
 * The current header, as QEMU picks it: valid = signature, version 1 and
 * checksum; the higher sequence number wins; equal numbers only when the
 * two are identical. Returns -1 on a read failure, 1 when none is usable
 * (refused), 0 with the header in `cur`.
 */
static int vhdx_header(struct vmd_image_source *src,
                       const struct vmd_probe_data *p,
                       struct vmd_inspect_result *r,
                       unsigned char cur[VHDX_HEADER_SIZE])
{
	unsigned char h[2][VHDX_HEADER_SIZE];
	bool valid[2];
	uint64_t seq[2];

	for (int i = 0; i < 2; i++) {
		long n = vmd_probe_read(src, p, h[i], VHDX_HEADER_SIZE,
		                 i ? VHDX_HEADER2 : VHDX_HEADER1);

		if (n < 0)
			return -1;
		valid[i] = (size_t)n == VHDX_HEADER_SIZE &&
		           memcmp(h[i], "head", 4) == 0 &&
		           vmd_le16_at(h[i], VHDX_HEADER_SIZE, 66) == 1 &&
		           crc32c(h[i], VHDX_HEADER_SIZE, 4) ==
		                   vmd_le32_at(h[i], VHDX_HEADER_SIZE, 4);
		seq[i] = vmd_le64_at(h[i], VHDX_HEADER_SIZE, 8);
	}
	if (!valid[0] && !valid[1]) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: no valid header (signature, version 1, "
		                   "CRC-32C)");
		return 1;
	}
	if (valid[0] && valid[1] && seq[0] == seq[1] &&
	    memcmp(h[0], h[1], VHDX_HEADER_SIZE) != 0) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: two different headers with the same "
		                   "sequence number");
		return 1;
	}
	memcpy(cur, h[valid[1] && (!valid[0] || seq[1] > seq[0])],
	       VHDX_HEADER_SIZE);
	return 0;
}

static bool range_in_file(const struct vmd_probe_data *p, uint64_t off,
                          uint64_t len)
{
	return vmd_add_sat(off, len) <= p->file_size;
}

/* Region table: locate the BAT and the metadata region. Returns -1 on a
 * read failure, 1 when refused beyond use, else 0. */
static int vhdx_regions(struct vmd_image_source *src,
                        const struct vmd_probe_data *p,
                        struct vmd_inspect_result *r, unsigned char *buf,
                        struct vhdx_region *bat, struct vhdx_region *meta)
{
	uint32_t count;
	long n = vmd_probe_read(src, p, buf, VHDX_TABLE_SIZE, VHDX_REGION_TABLE);

	if (n < 0)
		return -1;
	if ((size_t)n < VHDX_TABLE_SIZE || memcmp(buf, "regi", 4) != 0) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: no region table at 192 KiB");
		return 1;
	}
	if (crc32c(buf, VHDX_TABLE_SIZE, 4) !=
	    vmd_le32_at(buf, VHDX_TABLE_SIZE, 4))
		vmd_inspect_refuse(r, "vhdx-checksum",
		                   "vhdx: region table CRC-32C mismatch");
	count = vmd_le32_at(buf, VHDX_TABLE_SIZE, 8);
	if (count > VHDX_MAX_ENTRIES) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vhdx: %u region table entries (at most %d)",
		                   count, VHDX_MAX_ENTRIES);
		return 1;
	}
	for (uint32_t i = 0; i < count; i++) {
		const unsigned char *e = buf + 16 + (size_t)i * 32;
		struct vhdx_region *which = NULL;

		if (memcmp(e, guid_bat, 16) == 0)
			which = bat;
		else if (memcmp(e, guid_metadata, 16) == 0)
			which = meta;
		if (!which) {
			if (vmd_le32_at(e, 32, 28) & VHDX_REGION_REQUIRED)
				vmd_inspect_refuse(r, "vhdx-header",
				                   "vhdx: unknown required "
				                   "region");
			continue;
		}
		if (which->found) {
			vmd_inspect_refuse(r, "vhdx-header",
			                   "vhdx: duplicate region entry");
			return 1;
		}
		which->found = true;
		which->offset = vmd_le64_at(e, 32, 16);
		which->length = vmd_le32_at(e, 32, 24);
		if (!range_in_file(p, which->offset, which->length))
			vmd_inspect_refuse(r, "header-bounds",
			                   "vhdx: region (offset %llu, %u bytes) "
			                   "is not within the file",
			                   (unsigned long long)which->offset,
			                   which->length);
	}
	if (!bat->found || !meta->found) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: no BAT or metadata region");
		return 1;
	}
	return 0;
}

/* Metadata table: find the items. Same return convention. */
static int vhdx_items(struct vmd_image_source *src,
                      const struct vmd_probe_data *p,
                      struct vmd_inspect_result *r, unsigned char *buf,
                      const struct vhdx_region *meta,
                      struct vhdx_meta items[ITEM_COUNT])
{
	unsigned count;
	long n;

	if (!range_in_file(p, meta->offset, 32)) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vhdx: metadata region at %llu is not within "
		                   "the file",
		                   (unsigned long long)meta->offset);
		return 1;
	}
	n = vmd_probe_read(src, p, buf, VHDX_TABLE_SIZE, meta->offset);
	if (n < 0)
		return -1;
	if ((size_t)n < 32 || memcmp(buf, "metadata", 8) != 0) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: no metadata table at offset %llu",
		                   (unsigned long long)meta->offset);
		return 1;
	}
	count = vmd_le16_at(buf, (size_t)n, 10);
	if (count > VHDX_MAX_ENTRIES ||
	    32 + (size_t)count * 32 > (size_t)n) {
		vmd_inspect_refuse(r, "header-bounds",
		                   "vhdx: %u metadata entries (at most %d, "
		                   "within the file)",
		                   count, VHDX_MAX_ENTRIES);
		return 1;
	}
	for (unsigned i = 0; i < count; i++) {
		const unsigned char *e = buf + 32 + (size_t)i * 32;
		size_t k = 0;

		while (k < ITEM_COUNT && memcmp(e, item_guids[k], 16) != 0)
			k++;
		if (k == ITEM_COUNT) {
			if (vmd_le32_at(e, 32, 24) & VHDX_META_REQUIRED)
				vmd_inspect_refuse(r, "vhdx-header",
				                   "vhdx: unknown required "
				                   "metadata item");
			continue;
		}
		if (items[k].found) {
			vmd_inspect_refuse(r, "vhdx-header",
			                   "vhdx: duplicate metadata item");
			return 1;
		}
		items[k].found = true;
		items[k].offset = vmd_le32_at(e, 32, 16);
		items[k].length = vmd_le32_at(e, 32, 20);
		/* u32 + u32 in 64 bits; meta->offset <= file size was
		 * checked above, so meta->offset + a u32 cannot wrap. */
		if ((uint64_t)items[k].offset + items[k].length >
		            meta->length ||
		    !range_in_file(p, meta->offset + items[k].offset,
		                   items[k].length))
			vmd_inspect_refuse(r, "header-bounds",
			                   "vhdx: metadata item (offset %u, %u "
			                   "bytes) is not within its region",
			                   items[k].offset, items[k].length);
	}
	if (items[ITEM_PARENT_LOCATOR].found)
		vmd_inspect_refuse(r, "vhdx-parent",
		                   "vhdx: differencing disk (parent locator)");
	for (size_t k = 0; k < ITEM_PARENT_LOCATOR; k++)
		if (!items[k].found) {
			vmd_inspect_refuse(r, "vhdx-header",
			                   "vhdx: a required metadata item is "
			                   "missing");
			return 1;
		}
	return 0;
}

/* Read a metadata item's first `len` bytes (0 when it is shorter). */
static int item_value(struct vmd_image_source *src,
                      const struct vmd_probe_data *p,
                      const struct vhdx_region *meta,
                      const struct vhdx_meta *item, size_t len,
                      unsigned char out[8])
{
	long n;

	memset(out, 0, 8);
	if (item->length < len ||
	    !range_in_file(p, meta->offset + item->offset, len))
		return 0;
	n = vmd_probe_read(src, p, out, len, meta->offset + item->offset);
	return n < 0 ? -1 : 0;
}

static void vhdx_bat(const struct vmd_inspect_limits *lim,
                     struct vmd_inspect_result *r,
                     const struct vhdx_region *bat, uint64_t disk_size,
                     uint32_t block, uint32_t sector, bool parent)
{
	/* sector is 512 or 4096 and block a power of two <= 256 MiB (checked
	 * by the caller): chunk_ratio is in [16, 2^26], never 0. */
	uint64_t chunk_ratio = VHDX_SECTORS_PER_CHUNK * sector / block;
	uint64_t data_blocks = disk_size / block + (disk_size % block != 0);
	uint64_t bitmap_blocks =
	        data_blocks / chunk_ratio + (data_blocks % chunk_ratio != 0);
	uint64_t entries, bytes;

	if (parent)
		entries = vmd_mul_sat(bitmap_blocks, chunk_ratio + 1);
	else
		entries = data_blocks ? data_blocks + (data_blocks - 1) /
		                                              chunk_ratio
		                      : 0;
	bytes = vmd_mul_sat(entries, 8);
	if (!vmd_inspect_table_limit(r, lim, "vhdx: BAT", bytes) &&
	    bytes > bat->length)
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: BAT region of %u bytes is smaller than "
		                   "the %llu the disk needs",
		                   bat->length, (unsigned long long)bytes);
}

static int vhdx_inspect(struct vmd_image_source *src,
                        const struct vmd_probe_data *p,
                        const struct vmd_inspect_limits *lim, unsigned flags,
                        struct vmd_inspect_result *r)
{
	/* On the stack: no allocation per image (the fuzzer runs this tens
	 * of thousands of times a second). */
	unsigned char hdr[VHDX_HEADER_SIZE], v[3][8], table[VHDX_TABLE_SIZE];
	struct vhdx_region bat = {0}, meta = {0};
	struct vhdx_meta items[ITEM_COUNT] = {{0}};
	uint32_t block, sector, params;
	uint64_t disk_size;
	int rc;

	(void)flags;
	r->format = VMD_IMG_VHDX;
	r->version = 1;
	rc = vhdx_header(src, p, r, hdr);
	if (rc)
		return rc < 0 ? -1 : 0;
	if (!vmd_all_zero(hdr + 48, 16))
		vmd_inspect_refuse(r, "vhdx-log",
		                   "vhdx: the log is not empty (QEMU would "
		                   "replay it into the file first)");
	if (vmd_le32_at(hdr, sizeof(hdr), 68) &&
	    !range_in_file(p, vmd_le64_at(hdr, sizeof(hdr), 72),
	                   vmd_le32_at(hdr, sizeof(hdr), 68)))
		vmd_inspect_refuse(r, "header-bounds",
		                   "vhdx: the log is not within the file");
	rc = vhdx_regions(src, p, r, table, &bat, &meta);
	if (rc)
		return rc < 0 ? -1 : 0;
	rc = vhdx_items(src, p, r, table, &meta, items);
	if (rc)
		return rc < 0 ? -1 : 0;
	if (item_value(src, p, &meta, &items[ITEM_FILE_PARAMS], 8, v[0]) ||
	    item_value(src, p, &meta, &items[ITEM_DISK_SIZE], 8, v[1]) ||
	    item_value(src, p, &meta, &items[ITEM_LOGICAL_SECTOR], 4, v[2]))
		return -1;
	block = vmd_le32_at(v[0], 8, 0);
	params = vmd_le32_at(v[0], 8, 4);
	disk_size = vmd_le64_at(v[1], 8, 0);
	sector = vmd_le32_at(v[2], 8, 0);
	if (params & VHDX_HAS_PARENT)
		vmd_inspect_refuse(r, "vhdx-parent",
		                   "vhdx: differencing disk (HasParent)");
	r->virtual_size = disk_size / SECTOR * SECTOR;
	if (block < VHDX_BLOCK_MIN || block > VHDX_BLOCK_MAX ||
	    (block & (block - 1))) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: bad block size %u", block);
		return 0;
	}
	r->cluster_size = block;
	/* QEMU 7.2 opens only 512-byte logical sectors (4096: "Operation not
	 * supported"). */
	if (sector != 512) {
		vmd_inspect_refuse(r, "vhdx-header",
		                   "vhdx: logical sector size %u not supported",
		                   sector);
		if (sector != 4096)
			return 0;
	}
	vhdx_bat(lim, r, &bat, disk_size, block, sector,
	         (params & VHDX_HAS_PARENT) != 0);
	return 0;
}

const struct vmd_format_ops vmd_format_vhd = {
	.format = VMD_IMG_VHD,
	.name = "vpc",
	.probe = vhd_probe,
	.inspect = vhd_inspect,
};

const struct vmd_format_ops vmd_format_vhdx = {
	.format = VMD_IMG_VHDX,
	.name = "vhdx",
	.probe = vhdx_probe,
	.inspect = vhdx_inspect,
};
