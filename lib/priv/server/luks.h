/*
 * LUKS2 on a block device (or a file) through libcryptsetup, for encrypted
 * ephemeral storage of the lvm backend.
 *
 * The key (keys.h) is the passphrase of keyslot 0; its bytes go from
 * locked memory straight into libcryptsetup, never through an argv, the
 * environment or a file. The volume key is random, made by libcryptsetup.
 * Cipher and key size come from ephemeral_storage_encryption_cipher
 * ("aes-xts-plain64" = cipher "aes", mode "xts-plain64") and
 * ephemeral_storage_encryption_key_size (bits). The keyslot uses PBKDF2
 * (sha256, 100 ms benchmarked) rather than argon2id: the passphrase is a
 * machine-made key of at least 16 bytes, where a memory-hard KDF adds no
 * strength but costs up to a GiB of memory per open on the hypervisor.
 *
 * The mapping of LV `name` is /dev/mapper/<name>-dmcrypt.
 */
#ifndef VMDISK_LUKS_H
#define VMDISK_LUKS_H

#include <stdbool.h>
#include <stddef.h>

#include <vmdisk/config.h>
#include <vmdisk/error.h>

#include "keys.h"

#define VMD_LUKS_SUFFIX "-dmcrypt"

/* Write a LUKS2 header to `device` with the key as its only passphrase. */
int vmd_luks_format(const struct vmd_config *cfg, const char *device,
                    const struct vmd_secret_key *key, struct vmd_error *err);

/* Whether `key` opens the LUKS header on `device` (no mapping is made). */
int vmd_luks_check_key(const char *device, const struct vmd_secret_key *key,
                       struct vmd_error *err);

/* Open `device` as /dev/mapper/<name>-dmcrypt; that path in `path`.
 * `name` must be a file token (validate.h). */
int vmd_luks_open(const char *device, const char *name,
                  const struct vmd_secret_key *key, char *path,
                  size_t pathsz, struct vmd_error *err);

/*
 * Whether LV `name`'s mapping, /dev/mapper/<name>-dmcrypt (its path in
 * `path`), is open on `device`: 1 when it is a LUKS2 mapping whose
 * device is `device` (same block device number), 0 when nothing is there
 * or what is there is something else (logged as a warning: never to be
 * used, resized or closed as this volume's), < 0 on error.
 */
int vmd_luks_mapping_of(const char *name, const char *device, char *path,
                        size_t pathsz, struct vmd_error *err);

/* Grow the open mapping of `name` to fill its (grown) device. LUKS2 keeps
 * the volume key in the kernel keyring, not in the dm table, so the key
 * unlocks it again first. */
int vmd_luks_resize(const char *name, const struct vmd_secret_key *key,
                    struct vmd_error *err);

/* Close /dev/mapper/<name>-dmcrypt; a mapping that is not there is fine. */
int vmd_luks_close(const char *name, struct vmd_error *err);

#endif
