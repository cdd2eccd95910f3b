/*
 * libcurl loaded on first use (see curl_lazy.h): dlopen by soname, every
 * symbol the project calls resolved at once, so a missing one is an error
 * at load time, never a crash later.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <vmdisk/log.h>

#include "curl_lazy.h"

#define LIBCURL_SONAME "libcurl.so.4"

struct vmd_curl_api vmd_curl_api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc = VMD_E_UNSUPPORTED;
static char load_detail[256];

/* Resolve `name` into *slot; false when the library lacks it. */
static bool resolve(void *h, const char *name, void *slot, size_t size)
{
	void *sym = dlsym(h, name);

	if (!sym || size != sizeof(sym)) {
		snprintf(load_detail, sizeof(load_detail), "%s lacks %s",
		         LIBCURL_SONAME, name);
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
	struct vmd_curl_api api = {0};
	/* RTLD_NODELETE: the table outlives every handle. */
	void *h = dlopen(LIBCURL_SONAME, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);

	if (!h) {
		snprintf(load_detail, sizeof(load_detail), "dlopen: %s",
		         dlerror());
		return;
	}
	if (!RESOLVE(h, global_init, "curl_global_init") ||
	    !RESOLVE(h, easy_init, "curl_easy_init") ||
	    !RESOLVE(h, easy_cleanup, "curl_easy_cleanup") ||
	    !RESOLVE(h, easy_setopt, "curl_easy_setopt") ||
	    !RESOLVE(h, easy_getinfo, "curl_easy_getinfo") ||
	    !RESOLVE(h, easy_perform, "curl_easy_perform") ||
	    !RESOLVE(h, easy_strerror, "curl_easy_strerror") ||
	    !RESOLVE(h, free, "curl_free") ||
	    !RESOLVE(h, slist_append, "curl_slist_append") ||
	    !RESOLVE(h, slist_free_all, "curl_slist_free_all") ||
	    !RESOLVE(h, url, "curl_url") ||
	    !RESOLVE(h, url_cleanup, "curl_url_cleanup") ||
	    !RESOLVE(h, url_get, "curl_url_get") ||
	    !RESOLVE(h, url_set, "curl_url_set")) {
		dlclose(h);
		return;
	}
	vmd_curl_api = api;
	load_rc = 0;
}

int vmd_curl_load(struct vmd_error *err)
{
	pthread_once(&load_once, load);
	if (load_rc < 0)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "network sources need libcurl",
		                     "%s", load_detail);
	return 0;
}
