/*
 * The lvm backend: a disk is a logical volume `<instance>_<disk>` (an `_` in
 * the disk name doubled, Nova's rule) in images_volume_group: thick, or
 * with sparse_logical_volumes a thin LV in the thin pool lvm_thin_pool (the
 * modern way to over-commit; the old --virtualsize snapshot volumes are
 * not used). Sizes are rounded up to the VG's extent size.
 *
 * lvm2's tools run through the runner with argv arrays of validated names;
 * device paths come only from `lvs --reportformat json`, parsed with json-c,
 * never from joining strings. The base is written into the LV by our own
 * readers (raw, or qcow2 through the engine): on a thick LV every range the
 * base does not hold is zeroed (BLKZEROOUT), since the extents may hold an
 * earlier disk's data; a thin LV reads zeroes where nothing was written.
 * Any failure after the LV exists removes it before the error returns.
 * remove honours volume_clear (none, zero, shred) and volume_clear_size.
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

#include "blockdev.h"
#include "convert.h"
#include "faultpoint.h"
#include "fsutil.h"
#include "internal.h"
#include "keys.h"
#include "luks.h"
#include "runner.h"

#define LV_NAME_MAX 127        /* lvm2's limit */
#define LVM_TIMEOUT_MS 120000
#define WRITE_CHUNK (4u << 20)
#define SHRED_PASSES 3
/* libcryptsetup's default LUKS2 data offset: the LV is made this much
 * bigger, so the guest's disk (the mapping) has the size asked for. */
#define LUKS2_HEADER_BYTES (16ull << 20)

struct lv {
	char vg[VMD_NAME_MAX];
	char name[LV_NAME_MAX + 1];
	char path[PATH_MAX];     /* from lvs */
	uint64_t size;
	bool thin;
};

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
	if (!lvm_name_ok(out))
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
	return 0;
}

static int lv_init(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                   struct lv *lv, struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);

	int rc = lvm_check_config(ctx, err);

	memset(lv, 0, sizeof(*lv));
	if (rc < 0)
		return rc;
	snprintf(lv->vg, sizeof(lv->vg), "%s", cfg->images_volume_group);
	return lv_name(disk, lv->name, err);
}

static int run_lvm(const char *step, const char *const *argv, char **out,
                   struct vmd_error *err)
{
	struct vmd_run_opts ro = {.timeout_ms = LVM_TIMEOUT_MS};
	struct vmd_run_result res;
	int rc = vmd_run(step, argv, &ro, out ? &res : NULL, err);

	if (rc == 0 && out) {
		*out = res.out;
		res.out = NULL;
		vmd_run_result_free(&res);
	}
	return rc;
}

/* The first row of `report[0].<kind>` in lvm2's JSON report. */
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
	s = json_object_get_string(f);
	if (!s || !*s)
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static const char *field_str(json_object *row, const char *key)
{
	json_object *f;

	return json_object_object_get_ex(row, key, &f)
		       ? json_object_get_string(f)
		       : NULL;
}

static int vg_extent_size(const char *vg, uint64_t *extent,
                          struct vmd_error *err)
{
	const char *argv[] = {"vgs", "--reportformat", "json", "--units", "b",
	                      "--nosuffix", "-o", "vg_name,vg_extent_size",
	                      vg, NULL};
	VMD_AUTOFREE char *out = NULL;
	json_object *root, *rows;
	int rc = run_lvm("lvm: read volume group", argv, &out, err);

	if (rc < 0)
		return rc;
	root = json_tokener_parse(out);
	rows = root ? report_rows(root, "vg") : NULL;
	rc = rows && json_object_array_length(rows) == 1 &&
	             field_u64(json_object_array_get_idx(rows, 0),
	                       "vg_extent_size", extent) &&
	             *extent >= 512
	             ? 0
	             : vmd_error_set(err, VMD_E_EXTERNAL,
	                             "lvm: read volume group failed",
	                             "unexpected vgs output");
	json_object_put(root);
	return rc;
}

/* Fill lv->path/size/thin from lvs; *found false when there is no such LV. */
static int lv_lookup(struct lv *lv, bool *found, struct vmd_error *err)
{
	const char *argv[] = {"lvs", "--reportformat", "json", "--units", "b",
	                      "--nosuffix", "-o",
	                      "lv_name,vg_name,lv_path,lv_size,segtype", lv->vg,
	                      NULL};
	VMD_AUTOFREE char *out = NULL;
	json_object *root, *rows;
	int rc = run_lvm("lvm: list volumes", argv, &out, err);

	*found = false;
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
		*found = true;
		break;
	}
	json_object_put(root);
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

