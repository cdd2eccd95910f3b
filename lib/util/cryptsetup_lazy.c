/*
 * libcryptsetup loaded on first use (see cryptsetup_lazy.h): the table of
 * the calls the project makes, filled once through lazylib.h.
 */
#include "cleanup.h"
#include "cryptsetup_lazy.h"
#include "lazylib.h"

#define LIBCRYPTSETUP_SONAME "libcryptsetup.so.12"

struct vmd_cryptsetup_api vmd_cryptsetup_api;

static struct vmd_lazylib lib = VMD_LAZYLIB_INIT;

static void load(void)
{
	struct vmd_cryptsetup_api api = {0};
	const struct vmd_lazy_sym syms[] = {
		{"crypt_init", &api.init},
		{"crypt_init_by_name", &api.init_by_name},
		{"crypt_free", &api.free},
		{"crypt_set_log_callback", &api.set_log_callback},
		{"crypt_set_pbkdf_type", &api.set_pbkdf_type},
		{"crypt_format", &api.format},
		{"crypt_keyslot_add_by_volume_key",
		 &api.keyslot_add_by_volume_key},
		{"crypt_load", &api.load},
		{"crypt_activate_by_passphrase", &api.activate_by_passphrase},
		{"crypt_status", &api.status},
		{"crypt_deactivate", &api.deactivate},
		{"crypt_resize", &api.resize},
		{"crypt_get_type", &api.get_type},
		{"crypt_get_device_name", &api.get_device_name},
	};

	if (vmd_lazylib_open(&lib, LIBCRYPTSETUP_SONAME, syms,
	                     ELEMENTSOF(syms)) == 0)
		vmd_cryptsetup_api = api;
}

int vmd_cryptsetup_load(struct vmd_error *err)
{
	return vmd_lazylib_load(&lib, load, "encryption needs libcryptsetup",
	                        err);
}
