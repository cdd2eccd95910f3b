/*
 * libcurl plumbing for the http and glance sources (see curl_common.h).
 *
 * A download is a loop of attempts on one easy handle. Each attempt asks
 * for the bytes from the sink's offset on (no Range header at offset 0) and
 * the callbacks follow every response of the attempt (redirects included):
 * the header callback notes the status and Content-Range of the current
 * response, the body callback checks, before the first byte it takes, that
 * a 206 starts exactly where the sink stands, empties the sink when a 2xx
 * other than 206 answers a Range request (the server ignored it), and
 * refuses any other status. An attempt that ends with a transfer error
 * after the download got somewhere (the peer closed early, a reset, the
 * low-speed timeout) is retried from the new offset, at most http_retries
 * times; any other failure ends the download.
 *
 * We ask for ranges with CURLOPT_RANGE rather than CURLOPT_RESUME_FROM_LARGE:
 * with the latter libcurl itself fails a 200 answer (CURLE_RANGE_ERROR),
 * where we want to start over.
 */
#include <curl/curl.h>

#include "curl_lazy.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <vmdisk/log.h>

#include "curl_common.h"
#include "fsutil.h"
#include "vmd_build_config.h"

#define RECV_BUFFER (256 * 1024L)
#define HEADER_LINE_MAX 256
#define UNKNOWN_TOTAL UINT64_MAX

/* ---- URLs ---- */

void vmd_url_for_log(const char *url, char *out, size_t outsz)
{
	const char *sep = strstr(url, "://");
	const char *rest = url;
	size_t o = 0, n;

	if (outsz == 0)
		return;
	/* "scheme://", then the authority after any "user:password@". */
	if (sep && (size_t)(sep - url) == strcspn(url, ":/?#")) {
		const char *auth = sep + 3;
		size_t alen = strcspn(auth, "/?#");
		const char *at = memrchr(auth, '@', alen);

		o = (size_t)(auth - url);
		if (o >= outsz)
			o = outsz - 1;
		memcpy(out, url, o);
		rest = at ? at + 1 : auth;
	}
	n = strcspn(rest, "?#");
	if (n >= outsz - o)
		n = outsz - o - 1;
	memcpy(out + o, rest, n);
	out[o + n] = '\0';
}

