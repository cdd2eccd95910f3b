/*
 * The privileged side of vmdiskd (tools/vmdiskd.c): its handlers, their
 * dispatch table, the policy and the servers. Built into the static
 * library libvmdisk-priv.a, which vmdiskd and the tests link and
 * libvmdisk.so does not contain; the protocol and the client that reach
 * it are in lib/priv/privhelper.h.
 */
#ifndef VMDISK_PRIVHELPER_SERVER_H
#define VMDISK_PRIVHELPER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "privhelper.h"

typedef int (*vmd_priv_handler)(const struct vmd_config *cfg,
                                const struct vmd_priv_request *req,
                                struct vmd_priv_reply *rep,
                                struct vmd_error *err);

/* The operations vmdiskd performs.
 * A NULL member answers VMD_E_UNSUPPORTED. */
struct vmd_priv_ops {
	vmd_priv_handler ping;
	vmd_priv_handler lvm_create;
	vmd_priv_handler lvm_remove;
	vmd_priv_handler lvm_resize;
	vmd_priv_handler lvm_write_image;
	vmd_priv_handler mkfs;
	vmd_priv_handler luks_format;
	vmd_priv_handler luks_open;
	vmd_priv_handler luks_close;
	vmd_priv_handler lvm_info;
	vmd_priv_handler lvm_open_read;
};

/* The encryption handlers (privhelper_luks.c): the key is fetched in
 * the daemon by key_id; the device is /dev/<vg>/<lv>. */
