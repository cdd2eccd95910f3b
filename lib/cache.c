/*
 * The base-image cache, first slice: local file sources.
 *
 * An entry is <instances_path>/<cache dir>/<sha1 of the source id>, where the
 * source id of a local file is its canonical path. Fetching is single-flight
 * by construction:
 *   1. take the entry's exclusive lock (locks/base-<id>.lock);
 *   2. only now look for the entry: a caller that waited finds the winner's
 *      file and reuses it; there is no check-then-act window;
 *   3. remove temporaries a dead fetcher left (only a lock holder writes
 *      them, so any found now are stale);
 *   4. copy into an anonymous temporary in the cache directory, fsync, link
 *      it under the final name, fsync the directory.
 * A fetch that fails or is killed leaves nothing under the final name, and
 * its lock dies with it.
 *
 * Every image is inspected (lib/inspect.c) before it is published, and a
 * cached entry again each time it is used: a refused image never gets an
 * entry, and an entry that today's checks refuse is not used.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "convert.h"
#include <vmdisk/inspect.h>
#include "faultpoint.h"
#include "fsutil.h"

#define BASE_MODE 0644 /* shared, read-only backing files */

int vmd_cache_id(const char *source_id, char out[41], struct vmd_error *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(source_id, strlen(source_id), md, &mdlen, EVP_sha1(),
	                NULL) ||
	    mdlen != 20)
		return vmd_error_set(err, VMD_E_IO, "cache: hash failed",
		                     "EVP_Digest sha1");
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* What the inspector says of an open image, as a format we can use. */
static int check_image(struct vmd_ctx *ctx, int fd, enum vmd_format *format,
                       uint64_t *virtual_size, struct vmd_error *err)
{
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	char msg[VMD_ERROR_MSG_MAX];
	int rc;

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = ctx->cfg.max_image_virtual_size;
	rc = vmd_inspect_fd(fd, &lim, 0, &r, err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	if (!r.safe) {
		size_t o = (size_t)snprintf(msg, sizeof(msg),
		                            "cache: image refused:");

		for (unsigned i = 0; i < r.n_reasons; i++) {
			vmd_log_warning("cache: image refused: %s: %s",
			                r.reasons[i].code, r.reasons[i].text);
			if (o < sizeof(msg))
				o += (size_t)snprintf(msg + o, sizeof(msg) - o,
				                      "%s %s", i ? "," : "",
				                      r.reasons[i].code);
		}
		return vmd_error_set(err, VMD_E_REFUSED, msg,
		                     "%u failed check(s), see above",
		                     r.n_reasons);
	}
	*virtual_size = r.virtual_size;
	if (vmd_image_format_is_raw(r.format)) {
		*format = VMD_FORMAT_RAW;
		return 0;
	}
	if (r.format == VMD_IMG_QCOW2) {
		*format = VMD_FORMAT_QCOW2;
		return 0;
	}
	snprintf(msg, sizeof(msg), "cache: image format %s is not supported",
	         vmd_image_format_name(r.format));
	return vmd_error_set(err, VMD_E_UNSUPPORTED, msg, "inspected as %s",
	                     vmd_image_format_name(r.format));
}

/* Temporaries of this entry that a dead holder of its lock left behind. */
static void remove_stale_temporaries(const char *dir, const char *id)
{
	char prefix[128];
	size_t plen;
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s%s-",
	                        VMD_TMP_PREFIX, id);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, plen) != 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			vmd_log_info("cache: removed stale temporary %s",
			             de->d_name);
	}
	closedir(d);
}

static int fill_entry(struct vmd_ctx *ctx, const char *id, uint64_t size,
                      bool fetched, struct vmd_cache_entry *out,
                      struct vmd_error *err)
{
	memcpy(out->id, id, sizeof(out->id));
	out->virtual_size = size;
	out->fetched = fetched;
	if (snprintf(out->path, sizeof(out->path), "%s/%s", ctx->cache_dir,
	             id) >= (int)sizeof(out->path))
		return vmd_error_set(err, VMD_E_INVAL, "cache: path too long",
		                     "cache directory path too long");
	return 0;
}

/* Open a local source and derive its id; refuses anything but a file. */
static int open_local_source(const char *source, int *fd_out,
                             char canon[PATH_MAX], struct vmd_error *err)
{
	struct stat st;
	int fd;

	if (!realpath(source, canon))
		return vmd_error_set_errno(err,
		                           errno == ENOENT ? VMD_E_NOTFOUND
		                                           : VMD_E_IO,
		                           errno, "cache: image not found",
		                           "realpath");
	/* O_NONBLOCK: a FIFO must not hang us before fstat refuses it. */
	fd = open(canon, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: open image failed", "open %s",
		                           canon);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return vmd_error_set(err, VMD_E_INVAL,
		                     "cache: image is not a regular file",
		                     "%s", canon);
	}
	*fd_out = fd;
	return 0;
}

