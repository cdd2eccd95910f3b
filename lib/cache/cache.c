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
 * The cache directory, its entries and side files are reached by
 * descriptor beneath instances_path (lib/beneath.c): a link planted as the
 * cache directory or as an entry is refused, never followed. The entry's
 * path is only printed (a qcow2 overlay's backing name).
 *
 * Every image is inspected (lib/inspect.c) before it is published, and a
 * cached entry again each time it is used: a refused image never gets an
 * entry, and an entry that today's checks refuse is not used.
 *
 * Bases are shared read-only with one group (image_cache_group, by default
 * the group that owns instances_path: whoever runs the guests): published
 * 0640, in a cache directory 0750 of that group, and never with a bit the
 * file they were copied from lacks. The side records are 0640 too, and a
 * source URL is stored and logged only without its query and userinfo (a
 * signed URL's signature).
 */
#include <dirent.h>
#include <grp.h>
#include "jsonc_lazy.h"
#include <strings.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "crypto_lazy.h"
#include "cache.h"
#include "convert.h"
#include "source.h"
#include <vmdisk/inspect.h>
#include "faultpoint.h"
#include "fsutil.h"

#define BASE_MODE 0640      /* read-only backing files, for the group */
#define CACHE_DIR_MODE 0750 /* the group reaches them, nobody else */
#define INFO_MODE 0640      /* the side records (.<id>.json, .failed) */
#define GROUP_BUF_MAX (1 << 20)

int vmd_cache_id(const char *source_id, char out[41], struct vmd_error *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int rc = vmd_crypto_load(err);

	if (rc < 0)
		return rc;
	if (!EVP_Digest(source_id, strlen(source_id), md, &mdlen, EVP_sha1(),
	                NULL) ||
	    mdlen != 20)
		return vmd_error_set(err, VMD_E_IO, "cache: hash failed",
		                     "EVP_Digest sha1");
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/*
 * The group bases are shared with: image_cache_group, else the group that
 * owns instances_path.
 */
static int cache_group(struct vmd_ctx *ctx, gid_t *gid,
                       struct vmd_error *err)
{
	const char *name = ctx->cfg.image_cache_group;
	size_t bufsz = 4096;
	struct stat st;

	if (!name[0]) {
		int root, rc = vmd_beneath_root(ctx, true, &root, err);

		if (rc < 0)
			return rc;
		if (fstat(root, &st) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "cache: cannot read "
			                           "instances_path",
			                           "fstat %s",
			                           ctx->cfg.instances_path);
		*gid = st.st_gid;
		return 0;
	}
	for (;;) {
		_cleanup_(freep) char *buf = malloc(bufsz);
		struct group gr, *res = NULL;
		int rc;

		if (!buf)
			return vmd_error_set(err, VMD_E_NOMEM,
			                     "cache: out of memory", "group buffer");
		rc = getgrnam_r(name, &gr, buf, bufsz, &res);
		if (rc == ERANGE && bufsz < GROUP_BUF_MAX) {
			bufsz *= 4;
			continue;
		}
		if (rc != 0 || !res)
			return vmd_error_set(err, VMD_E_CONFIG,
			                     "cache: image_cache_group not found",
			                     "group '%s': %s", name,
			                     rc ? strerror(rc) : "no such group");
		*gid = gr.gr_gid;
		return 0;
	}
}

int vmd_cache_give_group(int fd, gid_t gid, struct vmd_error *err)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: write file failed", "fstat");
	/* Only when it differs: a caller outside the group may still own a
	 * file that already has it. */
	if (st.st_gid != gid && fchown(fd, (uid_t)-1, gid) < 0)
		return vmd_error_set_errno(err, VMD_E_REFUSED, errno,
		                           "cache: cannot give the file to "
		                           "image_cache_group",
		                           "fchown to gid %u", (unsigned)gid);
	return 0;
}

int vmd_cache_dir_prepare(struct vmd_ctx *ctx, int *cache_fd, gid_t *gid,
                          struct vmd_error *err)
{
	struct stat st;
	int rc = cache_group(ctx, gid, err);

	if (rc == 0)
		rc = vmd_beneath_cache_dir(ctx, true, CACHE_DIR_MODE, cache_fd,
		                           err);
	if (rc < 0)
		return rc;
	if (fstat(*cache_fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "cache: cannot open the cache "
		                           "directory",
		                           "fstat %s", ctx->cache_dir);
	/* A directory someone else made for us is theirs to set. */
	if (st.st_uid != geteuid())
		return 0;
	rc = vmd_cache_give_group(*cache_fd, *gid, err);
	if (rc == 0 && (st.st_mode & 07777) != CACHE_DIR_MODE &&
	    fchmod(*cache_fd, CACHE_DIR_MODE) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "cache: cannot set the cache "
		                         "directory's mode",
		                         "fchmod %s", ctx->cache_dir);
	return rc;
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

/*
 * force_raw_images (Nova's fetch_to_raw): the qcow2 just copied into `q`
 * becomes a raw temporary, converted once here rather than read through
 * the qcow2 layer by every disk made from it.
 */
static int convert_to_raw(struct vmd_ctx *ctx, int cache_fd,
                          struct vmd_tmpfile *q, const char *id,
                          struct vmd_tmpfile *raw, struct vmd_error *err)
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
	rc = vmd_tmpfile_openat(raw, cache_fd, id, 0600, err);
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
	const struct vmd_source_ops *ops;
	struct vmd_source_meta meta;
	_cleanup_(closep) int fd = -1;
	enum vmd_format format;
	int rc = vmd_source_for(source, &ops, err);

	*virtual_size = 0;
	/* Only a local file can be inspected where it is; a remote image is
	 * inspected once downloaded, before it gets an entry. */
	if (rc < 0 || ops != &vmd_source_file)
		return rc;
	rc = ops->resolve(ctx, source, &meta, err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	rc = vmd_source_open_local(&meta, &fd, err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	return check_image(ctx, fd, &format, virtual_size, err);
}

/* ---- entry side files ---- */

/* The side records an entry may have, each written atomically. */
static const char *const side_kinds[] = {"json", "failed"};

static void side_name(char *buf, size_t bufsz, const char *id,
                      const char *suffix)
{
	snprintf(buf, bufsz, ".%s.%s", id, suffix);
}

#define SIDE_MAX_BYTES 65536

void vmd_cache_read_info(int cache_fd, const char *name, char *algo,
                         size_t algosz, char *hash, size_t hashsz)
{
	char side[VMD_CACHE_ID_MAX + 16];
	_cleanup_(freep) char *text = NULL;
	struct json_object *o, *v;
	struct vmd_error ignored = VMD_ERROR_INIT;
	size_t len;

	algo[0] = hash[0] = '\0';
	side_name(side, sizeof(side), name, "json");
	/* Without json-c (loaded on first use) the side record is unread,
	 * as when it is missing: it only informs. */
	if (vmd_jsonc_load(&ignored) < 0 ||
	    vmd_bread_file(cache_fd, side, SIDE_MAX_BYTES, &text, &len) < 0)
		return;
	o = json_tokener_parse(text);
	if (!o)
		return;
	if (json_object_object_get_ex(o, "hash_algo", &v))
		snprintf(algo, algosz, "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "hash", &v))
		snprintf(hash, hashsz, "%s", json_object_get_string(v));
	json_object_put(o);
}

/* What the fetcher recorded about an entry (for --json). */
static void read_info(int cache_fd, struct vmd_cache_entry *out)
{
	vmd_cache_read_info(cache_fd, out->id, out->hash_algo,
	                    sizeof(out->hash_algo), out->hash,
	                    sizeof(out->hash));
}

static int write_info(int cache_fd, const struct vmd_cache_entry *e,
                      const struct vmd_source_meta *meta,
                      enum vmd_format original, struct vmd_error *err)
{
	char name[VMD_CACHE_ID_MAX + 16];
	struct json_object *o;
	char shown[sizeof(meta->id)];
	int rc = vmd_jsonc_load(err);

	if (rc < 0)
		return rc;
	o = json_object_new_object();
	/* Never a signed URL's query: the record outlives the signature's
	 * validity and more people read it than fetch. */
	vmd_source_id_for_log(meta->id, shown, sizeof(shown));
	json_object_object_add(o, "source", json_object_new_string(shown));
	json_object_object_add(o, "hash_algo",
	                       json_object_new_string(e->hash_algo));
	json_object_object_add(o, "hash", json_object_new_string(e->hash));
	json_object_object_add(o, "format",
	                       json_object_new_string(vmd_format_name(e->format)));
	json_object_object_add(o, "original_format",
	                       json_object_new_string(vmd_format_name(original)));
	json_object_object_add(o, "fetched_at",
	                       json_object_new_int64((int64_t)time(NULL)));
	const char *text = json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);

	side_name(name, sizeof(name), e->id, "json");
	rc = vmd_write_file_atomicat(cache_fd, name, text, strlen(text),
	                             INFO_MODE, true, err);
	json_object_put(o);
	return rc;
}

/* The record of an entry that failed to be published. */
static void remove_info(int cache_fd, const char *id)
{
	char name[VMD_CACHE_ID_MAX + 16];

	side_name(name, sizeof(name), id, "json");
	vmd_bunlink(cache_fd, name, 0);
}

/*
 * A failed fetch leaves ".<id>.failed" (code and public message) so that
 * the callers who were waiting on the lock get the winner's error instead
 * of each trying again; a caller who arrives later starts afresh.
 */
static void write_failure(int cache_fd, const char *id,
                          const struct vmd_error *e)
{
	char name[VMD_CACHE_ID_MAX + 16], text[VMD_ERROR_MSG_MAX + 16];
	int n;

	if (!e || e->code == VMD_OK)
		return;
	side_name(name, sizeof(name), id, "failed");
	n = snprintf(text, sizeof(text), "%d %s", (int)e->code, e->msg);
	if (n > 0)
		vmd_write_file_atomicat(cache_fd, name, text, strlen(text),
		                        INFO_MODE, true, NULL);
}

static void clear_failure(int cache_fd, const char *id)
{
	char name[VMD_CACHE_ID_MAX + 16];

	side_name(name, sizeof(name), id, "failed");
	vmd_bunlink(cache_fd, name, 0);
}

/* The winner's error, if it failed after we started waiting. */
static int failure_since(int cache_fd, const char *id, time_t since,
                         struct vmd_error *err)
{
	char name[VMD_CACHE_ID_MAX + 16], text[VMD_ERROR_MSG_MAX + 16] = "";
	_cleanup_(closep) int fd = -1;
	struct stat st;
	ssize_t n;
	int code = 0, off = 0;

	side_name(name, sizeof(name), id, "failed");
	fd = vmd_bopen(cache_fd, name, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    st.st_mtime < since)
		return 0;
	n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	text[strcspn(text, "\n")] = '\0';
	if (sscanf(text, "%d %n", &code, &off) < 1 || code >= 0 ||
	    code < VMD_E_CORRUPT)
		return 0;
	return vmd_error_set(err, (enum vmd_errc)code, text + off,
	                     "the fetch this caller waited for failed");
}

static int checksum_mismatch(struct vmd_error *err, enum vmd_hash_algo a,
                             const char *want, const char *got)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "cache: %s checksum mismatch",
	         vmd_hash_name(a));
	return vmd_error_set(err, VMD_E_REFUSED, msg, "expected %s, got %s",
	                     want, got);
}

/*
 * The format a source declares (Glance's disk_format) must be what the bytes
 * are: an image declared raw that is a qcow2 would otherwise be opened as
 * qcow2 with a backing file of its choice by whoever trusts the record.
 */
static int check_declared_format(const struct vmd_source_meta *meta,
                                 enum vmd_format got, struct vmd_error *err)
{
	bool declared_qcow2 = strcmp(meta->disk_format, "qcow2") == 0;
	char msg[VMD_ERROR_MSG_MAX], shown[sizeof(meta->id)];

	if (!meta->disk_format[0] ||
	    declared_qcow2 == (got == VMD_FORMAT_QCOW2))
		return 0;
	snprintf(msg, sizeof(msg),
	         "cache: image is %s but its source declares %s",
	         got == VMD_FORMAT_QCOW2 ? "qcow2" : "raw", meta->disk_format);
	vmd_source_id_for_log(meta->id, shown, sizeof(shown));
	return vmd_error_set(err, VMD_E_REFUSED, msg, "%s: disk_format %s",
	                     shown, meta->disk_format);
}

struct fetch_want {
	enum vmd_hash_algo algo; /* from --checksum, or NONE */
	char hex[VMD_HASH_HEX_MAX];
};

/* max_image_download_size (0: none). */
static uint64_t download_limit(const struct vmd_ctx *ctx)
{
	return ctx->cfg.max_image_download_size;
}

/* Download, verify, inspect, convert and publish; we hold the lock. */
static int fetch_locked(struct vmd_ctx *ctx, int cache_fd,
                        const struct vmd_source_ops *ops,
                        const char *source, const struct vmd_source_meta *meta,
                        const struct fetch_want *want,
                        const struct vmd_fetch_opts *opts, gid_t gid,
                        struct vmd_cache_entry *out, struct vmd_error *err)
{
	char shown[sizeof(meta->id)];
	mode_t mode_cap;
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile raw = VMD_TMPFILE_INIT;
	enum vmd_hash_algo algo = want->algo != VMD_HASH_NONE ? want->algo
	                          : meta->hash_algo != VMD_HASH_NONE
	                                  ? meta->hash_algo
	                                  : VMD_HASH_SHA256;
	enum vmd_format original;
	struct vmd_sink *sink;
	int rc;

	/* A size the source announces (Glance's record) is refused before a
	 * byte is taken; the sink still counts what really comes. */
	vmd_source_id_for_log(meta->id, shown, sizeof(shown));
	if (download_limit(ctx) && meta->size > download_limit(ctx))
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "cache: image larger than "
		                     "max_image_download_size",
		                     "%s: announced %llu bytes, limit %llu",
		                     shown, (unsigned long long)meta->size,
		                     (unsigned long long)download_limit(ctx));
	/* What a killed fetch left (we hold the entry's lock): the image's
	 * temporary and those of its side records, written atomically too. */
	vmd_tmpfile_sweep(cache_fd, out->id);
	for (size_t i = 0; i < ELEMENTSOF(side_kinds); i++) {
		char side[VMD_CACHE_ID_MAX + 16];

		side_name(side, sizeof(side), out->id, side_kinds[i]);
		vmd_tmpfile_sweep(cache_fd, side);
	}
	rc = vmd_tmpfile_openat(&t, cache_fd, out->id, 0600, err);
	if (rc < 0)
		return rc;
	sink = vmd_sink_new(t.fd, algo, download_limit(ctx), err);
	if (!sink)
		return VMD_E_NOMEM;
	if (opts && opts->progress)
		vmd_sink_set_progress(sink, opts->progress, meta->size,
		                      opts->progress_opaque);
	rc = ops->download(ctx, source, meta, sink, err);
	if (rc == 0)
		rc = vmd_faultpoint("cache.downloaded", err);
	if (rc == 0)
		rc = vmd_sink_finish(sink, out->hash, err);
	mode_cap = vmd_sink_mode_cap(sink);
	vmd_sink_free(sink);
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	snprintf(out->hash_algo, sizeof(out->hash_algo), "%s",
	         vmd_hash_name(algo));
	/* Verify what the caller and the source say, before anything reads
	 * the bytes as an image. */
	if (want->algo != VMD_HASH_NONE && strcmp(want->hex, out->hash) != 0)
		return checksum_mismatch(err, algo, want->hex, out->hash);
	if (meta->hash_algo != VMD_HASH_NONE) {
		char other[VMD_HASH_HEX_MAX];
		const char *got = out->hash;

		if (meta->hash_algo != algo) {
			rc = vmd_hash_fd(t.fd, meta->hash_algo, other, err);
			if (rc < 0)
				return rc;
			got = other;
		}
		if (strcasecmp(meta->hash_hex, got) != 0)
			return checksum_mismatch(err, meta->hash_algo,
			                         meta->hash_hex, got);
	}
	rc = check_image(ctx, t.fd, &out->format, &out->virtual_size, err);
	if (rc == 0)
		rc = check_declared_format(meta, out->format, err);
	if (rc < 0)
		return rc;
	original = out->format;
	if (out->format == VMD_FORMAT_QCOW2 && ctx->cfg.force_raw_images) {
		rc = convert_to_raw(ctx, cache_fd, &t, out->id, &raw, err);
		if (rc == 0)
			rc = check_image(ctx, raw.fd, &out->format,
			                 &out->virtual_size, err);
		if (rc < 0)
			return rc;
	}
	rc = vmd_faultpoint("cache.before_publish", err);
	if (rc < 0)
		return rc;
	rc = write_info(cache_fd, out, meta, original, err);
	if (rc == 0)
		rc = vmd_cache_give_group(raw.fd >= 0 ? raw.fd : t.fd, gid, err);
	if (rc == 0)
		rc = vmd_tmpfile_publish(raw.fd >= 0 ? &raw : &t, false,
		                         BASE_MODE & mode_cap, err);
	if (rc < 0) {
		/* The record is written first (it may have its name even when
		 * writing it failed): without its entry it goes. EXISTS: the
		 * entry is someone else's, and so is the record. */
		if (rc != VMD_E_EXISTS)
			remove_info(cache_fd, out->id);
		return rc;
	}
	vmd_log_info("cache: fetched %s as %s", shown, out->id);
	out->fetched = true;
	return 0;
}

int vmd_cache_fetch_ex(struct vmd_ctx *ctx, const char *source,
                       const struct vmd_fetch_opts *opts,
                       struct vmd_cache_entry *out, struct vmd_error *err)
{
	const struct vmd_source_ops *ops;
	struct vmd_source_meta meta;
	struct fetch_want want = {VMD_HASH_NONE, ""};
	char lockname[VMD_LOCK_NAME_MAX];
	_cleanup_(vmd_lock_release) struct vmd_lock lock = VMD_LOCK_INIT;
	_cleanup_(closep) int cached = -1;
	_cleanup_(closep) int cache_fd = -1;
	time_t wait_start = time(NULL);
	bool waited = false;
	gid_t gid = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	/* A fetch reads and writes the entry's side record (json-c, loaded on
	 * first use): without it, say so here, not as a checksum mismatch. */
	rc = vmd_jsonc_load(err);
	if (rc == 0)
		rc = vmd_source_for(source, &ops, err);
	if (rc == 0 && opts && opts->checksum)
		rc = vmd_hash_parse(opts->checksum, &want.algo, want.hex, err);
	if (rc == 0)
		rc = ops->resolve(ctx, source, &meta, err);
	if (rc == 0)
		rc = vmd_cache_id(meta.id, out->id, err);
	if (rc == 0)
		rc = fill_entry(ctx, out->id, 0, false, out, err);
	if (rc == 0)
		rc = vmd_cache_dir_prepare(ctx, &cache_fd, &gid, err);
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	vmd_base_lock_name(out->id, lockname);
	/* Try first without waiting, to know whether someone else was
	 * fetching while we waited. */
	rc = vmd_ctx_lock_try(ctx, &lock, lockname, VMD_LOCK_EXCLUSIVE, err);
	if (rc == VMD_E_BUSY) {
		waited = true;
		rc = vmd_ctx_lock_acquire(ctx, &lock, lockname,
		                          VMD_LOCK_EXCLUSIVE,
		                          ctx->cfg.lock_timeout_seconds, err);
	}
	if (rc < 0) {
		vmd_error_prefix(err, "cache");
		return rc;
	}
	rc = vmd_faultpoint("cache.locked", err);
	if (rc < 0)
		return rc;
	/* Only now, under the lock, is the entry looked for. */
	cached = vmd_bopen(cache_fd, out->id, O_RDONLY | O_NONBLOCK, 0);
	if (cached < 0 && errno != ENOENT)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "cache: open cached image failed",
		                         "open %s", out->id);
	if (cached >= 0) {
		/* Checks may have grown since it was fetched: inspect again. */
		vmd_log_debug("cache: %s already cached", out->id);
		read_info(cache_fd, out);
		rc = check_image(ctx, cached, &out->format, &out->virtual_size,
		                 err);
		if (rc == 0 && want.algo != VMD_HASH_NONE &&
		    (strcmp(out->hash_algo, vmd_hash_name(want.algo)) != 0 ||
		     strcmp(out->hash, want.hex) != 0))
			rc = checksum_mismatch(err, want.algo, want.hex,
			                       out->hash_algo[0] ? out->hash
			                                         : "(unknown)");
		return rc;
	}
	if (waited &&
	    (rc = failure_since(cache_fd, out->id, wait_start, err)) < 0)
		return rc;
	clear_failure(cache_fd, out->id);
	rc = fetch_locked(ctx, cache_fd, ops, source, &meta, &want, opts, gid,
	                  out, err);
	if (rc < 0)
		write_failure(cache_fd, out->id, err);
	return rc;
}

int vmd_cache_fetch(struct vmd_ctx *ctx, const char *source,
                    struct vmd_cache_entry *out, struct vmd_error *err)
{
	return vmd_cache_fetch_ex(ctx, source, NULL, out, err);
}
