/*
 * Fuzz target of the configuration parser (lib/config.c through
 * vmd_config_load_string: inih and the key table, no file I/O). The input
 * up to its first NUL is the file's text (the file reader refuses a NUL).
 * Rules checked on every input:
 *
 *   - the error contract (fuzz_util.h): 0, or err.code with a printable
 *     public message;
 *   - a refused text leaves the caller's config exactly as it was (the
 *     defaults here);
 *   - an accepted one gives every string field NUL-terminated inside its
 *     buffer and free of control characters, absolute paths where paths
 *     are absolute, and every enum and range inside what the key allows;
 *   - parsing is deterministic: the same text gives the same config again.
 *
 * Built as the libFuzzer target with -DVMD_FUZZER (meson.build here).
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/config.h>

#include "cleanup.h"

#include "fuzz_config.h"

#define FIELD(f) {#f, offsetof(struct vmd_config, f), \
                  sizeof(((struct vmd_config *)0)->f)}

struct str_field {
	const char *name;
	size_t offset, size;
};

static const struct str_field strings[] = {
	FIELD(instances_path), FIELD(image_cache_subdirectory_name),
	FIELD(images_volume_group), FIELD(volume_clear),
	FIELD(lvm_thin_pool), FIELD(images_rbd_pool),
	FIELD(images_rbd_ceph_conf), FIELD(rbd_user), FIELD(rbd_secret_uuid),
	FIELD(ca_file), FIELD(glance_api_servers), FIELD(glance_token_file),
	FIELD(allowed_disk_formats), FIELD(images_rbd_glance_store_pool),
	FIELD(vmdiskd_socket), FIELD(vmdiskd_policy_file),
	FIELD(vmdiskd_audit_log), FIELD(ephemeral_storage_encryption_cipher),
	FIELD(key_manager), FIELD(key_file_dir), FIELD(barbican_endpoint),
	FIELD(barbican_token_file), FIELD(barbican_project_id),
};

/* Paths that must be absolute whenever set (and these are always set). */
static const char *const absolute[] = {
	"instances_path", "vmdiskd_socket", "vmdiskd_policy_file",
	"vmdiskd_audit_log", "key_file_dir",
};
/* Paths that are absolute or empty. */
static const char *const absolute_or_empty[] = {
	"images_rbd_ceph_conf", "ca_file", "glance_token_file",
	"barbican_token_file",
};

static bool listed(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(name, list[i]) == 0)
			return true;
	return false;
}

static bool check_accepted(const struct vmd_config *c, char *why,
                           size_t whysz)
{
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		const struct str_field *f = &strings[i];
		const char *s = (const char *)c + f->offset;
		size_t len = strnlen(s, f->size);

		if (len == f->size)
			return vmd_fuzz_broken(why, whysz, "%s not terminated",
			                       f->name);
		for (size_t j = 0; j < len; j++)
			if ((unsigned char)s[j] < 0x20 || s[j] == 0x7f)
				return vmd_fuzz_broken(why, whysz,
				                       "control byte in %s",
				                       f->name);
		if (listed(f->name, absolute, sizeof(absolute) / sizeof(*absolute)) &&
		    s[0] != '/')
			return vmd_fuzz_broken(why, whysz, "%s not absolute",
			                       f->name);
		if (listed(f->name, absolute_or_empty,
		           sizeof(absolute_or_empty) / sizeof(*absolute_or_empty)) &&
		    s[0] && s[0] != '/')
			return vmd_fuzz_broken(why, whysz, "%s not absolute",
			                       f->name);
	}
	if (strstr(c->image_cache_subdirectory_name, "/") ||
	    !c->image_cache_subdirectory_name[0] ||
	    c->image_cache_subdirectory_name[0] == '.')
		return vmd_fuzz_broken(why, whysz, "cache directory name");
	if (strcmp(c->volume_clear, "none") && strcmp(c->volume_clear, "zero") &&
	    strcmp(c->volume_clear, "shred"))
		return vmd_fuzz_broken(why, whysz, "volume_clear");
	if (strcmp(c->key_manager, "file") && strcmp(c->key_manager, "barbican"))
		return vmd_fuzz_broken(why, whysz, "key_manager");
	if (c->rbd_secret_uuid[0] && !vmd_valid_uuid(c->rbd_secret_uuid))
		return vmd_fuzz_broken(why, whysz, "rbd_secret_uuid");
	if ((unsigned)c->images_type > VMD_BACKEND_PLOOP ||
	    (unsigned)c->preallocate_images > VMD_PREALLOCATE_SPACE ||
	    (unsigned)c->log_target > VMD_LOG_TO_SYSLOG ||
	    (unsigned)c->log_level > VMD_LOG_DEBUG)
		return vmd_fuzz_broken(why, whysz, "enum out of range");
	if (c->max_image_virtual_size == 0)
		return vmd_fuzz_broken(why, whysz, "max_image_virtual_size 0");
	if (c->http_connect_timeout < 1 || c->http_connect_timeout > 3600 ||
	    c->http_low_speed_time < 1 || c->http_low_speed_time > 3600 ||
	    c->http_low_speed_limit < 1 || c->http_low_speed_limit > (1u << 30) ||
	    c->http_max_redirects > 20 || c->http_retries > 10 ||
	    c->ephemeral_storage_encryption_key_size < 128 ||
	    c->ephemeral_storage_encryption_key_size > 1024)
		return vmd_fuzz_broken(why, whysz, "number out of its range");
	return true;
}

VMD_FUZZ_DECLARE_CHECK(config)
{
	static struct vmd_config defaults, cfg, again;
	struct vmd_error err = VMD_ERROR_INIT;
	_cleanup_(freep) char *text = NULL;
	int rc;

	vmd_fuzz_start("fuzz_config", why, whysz);
	text = vmd_fuzz_cstring(data, size);
	if (!text)
		return true; /* out of memory is not the parser's fault */
	vmd_config_defaults(&defaults);
	cfg = defaults;
	rc = vmd_config_load_string(&cfg, text, &err);
	if (!vmd_fuzz_error_contract(rc, &err, why, whysz))
		return false;
	if (rc < 0) {
		if (memcmp(&cfg, &defaults, sizeof(cfg)) != 0)
			return vmd_fuzz_broken(why, whysz,
			                       "a refused text changed the config");
		if (strncmp(err.msg, "config: ", 8) != 0)
			return vmd_fuzz_broken(why, whysz,
			                       "message does not name the step");
		return true;
	}
	again = defaults;
	vmd_error_clear(&err);
	rc = vmd_config_load_string(&again, text, &err);
	if (rc != 0 || memcmp(&cfg, &again, sizeof(cfg)) != 0)
		return vmd_fuzz_broken(why, whysz, "second parse differs");
	return check_accepted(&cfg, why, whysz);
}

#ifdef VMD_FUZZER
VMD_FUZZ_ENTRY(config)
#endif
