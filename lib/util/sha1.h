/*
 * SHA-1 of a short string, written here from FIPS 180-4 section 6.1.
 *
 * For the cache's file names only (vmd_cache_id: the SHA-1 of a source's
 * id, as Nova names its cached bases): a name, not a security check, and
 * computed on every create from a cached base. Hashing that one string
 * with libcrypto would load it into every process (about 0.9 ms of
 * relocations, half of vmdisk's start-up); libcrypto is now loaded on first
 * use (crypto_lazy.h) for what verifies downloads.
 */
#ifndef VMDISK_SHA1_H
#define VMDISK_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define VMD_SHA1_LEN 20

void vmd_sha1(const void *data, size_t len, uint8_t out[VMD_SHA1_LEN]);

#endif
