/*
 * The per-instance record (see record.h), a small JSON document:
 *   {"version": 1, "disks": {"disk": {"backend": "qcow2",
 *                                     "format": "qcow2", "base": "<id>"}}}
 * Read with a size bound (the directory is ours, but a bound costs nothing)
 * and written whole through an atomic replace, both beneath the instance
 * directory's descriptor (lib/beneath.c): never through a planted link.
 */
#include <errno.h>
#include "jsonc_lazy.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beneath.h"
#include "fsutil.h"
#include "record.h"

#define RECORD_MAX_BYTES (1 << 20)

/* Load the record; a missing file yields an empty document. */
static int record_load(int instance_fd, struct json_object **doc,
                       struct vmd_error *err)
{
	_cleanup_(freep) char *buf = NULL;
	struct json_object *disks;
	size_t len;
	/* Every record read or write starts here (a write loads the record
	 * first): json-c is loaded on first use (jsonc_lazy.h). */
	int rc = vmd_jsonc_load(err);

	*doc = NULL;
	if (rc < 0)
		return rc;
	if (vmd_bread_file(instance_fd, VMD_RECORD_NAME, RECORD_MAX_BYTES, &buf,
	                   &len) < 0) {
		if (errno == ENOENT) {
			*doc = json_object_new_object();
			json_object_object_add(*doc, "version",
			                       json_object_new_int(1));
			json_object_object_add(*doc, "disks",
			                       json_object_new_object());
			return 0;
		}
		if (errno == EFBIG || errno == EINVAL)
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "instance record is damaged",
			                     "%s: not a file or too large",
			                     VMD_RECORD_NAME);
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "read instance record failed",
		                         "read %s", VMD_RECORD_NAME);
	}
	*doc = json_tokener_parse(buf);
	if (!*doc || !json_object_is_type(*doc, json_type_object) ||
	    !json_object_object_get_ex(*doc, "disks", &disks) ||
	    !json_object_is_type(disks, json_type_object)) {
		json_object_putp(doc);
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "instance record is damaged",
		                     "%s: not a valid record", VMD_RECORD_NAME);
	}
	return 0;
}

static int record_store(int instance_fd, struct json_object *doc,
                        struct vmd_error *err)
{
	const char *text = json_object_to_json_string_ext(
		doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);

	/* Every record write holds the instance lock: a temporary of the
	 * record still there is a killed writer's (issue 16, crash part). */
	vmd_tmpfile_sweep(instance_fd, VMD_RECORD_NAME);
	return vmd_write_file_atomicat(instance_fd, VMD_RECORD_NAME, text,
	                               strlen(text), 0600, true, err);
}

static struct json_object *record_disks(struct json_object *doc)
{
	struct json_object *disks = NULL;

	json_object_object_get_ex(doc, "disks", &disks);
	return disks;
}

static const char *get_string(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* One disk's entry, checked: anything unexpected is a damaged record. */
static int parse_entry(struct json_object *entry, const char *disk,
                       struct vmd_disk_record *rec, struct vmd_error *err)
{
	const char *backend = get_string(entry, "backend");
	const char *format = get_string(entry, "format");
	const char *base = get_string(entry, "base");
	const char *key_id = get_string(entry, "key_id");
	struct json_object *pending = NULL;

	memset(rec, 0, sizeof(*rec));
	if (json_object_object_get_ex(entry, "pending", &pending)) {
		if (!json_object_is_type(pending, json_type_boolean))
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "instance record is damaged",
			                     "%s: bad entry for %s",
			                     VMD_RECORD_NAME, disk);
		rec->pending = json_object_get_boolean(pending);
	}
	if (!backend || !format ||
	    vmd_parse_backend(backend, &rec->backend, NULL) < 0 ||
	    rec->backend == VMD_BACKEND_DEFAULT ||
	    vmd_parse_format(format, &rec->format, NULL) < 0 ||
	    (base && strlen(base) >= sizeof(rec->base_id)) ||
	    (key_id && !vmd_valid_uuid(key_id)))
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "instance record is damaged",
		                     "%s: bad entry for %s", VMD_RECORD_NAME,
		                     disk);
	if (base)
		memcpy(rec->base_id, base, strlen(base) + 1);
	if (key_id)
		memcpy(rec->key_id, key_id, strlen(key_id) + 1);
	return 0;
}

