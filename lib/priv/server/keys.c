/*
 * Key providers for ephemeral storage encryption (see keys.h): the
 * `file` provider (a directory of 0600 root-owned key files) and the
 * `barbican` provider (REST over libcurl, curl_common.h).
 *
 * The key, and the Barbican token, are read straight into an mlock'ed
 * mapping excluded from core dumps, and registered with the log redaction
 * before anything could print them. The key id is registered too while
 * vmd_key_get runs, so that no detail (a URL, a path) names it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "curl_lazy.h"

#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "curl_common.h"
#include "keys.h"

#define TOKEN_MAX 8192

/* ---- locked memory ---- */

static void *locked_alloc(size_t len, size_t *map_len)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pg = page > 0 ? (size_t)page : 4096;
	size_t n = (len + pg - 1) / pg * pg;
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (mlock(p, n) < 0) {
		/* Swappable key memory is not acceptable: fail closed. */
		munmap(p, n);
		return NULL;
	}
	(void)madvise(p, n, MADV_DONTDUMP);
	*map_len = n;
	return p;
}

static void locked_free(void *p, size_t map_len)
{
	if (!p)
		return;
	explicit_bzero(p, map_len);
	munlock(p, map_len);
	munmap(p, map_len);
}

struct token {
	size_t len;
	char text[TOKEN_MAX + 1];
	size_t map_len;
};

static void token_free(struct token **t)
{
	if (!*t)
		return;
	if ((*t)->text[0])
		vmd_secret_unregister((*t)->text);
	locked_free(*t, (*t)->map_len);
	*t = NULL;
}

void vmd_key_free(struct vmd_secret_key *key)
{
	if (!key)
		return;
	if (key->raw[0])
		vmd_secret_unregister(key->raw);
	if (key->trimmed[0])
		vmd_secret_unregister(key->trimmed);
	if (key->hex[0])
		vmd_secret_unregister(key->hex);
	locked_free(key, key->map_len);
}

/* Register every form of the key a log line could show: the raw bytes
 * (when they hold no NUL), without a trailing newline, and hex. A form the
 * registry cannot take leaves the key unprotected: refused, and the forms
 * that took are undone by vmd_key_free. */
static int key_register(struct vmd_secret_key *k, struct vmd_error *err)
{
	static const char digits[] = "0123456789abcdef";
	bool all = true, any = false;
	size_t t;

	if (!memchr(k->bytes, '\0', k->len)) {
		any = true;
		memcpy(k->raw, k->bytes, k->len);
		k->raw[k->len] = '\0';
		if (vmd_secret_register(k->raw) < 0) {
			k->raw[0] = '\0';
			all = false;
		}
		t = k->len;
		while (t > 0 &&
		       (k->bytes[t - 1] == '\n' || k->bytes[t - 1] == '\r'))
			t--;
		if (t != k->len && t >= 4) {
			memcpy(k->trimmed, k->bytes, t);
			k->trimmed[t] = '\0';
			if (vmd_secret_register(k->trimmed) < 0) {
				k->trimmed[0] = '\0';
				all = false;
			}
		}
	}
	if (2 * k->len < 1024) { /* the registry's longest secret */
		any = true;
		for (size_t i = 0; i < k->len; i++) {
			k->hex[2 * i] = digits[k->bytes[i] >> 4];
			k->hex[2 * i + 1] = digits[k->bytes[i] & 15];
		}
		k->hex[2 * k->len] = '\0';
		if (vmd_secret_register(k->hex) < 0) {
			k->hex[0] = '\0';
			all = false;
		}
	}
	if (!all || !any)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "keys: cannot protect the key in logs",
		                     "registering the key with the log "
		                     "redaction failed (key of %zu bytes)",
		                     k->len);
	return 0;
}

/* ---- private files (keys, the token) ---- */

/*
 * Read a private file: regular, not a symlink, owned by root or the
 * effective uid, mode exactly 0600, min..max bytes. `step` starts the
 * public message; `shown` is what the detail may call the file.
 */