void vmd_curl_slist_wipe_free(struct curl_slist *list)
{
	/* A list exists only once libcurl is loaded; an empty one may be
	 * freed before (cleanup on an early return). */
	if (!list)
		return;
	for (struct curl_slist *l = list; l; l = l->next)
		if (l->data)
			explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

/* ---- the easy handle ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* curl_easy_cleanupp, for _cleanup_ (curl_easy_cleanup is a macro for the
 * lazily loaded function: pasted as written, expanded in the body). */
DEFINE_CLEANUP_FUNC(CURL *, curl_easy_cleanup)

static CURL *easy_new(const char *step, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX];
	CURL *h;

	if (vmd_curl_load(err) < 0)
		return NULL;
	pthread_once(&curl_once, curl_init);
	snprintf(msg, sizeof(msg), "%s: could not start the transfer", step);
	if (curl_init_rc != CURLE_OK) {
		vmd_error_set(err, VMD_E_IO, msg, "curl_global_init: %s",
		              curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	h = curl_easy_init();
	if (!h)
		vmd_error_set(err, VMD_E_NOMEM, msg, "curl_easy_init failed");
	return h;
}

/* What the callbacks learn about the responses of one attempt. */
enum xfer_failure {
	XF_NONE = 0,
	XF_SINK,    /* the sink refused or failed: its error is in err */
	XF_STATUS,  /* a status we take no body from */
	XF_RANGE,   /* a 206 that does not start where we asked */
	XF_TOO_BIG, /* vmd_curl_get_buffer: more than max */
	XF_NOMEM,
};

struct xfer {
	/* the current response */
	long status;
	bool has_range;
	uint64_t range_first;
	uint64_t range_total; /* UNKNOWN_TOTAL for "/ *" */
	bool body_seen;
	uint64_t got; /* body bytes of this response */
	/* the attempt */
	enum xfer_failure failed;
	uint64_t taken; /* bytes given to the sink */
	/* download */
	const char *step;
	struct vmd_sink *sink;
	struct vmd_error *err;
	int sink_rc;
	/* buffer (body.max: the most vmd_curl_get_buffer takes) */
	struct vmd_buf body;
};

static void xfer_release(struct xfer *x)
{
	vmd_buf_free(&x->body);
}

static void xfer_new_attempt(struct xfer *x)
{
	x->status = 0;
	x->has_range = false;
	x->body_seen = false;
	x->got = 0;
	x->failed = XF_NONE;
	x->taken = 0;
	vmd_buf_clear(&x->body);
}

/* Digits at *p (no sign, no blank), advancing *p. */
static bool parse_u64(const char **p, uint64_t *out)
{
	uint64_t v = 0;
	const char *s = *p;

	if (*s < '0' || *s > '9')
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*out = v;
	return true;
}

/* "HTTP/1.1 206 Partial Content" → 206; 0 if unreadable. */
static long parse_status_line(const char *line)
{
	const char *p = strchr(line, ' ');
	uint64_t code;

	if (!p)
		return 0;
	while (*p == ' ')
		p++;
	if (!parse_u64(&p, &code) || code < 100 || code > 999)
		return 0;
	return (long)code;
}

/* "Content-Range: bytes FIRST-LAST/TOTAL" (TOTAL may be '*'). */
static void parse_content_range(struct xfer *x, const char *v)
{
	uint64_t first, last, total = UNKNOWN_TOTAL;

	while (*v == ' ' || *v == '\t')
		v++;
	if (strncasecmp(v, "bytes ", 6) != 0)
		return;
	v += 6;
	while (*v == ' ')
		v++;
	if (!parse_u64(&v, &first) || *v++ != '-' || !parse_u64(&v, &last) ||
	    *v++ != '/' || last < first)
		return;
	if (*v == '*')
		v++;
	else if (!parse_u64(&v, &total) || total <= last)
		return;
	if (*v != '\0' && *v != '\r' && *v != '\n' && *v != ' ')
		return;
	x->has_range = true;
	x->range_first = first;
	x->range_total = total;
}

static size_t on_header(char *data, size_t size, size_t n, void *opaque)
{
	struct xfer *x = opaque;
	size_t len = size * n;
	char line[HEADER_LINE_MAX];
	size_t keep = len < sizeof(line) ? len : sizeof(line) - 1;

	memcpy(line, data, keep);
	line[keep] = '\0';
	if (strncmp(line, "HTTP/", 5) == 0) {
		/* A new response (after a redirect, or the first one). */
		x->status = parse_status_line(line);
		x->has_range = false;
		x->body_seen = false;
		x->got = 0;
		vmd_buf_clear(&x->body);
	} else if (strncasecmp(line, "Content-Range:", 14) == 0) {
		parse_content_range(x, line + 14);
	}
	return len;
}

/* Before the first body byte of a response is taken by the sink. */
static bool download_body_start(struct xfer *x)
{
	uint64_t at = vmd_sink_offset(x->sink);

	if (x->status == 206) {
		if (x->has_range && x->range_first == at)
			return true;
		x->failed = XF_RANGE;
		return false;
	}
	if (x->status < 200 || x->status >= 300) {
		x->failed = XF_STATUS;
		return false;
	}
	if (at > 0) {
		vmd_log_info("%s: the server ignored the Range request for "
		             "byte %llu on: downloading from the start again",
		             x->step, (unsigned long long)at);
		x->sink_rc = vmd_sink_restart(x->sink, x->err);
		if (x->sink_rc < 0) {
			x->failed = XF_SINK;
			return false;
		}
	}
	return true;
}

static size_t on_download_body(char *data, size_t size, size_t n,
                               void *opaque)
{
	struct xfer *x = opaque;
	size_t len = size * n;

	if (!x->body_seen) {
		x->body_seen = true;
		if (!download_body_start(x))
			return 0;
	}
	if (x->failed != XF_NONE)
		return 0;
	x->sink_rc = vmd_sink_write(x->sink, data, len, x->err);
	if (x->sink_rc < 0) {
		x->failed = XF_SINK;
		return 0;
	}
	x->got += len;
	x->taken += len;
	return len;
}

static size_t on_buffer_body(char *data, size_t size, size_t n, void *opaque)
{
	struct xfer *x = opaque;
	size_t len = size * n;

	if (len > x->body.max - x->body.len) {
		x->failed = XF_TOO_BIG;
		return 0;
	}
	if (vmd_buf_append(&x->body, data, len) < 0) {
		x->failed = XF_NOMEM;
		return 0;
	}
	x->got += len;
	return len;
}

#define SETOPT(rc, h, opt, val)                                                \
	do {                                                                   \
		if ((rc) == CURLE_OK)                                          \
			(rc) = curl_easy_setopt((h), (opt), (val));            \
	} while (0)

/* The options every request gets. */
static CURLcode set_common(CURL *h, const struct vmd_config *cfg,
                           const struct vmd_curl_req *req, struct xfer *x,
                           char *errbuf)
{
	const char *proto =
		strncmp(req->url, "https://", 8) == 0 ? "https" : "http";
	CURLcode rc = CURLE_OK;

	errbuf[0] = '\0';
	SETOPT(rc, h, CURLOPT_ERRORBUFFER, errbuf);
	SETOPT(rc, h, CURLOPT_URL, req->url);
	/* Only the URL's own scheme, for the request and any redirect. */
	SETOPT(rc, h, CURLOPT_PROTOCOLS_STR, proto);
	SETOPT(rc, h, CURLOPT_REDIR_PROTOCOLS_STR, proto);
	SETOPT(rc, h, CURLOPT_FOLLOWLOCATION, req->no_redirects ? 0L : 1L);
	SETOPT(rc, h, CURLOPT_MAXREDIRS, (long)cfg->http_max_redirects);
	SETOPT(rc, h, CURLOPT_CONNECTTIMEOUT, (long)cfg->http_connect_timeout);
	SETOPT(rc, h, CURLOPT_LOW_SPEED_LIMIT, (long)cfg->http_low_speed_limit);
	SETOPT(rc, h, CURLOPT_LOW_SPEED_TIME, (long)cfg->http_low_speed_time);
	SETOPT(rc, h, CURLOPT_SSL_VERIFYPEER, 1L);
	SETOPT(rc, h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cfg->ca_file[0]) {
		/* The CA to trust, and no other. */
		SETOPT(rc, h, CURLOPT_CAINFO, cfg->ca_file);
		SETOPT(rc, h, CURLOPT_CAPATH, (char *)NULL);
	}
	SETOPT(rc, h, CURLOPT_NOSIGNAL, 1L);
	SETOPT(rc, h, CURLOPT_NETRC, (long)CURL_NETRC_IGNORED);
	SETOPT(rc, h, CURLOPT_TCP_KEEPALIVE, 1L);
	SETOPT(rc, h, CURLOPT_USERAGENT, "vmdisk/" VMD_VERSION);
	SETOPT(rc, h, CURLOPT_HTTPHEADER, (struct curl_slist *)req->headers);
	SETOPT(rc, h, CURLOPT_HEADERFUNCTION, on_header);
	SETOPT(rc, h, CURLOPT_HEADERDATA, x);
	SETOPT(rc, h, CURLOPT_WRITEDATA, x);
	return rc;
}

static int setup_failed(const struct vmd_curl_req *req, CURLcode cc,
                        struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX];

	snprintf(msg, sizeof(msg), "%s: could not start the transfer",
	         req->step);
	return vmd_error_set(err, cc == CURLE_OUT_OF_MEMORY ? VMD_E_NOMEM
	                                                    : VMD_E_IO,
	                     msg, "curl_easy_setopt: %s",
	                     curl_easy_strerror(cc));
}

/* A transfer error worth resuming after. */
static bool resumable(CURLcode cc)
{
	switch (cc) {
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

/* The error for a failed transfer (public text by kind, curl's in the
 * detail). */
static int transfer_error(struct vmd_curl_req *req, CURLcode cc,
                          const char *errbuf, const struct xfer *x,
                          curl_off_t content_length, uint64_t offset,
                          unsigned retries, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX], where[512];
	const char *what = "download failed";
	enum vmd_errc code = VMD_E_IO;

	switch (cc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		what = "TLS verification failed";
		code = VMD_E_REFUSED;
		break;
	case CURLE_SSL_CACERT_BADFILE:
		what = "ca_file could not be used";
		code = VMD_E_CONFIG;
		break;
	case CURLE_SSL_CONNECT_ERROR:
		what = "TLS handshake failed";
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
		/* The first URL's scheme is allowed: this was a redirect. */
		what = "redirect to another scheme refused";
		code = VMD_E_REFUSED;
		break;
	case CURLE_TOO_MANY_REDIRECTS:
		what = "too many redirects";
		code = VMD_E_REFUSED;
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		what = "host not found";
		req->unreachable = true;
		break;
	case CURLE_COULDNT_CONNECT:
		what = "could not connect";
		req->unreachable = true;
		break;
	case CURLE_OPERATION_TIMEDOUT:
		what = "timed out";
		req->unreachable = offset == 0;
		break;
	case CURLE_PARTIAL_FILE:
		what = "download incomplete (fewer bytes than Content-Length)";
		break;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		what = "connection lost";
		break;
	case CURLE_GOT_NOTHING:
		what = "the server closed the connection";
		req->unreachable = offset == 0;
		break;
	case CURLE_OUT_OF_MEMORY:
		code = VMD_E_NOMEM;
		break;
	default:
		break;
	}
	snprintf(msg, sizeof(msg), "%s: %s", req->step, what);
	vmd_url_for_log(req->url, where, sizeof(where));
	return vmd_error_set(err, code, msg,
	                     "GET %s: %s (curl %d); HTTP %ld, Content-Length "
	                     "%lld, %llu bytes of that response received, %llu "
	                     "in all, %u retries",
	                     where, errbuf[0] ? errbuf : curl_easy_strerror(cc),
	                     (int)cc, x->status, (long long)content_length,
	                     (unsigned long long)x->got,
	                     (unsigned long long)offset, retries);
}

static int status_error(struct vmd_curl_req *req, long status, uint64_t offset,
                        struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX], where[512];
	enum vmd_errc code = VMD_E_IO;

	if (status == 404 || status == 410)
		code = VMD_E_NOTFOUND;
	else if (status == 401 || status == 403)
		code = VMD_E_REFUSED;
	else if (status >= 500 && offset == 0)
		req->unreachable = true;
	snprintf(msg, sizeof(msg), "%s: download failed (HTTP %ld)", req->step,
	         status);
	vmd_url_for_log(req->url, where, sizeof(where));
	return vmd_error_set(err, code, msg, "GET %s: HTTP %ld", where, status);
}

static int range_error(const struct vmd_curl_req *req, const struct xfer *x,
                       uint64_t start, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX], where[512];

	snprintf(msg, sizeof(msg), "%s: the server sent the wrong range",
	         req->step);
	vmd_url_for_log(req->url, where, sizeof(where));
	if (!x->has_range)
		return vmd_error_set(err, VMD_E_IO, msg,
		                     "GET %s: asked from byte %llu, got a 206 "
		                     "without a readable Content-Range", where,
		                     (unsigned long long)start);
	return vmd_error_set(err, VMD_E_IO, msg,
	                     "GET %s: asked from byte %llu, got from %llu",
	                     where, (unsigned long long)start,
	                     (unsigned long long)x->range_first);
}

