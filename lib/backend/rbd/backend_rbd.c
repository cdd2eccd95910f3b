/*
 * The rbd backend: disks are RBD images in a Ceph pool, reached through
 * librados/librbd (never the rbd CLI). Built as the module vmdisk-rbd.so so
 * that only commands that use Ceph load librbd.
 *
 * A disk of instance I named D is the image "I_D" in images_rbd_pool. It is
 * made by importing a cached base (sparse: zero runs are not written), as a
 * copy-on-write clone of a protected snapshot named by a location
 * rbd://FSID/POOL/IMAGE/SNAP in the same cluster, or blank. A direct
 * snapshot publishes a disk into images_rbd_glance_store_pool as
 * NAME@snap without a local copy.
 *
 * librados reads the cephx key itself from the keyring named by the ceph
 * configuration: the key never passes through this code, so it cannot reach
 * a log or an error. Public messages name the step and the pool only.
 *
 * It calls the library only through the public headers and the host table
 * (lib/backend/module_host.h: the data mover for a base's bytes and a
 * disk's, making a file, fault points); cleanup.h and bytes.h are
 * header-only.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

#include <vmdisk/vmdisk.h>

#include "bytes.h"
#include "cleanup.h"
#include "module_host.h"
#include "vmd_build_config.h"

#define RBD_IMAGE_NAME_MAX VMD_RBD_IMAGE_NAME_MAX
#define RBD_MAX_SNAPS 512
#define RBD_SNAP_PUBLISHED "snap" /* what Glance's rbd store names it */

struct rbd_conn {
	rados_t cluster;  /* shared: owned by the context's state */
	rados_t own;      /* not the context's: shut down on close */
	rados_ioctx_t io;
};

/*
 * One cluster connection per context (ops->open/close), made on the
 * context's first call and reused by its later ones: a connect costs tens
 * of milliseconds (monitor handshake, cephx), which would dominate an O(1)
 * clone that makes several calls. A context's configuration never
 * changes, so neither does its connection; it is shut down with the
 * context (vmd_ctx_free), not left behind in the process.
 */
struct rbd_ctx_state {
	pthread_mutex_t mutex;
	rados_t cluster;
};

extern const struct vmd_backend_ops vmd_backend_rbd;

/* Set by the registry before any operation runs (module_host.h). */
VMD_BACKEND_MODULE_HOST;

static void vr_conn_close(struct rbd_conn *c)
{
	if (c->io)
		rados_ioctx_destroy(c->io);
	if (c->own)
		rados_shutdown(c->own);
	memset(c, 0, sizeof(*c));
}

DEFINE_CLEANUP_FUNC(rbd_image_t, rbd_close)
DEFINE_CLEANUP_FUNC(rados_ioctx_t, rados_ioctx_destroy)

/* Fill err for librbd/librados's failure r (a raw negative errno) and
 * return `code`. A caller returns what this returns, never r: the two
 * differ, and r may read as another VMD_E_* (-EIO is VMD_E_NOMEM's value). */
static int vr_fail(struct vmd_error *err, enum vmd_errc code, int r,
                    const char *msg, const char *pool, const char *what)
{
	char pub[320];

	/* The pool is a backend setting: the log's detail names it, the
	 * message does not (issue 16, error exposure). */
	snprintf(pub, sizeof(pub), "rbd: %s", msg);
	return vmd_error_set(err, code, pub, "rbd: %s: pool %.*s: %s: %s", msg,
	                     VMD_NAME_MAX, pool, what, strerror(-r));
}

/*
 * A fault point standing in for librbd's own answer to the call it
 * precedes: armed ("POINT:fail"), that call is skipped and reads as librbd
 * failing with the raw -EIO, so that tests reach the paths that must turn
 * librbd's errno into a vmd_errc (some steps cannot be made to fail on a
 * real cluster). 0 when not armed, always in a build without fault points.
 */
static int librbd_fault(const char *point)
{
	struct vmd_error ignored = VMD_ERROR_INIT;

	return vmd_module_host->faultpoint(point, &ignored) < 0 ? -EIO : 0;
}

static int vr_errc(int r)
{
	return r == -ENOENT ? VMD_E_NOTFOUND
	       : r == -EEXIST ? VMD_E_EXISTS
	       : r == -EBUSY ? VMD_E_BUSY
	                     : VMD_E_EXTERNAL;
}

static int vr_new_cluster(const struct vmd_config *cfg, const char *pool,
                          struct rbd_conn *c, struct vmd_error *err)
{
	char timeout[16];
	int r = rados_create(&c->own, cfg->rbd_user[0] ? cfg->rbd_user : NULL);

