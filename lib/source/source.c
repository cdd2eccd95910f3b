/*
 * Source registry, checksums, the download sink and the `file` source
 * (see source.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto_lazy.h"
#include "bytes.h"
#include "fsutil.h"
#include "curl_common.h"
#include "curl_lazy.h"
#include "mover.h"
#include "progress.h"
#include "source.h"

#define ZERO_BLOCK 65536u
#define WRITEBACK_CHUNK (16u << 20)

/* ---- registry and checksums ---- */

int vmd_source_for(const char *url, const struct vmd_source_ops **ops,
                   struct vmd_error *err)
{
	const char *sep = url ? strstr(url, "://") : NULL;

	if (!url || !*url)
		return vmd_error_set(err, VMD_E_INVAL, "no image given",
		                     "empty source");
	*ops = NULL;
	if (!sep) {
		*ops = &vmd_source_file;
		return 0;
	}
	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
		*ops = &vmd_source_http;
	else if (strncmp(url, "glance://", 9) == 0)
		*ops = &vmd_source_glance;
	if (*ops == &vmd_source_http || *ops == &vmd_source_glance)
		return vmd_curl_load(err);
	if (strncmp(url, "file://", 7) == 0)
		*ops = &vmd_source_file;
	else
		return vmd_error_set(err, VMD_E_INVAL,
		                     "image source scheme not supported",
		                     "source scheme of '%.*s'",
		                     (int)(sep - url) > 16 ? 16 : (int)(sep - url),
		                     url);
	return 0;
}

bool vmd_locations_add(struct vmd_locations *l, const char *url, size_t len)
{
	size_t need;

	if (l->n == VMD_LOCATIONS_MAX ||
	    __builtin_add_overflow(len, (size_t)1, &need) ||
	    need > sizeof(l->buf) - l->used)
		return false;
	memcpy(l->buf + l->used, url, len);
	l->buf[l->used + len] = '\0';
	l->off[l->n++] = (uint16_t)l->used;
	l->used += need;
	return true;
}

int vmd_source_location(struct vmd_ctx *ctx, const char *source,
                        struct vmd_locations *out, struct vmd_error *err)
{
	const struct vmd_source_ops *ops;
	struct vmd_source_meta meta;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = vmd_source_for(source, &ops, err);
	/* Only Glance records a location beside the bytes. */
	if (rc < 0 || ops != &vmd_source_glance)
		return rc;
	memset(&meta, 0, sizeof(meta));
	rc = ops->resolve(ctx, source, &meta, err);
	if (rc < 0)
		return rc;
	vmd_source_meta_location(&meta, out);
	return 0;
}

void vmd_source_meta_location(const struct vmd_source_meta *meta,
                              struct vmd_locations *out)
{
	memset(out, 0, sizeof(*out));
	/* A clone is the image's bytes as they are: only a raw image can be a
	 * disk that way. Each location is parsed strictly later by the
	 * backend, like one given on the command line. */
	if (strcmp(meta->disk_format, "raw") != 0 || meta->locations.n == 0 ||
	    strncmp(vmd_locations_at(&meta->locations, 0), "rbd://", 6) != 0)
		return;
	*out = meta->locations;
}

void vmd_source_id_for_log(const char *id, char *out, size_t outsz)
{
	if (strstr(id, "://"))
		vmd_url_for_log(id, out, outsz);
	else if (outsz > 0)
		snprintf(out, outsz, "%s", id);
}

static const struct {
	enum vmd_hash_algo algo;
	const char *name;
	size_t hex_len;
} hashes[] = {
	{VMD_HASH_MD5, "md5", 32},
	{VMD_HASH_SHA256, "sha256", 64},
	{VMD_HASH_SHA512, "sha512", 128},
};

const char *vmd_hash_name(enum vmd_hash_algo a)
{
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
		if (hashes[i].algo == a)
			return hashes[i].name;
	return "none";
}

int vmd_hash_from_name(const char *name, enum vmd_hash_algo *a)
{
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
		if (strcmp(hashes[i].name, name) == 0) {
			*a = hashes[i].algo;
			return 0;
		}
	}
	return -1;
}

static size_t hash_hex_len(enum vmd_hash_algo a)
{
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
		if (hashes[i].algo == a)
			return hashes[i].hex_len;
	return 0;
}

