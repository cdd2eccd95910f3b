/*
 * vmdiskd's luks_format, luks_open and luks_close handlers (the
 * encryption entries of vmd_priv_ops_default, lib/privhelper.h).
 *
 * The daemon fetches the key itself from the key provider by the
 * request's key_id (lib/keys.h): a key never travels over the socket. The
 * LV's device is /dev/<vg>/<lv>, both names having passed the request
 * schema's allow-lists (no '/', no leading '.' or '-'), and it must be a
 * block device; the lvm backend may swap in a resolver that asks lvs.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <vmdisk/log.h>

#include "keys.h"
#include "luks.h"
#include "privhelper.h"

static int lv_device(const struct vmd_priv_request *req, char *path,
                     size_t pathsz, struct vmd_error *err)
{
	struct stat st;
	int n = snprintf(path, pathsz, "/dev/%s/%s", req->vg, req->lv);

	if (n < 0 || (size_t)n >= pathsz)
		return vmd_error_set(err, VMD_E_INVAL, "luks: volume name too long",
		                     "%s/%s", req->vg, req->lv);
	if (stat(path, &st) < 0)
		return vmd_error_set_errno(err, errno == ENOENT ? VMD_E_NOTFOUND
		                                                : VMD_E_IO,
		                           errno, "luks: no such volume",
		                           "stat %s", path);
	if (!S_ISBLK(st.st_mode))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "luks: not a block device",
		                     "%s is not a block device", path);
	return 0;
}

static void key_release(struct vmd_secret_key **k)
{
	vmd_key_free(*k);
}

int vmd_priv_luks_format(const struct vmd_config *cfg,
                         const struct vmd_priv_request *req,
                         struct vmd_priv_reply *rep, struct vmd_error *err)
{
	__attribute__((cleanup(key_release))) struct vmd_secret_key *key = NULL;
	char dev[VMD_NAME_MAX + VMD_PRIV_LV_MAX + 8];
	int rc;

	(void)rep;
	/* The key first: no key, nothing touched. */
	rc = vmd_key_get(cfg, req->key_id, &key, err);
	if (rc < 0)
		return rc;
	rc = lv_device(req, dev, sizeof(dev), err);
	if (rc < 0)
		return rc;
	return vmd_luks_format(cfg, dev, key, err);
}

int vmd_priv_luks_open(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req,
                       struct vmd_priv_reply *rep, struct vmd_error *err)
{
	__attribute__((cleanup(key_release))) struct vmd_secret_key *key = NULL;
	char dev[VMD_NAME_MAX + VMD_PRIV_LV_MAX + 8];
	int rc;

	rc = vmd_key_get(cfg, req->key_id, &key, err);
	if (rc < 0)
		return rc;
	rc = lv_device(req, dev, sizeof(dev), err);
	if (rc < 0)
		return rc;
	return vmd_luks_open(dev, req->lv, key, rep->path, sizeof(rep->path),
	                     err);
}

int vmd_priv_luks_close(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err)
{
	(void)cfg;
	(void)rep;
	return vmd_luks_close(req->lv, err);
}
