/*
 * The http and https image sources (libcurl, through lib/curl_common.c).
 *
 * resolve only checks the URL, strictly (see vmd_url_valid; libcurl's own
 * parser must agree and find no user name in it): the URL as given is the
 * image's id, and its size and hash are unknown until the download.
 * download streams the body into the sink with the options and the resume
 * logic of vmd_curl_download. Public messages never show the URL: it may
 * carry a signed query.
 */
#include <curl/curl.h>

#include "curl_lazy.h"
#include <stdio.h>
#include <string.h>

#include "curl_common.h"
#include "source.h"

/* libcurl's parser reads the URL as we do: no user name or password. */
static bool curl_agrees(const char *url)
{
	CURLU *u = curl_url();
	char *user = NULL, *password = NULL;
	bool ok;

	if (!u)
		return false;
	ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	     curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_NO_USER &&
	     curl_url_get(u, CURLUPART_PASSWORD, &password, 0) ==
	             CURLUE_NO_PASSWORD;
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return ok;
}

static int check_url(const char *url, struct vmd_error *err)
{
	size_t len = url ? strnlen(url, VMD_URL_MAX + 1) : 0;

	if (len > VMD_URL_MAX)
		return vmd_error_set(err, VMD_E_INVAL, "http: URL too long",
		                     "more than %d bytes", VMD_URL_MAX);
	if (!vmd_url_valid(url, true) || !curl_agrees(url))
		/* The URL is not echoed: it may hold a password or a
		 * signed query. */
		return vmd_error_set(err, VMD_E_INVAL,
		                     "http: URL not accepted (http or https, a "
		                     "host, no user name, no blanks)",
		                     "%zu bytes, refused by the URL check", len);
	return 0;
}

static int http_resolve(struct vmd_ctx *ctx, const char *url,
                        struct vmd_source_meta *meta, struct vmd_error *err)
{
	int rc;

	(void)ctx;
	memset(meta, 0, sizeof(*meta));
	rc = check_url(url, err);
	if (rc < 0)
		return rc;
	/* VMD_URL_MAX is far below the size of meta->id. */
	snprintf(meta->id, sizeof(meta->id), "%s", url);
	return 0;
}

static int http_download(struct vmd_ctx *ctx, const char *url,
                         const struct vmd_source_meta *meta,
                         struct vmd_sink *sink, struct vmd_error *err)
{
	struct vmd_curl_req req = {
		.step = "http",
		.url = url,
		.expected_size = meta ? meta->size : 0,
	};
	int rc;

	if (!ctx)
		return vmd_error_set(err, VMD_E_INVAL, "http: no context",
		                     "NULL ctx");
	rc = check_url(url, err);
	if (rc < 0)
		return rc;
	return vmd_curl_download(&ctx->cfg, &req, sink, err);
}

const struct vmd_source_ops vmd_source_http = {
	.scheme = "http",
	.resolve = http_resolve,
	.download = http_download,
};
