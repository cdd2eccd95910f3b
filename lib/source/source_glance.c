/*
 * The glance image source: glance://IMAGE_ID through the Glance v2 API.
 *
 * resolve reads the image record (GET /v2/images/ID) from the first of
 * glance_api_servers that answers, and refuses an image that is not
 * active, has a disk_format outside allowed_disk_formats, or no hash we can
 * check: os_hash_algo/os_hash_value when the algorithm is md5, sha256 or
 * sha512, else the md5 `checksum`. The id is "glance:ID"; the cache checks
 * the downloaded bytes against the hash. download streams
 * GET /v2/images/ID/file into the sink (lib/curl_common.c: resume, limits).
 *
 * The token comes from glance_token_file (a regular file of ours that group
 * and others cannot read) or $VMDISK_GLANCE_TOKEN, never from argv. It is
 * registered with the log redaction for as long as it is held, travels
 * only in the X-Auth-Token header, and is wiped after each call. Requests
 * that carry it follow no redirects: libcurl would send the header on to
 * whatever host a redirect names.
 */
#include <errno.h>
#include <fcntl.h>
#include "jsonc_lazy.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "curl_lazy.h"

#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "curl_common.h"
#include "fsutil.h"
#include "json_string.h"
#include "source.h"

#define SCHEME "glance://"
#define RECORD_MAX (1024 * 1024)
#define TOKEN_MAX 1023 /* the longest secret the log redaction takes */
#define TOKEN_ENV "VMDISK_GLANCE_TOKEN"
#define TOKEN_HEADER "X-Auth-Token: "

/* ---- the token ---- */

struct glance_auth {
	char token[TOKEN_MAX + 1];
	bool registered;
	struct curl_slist *headers;
};

static void auth_release(struct glance_auth *a)
{
	vmd_curl_slist_wipe_free(a->headers);
	a->headers = NULL;
	if (a->registered)
		vmd_secret_unregister(a->token);
	a->registered = false;
	explicit_bzero(a->token, sizeof(a->token));
}

static int read_token_file(const char *path, struct glance_auth *a,
                           struct vmd_error *err)
{
	_cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW |
	                                          O_NOCTTY | O_NONBLOCK);
	struct stat st;
	size_t len = 0;
	char extra;

	if (fd < 0 && errno == ELOOP)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: token file is a symbolic link",
		                     "%s", path);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_CONFIG, errno,
		                           "glance: cannot open the token file",
		                           "%s", path);
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "glance: cannot read the token file",
		                           "fstat %s", path);
	if (!S_ISREG(st.st_mode))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: token file is not a regular file",
		                     "%s", path);
	if (st.st_uid != geteuid())
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: token file is not owned by this "
		                     "user",
		                     "%s: owner %u, we are %u", path,
		                     (unsigned)st.st_uid, (unsigned)geteuid());
	if (st.st_mode & 077)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: token file must not be accessible "
		                     "to group or others (mode 0600)",
		                     "%s: mode %04o", path,
		                     (unsigned)(st.st_mode & 07777));
	while (len < TOKEN_MAX) {
		ssize_t n = read(fd, a->token + len, TOKEN_MAX - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "glance: cannot read the "
			                           "token file",
			                           "read %s", path);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	a->token[len] = '\0';
	if (len == TOKEN_MAX && read(fd, &extra, 1) > 0) {
		explicit_bzero(&extra, sizeof(extra));
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: token file too large",
		                     "%s: more than %d bytes", path, TOKEN_MAX);
	}
	return 0;
}

/* Read the token (if any), register it, build the header list. */
static int auth_load(const struct vmd_config *cfg, struct glance_auth *a,
                     struct vmd_error *err)
{
	char header[sizeof(TOKEN_HEADER) + TOKEN_MAX];
	const char *env = getenv(TOKEN_ENV);
	size_t len;
	int rc;

