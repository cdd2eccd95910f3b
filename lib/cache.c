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
 * Until the format inspector lands, images are taken as raw, and files that
 * carry the magic of another image format are refused (fail closed: a qcow2
 * passed off as raw would hand the guest the host's view of its tables).
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

struct foreign_magic {
	size_t offset;
	size_t len;
	const char *bytes;
	const char *format;
};

/* Formats we cannot yet use safely: refuse rather than treat them as raw. */
static const struct foreign_magic foreign_magics[] = {
	{0, 4, "QFI\xfb", "qcow2"},
	{0, 4, "KDMV", "vmdk"},
	{0, 21, "# Disk DescriptorFile", "vmdk"},
	{0, 8, "conectix", "vhd"},
	{0, 8, "vhdxfile", "vhdx"},
	{64, 4, "\x7f\x10\xda\xbe", "vdi"},
	{0, 16, "WithoutFreeSpace", "parallels"},
	{0, 16, "WithouFreSpacExt", "parallels"},
	{0, 6, "LUKS\xba\xbe", "luks"},
	{0, 4, "QFI\xfc", "qed"},
	{0, 4, "QED\0", "qed"},
};

int vmd_cache_sniff_raw(int fd, struct vmd_error *err)
{
	unsigned char head[512] = {0};
	ssize_t n = pread(fd, head, sizeof(head), 0);

	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: read image failed", "pread");
	for (size_t i = 0; i < sizeof(foreign_magics) / sizeof(foreign_magics[0]);
	     i++) {
		const struct foreign_magic *m = &foreign_magics[i];

		if ((size_t)n >= m->offset + m->len &&
		    memcmp(head + m->offset, m->bytes, m->len) == 0) {
			char msg[96];

			snprintf(msg, sizeof(msg),
			         "cache: image format %s is not supported yet",
			         m->format);
			return vmd_error_set(err, VMD_E_UNSUPPORTED, msg,
			                     "magic of %s found", m->format);
		}
	}
	return 0;
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
	out->format = VMD_FORMAT_RAW;
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

int vmd_cache_source_size(const char *source, uint64_t *size,
                          struct vmd_error *err)
{
	char canon[PATH_MAX];
	VMD_AUTOCLOSE int fd = -1;
	struct stat st;
	int rc = open_local_source(source, &fd, canon, err);

	if (rc < 0)
		return rc;
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: read image failed", "fstat");
	*size = (uint64_t)st.st_size;
	return 0;
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
	struct stat st;
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
	if (stat(out->path, &st) == 0) {
		vmd_log_debug("cache: %s already cached", id);
		out->virtual_size = (uint64_t)st.st_size;
		return 0;
	}
	remove_stale_temporaries(ctx->cache_dir, id);

	rc = vmd_cache_sniff_raw(src, err);
	if (rc < 0)
		return rc;
	rc = vmd_tmpfile_open(&t, ctx->cache_dir, id, 0600, err);
	if (rc < 0)
		return rc;
	rc = vmd_copy_sparse(src, t.fd, err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache: copy image");
		return rc;
	}
	rc = vmd_faultpoint("cache.before_publish", err);
	if (rc < 0)
		return rc;
	if (fstat(t.fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: copy image failed", "fstat");
	rc = vmd_tmpfile_publish(&t, false, BASE_MODE, err);
	if (rc < 0)
		return rc;
	vmd_log_info("cache: fetched %s as %s", canon, id);
	out->virtual_size = (uint64_t)st.st_size;
	out->fetched = true;
	return 0;
}
