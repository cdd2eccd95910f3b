/*
 * The root-only steps of the lvm backend, as vmdiskd's handlers (see
 * privhelper_server.h for what each does). The lvm backend
 * (lib/backend/backend_lvm.c) reaches them through vmd_priv_run: over
 * vmdiskd's socket, or as root through a one-shot `vmdiskd --stdio`, so
 * both paths run this same code, in vmdiskd only.
 *
 * A request names a volume by VG and LV name only. The VG must be the
 * configuration's images_volume_group, the LV may not be its thin pool,
 * its name must be one the lvm backend gives a disk (<instance>_<disk>)
 * and lvs must list it with the tag VMD_LVM_TAG that lvcreate gave it
 * here: whoever the policy lets in can touch the instance volumes vmdisk
 * made and nothing else of the host's storage, not even a host LV that
 * shares the VG. lvm2's tools run through the runner with
 * argv arrays; device paths come only from `lvs --reportformat json`
 * (json-c), never from joining strings. The base image is named by its
 * file name in the image cache, which the unprivileged caller can write:
 * it is opened without following links, must be a regular file with one
 * link owned by the cache's owner (or root), and is inspected again here
 * before a byte of it is read.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmdisk/log.h>
#include <vmdisk/validate.h>

#include "cache.h"
#include "faultpoint.h"
#include "fsutil.h"
#include "internal.h"
#include "json_string.h"
#include "keys.h"
#include "luks.h"
#include "mover.h"
#include "privhelper_server.h"
#include "runner.h"

#define LV_NAME_MAX 127 /* lvm2's limit */
#define LVM_TIMEOUT_MS 120000
#define MKFS_TIMEOUT_MS 300000
#define WRITE_CHUNK (4u << 20)
#define SHRED_PASSES 3
/* libcryptsetup's default LUKS2 data offset: the LV is made this much
 * bigger, so the guest's disk (the mapping) has the size asked for. */
#define LUKS2_HEADER_BYTES (16ull << 20)

struct lv {
	char vg[VMD_NAME_MAX];
	char name[LV_NAME_MAX + 1];
	char path[PATH_MAX]; /* from lvs */
	uint64_t size;
	bool thin;
	bool pool_zeroes; /* thin: the pool zeroes newly provisioned blocks */
	bool open;        /* its device is open (a running guest) */
	bool ours;        /* lvs lists VMD_LVM_TAG among its tags */
};

bool vmd_lvm_tags_have_ours(const char *tags, size_t len)
{
	const size_t want = sizeof(VMD_LVM_TAG) - 1;
	size_t start = 0;

	if (!tags)
		return false;
	/* Each ','-separated tag compared by its length: a tag holding a NUL
	 * or "vmdisk" as a prefix is not ours. */
	for (size_t i = 0; i <= len; i++) {
		if (i < len && tags[i] != ',')
			continue;
		if (i - start == want && memcmp(tags + start, VMD_LVM_TAG,
		                                want) == 0)
			return true;
		start = i + 1;
	}
	return false;
}

/* The volume a request names, if this configuration serves it (its tag
 * is read with lvs later: lv_lookup). */
static int served_volume(const struct vmd_config *cfg,
                         const struct vmd_priv_request *req, struct lv *lv,
                         struct vmd_error *err)
{
	memset(lv, 0, sizeof(*lv));
	if (!cfg->images_volume_group[0] ||
	    strcmp(req->vg, cfg->images_volume_group) != 0)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "lvm: volume group not served here",
		                     "request for VG %s, configured '%s'",
		                     req->vg, cfg->images_volume_group);
	if (strlen(req->lv) > LV_NAME_MAX ||
	    strcmp(req->lv, cfg->lvm_thin_pool) == 0)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "lvm: volume not served here",
		                     "LV %s is the thin pool or too long",
		                     req->lv);
	if (!vmd_lvm_name_is_disk(req->lv))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "lvm: volume not served here",
		                     "LV %s is not named <instance>_<disk>",
		                     req->lv);
	snprintf(lv->vg, sizeof(lv->vg), "%s", req->vg);
	snprintf(lv->name, sizeof(lv->name), "%s", req->lv);
	return 0;
}

