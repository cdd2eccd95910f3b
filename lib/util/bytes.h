/*
 * Bounds-free big/little-endian load/store helpers. Callers check bounds
 * before calling; these exist so that no struct is ever cast onto bytes.
 */
#ifndef VMDISK_BYTES_H
#define VMDISK_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t vmd_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline uint64_t vmd_be64(const unsigned char *p)
{
	return (uint64_t)vmd_be32(p) << 32 | vmd_be32(p + 4);
}

static inline void vmd_put_be16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static inline void vmd_put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline void vmd_put_be64(unsigned char *p, uint64_t v)
{
	vmd_put_be32(p, (uint32_t)(v >> 32));
	vmd_put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t vmd_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t vmd_le64(const unsigned char *p)
{
	return (uint64_t)vmd_le32(p) | (uint64_t)vmd_le32(p + 4) << 32;
}

static inline void vmd_put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void vmd_put_le64(unsigned char *p, uint64_t v)
{
	vmd_put_le32(p, (uint32_t)v);
	vmd_put_le32(p + 4, (uint32_t)(v >> 32));
}

/* Round up to a multiple of 512 (the sector size every format accepts). */
static inline uint64_t vmd_round_sector(uint64_t n)
{
	return (n + 511) & ~(uint64_t)511;
}

/* Whether n bytes are all zero: the first is, and the buffer equals itself
 * shifted by one (memcmp is faster than any byte loop). */
static inline bool vmd_all_zero(const void *buf, size_t n)
{
	const unsigned char *p = buf;

	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

#endif
