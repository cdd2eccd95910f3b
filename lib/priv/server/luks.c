/*
 * LUKS2 format, key check, open and close over libcryptsetup (see
 * luks.h). libcryptsetup's own log goes to ours at debug level (it
 * never prints passphrases); its errors become details of our errors.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libcryptsetup.h>

#include "cleanup.h"
#include "cryptsetup_lazy.h"

#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "luks.h"

static void on_crypt_log(int level, const char *msg, void *usrptr)
{
	size_t n = strlen(msg);

	(void)usrptr;
	while (n > 0 && msg[n - 1] == '\n')
		n--;
	vmd_log(level == CRYPT_LOG_ERROR ? VMD_LOG_WARNING : VMD_LOG_DEBUG,
	        "libcryptsetup: %.*s", (int)n, msg);
}

/* crypt_freep, for _cleanup_ (crypt_free is the lazily loaded one). */
DEFINE_CLEANUP_FUNC(struct crypt_device *, crypt_free)

static int crypt_error(struct vmd_error *err, int rc, const char *msg,
                       const char *what, const char *device)
{
	return vmd_error_set(err, rc == -ENOMEM ? VMD_E_NOMEM : VMD_E_EXTERNAL,
	                     msg, "%s %s: %s", what, device, strerror(-rc));
}

static int init_device(struct crypt_device **cd, const char *device,
                       const char *step, struct vmd_error *err)
{
	int rc = vmd_cryptsetup_load(err);

	if (rc < 0)
		return rc;
	rc = crypt_init(cd, device);

	if (rc < 0) {
		*cd = NULL;
		return crypt_error(err, rc, step, "crypt_init", device);
	}
	crypt_set_log_callback(*cd, on_crypt_log, NULL);
	return 0;
}

/* "aes-xts-plain64" -> "aes" + "xts-plain64". */
static int split_cipher(const char *spec, char *cipher, size_t csz,
                        char *mode, size_t msz, struct vmd_error *err)
{
	const char *dash = strchr(spec, '-');

	if (!dash || dash == spec || !dash[1] || (size_t)(dash - spec) >= csz ||
	    strlen(dash + 1) >= msz)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "luks: bad ephemeral_storage_encryption_cipher",
		                     "cipher spec '%s' is not cipher-mode", spec);
	memcpy(cipher, spec, (size_t)(dash - spec));
	cipher[dash - spec] = '\0';
	snprintf(mode, msz, "%s", dash + 1);
	return 0;
}

int vmd_luks_format(const struct vmd_config *cfg, const char *device,
                    const struct vmd_secret_key *key, struct vmd_error *err)
{
	_cleanup_(crypt_freep) struct crypt_device *cd = NULL;
	struct crypt_pbkdf_type pbkdf = {
		.type = CRYPT_KDF_PBKDF2,
		.hash = "sha256",
		.time_ms = 100,
	};
	struct crypt_params_luks2 params = {.sector_size = 512};
	char cipher[32], mode[48];
	uint32_t bits = cfg->ephemeral_storage_encryption_key_size;
	int rc;

	if (!key || key->len < VMD_KEY_MIN)
		return vmd_error_set(err, VMD_E_INVAL, "luks: format: no key",
		                     "no key or a key too short");
	if (bits == 0 || bits % 8 != 0)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "luks: bad ephemeral_storage_encryption_key_size",
		                     "%u bits is not a whole number of bytes",
		                     bits);
	rc = split_cipher(cfg->ephemeral_storage_encryption_cipher, cipher,
	                  sizeof(cipher), mode, sizeof(mode), err);
	if (rc < 0)
		return rc;
	rc = init_device(&cd, device, "luks: format: cannot open the device",
	                 err);
	if (rc < 0)
		return rc;
	rc = crypt_set_pbkdf_type(cd, &pbkdf);
	if (rc < 0)
		return crypt_error(err, rc, "luks: format: bad key derivation",
		                   "crypt_set_pbkdf_type", device);
	rc = crypt_format(cd, CRYPT_LUKS2, cipher, mode, NULL, NULL, bits / 8,
	                  &params);
	if (rc < 0)
		return crypt_error(err, rc, "luks: format failed",
		                   "crypt_format", device);
	rc = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, NULL, 0,
	                                     (const char *)key->bytes,
	                                     key->len);
	if (rc < 0)
		return crypt_error(err, rc, "luks: format: adding the key failed",
		                   "crypt_keyslot_add_by_volume_key", device);
	vmd_log_info("luks: formatted %s as LUKS2 (%s, %u bits)", device,
	             cfg->ephemeral_storage_encryption_cipher, bits);
	return 0;
}

