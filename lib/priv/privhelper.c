/*
 * The privileged helper's protocol: request schema, parser, serialiser
 * and client (see privhelper.h), in libvmdisk. Everything that runs a
 * privileged step (the dispatch table, the handlers, the key providers,
 * policy, audit, the servers) is in lib/priv/server/, linked by vmdiskd
 * only; as root the client starts a one-shot `vmdiskd --stdio`.
 *
 * The parser is the part an unprivileged caller feeds bytes to, so it is
 * strict and pure: one flat JSON object, every field known, typed and
 * allow-listed, nothing left over. It has a fuzz target
 * (tests/fuzz/fuzz_priv_request.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "jsonc_lazy.h"

#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "cleanup.h"
#include "config_text.h"
#include "json_string.h"
#include "privhelper.h"
#include "runner.h"
#include "vmd_build_config.h"


static const char *const op_names[VMD_PRIV_OP_COUNT] = {
	[VMD_PRIV_PING] = "ping",
	[VMD_PRIV_LVM_CREATE] = "lvm_create",
	[VMD_PRIV_LVM_REMOVE] = "lvm_remove",
	[VMD_PRIV_LVM_RESIZE] = "lvm_resize",
	[VMD_PRIV_LVM_WRITE_IMAGE] = "lvm_write_image",
	[VMD_PRIV_MKFS] = "mkfs",
	[VMD_PRIV_LUKS_FORMAT] = "luks_format",
	[VMD_PRIV_LUKS_OPEN] = "luks_open",
	[VMD_PRIV_LUKS_CLOSE] = "luks_close",
	[VMD_PRIV_LVM_INFO] = "lvm_info",
	[VMD_PRIV_LVM_OPEN_READ] = "lvm_open_read",
};

#define F_VOL (VMD_PF_VG | VMD_PF_LV)

static const struct {
	unsigned required, optional;
} op_fields[VMD_PRIV_OP_COUNT] = {
	[VMD_PRIV_PING] = {0, 0},
	[VMD_PRIV_LVM_CREATE] = {F_VOL | VMD_PF_SIZE,
	                         VMD_PF_SPARSE | VMD_PF_KEY_ID},
	[VMD_PRIV_LVM_REMOVE] = {F_VOL, VMD_PF_CLEAR | VMD_PF_CLEAR_SIZE},
	[VMD_PRIV_LVM_RESIZE] = {F_VOL | VMD_PF_SIZE, VMD_PF_KEY_ID},
	/* Without base (and format), the volume is zeroed. */
	[VMD_PRIV_LVM_WRITE_IMAGE] = {F_VOL, VMD_PF_BASE | VMD_PF_FORMAT},
	[VMD_PRIV_MKFS] = {F_VOL | VMD_PF_FS, VMD_PF_LABEL},
	[VMD_PRIV_LUKS_FORMAT] = {F_VOL | VMD_PF_KEY_ID, 0},
	[VMD_PRIV_LUKS_OPEN] = {F_VOL | VMD_PF_KEY_ID, 0},
	[VMD_PRIV_LUKS_CLOSE] = {F_VOL, 0},
	[VMD_PRIV_LVM_INFO] = {F_VOL, 0},
	[VMD_PRIV_LVM_OPEN_READ] = {F_VOL, 0},
};

const char *vmd_priv_op_name(enum vmd_priv_op op)
{
	if ((unsigned)op >= VMD_PRIV_OP_COUNT)
		return "?";
	return op_names[op];
}

int vmd_priv_op_parse(const char *name, enum vmd_priv_op *op)
{
	for (unsigned i = 0; i < VMD_PRIV_OP_COUNT; i++) {
		if (strcmp(op_names[i], name) == 0) {
			*op = (enum vmd_priv_op)i;
			return 0;
		}
	}
	return -1;
}

bool vmd_priv_op_is_encryption(enum vmd_priv_op op)
{
	return op == VMD_PRIV_LUKS_FORMAT || op == VMD_PRIV_LUKS_OPEN ||
	       op == VMD_PRIV_LUKS_CLOSE;
}

enum vmd_priv_op vmd_priv_request_extra_grant(const struct vmd_priv_request *req)
{
	if (!(req->fields & VMD_PF_KEY_ID))
		return VMD_PRIV_OP_COUNT;
	if (req->op == VMD_PRIV_LVM_CREATE)
		return VMD_PRIV_LUKS_FORMAT;
	if (req->op == VMD_PRIV_LVM_RESIZE)
		return VMD_PRIV_LUKS_OPEN;
	return VMD_PRIV_OP_COUNT;
}

unsigned vmd_priv_fields_required(enum vmd_priv_op op)
{
	return (unsigned)op < VMD_PRIV_OP_COUNT ? op_fields[op].required : 0;
}

