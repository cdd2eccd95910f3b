/*
 * libcrypto (OpenSSL), loaded on first use, for the reason libcurl is
 * (curl_lazy.h): it is the largest library vmdisk linked, some 0.9 ms of
 * relocations in every process, half of `vmdisk --version`, though only
 * the digests of a download (the sink in source.c, vmd_hash_fd) and the
 * cache's names (a SHA-1 of the source id: a create from a cached base
 * pays the load once per process, ~1.3 ms here) use it.
 *
 * Include this after <openssl/evp.h>; call vmd_crypto_load() before any
 * EVP_* call below (vmd_sink_new and vmd_cache_id do).
 */
#ifndef VMDISK_CRYPTO_LAZY_H
#define VMDISK_CRYPTO_LAZY_H

#include <openssl/evp.h>

#include <vmdisk/error.h>

struct vmd_crypto_api {
	__typeof__(&EVP_md5) md5;
	__typeof__(&EVP_sha256) sha256;
	__typeof__(&EVP_sha512) sha512;
	__typeof__(&EVP_sha1) sha1;
	__typeof__(&EVP_Digest) digest;
	__typeof__(&EVP_MD_CTX_new) ctx_new;
	__typeof__(&EVP_MD_CTX_free) ctx_free;
	__typeof__(&EVP_DigestInit_ex) init;
	__typeof__(&EVP_DigestUpdate) update;
	__typeof__(&EVP_DigestFinal_ex) final;
};

extern struct vmd_crypto_api vmd_crypto_api;

/* Load libcrypto once (thread-safe); later calls only report the outcome. */
int vmd_crypto_load(struct vmd_error *err);

#define EVP_md5 (*vmd_crypto_api.md5)
#define EVP_sha256 (*vmd_crypto_api.sha256)
#define EVP_sha512 (*vmd_crypto_api.sha512)
#define EVP_sha1 (*vmd_crypto_api.sha1)
#define EVP_Digest (*vmd_crypto_api.digest)
#define EVP_MD_CTX_new (*vmd_crypto_api.ctx_new)
#define EVP_MD_CTX_free (*vmd_crypto_api.ctx_free)
#define EVP_DigestInit_ex (*vmd_crypto_api.init)
#define EVP_DigestUpdate (*vmd_crypto_api.update)
#define EVP_DigestFinal_ex (*vmd_crypto_api.final)

#endif
