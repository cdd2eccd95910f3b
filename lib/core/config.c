/*
 * Configuration file (see include/vmdisk/config.h).
 *
 * inih splits the text into (section, key, value); a table here maps each
 * key to its field and the check its value must pass. Every value that ends
 * up in a path or an argv (directories, volume group, pool, Ceph user) is
 * checked against an allow-list at load time, so later code can use it
 * as is.
 *
 * Parsing is strict and stops at the first problem: a typo in a key must not
 * silently leave a default in place, and a key given twice (in one section
 * or across the section aliases, or by an indented continuation line) is
 * refused naming both lines, rather than the last one silently winning. The text is fed to inih through our own
 * line reader, which gives the current line number to the handler and
 * catches lines longer than inih's line buffer (inih would otherwise cut
 * such a line in two and read the rest as a line of its own). Values are
 * parsed into a copy, so on failure the caller's config is left unchanged.
 */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmdisk/config.h>
#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "cleanup.h"
#include "config_text.h"
#include "error_trace.h"
#include "url.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define ECHO_MAX 40

enum parse_problem {
	PP_NONE = 0,
	PP_SECTION,
	PP_KEY,
	PP_VALUE,
	PP_TOO_LONG,
	PP_LINE_TOO_LONG,
	PP_DUPLICATE,
	PP_CONTINUATION,
};

struct parse_state {
	struct vmd_config cfg; /* working copy */
	const char *text;      /* the reader's position */
	int line;              /* number of the line inih is looking at */
	enum parse_problem problem;
	int problem_line;
	char name[ECHO_MAX + 8]; /* echo of the offending key or section */
	const char *why;         /* for the detail */
	bool indented;           /* the current line starts with a blank */
	int first_line;          /* PP_DUPLICATE: where the key was set first */
	int set_on[64];          /* line each key of the table was set on */
};

/* ---- value checks ---- */

static bool is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

/* [A-Za-z0-9][A-Za-z0-9<extra>]* */
static bool valid_name(const char *s, const char *extra)
{
	if (!is_alnum(s[0]))
		return false;
	for (s++; *s; s++)
		if (!is_alnum(*s) && !strchr(extra, *s))
			return false;
	return true;
}

static bool has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Valid UTF-8 (RFC 3629: no overlong form, no surrogate, nothing past
 * U+10FFFF): a path reaches JSON records, libvirt XML and logs, which need
 * text; /srv/donn\xc3\xa9es is a path, a stray 0xe9 byte is not. */
static bool is_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		unsigned char c = *p;
		size_t more;
		uint32_t cp, min;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			more = 1, cp = c & 0x1f, min = 0x80;
		else if (c >= 0xe0 && c <= 0xef)
			more = 2, cp = c & 0x0f, min = 0x800;
		else if (c >= 0xf0 && c <= 0xf4)
			more = 3, cp = c & 0x07, min = 0x10000;
		else
			return false;
		for (size_t i = 1; i <= more; i++) {
			if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += more + 1;
	}
	return true;
}

/*
 * A byte a configured path may not hold. These paths reach argvs (qemu-img,
 * rbd's conf=), libvirt XML and logs: ASCII is limited to what file names
 * plainly need, so a blank, a quote, a shell or printf metacharacter or a
 * glob never rides along; non-ASCII (valid UTF-8, checked apart) may be a
 * letter, but not an invisible or reordering one (zero width U+200B-200F,
 * bidi U+202A-202E and U+2066-2069, U+2060-2064, U+FEFF, C1 controls),
 * which would make a path read as another one.
 */
static bool path_char_refused(const unsigned char *p)
{
	if (p[0] < 0x80)
		return !is_alnum((char)p[0]) && !strchr("/._-+@=:,", p[0]);
	if (p[0] == 0xc2)
		return p[1] >= 0x80 && p[1] <= 0x9f;
	if (p[0] == 0xe2 && p[1] == 0x80)
		return (p[2] >= 0x8b && p[2] <= 0x8f) ||
		       (p[2] >= 0xaa && p[2] <= 0xae);
	if (p[0] == 0xe2 && p[1] == 0x81)
		return (p[2] >= 0xa0 && p[2] <= 0xa4) ||
		       (p[2] >= 0xa6 && p[2] <= 0xa9);
	return p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf;
}