unsigned vmd_priv_fields_allowed(enum vmd_priv_op op)
{
	return (unsigned)op < VMD_PRIV_OP_COUNT
	               ? op_fields[op].required | op_fields[op].optional
	               : 0;
}

/* ---- value checks ---- */

static bool is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z');
}

/* [A-Za-z0-9][A-Za-z0-9<extra>]{0,max-1} */
static bool valid_token(const char *s, const char *extra, size_t max)
{
	size_t len = strlen(s);

	if (len == 0 || len > max || !is_alnum(s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_alnum(s[i]) && !strchr(extra, s[i]))
			return false;
	return true;
}

/* A volume group name as the config takes images_volume_group. */
static bool valid_vg(const char *s)
{
	return valid_token(s, "._+-", VMD_NAME_MAX - 1);
}

/* An LV name: a file token, and none of the names LVM keeps for itself. */
static bool valid_lv(const char *s)
{
	static const char *const reserved[] = {"_cdata", "_cmeta", "_corig",
	                                       "_mlog", "_mimage", "_pmspare",
	                                       "_rimage", "_rmeta", "_tdata",
	                                       "_tmeta", "_vorigin", "_vdata"};

	if (!vmd_valid_file_token(s) || strcmp(s, "snapshot") == 0 ||
	    strcmp(s, "pvmove") == 0)
		return false;
	for (size_t i = 0; i < ELEMENTSOF(reserved); i++)
		if (strstr(s, reserved[i]))
			return false;
	return true;
}

static bool in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return true;
	return false;
}

static const char *const formats[] = {"raw", "qcow2"};
static const char *const filesystems[] = {"ext4", "xfs", "vfat", "swap"};
static const char *const clear_names[] = {"none", "zero", "shred"};

int vmd_priv_clear_parse(const char *s, enum vmd_priv_clear *out)
{
	for (size_t i = 0; i < ELEMENTSOF(clear_names); i++) {
		if (strcmp(s, clear_names[i]) == 0) {
			*out = (enum vmd_priv_clear)i;
			return 0;
		}
	}
	return -1;
}

/* ---- fields ---- */

enum ftype { FT_STRING, FT_U64, FT_BOOL };

struct field_def {
	const char *name;
	enum vmd_priv_field bit;
	enum ftype type;
};

static const struct field_def field_defs[] = {
	{"vg", VMD_PF_VG, FT_STRING},
	{"lv", VMD_PF_LV, FT_STRING},
	{"size", VMD_PF_SIZE, FT_U64},
	{"sparse", VMD_PF_SPARSE, FT_BOOL},
	{"base", VMD_PF_BASE, FT_STRING},
	{"format", VMD_PF_FORMAT, FT_STRING},
	{"fs", VMD_PF_FS, FT_STRING},
	{"label", VMD_PF_LABEL, FT_STRING},
	{"key_id", VMD_PF_KEY_ID, FT_STRING},
	{"volume_clear", VMD_PF_CLEAR, FT_STRING},
	{"volume_clear_size", VMD_PF_CLEAR_SIZE, FT_U64},
};

static const struct field_def *field_lookup(const char *name)
{
	for (size_t i = 0; i < ELEMENTSOF(field_defs); i++)
		if (strcmp(field_defs[i].name, name) == 0)
			return &field_defs[i];
	return NULL;
}

static const char *field_name(unsigned bit)
{
	for (size_t i = 0; i < ELEMENTSOF(field_defs); i++)
		if (field_defs[i].bit == bit)
			return field_defs[i].name;
	return "?";
}

static int bad(struct vmd_error *err, enum vmd_errc code, const char *what,
               const char *field)
{
	char msg[VMD_ERROR_MSG_MAX];

	if (field)
		snprintf(msg, sizeof(msg), "request: %s '%s'", what, field);
	else
		snprintf(msg, sizeof(msg), "request: %s", what);
	return vmd_error_set(err, code, msg, "privileged request refused: %s",
	                     msg);
}

static int copy_str(char *dst, size_t dstsz, const char *s)
{
	size_t len = strlen(s);

	if (len >= dstsz)
		return -1;
	memcpy(dst, s, len + 1);
	return 0;
}