	memset(a, 0, sizeof(*a));
	if (cfg->glance_token_file[0]) {
		rc = read_token_file(cfg->glance_token_file, a, err);
		if (rc < 0)
			return rc;
	} else if (env && env[0]) {
		if (strnlen(env, TOKEN_MAX + 1) > TOKEN_MAX)
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "glance: token too long",
			                     "$%s: more than %d bytes", TOKEN_ENV,
			                     TOKEN_MAX);
		memcpy(a->token, env, strlen(env) + 1);
	} else {
		vmd_log_debug("glance: no token (glance_token_file unset, "
		              "$%s empty): requests are unauthenticated",
		              TOKEN_ENV);
		return 0;
	}
	/* A trailing newline is not part of the token. */
	len = strlen(a->token);
	while (len > 0 && strchr(" \t\r\n", a->token[len - 1]))
		a->token[--len] = '\0';
	if (len == 0)
		return vmd_error_set(err, VMD_E_REFUSED, "glance: token is empty",
		                     "%s", cfg->glance_token_file[0]
		                                   ? cfg->glance_token_file
		                                   : "$" TOKEN_ENV);
	for (size_t i = 0; i < len; i++)
		if (a->token[i] < 0x21 || a->token[i] > 0x7e)
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "glance: token holds characters a "
			                     "header cannot carry",
			                     "byte %zu of %zu", i, len);
	if (vmd_secret_register(a->token) < 0)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: token refused (too short to be "
		                     "redacted from the log)",
		                     "%zu bytes", len);
	a->registered = true;
	snprintf(header, sizeof(header), "%s%s", TOKEN_HEADER, a->token);
	a->headers = curl_slist_append(NULL, header);
	explicit_bzero(header, sizeof(header));
	if (!a->headers)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
		                     "curl_slist_append");
	return 0;
}

/* ---- URLs and servers ---- */

static int parse_glance_url(const char *url, const char **id,
                            struct vmd_error *err)
{
	if (!url || strncmp(url, SCHEME, strlen(SCHEME)) != 0 ||
	    !vmd_valid_uuid(url + strlen(SCHEME)))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "glance: image must be glance://UUID",
		                     "not a glance://UUID source");
	*id = url + strlen(SCHEME);
	return 0;
}

/*
 * The n-th server of the comma list as a base URL without its trailing
 * '/'; false past the end. The list was checked when the config was read.
 */
