/*
 * The privileged helper's protocol (vmdiskd, tools/vmdiskd.c).
 *
 * Root-only steps of the lvm backend (create/remove/resize an LV, write a
 * base into it, mkfs, LUKS format/open/close) run in vmdiskd; an
 * unprivileged library asks for them over a Unix socket, one JSON object per
 * line, one request per connection:
 *
 *   {"op":"lvm_create","vg":"vg0","lv":"UUID_disk","size":1073741824}
 *   -> {"ok":true,"path":"/dev/vg0/UUID_disk"}
 *   -> {"ok":false,"code":"refused","error":"vmdiskd: not allowed"}
 *
 * The request schema is fixed: known ops only, known fields only, each of
 * its JSON type and within its allow-list (validate.h), the fields an op
 * needs present and no others. Nothing in a request is a path or a secret:
 * a base image is named by its file name in the image cache, a key by its
 * UUID (vmdiskd fetches the key itself, lib/keys.h).
 *
 * Each request is authorised from the caller's SO_PEERCRED against the
 * policy file and every decision goes to the audit log (vmdiskd.8).
 *
 * This header is the protocol and the client, in libvmdisk. The server,
 * the handlers and the key providers are in lib/priv/server/
 * (privhelper_server.h), a static library only vmdiskd (and the tests)
 * link: libvmdisk itself never runs a privileged step.
 */
#ifndef VMDISK_PRIVHELPER_H
#define VMDISK_PRIVHELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vmdisk/config.h>
#include <vmdisk/error.h>

#define VMD_PRIV_LINE_MAX 4096          /* request or reply, newline included */
#define VMD_PRIV_SIZE_MAX (1ull << 50)  /* 1 PiB: larger sizes are refused */
#define VMD_PRIV_LV_MAX 128             /* LVM's own name limit */
#define VMD_PRIV_CALL_TIMEOUT_MS (3600 * 1000)

enum vmd_priv_op {
	VMD_PRIV_PING = 0,
	VMD_PRIV_LVM_CREATE,
	VMD_PRIV_LVM_REMOVE,
	VMD_PRIV_LVM_RESIZE,
	VMD_PRIV_LVM_WRITE_IMAGE,
	VMD_PRIV_MKFS,
	VMD_PRIV_LUKS_FORMAT,
	VMD_PRIV_LUKS_OPEN,
	VMD_PRIV_LUKS_CLOSE,
	VMD_PRIV_LVM_INFO,
	VMD_PRIV_LVM_OPEN_READ,
	VMD_PRIV_OP_COUNT,
};

/* Fields of a request: bits of vmd_priv_request.fields. */
enum vmd_priv_field {
	VMD_PF_VG = 1u << 0,          /* "vg": volume group name */
	VMD_PF_LV = 1u << 1,          /* "lv": LV name (a file token) */
	VMD_PF_SIZE = 1u << 2,        /* "size": bytes, 1..VMD_PRIV_SIZE_MAX */
	VMD_PF_SPARSE = 1u << 3,      /* "sparse": bool (thin LV) */
	VMD_PF_BASE = 1u << 4,        /* "base": file name in the image cache */
	VMD_PF_FORMAT = 1u << 5,      /* "format": "raw" | "qcow2" */
	VMD_PF_FS = 1u << 6,          /* "fs": "ext4" | "xfs" | "vfat" | "swap" */
	VMD_PF_LABEL = 1u << 7,       /* "label": [A-Za-z0-9._-]{1,16} */
	VMD_PF_KEY_ID = 1u << 8,      /* "key_id": UUID */
	VMD_PF_CLEAR = 1u << 9,       /* "volume_clear": none | zero | shred */
	VMD_PF_CLEAR_SIZE = 1u << 10, /* "volume_clear_size": MiB, 0 = all */
};

enum vmd_priv_clear {
	VMD_PRIV_CLEAR_NONE = 0,
	VMD_PRIV_CLEAR_ZERO,
	VMD_PRIV_CLEAR_SHRED,
};

/* "none", "zero" or "shred" (the request field and the config key take
 * the same words); -1 for anything else. */
int vmd_priv_clear_parse(const char *s, enum vmd_priv_clear *out);

/* A parsed and validated request: every string here passed its check. */
struct vmd_priv_request {
	enum vmd_priv_op op;
	unsigned fields; /* enum vmd_priv_field bits present */
	char vg[VMD_NAME_MAX];
	char lv[VMD_PRIV_LV_MAX];
	uint64_t size;
	bool sparse;
	char base[VMD_PRIV_LV_MAX];
	char format[8];
	char fs[8];
	char label[17];
	char key_id[VMD_UUID_LEN + 1];
	enum vmd_priv_clear volume_clear;
	uint64_t volume_clear_size; /* MiB */
};