/* The attempt ended without a curl error: is the image complete? */
static int check_complete(struct vmd_curl_req *req, const struct xfer *x,
                          curl_off_t content_length, struct vmd_sink *sink,
                          struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX], where[512];
	uint64_t at = vmd_sink_offset(sink);
	const char *why = NULL;

	vmd_url_for_log(req->url, where, sizeof(where));
	if (content_length >= 0 && (uint64_t)content_length != x->got)
		why = "the bytes received disagree with Content-Length";
	else if (x->status == 206 && x->range_total != UNKNOWN_TOTAL &&
	         x->range_total != at)
		why = "the ranges received do not make up the image";
	else if (req->expected_size && req->expected_size != at)
		why = "the image size differs from the one announced";
	if (!why)
		return 0;
	snprintf(msg, sizeof(msg), "%s: download incomplete (%s)", req->step,
	         why);
	return vmd_error_set(err, VMD_E_IO, msg,
	                     "GET %s: HTTP %ld, Content-Length %lld, %llu "
	                     "bytes of that response received, %llu in all, "
	                     "expected %llu",
	                     where, x->status, (long long)content_length,
	                     (unsigned long long)x->got,
	                     (unsigned long long)at,
	                     (unsigned long long)req->expected_size);
}

int vmd_curl_download(const struct vmd_config *cfg, struct vmd_curl_req *req,
                      struct vmd_sink *sink, struct vmd_error *err)
{
	_cleanup_(xfer_release) struct xfer x = {0};
	_cleanup_(curl_easy_cleanupp) CURL *h = NULL;
	char errbuf[CURL_ERROR_SIZE], where[512], range[32];
	unsigned retries = 0;
	CURLcode cc = CURLE_OK;