/* Absolute and below / (not the root itself), UTF-8, only the characters
 * path_char_refused lets through, with no ".." component that could lead
 * out of it. */
static bool check_abs_path(const char *s)
{
	size_t len = strlen(s);

	if (s[0] != '/' || strspn(s, "/") == len || !is_utf8(s))
		return false;
	/* is_utf8 holds: every lead byte has its continuation bytes. */
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p < 0x80 || *p >= 0xc0) && path_char_refused(p))
			return false;
	return !strstr(s, "/../") &&
	       !(len >= 3 && strcmp(s + len - 3, "/..") == 0);
}

/* A service URL's path is a prefix the API path is appended to: a "." or
 * ".." segment there would not mean what it reads (curl resolves it). */
static bool has_dot_segment(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		size_t dots = 0;

		if (s[i] != '/')
			continue;
		while (i + 1 + dots < len && s[i + 1 + dots] == '.')
			dots++;
		if ((dots == 1 || dots == 2) &&
		    (i + 1 + dots == len || s[i + 1 + dots] == '/'))
			return true;
	}
	return false;
}

static bool check_instances_path(const char *s)
{
	return check_abs_path(s);
}

static bool check_optional_abs_path(const char *s)
{
	return s[0] == '\0' || check_abs_path(s);
}

/*
 * A file token, except that a leading '_' is allowed too: Nova's default
 * (and ours) is "_base", which vmd_valid_file_token refuses. A leading '.'
 * or '-' stays refused.
 */
static bool check_cache_dir_name(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 128 || (s[0] != '_' && !is_alnum(s[0])))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_alnum(s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

/* LVM volume group and Ceph pool names; VMD_NAME_MAX bounds the length. */
static bool check_pool_name(const char *s)
{
	return valid_name(s, "._+-");
}

/* The volume group is only needed by the lvm backend; empty means unset. */
static bool check_optional_pool_name(const char *s)
{
	return s[0] == '\0' || check_pool_name(s);
}

/* Nova's volume_clear values. */
static bool check_volume_clear(const char *s)
{
	return strcmp(s, "none") == 0 || strcmp(s, "zero") == 0 ||
	       strcmp(s, "shred") == 0;
}

static bool check_optional_user(const char *s)
{
	return s[0] == '\0' || valid_name(s, "._-");
}

/* A group name as groupadd takes it (a leading '_' too), or "" for the
 * default; looked up when the cache publishes a base. */
static bool check_optional_group(const char *s)
{
	if (s[0] == '\0')
		return true;
	if (strlen(s) > 32 || (s[0] != '_' && !is_alnum(s[0])))
		return false;
	for (s++; *s; s++)
		if (!is_alnum(*s) && !strchr("._-", *s))
			return false;
	return true;
}

static bool check_optional_uuid(const char *s)
{
	return s[0] == '\0' || vmd_valid_uuid(s);
}

/*
 * glance_api_servers: a comma list (blanks after a comma allowed) of
 * http(s)://host[:port][/path], each as strict as an image URL and with no
 * query: the path is a prefix that /v2/images/ID is appended to.
 */
static bool check_glance_servers(const char *s)
{
	char item[VMD_URL_MAX + 1];

	if (s[0] == '\0')
		return true;
	for (;;) {
		size_t n = strcspn(s, ",");

		if (n == 0 || n > VMD_URL_MAX)
			return false;
		memcpy(item, s, n);
		item[n] = '\0';
		if (!vmd_url_valid(item, false) || has_dot_segment(item, n))
			return false;
		if (s[n] == '\0')
			return true;
		s += n + 1;
		while (*s == ' ')
			s++;
	}
}

/* Glance's disk formats; allowed_disk_formats picks among them. */
static const char *const disk_formats[] = {
	"raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "ploop",
	"aki", "ari", "ami",
};

static bool known_disk_format(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(disk_formats) / sizeof(disk_formats[0]);
	     i++)
		if (strlen(disk_formats[i]) == len &&
		    memcmp(disk_formats[i], s, len) == 0)
			return true;
	return false;
}