static bool nth_server(const char *list, unsigned n, char *out, size_t outsz)
{
	const char *p = list;
	size_t len;

	for (unsigned i = 0; i < n; i++) {
		p = strchr(p, ',');
		if (!p)
			return false;
		p++;
	}
	while (*p == ' ')
		p++;
	len = strcspn(p, ",");
	while (len > 0 && p[len - 1] == '/')
		len--;
	if (len == 0 || len >= outsz)
		return false;
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

static unsigned count_servers(const char *list)
{
	unsigned n = list[0] ? 1 : 0;

	for (const char *p = list; *p; p++)
		if (*p == ',')
			n++;
	return n;
}

static int no_server(struct vmd_error *err)
{
	return vmd_error_set(err, VMD_E_CONFIG,
	                     "glance: glance_api_servers is not set",
	                     "no Glance server configured");
}

/* Checked before any request; the loops over the servers still end with
 * no_server, never with a success. */
static int servers_check(const struct vmd_config *cfg, struct vmd_error *err)
{
	return count_servers(cfg->glance_api_servers) == 0 ? no_server(err) : 0;
}

static int image_url(const struct vmd_config *cfg, unsigned n, const char *id,
                     const char *tail, char *out, size_t outsz)
{
	char base[VMD_URL_MAX + 1];

	if (!nth_server(cfg->glance_api_servers, n, base, sizeof(base)))
		return -1;
	if (snprintf(out, outsz, "%s/v2/images/%s%s", base, id, tail) >=
	    (int)outsz)
		return -1;
	return 0;
}

/* Keep the first error; give its code. */
static int pass_error(struct vmd_error *err, const struct vmd_error *e)
{
	if (err && !vmd_error_is_set(err))
		*err = *e;
	return e->code;
}

/* ---- the image record ---- */

/* The string member `key`, or NULL when absent, null, not a string or
 * holding a NUL (json_string.h; the record was refused before parsing if
 * any string held one). */
static const char *get_string(json_object *o, const char *key)
{
	return vmd_json_string(o, key, NULL);
}

/* Whether member `key` is exactly `want`, compared over the length json-c
 * reports rather than up to a NUL. */
static bool string_is(json_object *o, const char *key, const char *want)
{
	size_t len;
	const char *s = vmd_json_string(o, key, &len);

	return s && len == strlen(want) && memcmp(s, want, len) == 0;
}

static bool lower_token(const char *s, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

static bool format_allowed(const char *format, size_t len,
                           const char *allowed)
{
	const char *p = allowed;

	for (;;) {
		size_t n;

		while (*p == ' ')
			p++;
		n = strcspn(p, ",");
		if (n == len && memcmp(p, format, len) == 0)
			return true;
		if (p[n] == '\0')
			return false;
		p += n + 1;
	}
}

/* os_hash_algo/os_hash_value if we know the algorithm, else checksum. */
static int record_hash(json_object *o, struct vmd_source_meta *meta,
                       struct vmd_error *err)
{
	const char *algo = get_string(o, "os_hash_algo");
	const char *value = get_string(o, "os_hash_value");
	const char *md5 = get_string(o, "checksum");
	struct vmd_error e = VMD_ERROR_INIT;
	enum vmd_hash_algo a;
	char spec[16 + VMD_HASH_HEX_MAX];

	if (algo && value && vmd_hash_from_name(algo, &a) == 0) {
		snprintf(spec, sizeof(spec), "%s:%.*s", algo,
		         VMD_HASH_HEX_MAX, value);
		if (vmd_hash_parse(spec, &meta->hash_algo, meta->hash_hex,
		                   &e) < 0)
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "glance: image hash unreadable",
			                     "os_hash_value for %s: %s", algo,
			                     e.detail);
		return 0;
	}
	if (md5) {
		snprintf(spec, sizeof(spec), "md5:%.*s", VMD_HASH_HEX_MAX, md5);
		if (vmd_hash_parse(spec, &meta->hash_algo, meta->hash_hex,
		                   &e) < 0)
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "glance: image checksum unreadable",
			                     "checksum: %s", e.detail);
		if (algo)
			vmd_log_info("glance: os_hash_algo '%.16s' not "
			             "supported: checking the md5 checksum",
			             lower_token(algo, 16) ? algo : "?");
		return 0;
	}
	return vmd_error_set(err, VMD_E_REFUSED,
	                     "glance: image has no hash we can check",
	                     "os_hash_algo %s, no checksum",
	                     algo && lower_token(algo, 16) ? algo : "absent");
}

/* Append an rbd:// url to meta->locations: printable, not already there,
 * and only while it fits whole. Other stores' urls (file://, http://) are
 * nothing we can clone. */
static void add_location(struct vmd_source_meta *meta, const char *url)
{
	size_t len;

	if (!url || strncmp(url, "rbd://", 6) != 0)
		return;
	len = strlen(url);
	for (const char *c = url; *c; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c > 0x7e)
			return;
	for (size_t i = 0; i < meta->locations.n; i++)
		if (strcmp(vmd_locations_at(&meta->locations, i), url) == 0)
			return;
	(void)vmd_locations_add(&meta->locations, url, len);
}

int vmd_glance_parse_image(const char *json, size_t len, const char *image_id,
                           const char *allowed, struct vmd_source_meta *meta,
                           struct vmd_error *err)
{
	_cleanup_(json_tokener_freep) json_tokener *tok = NULL;
	_cleanup_(json_object_putp) json_object *o = NULL;
	const char *id, *status, *format, *direct;
	json_object *size, *locs;
	int64_t n;
	size_t end, id_len, format_len;

