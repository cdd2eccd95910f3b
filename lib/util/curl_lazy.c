/*
 * libcurl loaded on first use (see curl_lazy.h): the table of the calls
 * the project makes, filled once through lazylib.h.
 */
#include "cleanup.h"
#include "curl_lazy.h"
#include "lazylib.h"

#define LIBCURL_SONAME "libcurl.so.4"

struct vmd_curl_api vmd_curl_api;

static struct vmd_lazylib lib = VMD_LAZYLIB_INIT;

static void load(void)
{
	struct vmd_curl_api api = {0};
	const struct vmd_lazy_sym syms[] = {
		{"curl_global_init", &api.global_init},
		{"curl_easy_init", &api.easy_init},
		{"curl_easy_cleanup", &api.easy_cleanup},
		{"curl_easy_setopt", &api.easy_setopt},
		{"curl_easy_getinfo", &api.easy_getinfo},
		{"curl_easy_perform", &api.easy_perform},
		{"curl_easy_strerror", &api.easy_strerror},
		{"curl_free", &api.free},
		{"curl_slist_append", &api.slist_append},
		{"curl_slist_free_all", &api.slist_free_all},
		{"curl_url", &api.url},
		{"curl_url_cleanup", &api.url_cleanup},
		{"curl_url_get", &api.url_get},
		{"curl_url_set", &api.url_set},
	};

	if (vmd_lazylib_open(&lib, LIBCURL_SONAME, syms, ELEMENTSOF(syms)) == 0)
		vmd_curl_api = api;
}

int vmd_curl_load(struct vmd_error *err)
{
	return vmd_lazylib_load(&lib, load, "network sources need libcurl",
	                        err);
}