/* Store string `s` of field `f` if it passes the field's check. */
static int set_string(struct vmd_priv_request *req, unsigned bit,
                      const char *s)
{
	switch (bit) {
	case VMD_PF_VG:
		return valid_vg(s) ? copy_str(req->vg, sizeof(req->vg), s) : -1;
	case VMD_PF_LV:
		return valid_lv(s) ? copy_str(req->lv, sizeof(req->lv), s) : -1;
	case VMD_PF_BASE:
		return vmd_valid_file_token(s)
		               ? copy_str(req->base, sizeof(req->base), s)
		               : -1;
	case VMD_PF_FORMAT:
		return in_list(s, formats, ELEMENTSOF(formats))
		               ? copy_str(req->format, sizeof(req->format), s)
		               : -1;
	case VMD_PF_FS:
		return in_list(s, filesystems, ELEMENTSOF(filesystems))
		               ? copy_str(req->fs, sizeof(req->fs), s)
		               : -1;
	case VMD_PF_LABEL:
		return valid_token(s, "._-", sizeof(req->label) - 1)
		               ? copy_str(req->label, sizeof(req->label), s)
		               : -1;
	case VMD_PF_KEY_ID:
		return vmd_valid_uuid(s)
		               ? copy_str(req->key_id, sizeof(req->key_id), s)
		               : -1;
	case VMD_PF_CLEAR:
		return vmd_priv_clear_parse(s, &req->volume_clear);
	default:
		return -1;
	}
}

static int set_u64(struct vmd_priv_request *req, unsigned bit, int64_t v)
{
	if (v < 0)
		return -1;
	if (bit == VMD_PF_SIZE) {
		if (v == 0 || (uint64_t)v > VMD_PRIV_SIZE_MAX)
			return -1;
		req->size = (uint64_t)v;
		return 0;
	}
	if (bit == VMD_PF_CLEAR_SIZE) {
		if ((uint64_t)v > (VMD_PRIV_SIZE_MAX >> 20))
			return -1;
		req->volume_clear_size = (uint64_t)v;
		return 0;
	}
	return -1;
}

static int check_fields(const struct vmd_priv_request *req,
                        struct vmd_error *err)
{
	unsigned req_f = vmd_priv_fields_required(req->op);
	unsigned allowed = vmd_priv_fields_allowed(req->op);
	unsigned extra = req->fields & ~allowed;
	unsigned missing = req_f & ~req->fields;

	if (extra)
		return bad(err, VMD_E_INVAL, "field not taken by this op",
		           field_name(extra & -extra));
	if (missing)
		return bad(err, VMD_E_INVAL, "missing field",
		           field_name(missing & -missing));
	/* A base is read as the format named with it, never probed. */
	if (!(req->fields & VMD_PF_BASE) != !(req->fields & VMD_PF_FORMAT))
		return bad(err, VMD_E_INVAL, "missing field",
		           req->fields & VMD_PF_BASE ? "format" : "base");
	return 0;
}

static int parse_member(struct vmd_priv_request *req, const char *key,
                        struct json_object *val, bool *have_op,
                        struct vmd_error *err)
{
	const struct field_def *f;
	enum json_type t = json_object_get_type(val);

	if (strcmp(key, "op") == 0) {
		const char *s;

		if (t != json_type_string)
			return bad(err, VMD_E_INVAL, "wrong type for", "op");
		s = vmd_json_str(val, NULL);
		if (!s || vmd_priv_op_parse(s, &req->op) < 0)
			return bad(err, VMD_E_UNSUPPORTED, "unknown op", NULL);
		*have_op = true;
		return 0;
	}
	f = field_lookup(key);
	if (!f)
		return bad(err, VMD_E_INVAL, "unknown field", NULL);
	switch (f->type) {
	case FT_STRING: {
		const char *s;

		if (t != json_type_string)
			return bad(err, VMD_E_INVAL, "wrong type for", f->name);
		s = vmd_json_str(val, NULL);
		if (!s || set_string(req, f->bit, s) < 0)
			return bad(err, VMD_E_INVAL, "value not allowed for",
			           f->name);
		break;
	}
	case FT_U64:
		if (t != json_type_int)
			return bad(err, VMD_E_INVAL, "wrong type for", f->name);
		errno = 0;
		if (set_u64(req, f->bit, json_object_get_int64(val)) < 0 ||
		    errno != 0)
			return bad(err, VMD_E_INVAL, "value not allowed for",
			           f->name);
		break;
	case FT_BOOL:
		if (t != json_type_boolean)
			return bad(err, VMD_E_INVAL, "wrong type for", f->name);
		req->sparse = json_object_get_boolean(val);
		break;
	}
	req->fields |= f->bit;
	return 0;
}

int vmd_priv_request_parse(const char *line, size_t len,
                           struct vmd_priv_request *req,
                           struct vmd_error *err)
{
	_cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
	_cleanup_(json_object_putp) struct json_object *obj = NULL;
	struct vmd_priv_request r;
	bool have_op = false;
	int rc;