	req->unreachable = false;
	h = easy_new(req->step, err);
	if (!h)
		return err ? err->code : VMD_E_IO;
	x.step = req->step;
	x.sink = sink;
	x.err = err;
	cc = set_common(h, cfg, req, &x, errbuf);
	SETOPT(cc, h, CURLOPT_WRITEFUNCTION, on_download_body);
	SETOPT(cc, h, CURLOPT_BUFFERSIZE, RECV_BUFFER);
	if (cc != CURLE_OK)
		return setup_failed(req, cc, err);
	vmd_url_for_log(req->url, where, sizeof(where));
	for (;;) {
		uint64_t start = vmd_sink_offset(sink);
		curl_off_t content_length = -1;
		long status = 0;
		int rc;

		snprintf(range, sizeof(range), "%llu-",
		         (unsigned long long)start);
		/* cc still holds the last attempt's error. */
		cc = CURLE_OK;
		SETOPT(cc, h, CURLOPT_RANGE, start ? range : (char *)NULL);
		if (cc != CURLE_OK)
			return setup_failed(req, cc, err);
		xfer_new_attempt(&x);
		vmd_log_debug("%s: GET %s from byte %llu", req->step, where,
		              (unsigned long long)start);
		cc = curl_easy_perform(h);
		curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
		                  &content_length);
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
		if (x.status == 0)
			x.status = status;
		if (x.failed == XF_SINK)
			return x.sink_rc;
		if (x.failed == XF_RANGE)
			return range_error(req, &x, start, err);
		if (x.failed == XF_STATUS ||
		    (cc == CURLE_OK && (x.status < 200 || x.status >= 300)))
			return status_error(req, x.status, start, err);
		if (cc == CURLE_OK) {
			/* A 2xx with an empty body answered our Range: the
			 * image is empty. */
			if (start > 0 && x.status != 206 && !x.body_seen) {
				rc = vmd_sink_restart(sink, err);
				if (rc < 0)
					return rc;
			}
			rc = check_complete(req, &x, content_length, sink, err);
			if (rc == 0)
				vmd_log_debug("%s: GET %s: %llu bytes",
				              req->step, where,
				              (unsigned long long)
				                      vmd_sink_offset(sink));
			return rc;
		}
		if (!resumable(cc) || retries >= cfg->http_retries ||
		    (x.taken == 0 && vmd_sink_offset(sink) == 0))
			return transfer_error(req, cc, errbuf, &x,
			                      content_length,
			                      vmd_sink_offset(sink), retries,
			                      err);
		retries++;
		vmd_log_warning("%s: GET %s interrupted at byte %llu (%s); "
		                "resuming, retry %u of %u",
		                req->step, where,
		                (unsigned long long)vmd_sink_offset(sink),
		                errbuf[0] ? errbuf : curl_easy_strerror(cc),
		                retries, cfg->http_retries);
		errbuf[0] = '\0';
	}
}