static int run_lvm(const char *step, const char *const *argv, char **out,
                   struct vmd_error *err)
{
	struct vmd_run_opts ro = {.timeout_ms = LVM_TIMEOUT_MS};
	struct vmd_run_result res;
	int rc = vmd_run(step, argv, &ro, out ? &res : NULL, err);

	if (rc == 0 && out) {
		*out = TAKE_PTR(res.out);
		vmd_run_result_free(&res);
	}
	return rc;
}

/* The rows of `report[0].<kind>` in lvm2's JSON report. */
static json_object *report_rows(json_object *root, const char *kind)
{
	json_object *report, *first, *rows;

	if (!json_object_object_get_ex(root, "report", &report) ||
	    !json_object_is_type(report, json_type_array) ||
	    json_object_array_length(report) < 1)
		return NULL;
	first = json_object_array_get_idx(report, 0);
	if (!json_object_object_get_ex(first, kind, &rows) ||
	    !json_object_is_type(rows, json_type_array))
		return NULL;
	return rows;
}

static bool field_u64(json_object *row, const char *key, uint64_t *v)
{
	json_object *f;
	const char *s;
	char *end;

	if (!json_object_object_get_ex(row, key, &f))
		return false;
	s = vmd_json_str(f, NULL);
	if (!s || !*s)
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

/* A string field (NULL when absent, not a string or holding a NUL). */
static const char *field_str(json_object *row, const char *key)
{
	return vmd_json_string(row, key, NULL);
}

/* A binary field of `lvs --binary`: true only for "1". */
static bool field_flag(json_object *row, const char *key)
{
	const char *s = field_str(row, key);

	return s && strcmp(s, "1") == 0;
}

/* Whether lvs lists VMD_LVM_TAG in the row's lv_tags. */
static bool field_tagged(json_object *row)
{
	json_object *f;

	return json_object_object_get_ex(row, "lv_tags", &f) &&
	       json_object_is_type(f, json_type_string) &&
	       vmd_lvm_tags_have_ours(json_object_get_string(f),
	                              (size_t)json_object_get_string_len(f));
}

/* Fill lv->path/size/thin/ours from lvs; *found false when there is no
 * such LV. */
static int lv_lookup(struct lv *lv, bool *found, struct vmd_error *err)
{
	/* Only this LV's row (a host may have hundreds): a selection, which
	 * answers an empty list rather than an error when there is none.
	 * The name passed the LV allow-list, so it needs no escaping inside
	 * the quotes; the row's name is still compared below. */
	char select[LV_NAME_MAX + 16];
	const char *argv[] = {"lvs", "--reportformat", "json", "--units", "b",
	                      "--nosuffix", "--binary", "-o",
	                      "lv_name,vg_name,lv_path,lv_size,segtype,zero,"
	                      "lv_device_open,lv_tags",
	                      "-S", select, lv->vg, NULL};
	_cleanup_(freep) char *out = NULL;
	json_object *root, *rows;
	int rc;

	*found = false;
	snprintf(select, sizeof(select), "lv_name=\"%s\"", lv->name);
	rc = run_lvm("lvm: list volumes", argv, &out, err);
	if (rc < 0)
		return rc;
	root = json_tokener_parse(out);
	rows = root ? report_rows(root, "lv") : NULL;
	if (!rows) {
		json_object_put(root);
		return vmd_error_set(err, VMD_E_EXTERNAL,
		                     "lvm: list volumes failed",
		                     "unexpected lvs output");
	}
	for (size_t i = 0; i < json_object_array_length(rows); i++) {
		json_object *row = json_object_array_get_idx(rows, i);
		const char *name = field_str(row, "lv_name");
		const char *path = field_str(row, "lv_path");
		const char *seg = field_str(row, "segtype");

		if (!name || strcmp(name, lv->name) != 0)
			continue;
		/* The path must be the device of exactly this LV. */
		if (!path || strncmp(path, "/dev/", 5) != 0 || strstr(path, "..") ||
		    !field_u64(row, "lv_size", &lv->size) ||
		    strlen(path) >= sizeof(lv->path)) {
			rc = vmd_error_set(err, VMD_E_EXTERNAL,
			                   "lvm: list volumes failed",
			                   "bad lvs row for %s", name);
			break;
		}
		snprintf(lv->path, sizeof(lv->path), "%s", path);
		lv->thin = seg && strcmp(seg, "thin") == 0;
		/* For a thin LV, lvs reports its pool's zeroing here. */
		lv->pool_zeroes = lv->thin && field_flag(row, "zero");
		lv->open = field_flag(row, "lv_device_open");
		lv->ours = field_tagged(row);
		*found = true;
		break;
	}
	json_object_put(root);
	return rc;
}

/* An LV with the name of a disk but without our tag: the host's, or made
 * before vmdisk tagged its LVs (README: lvchange --addtag). */
static int not_ours(const struct lv *lv, struct vmd_error *err)
{
	return vmd_error_set(err, VMD_E_REFUSED,
	                     "lvm: volume not tagged " VMD_LVM_TAG,
	                     "%s/%s lacks the tag " VMD_LVM_TAG, lv->vg,
	                     lv->name);
}

static int lv_existing(const struct vmd_config *cfg,
                       const struct vmd_priv_request *req, struct lv *lv,
                       struct vmd_error *err)
{
	bool found;
	int rc = served_volume(cfg, req, lv, err);

	if (rc == 0)
		rc = lv_lookup(lv, &found, err);
	if (rc == 0 && !found)
		rc = vmd_error_set(err, VMD_E_NOTFOUND, "lvm: volume not found",
		                   "%s/%s", lv->vg, lv->name);
	if (rc == 0 && !lv->ours)
		rc = not_ours(lv, err);
	return rc;
}

int vmd_priv_served_device(const struct vmd_config *cfg,
                           const struct vmd_priv_request *req, char *path,
                           size_t pathsz, struct vmd_error *err)
{
	struct lv lv;
	int rc = lv_existing(cfg, req, &lv, err);

	if (rc == 0 && strlen(lv.path) >= pathsz)
		rc = vmd_error_set(err, VMD_E_INVAL, "lvm: device path too long",
		                   "%zu bytes", strlen(lv.path));
	if (rc == 0)
		memcpy(path, lv.path, strlen(lv.path) + 1);
	return rc;
}

static int lv_remove_now(const struct lv *lv, struct vmd_error *err)
{
	char target[VMD_NAME_MAX + LV_NAME_MAX + 2];
	const char *argv[] = {"lvremove", "-q", "-f", target, NULL};

	snprintf(target, sizeof(target), "%s/%s", lv->vg, lv->name);
	return run_lvm("lvm: remove volume", argv, NULL, err);
}

/* Removes the LV (and closes its dm-crypt mapping) when a create fails
 * after lvcreate. */
struct lv_guard {
	const struct lv *lv;
	bool mapped;
};

static void lv_guard_run(struct lv_guard *g)
{
	struct vmd_error ignored = VMD_ERROR_INIT;

	if (g->lv && g->mapped && vmd_luks_close(g->lv->name, &ignored) < 0)
		vmd_log_error("lvm: could not close the mapping of %s/%s: %s",
		              g->lv->vg, g->lv->name, ignored.detail);
	if (g->lv && lv_remove_now(g->lv, &ignored) < 0)
		vmd_log_error("lvm: could not remove %s/%s after a failure: %s",
		              g->lv->vg, g->lv->name, ignored.detail);
}

static int device_size(const char *path, uint64_t *size, struct vmd_error *err)
{
	_cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t end = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);

	if (end < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: open volume failed", "%s", path);
	*size = (uint64_t)end;
	return 0;
}

/*
 * What the guest gets: the mapping when the LV is encrypted (its size is
 * the LV's less the LUKS header; a thin LV under it no longer reads zero
 * where nothing was written), else the LV. `guest` may be `lv`.
 */
static int guest_device(const struct lv *lv, struct lv *guest,
                        struct vmd_error *err)
{
	char mapped[PATH_MAX];
	struct lv g = *lv;
	int rc = vmd_luks_mapping_of(lv->name, lv->path, mapped,
	                             sizeof(mapped), err);

	if (rc < 0)
		return rc;
	if (rc == 1) {
		rc = device_size(mapped, &g.size, err);

		if (rc < 0)
			return rc;
		snprintf(g.path, sizeof(g.path), "%s", mapped);
		g.thin = false;
	}
	*guest = g;
	return 0;
}

static int fill_reply(const struct lv *lv, struct vmd_priv_reply *rep,
                      struct vmd_error *err)
{
	struct lv g;
	int rc = guest_device(lv, &g, err);

	if (rc < 0)
		return rc;
	if (strlen(g.path) >= sizeof(rep->path))
		return vmd_error_set(err, VMD_E_EXTERNAL,
		                     "lvm: device path too long",
		                     "%zu bytes", strlen(g.path));
	memcpy(rep->path, g.path, strlen(g.path) + 1);
	rep->size = g.size;
	rep->lv_size = lv->size;
	rep->sparse = lv->thin;
	return 0;
}

static int lv_create(const struct vmd_config *cfg, struct lv *lv,
                     uint64_t size, bool sparse, struct vmd_error *err)
{
	char bytes[32], pool[VMD_NAME_MAX * 2 + 2] = "";
	bool found = false;
	int rc;

	/* lvcreate rounds the size up to whole extents itself; lvs below
	 * reports what it made. */
	snprintf(bytes, sizeof(bytes), "%llub", (unsigned long long)size);
	if (sparse) {
		if (!cfg->lvm_thin_pool[0])
			return vmd_error_set(err, VMD_E_CONFIG,
			                     "lvm: lvm_thin_pool is not set",
			                     "pool");
		snprintf(pool, sizeof(pool), "%s/%s", lv->vg,
		         cfg->lvm_thin_pool);
		const char *argv[] = {"lvcreate", "-q", "-y", "--addtag",
		                      VMD_LVM_TAG, "-V", bytes, "-T", pool,
		                      "-n", lv->name, NULL};

		rc = run_lvm("lvm: create volume", argv, NULL, err);
	} else {
		/* -Wy -Zy: wipe signatures and the first 4 KiB, so no stale
		 * header of an earlier volume shows through. */
		const char *argv[] = {"lvcreate", "-q", "-y", "--addtag",
		                      VMD_LVM_TAG, "-Wy", "-Zy", "-L", bytes,
		                      "-n", lv->name, lv->vg, NULL};

		rc = run_lvm("lvm: create volume", argv, NULL, err);
	}
	if (rc == 0)
		rc = lv_lookup(lv, &found, err);
	if (rc == 0 && !found)
		rc = vmd_error_set(err, VMD_E_EXTERNAL,
		                   "lvm: create volume failed",
		                   "%s not listed after lvcreate", lv->name);
	/* lvcreate made it with the tag; listed without it, no later
	 * request could reach it, so it goes again. */
	if (rc == 0 && !lv->ours)
		rc = vmd_error_set(err, VMD_E_EXTERNAL,
		                   "lvm: create volume failed",
		                   "%s listed without the tag " VMD_LVM_TAG,
		                   lv->name);
	/* A pool that skips zeroing hands out blocks with what an earlier
	 * volume (another tenant's) left in them: a guest's partial write
	 * would let it read the rest. Refused, and the LV goes again. */
	else if (rc == 0 && lv->thin && !lv->pool_zeroes)
		rc = vmd_error_set(err, VMD_E_CONFIG,
		                   "lvm: the thin pool does not zero new blocks",
		                   "%s: zeroing is off (lvchange -Zy %s)", pool,
		                   pool);
	if (rc < 0 && found) {
		struct vmd_error ignored = VMD_ERROR_INIT;

		if (lv_remove_now(lv, &ignored) < 0)
			vmd_log_error("lvm: could not remove %s/%s: %s", lv->vg,
			              lv->name, ignored.detail);
	}
	return rc;
}

int vmd_priv_lvm_create(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err)
{
	struct lv lv;
	_cleanup_(lv_guard_run) struct lv_guard guard = {NULL, false};
	_cleanup_(vmd_key_freep) struct vmd_secret_key *key = NULL;
	bool encrypted = req->fields & VMD_PF_KEY_ID;
	int rc = served_volume(cfg, req, &lv, err);

	/* The key first: a retrieval failure leaves nothing made at all. */
	if (rc == 0 && encrypted)
		rc = vmd_key_get(cfg, req->key_id, &key, err);
	if (rc == 0)
		rc = lv_create(cfg, &lv,
		               encrypted ? req->size + LUKS2_HEADER_BYTES
		                         : req->size,
		               req->sparse, err);
	if (rc < 0)
		return rc;
	guard.lv = &lv;
	rc = vmd_faultpoint("lvm.after_create", err);
	if (rc == 0 && encrypted) {
		char mapped[PATH_MAX];

		rc = vmd_luks_format(cfg, lv.path, key, err);
		if (rc == 0)
			rc = vmd_luks_open(lv.path, lv.name, key, mapped,
			                   sizeof(mapped), err);
		if (rc == 0) {
			guard.mapped = true;
			rc = vmd_faultpoint("lvm.after_luks_open", err);
		}
	}
	if (rc == 0)
		rc = fill_reply(&lv, rep, err);
	if (rc < 0)
		return rc;
	guard.lv = NULL;
	return 0;
}

int vmd_priv_lvm_info(const struct vmd_config *cfg,
                      const struct vmd_priv_request *req,
                      struct vmd_priv_reply *rep, struct vmd_error *err)
{
	struct lv lv;
	int rc = lv_existing(cfg, req, &lv, err);

	return rc < 0 ? rc : fill_reply(&lv, rep, err);
}

static int zero_range(int fd, uint64_t off, uint64_t len,
                      struct vmd_error *err)
{
	uint64_t range[2] = {off, len};

	if (len == 0)
		return 0;
	if (ioctl(fd, BLKZEROOUT, range) == 0)
		return 0;
	/* Not a block device that zeroes (or not one at all): write. The
	 * mover asks for short runs too: no bigger buffer than needed. */
	size_t zlen = len < WRITE_CHUNK ? (size_t)len : WRITE_CHUNK;
	_cleanup_(freep) unsigned char *z = calloc(1, zlen);

	if (!z)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "zero");
	while (len > 0) {
		size_t n = len < zlen ? (size_t)len : zlen;

		if (vmd_pwrite_full(fd, z, n, off) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "lvm: write volume failed",
			                           "zero at %llu",
			                           (unsigned long long)off);
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * The base named by the request, opened in the image cache: no link
 * followed (the directory included), a regular file with one link owned
 * by the cache directory's owner or root (not someone else's file linked
 * in), and the inspector's verdict of this very file: safe, and of the
 * format the request names.
 */
static int open_base(const struct vmd_config *cfg,
                     const struct vmd_priv_request *req, int *out,
                     enum vmd_format *format, struct vmd_error *err)
{
	char dir[PATH_MAX];
	_cleanup_(closep) int dfd = -1;
	_cleanup_(closep) int fd = -1;
	struct stat dst, st;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	bool qcow2 = strcmp(req->format, "qcow2") == 0;
	int rc;

	if (vmd_cache_dir_of(cfg, dir) < 0)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "lvm: bad image cache path", "instances_path");
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd >= 0)
		fd = openat(dfd, req->base,
		            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_NOTFOUND, errno,
		                           "lvm: base image not in the cache",
		                           "open %s/%s", dir, req->base);
	if (fstat(dfd, &dst) < 0 || fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: base image not readable",
		                           "fstat %s", req->base);
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    (st.st_uid != dst.st_uid && st.st_uid != 0))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "lvm: base image refused",
		                     "%s: mode %o, %lu links, uid %u (cache uid "
		                     "%u)",
		                     req->base, (unsigned)st.st_mode,
		                     (unsigned long)st.st_nlink,
		                     (unsigned)st.st_uid, (unsigned)dst.st_uid);
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = cfg->max_image_virtual_size;
	rc = vmd_inspect_fd(fd, &lim, 0, &r, err);
	if (rc < 0)
		return rc;
	if (!r.safe)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "lvm: base image refused by the inspector",
		                     "%s: %s", req->base,
		                     r.n_reasons ? r.reasons[0].code : "?");
	if (qcow2 ? r.format != VMD_IMG_QCOW2 : !vmd_image_format_is_raw(r.format))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "lvm: base image is not of its format",
		                     "%s named %s, inspected as %s", req->base,
		                     req->format,
		                     vmd_image_format_name(r.format));
	*format = qcow2 ? VMD_FORMAT_QCOW2 : VMD_FORMAT_RAW;
	*out = TAKE_FD(fd);
	return 0;
}