#define LV_AUTOREMOVE __attribute__((cleanup(lv_guard_run)))

static int lv_create(struct vmd_ctx *ctx, struct lv *lv, uint64_t size,
                     struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	char bytes[32], pool[VMD_NAME_MAX * 2 + 2];
	uint64_t extent;
	bool found;
	int rc = vg_extent_size(lv->vg, &extent, err);

	if (rc < 0)
		return rc;
	size = (size + extent - 1) / extent * extent;
	snprintf(bytes, sizeof(bytes), "%llub", (unsigned long long)size);
	if (cfg->sparse_logical_volumes) {
		if (!lvm_name_ok(cfg->lvm_thin_pool))
			return vmd_error_set(err, VMD_E_CONFIG,
			                     "lvm: bad lvm_thin_pool", "pool");
		snprintf(pool, sizeof(pool), "%s/%s", lv->vg,
		         cfg->lvm_thin_pool);
		const char *argv[] = {"lvcreate", "-q", "-y", "-V", bytes,
		                      "-T", pool, "-n", lv->name, NULL};

		rc = run_lvm("lvm: create volume", argv, NULL, err);
	} else {
		/* -Wy -Zy: wipe signatures and the first 4 KiB, so no stale
		 * header of an earlier volume shows through. */
		const char *argv[] = {"lvcreate", "-q", "-y", "-Wy", "-Zy",
		                      "-L", bytes, "-n", lv->name, lv->vg, NULL};

		rc = run_lvm("lvm: create volume", argv, NULL, err);
	}
	if (rc == 0)
		rc = lv_lookup(lv, &found, err);
	if (rc == 0 && !found)
		rc = vmd_error_set(err, VMD_E_EXTERNAL,
		                   "lvm: create volume failed",
		                   "%s not listed after lvcreate", lv->name);
	return rc;
}

static int zero_range(int fd, uint64_t off, uint64_t len,
                      struct vmd_error *err)
{
	uint64_t range[2] = {off, len};

	if (len == 0)
		return 0;
	if (ioctl(fd, BLKZEROOUT, range) == 0)
		return 0;
	/* Not a block device that zeroes (or not one at all): write. */
	VMD_AUTOFREE unsigned char *z = calloc(1, WRITE_CHUNK);