	memset(req, 0, sizeof(*req));
	memset(&r, 0, sizeof(r));
	if (!line)
		return bad(err, VMD_E_INVAL, "empty", NULL);
	if (len >= VMD_PRIV_LINE_MAX)
		return bad(err, VMD_E_INVAL, "line too long", NULL);
	/* A raw NUL, or an escaped one: json-c would cut a member name at
	 * it and let a second member of that name replace the first. */
	if (vmd_json_text_has_nul(line, len))
		return bad(err, VMD_E_INVAL, "NUL byte in the line", NULL);
	rc = vmd_jsonc_load(err); /* loaded on first use (jsonc_lazy.h) */
	if (rc < 0)
		return rc;
	/* A flat object is depth 1; 2 lets the tokener see (and us refuse)
	 * one nested value without recursing further. */
	tok = json_tokener_new_ex(2);
	if (!tok)
		return vmd_error_set(err, VMD_E_NOMEM, "request: out of memory",
		                     "json_tokener_new_ex failed");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	obj = json_tokener_parse_ex(tok, line, (int)len);
	if (!obj || json_tokener_get_error(tok) != json_tokener_success)
		return bad(err, VMD_E_INVAL, "not valid JSON", NULL);
	if ((size_t)json_tokener_get_parse_end(tok) != len) {
		/* Blanks after the object are fine, anything else is not. */
		for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
			if (!strchr(" \t\r", line[i]))
				return bad(err, VMD_E_INVAL,
				           "bytes after the JSON object", NULL);
	}
	if (!json_object_is_type(obj, json_type_object))
		return bad(err, VMD_E_INVAL, "not a JSON object", NULL);
	json_object_object_foreach(obj, key, val) {
		rc = parse_member(&r, key, val, &have_op, err);
		if (rc < 0)
			return rc;
	}
	if (!have_op)
		return bad(err, VMD_E_INVAL, "missing field", "op");
	rc = check_fields(&r, err);
	if (rc < 0)
		return rc;
	*req = r;
	return 0;
}

int vmd_priv_request_check(const struct vmd_priv_request *req,
                           struct vmd_error *err)
{
	struct vmd_priv_request r;
	char *json = NULL;
	int rc;

	/* The same schema as the wire: serialise and parse back. */
	rc = vmd_priv_request_to_json(req, &json, err);
	if (rc < 0)
		return rc;
	rc = vmd_priv_request_parse(json, strlen(json), &r, err);
	free(json);
	return rc;
}