int vmd_hash_parse(const char *spec, enum vmd_hash_algo *algo,
                   char hex[VMD_HASH_HEX_MAX], struct vmd_error *err)
{
	const char *colon = spec ? strchr(spec, ':') : NULL;
	char name[16];
	size_t len;

	if (!colon || (size_t)(colon - spec) >= sizeof(name))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "checksum must be ALG:HEX (md5, sha256, sha512)",
		                     "no algorithm");
	memcpy(name, spec, (size_t)(colon - spec));
	name[colon - spec] = '\0';
	if (vmd_hash_from_name(name, algo) < 0)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "checksum algorithm must be md5, sha256 or sha512",
		                     "algorithm %.15s", name);
	len = strlen(colon + 1);
	if (len != hash_hex_len(*algo))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "checksum has the wrong length",
		                     "%zu hex digits for %s", len, name);
	for (size_t i = 0; i < len; i++) {
		char c = colon[1 + i];

		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return vmd_error_set(err, VMD_E_INVAL,
			                     "checksum is not hexadecimal",
			                     "digit %zu", i);
		hex[i] = c;
	}
	hex[len] = '\0';
	return 0;
}

/* ---- sink ---- */

struct vmd_sink {
	int fd;
	enum vmd_hash_algo algo;
	EVP_MD_CTX *md;
	uint64_t offset;
	uint64_t written_back; /* writeback started up to here */
	uint64_t limit; /* 0 = none */
	mode_t mode_cap; /* permission bits the copy may have at most */
	vmd_sink_progress_fn progress;
	uint64_t progress_total;
	void *progress_opaque;
	unsigned char zeros[ZERO_BLOCK];
};

static const EVP_MD *evp_of(enum vmd_hash_algo a)
{
	switch (a) {
	case VMD_HASH_MD5: return EVP_md5();
	case VMD_HASH_SHA256: return EVP_sha256();
	case VMD_HASH_SHA512: return EVP_sha512();
	case VMD_HASH_NONE: break;
	}
	return EVP_sha256();
}

struct vmd_sink *vmd_sink_new(int fd, enum vmd_hash_algo algo, uint64_t limit,
                              struct vmd_error *err)
{
	struct vmd_sink *s;

	/* The one place a digest is made: libcrypto is loaded here. */
	if (vmd_crypto_load(err) < 0) {
		vmd_error_prefix(err, "cache"); /* its fetch and rehash */
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s || !(s->md = EVP_MD_CTX_new()) ||
	    !EVP_DigestInit_ex(s->md, evp_of(algo), NULL)) {
		vmd_sink_free(s);
		vmd_error_set(err, VMD_E_NOMEM, "out of memory", "sink");
		return NULL;
	}
	s->fd = fd;
	s->algo = algo == VMD_HASH_NONE ? VMD_HASH_SHA256 : algo;
	s->limit = limit;
	s->mode_cap = 0777;
	return s;
}

void vmd_sink_free(struct vmd_sink *s)
{
	if (!s)
		return;
	EVP_MD_CTX_free(s->md);
	free(s);
}

void vmd_sink_set_progress(struct vmd_sink *s, vmd_sink_progress_fn fn,
                           uint64_t total, void *opaque)
{
	s->progress = fn;
	s->progress_total = total;
	s->progress_opaque = opaque;
}

void vmd_sink_cap_mode(struct vmd_sink *s, mode_t mode)
{
	s->mode_cap &= mode & 0777;
}

mode_t vmd_sink_mode_cap(const struct vmd_sink *s)
{
	return s->mode_cap;
}

uint64_t vmd_sink_offset(const struct vmd_sink *s)
{
	return s->offset;
}

static int sink_take(struct vmd_sink *s, uint64_t len, struct vmd_error *err)
{
	if (s->limit && (s->offset + len < s->offset ||
	                 s->offset + len > s->limit))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "image larger than max_image_download_size",
		                     "more than %llu bytes",
		                     (unsigned long long)s->limit);
	return 0;
}

static void sink_advance(struct vmd_sink *s, uint64_t len)
{
	s->offset += len;
	if (s->progress)
		s->progress(s->offset, s->progress_total, s->progress_opaque);
}

