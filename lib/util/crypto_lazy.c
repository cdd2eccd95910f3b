/*
 * libcrypto loaded on first use (see crypto_lazy.h): the table of the
 * calls the project makes, filled once through lazylib.h.
 */
#include "cleanup.h"
#include "crypto_lazy.h"
#include "lazylib.h"

#if OPENSSL_VERSION_MAJOR != 3
#error "LIBCRYPTO_SONAME below names OpenSSL 3's libcrypto"
#endif
#define LIBCRYPTO_SONAME "libcrypto.so.3"

struct vmd_crypto_api vmd_crypto_api;

static struct vmd_lazylib lib = VMD_LAZYLIB_INIT;

static void load(void)
{
	struct vmd_crypto_api api = {0};
	const struct vmd_lazy_sym syms[] = {
		{"EVP_md5", &api.md5},
		{"EVP_sha256", &api.sha256},
		{"EVP_sha512", &api.sha512},
		{"EVP_sha1", &api.sha1},
		{"EVP_Digest", &api.digest},
		{"EVP_MD_CTX_new", &api.ctx_new},
		{"EVP_MD_CTX_free", &api.ctx_free},
		{"EVP_DigestInit_ex", &api.init},
		{"EVP_DigestUpdate", &api.update},
		{"EVP_DigestFinal_ex", &api.final},
	};

	if (vmd_lazylib_open(&lib, LIBCRYPTO_SONAME, syms,
	                     ELEMENTSOF(syms)) == 0)
		vmd_crypto_api = api;
}

int vmd_crypto_load(struct vmd_error *err)
{
	return vmd_lazylib_load(&lib, load, "digests need libcrypto", err);
}