/* A non-empty comma list of known formats (blanks after a comma allowed). */
static bool check_disk_formats(const char *s)
{
	for (;;) {
		size_t n = strcspn(s, ",");

		if (!known_disk_format(s, n))
			return false;
		if (s[n] == '\0')
			return true;
		s += n + 1;
		while (*s == ' ')
			s++;
	}
}

/* A dm-crypt cipher spec as cryptsetup takes it: "aes-xts-plain64",
 * "aes-cbc-essiv:sha256"; it reaches libcryptsetup, never an argv. */
static bool check_cipher(const char *s)
{
	return valid_name(s, "-:") && strchr(s, '-') != NULL;
}

static bool check_key_manager(const char *s)
{
	return strcmp(s, "file") == 0 || strcmp(s, "barbican") == 0;
}

static bool check_optional_url(const char *s)
{
	return s[0] == '\0' ||
	       (vmd_url_valid(s, false) && !has_dot_segment(s, strlen(s)));
}

static bool parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

/* ---- the key table ---- */

enum key_type {
	KT_STRING,
	KT_BOOL,
	KT_BACKEND,
	KT_PREALLOCATE,
	KT_U32,
	KT_SIZE,
	KT_SIZE_OR_ZERO,
	KT_LOG_TARGET,
	KT_LOG_LEVEL,
};

struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;
	size_t size;                  /* KT_STRING: the buffer */
	bool (*check)(const char *s); /* KT_STRING */
	uint32_t min, max;            /* KT_U32 when max > 0: the range */
};

#define STR_KEY(field, fn)                                                     \
	{#field, KT_STRING, offsetof(struct vmd_config, field),                \
	 sizeof(((struct vmd_config *)0)->field), fn, 0, 0}
#define KEY(field, type)                                                       \
	{#field, type, offsetof(struct vmd_config, field), 0, NULL, 0, 0}
#define U32_KEY(field, lo, hi)                                                 \
	{#field, KT_U32, offsetof(struct vmd_config, field), 0, NULL, lo, hi}

static const struct key_def keys[] = {
	STR_KEY(instances_path, check_instances_path),
	KEY(images_type, KT_BACKEND),
	KEY(use_cow_images, KT_BOOL),
	KEY(force_raw_images, KT_BOOL),
	KEY(preallocate_images, KT_PREALLOCATE),
	STR_KEY(image_cache_subdirectory_name, check_cache_dir_name),
	STR_KEY(image_cache_group, check_optional_group),
	STR_KEY(images_volume_group, check_optional_pool_name),
	KEY(sparse_logical_volumes, KT_BOOL),
	STR_KEY(volume_clear, check_volume_clear),
	U32_KEY(volume_clear_size, 0, UINT32_MAX),
	STR_KEY(lvm_thin_pool, check_pool_name),
	STR_KEY(images_rbd_pool, check_pool_name),
	STR_KEY(images_rbd_ceph_conf, check_optional_abs_path),
	STR_KEY(rbd_user, check_optional_user),
	STR_KEY(rbd_secret_uuid, check_optional_uuid),
	KEY(lock_timeout_seconds, KT_U32),
	KEY(max_image_virtual_size, KT_SIZE),
	KEY(remove_unused_base_images, KT_BOOL),
	KEY(remove_unused_original_minimum_age_seconds, KT_U32),
	KEY(remove_unused_resized_minimum_age_seconds, KT_U32),
	KEY(log_target, KT_LOG_TARGET),
	STR_KEY(images_rbd_glance_store_pool, check_pool_name),
	KEY(rbd_connect_timeout, KT_U32),
	KEY(rbd_clone_fallback_import, KT_BOOL),
	KEY(log_level, KT_LOG_LEVEL),
	STR_KEY(ca_file, check_optional_abs_path),
	U32_KEY(http_connect_timeout, 1, 3600),
	U32_KEY(http_low_speed_time, 1, 3600),
	U32_KEY(http_low_speed_limit, 1, 1u << 30),
	U32_KEY(http_max_redirects, 0, 20),
	U32_KEY(http_retries, 0, 10),
	KEY(max_image_download_size, KT_SIZE_OR_ZERO),
	STR_KEY(glance_api_servers, check_glance_servers),
	STR_KEY(glance_token_file, check_optional_abs_path),
	STR_KEY(allowed_disk_formats, check_disk_formats),
	STR_KEY(vmdiskd_socket, check_abs_path),
	STR_KEY(vmdiskd_policy_file, check_abs_path),
	STR_KEY(vmdiskd_audit_log, check_abs_path),
	KEY(ephemeral_storage_encryption_enabled, KT_BOOL),
	STR_KEY(ephemeral_storage_encryption_cipher, check_cipher),
	U32_KEY(ephemeral_storage_encryption_key_size, 128, 1024),
	STR_KEY(key_manager, check_key_manager),
	STR_KEY(key_file_dir, check_abs_path),
	STR_KEY(barbican_endpoint, check_optional_url),
	STR_KEY(barbican_token_file, check_optional_abs_path),
	STR_KEY(barbican_project_id, check_optional_user),
};

struct enum_name {
	const char *name;
	int value;
};

static const struct enum_name preallocate_names[] = {
	{"none", VMD_PREALLOCATE_NONE},
	{"space", VMD_PREALLOCATE_SPACE},
};

static const struct enum_name log_target_names[] = {
	{"stderr", VMD_LOG_TO_STDERR},
	{"syslog", VMD_LOG_TO_SYSLOG},
	{"none", VMD_LOG_TO_NONE},
};

static const struct enum_name log_level_names[] = {
	{"error", VMD_LOG_ERROR},
	{"warning", VMD_LOG_WARNING},
	{"info", VMD_LOG_INFO},
	{"debug", VMD_LOG_DEBUG},
};


_Static_assert(ELEMENTSOF(keys) <= ELEMENTSOF(((struct parse_state *)0)->set_on),
               "parse_state.set_on has a slot per key");

static bool enum_lookup(const struct enum_name *tab, size_t n, const char *s,
                        int *out)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(tab[i].name, s) == 0) {
			*out = tab[i].value;
			return true;
		}
	}
	return false;
}