/*
 * Write the base's guest view into dev through the data mover, an fd
 * destination (write-behind). A thin LV reads zero where it is not
 * written: zero runs are skipped. A thick LV over old extents must have
 * them made zero: the mover asks BLKZEROOUT (WRITE ZEROES: no data moved
 * for the disk's unwritten part, usually most of it), zeroes written
 * where the device refuses.
 */
static int write_image(const struct lv *dev, const char *base_path,
                       enum vmd_format format, struct vmd_error *err)
{
	_cleanup_(closep) int fd = open(dev->path, O_WRONLY | O_CLOEXEC);
	struct vmd_move_bd_src bs = {.path = base_path, .format = format};
	struct vmd_move_src src;
	struct vmd_move_dst dst = {.fd = fd, .reads_zero = dev->thin};
	struct vmd_move_opts opts = {0};
	int rc;

	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: open volume failed", "open %s",
		                           dev->path);
	rc = vmd_move_src_blockdev(&bs, &src, err);
	if (rc < 0)
		return rc;
	/* The device's size bounds the copy; what the base does not
	 * reach reads zero, as a guest expects past its base. */
	if (src.size > dev->size)
		src.size = dev->size;
	/* "lvm": the mover's own errors read "lvm: write failed", and
	 * ours ("lvm: write volume failed") are not prefixed twice. */
	rc = vmd_move(&src, &dst, &opts, "lvm", err);
	if (rc == 0 && !dev->thin)
		rc = zero_range(fd, src.size, dev->size - src.size, err);
	if (rc < 0)
		return rc;
	if (vmd_fsync(fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: write volume failed", "fsync");
	return 0;
}

int vmd_priv_lvm_write_image(const struct vmd_config *cfg,
                             const struct vmd_priv_request *req,
                             struct vmd_priv_reply *rep,
                             struct vmd_error *err)
{
	struct lv lv, dev;
	int rc = lv_existing(cfg, req, &lv, err);

	if (rc == 0)
		rc = guest_device(&lv, &dev, err);
	if (rc < 0)
		return rc;
	if (req->fields & VMD_PF_BASE) {
		_cleanup_(closep) int fd = -1;
		enum vmd_format format = VMD_FORMAT_RAW;
		char path[64];

		rc = open_base(cfg, req, &fd, &format, err);
		if (rc < 0)
			return rc;
		/* The file just checked, not whatever has its name now. */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		rc = write_image(&dev, path, format, err);
	} else if (!dev.thin) {
		/* A blank disk reads as zeroes, whatever the extents held. */
		_cleanup_(closep) int fd = open(dev.path, O_WRONLY | O_CLOEXEC);

		rc = fd < 0 ? vmd_error_set_errno(err, VMD_E_IO, errno,
		                                  "lvm: open volume failed",
		                                  "open %s", dev.path)
		            : zero_range(fd, 0, dev.size, err);
		if (rc == 0 && vmd_fsync(fd) < 0)
			rc = vmd_error_set_errno(err, VMD_E_IO, errno,
			                         "lvm: write volume failed",
			                         "fsync");
	}
	return rc < 0 ? rc : fill_reply(&lv, rep, err);
}

int vmd_priv_lvm_resize(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err)
{
	_cleanup_(vmd_key_freep) struct vmd_secret_key *key = NULL;
	struct lv lv, dev;
	char bytes[32], target[VMD_NAME_MAX + LV_NAME_MAX + 2];
	const char *argv[] = {"lvextend", "-q", "-L", bytes, target, NULL};
	bool encrypted;
	uint64_t lv_bytes = req->size;
	int rc = lv_existing(cfg, req, &lv, err);

	if (rc == 0)
		rc = guest_device(&lv, &dev, err);
	if (rc < 0)
		return rc;
	encrypted = strcmp(dev.path, lv.path) != 0;
	if (req->size < dev.size)
		return vmd_error_set(err, VMD_E_TOOSMALL, "lvm: volumes only grow",
		                     "%llu < %llu",
		                     (unsigned long long)req->size,
		                     (unsigned long long)dev.size);
	if (req->size == dev.size)
		return fill_reply(&lv, rep, err);
	if (encrypted) {
		if (!(req->fields & VMD_PF_KEY_ID))
			return vmd_error_set(err, VMD_E_INVAL,
			                     "lvm: an encrypted volume grows only "
			                     "with its key",
			                     "%s is open as %s, no key id",
			                     lv.name, dev.path);
		/* The key first: without it the LV is left as it is. */
		rc = vmd_key_get(cfg, req->key_id, &key, err);
		if (rc < 0)
			return rc;
		lv_bytes = req->size + (lv.size - dev.size);
	}
	snprintf(bytes, sizeof(bytes), "%llub", (unsigned long long)lv_bytes);
	snprintf(target, sizeof(target), "%s/%s", lv.vg, lv.name);
	if (lv_bytes > lv.size)
		rc = run_lvm("lvm: grow volume", argv, NULL, err);
	if (rc == 0 && encrypted)
		rc = vmd_luks_resize(lv.name, key, err);
	if (rc == 0) {
		bool found;

		rc = lv_lookup(&lv, &found, err);
	}
	return rc < 0 ? rc : fill_reply(&lv, rep, err);
}

/* Nova's volume_clear: overwrite the data before the extents are freed. */
static int clear_volume(const struct lv *lv, enum vmd_priv_clear how,
                        uint64_t clear_mib, struct vmd_error *err)
{
	uint64_t len = lv->size;
	_cleanup_(closep) int fd = -1;
	int rc = 0;

	if (how == VMD_PRIV_CLEAR_NONE)
		return 0;
	if (clear_mib && clear_mib << 20 < len)
		len = clear_mib << 20;
	fd = open(lv->path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: clear volume failed", "open %s",
		                           lv->path);
	if (how == VMD_PRIV_CLEAR_ZERO) {
		rc = zero_range(fd, 0, len, err);
	} else {
		_cleanup_(freep) unsigned char *buf = malloc(WRITE_CHUNK);

		if (!buf)
			return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
			                     "shred");
		for (int pass = 0; rc == 0 && pass < SHRED_PASSES; pass++) {
			for (uint64_t off = 0; rc == 0 && off < len;) {
				size_t n = len - off < WRITE_CHUNK
				                   ? (size_t)(len - off)
				                   : WRITE_CHUNK;

				if (getrandom(buf, n, 0) != (ssize_t)n ||
				    vmd_pwrite_full(fd, buf, n, off) < 0)
					rc = vmd_error_set_errno(
						err, VMD_E_IO, errno,
						"lvm: clear volume failed",
						"shred at %llu",
						(unsigned long long)off);
				off += n;
			}
			if (rc == 0 && vmd_fdatasync(fd) < 0)
				rc = vmd_error_set_errno(
					err, VMD_E_IO, errno,
					"lvm: clear volume failed", "fsync");
		}
	}
	if (rc == 0 && vmd_fsync(fd) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "lvm: clear volume failed", "fsync");
	return rc;
}