	if (!z)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "zero");
	while (len > 0) {
		size_t n = len < WRITE_CHUNK ? (size_t)len : WRITE_CHUNK;

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

/* Write base's guest view into the LV device; zero what it does not hold
 * unless the LV is thin (reads zeroes already). */
static int write_image(const struct lv *lv, const struct vmd_image *base,
                       struct vmd_error *err)
{
	__attribute__((cleanup(vmd_blockdev_closep))) struct vmd_blockdev *src =
		NULL;
	VMD_AUTOCLOSE int fd = open(lv->path, O_WRONLY | O_CLOEXEC);
	VMD_AUTOFREE unsigned char *buf = malloc(WRITE_CHUNK);
	uint64_t off = 0;
	int rc;

	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: open volume failed", "open %s",
		                           lv->path);
	if (!buf)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "buffer");
	rc = vmd_blockdev_open(base->path, base->format, 0, NULL, &src, err);
	if (rc < 0)
		return rc;
	while (off < lv->size) {
		uint64_t run;
		bool zero;

		rc = vmd_blockdev_status(src, off, lv->size - off, &run, &zero,
		                         err);
		if (rc < 0)
			return rc;
		if (run == 0)
			run = lv->size - off;
		if (run > WRITE_CHUNK && !zero)
			run = WRITE_CHUNK;
		if (zero) {
			rc = lv->thin ? 0 : zero_range(fd, off, run, err);
		} else {
			rc = vmd_blockdev_pread(src, buf, (size_t)run, off, err);
			if (rc == 0 && vmd_pwrite_full(fd, buf, (size_t)run, off) < 0)
				rc = vmd_error_set_errno(
					err, VMD_E_IO, errno,
					"lvm: write volume failed", "at %llu",
					(unsigned long long)off);
		}
		if (rc < 0)
			return rc;
		off += run;
	}
	if (fsync(fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: write volume failed", "fsync");
	return 0;
}

static void key_release(struct vmd_secret_key **k)
{
	vmd_key_free(*k);
}

/* The device the guest gets: the dm-crypt mapping of an encrypted LV. */
static bool mapping_path(const struct lv *lv, char *out, size_t outsz)
{
	struct stat st;

	snprintf(out, outsz, "/dev/mapper/%s" VMD_LUKS_SUFFIX, lv->name);
	return stat(out, &st) == 0 && S_ISBLK(st.st_mode);
}

static int lvm_create(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      const struct vmd_image *base, uint64_t size,
                      struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	struct lv lv;
	LV_AUTOREMOVE struct lv_guard guard = {NULL, false};
	__attribute__((cleanup(key_release))) struct vmd_secret_key *key = NULL;
	int rc = lv_init(ctx, disk, &lv, err);

	if (rc == 0 && base && base->format != VMD_FORMAT_RAW &&
	    base->format != VMD_FORMAT_QCOW2)
		rc = vmd_error_set(err, VMD_E_UNSUPPORTED,
		                   "lvm: base image format not supported",
		                   "base %s is %s", base->cache_id,
		                   vmd_format_name(base->format));
	/* The key first: a retrieval failure leaves nothing made at all. */
	if (rc == 0 && cfg->ephemeral_storage_encryption_enabled) {
		if (!disk->key_id)
			rc = vmd_error_set(err, VMD_E_INVAL,
			                   "lvm: encryption needs a key id",
			                   "no key id");
		else
			rc = vmd_key_get(cfg, disk->key_id, &key, err);
	}
	if (rc == 0)
		rc = lv_create(ctx, &lv, key ? size + LUKS2_HEADER_BYTES : size,
		               err);
	if (rc < 0)
		return rc;
	guard.lv = &lv;
	rc = vmd_faultpoint("lvm.after_create", err);
	if (rc == 0 && key) {
		char mapped[PATH_MAX];

		rc = vmd_luks_format(cfg, lv.path, key, err);
		if (rc == 0)
			rc = vmd_luks_open(lv.path, lv.name, key, mapped,
			                   sizeof(mapped), err);
		if (rc == 0) {
			guard.mapped = true;
			/* Data goes through the mapping, which is smaller
			 * than the LV by the LUKS header. */
			snprintf(lv.path, sizeof(lv.path), "%s", mapped);
			lv.thin = false;
			rc = vmd_faultpoint("lvm.after_luks_open", err);
		}
		if (rc == 0) {
			VMD_AUTOCLOSE int fd = open(mapped, O_RDONLY | O_CLOEXEC);
			off_t end = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);

			if (end < 0)
				rc = vmd_error_set_errno(
					err, VMD_E_IO, errno,
					"lvm: open encrypted volume failed",
					"%s", mapped);
			else
				lv.size = (uint64_t)end;
		}
	}
	if (rc == 0 && base)
		rc = write_image(&lv, base, err);
	if (rc == 0 && !base && !lv.thin) {
		/* A blank disk reads as zeroes, whatever the extents held. */
		VMD_AUTOCLOSE int fd = open(lv.path, O_WRONLY | O_CLOEXEC);

		rc = fd < 0 ? vmd_error_set_errno(err, VMD_E_IO, errno,
		                                  "lvm: open volume failed",
		                                  "open %s", lv.path)
		            : zero_range(fd, 0, lv.size, err);
		if (rc == 0 && fd >= 0 && fsync(fd) < 0)
			rc = vmd_error_set_errno(err, VMD_E_IO, errno,
			                         "lvm: write volume failed",
			                         "fsync");
	}
	if (rc < 0)
		return rc;
	guard.lv = NULL;
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

/* The LV of an existing disk. */
static int lv_existing(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                       struct lv *lv, struct vmd_error *err)
{
	bool found;
	int rc = lv_init(ctx, disk, lv, err);

	if (rc == 0)
		rc = lv_lookup(lv, &found, err);
	if (rc == 0 && !found)
		rc = vmd_error_set(err, VMD_E_NOTFOUND, "lvm: volume not found",
		                   "%s/%s", lv->vg, lv->name);
	return rc;
}

static int lvm_resize(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      uint64_t new_size, struct vmd_error *err)
{
	struct lv lv;
	char bytes[32], target[VMD_NAME_MAX + LV_NAME_MAX + 2];
	const char *argv[] = {"lvextend", "-q", "-L", bytes, target, NULL};
	int rc = lv_existing(ctx, disk, &lv, err);

	if (rc < 0)
		return rc;
	char mapped[PATH_MAX];

	if (mapping_path(&lv, mapped, sizeof(mapped)))
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "lvm: resizing an encrypted volume is not "
		                     "supported yet",
		                     "%s is open as %s", lv.name, mapped);
	if (new_size < lv.size)
		return vmd_error_set(err, VMD_E_TOOSMALL, "lvm: volumes only grow",
		                     "%llu < %llu",
		                     (unsigned long long)new_size,
		                     (unsigned long long)lv.size);
	if (new_size == lv.size)
		return 0;
	snprintf(bytes, sizeof(bytes), "%llub", (unsigned long long)new_size);
	snprintf(target, sizeof(target), "%s/%s", lv.vg, lv.name);
	return run_lvm("lvm: grow volume", argv, NULL, err);
}