/* Store `value` in the field of `k`; PP_NONE or what was wrong with it. */
static enum parse_problem set_value(struct vmd_config *cfg,
                                    const struct key_def *k, const char *value)
{
	char *field = (char *)cfg + k->offset;
	int v;

	switch (k->type) {
	case KT_STRING:
		if (strlen(value) >= k->size)
			return PP_TOO_LONG;
		if (!k->check(value))
			return PP_VALUE;
		memcpy(field, value, strlen(value) + 1);
		return PP_NONE;
	case KT_BOOL:
		if (vmd_parse_bool(value, (bool *)field, NULL) < 0)
			return PP_VALUE;
		return PP_NONE;
	case KT_BACKEND:
		if (vmd_parse_backend(value, (enum vmd_backend_kind *)field,
		                      NULL) < 0)
			return PP_VALUE;
		return PP_NONE;
	case KT_U32: {
		uint32_t u;

		if (!parse_u32(value, &u) ||
		    (k->max > 0 && (u < k->min || u > k->max)))
			return PP_VALUE;
		memcpy(field, &u, sizeof(u));
		return PP_NONE;
	}
	case KT_SIZE:
	case KT_SIZE_OR_ZERO: {
		uint64_t size;

		/* Above INT64_MAX no file offset can reach it: such a limit
		 * would only be compared as a negative off_t somewhere. */
		if (vmd_parse_size(value, &size, NULL) < 0 ||
		    size > (uint64_t)INT64_MAX ||
		    (size == 0 && k->type == KT_SIZE))
			return PP_VALUE;
		memcpy(field, &size, sizeof(size));
		return PP_NONE;
	}
	case KT_PREALLOCATE:
		if (!enum_lookup(preallocate_names, ELEMENTSOF(preallocate_names),
		                 value, &v))
			return PP_VALUE;
		*(enum vmd_preallocate *)field = (enum vmd_preallocate)v;
		return PP_NONE;
	case KT_LOG_TARGET:
		if (!enum_lookup(log_target_names, ELEMENTSOF(log_target_names),
		                 value, &v))
			return PP_VALUE;
		*(enum vmd_log_target *)field = (enum vmd_log_target)v;
		return PP_NONE;
	case KT_LOG_LEVEL:
		if (!enum_lookup(log_level_names, ELEMENTSOF(log_level_names),
		                 value, &v))
			return PP_VALUE;
		*(enum vmd_log_level *)field = (enum vmd_log_level)v;
		return PP_NONE;
	}
	return PP_VALUE;
}

