/*
 * The lvm backend: a disk is a logical volume `<instance>_<disk>` (an `_` in
 * the disk name doubled, Nova's rule) in images_volume_group: thick, or
 * with sparse_logical_volumes a thin LV in the thin pool lvm_thin_pool (the
 * modern way to over-commit; the old --virtualsize snapshot volumes are
 * not used). Sizes are rounded up to the VG's extent size.
 *
 * Every step that needs root (lvs included: it reads the devices) is a
 * request of the privileged helper's protocol, run by vmd_priv_run:
 * in-process when we are root, through vmdiskd otherwise; the steps
 * themselves are lib/lvm_volume.c. This file decides which steps and in
 * what order, and undoes a create that failed half-way: once lvm_create
 * answered, any later failure sends lvm_remove before the error returns.
 * With ephemeral_storage_encryption_enabled the disk's key id goes with
 * lvm_create (the key is fetched where the LV is made, before it is) and
 * is kept in the instance record for a later resize. Every LV it makes is
 * tagged VMD_LVM_TAG, and the steps refuse an LV without the tag or with a
 * name that is not a disk's (lib/lvm_volume.c): a host LV that shares the
 * VG is never touched, in-process or through vmdiskd.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "filedisk.h"
#include "internal.h"
#include "privhelper.h"

#define LV_NAME_MAX 127 /* lvm2's limit */

static bool lvm_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > LV_NAME_MAX || s[0] == '-' ||
	    strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789._+-") == n;
}

/* <instance>_<disk>, '_' in the disk name doubled (Nova). */
static int lv_name(const struct vmd_disk_ref *disk, char out[LV_NAME_MAX + 1],
                   struct vmd_error *err)
{
	int k = snprintf(out, LV_NAME_MAX + 1, "%s_", disk->instance);
	size_t n;

	if (k < 0 || k >= LV_NAME_MAX)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "lvm: disk name too long for a volume",
		                     "instance");
	n = (size_t)k;
	for (const char *p = disk->disk; *p; p++) {
		if (n + (*p == '_' ? 2 : 1) > LV_NAME_MAX)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "lvm: disk name too long for a "
			                     "volume",
			                     "%s", disk->disk);
		if (*p == '_')
			out[n++] = '_';
		out[n++] = *p;
	}
	out[n] = '\0';
	/* The name the steps will accept: no request goes out for a volume
	 * they would refuse as not a disk's. */
	if (!lvm_name_ok(out) || !vmd_lvm_name_is_disk(out))
		return vmd_error_set(err, VMD_E_INVAL, "lvm: bad volume name",
		                     "%s", out);
	return 0;
}

static int lvm_check_config(struct vmd_ctx *ctx, struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);

	if (!cfg->images_volume_group[0])
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "lvm: images_volume_group is not set",
		                     "no volume group");
	if (!lvm_name_ok(cfg->images_volume_group))
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "lvm: bad images_volume_group", "vg");
	if (cfg->sparse_logical_volumes && !lvm_name_ok(cfg->lvm_thin_pool))
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "lvm: bad lvm_thin_pool", "pool");
	return 0;
}

/* A request of `op` for the disk's volume. */
static int volume_request(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                          enum vmd_priv_op op, struct vmd_priv_request *req,
                          struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	char name[LV_NAME_MAX + 1];
	int rc = lvm_check_config(ctx, err);

	memset(req, 0, sizeof(*req));
	if (rc == 0)
		rc = lv_name(disk, name, err);
	if (rc < 0)
		return rc;
	if (strlen(name) >= sizeof(req->lv))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "lvm: disk name too long for a volume",
		                     "%s", name);
	req->op = op;
	req->fields = VMD_PF_VG | VMD_PF_LV;
	snprintf(req->vg, sizeof(req->vg), "%s", cfg->images_volume_group);
	snprintf(req->lv, sizeof(req->lv), "%s", name);
	return 0;
}

static void set_key_id(struct vmd_priv_request *req, const char *key_id)
{
	req->fields |= VMD_PF_KEY_ID;
	snprintf(req->key_id, sizeof(req->key_id), "%s", key_id);
}

/* Asks vmdiskd to remove the volume when a create fails after lvm_create
 * answered (lvm_volume.c's lv_guard is the same on vmdiskd's side). */
