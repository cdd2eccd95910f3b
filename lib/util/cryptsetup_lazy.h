/*
 * libcryptsetup, loaded on first use, for the reason libcurl is
 * (curl_lazy.h): it brings device-mapper, udev, argon2, blkid and OpenSSL's
 * TLS half, some 4 ms of every vmdisk start, though only encrypted LVM
 * volumes need it. vmd_cryptsetup_load() dlopen()s it by soname and fills
 * the table the crypt_* calls below go through.
 *
 * Include this after <libcryptsetup.h>; call vmd_cryptsetup_load() before
 * any crypt_* call (every vmd_luks_* function does).
 */
#ifndef VMDISK_CRYPTSETUP_LAZY_H
#define VMDISK_CRYPTSETUP_LAZY_H

#include <libcryptsetup.h>

#include <vmdisk/error.h>

struct vmd_cryptsetup_api {
	__typeof__(&crypt_init) init;
	__typeof__(&crypt_init_by_name) init_by_name;
	__typeof__(&crypt_free) free;
	__typeof__(&crypt_set_log_callback) set_log_callback;
	__typeof__(&crypt_set_pbkdf_type) set_pbkdf_type;
	__typeof__(&crypt_format) format;
	__typeof__(&crypt_keyslot_add_by_volume_key) keyslot_add_by_volume_key;
	__typeof__(&crypt_load) load;
	__typeof__(&crypt_activate_by_passphrase) activate_by_passphrase;
	__typeof__(&crypt_status) status;
	__typeof__(&crypt_deactivate) deactivate;
	__typeof__(&crypt_resize) resize;
	__typeof__(&crypt_get_type) get_type;
	__typeof__(&crypt_get_device_name) get_device_name;
};

extern struct vmd_cryptsetup_api vmd_cryptsetup_api;

/* Load libcryptsetup once (thread-safe); later calls report the outcome. */
int vmd_cryptsetup_load(struct vmd_error *err);

#define crypt_init (*vmd_cryptsetup_api.init)
#define crypt_init_by_name (*vmd_cryptsetup_api.init_by_name)
#define crypt_free (*vmd_cryptsetup_api.free)
#define crypt_set_log_callback (*vmd_cryptsetup_api.set_log_callback)
#define crypt_set_pbkdf_type (*vmd_cryptsetup_api.set_pbkdf_type)
#define crypt_format (*vmd_cryptsetup_api.format)
#define crypt_keyslot_add_by_volume_key                                        \
	(*vmd_cryptsetup_api.keyslot_add_by_volume_key)
#define crypt_load (*vmd_cryptsetup_api.load)
#define crypt_activate_by_passphrase (*vmd_cryptsetup_api.activate_by_passphrase)
#define crypt_status (*vmd_cryptsetup_api.status)
#define crypt_deactivate (*vmd_cryptsetup_api.deactivate)
#define crypt_resize (*vmd_cryptsetup_api.resize)
#define crypt_get_type (*vmd_cryptsetup_api.get_type)
#define crypt_get_device_name (*vmd_cryptsetup_api.get_device_name)

#endif