static int add(struct json_object *o, const char *k, struct json_object *v)
{
	if (!v)
		return -1;
	if (json_object_object_add(o, k, v) < 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

int vmd_priv_request_to_json(const struct vmd_priv_request *req, char **out,
                             struct vmd_error *err)
{
	_cleanup_(json_object_putp) struct json_object *o = NULL;
	unsigned f = req->fields;
	const char *s;
	int bad_add = 0;

	*out = NULL;
	if ((unsigned)req->op >= VMD_PRIV_OP_COUNT)
		return bad(err, VMD_E_UNSUPPORTED, "unknown op", NULL);
	if (vmd_jsonc_load(err) < 0) /* loaded on first use */
		return VMD_E_UNSUPPORTED;
	o = json_object_new_object();
	if (!o)
		return vmd_error_set(err, VMD_E_NOMEM, "request: out of memory",
		                     "json_object_new_object failed");
	bad_add |= add(o, "op", json_object_new_string(op_names[req->op]));
	if (f & VMD_PF_VG)
		bad_add |= add(o, "vg", json_object_new_string(req->vg));
	if (f & VMD_PF_LV)
		bad_add |= add(o, "lv", json_object_new_string(req->lv));
	if (f & VMD_PF_SIZE)
		bad_add |= add(o, "size", json_object_new_int64(
		                                  req->size > INT64_MAX
		                                          ? -1
		                                          : (int64_t)req->size));
	if (f & VMD_PF_SPARSE)
		bad_add |= add(o, "sparse", json_object_new_boolean(req->sparse));
	if (f & VMD_PF_BASE)
		bad_add |= add(o, "base", json_object_new_string(req->base));
	if (f & VMD_PF_FORMAT)
		bad_add |= add(o, "format", json_object_new_string(req->format));
	if (f & VMD_PF_FS)
		bad_add |= add(o, "fs", json_object_new_string(req->fs));
	if (f & VMD_PF_LABEL)
		bad_add |= add(o, "label", json_object_new_string(req->label));
	if (f & VMD_PF_KEY_ID)
		bad_add |= add(o, "key_id", json_object_new_string(req->key_id));
	if (f & VMD_PF_CLEAR)
		bad_add |= add(o, "volume_clear",
		               json_object_new_string(
		                       (unsigned)req->volume_clear <
		                                       ELEMENTSOF(clear_names)
		                               ? clear_names[req->volume_clear]
		                               : "?"));
	if (f & VMD_PF_CLEAR_SIZE)
		bad_add |= add(o, "volume_clear_size",
		               json_object_new_int64(
		                       req->volume_clear_size > INT64_MAX
		                               ? -1
		                               : (int64_t)req->volume_clear_size));
	if (bad_add)
		return vmd_error_set(err, VMD_E_NOMEM, "request: out of memory",
		                     "building the request JSON failed");
	s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	*out = s ? strdup(s) : NULL;
	if (!*out)
		return vmd_error_set(err, VMD_E_NOMEM, "request: out of memory",
		                     "serialising the request failed");
	return 0;
}

void vmd_priv_request_target(const struct vmd_priv_request *req, char *buf,
                             size_t bufsz)
{
	if ((req->fields & VMD_PF_VG) && (req->fields & VMD_PF_LV))
		snprintf(buf, bufsz, "%s/%s", req->vg, req->lv);
	else if (req->fields & VMD_PF_VG)
		snprintf(buf, bufsz, "%s", req->vg);
	else
		snprintf(buf, bufsz, "-");
}

/* ---- LV names ---- */

bool vmd_lvm_name_is_disk(const char *lv)
{
	char disk[VMD_DISK_NAME_MAX + 1];
	char instance[VMD_UUID_LEN + 1];
	size_t n = 0;
	const char *p;

	if (strlen(lv) <= VMD_UUID_LEN || lv[VMD_UUID_LEN] != '_')
		return false;
	memcpy(instance, lv, VMD_UUID_LEN);
	instance[VMD_UUID_LEN] = '\0';
	if (!vmd_valid_uuid(instance))
		return false;
	/* The disk name back from its escaped form: "__" is one '_', a lone
	 * '_' no name of ours holds. */
	for (p = lv + VMD_UUID_LEN + 1; *p; p++) {
		if (*p == '_' && *++p != '_')
			return false;
		if (n == VMD_DISK_NAME_MAX)
			return false;
		disk[n++] = *p;
	}
	disk[n] = '\0';
	return vmd_valid_disk_name(disk);
}

/* ---- client ---- */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static enum vmd_errc errc_of_name(const char *name)
{
	for (int c = VMD_E_INVAL; c >= VMD_E_CORRUPT; c--)
		if (strcmp(vmd_errc_name((enum vmd_errc)c), name) == 0)
			return (enum vmd_errc)c;
	return VMD_E_EXTERNAL;
}

/* Printable ASCII only: a reply's message becomes our public message. */
static void clean_text(char *dst, size_t dstsz, const char *s)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < dstsz; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	dst[i] = '\0';
}

int vmd_priv_reply_parse(const char *line, size_t len,
                         struct vmd_priv_reply *rep, struct vmd_error *err)
{
	_cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
	_cleanup_(json_object_putp) struct json_object *obj = NULL;
	struct json_object *ok, *v;
	char msg[VMD_ERROR_MSG_MAX];
	const char *text;
	enum vmd_errc code = VMD_E_EXTERNAL;

	memset(rep, 0, sizeof(*rep));
	rep->fd = -1;
	if (vmd_jsonc_load(err) < 0) /* loaded on first use */
		return VMD_E_UNSUPPORTED;
	tok = json_tokener_new_ex(2);
	if (!tok)
		return vmd_error_set(err, VMD_E_NOMEM, "vmdiskd: out of memory",
		                     "json_tokener_new_ex failed");
	if (len < VMD_PRIV_LINE_MAX && !vmd_json_text_has_nul(line, len))
		obj = json_tokener_parse_ex(tok, line, (int)len);
	if (!obj || !json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "ok", &ok) ||
	    !json_object_is_type(ok, json_type_boolean))
		return vmd_error_set(err, VMD_E_EXTERNAL,
		                     "vmdiskd: malformed reply",
		                     "reply of %zu bytes is not {\"ok\":...}", len);
	if (json_object_get_boolean(ok)) {
		if (json_object_object_get_ex(obj, "path", &v) &&
		    json_object_is_type(v, json_type_string)) {
			const char *p = vmd_json_str(v, NULL);

			if (!p || strlen(p) >= sizeof(rep->path) || p[0] != '/' ||
			    strstr(p, ".."))
				return vmd_error_set(
				        err, VMD_E_EXTERNAL,
				        "vmdiskd: malformed reply",
				        "device path in the reply refused");
			clean_text(rep->path, sizeof(rep->path), p);
		}
		if (json_object_object_get_ex(obj, "size", &v) &&
		    json_object_is_type(v, json_type_int) &&
		    json_object_get_int64(v) > 0)
			rep->size = (uint64_t)json_object_get_int64(v);
		if (json_object_object_get_ex(obj, "lv_size", &v) &&
		    json_object_is_type(v, json_type_int) &&
		    json_object_get_int64(v) > 0)
			rep->lv_size = (uint64_t)json_object_get_int64(v);
		if (json_object_object_get_ex(obj, "sparse", &v) &&
		    json_object_is_type(v, json_type_boolean))
			rep->sparse = json_object_get_boolean(v);
		return 0;
	}
	if ((text = vmd_json_string(obj, "code", NULL)) != NULL)
		code = errc_of_name(text);
	snprintf(msg, sizeof(msg), "vmdiskd: refused without a reason");
	if ((text = vmd_json_string(obj, "error", NULL)) != NULL)
		clean_text(msg, sizeof(msg), text);
	return vmd_error_set(err, code, msg, "vmdiskd answered: %s", msg);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* recv() that also takes a descriptor passed with SCM_RIGHTS: the first
 * one is kept in *passed, any other closed at once. */
static ssize_t recv_with_fd(int fd, char *buf, size_t len, int *passed)
{
	union {
		struct cmsghdr align;
		char bytes[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = ctl.bytes,
	                     .msg_controllen = sizeof(ctl.bytes)};
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

	if (n < 0)
		return n;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int got;

			memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*passed < 0)
				*passed = got;
			else
				close(got);
		}
	}
	return n;
}