int vmd_priv_luks_format(const struct vmd_config *cfg,
                         const struct vmd_priv_request *req,
                         struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_luks_open(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req,
                       struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_luks_close(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err);

/*
 * The lvm handlers (lvm_volume.c). Every one refuses a volume group
 * other than the configuration's images_volume_group, an LV not named as a
 * disk (vmd_lvm_name_is_disk) and one without the tag VMD_LVM_TAG: the
 * helper works on the volumes it made in its own VG only, never on the
 * host's other volumes.
 *
 * lvm_create: an LV of `size` bytes (rounded up to extents; thin with
 *   "sparse"), tagged VMD_LVM_TAG. With key_id: the key is fetched first
 *   (no key, no LV), the LV made bigger by the LUKS2 header, formatted and
 *   opened; the reply's path is then the mapping. A failure after
 *   lvcreate removes the LV.
 * lvm_info: the volume's device, sizes and kind; VMD_E_NOTFOUND if none.
 * lvm_write_image: the cache file `base` (in the image cache of the
 *   configuration, not a symlink, one link, inspected again, of `format`)
 *   written into the guest's device, what it does not hold zeroed; without
 *   base, the whole device zeroed (a thin LV reads zeroes already).
 * lvm_resize: grow to `size` guest bytes; an open mapping is grown too,
 *   which needs key_id (LUKS2 keeps its volume key in the kernel keyring).
 * lvm_remove: close the mapping, overwrite per volume_clear (thick LVs),
 *   lvremove; no such LV is success.
 * mkfs: a file system on the guest's device.
 * lvm_open_read: the guest's device opened read-only, its descriptor in
 *   the reply (for extract: the caller reads, never writes, the device).
 */
int vmd_priv_lvm_create(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_lvm_info(const struct vmd_config *cfg,
                      const struct vmd_priv_request *req,
                      struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_lvm_write_image(const struct vmd_config *cfg,
                             const struct vmd_priv_request *req,
                             struct vmd_priv_reply *rep,
                             struct vmd_error *err);
int vmd_priv_lvm_resize(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_lvm_remove(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_lvm_open_read(const struct vmd_config *cfg,
                           const struct vmd_priv_request *req,
                           struct vmd_priv_reply *rep, struct vmd_error *err);
int vmd_priv_mkfs(const struct vmd_config *cfg,
                  const struct vmd_priv_request *req,
                  struct vmd_priv_reply *rep, struct vmd_error *err);

/* The device (from lvs) of the LV a request names, when it is in this
 * configuration's images_volume_group, is not its thin pool, is named as
 * a disk, exists and carries VMD_LVM_TAG:
 * every handler that touches a volume starts here, so no request reaches
 * another VG, /dev/mapper or /dev/md. */
int vmd_priv_served_device(const struct vmd_config *cfg,
                           const struct vmd_priv_request *req, char *path,
                           size_t pathsz, struct vmd_error *err);

/* Whether lvs's lv_tags value (`len` bytes as json-c reports them, tags
 * separated by ',') holds VMD_LVM_TAG exactly. Pure. */
bool vmd_lvm_tags_have_ours(const char *tags, size_t len);

/* The table vmdiskd serves with (both on its socket and with --stdio). */
extern const struct vmd_priv_ops vmd_priv_ops_default;

/* Run an already checked request through `ops`. */
int vmd_priv_dispatch(const struct vmd_priv_ops *ops,
                      const struct vmd_config *cfg,
                      const struct vmd_priv_request *req,
                      struct vmd_priv_reply *rep, struct vmd_error *err);

/* ---- policy ---- */

struct vmd_priv_policy;

/*
 * Load the policy file: section [allow], keys "uid.<number|user>" and
 * "gid.<number|group>", values comma lists of op names or "all" (every op
 * except the luks_* ones, which must be named). The file must be a regular
 * file owned by root (or the effective uid) and writable by nobody else.
 */
int vmd_priv_policy_load(const char *path, struct vmd_priv_policy **out,
                         struct vmd_error *err);
void vmd_priv_policy_free(struct vmd_priv_policy *pol);

/* Whether uid, or one of its groups (gid and the user's groups), may run
 * op; `why` says which grant matched or that none did. */
bool vmd_priv_policy_allows(const struct vmd_priv_policy *pol, uid_t uid,
                            gid_t gid, enum vmd_priv_op op, char *why,
                            size_t whysz);

/* ---- server ---- */

struct vmd_priv_server_opts {
	int read_timeout_ms;   /* whole request line; 0 = 10000 */
	unsigned max_clients;  /* requests running at once; 0 = 16 */
	unsigned max_conns;    /* connections open (being read, waiting for
	                        * one of those, running) at once; 0 = 256 */
	unsigned exit_after;   /* stop after this many connections; 0 = never */
	const struct vmd_priv_ops *ops; /* NULL = vmd_priv_ops_default */
	/* A listening socket handed over by systemd (socket activation,
	 * vmd_priv_listen_fd_from_env): served instead of binding
	 * cfg->vmdiskd_socket, and owned (closed) by vmd_priv_serve. */
	bool inherited;
	int listen_fd;
};

/*
 * Socket activation as systemd does it (sd_listen_fds(3), written here
 * so that vmdiskd needs no libsystemd): when LISTEN_PID names this
 * process and LISTEN_FDS is set, descriptor 3 is the socket to serve.
 * *fd is -1 when the variables are absent or meant for another process
 * (then vmdiskd binds its own socket). Exactly one descriptor, an AF_UNIX
 * SOCK_STREAM socket that is listening, is accepted: anything else is
 * refused (< 0), not served. The variables are removed either way, so
 * that nothing vmdiskd runs inherits them.
 */
int vmd_priv_listen_fd_from_env(int *fd, struct vmd_error *err);

/* Bind cfg->vmdiskd_socket (mode 0660, group vmdisk when it exists), or
 * take opts->listen_fd when opts->inherited, open the audit log and serve
 * until SIGTERM/SIGINT or exit_after. */
int vmd_priv_serve(const struct vmd_config *cfg,
                   const struct vmd_priv_server_opts *opts,
                   struct vmd_error *err);

/*
 * `vmdiskd --stdio`: serve the one exchange of vmd_priv_run as root on
 * descriptor `fd` (0: the socketpair end the client handed over as stdin
 * and stdout). Requires this process's euid 0, an AF_UNIX stream socket
 * and a peer (SO_PEERCRED) of uid 0; reads the frame (privhelper.h:
 * VMD_PRIV_STDIO_MAGIC, the configuration text, the request) within
 * read_timeout_ms, runs the request with the configuration it was sent
 * (root needs no policy grant: the caller could run the tools itself),
 * audits to that configuration's vmdiskd_audit_log (only to the log when
 * the log's directory does not exist: a host where vmdiskd was never set
 * up) and answers. 0 once a reply went out (whatever it says), < 0 when
 * none could be.
 */
int vmd_priv_serve_stdio(int fd, const struct vmd_priv_server_opts *opts,
                         struct vmd_error *err);

#endif