static int read_private(int dirfd, const char *name, const char *step,
                        const char *shown, unsigned char *buf, size_t min,
                        size_t max, size_t *len, struct vmd_error *err)
{
	_cleanup_(closep) int fd = -1;
	char msg[VMD_ERROR_MSG_MAX];
	struct stat st;
	size_t got = 0;

	fd = openat(dirfd, name,
	            O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;

		if (e == ENOENT) {
			snprintf(msg, sizeof(msg), "%s: not found", step);
			return vmd_error_set(err, VMD_E_NOTFOUND, msg,
			                     "%s does not exist", shown);
		}
		snprintf(msg, sizeof(msg), "%s: cannot open%s", step,
		         e == ELOOP ? " (a symlink)" : "");
		return vmd_error_set_errno(err, e == ELOOP ? VMD_E_REFUSED
		                                           : VMD_E_IO,
		                           e, msg, "open %s", shown);
	}
	if (fstat(fd, &st) < 0) {
		snprintf(msg, sizeof(msg), "%s: cannot read", step);
		return vmd_error_set_errno(err, VMD_E_IO, errno, msg,
		                           "fstat %s", shown);
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(msg, sizeof(msg), "%s: not a regular file", step);
		return vmd_error_set(err, VMD_E_REFUSED, msg,
		                     "%s is not a regular file", shown);
	}
	if ((st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & 07777) != 0600) {
		snprintf(msg, sizeof(msg),
		         "%s: file must be owned by root with mode 0600", step);
		return vmd_error_set(err, VMD_E_REFUSED, msg,
		                     "%s: owner %u, mode %04o", shown,
		                     (unsigned)st.st_uid,
		                     (unsigned)(st.st_mode & 07777));
	}
	if (st.st_size < (off_t)min || st.st_size > (off_t)max) {
		snprintf(msg, sizeof(msg), "%s: size must be %zu to %zu bytes",
		         step, min, max);
		return vmd_error_set(err, VMD_E_REFUSED, msg, "%s: %lld bytes",
		                     shown, (long long)st.st_size);
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(msg, sizeof(msg), "%s: cannot read", step);
			return vmd_error_set_errno(err, VMD_E_IO,
			                           n < 0 ? errno : EIO, msg,
			                           "read %s", shown);
		}
		got += (size_t)n;
	}
	*len = got;
	return 0;
}

/* ---- providers ---- */

static int get_from_file(const struct vmd_config *cfg, const char *key_id,
                         struct vmd_secret_key *k, struct vmd_error *err)
{
	_cleanup_(closep) int dfd = -1;

	if (!cfg->key_file_dir[0])
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "keys: key_file_dir is not set",
		                     "key_manager = file needs key_file_dir");
	dfd = open(cfg->key_file_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return vmd_error_set_errno(err, VMD_E_CONFIG, errno,
		                           "keys: cannot open the key directory",
		                           "open %s", cfg->key_file_dir);
	return read_private(dfd, key_id, "keys: key file", "the key file in "
	                    "key_file_dir", k->bytes, VMD_KEY_MIN, VMD_KEY_MAX,
	                    &k->len, err);
}

static int read_token(const struct vmd_config *cfg, struct token **out,
                      struct vmd_error *err)
{
	struct token *t;
	size_t map_len = 0, len = 0;
	int rc;

	*out = NULL;
	if (!cfg->barbican_token_file[0])
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "barbican: barbican_token_file is not set",
		                     "key_manager = barbican needs a token file");
	t = locked_alloc(sizeof(*t), &map_len);
	if (!t)
		return vmd_error_set_errno(err, VMD_E_NOMEM, errno,
		                           "barbican: cannot lock memory for the "
		                           "token", "mmap/mlock");
	t->map_len = map_len;
	rc = read_private(AT_FDCWD, cfg->barbican_token_file,
	                  "barbican: token file", cfg->barbican_token_file,
	                  (unsigned char *)t->text, 1, TOKEN_MAX, &len, err);
	while (rc == 0 && len > 0 &&
	       (t->text[len - 1] == '\n' || t->text[len - 1] == '\r'))
		len--;
	if (rc == 0) {
		t->text[len] = '\0';
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)t->text[i] <= 0x20 ||
			    (unsigned char)t->text[i] >= 0x7f)
				rc = vmd_error_set(err, VMD_E_CONFIG,
				                   "barbican: bad token file",
				                   "token holds blanks or control "
				                   "characters");
		if (rc == 0 && len < 4)
			rc = vmd_error_set(err, VMD_E_CONFIG,
			                   "barbican: bad token file",
			                   "token shorter than 4 characters");
		if (rc == 0 && vmd_secret_register(t->text) < 0)
			rc = vmd_error_set(err, VMD_E_REFUSED,
			                   "barbican: cannot protect the token",
			                   "registering the token failed");
		if (rc < 0)
			t->text[0] = '\0';
	} else {
		t->text[0] = '\0';
	}
	if (rc < 0) {
		token_free(&t);
		return rc;
	}
	t->len = len;
	*out = t;
	return 0;
}

/* "Name: value" appended to the list; the string is wiped afterwards. */
static int add_header(struct curl_slist **list, const char *name,
                      const char *value)
{
	size_t n = strlen(name) + 2 + strlen(value) + 1;
	char *h = malloc(n);
	struct curl_slist *l;

	if (!h)
		return -1;
	snprintf(h, n, "%s: %s", name, value);
	l = curl_slist_append(*list, h);
	explicit_bzero(h, n);
	free(h);
	if (!l)
		return -1;
	*list = l;
	return 0;
}