int vmd_curl_get_buffer(const struct vmd_config *cfg, struct vmd_curl_req *req,
                        size_t max, char **body, size_t *len, long *status,
                        struct vmd_error *err)
{
	_cleanup_(xfer_release) struct xfer x = {0};
	_cleanup_(curl_easy_cleanupp) CURL *h = NULL;
	char errbuf[CURL_ERROR_SIZE], msg[VMD_ERROR_MSG_MAX], where[512];
	curl_off_t content_length = -1;
	CURLcode cc;

	req->unreachable = false;
	*body = NULL;
	*len = 0;
	*status = 0;
	h = easy_new(req->step, err);
	if (!h)
		return err ? err->code : VMD_E_IO;
	x.step = req->step;
	x.body.max = max;
	cc = set_common(h, cfg, req, &x, errbuf);
	SETOPT(cc, h, CURLOPT_WRITEFUNCTION, on_buffer_body);
	if (cc != CURLE_OK)
		return setup_failed(req, cc, err);
	vmd_url_for_log(req->url, where, sizeof(where));
	vmd_log_debug("%s: GET %s", req->step, where);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
	                  &content_length);
	if (x.status == 0)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x.status);
	if (x.failed == XF_TOO_BIG) {
		snprintf(msg, sizeof(msg), "%s: answer too large", req->step);
		return vmd_error_set(err, VMD_E_REFUSED, msg,
		                     "GET %s: more than %zu bytes", where, max);
	}
	if (x.failed == XF_NOMEM)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
		                     "GET %s: buffer", where);
	if (cc != CURLE_OK)
		return transfer_error(req, cc, errbuf, &x, content_length, 0, 0,
		                      err);
	if (content_length >= 0 && (uint64_t)content_length != x.got) {
		snprintf(msg, sizeof(msg),
		         "%s: answer incomplete (the bytes received disagree "
		         "with Content-Length)", req->step);
		return vmd_error_set(err, VMD_E_IO, msg,
		                     "GET %s: Content-Length %lld, %llu bytes",
		                     where, (long long)content_length,
		                     (unsigned long long)x.got);
	}
	/* An empty answer is still a (terminated) buffer. */
	if (vmd_buf_append(&x.body, "", 0) < 0)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
		                     "GET %s: buffer", where);
	if (x.status >= 500)
		req->unreachable = true;
	*len = x.body.len;
	*body = TAKE_PTR(x.body.data);
	*status = x.status;
	return 0;
}