	if (r < 0) {
		c->own = NULL;
		return vr_fail(err, VMD_E_EXTERNAL, r, "client setup failed",
		               pool, "rados_create");
	}
	r = rados_conf_read_file(c->own, cfg->images_rbd_ceph_conf[0]
	                                         ? cfg->images_rbd_ceph_conf
	                                         : NULL);
	if (r < 0)
		return vr_fail(err, VMD_E_CONFIG, r,
		               "reading the ceph configuration failed", pool,
		               "rados_conf_read_file");
	snprintf(timeout, sizeof(timeout), "%u",
	         cfg->rbd_connect_timeout ? cfg->rbd_connect_timeout : 5);
	/* An unreachable cluster must fail, not hang the caller forever. */
	rados_conf_set(c->own, "client_mount_timeout", timeout);
	rados_conf_set(c->own, "rados_mon_op_timeout", timeout);
	rados_conf_set(c->own, "log_to_stderr", "false");
	rados_conf_set(c->own, "err_to_stderr", "false");
	r = rados_connect(c->own);
	if (r < 0)
		return vr_fail(err, VMD_E_EXTERNAL, r,
		               "connecting to the cluster failed", pool,
		               "rados_connect");
	return 0;
}

static int vr_open(struct vmd_ctx *ctx, void **priv, struct vmd_error *err)
{
	struct rbd_ctx_state *st = calloc(1, sizeof(*st));

	(void)ctx;
	if (!st)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
		                     "rbd context state");
	pthread_mutex_init(&st->mutex, NULL);
	*priv = st;
	return 0;
}

static void vr_close(void *priv)
{
	struct rbd_ctx_state *st = priv;

	if (!st)
		return;
	if (st->cluster)
		rados_shutdown(st->cluster);
	pthread_mutex_destroy(&st->mutex);
	free(st);
}

/* Connect to the configured cluster (or reuse the context's connection)
 * and open `pool`. */
static int vr_connect(struct vmd_ctx *ctx, const char *pool,
                      struct rbd_conn *c, struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	struct rbd_ctx_state *st = vmd_ctx_backend_priv(ctx, &vmd_backend_rbd);
	int r = 0;

	memset(c, 0, sizeof(*c));
	if (st) {
		pthread_mutex_lock(&st->mutex);
		if (!st->cluster) {
			r = vr_new_cluster(cfg, pool, c, err);
			if (r == 0)
				st->cluster = TAKE_PTR(c->own);
		}
		c->cluster = st->cluster;
		pthread_mutex_unlock(&st->mutex);
	} else {
		/* Not called through the generic layer (no open hook ran):
		 * a connection of this call's own, shut down on close. */
		r = vr_new_cluster(cfg, pool, c, err);
		if (r == 0)
			c->cluster = c->own;
	}
	if (r < 0)
		return r;
	r = rados_ioctx_create(c->cluster, pool, &c->io);
	if (r < 0) {
		c->io = NULL;
		return vr_fail(err, vr_errc(r), r, "opening the pool failed",
		               pool, "rados_ioctx_create");
	}
	return 0;
}

static const char *vr_pool(struct vmd_ctx *ctx)
{
	return vmd_ctx_config(ctx)->images_rbd_pool;
}

static void vr_disk_name(const struct vmd_disk_ref *disk, char *name)
{
	snprintf(name, RBD_IMAGE_NAME_MAX, "%s_%s", disk->instance, disk->disk);
}

/* Connect to the configured pool, and name the disk's image there. */
static int vr_connect_disk(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                           struct rbd_conn *c, char name[RBD_IMAGE_NAME_MAX],
                           struct vmd_error *err)
{
	int r = vr_connect(ctx, vr_pool(ctx), c, err);

	if (r < 0)
		return r;
	vr_disk_name(disk, name);
	return 0;
}

static int vr_open_disk(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                         struct rbd_conn *c, rbd_image_t *img, bool ro,
                         struct vmd_error *err)
{
	char name[RBD_IMAGE_NAME_MAX];
	int r = vr_connect_disk(ctx, disk, c, name, err);

	if (r < 0)
		return r;
	r = ro ? rbd_open_read_only(c->io, name, img, NULL)
	       : rbd_open(c->io, name, img, NULL);
	if (r < 0) {
		*img = NULL;
		return vr_fail(err, vr_errc(r), r, "opening the disk failed",
		                vr_pool(ctx), name);
	}
	return 0;
}

/* Create an image with the cluster's default features (layering etc.). */
static int vr_create_image(rados_ioctx_t io, const char *pool,
                            const char *name, uint64_t size,
                            struct vmd_error *err)
{
	rbd_image_options_t opts;
	int r;

	rbd_image_options_create(&opts);
	r = rbd_create4(io, name, size, opts);
	rbd_image_options_destroy(opts);
	if (r < 0)
		return vr_fail(err, vr_errc(r), r, "creating the disk failed",
		                pool, name);
	return 0;
}