struct made_lv_guard {
	struct vmd_ctx *ctx;
	const struct vmd_priv_request *made;
};

static void made_lv_remove(struct made_lv_guard *g)
{
	struct vmd_priv_request req;
	struct vmd_priv_reply rep;
	struct vmd_error ignored = VMD_ERROR_INIT;

	if (!g->made)
		return;
	req = *g->made;
	req.op = VMD_PRIV_LVM_REMOVE;
	req.fields = VMD_PF_VG | VMD_PF_LV;
	if (vmd_priv_run(vmd_ctx_config(g->ctx), &req, &rep, &ignored) < 0)
		vmd_log_error("lvm: could not remove %s/%s after a failure: %s",
		              req.vg, req.lv, ignored.detail);
}

/* The base's file name in the image cache: what vmdiskd opens there. */
static int base_name(struct vmd_ctx *ctx, const struct vmd_image *base,
                     const char **name, struct vmd_error *err)
{
	size_t n = strlen(ctx->cache_dir);
	const char *p = base->path;

	if (strncmp(p, ctx->cache_dir, n) != 0 || p[n] != '/' ||
	    strchr(p + n + 1, '/'))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "lvm: base image is not in the cache",
		                     "%s", base->path);
	*name = p + n + 1;
	return 0;
}

static int lvm_create(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      const struct vmd_image *base, uint64_t size,
                      struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	struct vmd_priv_request made, write;
	struct vmd_priv_reply rep;
	_cleanup_(made_lv_remove) struct made_lv_guard guard = {ctx, NULL};
	const char *name = NULL;
	int rc = volume_request(ctx, disk, VMD_PRIV_LVM_CREATE, &made, err);

	if (rc == 0 && base && base->format != VMD_FORMAT_RAW &&
	    base->format != VMD_FORMAT_QCOW2)
		rc = vmd_error_set(err, VMD_E_UNSUPPORTED,
		                   "lvm: base image format not supported",
		                   "base %s is %s", base->cache_id,
		                   vmd_format_name(base->format));
	if (rc == 0 && base)
		rc = base_name(ctx, base, &name, err);
	if (rc == 0 && cfg->ephemeral_storage_encryption_enabled) {
		if (!disk->key_id)
			rc = vmd_error_set(err, VMD_E_INVAL,
			                   "lvm: encryption needs a key id",
			                   "no key id");
		else
			set_key_id(&made, disk->key_id);
	}
	if (rc < 0)
		return rc;
	made.fields |= VMD_PF_SIZE | VMD_PF_SPARSE;
	made.size = size;
	made.sparse = cfg->sparse_logical_volumes;
	rc = vmd_priv_run(cfg, &made, &rep, err);
	if (rc < 0)
		return rc;
	guard.made = &made;
	/* A blank thin volume reads zeroes already: nothing to write. */
	if (!base && rep.sparse && !(made.fields & VMD_PF_KEY_ID)) {
		guard.made = NULL;
		return 0;
	}
	/* The base, or zeroes for a blank thick volume: what its extents
	 * held before must not show. */
	write = made;
	write.op = VMD_PRIV_LVM_WRITE_IMAGE;
	write.fields = VMD_PF_VG | VMD_PF_LV;
	if (base) {
		write.fields |= VMD_PF_BASE | VMD_PF_FORMAT;
		snprintf(write.base, sizeof(write.base), "%s", name);
		snprintf(write.format, sizeof(write.format), "%s",
		         vmd_format_name(base->format));
	}
	rc = vmd_priv_run(cfg, &write, &rep, err);
	if (rc < 0)
		return rc;
	guard.made = NULL;
	return 0;
}

static int lvm_create_from_image(struct vmd_ctx *ctx,
                                 const struct vmd_disk_ref *disk,
                                 const struct vmd_image *base, uint64_t size,
                                 struct vmd_error *err)
{
	return lvm_create(ctx, disk, base, size, err);
}

static int lvm_create_blank(struct vmd_ctx *ctx,
                            const struct vmd_disk_ref *disk, uint64_t size,
                            struct vmd_error *err)
{
	return lvm_create(ctx, disk, NULL, size, err);
}

/* The volume of an existing disk, as lvm_info describes it. */
static int volume_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       struct vmd_priv_reply *rep, struct vmd_error *err)
{
	struct vmd_priv_request req;
	int rc = volume_request(ctx, disk, VMD_PRIV_LVM_INFO, &req, err);

	return rc < 0 ? rc : vmd_priv_run(vmd_ctx_config(ctx), &req, rep, err);
}