static int load(struct crypt_device **cd, const char *device,
                const char *step, struct vmd_error *err)
{
	int rc = init_device(cd, device, step, err);

	if (rc < 0)
		return rc;
	rc = crypt_load(*cd, CRYPT_LUKS2, NULL);
	if (rc < 0)
		return vmd_error_set(err, VMD_E_CORRUPT, step,
		                     "crypt_load %s: no LUKS2 header (%s)",
		                     device, strerror(-rc));
	return 0;
}

int vmd_luks_check_key(const char *device, const struct vmd_secret_key *key,
                       struct vmd_error *err)
{
	_cleanup_(crypt_freep) struct crypt_device *cd = NULL;
	int rc = load(&cd, device, "luks: no LUKS2 header", err);

	if (rc < 0)
		return rc;
	rc = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT,
	                                  (const char *)key->bytes, key->len,
	                                  0);
	if (rc < 0)
		return vmd_error_set(err, rc == -EPERM ? VMD_E_REFUSED
		                                       : VMD_E_EXTERNAL,
		                     "luks: the key does not open the volume",
		                     "crypt_activate_by_passphrase %s: %s", device,
		                     strerror(-rc));
	return 0;
}

#define MAPPED_MAX 160

static int map_name(const char *name, char *out, size_t outsz,
                    struct vmd_error *err)
{
	if (!name || !vmd_valid_file_token(name) ||
	    strlen(name) + sizeof(VMD_LUKS_SUFFIX) > outsz)
		return vmd_error_set(err, VMD_E_INVAL, "luks: bad mapping name",
		                     "name is not a file token");
	snprintf(out, outsz, "%s%s", name, VMD_LUKS_SUFFIX);
	return 0;
}

int vmd_luks_mapping_of(const char *name, const char *device, char *path,
                        size_t pathsz, struct vmd_error *err)
{
	_cleanup_(crypt_freep) struct crypt_device *cd = NULL;
	char mapped[MAPPED_MAX];
	struct stat st, dev_st, under_st;
	const char *type, *under;
	int rc = map_name(name, mapped, sizeof(mapped), err);

	if (rc < 0)
		return rc;
	if (snprintf(path, pathsz, "/dev/mapper/%s", mapped) >= (int)pathsz)
		return vmd_error_set(err, VMD_E_INVAL, "luks: no room for the path",
		                     "path buffer of %zu bytes", pathsz);
	/* Most volumes are not encrypted: no library load for them. */
	if (stat(path, &st) < 0 || !S_ISBLK(st.st_mode))
		return 0;
	if (stat(device, &dev_st) < 0 || !S_ISBLK(dev_st.st_mode))
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "luks: volume is not a block device",
		                           "stat %s", device);
	rc = vmd_cryptsetup_load(err);
	if (rc < 0)
		return rc;
	/* The name alone proves nothing: another VG's LV, or an LV of
	 * LVM's own naming (VG "x", LV "dmcrypt"), may hold it. */
	rc = crypt_init_by_name(&cd, mapped);
	if (rc < 0)
		cd = NULL;
	type = cd ? crypt_get_type(cd) : NULL;
	under = cd ? crypt_get_device_name(cd) : NULL;
	if (!type || strcmp(type, CRYPT_LUKS2) != 0 || !under ||
	    stat(under, &under_st) < 0 || !S_ISBLK(under_st.st_mode) ||
	    under_st.st_rdev != dev_st.st_rdev) {
		vmd_log_warning("luks: %s is not the LUKS2 mapping of %s "
		                "(type %s, on %s); left alone",
		                path, device, type ? type : "none",
		                under ? under : "?");
		return 0;
	}
	return 1;
}

