/*
 * libcryptsetup loaded on first use (see cryptsetup_lazy.h): dlopen by
 * soname, every symbol resolved at once, so a missing one is an error at
 * load time, never a crash later.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cryptsetup_lazy.h"

#define LIBCRYPTSETUP_SONAME "libcryptsetup.so.12"

struct vmd_cryptsetup_api vmd_cryptsetup_api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc = VMD_E_UNSUPPORTED;
static char load_detail[256];

static bool resolve(void *h, const char *name, void *slot, size_t size)
{
	void *sym = dlsym(h, name);

	if (!sym || size != sizeof(sym)) {
		snprintf(load_detail, sizeof(load_detail), "%s lacks %s",
		         LIBCRYPTSETUP_SONAME, name);
		return false;
	}
	/* POSIX: a function pointer converts to and from void *. */
	memcpy(slot, &sym, sizeof(sym));
	return true;
}

#define RESOLVE(h, field, name)                                                \
	resolve((h), (name), &api.field, sizeof(api.field))

static void load(void)
{
	struct vmd_cryptsetup_api api;
	/* RTLD_NODELETE: the table outlives every handle. */
	void *h = dlopen(LIBCRYPTSETUP_SONAME,
	                 RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);

	memset(&api, 0, sizeof(api));
	if (!h) {
		snprintf(load_detail, sizeof(load_detail), "dlopen: %s",
		         dlerror());
		return;
	}
	if (!RESOLVE(h, init, "crypt_init") ||
	    !RESOLVE(h, init_by_name, "crypt_init_by_name") ||
	    !RESOLVE(h, free, "crypt_free") ||
	    !RESOLVE(h, set_log_callback, "crypt_set_log_callback") ||
	    !RESOLVE(h, set_pbkdf_type, "crypt_set_pbkdf_type") ||
	    !RESOLVE(h, format, "crypt_format") ||
	    !RESOLVE(h, keyslot_add_by_volume_key,
	             "crypt_keyslot_add_by_volume_key") ||
	    !RESOLVE(h, load, "crypt_load") ||
	    !RESOLVE(h, activate_by_passphrase, "crypt_activate_by_passphrase") ||
	    !RESOLVE(h, status, "crypt_status") ||
	    !RESOLVE(h, deactivate, "crypt_deactivate")) {
		dlclose(h);
		return;
	}
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