/* The request as the line the wire carries, newline included (in *out,
 * its length in *len; the NUL after it is not sent). */
static int request_line(const struct vmd_priv_request *req, char **out,
                        size_t *len, struct vmd_error *err)
{
	_cleanup_(freep) char *json = NULL;
	size_t jlen;
	int rc;

	rc = vmd_priv_request_to_json(req, &json, err);
	if (rc < 0)
		return rc;
	jlen = strlen(json);
	if (jlen + 1 >= VMD_PRIV_LINE_MAX)
		return bad(err, VMD_E_INVAL, "line too long", NULL);
	json[jlen] = '\n'; /* the NUL is not sent */
	*len = jlen + 1;
	*out = TAKE_PTR(json);
	return 0;
}

/* Read the one reply line (and, for lvm_open_read, its descriptor) from
 * a connected socket until `deadline`; what vmd_priv_call and the stdio
 * helper's caller share. `peer` names the other side for the detail. */
static int read_reply(int fd, const struct vmd_priv_request *req,
                      long long deadline, const char *peer,
                      struct vmd_priv_reply *rep, bool *answered,
                      struct vmd_error *err)
{
	_cleanup_(closep) int passed = -1;
	char buf[VMD_PRIV_LINE_MAX + 1];
	size_t got = 0;
	char *nl = NULL;
	struct stat st;
	int rc;

	while (!nl) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - now_ms();
		ssize_t n;

		if (got >= VMD_PRIV_LINE_MAX)
			return vmd_error_set(err, VMD_E_EXTERNAL,
			                     "vmdiskd: reply too long",
			                     "no newline in %zu bytes", got);
		if (left <= 0)
			return vmd_error_set(err, VMD_E_EXTERNAL,
			                     "vmdiskd: no reply in time",
			                     "waited %d ms",
			                     VMD_PRIV_CALL_TIMEOUT_MS);
		rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "vmdiskd: reading the reply",
			                           "poll");
		if (rc == 0)
			continue;
		n = recv_with_fd(fd, buf + got, VMD_PRIV_LINE_MAX - got,
		                 &passed);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return vmd_error_set(err, VMD_E_EXTERNAL,
			                     "vmdiskd: connection closed without "
			                     "a reply",
			                     "%s: recv returned %zd after %zu "
			                     "bytes",
			                     peer, n, got);
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
	}
	*answered = true;
	rc = vmd_priv_reply_parse(buf, (size_t)(nl - buf), rep, err);
	if (rc < 0 || req->op != VMD_PRIV_LVM_OPEN_READ)
		return rc;
	/* The one op that answers with a descriptor: a block device. */
	if (passed < 0 || fstat(passed, &st) < 0 || !S_ISBLK(st.st_mode))
		return vmd_error_set(err, VMD_E_EXTERNAL,
		                     "vmdiskd: no device in the reply",
		                     "lvm_open_read answered without a block "
		                     "device descriptor");
	rep->fd = TAKE_FD(passed);
	return 0;
}

