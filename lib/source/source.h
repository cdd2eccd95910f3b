/*
 * Image sources: where a base image comes from.
 *
 * One table per scheme (lib/source_<name>.c), like the backends: `file`
 * (a local path), `http`/`https` (libcurl) and `glance` (glance://IMAGE_ID,
 * Glance v2). A source first *resolves* the image (its canonical id, which
 * names the cache entry, and what it should hash to), then *downloads* it
 * into a sink. The sink (lib/source.c) writes at increasing offsets into
 * the cache's temporary, hashes every byte in the same pass, keeps zero
 * blocks as holes and enforces max_image_download_size; sources never write
 * files themselves.
 */
#ifndef VMDISK_SOURCE_H
#define VMDISK_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"

#define VMD_HASH_HEX_MAX 129 /* sha512 in hex + NUL */

enum vmd_hash_algo {
	VMD_HASH_NONE = 0,
	VMD_HASH_MD5,
	VMD_HASH_SHA256,
	VMD_HASH_SHA512,
};

/*
 * A list of locations: an array of strings kept in one bounded buffer, so
 * the struct copies as a value (offsets, no pointers). The bound is the
 * one the list always had: the urls and one byte each (their NULs) fit in
 * VMD_LOCATIONS_BYTES; a url that would not fit whole is left out.
 */
#define VMD_LOCATIONS_BYTES 1024
#define VMD_LOCATIONS_MAX (VMD_LOCATIONS_BYTES / 7) /* "rbd://" + NUL */
struct vmd_locations {
	size_t n;
	size_t used;                       /* bytes of buf in use */
	uint16_t off[VMD_LOCATIONS_MAX];   /* where url i starts in buf */
	char buf[VMD_LOCATIONS_BYTES];
};

static inline const char *vmd_locations_at(const struct vmd_locations *l,
                                           size_t i)
{
	return l->buf + l->off[i];
}

/* Add url (len bytes, no NUL inside) at the end if it fits whole; false
 * when it does not (nothing changes). */
bool vmd_locations_add(struct vmd_locations *l, const char *url, size_t len);

struct vmd_source_meta {
	char id[PATH_MAX + 64];       /* canonical id; sha1(id) = entry name */
	enum vmd_hash_algo hash_algo; /* what the source says it hashes to */
	char hash_hex[VMD_HASH_HEX_MAX];
	uint64_t size;                /* expected bytes, 0 = unknown */
	char disk_format[32];         /* as the source declares it, or "" */
	/* The rbd:// locations the source records for the image: Glance's
	 * direct_url first, then its locations[] (show_multiple_locations)
	 * not already named; none: n == 0. */
	struct vmd_locations locations;
};

struct vmd_sink;

struct vmd_source_ops {
	const char *scheme;
	/* Parse and check `url`, fill meta. May talk to a server (Glance's
	 * image record); must not download the image. */
	int (*resolve)(struct vmd_ctx *ctx, const char *url,
	               struct vmd_source_meta *meta, struct vmd_error *err);
	/* Feed the image's bytes, in order, to vmd_sink_write (and, to resume
	 * after a dropped connection, continue from vmd_sink_offset). */
	int (*download)(struct vmd_ctx *ctx, const char *url,
	                const struct vmd_source_meta *meta,
	                struct vmd_sink *sink, struct vmd_error *err);
};

extern const struct vmd_source_ops vmd_source_file;
extern const struct vmd_source_ops vmd_source_http;   /* http and https */
extern const struct vmd_source_ops vmd_source_glance;

/* The table for url's scheme; a string with no "scheme://" is a file. */
int vmd_source_for(const char *url, const struct vmd_source_ops **ops,
                   struct vmd_error *err);

/* The backend locations `source` records for its image (Glance's rbd://
 * direct_url and locations, in that order), into out; none (out->n == 0)
 * when there is none, the source is not Glance, or the image is not raw
 * (only a raw image can be cloned as a disk). Untrusted: the backend
 * parses each as strictly as a --location. */
int vmd_source_location(struct vmd_ctx *ctx, const char *source,
                        struct vmd_locations *out, struct vmd_error *err);
/* The same choice from a resolved record. */
void vmd_source_meta_location(const struct vmd_source_meta *meta,
                              struct vmd_locations *out);

/* The hex digest of everything fd holds (read with pread from 0). */
int vmd_hash_fd(int fd, enum vmd_hash_algo algo, char hex[VMD_HASH_HEX_MAX],
                struct vmd_error *err);
/* A local file source (vmd_source_file) opened for reading; the path is
 * the caller's, outside instances_path. */
struct vmd_source_meta;
int vmd_source_open_local(const struct vmd_source_meta *meta, int *fd,
                          struct vmd_error *err);
/* A source id as it may be logged or stored: a URL without its
 * userinfo, query and fragment (a signed URL's signature), anything else
 * (a local path, "glance:ID") as it is. */
void vmd_source_id_for_log(const char *id, char *out, size_t outsz);

int vmd_hash_parse(const char *spec, enum vmd_hash_algo *algo,
                   char hex[VMD_HASH_HEX_MAX], struct vmd_error *err);
const char *vmd_hash_name(enum vmd_hash_algo a);
int vmd_hash_from_name(const char *name, enum vmd_hash_algo *a);

/* ---- the sink ---- */

typedef void (*vmd_sink_progress_fn)(uint64_t done, uint64_t total,
                                     void *opaque);

struct vmd_sink *vmd_sink_new(int fd, enum vmd_hash_algo algo, uint64_t limit,
                              struct vmd_error *err);
void vmd_sink_free(struct vmd_sink *s);
void vmd_sink_set_progress(struct vmd_sink *s, vmd_sink_progress_fn fn,
                           uint64_t total, void *opaque);

/* Append len bytes (VMD_E_REFUSED past the limit). */
int vmd_sink_write(struct vmd_sink *s, const void *buf, size_t len,
                   struct vmd_error *err);
/* Append len zero bytes without writing them (they stay a hole). */
int vmd_sink_skip_zeros(struct vmd_sink *s, uint64_t len,
                        struct vmd_error *err);
/* The permission bits of what the bytes come from (a local file's mode):
 * the cache publishes its copy with no bit the source lacks. A sink
 * starts with 0777 (no cap); each call can only take bits away. */
void vmd_sink_cap_mode(struct vmd_sink *s, mode_t mode);
mode_t vmd_sink_mode_cap(const struct vmd_sink *s);
/* Bytes taken so far: where a resumed download continues. */
uint64_t vmd_sink_offset(const struct vmd_sink *s);
/* Start over (a server that ignored a Range request): empty the file and
 * the hash. */
int vmd_sink_restart(struct vmd_sink *s, struct vmd_error *err);
/* Truncate to what was written and give the hex digest. */
int vmd_sink_finish(struct vmd_sink *s, char hex[VMD_HASH_HEX_MAX],
                    struct vmd_error *err);

#endif
