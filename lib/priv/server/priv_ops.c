/*
 * vmdiskd's dispatch table: which handler serves which op (the handlers
 * are lvm_volume.c and privhelper_luks.c), and the one call that runs an
 * already checked request through a table. Server side only: libvmdisk
 * holds the protocol, never a handler (privhelper.h).
 */
#include <stdio.h>
#include <string.h>

#include "privhelper_server.h"

static int handle_ping(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req,
                       struct vmd_priv_reply *rep, struct vmd_error *err)
{
	(void)cfg;
	(void)req;
	(void)err;
	rep->path[0] = '\0';
	return 0;
}

const struct vmd_priv_ops vmd_priv_ops_default = {
	.ping = handle_ping,
	.luks_format = vmd_priv_luks_format,
	.luks_open = vmd_priv_luks_open,
	.luks_close = vmd_priv_luks_close,
	.lvm_create = vmd_priv_lvm_create,
	.lvm_remove = vmd_priv_lvm_remove,
	.lvm_resize = vmd_priv_lvm_resize,
	.lvm_write_image = vmd_priv_lvm_write_image,
	.lvm_info = vmd_priv_lvm_info,
	.lvm_open_read = vmd_priv_lvm_open_read,
	.mkfs = vmd_priv_mkfs,
};

static vmd_priv_handler handler_of(const struct vmd_priv_ops *ops,
                                   enum vmd_priv_op op)
{
	switch (op) {
	case VMD_PRIV_PING: return ops->ping;
	case VMD_PRIV_LVM_CREATE: return ops->lvm_create;
	case VMD_PRIV_LVM_REMOVE: return ops->lvm_remove;
	case VMD_PRIV_LVM_RESIZE: return ops->lvm_resize;
	case VMD_PRIV_LVM_WRITE_IMAGE: return ops->lvm_write_image;
	case VMD_PRIV_MKFS: return ops->mkfs;
	case VMD_PRIV_LUKS_FORMAT: return ops->luks_format;
	case VMD_PRIV_LUKS_OPEN: return ops->luks_open;
	case VMD_PRIV_LUKS_CLOSE: return ops->luks_close;
	case VMD_PRIV_LVM_INFO: return ops->lvm_info;
	case VMD_PRIV_LVM_OPEN_READ: return ops->lvm_open_read;
	case VMD_PRIV_OP_COUNT: break;
	}
	return NULL;
}

int vmd_priv_dispatch(const struct vmd_priv_ops *ops,
                      const struct vmd_config *cfg,
                      const struct vmd_priv_request *req,
                      struct vmd_priv_reply *rep, struct vmd_error *err)
{
	vmd_priv_handler h;
	char msg[VMD_ERROR_MSG_MAX];

	memset(rep, 0, sizeof(*rep));
	rep->fd = -1;
	h = handler_of(ops ? ops : &vmd_priv_ops_default, req->op);
	if (!h) {
		snprintf(msg, sizeof(msg), "%s: not available yet",
		         vmd_priv_op_name(req->op));
		return vmd_error_set(err, VMD_E_UNSUPPORTED, msg,
		                     "no handler for %s",
		                     vmd_priv_op_name(req->op));
	}
	return h(cfg, req, rep, err);
}