/* Remove an image and every snapshot of it; absent is success. */
static int vr_remove_image(rados_ioctx_t io, const char *pool,
                            const char *name, struct vmd_error *err)
{
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	rbd_snap_info_t snaps[RBD_MAX_SNAPS];
	int max = RBD_MAX_SNAPS;
	int n, r = rbd_open(io, name, &img, NULL);

	if (r == -ENOENT) {
		img = NULL;
		return 0;
	}
	if (r < 0) {
		img = NULL;
		return vr_fail(err, vr_errc(r), r, "opening the disk failed",
		                pool, name);
	}
	n = rbd_snap_list(img, snaps, &max);
	if (n < 0)
		return vr_fail(err, VMD_E_EXTERNAL, n,
		                "listing snapshots failed", pool, name);
	for (int i = 0; i < n; i++) {
		int prot = 0;

		r = rbd_snap_is_protected(img, snaps[i].name, &prot);
		if (r == 0 && prot)
			r = rbd_snap_unprotect(img, snaps[i].name);
		if (r == 0)
			r = rbd_snap_remove(img, snaps[i].name);
		if (r < 0) {
			rbd_snap_list_end(snaps);
			return vr_fail(err, r == -EBUSY ? VMD_E_BUSY
			                                 : VMD_E_EXTERNAL,
			                r, "removing a snapshot failed "
			                   "(clones of it exist?)",
			                pool, name);
		}
	}
	rbd_snap_list_end(snaps);
	rbd_closep(&img);
	r = rbd_remove(io, name);
	if (r < 0 && r != -ENOENT)
		return vr_fail(err, vr_errc(r), r, "removing the disk failed",
		                pool, name);
	return 0;
}

/* An import's destination: the image being made. */
struct import_sink {
	rbd_image_t img;
	const char *pool;
};

/* The mover hands the base's non-zero blocks, from several workers at
 * once (librbd's image handle takes concurrent calls): each is one write,
 * and as many are in flight as the mover has workers. Zero runs never
 * come here: a new image reads zeroes there. */
static int import_write(void *opaque, const void *buf, size_t len,
                        uint64_t off, struct vmd_error *err)
{
	const struct import_sink *s = opaque;
	ssize_t r = rbd_write(s->img, off, len, buf);

	if (r != (ssize_t)len)
		return vr_fail(err, VMD_E_IO, r < 0 ? (int)r : -EIO,
		               "writing the disk failed", s->pool, "rbd_write");
	return 0;
}

/* Copy the guest view of the base into img through the library's data
 * mover (module_host.h, move_base), then flush. */
static int vr_import_base(const struct vmd_image *base, rbd_image_t img,
                          const char *pool, struct vmd_error *err)
{
	struct import_sink s = {.img = img, .pool = pool};
	struct vmd_inspect_limits lim;
	int rc;

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	/* The base by the descriptor the generic layer opened beneath
	 * instances_path (lib/core/beneath.c), not by its path. "rbd": our
	 * messages ("rbd: writing the disk failed") are not prefixed twice,
	 * the mover's read "rbd: read failed". */
	rc = vmd_module_host->move_base(base->fd, base->format, &lim,
	                                import_write, &s, "rbd", err);
	if (rc < 0)
		return rc;
	rc = rbd_flush(img);
	if (rc < 0)
		return vr_fail(err, VMD_E_IO, rc, "flushing the disk failed",
		               pool, "rbd_flush");
	return 0;
}

static int vr_create_from_image(struct vmd_ctx *ctx,
                                 const struct vmd_disk_ref *disk,
                                 const struct vmd_image *base, uint64_t size,
                                 struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	char name[RBD_IMAGE_NAME_MAX];
	const char *pool = vr_pool(ctx);
	int rc;

	if (size < base->virtual_size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "requested size is smaller than the image",
		                     "size %llu < base %llu",
		                     (unsigned long long)size,
		                     (unsigned long long)base->virtual_size);
	rc = vr_connect(ctx, pool, &c, err);
	if (rc < 0)
		return rc;
	vr_disk_name(disk, name);
	rc = vr_create_image(c.io, pool, name, vmd_round_sector(base->virtual_size),
	                      err);
	if (rc < 0)
		return rc;
	rc = rbd_open(c.io, name, &img, NULL);
	if (rc < 0) {
		img = NULL;
		rc = vr_fail(err, VMD_E_EXTERNAL, rc,
		             "opening the new disk failed", pool, name);
	} else {
		rc = vr_import_base(base, img, pool, err);
	}
	if (rc == 0)
		rc = vmd_module_host->faultpoint("rbd.after_import", err);
	if (rc == 0 && size > vmd_round_sector(base->virtual_size)) {
		rc = rbd_resize2(img, size, false, NULL, NULL);
		if (rc < 0)
			rc = vr_fail(err, VMD_E_EXTERNAL, rc,
			             "growing the disk failed", pool, name);
	}
	if (rc < 0) {
		struct vmd_error ignored = VMD_ERROR_INIT;

		rbd_closep(&img);
		vr_remove_image(c.io, pool, name, &ignored);
		vmd_error_prefix(err, "import");
		return rc;
	}
	return 0;
}

static int vr_create_blank(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                            uint64_t size, struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	char name[RBD_IMAGE_NAME_MAX];
	int rc = vr_connect_disk(ctx, disk, &c, name, err);

	if (rc < 0)
		return rc;
	return vr_create_image(c.io, vr_pool(ctx), name, size, err);
}

