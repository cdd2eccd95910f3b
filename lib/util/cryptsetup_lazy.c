/*
 * libcryptsetup loaded on first use (see cryptsetup_lazy.h): the table of
 * the calls the project makes, filled once through lazylib.h.
 */
#include <pthread.h>
#include <string.h>

#include "cryptsetup_lazy.h"
#include "lazylib.h"

#define LIBCRYPTSETUP_SONAME "libcryptsetup.so.12"

struct vmd_cryptsetup_api vmd_cryptsetup_api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc = VMD_E_UNSUPPORTED;
static char load_detail[256];

static void load(void)
{
	struct vmd_cryptsetup_api api;
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

	memset(&api, 0, sizeof(api));
	if (vmd_lazylib_open(LIBCRYPTSETUP_SONAME, syms,
	                     sizeof(syms) / sizeof(syms[0]), load_detail,
	                     sizeof(load_detail)) < 0)
		return;
	vmd_cryptsetup_api = api;
	load_rc = 0;
}

int vmd_cryptsetup_load(struct vmd_error *err)
{
	pthread_once(&load_once, load);
	if (load_rc < 0)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "encryption needs libcryptsetup",
		                     "%s", load_detail);
	return 0;
}