int vmd_priv_lvm_remove(const struct vmd_config *cfg,
                        const struct vmd_priv_request *req,
                        struct vmd_priv_reply *rep, struct vmd_error *err)
{
	struct lv lv;
	bool found;
	/* The stronger of the request's and this configuration's choice
	 * (none < zero < shred; 0 MiB = all): a caller may ask for more
	 * clearing than the host's operator set, never for less. */
	enum vmd_priv_clear how = VMD_PRIV_CLEAR_ZERO; /* the default */
	uint64_t clear_mib = cfg->volume_clear_size;
	int rc = served_volume(cfg, req, &lv, err);

	(void)vmd_priv_clear_parse(cfg->volume_clear, &how);
	if ((req->fields & VMD_PF_CLEAR) && req->volume_clear > how)
		how = req->volume_clear;
	if ((req->fields & VMD_PF_CLEAR_SIZE) && clear_mib &&
	    (req->volume_clear_size == 0 ||
	     req->volume_clear_size > clear_mib))
		clear_mib = req->volume_clear_size;

	(void)rep;
	if (rc == 0)
		rc = lv_lookup(&lv, &found, err);
	if (rc < 0 || !found)
		return rc;
	/* Not ours: refused, nothing closed, cleared or removed. */
	if (!lv.ours)
		return not_ours(&lv, err);
	/* An encrypted disk: its mapping goes first (closing it fails while
	 * a guest has it open); the LV's own open count is then read again,
	 * without the mapping's hold on it. */
	{
		char mapped[PATH_MAX];
		int ours = vmd_luks_mapping_of(lv.name, lv.path, mapped,
		                               sizeof(mapped), err);

		rc = ours < 0 ? ours : 0;
		if (ours == 1)
			rc = vmd_luks_close(lv.name, err);
		if (ours == 1 && rc == 0)
			rc = lv_lookup(&lv, &found, err);
	}
	if (rc < 0 || !found)
		return rc;
	/* A guest still using it keeps it, data and all: clearing first and
	 * then failing in lvremove would wipe a running disk. */
	if (lv.open)
		return vmd_error_set(err, VMD_E_BUSY, "lvm: volume is in use",
		                     "%s/%s is open", lv.vg, lv.name);
	/* A thin LV's blocks go back to the pool, which hands them out
	 * zeroed; only thick extents keep what was written. */
	if (!lv.thin)
		rc = clear_volume(&lv, how, clear_mib, err);
	if (rc == 0)
		rc = lv_remove_now(&lv, err);
	return rc;
}