int vmd_sink_write(struct vmd_sink *s, const void *buf, size_t len,
                   struct vmd_error *err)
{
	const unsigned char *p = buf;
	int rc = sink_take(s, len, err);

	if (rc < 0)
		return rc;
	if (!EVP_DigestUpdate(s->md, p, len))
		return vmd_error_set(err, VMD_E_IO, "hash failed",
		                     "EVP_DigestUpdate");
	/* Zero blocks that fall on block boundaries are not written: they
	 * stay holes, as in the image the source describes. */
	for (size_t done = 0; done < len;) {
		uint64_t at = s->offset + done;
		size_t n = (size_t)(ZERO_BLOCK - at % ZERO_BLOCK);

		if (n > len - done)
			n = len - done;
		if (!(n == ZERO_BLOCK && vmd_all_zero(p + done, n)) &&
		    vmd_pwrite_full(s->fd, p + done, n, at) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "write image failed",
			                           "at %llu",
			                           (unsigned long long)at);
		done += n;
	}
	sink_advance(s, len);
	/* Start the disk writing what we have while the rest comes in, so
	 * that the fsync before publishing finds little left to do. Only a
	 * hint: a failure here shows at that fsync. */
	if (s->offset - s->written_back >= WRITEBACK_CHUNK) {
		(void)sync_file_range(s->fd, (off_t)s->written_back,
		                      (off_t)(s->offset - s->written_back),
		                      SYNC_FILE_RANGE_WRITE);
		s->written_back = s->offset;
	}
	return 0;
}

int vmd_sink_skip_zeros(struct vmd_sink *s, uint64_t len,
                        struct vmd_error *err)
{
	int rc = sink_take(s, len, err);

	if (rc < 0)
		return rc;
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < ZERO_BLOCK ? (size_t)(len - done)
		                                   : ZERO_BLOCK;

		if (!EVP_DigestUpdate(s->md, s->zeros, n))
			return vmd_error_set(err, VMD_E_IO, "hash failed",
			                     "EVP_DigestUpdate");
		done += n;
	}
	sink_advance(s, len);
	return 0;
}

int vmd_sink_restart(struct vmd_sink *s, struct vmd_error *err)
{
	if (vmd_ftruncate(s->fd, 0) < 0 ||
	    !EVP_DigestInit_ex(s->md, evp_of(s->algo), NULL))
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "write image failed", "restart");
	s->offset = 0;
	s->written_back = 0;
	return 0;
}

int vmd_sink_finish(struct vmd_sink *s, char hex[VMD_HASH_HEX_MAX],
                    struct vmd_error *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	struct stat st;

	/* Only a file has a length to fix: a sink over /dev/null (a second
	 * digest of a cached image) gets EINVAL from ftruncate. */
	if (fstat(s->fd, &st) < 0 ||
	    (S_ISREG(st.st_mode) && vmd_ftruncate(s->fd, s->offset) < 0))
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "write image failed", "ftruncate");
	if (!EVP_DigestFinal_ex(s->md, md, &n))
		return vmd_error_set(err, VMD_E_IO, "hash failed",
		                     "EVP_DigestFinal_ex");
	for (unsigned int i = 0; i < n; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* ---- the file source ---- */

static const char *file_path(const char *url)
{
	return strncmp(url, "file://", 7) == 0 ? url + 7 : url;
}

static int file_resolve(struct vmd_ctx *ctx, const char *url,
                        struct vmd_source_meta *meta, struct vmd_error *err)
{
	char canon[PATH_MAX];
	struct stat st;

	(void)ctx;
	memset(meta, 0, sizeof(*meta));
	if (!realpath(file_path(url), canon))
		return vmd_error_set_errno(err,
		                           errno == ENOENT ? VMD_E_NOTFOUND
		                                           : VMD_E_IO,
		                           errno, "image not found", "realpath");
	if (stat(canon, &st) < 0 || !S_ISREG(st.st_mode))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "image is not a regular file", "%s", canon);
	if (snprintf(meta->id, sizeof(meta->id), "%s", canon) >=
	    (int)sizeof(meta->id))
		return vmd_error_set(err, VMD_E_INVAL, "image path too long",
		                     "%s", canon);
	meta->size = (uint64_t)st.st_size;
	return 0;
}