/* ---- inih glue ---- */

/* Copy a name from the file for an error text: printable ASCII only, cut. */
static void echo_name(char *buf, size_t bufsz, const char *s)
{
	if (has_control(s)) {
		buf[0] = '\0';
		return;
	}
	for (const char *p = s; *p; p++) {
		if ((unsigned char)*p > 0x7e) {
			buf[0] = '\0';
			return;
		}
	}
	if (strlen(s) > ECHO_MAX)
		snprintf(buf, bufsz, "%.*s...", ECHO_MAX, s);
	else
		snprintf(buf, bufsz, "%s", s);
}

static int record(struct parse_state *ps, enum parse_problem problem,
                  const char *name, const char *why)
{
	ps->problem = problem;
	ps->problem_line = ps->line;
	ps->why = why;
	echo_name(ps->name, sizeof(ps->name), name);
	return 0; /* what inih takes as "error on this line" */
}

static int on_value(void *user, const char *section, const char *name,
                    const char *value)
{
	struct parse_state *ps = user;
	enum parse_problem p;

	if (ps->problem != PP_NONE)
		return 0;
	if (section[0] && strcmp(section, "DEFAULT") != 0 &&
	    strcmp(section, "libvirt") != 0 && strcmp(section, "vmdisk") != 0)
		return record(ps, PP_SECTION, section,
		              "sections are [DEFAULT], [libvirt] and [vmdisk]");
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		if (strcmp(keys[i].name, name) != 0)
			continue;
		/* inih hands an indented line after a key to us as another
		 * value of that key: refused like a second one. */
		if (ps->set_on[i]) {
			ps->first_line = ps->set_on[i];
			return record(ps, ps->indented ? PP_CONTINUATION
			                               : PP_DUPLICATE,
			              name, ps->indented
			                      ? "continuation lines are not "
			                        "allowed: one line per value"
			                      : "each key may be given once "
			                        "(in any one section)");
		}
		ps->set_on[i] = ps->line;
		p = set_value(&ps->cfg, &keys[i], value);
		if (p == PP_TOO_LONG)
			return record(ps, p, name, "value too long");
		if (p != PP_NONE)
			return record(ps, p, name, "value not allowed");
		return 1;
	}
	return record(ps, PP_KEY, name, "no such option");
}

/* inih's line source: one line per call, as fgets would give it. */
static char *next_line(char *buf, int bufsz, void *stream)
{
	struct parse_state *ps = stream;
	size_t len;

	/* A handler error ends the parse: nothing after it can matter. */
	if (ps->problem != PP_NONE || !*ps->text)
		return NULL;
	len = strcspn(ps->text, "\n");
	if (ps->text[len] == '\n')
		len++;
	ps->line++;
	if (bufsz <= 0 || len >= (size_t)bufsz) {
		ps->problem = PP_LINE_TOO_LONG;
		ps->problem_line = ps->line;
		ps->why = "line longer than the parser's buffer";
		ps->name[0] = '\0';
		return NULL;
	}
	memcpy(buf, ps->text, len);
	buf[len] = '\0';
	ps->indented = buf[0] == ' ' || buf[0] == '\t';
	ps->text += len;
	return buf;
}

static int config_error(const struct parse_state *ps, int line,
                        const char *source, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX];
	const char *what;
	const char *quote = ps->name[0] ? "'" : "";

	switch (ps->problem) {
	case PP_SECTION: what = "unknown section"; break;
	case PP_KEY: what = "unknown key"; break;
	case PP_VALUE: what = "bad value for"; break;
	case PP_TOO_LONG: what = "value too long for"; break;
	case PP_LINE_TOO_LONG: what = "line too long"; break;
	case PP_DUPLICATE: what = "duplicate key"; break;
	case PP_CONTINUATION: what = "continuation line for"; break;
	default: what = "syntax error"; break;
	}
	if ((ps->problem == PP_DUPLICATE || ps->problem == PP_CONTINUATION) &&
	    ps->name[0])
		snprintf(msg, sizeof(msg), "config: %s '%s' (lines %d and %d)",
		         what, ps->name, ps->first_line, line);
	else if (ps->name[0])
		snprintf(msg, sizeof(msg), "config: %s '%s' (line %d)", what,
		         ps->name, line);
	else
		snprintf(msg, sizeof(msg), "config: %s (line %d)", what, line);
	return vmd_error_set(err, VMD_E_CONFIG, msg, "%s line %d: %s%s%s%s%s",
	                     source, line, quote, ps->name, quote,
	                     ps->name[0] ? ": " : "",
	                     ps->problem == PP_NONE
	                             ? "not a 'key = value' or '[section]' line"
	                             : ps->why);
}