int vmd_luks_open(const char *device, const char *name,
                  const struct vmd_secret_key *key, char *path,
                  size_t pathsz, struct vmd_error *err)
{
	_cleanup_(crypt_freep) struct crypt_device *cd = NULL;
	char mapped[MAPPED_MAX];
	int rc;

	rc = map_name(name, mapped, sizeof(mapped), err);
	if (rc < 0)
		return rc;
	if (pathsz < sizeof("/dev/mapper/") + strlen(mapped))
		return vmd_error_set(err, VMD_E_INVAL, "luks: open: no room",
		                     "path buffer of %zu bytes", pathsz);
	rc = load(&cd, device, "luks: open: no LUKS2 header", err);
	if (rc < 0)
		return rc;
	rc = crypt_activate_by_passphrase(cd, mapped, CRYPT_ANY_SLOT,
	                                  (const char *)key->bytes, key->len,
	                                  0);
	if (rc < 0)
		return vmd_error_set(err, rc == -EPERM ? VMD_E_REFUSED
		                                       : VMD_E_EXTERNAL,
		                     "luks: open failed",
		                     "crypt_activate_by_passphrase %s as %s: %s",
		                     device, mapped, strerror(-rc));
	snprintf(path, pathsz, "/dev/mapper/%s", mapped);
	vmd_log_info("luks: opened %s as %s", device, path);
	return 0;
}

/* The mapping's name for LV `name`, with libcryptsetup loaded. */
static int mapping_of(const char *name, char mapped[MAPPED_MAX],
                      struct vmd_error *err)
{
	int rc = map_name(name, mapped, MAPPED_MAX, err);

	return rc < 0 ? rc : vmd_cryptsetup_load(err);
}

int vmd_luks_resize(const char *name, const struct vmd_secret_key *key,
                    struct vmd_error *err)
{
	_cleanup_(crypt_freep) struct crypt_device *cd = NULL;
	char mapped[MAPPED_MAX];
	int rc = mapping_of(name, mapped, err);

	if (rc < 0)
		return rc;
	rc = crypt_init_by_name(&cd, mapped);
	if (rc < 0) {
		cd = NULL;
		return crypt_error(err, rc, "luks: resize: mapping not open",
		                   "crypt_init_by_name", mapped);
	}
	crypt_set_log_callback(cd, on_crypt_log, NULL);
	/* A NULL name only verifies the key; with KEYRING_KEY it also puts
	 * the volume key where crypt_resize looks for it. */
	rc = crypt_activate_by_passphrase(cd, NULL, CRYPT_ANY_SLOT,
	                                  (const char *)key->bytes, key->len,
	                                  CRYPT_ACTIVATE_KEYRING_KEY);
	if (rc < 0)
		return vmd_error_set(err, rc == -EPERM ? VMD_E_REFUSED
		                                       : VMD_E_EXTERNAL,
		                     "luks: resize: the key does not open the "
		                     "volume",
		                     "crypt_activate_by_passphrase %s: %s", mapped,
		                     strerror(-rc));
	rc = crypt_resize(cd, mapped, 0);
	if (rc < 0)
		return crypt_error(err, rc, "luks: resize failed",
		                   "crypt_resize", mapped);
	vmd_log_info("luks: resized /dev/mapper/%s", mapped);
	return 0;
}

int vmd_luks_close(const char *name, struct vmd_error *err)
{
	_cleanup_(crypt_freep) struct crypt_device *cd = NULL;
	char mapped[MAPPED_MAX];
	int rc = mapping_of(name, mapped, err);

	if (rc < 0)
		return rc;
	if (crypt_status(NULL, mapped) == CRYPT_INACTIVE)
		return 0;
	rc = crypt_init_by_name(&cd, mapped);
	if (rc == -ENODEV)
		return 0;
	if (rc < 0) {
		cd = NULL;
		return crypt_error(err, rc, "luks: close failed",
		                   "crypt_init_by_name", mapped);
	}
	crypt_set_log_callback(cd, on_crypt_log, NULL);
	rc = crypt_deactivate(cd, mapped);
	if (rc < 0 && rc != -ENODEV)
		return crypt_error(err, rc, "luks: close failed",
		                   "crypt_deactivate", mapped);
	vmd_log_info("luks: closed /dev/mapper/%s", mapped);
	return 0;
}