/* Hash a file we hold (a second algorithm, rarely needed). */
int vmd_hash_fd(int fd, enum vmd_hash_algo algo, char hex[VMD_HASH_HEX_MAX],
                struct vmd_error *err)
{
	_cleanup_(freep) unsigned char *buf = malloc(1 << 20);
	struct vmd_sink *s = NULL;
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	uint64_t off = 0;
	int rc = 0;

	if (!buf || devnull < 0) {
		if (devnull >= 0)
			close(devnull);
		return vmd_error_set(err, VMD_E_NOMEM, "cache: out of memory",
		                     "hash buffer");
	}
	/* A sink over /dev/null: the digest without a second copy. */
	s = vmd_sink_new(devnull, algo, 0, err);
	for (ssize_t n; rc == 0 && s &&
	                (n = pread(fd, buf, 1 << 20, (off_t)off)) != 0;) {
		if (n < 0)
			rc = vmd_error_set_errno(err, VMD_E_IO, errno,
			                         "cache: read failed", "rehash");
		else
			rc = vmd_sink_write(s, buf, (size_t)n, err);
		off += n > 0 ? (uint64_t)n : 0;
	}
	if (rc == 0 && s) {
		/* finish leaves a device such as /dev/null alone */
		char tmp[VMD_HASH_HEX_MAX];

		rc = vmd_sink_finish(s, tmp, err);
		if (rc == 0)
			memcpy(hex, tmp, sizeof(tmp));
	}
	if (!s)
		rc = VMD_E_NOMEM;
	vmd_sink_free(s);
	close(devnull);
	return rc;
}

int vmd_source_open_local(const struct vmd_source_meta *meta, int *fd,
                          struct vmd_error *err)
{
	/* O_NONBLOCK: a FIFO swapped in since resolve must not hang us. */
	*fd = open(meta->id, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (*fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "open image failed", "open %s",
		                           meta->id);
	return 0;
}

static int sink_write(void *opaque, const void *buf, size_t len,
                      uint64_t off, struct vmd_error *err)
{
	(void)off; /* ordered: off is where the sink is */
	return vmd_sink_write(opaque, buf, len, err);
}

static int sink_skip(void *opaque, uint64_t len, struct vmd_error *err)
{
	return vmd_sink_skip_zeros(opaque, len, err);
}

static int file_download(struct vmd_ctx *ctx, const char *url,
                         const struct vmd_source_meta *meta,
                         struct vmd_sink *sink, struct vmd_error *err)
{
	/* O_NONBLOCK: a FIFO swapped in since resolve must not hang us. */
	_cleanup_(closep) int fd =
		open(meta->id, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	struct stat st;
	char path[32];
	struct vmd_move_bd_src bs = {.format = VMD_FORMAT_RAW};
	struct vmd_move_src src = {.ops = &vmd_move_bd_ops, .opaque = &bs,
	                           .raw_fd = -1};
	/* The sink hashes what it takes: every byte in order, holes kept
	 * (skip). */
	struct vmd_move_dst dst = {
		.fd = -1,
		.reads_zero = true,
		.write = sink_write,
		.skip = sink_skip,
		.opaque = sink,
		.ordered = true,
	};

	(void)ctx;
	(void)url;
	if (fd < 0 || fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "open image failed", "open %s",
		                           meta->id);
	if (!S_ISREG(st.st_mode))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "image is not a regular file", "%s",
		                     meta->id);
	/* The copy is never more readable than the file it comes from (a
	 * root-only image stays root-only); the mode of the file read, not
	 * of the path resolved before. */
	vmd_sink_cap_mode(sink, st.st_mode & 0777);
	/* The descriptor just checked, never the name again. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	bs.path = path;
	src.size = (uint64_t)st.st_size;
	/* The step the user sees is the cache's fetch (its one caller
	 * prefixes "cache" too): "cache: write image failed" as before.
	 * Its progress is the download's (the sink reports it): the
	 * caller's step hook is not told of this copy a second time. */
	VMD_PROGRESS_SCOPE(((struct vmd_progress_hook){NULL, NULL}));
	return vmd_move(&src, &dst, NULL, "cache", err);
}

const struct vmd_source_ops vmd_source_file = {
	.scheme = "file",
	.resolve = file_resolve,
	.download = file_download,
};
