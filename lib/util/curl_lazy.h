/*
 * libcurl, loaded on first use.
 *
 * libcurl brings some thirty shared libraries (TLS, HTTP/2, IDN, LDAP,
 * Kerberos...) whose loading and relocation cost every vmdisk process about
 * 6 ms, four times the rest of its start-up, though most commands (create
 * from a cached base, info, inspect) never touch the network. So the library
 * is not linked: vmd_curl_load() dlopen()s it (by its soname, from the
 * system's library path only) the first time a network source is used, and
 * the curl_* calls below go through the table it fills.
 *
 * Include this after <curl/curl.h>, and call vmd_curl_load() before any
 * curl_* call (vmd_source_for does, for the http and glance sources).
 */
#ifndef VMDISK_CURL_LAZY_H
#define VMDISK_CURL_LAZY_H

#include <curl/curl.h>

#include <vmdisk/error.h>

struct vmd_curl_api {
	CURLcode (*global_init)(long flags);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *h);
	CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
	CURLcode (*easy_perform)(CURL *h);
	const char *(*easy_strerror)(CURLcode cc);
	void (*free)(void *p);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
	CURLU *(*url)(void);
	void (*url_cleanup)(CURLU *u);
	CURLUcode (*url_get)(const CURLU *u, CURLUPart part, char **out,
	                     unsigned flags);
	CURLUcode (*url_set)(CURLU *u, CURLUPart part, const char *content,
	                     unsigned flags);
};

extern struct vmd_curl_api vmd_curl_api;

/* Load libcurl once (thread-safe); later calls only report the outcome. */
int vmd_curl_load(struct vmd_error *err);

#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_global_init (*vmd_curl_api.global_init)
#define curl_easy_init (*vmd_curl_api.easy_init)
#define curl_easy_cleanup (*vmd_curl_api.easy_cleanup)
#define curl_easy_setopt (*vmd_curl_api.easy_setopt)
#define curl_easy_getinfo (*vmd_curl_api.easy_getinfo)
#define curl_easy_perform (*vmd_curl_api.easy_perform)
#define curl_easy_strerror (*vmd_curl_api.easy_strerror)
#define curl_free (*vmd_curl_api.free)
#define curl_slist_append (*vmd_curl_api.slist_append)
#define curl_slist_free_all (*vmd_curl_api.slist_free_all)
#define curl_url (*vmd_curl_api.url)
#define curl_url_cleanup (*vmd_curl_api.url_cleanup)
#define curl_url_get (*vmd_curl_api.url_get)
#define curl_url_set (*vmd_curl_api.url_set)

#endif