static int vr_resize(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      uint64_t new_size, struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	rbd_image_info_t st;
	int rc = vr_open_disk(ctx, disk, &c, &img, false, err);

	if (rc < 0)
		return rc;
	rc = rbd_stat(img, &st, sizeof(st));
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "reading the size failed",
		                vr_pool(ctx), disk->disk);
	if (new_size < st.size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "disks only grow",
		                     "new size %llu < %llu",
		                     (unsigned long long)new_size,
		                     (unsigned long long)st.size);
	rc = rbd_resize2(img, new_size, false, NULL, NULL);
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "growing the disk failed",
		                vr_pool(ctx), disk->disk);
	return 0;
}

static int vr_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      bool *exists, struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	char name[RBD_IMAGE_NAME_MAX];
	int rc = vr_connect_disk(ctx, disk, &c, name, err);

	if (rc < 0)
		return rc;
	rc = rbd_open_read_only(c.io, name, &img, NULL);
	if (rc < 0)
		img = NULL;
	if (rc == -ENOENT) {
		*exists = false;
		return 0;
	}
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "opening the disk failed",
		                vr_pool(ctx), name);
	*exists = true;
	return 0;
}

static int count_extent(uint64_t off, size_t len, int exists, void *arg)
{
	(void)off;
	if (exists)
		*(uint64_t *)arg += len;
	return 0;
}

static void append_name(char *list, size_t size, const char *name)
{
	size_t used = strlen(list);

	snprintf(list + used, size - used, "%s%s", used ? "," : "", name);
}

static int vr_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                    struct vmd_disk_info *out, struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	rbd_image_info_t st;
	rbd_linked_image_spec_t pimg;
	rbd_snap_spec_t psnap;
	rbd_snap_info_t snaps[RBD_MAX_SNAPS];
	int max = RBD_MAX_SNAPS, n;
	char name[RBD_IMAGE_NAME_MAX];
	uint64_t used = 0;
	int rc = vr_open_disk(ctx, disk, &c, &img, true, err);

	if (rc < 0)
		return rc;
	out->backing[0] = '\0';
	out->snapshots[0] = '\0';
	out->actual_size = 0;
	vr_disk_name(disk, name);
	rc = rbd_stat(img, &st, sizeof(st));
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "reading the size failed",
		                vr_pool(ctx), name);
	snprintf(out->format, sizeof(out->format), "raw");
	out->virtual_size = st.size;
	/* Object-granular with fast-diff: what the pool holds for this disk
	 * alone (a clone's parent data is not counted). */
	if (rbd_diff_iterate2(img, NULL, 0, st.size, 0, 1, count_extent,
	                      &used) == 0)
		out->actual_size = used;
	snprintf(out->path, sizeof(out->path), "rbd:%s/%s", vr_pool(ctx),
	         name);
	rc = rbd_get_parent(img, &pimg, &psnap);
	if (rc == 0) {
		snprintf(out->backing, sizeof(out->backing), "rbd:%s/%s@%s",
		         pimg.pool_name, pimg.image_name, psnap.name);
		rbd_linked_image_spec_cleanup(&pimg);
		rbd_snap_spec_cleanup(&psnap);
	} else if (rc != -ENOENT) {
		return vr_fail(err, VMD_E_EXTERNAL, rc,
		                "reading the parent failed", vr_pool(ctx), name);
	}
	n = rbd_snap_list(img, snaps, &max);
	if (n < 0)
		return vr_fail(err, VMD_E_EXTERNAL, n, "listing snapshots failed",
		                vr_pool(ctx), name);
	for (int i = 0; i < n; i++)
		append_name(out->snapshots, sizeof(out->snapshots),
		            snaps[i].name);
	rbd_snap_list_end(snaps);
	return 0;
}

/* An extract's source: the disk. One image handle serves every worker
 * (librbd's handle takes concurrent calls), so a reader is the source. */
struct extract_src {
	rbd_image_t img;
	const char *pool;
};

static int extract_open(void *opaque, void **reader, struct vmd_error *err)
{
	(void)err;
	*reader = opaque;
	return 0;
}

static void extract_close(void *reader)
{
	(void)reader;
}

#define EXTRACT_PROBE_MAX (8u << 20) /* two default RBD objects */

/* What rbd_diff_iterate2 said of [off, end): the end of the data extent
 * holding off (0: none does), and the first data after off. */
struct diff_probe {
	uint64_t off, end;
	uint64_t cover_end;
	uint64_t next_data;
};

static int probe_extent(uint64_t eoff, size_t elen, int exists, void *arg)
{
	struct diff_probe *d = arg;
	uint64_t eend;

	/* Against no snapshot, an extent that does not exist is one that
	 * reads zero. */
	if (!exists || __builtin_add_overflow(eoff, (uint64_t)elen, &eend) ||
	    eend <= d->off || eoff >= d->end)
		return 0;
	if (eoff <= d->off) {
		if (eend > d->cover_end)
			d->cover_end = eend;
	} else if (eoff < d->next_data) {
		d->next_data = eoff;
	}
	return 0;
}

/*
 * Where the disk holds data, from rbd_diff_iterate2 against no snapshot
 * over [off, off+len): the extents it reports are the allocated ones, the
 * parent's included (a clone reads its parent where it has no data of its
 * own). whole_object: the object map answers when the image has
 * fast-diff; without it librbd asks the objects, and the answer is as
 * true, only slower. Extents may come in any order: only the one holding
 * off and the first one after it matter.
 */