	if (len > RECORD_MAX)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: image record too large",
		                     "%zu bytes", len);
	/* A NUL in a value would compare as its prefix, one in a name would
	 * make a second member of that name replace the first. */
	if (vmd_json_text_has_nul(json, len))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: image record unreadable",
		                     "a string in the record holds a NUL byte");
	if (vmd_jsonc_load(err) < 0) /* loaded on first use */
		return VMD_E_UNSUPPORTED;
	tok = json_tokener_new();
	if (!tok)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
		                     "json_tokener_new");
	o = json_tokener_parse_ex(tok, json, (int)len);
	end = json_tokener_get_parse_end(tok);
	while (end < len && strchr(" \t\r\n", json[end]))
		end++;
	if (!o || json_tokener_get_error(tok) != json_tokener_success ||
	    end != len || !json_object_is_type(o, json_type_object))
		return vmd_error_set(err, VMD_E_IO,
		                     "glance: image record unreadable",
		                     "not one JSON object (%zu bytes)", len);
	id = vmd_json_string(o, "id", &id_len);
	if (!id || id_len != strlen(image_id) ||
	    strncasecmp(id, image_id, id_len) != 0)
		return vmd_error_set(err, VMD_E_IO,
		                     "glance: image record is for another image",
		                     "asked for %s", image_id);
	status = get_string(o, "status");
	if (!string_is(o, "status", "active"))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: image is not active",
		                     "%s: status %s", image_id,
		                     status && lower_token(status, 32) ? status
		                                                       : "?");
	format = vmd_json_string(o, "disk_format", &format_len);
	if (!format || !lower_token(format, sizeof(meta->disk_format) - 1))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: image has no disk format",
		                     "%s: disk_format missing or unreadable",
		                     image_id);
	if (!format_allowed(format, format_len, allowed)) {
		char msg[VMD_ERROR_MSG_MAX];

		snprintf(msg, sizeof(msg),
		         "glance: disk format %s not allowed "
		         "(allowed_disk_formats)", format);
		return vmd_error_set(err, VMD_E_REFUSED, msg,
		                     "%s: disk_format %s, allowed %s",
		                     image_id, format, allowed);
	}
	snprintf(meta->disk_format, sizeof(meta->disk_format), "%s", format);
	if (!json_object_object_get_ex(o, "size", &size) ||
	    !json_object_is_type(size, json_type_int) ||
	    (n = json_object_get_int64(size)) <= 0)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "glance: image has no size",
		                     "%s: size missing, null or not positive",
		                     image_id);
	meta->size = (uint64_t)n;
	if (record_hash(o, meta, err) < 0)
		return err ? err->code : VMD_E_REFUSED;
	direct = get_string(o, "direct_url");
	add_location(meta, direct);
	if (json_object_object_get_ex(o, "locations", &locs) &&
	    json_object_is_type(locs, json_type_array))
		for (size_t i = 0; i < json_object_array_length(locs) && i < 16;
		     i++)
			add_location(meta, get_string(json_object_array_get_idx(
			                                      locs, i),
			                              "url"));
	return 0;
}

/* ---- the source ---- */

/* What every request starts with: the image id from the URL, a usable
 * server list (*servers of them), and the token as a header. */
static int glance_begin(struct vmd_ctx *ctx, const char *url, const char **id,
                        struct glance_auth *auth, unsigned *servers,
                        struct vmd_error *err)
{
	int rc = parse_glance_url(url, id, err);

	if (rc < 0)
		return rc;
	if (!ctx)
		return vmd_error_set(err, VMD_E_INVAL, "glance: no context",
		                     "NULL ctx");
	rc = servers_check(&ctx->cfg, err);
	if (rc < 0)
		return rc;
	*servers = count_servers(ctx->cfg.glance_api_servers);
	return auth_load(&ctx->cfg, auth, err);
}

/* The request to server i (0-based) for the image's record (suffix "")
 * or its data ("/file"), into url. */
static int server_request(const struct vmd_config *cfg, unsigned i,
                          const char *id, const char *suffix,
                          const struct glance_auth *auth, char *url,
                          size_t url_size, struct vmd_curl_req *req,
                          struct vmd_error *err)
{
	if (image_url(cfg, i, id, suffix, url, url_size) < 0)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "glance: bad glance_api_servers",
		                     "server %u", i + 1);
	*req = (struct vmd_curl_req){
		.step = "glance",
		.url = url,
		.headers = auth->headers,
		.no_redirects = true,
	};
	return 0;
}

