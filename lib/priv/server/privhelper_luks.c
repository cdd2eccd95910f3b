/*
 * vmdiskd's luks_format, luks_open and luks_close handlers (the
 * encryption entries of vmd_priv_ops_default, privhelper_server.h).
 *
 * The daemon fetches the key itself from the key provider by the
 * request's key_id (keys.h): a key never travels over the socket. The
 * volume is one the lvm handlers serve (vmd_priv_served_device: in
 * images_volume_group, listed by lvs), looked up before the key is
 * fetched, so a request for any other block device is refused before
 * anything is read or written.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <vmdisk/log.h>

#include "keys.h"
#include "luks.h"
#include "privhelper_server.h"

int vmd_priv_luks_format(const struct vmd_config *cfg,
                         const struct vmd_priv_request *req,
                         struct vmd_priv_reply *rep, struct vmd_error *err)
{
	_cleanup_(vmd_key_freep) struct vmd_secret_key *key = NULL;
	char dev[PATH_MAX];
	int rc = vmd_priv_served_device(cfg, req, dev, sizeof(dev), err);

	(void)rep;
	if (rc == 0)
		rc = vmd_key_get(cfg, req->key_id, &key, err);
	return rc < 0 ? rc : vmd_luks_format(cfg, dev, key, err);
}

int vmd_priv_luks_open(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req,
                       struct vmd_priv_reply *rep, struct vmd_error *err)
{
	_cleanup_(vmd_key_freep) struct vmd_secret_key *key = NULL;
	char dev[PATH_MAX];
	int rc = vmd_priv_served_device(cfg, req, dev, sizeof(dev), err);

	if (rc == 0)
		rc = vmd_key_get(cfg, req->key_id, &key, err);
	return rc < 0 ? rc
	              : vmd_luks_open(dev, req->lv, key, rep->path,
	                              sizeof(rep->path), err);
}

int vmd_priv_luks_close(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err)
{
	char dev[PATH_MAX], mapped[PATH_MAX];
	int rc = vmd_priv_served_device(cfg, req, dev, sizeof(dev), err);

	(void)rep;
	/* Only this volume's own mapping; none open is fine. */
	if (rc == 0)
		rc = vmd_luks_mapping_of(req->lv, dev, mapped, sizeof(mapped),
		                         err);
	return rc == 1 ? vmd_luks_close(req->lv, err) : rc;
}