static int parse_text(struct vmd_config *cfg, const char *text,
                      const char *source, struct vmd_error *err)
{
	struct parse_state *ps;
	int rc;

	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return vmd_error_set(err, VMD_E_NOMEM, "config: out of memory",
		                     "%s", source);
	ps->cfg = *cfg;
	ps->text = text;
	rc = ini_parse_stream(next_line, ps, on_value, ps);
	if (rc < 0) {
		free(ps);
		return vmd_error_set(err, VMD_E_NOMEM, "config: out of memory",
		                     "inih failed on %s", source);
	}
	/* inih reports the first bad line, ours or its own (syntax). */
	if (rc > 0 && (ps->problem == PP_NONE || rc < ps->problem_line)) {
		ps->problem = PP_NONE;
		ps->name[0] = '\0';
		rc = config_error(ps, rc, source, err);
	} else if (ps->problem != PP_NONE) {
		rc = config_error(ps, ps->problem_line, source, err);
	} else {
		*cfg = ps->cfg;
		vmd_error_trace_config(cfg);
		rc = 0;
	}
	free(ps);
	return rc;
}

/* ---- public ---- */

void vmd_config_defaults(struct vmd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->instances_path, sizeof(cfg->instances_path), "%s",
	         "/var/lib/vmdisk/instances");
	cfg->images_type = VMD_BACKEND_DEFAULT;
	cfg->use_cow_images = true;
	cfg->force_raw_images = true;
	cfg->preallocate_images = VMD_PREALLOCATE_NONE;
	snprintf(cfg->image_cache_subdirectory_name,
	         sizeof(cfg->image_cache_subdirectory_name), "%s", "_base");
	cfg->sparse_logical_volumes = false;
	snprintf(cfg->volume_clear, sizeof(cfg->volume_clear), "zero");
	cfg->volume_clear_size = 0;
	snprintf(cfg->lvm_thin_pool, sizeof(cfg->lvm_thin_pool),
	         "vmdisk-thinpool");
	snprintf(cfg->images_rbd_pool, sizeof(cfg->images_rbd_pool), "%s",
	         "rbd");
	cfg->lock_timeout_seconds = 600;
	cfg->max_image_virtual_size = 1ull << 40; /* 1 TiB */
	cfg->remove_unused_base_images = true;
	cfg->remove_unused_original_minimum_age_seconds = 86400;
	cfg->remove_unused_resized_minimum_age_seconds = 3600;
	cfg->log_target = VMD_LOG_TO_SYSLOG;
	cfg->log_level = VMD_LOG_INFO;
	cfg->http_connect_timeout = 30;
	cfg->http_low_speed_time = 60;
	cfg->http_low_speed_limit = 1024;
	cfg->http_max_redirects = 5;
	cfg->http_retries = 3;
	cfg->max_image_download_size = 0;
	snprintf(cfg->allowed_disk_formats, sizeof(cfg->allowed_disk_formats),
	         "%s", "raw,qcow2");
	snprintf(cfg->images_rbd_glance_store_pool,
	         sizeof(cfg->images_rbd_glance_store_pool), "%s", "images");
	cfg->rbd_connect_timeout = 5;
	cfg->rbd_clone_fallback_import = true;
	snprintf(cfg->vmdiskd_socket, sizeof(cfg->vmdiskd_socket), "%s",
	         "/run/vmdisk/vmdiskd.sock");
	snprintf(cfg->vmdiskd_policy_file, sizeof(cfg->vmdiskd_policy_file),
	         "%s", "/etc/vmdisk/vmdiskd-policy.conf");
	snprintf(cfg->vmdiskd_audit_log, sizeof(cfg->vmdiskd_audit_log), "%s",
	         "/var/log/vmdisk/vmdiskd-audit.log");
	snprintf(cfg->ephemeral_storage_encryption_cipher,
	         sizeof(cfg->ephemeral_storage_encryption_cipher), "%s",
	         "aes-xts-plain64");
	cfg->ephemeral_storage_encryption_key_size = 512;
	snprintf(cfg->key_manager, sizeof(cfg->key_manager), "%s", "file");
	snprintf(cfg->key_file_dir, sizeof(cfg->key_file_dir), "%s",
	         "/etc/vmdisk/keys");
}