int vmd_record_get(int instance_fd, const char *disk,
                   struct vmd_disk_record *rec, struct vmd_error *err)
{
	_cleanup_(json_object_putp) struct json_object *doc = NULL;
	struct json_object *entry;
	int rc = record_load(instance_fd, &doc, err);

	if (rc < 0)
		return rc;
	if (!json_object_object_get_ex(record_disks(doc), disk, &entry))
		return VMD_E_NOTFOUND;
	return parse_entry(entry, disk, rec, err);
}

int vmd_record_put(int instance_fd, const char *disk,
                   const struct vmd_disk_record *rec, struct vmd_error *err)
{
	_cleanup_(json_object_putp) struct json_object *doc = NULL;
	struct json_object *entry;
	int rc = record_load(instance_fd, &doc, err);

	if (rc < 0)
		return rc;
	/* A disk's format is decided once; nothing may rewrite it. */
	if (json_object_object_get_ex(record_disks(doc), disk, NULL))
		return vmd_error_set(err, VMD_E_EXISTS, "disk already exists",
		                     "record already has %s", disk);
	entry = json_object_new_object();
	json_object_object_add(entry, "backend",
	                       json_object_new_string(
	                               vmd_backend_kind_name(rec->backend)));
	json_object_object_add(entry, "format",
	                       json_object_new_string(
	                               vmd_format_name(rec->format)));
	json_object_object_add(entry, "base",
	                       json_object_new_string(rec->base_id));
	if (rec->key_id[0])
		json_object_object_add(entry, "key_id",
		                       json_object_new_string(rec->key_id));
	if (rec->pending)
		json_object_object_add(entry, "pending",
		                       json_object_new_boolean(1));
	json_object_object_add(record_disks(doc), disk, entry);
	return record_store(instance_fd, doc, err);
}

int vmd_record_commit(int instance_fd, const char *disk,
                      struct vmd_error *err)
{
	_cleanup_(json_object_putp) struct json_object *doc = NULL;
	struct json_object *entry;
	int rc = record_load(instance_fd, &doc, err);

	if (rc < 0)
		return rc;
	if (!json_object_object_get_ex(record_disks(doc), disk, &entry))
		return vmd_error_set(err, VMD_E_NOTFOUND, "disk not found",
		                     "record has no %s", disk);
	json_object_object_del(entry, "pending");
	return record_store(instance_fd, doc, err);
}

int vmd_record_drop(int instance_fd, const char *disk,
                    struct vmd_error *err)
{
	_cleanup_(json_object_putp) struct json_object *doc = NULL;
	struct json_object *disks;
	int rc = record_load(instance_fd, &doc, err);

	if (rc < 0)
		return rc;
	disks = record_disks(doc);
	json_object_object_del(disks, disk);
	if (json_object_object_length(disks) > 0)
		return record_store(instance_fd, doc, err);
	if (vmd_bunlink(instance_fd, VMD_RECORD_NAME, 0) < 0 && errno != ENOENT)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "update instance record failed",
		                         "unlink %s", VMD_RECORD_NAME);
	return 0;
}

int vmd_record_foreach(int instance_fd,
                       void (*fn)(const char *disk,
                                  const struct vmd_disk_record *rec,
                                  void *opaque),
                       void *opaque, struct vmd_error *err)
{
	_cleanup_(json_object_putp) struct json_object *doc = NULL;
	int rc = record_load(instance_fd, &doc, err);

	if (rc < 0)
		return rc;
	json_object_object_foreach(record_disks(doc), disk, entry)
	{
		struct vmd_disk_record rec;

		/* Each entry through the same checks as a lookup. */
		rc = parse_entry(entry, disk, &rec, err);
		if (rc < 0)
			return rc;
		fn(disk, &rec, opaque);
	}
	return 0;
}