static int lvm_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      bool *exists, struct vmd_error *err)
{
	struct lv lv;
	int rc = lv_init(ctx, disk, &lv, err);

	if (rc == 0)
		rc = lv_lookup(&lv, exists, err);
	return rc;
}

static int lvm_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                    struct vmd_disk_info *out, struct vmd_error *err)
{
	struct lv lv;
	int rc = lv_existing(ctx, disk, &lv, err);

	if (rc < 0)
		return rc;
	snprintf(out->format, sizeof(out->format), "raw");
	out->virtual_size = lv.size;
	if (mapping_path(&lv, out->path, sizeof(out->path))) {
		VMD_AUTOCLOSE int fd = open(out->path, O_RDONLY | O_CLOEXEC);
		off_t end = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);

		if (end > 0)
			out->virtual_size = (uint64_t)end;
	} else {
		snprintf(out->path, sizeof(out->path), "%s", lv.path);
	}
	out->actual_size = lv.size;
	out->backing[0] = '\0';
	return 0;
}

/* Nova's volume_clear: overwrite the data before the extents are freed. */
static int clear_volume(struct vmd_ctx *ctx, const struct lv *lv,
                        struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	uint64_t len = lv->size;
	VMD_AUTOCLOSE int fd = -1;
	int rc = 0;

	if (strcmp(cfg->volume_clear, "none") == 0)
		return 0;
	if (cfg->volume_clear_size &&
	    (uint64_t)cfg->volume_clear_size << 20 < len)
		len = (uint64_t)cfg->volume_clear_size << 20;
	fd = open(lv->path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "lvm: clear volume failed", "open %s",
		                           lv->path);
	if (strcmp(cfg->volume_clear, "zero") == 0) {
		rc = zero_range(fd, 0, len, err);
	} else {
		VMD_AUTOFREE unsigned char *buf = malloc(WRITE_CHUNK);

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
			if (rc == 0 && fdatasync(fd) < 0)
				rc = vmd_error_set_errno(
					err, VMD_E_IO, errno,
					"lvm: clear volume failed", "fsync");
		}
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "lvm: clear volume failed", "fsync");
	return rc;
}

static int lvm_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      struct vmd_error *err)
{
	struct lv lv;
	bool found;
	int rc = lv_init(ctx, disk, &lv, err);

	if (rc == 0)
		rc = lv_lookup(&lv, &found, err);
	if (rc < 0 || !found)
		return rc;
	/* An encrypted disk: the mapping goes first (a no-op when absent). */
	rc = vmd_luks_close(lv.name, err);
	if (rc < 0)
		return rc;
	/* A thin LV's blocks go back to the pool, which hands them out
	 * zeroed; only thick extents keep what was written. */
	if (!lv.thin)
		rc = clear_volume(ctx, &lv, err);
	if (rc == 0)
		rc = lv_remove_now(&lv, err);
	return rc;
}

static int lvm_snapshot_extract(struct vmd_ctx *ctx,
                                const struct vmd_disk_ref *disk,
                                const char *dst_path,
                                enum vmd_format dst_format,
                                struct vmd_error *err)
{
	struct lv lv;
	struct vmd_inspect_limits lim;
	struct vmd_convert_opts o = {
		.src_format = VMD_FORMAT_RAW,
		.dst_format = dst_format,
		.limits = &lim,
	};
	int rc = lv_existing(ctx, disk, &lv, err);

	if (rc < 0)
		return rc;
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	/* An encrypted disk's content is what its mapping shows. */
	char src[PATH_MAX];

	if (!mapping_path(&lv, src, sizeof(src)))
		snprintf(src, sizeof(src), "%s", lv.path);
	return vmd_convert_to_path(src, dst_path, &o, err);
}

static int lvm_xml_source(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                          struct vmd_xml_source *out, struct vmd_error *err)
{
	struct lv lv;
	int rc = lv_existing(ctx, disk, &lv, err);

	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->type = VMD_XML_BLOCK;
	snprintf(out->driver_type, sizeof(out->driver_type), "raw");
	if (!mapping_path(&lv, out->path, sizeof(out->path)))
		snprintf(out->path, sizeof(out->path), "%s", lv.path);
	out->preallocated = !lv.thin;
	return 0;
}

const struct vmd_backend_ops vmd_backend_lvm = {
	.abi_version = VMD_BACKEND_ABI_VERSION,
	.name = "lvm",
	.features = VMD_FEAT_PREALLOCATE,
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