static int extract_status(void *reader, uint64_t off, uint64_t len,
                          uint64_t *run, bool *zero, struct vmd_error *err)
{
	const struct extract_src *x = reader;
	struct diff_probe d;
	int r;

	/* The mover may ask far ahead (up to 1 GiB, to skip a long zero
	 * run at once); without fast-diff each object in the range is a
	 * request to the cluster, so ask about two objects at most: a
	 * shorter answer is still a true one. */
	if (len > EXTRACT_PROBE_MAX)
		len = EXTRACT_PROBE_MAX;
	d = (struct diff_probe){.off = off, .end = off + len,
	                        .next_data = off + len};
	r = rbd_diff_iterate2(x->img, NULL, off, len, 1, 1, probe_extent, &d);

	if (r < 0)
		return vr_fail(err, VMD_E_IO, r, "reading the disk failed",
		               x->pool, "rbd_diff_iterate2");
	if (d.cover_end > off) {
		*zero = false;
		*run = (d.cover_end < d.end ? d.cover_end : d.end) - off;
	} else {
		*zero = true;
		*run = d.next_data - off;
	}
	return 0;
}

static int extract_pread(void *reader, void *buf, size_t len, uint64_t off,
                         struct vmd_error *err)
{
	const struct extract_src *x = reader;
	ssize_t got = rbd_read(x->img, off, len, buf);

	if (got != (ssize_t)len)
		return vr_fail(err, VMD_E_IO, got < 0 ? (int)got : -EIO,
		               "reading the disk failed", x->pool, "rbd_read");
	return 0;
}

/* Read the whole image into fd (sized to the image, zero runs left as
 * holes) through the library's data mover (module_host.h, move_to_fd). */
static int vr_read_to_fd(rbd_image_t img, int fd, const char *pool,
                          struct vmd_error *err)
{
	struct extract_src x = {.img = img, .pool = pool};
	struct vmd_host_move_src src = {
		.open = extract_open,
		.close = extract_close,
		.status = extract_status,
		.pread = extract_pread,
		.opaque = &x,
	};
	rbd_image_info_t st;
	int rc = rbd_stat(img, &st, sizeof(st));

	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "reading the size failed",
		                pool, "rbd_stat");
	src.size = st.size;
	return vmd_module_host->move_to_fd(&src, fd, "rbd", err);
}

struct extract {
	struct vmd_ctx *ctx;
	const struct vmd_disk_ref *disk;
};

/* The file's content (write_file's fill): the disk, opened here, so that
 * the destination is checked before the cluster is asked. */
static int extract_fill(int fd, void *opaque, struct vmd_error *err)
{
	const struct extract *x = opaque;
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	int rc = vr_open_disk(x->ctx, x->disk, &c, &img, true, err);

	if (rc < 0)
		return rc;
	return vr_read_to_fd(img, fd, vr_pool(x->ctx), err);
}

/* raw: the disk's bytes published as dst_path; qcow2: a raw temporary
 * beside it, then the library's converter (module_host.h, write_file). */
static int vr_snapshot_extract(struct vmd_ctx *ctx,
                                const struct vmd_disk_ref *disk,
                                const char *dst_path,
                                enum vmd_format dst_format,
                                struct vmd_error *err)
{
	struct extract x = {.ctx = ctx, .disk = disk};

	return vmd_module_host->write_file(dst_path, dst_format, extract_fill,
	                                   &x, err);
}

static int vr_remove_disk(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                           struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	char name[RBD_IMAGE_NAME_MAX];
	int rc = vr_connect_disk(ctx, disk, &c, name, err);

	if (rc < 0)
		return rc;
	return vr_remove_image(c.io, vr_pool(ctx), name, err);
}

/* mon_host ("[v2:IP:3300,v1:IP:6789],HOST:PORT ...") into host:port entries,
 * preferring each monitor's v1 address (what every QEMU can speak). */