int vmd_priv_call(const struct vmd_config *cfg,
                  const struct vmd_priv_request *req,
                  struct vmd_priv_reply *rep, struct vmd_error *err)
{
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) char *line = NULL;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	long long deadline = now_ms() + VMD_PRIV_CALL_TIMEOUT_MS;
	bool answered = false;
	size_t len = 0;
	int rc;

	memset(rep, 0, sizeof(*rep));
	rep->fd = -1;
	rc = request_line(req, &line, &len, err);
	if (rc < 0)
		return rc;
	if (strlen(cfg->vmdiskd_socket) >= sizeof(sa.sun_path))
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: socket path too long",
		                     "vmdiskd_socket is %zu bytes",
		                     strlen(cfg->vmdiskd_socket));
	memcpy(sa.sun_path, cfg->vmdiskd_socket,
	       strlen(cfg->vmdiskd_socket) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: socket", "socket(AF_UNIX)");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return vmd_error_set_errno(err, VMD_E_EXTERNAL, errno,
		                           "vmdiskd: cannot connect",
		                           "connect %s", cfg->vmdiskd_socket);
	/* A daemon that refuses at once (busy, a caller it grants nothing)
	 * answers and closes before reading: its reply is still there. */
	if (write_all(fd, line, len) < 0 && errno != EPIPE &&
	    errno != ECONNRESET)
		return vmd_error_set_errno(err, VMD_E_EXTERNAL, errno,
		                           "vmdiskd: sending the request failed",
		                           "send to %s", cfg->vmdiskd_socket);
	return read_reply(fd, req, deadline, cfg->vmdiskd_socket, rep,
	                  &answered, err);
}

/* ---- root: the one-shot helper ---- */

const char *vmd_priv_helper_path(void)
{
#if VMD_FAULT_INJECTION
	/* Test builds only: the build tree's vmdiskd (tests/meson.build,
	 * tests/suite/vm/run.sh). Release builds run the installed one. */
	const char *env = getenv("VMDISK_VMDISKD");

	if (env && env[0] == '/')
		return env;
#endif
	return VMD_VMDISKD_PATH;
}

static enum vmd_log_level level_of_word(const char *w, size_t n, bool *ok)
{
	static const struct {
		const char *name;
		enum vmd_log_level level;
	} words[] = {{"error", VMD_LOG_ERROR},
	             {"warning", VMD_LOG_WARNING},
	             {"info", VMD_LOG_INFO},
	             {"debug", VMD_LOG_DEBUG}};

	for (size_t i = 0; i < ELEMENTSOF(words); i++) {
		if (strlen(words[i].name) == n &&
		    memcmp(words[i].name, w, n) == 0) {
			*ok = true;
			return words[i].level;
		}
	}
	*ok = false;
	return VMD_LOG_WARNING;
}

/* The helper logs to its stderr ("vmdiskd: LEVEL: text", at our level);
 * each line goes on into our own log at its level, so a root caller sees
 * the handlers' lines where it saw them when they ran in-process. Any
 * other line (a crash report) goes on as a warning. */
static void forward_log(const char *text, size_t len)
{
	static const char ident[] = "vmdiskd: ";
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *colon;
		enum vmd_log_level level = VMD_LOG_WARNING;
		bool known = false;

		if (n > sizeof(ident) - 1 &&
		    memcmp(p, ident, sizeof(ident) - 1) == 0 &&
		    (colon = memchr(p + sizeof(ident) - 1, ':',
		                    n - (sizeof(ident) - 1))) != NULL &&
		    colon + 1 < p + n && colon[1] == ' ') {
			level = level_of_word(p + sizeof(ident) - 1,
			                      (size_t)(colon - p) -
			                              (sizeof(ident) - 1),
			                      &known);
		}
		if (known)
			vmd_log(level, "%.*s", (int)(p + n - (colon + 2)),
			        colon + 2);
		else if (n > 0)
			vmd_log_warning("vmdiskd: %.*s", (int)n, p);
		p += n + (nl ? 1 : 0);
	}
}

/* The frame `vmdiskd --stdio` reads: header line, configuration text
 * (ours, logging to its stderr at our level), request line. */
static int stdio_frame(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req,
                       struct vmd_buf *frame, struct vmd_error *err)
{
	_cleanup_(freep) struct vmd_config *copy = NULL;
	_cleanup_(freep) char *text = NULL;
	_cleanup_(freep) char *line = NULL;
	size_t len = 0;
	int rc;

	copy = malloc(sizeof(*copy));
	if (!copy)
		return vmd_error_set(err, VMD_E_NOMEM, "vmdiskd: out of memory",
		                     "config copy");
	*copy = *cfg;
	copy->log_target = VMD_LOG_TO_STDERR;
	copy->log_level = vmd_log_get_level();
	rc = vmd_config_to_text(copy, &text, err);
	if (rc < 0)
		return rc;
	if (strlen(text) > VMD_PRIV_STDIO_CONFIG_MAX)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: configuration too large",
		                     "%zu bytes of configuration text",
		                     strlen(text));
	rc = request_line(req, &line, &len, err);
	if (rc < 0)
		return rc;
	vmd_buf_printf(frame, "%s %zu\n", VMD_PRIV_STDIO_MAGIC, strlen(text));
	vmd_buf_puts(frame, text);
	vmd_buf_append(frame, line, len);
	if (frame->failed)
		return vmd_error_set(err, VMD_E_NOMEM, "vmdiskd: out of memory",
		                     "stdio frame");
	return 0;
}

