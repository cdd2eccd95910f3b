/*
 * libcurl loaded on first use (see curl_lazy.h): the table of the calls
 * the project makes, filled once through lazylib.h.
 */
#include <pthread.h>

#include "curl_lazy.h"
#include "lazylib.h"

#define LIBCURL_SONAME "libcurl.so.4"

struct vmd_curl_api vmd_curl_api;

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static int load_rc = VMD_E_UNSUPPORTED;
static char load_detail[256];

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

	if (vmd_lazylib_open(LIBCURL_SONAME, syms, sizeof(syms) / sizeof(syms[0]),
	                     load_detail, sizeof(load_detail)) < 0)
		return;
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