/*
 * force_raw_images (Nova's fetch_to_raw): the qcow2 just copied into `q`
 * becomes a raw temporary, converted once here rather than read through
 * the qcow2 layer by every disk made from it.
 */
static int convert_to_raw(struct vmd_ctx *ctx, struct vmd_tmpfile *q,
                          const char *id, struct vmd_tmpfile *raw,
                          struct vmd_error *err)
{
	char src[64];
	struct vmd_inspect_limits lim;
	struct vmd_convert_opts o = {
		.src_format = VMD_FORMAT_QCOW2,
		.dst_format = VMD_FORMAT_RAW,
		.limits = &lim,
	};
	int rc;

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = ctx->cfg.max_image_virtual_size;
	/* The copy may be anonymous (O_TMPFILE): reach it through /proc. */
	snprintf(src, sizeof(src), "/proc/self/fd/%d", q->fd);
	rc = vmd_tmpfile_open(raw, ctx->cache_dir, id, 0600, err);
	if (rc == 0)
		rc = vmd_convert_to_fd(src, raw->fd, &o, err);
	if (rc < 0)
		vmd_error_prefix(err, "cache: convert to raw");
	else
		vmd_log_info("cache: %s converted from qcow2 to raw", id);
	return rc;
}

int vmd_cache_source_check(struct vmd_ctx *ctx, const char *source,
                           uint64_t *virtual_size, struct vmd_error *err)
{
	char canon[PATH_MAX];
	VMD_AUTOCLOSE int fd = -1;
	enum vmd_format format;
	int rc = open_local_source(source, &fd, canon, err);

	if (rc < 0)
		return rc;
	return check_image(ctx, fd, &format, virtual_size, err);
}

int vmd_cache_fetch(struct vmd_ctx *ctx, const char *source,
                    struct vmd_cache_entry *out, struct vmd_error *err)
{
	char canon[PATH_MAX];
	char id[41];
	char lockname[64];
	VMD_AUTOCLOSE int src = -1;
	VMD_AUTOLOCK struct vmd_lock lock = VMD_LOCK_INIT;
	VMD_AUTOTMP struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	VMD_AUTOTMP struct vmd_tmpfile raw = VMD_TMPFILE_INIT;
	VMD_AUTOCLOSE int cached = -1;
	int rc;

	if (!source || !*source)
		return vmd_error_set(err, VMD_E_INVAL, "cache: no image given",
		                     "empty source");
	rc = open_local_source(source, &src, canon, err);
	if (rc < 0)
		return rc;
	rc = vmd_cache_id(canon, id, err);
	if (rc < 0)
		return rc;
	rc = vmd_mkdir_p(ctx->cache_dir, 0755, err);
	if (rc < 0)
		return rc;
	snprintf(lockname, sizeof(lockname), "base-%s", id);
	rc = vmd_lock_acquire(&lock, ctx->lock_dir, lockname,
	                      VMD_LOCK_EXCLUSIVE, ctx->cfg.lock_timeout_seconds,
	                      err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	rc = vmd_faultpoint("cache.locked", err);
	if (rc < 0)
		return rc;
	rc = fill_entry(ctx, id, 0, false, out, err);
	if (rc < 0)
		return rc;
	cached = open(out->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (cached >= 0) {
		/* Checks may have grown since it was fetched: inspect again. */
		vmd_log_debug("cache: %s already cached", id);
		return check_image(ctx, cached, &out->format,
		                   &out->virtual_size, err);
	}
	remove_stale_temporaries(ctx->cache_dir, id);

	rc = vmd_tmpfile_open(&t, ctx->cache_dir, id, 0600, err);
	if (rc < 0)
		return rc;
	rc = vmd_copy_sparse(src, t.fd, err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache: copy image");
		return rc;
	}
	/* The copy is what we will use, so the copy is what we inspect; a
	 * refusal discards it and no entry ever appears. */
	rc = check_image(ctx, t.fd, &out->format, &out->virtual_size, err);
	if (rc < 0)
		return rc;
	if (out->format == VMD_FORMAT_QCOW2 && ctx->cfg.force_raw_images) {
		rc = convert_to_raw(ctx, &t, id, &raw, err);
		if (rc < 0)
			return rc;
		rc = check_image(ctx, raw.fd, &out->format, &out->virtual_size,
		                 err);
		if (rc < 0)
			return rc;
	}
	rc = vmd_faultpoint("cache.before_publish", err);
	if (rc < 0)
		return rc;
	rc = vmd_tmpfile_publish(raw.fd >= 0 ? &raw : &t, false, BASE_MODE,
	                         err);
	if (rc < 0)
		return rc;
	vmd_log_info("cache: fetched %s as %s", canon, id);
	out->fetched = true;
	return 0;
}