static void parse_mon_host(const char *mon, struct vmd_xml_source *out)
{
	size_t n = 0;
	const char *p = mon;

	while (*p && n < VMD_XML_MAX_HOSTS) {
		char group[256], best[64] = "";
		size_t glen;
		bool bracket = *p == '[';

		if (strchr(" ,;", *p)) {
			p++;
			continue;
		}
		if (bracket) {
			const char *end = strchr(p, ']');

			if (!end)
				return;
			glen = (size_t)(end - p - 1);
			p++;
		} else {
			glen = strcspn(p, " ,;");
		}
		if (glen >= sizeof(group))
			return;
		memcpy(group, p, glen);
		group[glen] = '\0';
		p += glen + (bracket ? 1 : 0);
		for (char *save = NULL, *tok = strtok_r(group, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			bool v1 = strncmp(tok, "v1:", 3) == 0;
			const char *addr = v1 || strncmp(tok, "v2:", 3) == 0
			                           ? tok + 3 : tok;
			char *slash = strchr(tok, '/'); /* drop a nonce */

			if (slash)
				*slash = '\0';
			if (strspn(addr, "0123456789abcdefABCDEF.:-"
			                 "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ") !=
			            strlen(addr) || strlen(addr) >= sizeof(best))
				continue;
			if (!best[0] || v1)
				snprintf(best, sizeof(best), "%s", addr);
		}
		if (best[0])
			snprintf(out->hosts[n++], sizeof(out->hosts[0]), "%s",
			         best);
	}
}

static int vr_xml_source(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                          struct vmd_xml_source *out, struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	char name[RBD_IMAGE_NAME_MAX], mon[512];
	int rc = vr_connect_disk(ctx, disk, &c, name, err);

	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->type = VMD_XML_NETWORK;
	snprintf(out->driver_type, sizeof(out->driver_type), "raw");
	snprintf(out->protocol, sizeof(out->protocol), "rbd");
	snprintf(out->name, sizeof(out->name), "%s/%s", cfg->images_rbd_pool,
	         name);
	rc = rados_conf_get(c.cluster, "mon_host", mon, sizeof(mon));
	if (rc == 0)
		parse_mon_host(mon, out);
	if (strlen(cfg->rbd_user) >= sizeof(out->auth_user))
		return vmd_error_set(err, VMD_E_CONFIG, "rbd: rbd_user too long",
		                     "rbd_user longer than %zu",
		                     sizeof(out->auth_user) - 1);
	memcpy(out->auth_user, cfg->rbd_user, strlen(cfg->rbd_user) + 1);
	snprintf(out->auth_secret_uuid, sizeof(out->auth_secret_uuid), "%s",
	         cfg->rbd_secret_uuid);
	return 0;
}

/* The caller's progress callback, for librbd's, which its own threads
 * may call: one call at a time under the lock. librbd counts objects;
 * the caller is told bytes. */
struct vr_progress {
	pthread_mutex_t lock;
	vmd_step_progress_cb fn;
	void *opaque;
	const char *step;
	uint64_t obj_size;
	uint64_t total; /* objects, as last reported */
};

static int vr_progress_cb(uint64_t offset, uint64_t total, void *ptr)
{
	struct vr_progress *p = ptr;
	uint64_t done_b, total_b;

	if (__builtin_mul_overflow(offset, p->obj_size, &done_b) ||
	    __builtin_mul_overflow(total, p->obj_size, &total_b))
		return 0; /* not a count of this image's objects: not shown */
	pthread_mutex_lock(&p->lock);
	p->total = total;
	p->fn(p->step, done_b, total_b, p->opaque);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* rbd_flatten, reporting to the caller's progress callback if it has
 * one (vmd_ctx_set_progress), and its end: librbd's last report is
 * that of the last object started, not of the flatten done. */
static int vr_flatten_image(rbd_image_t img)
{
	struct vr_progress p = {.step = "rbd: flatten"};
	rbd_image_info_t st;
	int rc;

	p.fn = vmd_module_host->progress_current(&p.opaque);
	if (!p.fn || rbd_stat(img, &st, sizeof(st)) < 0)
		return rbd_flatten(img);
	p.obj_size = st.obj_size;
	pthread_mutex_init(&p.lock, NULL);
	rc = rbd_flatten_with_progress(img, vr_progress_cb, &p);
	pthread_mutex_destroy(&p.lock);
	if (rc == 0 && p.total)
		p.fn(p.step, p.total * p.obj_size, p.total * p.obj_size,
		     p.opaque);
	return rc;
}

static int vr_flatten_disk(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                            struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	rbd_linked_image_spec_t pimg;
	rbd_snap_spec_t psnap;
	int rc = vr_open_disk(ctx, disk, &c, &img, false, err);

	if (rc < 0)
		return rc;
	rc = rbd_get_parent(img, &pimg, &psnap);
	if (rc == -ENOENT)
		return vmd_error_set(err, VMD_E_INVAL, "disk has no parent",
		                     "flatten %s: no parent", disk->disk);
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc,
		                "reading the parent failed", vr_pool(ctx),
		                disk->disk);
	rbd_linked_image_spec_cleanup(&pimg);
	rbd_snap_spec_cleanup(&psnap);
	rc = vr_flatten_image(img);
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "flatten failed",
		                vr_pool(ctx), disk->disk);
	return 0;
}

static int vr_snap_create_op(struct vmd_ctx *ctx,
                              const struct vmd_disk_ref *disk, const char *snap,
                              struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	int rc = vr_open_disk(ctx, disk, &c, &img, false, err);

	if (rc == 0 && (rc = rbd_snap_create(img, snap)) < 0)
		return vr_fail(err, vr_errc(rc), rc, "creating the snapshot failed",
		                vr_pool(ctx), snap);
	return rc;
}

static int vr_snap_remove_op(struct vmd_ctx *ctx,
                              const struct vmd_disk_ref *disk, const char *snap,
                              struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	int prot = 0;
	int rc = vr_open_disk(ctx, disk, &c, &img, false, err);

	if (rc < 0)
		return rc;
	rc = rbd_snap_is_protected(img, snap, &prot);
	if (rc == 0 && prot)
		rc = rbd_snap_unprotect(img, snap);
	if (rc == 0)
		rc = rbd_snap_remove(img, snap);
	if (rc < 0)
		return vr_fail(err, vr_errc(rc), rc,
		                "removing the snapshot failed", vr_pool(ctx),
		                snap);
	return 0;
}