int vmd_config_load_string(struct vmd_config *cfg, const char *text,
                           struct vmd_error *err)
{
	if (!cfg || !text)
		return vmd_error_set(err, VMD_E_INVAL, "config: no text",
		                     "NULL config or text");
	return parse_text(cfg, text, "config text", err);
}

/* The whole file as a NUL-terminated string, or NULL with *errnum set
 * (EINVAL: not a regular file or holds NUL bytes; EFBIG: too large, or it
 * grew while we read it). */
static char *read_config_file(const char *path, int *errnum)
{
	struct stat st;
	char *buf;
	size_t len = 0, room;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	*errnum = 0;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*errnum = errno;
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
		*errnum = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
		close(fd);
		return NULL;
	}
	/* One spare byte shows whether the file grew since fstat. */
	room = (size_t)st.st_size + 1;
	buf = malloc(room + 1);
	if (!buf) {
		*errnum = ENOMEM;
		close(fd);
		return NULL;
	}
	while (len < room) {
		ssize_t n = read(fd, buf + len, room - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			*errnum = errno;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (*errnum == 0 && len == room)
		*errnum = EFBIG;
	if (*errnum == 0 && memchr(buf, '\0', len))
		*errnum = EINVAL;
	if (*errnum) {
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

int vmd_config_load_file(struct vmd_config *cfg, const char *path,
                         struct vmd_error *err)
{
	char *text;
	int errnum = 0;
	int rc;

	if (!cfg || !path)
		return vmd_error_set(err, VMD_E_INVAL, "config: no file",
		                     "NULL config or path");
	text = read_config_file(path, &errnum);
	if (!text) {
		if (errnum == ENOENT || errnum == ENOTDIR)
			return vmd_error_set_errno(err, VMD_E_NOTFOUND, errnum,
			                           "config: file not found",
			                           "%s", path);
		if (errnum == EINVAL)
			return vmd_error_set(err, VMD_E_CONFIG,
			                     "config: not a text file",
			                     "%s: not a regular file, or it "
			                     "holds NUL bytes", path);
		if (errnum == EFBIG)
			return vmd_error_set(err, VMD_E_CONFIG,
			                     "config: file too large",
			                     "%s: larger than %d bytes", path,
			                     CONFIG_FILE_MAX);
		return vmd_error_set_errno(err, errnum == ENOMEM
		                                        ? VMD_E_NOMEM
		                                        : VMD_E_CONFIG,
		                           errnum, "config: cannot read file",
		                           "%s", path);
	}
	rc = parse_text(cfg, text, path, err);
	free(text);
	return rc;
}

int vmd_config_load(struct vmd_config *cfg, const char *explicit_path,
                    struct vmd_error *err)
{
	const char *env = getenv("VMDISK_CONFIG");
	struct stat st;

	if (!cfg)
		return vmd_error_set(err, VMD_E_INVAL, "config: no config",
		                     "NULL config");
	vmd_config_defaults(cfg);
	if (explicit_path)
		return vmd_config_load_file(cfg, explicit_path, err);
	if (env && env[0])
		return vmd_config_load_file(cfg, env, err);
	/* Only the default file may be absent; then the defaults apply. */
	if (stat(VMD_DEFAULT_CONFIG_PATH, &st) < 0 &&
	    (errno == ENOENT || errno == ENOTDIR)) {
		vmd_log_debug("config: %s absent, using defaults",
		              VMD_DEFAULT_CONFIG_PATH);
		return 0;
	}
	return vmd_config_load_file(cfg, VMD_DEFAULT_CONFIG_PATH, err);
}

enum vmd_backend_kind vmd_config_backend(const struct vmd_config *cfg)
{
	if (cfg->images_type != VMD_BACKEND_DEFAULT)
		return cfg->images_type;
	return cfg->use_cow_images ? VMD_BACKEND_QCOW2 : VMD_BACKEND_FLAT;
}

/* ---- the configuration as text ---- */

static const char *enum_name_of(const struct enum_name *tab, size_t n, int v)
{
	for (size_t i = 0; i < n; i++)
		if (tab[i].value == v)
			return tab[i].name;
	return NULL;
}

/* One key's "name = value" line; -1 when the value has no text form. */
static int key_line(struct vmd_buf *b, const struct vmd_config *cfg,
                    const struct key_def *k)
{
	const char *field = (const char *)cfg + k->offset;
	const char *word = NULL;
	uint64_t u64;
	uint32_t u32;

	switch (k->type) {
	case KT_STRING:
		if (!memchr(field, '\0', k->size))
			return -1;
		return vmd_buf_printf(b, "%s = %s\n", k->name, field);
	case KT_BOOL:
		return vmd_buf_printf(b, "%s = %s\n", k->name,
		                      *(const bool *)field ? "true" : "false");
	case KT_BACKEND:
		word = vmd_backend_kind_name(
		        *(const enum vmd_backend_kind *)field);
		break;
	case KT_U32:
		memcpy(&u32, field, sizeof(u32));
		return vmd_buf_printf(b, "%s = %u\n", k->name, (unsigned)u32);
	case KT_SIZE:
	case KT_SIZE_OR_ZERO:
		memcpy(&u64, field, sizeof(u64));
		return vmd_buf_printf(b, "%s = %llu\n", k->name,
		                      (unsigned long long)u64);
	case KT_PREALLOCATE:
		word = enum_name_of(preallocate_names,
		                    ELEMENTSOF(preallocate_names),
		                    (int)*(const enum vmd_preallocate *)field);
		break;
	case KT_LOG_TARGET:
		word = enum_name_of(log_target_names,
		                    ELEMENTSOF(log_target_names),
		                    (int)*(const enum vmd_log_target *)field);
		break;
	case KT_LOG_LEVEL:
		word = enum_name_of(log_level_names, ELEMENTSOF(log_level_names),
		                    (int)*(const enum vmd_log_level *)field);
		break;
	}
	if (!word)
		return -1;
	return vmd_buf_printf(b, "%s = %s\n", k->name, word);
}

static int to_text(const struct vmd_config *cfg, struct vmd_buf *b)
{
	if (vmd_buf_puts(b, "[vmdisk]\n") < 0)
		return -1;
	for (size_t i = 0; i < ELEMENTSOF(keys); i++)
		if (key_line(b, cfg, &keys[i]) < 0)
			return -1;
	return 0;
}

int vmd_config_to_text(const struct vmd_config *cfg, char **out,
                       struct vmd_error *err)
{
	_cleanup_(vmd_buf_free) struct vmd_buf text = VMD_BUF_INIT;
	_cleanup_(vmd_buf_free) struct vmd_buf again = VMD_BUF_INIT;
	_cleanup_(freep) struct vmd_config *back = NULL;
	int rc;

	*out = NULL;
	if (to_text(cfg, &text) < 0 || text.failed)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "config: cannot be written as text",
		                     "a value has no text form");
	/* Only what reads back the same is handed on: a value the file
	 * parser would refuse, cut or change (set in code, not read from a
	 * file) fails here rather than reaching the reader changed. */
	back = malloc(sizeof(*back));
	if (!back)
		return vmd_error_set(err, VMD_E_NOMEM, "config: out of memory",
		                     "config copy");
	vmd_config_defaults(back);
	rc = parse_text(back, text.data, "config text", err);
	if (rc < 0)
		return rc;
	if (to_text(back, &again) < 0 || again.failed ||
	    again.len != text.len || memcmp(again.data, text.data, text.len))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "config: cannot be written as text",
		                     "a value reads back differently");
	*out = vmd_buf_steal(&text);
	return *out ? 0 : vmd_error_set(err, VMD_E_NOMEM,
	                                "config: out of memory", "config text");
}