/* A server out of reach, and another one left to try. */
static void try_next_server(unsigned i, unsigned servers, const char *why)
{
	vmd_log_warning("glance: server %u of %u failed (%s): trying the next",
	                i + 1, servers, why);
}


static int glance_resolve(struct vmd_ctx *ctx, const char *url,
                          struct vmd_source_meta *meta, struct vmd_error *err)
{
	_cleanup_(auth_release) struct glance_auth auth;
	unsigned servers = 0;
	const char *id;
	int rc;

	memset(&auth, 0, sizeof(auth));
	memset(meta, 0, sizeof(*meta));
	rc = glance_begin(ctx, url, &id, &auth, &servers, err);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < servers; i++) {
		_cleanup_(freep) char *body = NULL;
		struct vmd_error e = VMD_ERROR_INIT;
		char req_url[VMD_URL_MAX + 64];
		struct vmd_curl_req req;
		bool last = i + 1 == servers;
		size_t len;
		long status;

		rc = server_request(&ctx->cfg, i, id, "", &auth, req_url,
		                    sizeof(req_url), &req, err);
		if (rc < 0)
			return rc;
		rc = vmd_curl_get_buffer(&ctx->cfg, &req, RECORD_MAX, &body,
		                         &len, &status, &e);
		if (rc < 0 && req.unreachable && !last) {
			try_next_server(i, servers, e.msg);
			continue;
		}
		if (rc < 0)
			return pass_error(err, &e);
		if (status >= 500 && !last) {
			vmd_log_warning("glance: server %u of %u answered HTTP "
			                "%ld: trying the next", i + 1, servers,
			                status);
			continue;
		}
		if (status == 404)
			return vmd_error_set(err, VMD_E_NOTFOUND,
			                     "glance: image not found",
			                     "%s: HTTP 404", id);
		if (status != 200) {
			char msg[VMD_ERROR_MSG_MAX];

			snprintf(msg, sizeof(msg),
			         "glance: reading the image record failed "
			         "(HTTP %ld)", status);
			return vmd_error_set(err,
			                     status == 401 || status == 403
			                             ? VMD_E_REFUSED
			                             : VMD_E_IO,
			                     msg, "%s: HTTP %ld", id, status);
		}
		rc = vmd_glance_parse_image(body, len, id,
		                            ctx->cfg.allowed_disk_formats, meta,
		                            err);
		if (rc < 0)
			return rc;
		snprintf(meta->id, sizeof(meta->id), "glance:%s", id);
		vmd_log_debug("glance: image %s: %s, %llu bytes, %s", id,
		              meta->disk_format, (unsigned long long)meta->size,
		              vmd_hash_name(meta->hash_algo));
		return 0;
	}
	return no_server(err);
}

static int glance_download(struct vmd_ctx *ctx, const char *url,
                           const struct vmd_source_meta *meta,
                           struct vmd_sink *sink, struct vmd_error *err)
{
	_cleanup_(auth_release) struct glance_auth auth;
	unsigned servers = 0;
	const char *id;
	int rc;

	memset(&auth, 0, sizeof(auth));
	rc = glance_begin(ctx, url, &id, &auth, &servers, err);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < servers; i++) {
		struct vmd_error e = VMD_ERROR_INIT;
		char req_url[VMD_URL_MAX + 64];
		struct vmd_curl_req req;

		rc = server_request(&ctx->cfg, i, id, "/file", &auth, req_url,
		                    sizeof(req_url), &req, err);
		if (rc < 0)
			return rc;
		req.expected_size = meta ? meta->size : 0;
		rc = vmd_curl_download(&ctx->cfg, &req, sink, &e);
		if (rc == 0)
			return 0;
		if (req.unreachable && vmd_sink_offset(sink) == 0 &&
		    i + 1 < servers) {
			try_next_server(i, servers, e.msg);
			continue;
		}
		return pass_error(err, &e);
	}
	return no_server(err);
}

const struct vmd_source_ops vmd_source_glance = {
	.scheme = "glance",
	.resolve = glance_resolve,
	.download = glance_download,
};