static int vr_snap_rollback_op(struct vmd_ctx *ctx,
                                const struct vmd_disk_ref *disk,
                                const char *snap, struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	int rc = vr_open_disk(ctx, disk, &c, &img, false, err);

	if (rc == 0 && (rc = rbd_snap_rollback(img, snap)) < 0)
		return vr_fail(err, vr_errc(rc), rc,
		                "rolling back to the snapshot failed",
		                vr_pool(ctx), snap);
	return rc;
}

static int same_cluster(struct rbd_conn *c, const char *fsid, const char *pool,
                        struct vmd_error *err)
{
	char mine[64];
	int r = rados_cluster_fsid(c->cluster, mine, sizeof(mine));

	if (r < 0)
		return vr_fail(err, VMD_E_EXTERNAL, r,
		                "reading the cluster id failed", pool,
		                "rados_cluster_fsid");
	if (strcasecmp(mine, fsid) != 0)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "rbd: location is in another cluster",
		                     "location fsid %s, cluster %s", fsid, mine);
	return 0;
}

static int vr_clone_from_location(struct vmd_ctx *ctx,
                                   const struct vmd_disk_ref *disk,
                                   const char *location, uint64_t size,
                                   struct vmd_error *err)
{
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rados_ioctx_destroyp) rados_ioctx_t pio = NULL;
	_cleanup_(rbd_closep) rbd_image_t parent = NULL;
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	struct vmd_rbd_location l;
	rbd_image_info_t st;
	rbd_image_options_t opts;
	char name[RBD_IMAGE_NAME_MAX];
	const char *pool = vr_pool(ctx);
	int prot = 0;
	int rc = vmd_module_host->rbd_location_parse(location, &l, err);

	if (rc == 0)
		rc = vr_connect(ctx, pool, &c, err);
	if (rc == 0)
		rc = same_cluster(&c, l.fsid, pool, err);
	if (rc < 0)
		return rc;
	rc = rados_ioctx_create(c.cluster, l.pool, &pio);
	if (rc < 0) {
		pio = NULL;
		return vr_fail(err, vr_errc(rc), rc,
		                "opening the location's pool failed", l.pool,
		                "rados_ioctx_create");
	}
	rc = rbd_open_read_only(pio, l.image, &parent, l.snap);
	if (rc < 0) {
		parent = NULL;
		return vr_fail(err, vr_errc(rc), rc,
		                "location image or snapshot not found", l.pool,
		                l.image);
	}
	rc = rbd_snap_is_protected(parent, l.snap, &prot);
	if (rc < 0 || !prot)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "rbd: location snapshot is not protected",
		                     "%s@%s in %s", l.image, l.snap, l.pool);
	rc = rbd_stat(parent, &st, sizeof(st));
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc, "reading the size failed",
		                l.pool, l.image);
	if (size && size < st.size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "requested size is smaller than the image",
		                     "size %llu < image %llu",
		                     (unsigned long long)size,
		                     (unsigned long long)st.size);
	rbd_closep(&parent);
	vr_disk_name(disk, name);
	rbd_image_options_create(&opts);
	rc = rbd_clone3(pio, l.image, l.snap, c.io, name, opts);
	rbd_image_options_destroy(opts);
	if (rc < 0)
		return vr_fail(err, vr_errc(rc), rc, "clone failed", pool, name);
	if (size > st.size) {
		rc = rbd_open(c.io, name, &img, NULL);
		if (rc < 0)
			img = NULL;
		else
			rc = rbd_resize2(img, size, false, NULL, NULL);
		if (rc < 0) {
			struct vmd_error ignored = VMD_ERROR_INIT;

			rbd_closep(&img);
			vr_remove_image(c.io, pool, name, &ignored);
			return vr_fail(err, VMD_E_EXTERNAL, rc,
			                "growing the clone failed", pool, name);
		}
	}
	return 0;
}

/* Unprotect and remove a snapshot; failures only logged (cleanup path). */
static void drop_snapshot(rbd_image_t img, const char *snap)
{
	int prot = 0;
	int r = rbd_snap_is_protected(img, snap, &prot);

	if (r == 0 && prot)
		r = rbd_snap_unprotect(img, snap);
	if (r == 0)
		r = rbd_snap_remove(img, snap);
	if (r < 0 && r != -ENOENT)
		vmd_log_warning("rbd: could not remove temporary snapshot %s: %s",
		                snap, strerror(-r));
}

/* Clone disk@tmp into the store as `name`, flatten, add name@snap. */
static int publish_clone(struct rbd_conn *c, rados_ioctx_t store,
                         const char *store_pool, const char *disk_name,
                         const char *tmp, const char *name,
                         struct vmd_error *err)
{
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	rbd_image_options_t opts;
	int rc;