DEFINE_CLEANUP_FUNC(struct curl_slist *, vmd_curl_slist_wipe_free)

static int get_from_barbican(const struct vmd_config *cfg,
                             const char *key_id, struct vmd_secret_key *k,
                             struct vmd_error *err)
{
	_cleanup_(token_free) struct token *tok = NULL;
	_cleanup_(vmd_curl_slist_wipe_freep) struct curl_slist *hdrs = NULL;
	_cleanup_(freep) char *body = NULL;
	char url[VMD_URL_MAX + 64];
	size_t elen = strlen(cfg->barbican_endpoint), len = 0;
	struct vmd_curl_req req = {
		.step = "barbican",
		.url = url,
		.no_redirects = true,
	};
	long status = 0;
	int rc;

	if (!cfg->barbican_endpoint[0])
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "barbican: barbican_endpoint is not set",
		                     "key_manager = barbican needs an endpoint");
	while (elen > 0 && cfg->barbican_endpoint[elen - 1] == '/')
		elen--;
	snprintf(url, sizeof(url), "%.*s/v1/secrets/%s/payload", (int)elen,
	         cfg->barbican_endpoint, key_id);
	rc = vmd_curl_load(err);
	if (rc == 0)
		rc = read_token(cfg, &tok, err);
	if (rc < 0)
		return rc;
	if (add_header(&hdrs, "Accept", "application/octet-stream") < 0 ||
	    add_header(&hdrs, "X-Auth-Token", tok->text) < 0 ||
	    (cfg->barbican_project_id[0] &&
	     add_header(&hdrs, "X-Project-Id", cfg->barbican_project_id) < 0))
		return vmd_error_set(err, VMD_E_NOMEM,
		                     "barbican: out of memory", "headers");
	req.headers = hdrs;
	rc = vmd_curl_get_buffer(cfg, &req, VMD_KEY_MAX, &body, &len, &status,
	                         err);
	if (rc < 0) {
		vmd_error_prefix(err, "keys");
		return rc;
	}
	if (status == 200 && len >= VMD_KEY_MIN && len <= VMD_KEY_MAX) {
		memcpy(k->bytes, body, len);
		k->len = len;
		explicit_bzero(body, len);
		return 0;
	}
	if (body)
		explicit_bzero(body, len);
	if (status == 404)
		return vmd_error_set(err, VMD_E_NOTFOUND,
		                     "keys: barbican: secret not found",
		                     "barbican answered HTTP 404");
	if (status == 401 || status == 403)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "keys: barbican: not authorised",
		                     "barbican answered HTTP %ld", status);
	if (status == 200)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "keys: barbican: secret of a bad size",
		                     "payload of %zu bytes, want %d..%d", len,
		                     VMD_KEY_MIN, VMD_KEY_MAX);
	return vmd_error_set(err, VMD_E_EXTERNAL,
	                     "keys: barbican: fetching the secret failed",
	                     "barbican answered HTTP %ld", status);
}

int vmd_key_get(const struct vmd_config *cfg, const char *key_id,
                struct vmd_secret_key **out, struct vmd_error *err)
{
	_cleanup_(vmd_key_freep) struct vmd_secret_key *k = NULL;
	size_t map_len = 0;
	bool id_registered;
	int rc;

	*out = NULL;
	if (!key_id || !vmd_valid_uuid(key_id))
		return vmd_error_set(err, VMD_E_INVAL, "keys: bad key id",
		                     "the key id is not a UUID");
	k = locked_alloc(sizeof(*k), &map_len);
	if (!k)
		return vmd_error_set_errno(err, VMD_E_NOMEM, errno,
		                           "keys: cannot lock memory for the key",
		                           "mmap/mlock of %zu bytes",
		                           sizeof(*k));
	k->map_len = map_len;
	/* Nothing said while fetching may name the key id. */
	id_registered = vmd_secret_register(key_id) == 0;
	if (!id_registered)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "keys: cannot protect the key id in logs",
		                     "registering the key id failed");
	if (strcmp(cfg->key_manager, "barbican") == 0)
		rc = get_from_barbican(cfg, key_id, k, err);
	else if (strcmp(cfg->key_manager, "file") == 0 ||
	         !cfg->key_manager[0])
		rc = get_from_file(cfg, key_id, k, err);
	else
		rc = vmd_error_set(err, VMD_E_CONFIG,
		                   "keys: unknown key_manager",
		                   "key_manager must be file or barbican");
	if (rc == 0)
		rc = key_register(k, err);
	vmd_secret_unregister(key_id);
	if (rc < 0)
		return rc;
	*out = TAKE_PTR(k);
	return 0;
}