static int lvm_resize(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      uint64_t new_size, struct vmd_error *err)
{
	struct vmd_priv_request req;
	struct vmd_priv_reply rep;
	int rc = volume_request(ctx, disk, VMD_PRIV_LVM_RESIZE, &req, err);

	if (rc < 0)
		return rc;
	req.fields |= VMD_PF_SIZE;
	req.size = new_size;
	/* An encrypted disk's mapping grows only with its key. */
	if (disk->key_id)
		set_key_id(&req, disk->key_id);
	return vmd_priv_run(vmd_ctx_config(ctx), &req, &rep, err);
}

static int lvm_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      bool *exists, struct vmd_error *err)
{
	struct vmd_priv_reply rep;
	struct vmd_error e = VMD_ERROR_INIT;
	int rc = volume_info(ctx, disk, &rep, &e);

	*exists = rc == 0;
	if (rc == VMD_E_NOTFOUND)
		return 0;
	if (rc < 0)
		*err = e;
	return rc;
}

static int lvm_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                    struct vmd_disk_info *out, struct vmd_error *err)
{
	struct vmd_priv_reply rep;
	int rc = volume_info(ctx, disk, &rep, err);

	if (rc < 0)
		return rc;
	snprintf(out->format, sizeof(out->format), "raw");
	snprintf(out->path, sizeof(out->path), "%s", rep.path);
	out->virtual_size = rep.size;
	out->actual_size = rep.lv_size;
	out->backing[0] = '\0';
	return 0;
}

static int lvm_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	struct vmd_priv_request req;
	struct vmd_priv_reply rep;
	int rc = volume_request(ctx, disk, VMD_PRIV_LVM_REMOVE, &req, err);

	if (rc < 0)
		return rc;
	req.fields |= VMD_PF_CLEAR | VMD_PF_CLEAR_SIZE;
	req.volume_clear = VMD_PRIV_CLEAR_ZERO; /* the default */
	(void)vmd_priv_clear_parse(cfg->volume_clear, &req.volume_clear);
	req.volume_clear_size = cfg->volume_clear_size;
	return vmd_priv_run(cfg, &req, &rep, err);
}

/* The device is opened read-only by lvm_open_read (in vmdiskd when we
 * are not root, which passes the descriptor back) and read from here. */
static int lvm_snapshot_extract(struct vmd_ctx *ctx,
                                const struct vmd_disk_ref *disk,
                                const char *dst_path,
                                enum vmd_format dst_format,
                                struct vmd_error *err)
{
	struct vmd_priv_request req;
	struct vmd_priv_reply rep;
	struct vmd_convert_opts o = {
		.src_format = VMD_FORMAT_RAW,
		.dst_format = dst_format,
	};
	_cleanup_(closep) int fd = -1;
	int rc = volume_request(ctx, disk, VMD_PRIV_LVM_OPEN_READ, &req, err);

	if (rc == 0)
		rc = vmd_priv_run(vmd_ctx_config(ctx), &req, &rep, err);
	if (rc < 0)
		return rc;
	fd = rep.fd;
	/* An encrypted disk's content is what its mapping shows: the
	 * descriptor is the mapping's then. */
	return vmd_disk_extract_fd(fd, dst_path, &o, err);
}

static int lvm_xml_source(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                          struct vmd_xml_source *out, struct vmd_error *err)
{
	struct vmd_priv_reply rep;
	int rc = volume_info(ctx, disk, &rep, err);

	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->type = VMD_XML_BLOCK;
	snprintf(out->driver_type, sizeof(out->driver_type), "raw");
	snprintf(out->path, sizeof(out->path), "%s", rep.path);
	out->preallocated = !rep.sparse;
	return 0;
}

const struct vmd_backend_ops vmd_backend_lvm = {
	.name = "lvm",
	.create_from_image = lvm_create_from_image,
	.create_blank = lvm_create_blank,
	.resize = lvm_resize,
	.exists = lvm_exists,
	.info = lvm_info,
	.snapshot_extract = lvm_snapshot_extract,
	.remove = lvm_remove,
	.xml_source = lvm_xml_source,
	.check_config = lvm_check_config,
};