/* What a handler gives back beyond success (lvm ops: the volume). */
struct vmd_priv_reply {
	char path[256];   /* the guest's device (an open mapping, else the
	                     LV); "" when the op has none */
	uint64_t size;    /* bytes of that device; 0 when not said */
	uint64_t lv_size; /* bytes of the LV itself */
	bool sparse;      /* a thin LV */
	int fd;           /* lvm_open_read: the device, read-only (passed
	                     over the socket with SCM_RIGHTS; the caller
	                     closes it); -1 otherwise */
};

/* The LVM tag every LV vmdisk makes carries (lvcreate --addtag): vmdiskd
 * and the lvm backend act on no LV without it, so a host LV sharing
 * images_volume_group is never read, written, resized or removed. LVs made
 * before the tag get it with `lvchange --addtag vmdisk VG/LV`. */
#define VMD_LVM_TAG "vmdisk"

/* Whether `lv` is a name the lvm backend gives a disk: <instance>_<disk>,
 * the instance a UUID, the disk a valid disk name with each '_' doubled.
 * Pure. */
bool vmd_lvm_name_is_disk(const char *lv);

const char *vmd_priv_op_name(enum vmd_priv_op op);
int vmd_priv_op_parse(const char *name, enum vmd_priv_op *op);
/* luks_*: a policy grant for them must name them. */
bool vmd_priv_op_is_encryption(enum vmd_priv_op op);
/* The encryption op whose grant a request needs besides its own: an
 * lvm_create with a key_id formats (luks_format), an lvm_resize with one
 * opens the key (luks_open); VMD_PRIV_OP_COUNT when none. */
enum vmd_priv_op vmd_priv_request_extra_grant(const struct vmd_priv_request *req);

/* Fields `op` requires and fields it allows (required included). */
unsigned vmd_priv_fields_required(enum vmd_priv_op op);
unsigned vmd_priv_fields_allowed(enum vmd_priv_op op);

/*
 * Parse one request line (without its newline; `len` bytes, need not be
 * NUL-terminated) against the schema. Pure: no I/O. Refuses: more than
 * VMD_PRIV_LINE_MAX - 1 bytes, NUL bytes, anything but one JSON object,
 * trailing bytes, unknown op or field, a field of the wrong type, a value
 * outside its allow-list, a missing required field. The public message
 * names the problem and the field, never echoes the value.
 */
int vmd_priv_request_parse(const char *line, size_t len,
                           struct vmd_priv_request *req,
                           struct vmd_error *err);

/* Check a request built in code against the same schema. */
int vmd_priv_request_check(const struct vmd_priv_request *req,
                           struct vmd_error *err);

/* The request as one JSON line (no newline) in a malloc'ed string. */
int vmd_priv_request_to_json(const struct vmd_priv_request *req, char **out,
                             struct vmd_error *err);

/* "vg/lv", "vg" or "-": what the audit log names as the target. */
void vmd_priv_request_target(const struct vmd_priv_request *req, char *buf,
                             size_t bufsz);

/* ---- client ---- */

/* Send `req` to vmdiskd at cfg->vmdiskd_socket and read its reply; the
 * daemon's error (code and public message) comes back in err. */
int vmd_priv_call(const struct vmd_config *cfg,
                  const struct vmd_priv_request *req,
                  struct vmd_priv_reply *rep, struct vmd_error *err);

/* As root: the same exchange with a one-shot `vmdiskd --stdio` started
 * for this request (vmd_priv_helper_path) over a socketpair, with this
 * process's configuration; otherwise vmd_priv_call. What the lvm backend
 * calls. The handlers live in vmdiskd only (lib/priv/server/). */
int vmd_priv_run(const struct vmd_config *cfg,
                 const struct vmd_priv_request *req,
                 struct vmd_priv_reply *rep, struct vmd_error *err);

/* The vmdiskd binary vmd_priv_run starts as root: VMD_VMDISKD_PATH (the
 * installed sbindir/vmdiskd); in fault_injection builds $VMDISK_VMDISKD
 * (an absolute path) when set, so tests run the build tree's. */
const char *vmd_priv_helper_path(void);

/*
 * The stdio exchange (`vmdiskd --stdio`), on a connected AF_UNIX stream
 * socket: the client writes the frame header line
 *   "vmdiskd-stdio <N>\n"
 * then N bytes of configuration text (vmd_config_to_text: the caller's
 * whole configuration, read back with the config file's parser), then one
 * request line; the helper answers with one reply line (and, for
 * lvm_open_read, the descriptor), exactly as over vmdiskd's socket.
 */
#define VMD_PRIV_STDIO_MAGIC "vmdiskd-stdio"
#define VMD_PRIV_STDIO_CONFIG_MAX (64 * 1024)

/* Parse a reply line (for the client and its tests). */
int vmd_priv_reply_parse(const char *line, size_t len,
                         struct vmd_priv_reply *rep, struct vmd_error *err);

#endif