/*
 * As root: start `vmdiskd --stdio` with one end of a socketpair as its
 * stdin and stdout. The whole frame is written before it starts (the
 * socket holds it: a few KiB) and the reply read after it ended (the
 * socket holds that too, with a passed descriptor), so the runner's one
 * synchronous call is all it takes.
 */
static int call_helper(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req,
                       struct vmd_priv_reply *rep, struct vmd_error *err)
{
	_cleanup_(vmd_buf_free) struct vmd_buf frame = VMD_BUF_INIT;
	_cleanup_(closep) int ours = -1;
	_cleanup_(closep) int theirs = -1;
	struct vmd_run_result res = {0};
	struct vmd_error run_err = VMD_ERROR_INIT;
	const char *path = vmd_priv_helper_path();
	const char *argv[] = {path, "--stdio", NULL};
	struct vmd_run_opts opts = {.timeout_ms = VMD_PRIV_CALL_TIMEOUT_MS,
	                            .capture_max = 1 << 20};
	bool answered = false;
	int sv[2];
	ssize_t n;
	int rc, run_rc;
#if VMD_FAULT_INJECTION
	/* Test builds: the fault points are in the handlers, which run in
	 * the helper now; its fixed environment carries ours on. */
	char fault_env[256], trace_env[PATH_MAX + 32];
	char fault_trace_env[PATH_MAX + 32];
	const char *extra_env[4] = {NULL, NULL, NULL, NULL};
	size_t n_env = 0;
	const char *fault = getenv("VMDISK_FAULT");
	const char *trace = getenv("VMDISK_ERROR_TRACE");
	const char *fault_trace = getenv("VMDISK_FAULT_TRACE");

	if (fault && snprintf(fault_env, sizeof(fault_env), "VMDISK_FAULT=%s",
	                      fault) < (int)sizeof(fault_env))
		extra_env[n_env++] = fault_env;
	/* The points the helper reaches go to the same trace, so that a
	 * crash test learns them (tests/suite/reliability/vmcrash). */
	if (fault_trace &&
	    snprintf(fault_trace_env, sizeof(fault_trace_env),
	             "VMDISK_FAULT_TRACE=%s",
	             fault_trace) < (int)sizeof(fault_trace_env))
		extra_env[n_env++] = fault_trace_env;
	/* ... and the error trace (lib/core/error.c), so the helper's
	 * messages are checked too. */
	if (trace && snprintf(trace_env, sizeof(trace_env),
	                      "VMDISK_ERROR_TRACE=%s",
	                      trace) < (int)sizeof(trace_env))
		extra_env[n_env++] = trace_env;
	if (n_env)
		opts.extra_env = extra_env;
#endif

	rc = stdio_frame(cfg, req, &frame, err);
	if (rc < 0)
		return rc;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: socket", "socketpair");
	ours = sv[0];
	theirs = sv[1];
	/* The runner wants it above 2 (it becomes the child's 0 and 1). */
	if (theirs <= 2) {
		int moved = fcntl(theirs, F_DUPFD_CLOEXEC, 3);

		if (moved < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "vmdiskd: socket",
			                           "F_DUPFD_CLOEXEC");
		close(theirs);
		theirs = moved;
	}
	n = send(ours, frame.data, frame.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 || (size_t)n != frame.len)
		return vmd_error_set_errno(err, VMD_E_IO, n < 0 ? errno : EMSGSIZE,
		                           "vmdiskd: sending the request failed",
		                           "%zu-byte stdio frame", frame.len);
	shutdown(ours, SHUT_WR);
	opts.stdio_fd = theirs;
	run_rc = vmd_run("vmdiskd", argv, &opts, &res, &run_err);
	close(theirs);
	theirs = -1;
	if (res.err)
		forward_log(res.err, res.err_len);
	vmd_run_result_free(&res);
	/* A reply that went out is the answer, however the helper ended;
	 * without one, how it ended is. */
	rc = read_reply(ours, req, now_ms() + 1000, path, rep, &answered, err);
	if (answered || run_rc == 0)
		return rc;
	if (err)
		*err = run_err;
	return run_rc;
}

int vmd_priv_run(const struct vmd_config *cfg,
                 const struct vmd_priv_request *req,
                 struct vmd_priv_reply *rep, struct vmd_error *err)
{
	int rc;

	memset(rep, 0, sizeof(*rep));
	rep->fd = -1;
	if (geteuid() != 0)
		return vmd_priv_call(cfg, req, rep, err);
	/* Checked here too: a request the schema refuses starts nothing. */
	rc = vmd_priv_request_check(req, err);
	if (rc < 0)
		return rc;
	return call_helper(cfg, req, rep, err);
}