	rbd_image_options_create(&opts);
	rc = rbd_clone3(c->io, disk_name, tmp, store, name, opts);
	rbd_image_options_destroy(opts);
	if (rc < 0)
		return vr_fail(err, vr_errc(rc), rc,
		                "cloning into the image pool failed", store_pool,
		                name);
	rc = rbd_open(store, name, &img, NULL);
	if (rc < 0) {
		img = NULL;
		rc = vr_fail(err, VMD_E_EXTERNAL, rc,
		             "opening the new image failed", store_pool, name);
	}
	if (rc == 0)
		rc = vmd_module_host->faultpoint("rbd.direct_after_clone", err);
	if (rc == 0) {
		rc = librbd_fault("rbd.publish_flatten");
		if (rc == 0)
			rc = vr_flatten_image(img);
		if (rc < 0)
			rc = vr_fail(err, VMD_E_EXTERNAL, rc, "flatten failed",
			             store_pool, name);
	}
	if (rc == 0 && (rc = rbd_snap_create(img, RBD_SNAP_PUBLISHED)) < 0)
		rc = vr_fail(err, VMD_E_EXTERNAL, rc,
		             "creating the snapshot failed", store_pool, name);
	if (rc == 0 && (rc = rbd_snap_protect(img, RBD_SNAP_PUBLISHED)) < 0)
		rc = vr_fail(err, VMD_E_EXTERNAL, rc,
		             "protecting the snapshot failed", store_pool,
		             name);
	if (rc < 0) {
		struct vmd_error ignored = VMD_ERROR_INIT;

		rbd_closep(&img);
		vr_remove_image(store, store_pool, name, &ignored);
	}
	return rc;
}

static int vr_direct_snapshot(struct vmd_ctx *ctx,
                               const struct vmd_disk_ref *disk,
                               const char *name, char *url, size_t url_size,
                               struct vmd_error *err)
{
	const struct vmd_config *cfg = vmd_ctx_config(ctx);
	const char *store_pool = cfg->images_rbd_glance_store_pool;
	_cleanup_(vr_conn_close) struct rbd_conn c = {0};
	_cleanup_(rados_ioctx_destroyp) rados_ioctx_t store = NULL;
	_cleanup_(rbd_closep) rbd_image_t img = NULL;
	char disk_name[RBD_IMAGE_NAME_MAX], tmp[64], fsid[64];
	struct timespec now;
	int rc = vr_open_disk(ctx, disk, &c, &img, false, err);

	if (rc < 0)
		return rc;
	rc = rados_cluster_fsid(c.cluster, fsid, sizeof(fsid));
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc,
		                "reading the cluster id failed", store_pool,
		                "rados_cluster_fsid");
	rc = rados_ioctx_create(c.cluster, store_pool, &store);
	if (rc < 0) {
		store = NULL;
		return vr_fail(err, vr_errc(rc), rc,
		                "opening the image pool failed", store_pool,
		                "rados_ioctx_create");
	}
	vr_disk_name(disk, disk_name);
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(tmp, sizeof(tmp), "vmdisk-direct-%lld-%ld",
	         (long long)now.tv_sec, (long)getpid());
	rc = rbd_snap_create(img, tmp);
	if (rc < 0)
		return vr_fail(err, VMD_E_EXTERNAL, rc,
		                "creating the temporary snapshot failed",
		                vr_pool(ctx), disk_name);
	rc = rbd_snap_protect(img, tmp);
	if (rc < 0)
		rc = vr_fail(err, VMD_E_EXTERNAL, rc,
		             "protecting the temporary snapshot failed",
		             vr_pool(ctx), disk_name);
	if (rc == 0)
		rc = publish_clone(&c, store, store_pool, disk_name, tmp, name,
		                   err);
	/* The flattened copy no longer needs it; a failure needs it neither. */
	drop_snapshot(img, tmp);
	if (rc < 0)
		return rc;
	if (snprintf(url, url_size, "rbd://%s/%s/%s/%s", fsid, store_pool, name,
	             RBD_SNAP_PUBLISHED) >= (int)url_size)
		return vmd_error_set(err, VMD_E_INVAL, "url buffer too small",
		                     "url_size %zu", url_size);
	return 0;
}

/* Built with this library: the registry loads nothing else. Exported: this
 * stamp, the host pointer above and the table below, nothing more
 * (tests/suite/source/run.sh). */
VMD_BACKEND_MODULE_STAMP;

const struct vmd_backend_ops vmd_backend_rbd = {
	.name = "rbd",
	.create_from_image = vr_create_from_image,
	.create_blank = vr_create_blank,
	.resize = vr_resize,
	.exists = vr_exists,
	.info = vr_info,
	.snapshot_extract = vr_snapshot_extract,
	.remove = vr_remove_disk,
	.xml_source = vr_xml_source,
	.flatten = vr_flatten_disk,
	.snap_create = vr_snap_create_op,
	.snap_remove = vr_snap_remove_op,
	.snap_rollback = vr_snap_rollback_op,
	.clone_from_location = vr_clone_from_location,
	.direct_snapshot = vr_direct_snapshot,
	.open = vr_open,
	.close = vr_close,
};
