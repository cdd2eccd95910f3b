/*
 * libcurl plumbing shared by the http and glance sources.
 *
 * One place sets the options every image request gets: protocols limited
 * to the URL's own scheme (redirects too), a bounded number of redirects,
 * connect and low-speed timeouts, TLS verification always on with an
 * optional ca_file, no signals. vmd_curl_download streams the body into a
 * sink and resumes a dropped transfer with a Range request (starting over
 * when the server ignores the Range); vmd_curl_get_buffer reads a small
 * answer (an API record) into memory.
 *
 * Public messages start with the caller's step ("http", "glance") and never
 * show a URL; details show it without its query.
 */
#ifndef VMDISK_CURL_COMMON_H
#define VMDISK_CURL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "source.h"
#include "url.h" /* vmd_url_valid, VMD_URL_MAX */

struct curl_slist;

/* url without its userinfo ("user:password@"), query and fragment, for
 * logs, details and anything stored: a signed URL's signature is in its
 * query. */
void vmd_url_for_log(const char *url, char *out, size_t outsz);

struct vmd_curl_req {
	const char *step;                  /* first word of public messages */
	const char *url;
	const struct curl_slist *headers;  /* extra request headers, or NULL */
	bool no_redirects;                 /* 3xx is an error (secret headers) */
	uint64_t expected_size;            /* download: 0 = unknown */
	/* out: the failure happened before the server answered usefully
	 * (could not connect, timed out, 5xx) and nothing was taken, so
	 * another server may be tried. */
	bool unreachable;
};

/* GET url into a malloc'ed NUL-terminated buffer of at most `max` bytes.
 * An HTTP status >= 400 is not an error here: the caller reads *status. */
int vmd_curl_get_buffer(const struct vmd_config *cfg, struct vmd_curl_req *req,
                        size_t max, char **body, size_t *len, long *status,
                        struct vmd_error *err);

/* GET url into the sink, resuming up to cfg->http_retries times. */
int vmd_curl_download(const struct vmd_config *cfg, struct vmd_curl_req *req,
                      struct vmd_sink *sink, struct vmd_error *err);

/* Wipe every string of the list, then free it (the list held a token). */
void vmd_curl_slist_wipe_free(struct curl_slist *list);

/*
 * The Glance image record (lib/source_glance.c), declared here so that the
 * tests can feed it records no real Glance would give: checks the image is
 * `image_id`, active, of a format in `allowed` (a comma list), and fills
 * meta (size, disk_format, hash from os_hash_algo/os_hash_value or else the
 * md5 checksum, direct_url). meta->id is left to the caller.
 */
int vmd_glance_parse_image(const char *json, size_t len, const char *image_id,
                           const char *allowed, struct vmd_source_meta *meta,
                           struct vmd_error *err);

#endif