int vmd_priv_lvm_open_read(const struct vmd_config *cfg,
                           const struct vmd_priv_request *req,
                           struct vmd_priv_reply *rep, struct vmd_error *err)
{
	struct lv lv;
	int fd;
	int rc = lv_existing(cfg, req, &lv, err);

	/* The reply's path is the guest's device: the mapping or the LV. */
	if (rc == 0)
		rc = fill_reply(&lv, rep, err);
	if (rc < 0)
		return rc;
	fd = open(rep->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: open volume failed", "open %s",
		                           rep->path);
	rep->fd = fd;
	return 0;
}

int vmd_priv_mkfs(const struct vmd_config *cfg,
                  const struct vmd_priv_request *req,
                  struct vmd_priv_reply *rep, struct vmd_error *err)
{
	struct lv lv, dev;
	enum vmd_blank_fs fs;
	const char *label = req->fields & VMD_PF_LABEL ? req->label : NULL;
	const char *argv[8];
	struct vmd_run_opts ro = {.timeout_ms = MKFS_TIMEOUT_MS};
	int rc = lv_existing(cfg, req, &lv, err);

	if (rc == 0)
		rc = guest_device(&lv, &dev, err);
	if (rc == 0)
		rc = vmd_parse_blank_fs(req->fs, &fs, err);
	if (rc < 0)
		return rc;
	if (label && !vmd_valid_fs_label(fs, label))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "mkfs: label not allowed for this file "
		                     "system",
		                     "label of %zu bytes for %s", strlen(label),
		                     req->fs);
	vmd_mkfs_argv(fs, label, dev.path, argv);
	rc = vmd_run("mkfs: make file system", argv, &ro, NULL, err);
	return rc < 0 ? rc : fill_reply(&lv, rep, err);
}
