/*
 * Encryption keys for ephemeral storage, from a key provider.
 *
 * key_manager = file:     key_file_dir/<KEY UUID>, one raw key per file: a
 *                         regular file (no symlink), owned by root (or the
 *                         effective uid), mode exactly 0600, 16..1024 bytes.
 *                         The bytes are the key as they are (a trailing
 *                         newline is part of it).
 * key_manager = barbican: GET <barbican_endpoint>/v1/secrets/UUID/payload
 *                         (Accept: application/octet-stream), the token from
 *                         barbican_token_file (0600, same rules) sent as
 *                         X-Auth-Token, barbican_project_id (if set) as
 *                         X-Project-Id.
 *
 * A key lives only in mlock'ed memory, is registered with the log redaction
 * (raw, without its trailing newline, and as hex) while it is alive, and is
 * wiped on vmd_key_free. Errors name the step, never the key id (which is
 * itself redacted for the duration of vmd_key_get) nor the key or token.
 */
#ifndef VMDISK_KEYS_H
#define VMDISK_KEYS_H

#include <stddef.h>

#include <vmdisk/config.h>
#include <vmdisk/error.h>

#include "cleanup.h"

#define VMD_KEY_MIN 16
#define VMD_KEY_MAX 1024

struct vmd_secret_key {
	size_t len;
	unsigned char bytes[VMD_KEY_MAX];
	/* Registered redaction strings; "" when not registered. */
	char raw[VMD_KEY_MAX + 1];
	char trimmed[VMD_KEY_MAX + 1];
	char hex[2 * VMD_KEY_MAX + 1];
	size_t map_len; /* the mlock'ed mapping this struct lives in */
};

int vmd_key_get(const struct vmd_config *cfg, const char *key_id,
                struct vmd_secret_key **out, struct vmd_error *err);

/* Unregister, wipe, munlock and unmap; NULL is fine. */
void vmd_key_free(struct vmd_secret_key *key);
/* vmd_key_freep, for _cleanup_(vmd_key_freep). */
DEFINE_CLEANUP_FUNC(struct vmd_secret_key *, vmd_key_free)

#endif
