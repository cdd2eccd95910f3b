/*
 * The qcow2 engine (see qcow2_image.h).
 *
 * Reading: guest offset -> L1 entry -> L2 table (cached) -> L2 entry, which
 * says unallocated (read the backing device, or zeroes), zero, data at a
 * host offset, or compressed (zlib raw deflate, or a zstd frame for
 * compression type 1). Every host offset taken from the image is checked
 * before use: aligned, inside the file, not in the header cluster, the L1
 * table or the refcount table.
 *
 * Writing (images with 16-bit refcounts and standard L2 entries, which is
 * what we and qemu-img create): a write to a cluster that is not already
 * ours (refcount 1, COPIED) allocates a new cluster at the end of the file,
 * copying in what the guest saw there (backing data) for a partial write.
 * Refcounts are kept in cached refcount blocks; a new refcount block, a
 * larger refcount table or a larger L1 table are allocated the same way.
 * vmd_qcow2_flush() writes L2 tables, refcount blocks, the refcount table,
 * the L1 table, then the header fields in one sector-sized write, then
 * frees the clusters of tables that moved. A crash before the header write
 * leaves the old image; after it, at worst leaked clusters.
 *
 * Fresh output (convert): vmd_qcow2_alloc_run() gives a run of whole
 * guest clusters contiguous new host clusters at once and lets the caller
 * write the data (O_DIRECT, several writers); vmd_qcow2_defer_sync() drops
 * the fsyncs between the flush's steps for a temporary that the caller
 * fsyncs once before publishing it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zlib_lazy.h"
#include "zstd_lazy.h"
#include "bytes.h"
#include "fsutil.h"
#include "qcow2_image.h"

#define L2_CACHE_SLOTS 32
#define RB_CACHE_SLOTS 16

struct slot {
	uint64_t key;        /* L1 index or refcount-table index */
	unsigned char *data; /* one cluster */
	uint64_t host_off;
	uint64_t lru;
	bool valid;
	bool dirty;
};

struct vmd_qcow2 {
	int fd;
	bool writable;
	struct vmd_qcow2_header h;
	struct vmd_inspect_limits lim;
	struct vmd_blockdev *backing;
	uint64_t cs;
	uint32_t cb;
	bool extl2;
	uint64_t l2_entries;
	uint64_t file_size;
	uint64_t next_free; /* cluster index */
	int compression_type;

	uint64_t *l1;
	uint64_t l1_alloc;  /* entries in memory */
	uint64_t l1_offset;
	uint32_t l1_size;
	bool l1_dirty;
	uint64_t old_l1_offset, old_l1_clusters; /* to free after flush */

	uint64_t *rt;
	uint64_t rt_entries;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	bool rt_dirty;
	uint64_t old_rt_offset, old_rt_clusters;
	uint64_t rb_entries;

	bool header_dirty;
	bool defer_sync; /* a temporary the caller fsyncs: flush does not */
	uint64_t tick;
	struct slot l2c[L2_CACHE_SLOTS];
	struct slot rbc[RB_CACHE_SLOTS];
	struct slot *l2_last, *rb_last; /* each cache's last answer */

	unsigned char *cbuf;  /* compressed input, cs + 1024 bytes (lazy) */
	unsigned char *ubuf;  /* one decompressed cluster (lazy) */
	uint64_t ubuf_key;    /* guest cluster index in ubuf, or UINT64_MAX */
	ZSTD_DCtx *zstd;
};

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

static int corrupt(struct vmd_error *err, const char *what, uint64_t value)
{
	return vmd_error_set(err, VMD_E_CORRUPT, "qcow2: image is corrupt",
	                     "%s (0x%llx)", what, (unsigned long long)value);
}

/* a + b, saturated: offsets come from the image and must not wrap. */
static uint64_t end_sat(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b,
                           uint64_t blen)
{
	return alen && blen && a < end_sat(b, blen) && b < end_sat(a, alen);
}

/* A host cluster named by the image: may hold data or an L2 table. */
static bool host_cluster_ok(const struct vmd_qcow2 *q, uint64_t off)
{
	/* next_free covers the file and what we allocated but not wrote. */
	return !(off % q->cs || off < q->cs || off / q->cs >= q->next_free ||
	         ranges_overlap(off, q->cs, q->l1_offset,
	                        (uint64_t)q->l1_size * 8) ||
	         ranges_overlap(off, q->cs, q->rt_offset,
	                        (uint64_t)q->rt_clusters * q->cs));
}

static int check_host_cluster(struct vmd_qcow2 *q, uint64_t off,
                              const char *what, struct vmd_error *err)
{
	return host_cluster_ok(q, off) ? 0 : corrupt(err, what, off);
}

/* ---- cluster caches ---------------------------------------------------- */

static int slot_write(struct vmd_qcow2 *q, struct slot *s,
                      struct vmd_error *err)
{
	if (!s->valid || !s->dirty)
		return 0;
	if (vmd_pwrite_full(q->fd, s->data, q->cs, s->host_off) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed", "metadata at %llu",
		                           (unsigned long long)s->host_off);
	s->dirty = false;
	return 0;
}

/* Find key in a cache, or take the least recently used slot for it.
 * *last is the slot the cache answered last: a walk asks for the same L2
 * table cluster after cluster, so it is tried before the scan (a valid key
 * is in one slot at most, so the answer is the same). */
static int cache_get(struct vmd_qcow2 *q, struct slot *c, size_t n,
                     struct slot **last, uint64_t key, uint64_t host_off,
                     bool fresh, struct slot **out, struct vmd_error *err)
{
	struct slot *victim = NULL;

	if (*last && (*last)->valid && (*last)->key == key) {
		(*last)->lru = ++q->tick;
		*out = *last;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (c[i].valid && c[i].key == key) {
			c[i].lru = ++q->tick;
			*out = *last = &c[i];
			return 0;
		}
		if (!victim || !c[i].valid ||
		    (victim->valid && c[i].lru < victim->lru))
			victim = &c[i];
	}
	int rc = slot_write(q, victim, err);

	if (rc < 0)
		return rc;
	if (!victim->data) {
		victim->data = malloc(q->cs);
		if (!victim->data)
			return vmd_error_set(err, VMD_E_NOMEM,
			                     "qcow2: out of memory", "cache slot");
	}
	victim->valid = false;
	if (fresh) {
		memset(victim->data, 0, q->cs);
	} else if (vmd_pread_full(q->fd, victim->data, q->cs, host_off) < 0) {
		/* A table that ends the file may be short; the rest is zero. */
		ssize_t got = pread(q->fd, victim->data, q->cs, (off_t)host_off);

		if (got < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "qcow2: read failed",
			                           "metadata at %llu",
			                           (unsigned long long)host_off);
		memset(victim->data + got, 0, q->cs - (uint64_t)got);
	}
	victim->key = key;
	victim->host_off = host_off;
	victim->valid = true;
	victim->dirty = fresh;
	victim->lru = ++q->tick;
	*out = *last = victim;
	return 0;
}

/* ---- refcounts (writable images: 16-bit) ------------------------------- */

static int refcount_block(struct vmd_qcow2 *q, uint64_t cluster,
                          struct slot **out, struct vmd_error *err);

static int refcount_set(struct vmd_qcow2 *q, uint64_t cluster, uint16_t value,
                        struct vmd_error *err)
{
	struct slot *s;
	int rc = refcount_block(q, cluster, &s, err);

	if (rc < 0)
		return rc;
	vmd_put_be16(s->data + 2 * (cluster % q->rb_entries), value);
	s->dirty = true;
	return 0;
}

static uint64_t alloc_clusters(struct vmd_qcow2 *q, uint64_t n)
{
	uint64_t first = q->next_free;

	q->next_free += n;
	return first;
}

/* Move the refcount table to a bigger place: entries >= min_entries. */
static int grow_refcount_table(struct vmd_qcow2 *q, uint64_t min_entries,
                               struct vmd_error *err)
{
	uint64_t per_cluster = q->cs / 8;
	uint64_t clusters = q->rt_clusters ? q->rt_clusters : 1;
	uint64_t *bigger;
	uint64_t first;

	/* Bounded: clusters <= 2^33 and per_cluster <= 2^18, no wrap; too
	 * many is refused just below. */
	while (clusters <= UINT32_MAX && clusters * per_cluster <= min_entries)
		clusters *= 2;
	if (clusters * q->cs > q->lim.max_table_size || clusters > UINT32_MAX)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: image too large",
		                     "refcount table of %llu clusters",
		                     (unsigned long long)clusters);
	bigger = calloc(clusters * per_cluster, sizeof(uint64_t));
	if (!bigger)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "refcount table");
	memcpy(bigger, q->rt, q->rt_entries * sizeof(uint64_t));
	free(q->rt);
	q->rt = bigger;
	q->rt_entries = clusters * per_cluster;
	first = alloc_clusters(q, clusters);
	if (!q->old_rt_clusters) {
		q->old_rt_offset = q->rt_offset;
		q->old_rt_clusters = q->rt_clusters;
	}
	q->rt_offset = first * q->cs;
	q->rt_clusters = (uint32_t)clusters;
	q->rt_dirty = true;
	q->header_dirty = true;
	for (uint64_t i = 0; i < clusters; i++) {
		int rc = refcount_set(q, first + i, 1, err);

		if (rc < 0)
			return rc;
	}
	return 0;
}

static int refcount_block(struct vmd_qcow2 *q, uint64_t cluster,
                          struct slot **out, struct vmd_error *err)
{
	uint64_t idx = cluster / q->rb_entries;
	int rc;

	if (idx >= q->rt_entries) {
		rc = grow_refcount_table(q, idx, err);
		if (rc < 0)
			return rc;
	}
	if (q->rt[idx] == 0) {
		/* A new block; it may have to count itself. */
		uint64_t self = alloc_clusters(q, 1);

		q->rt[idx] = self * q->cs;
		q->rt_dirty = true;
		rc = cache_get(q, q->rbc, RB_CACHE_SLOTS, &q->rb_last, idx,
		               q->rt[idx], true, out, err);
		if (rc < 0)
			return rc;
		if (self / q->rb_entries == idx)
			vmd_put_be16((*out)->data + 2 * (self % q->rb_entries), 1);
		else if ((rc = refcount_set(q, self, 1, err)) < 0)
			return rc;
		/* The recursion may have evicted our slot: look it up again. */
		return cache_get(q, q->rbc, RB_CACHE_SLOTS, &q->rb_last, idx,
		                 q->rt[idx], false, out, err);
	}
	if (check_host_cluster(q, q->rt[idx] & VMD_QCOW2_RTE_OFFSET_MASK,
	                       "refcount block offset", err) < 0)
		return VMD_E_CORRUPT;
	return cache_get(q, q->rbc, RB_CACHE_SLOTS, &q->rb_last, idx,
	                 q->rt[idx] & VMD_QCOW2_RTE_OFFSET_MASK, false, out, err);
}

static int free_clusters(struct vmd_qcow2 *q, uint64_t off, uint64_t n,
                         struct vmd_error *err)
{
	for (uint64_t i = 0; i < n; i++) {
		int rc = refcount_set(q, off / q->cs + i, 0, err);

		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- L2 ----------------------------------------------------------------- */

static int l2_table(struct vmd_qcow2 *q, uint64_t l1_idx, bool allocate,
                    struct slot **out, struct vmd_error *err)
{
	uint64_t l2_off;
	int rc;

	*out = NULL;
	if (l1_idx >= q->l1_size)
		return corrupt(err, "L1 index past the table", l1_idx);
	l2_off = q->l1[l1_idx] & VMD_QCOW2_L1E_OFFSET_MASK;
	if (l2_off == 0) {
		if (!allocate)
			return 0;
		uint64_t c = alloc_clusters(q, 1);

		rc = refcount_set(q, c, 1, err);
		if (rc < 0)
			return rc;
		q->l1[l1_idx] = c * q->cs | VMD_QCOW2_OFLAG_COPIED;
		q->l1_dirty = true;
		return cache_get(q, q->l2c, L2_CACHE_SLOTS, &q->l2_last, l1_idx,
		                 c * q->cs, true, out, err);
	}
	rc = check_host_cluster(q, l2_off, "L2 table offset", err);
	if (rc < 0)
		return rc;
	return cache_get(q, q->l2c, L2_CACHE_SLOTS, &q->l2_last, l1_idx, l2_off,
	                 false, out, err);
}

struct mapping {
	enum vmd_qcow2_kind kind;
	uint64_t host_off;   /* DATA: cluster start; COMPRESSED: byte offset */
	uint64_t comp_len;   /* COMPRESSED */
	uint64_t entry;      /* raw L2 entry */
	uint64_t bitmap;     /* extended L2 */
};

/* Entry l2_idx of the L2 table in data, as a mapping. A bad entry gives
 * false, with what is wrong in *what and *value: no error is set here, so
 * that vmd_qcow2_cluster_kinds() can stop before it silently. */
static bool decode_entry(const struct vmd_qcow2 *q, const unsigned char *data,
                         uint64_t l2_idx, struct mapping *m,
                         const char **what, uint64_t *value)
{
	size_t esz = q->extl2 ? 16 : 8;
	uint64_t e = vmd_be64(data + l2_idx * esz);

	memset(m, 0, sizeof(*m));
	m->entry = e;
	if (q->extl2)
		m->bitmap = vmd_be64(data + l2_idx * esz + 8);
	if (e & VMD_QCOW2_OFLAG_COMPRESSED) {
		uint32_t x = 62 - (q->cb - 8);
		uint64_t sectors = ((e >> x) & ((1ull << (62 - x)) - 1)) + 1;

		m->kind = VMD_QCOW2_COMPRESSED;
		m->host_off = e & ((1ull << x) - 1);
		m->comp_len = sectors * 512 - (m->host_off & 511);
		if (m->host_off < q->cs || m->host_off >= q->file_size ||
		    m->comp_len > q->cs + 1024) {
			*what = "compressed cluster descriptor";
			*value = e;
			return false;
		}
		if (m->host_off + m->comp_len > q->file_size)
			m->comp_len = q->file_size - m->host_off;
		return true;
	}
	m->host_off = e & VMD_QCOW2_L2E_OFFSET_MASK;
	*what = "data cluster offset";
	*value = m->host_off;
	if (q->extl2) {
		uint32_t alloc = (uint32_t)m->bitmap;
		uint32_t zero = (uint32_t)(m->bitmap >> 32);

		if (alloc & zero) {
			*what = "subcluster both allocated and zero";
			*value = m->bitmap;
			return false;
		}
		if (alloc == 0 && zero == 0)
			m->kind = VMD_QCOW2_UNALLOCATED;
		else if (zero == 0xffffffffu)
			m->kind = VMD_QCOW2_ZERO;
		else if (alloc == 0xffffffffu)
			m->kind = VMD_QCOW2_DATA;
		else
			m->kind = VMD_QCOW2_MIXED;
		return !alloc || host_cluster_ok(q, m->host_off);
	}
	if ((e & VMD_QCOW2_OFLAG_ZERO) && q->h.version >= 3) {
		m->kind = VMD_QCOW2_ZERO;
		return true;
	}
	if (m->host_off == 0) {
		m->kind = VMD_QCOW2_UNALLOCATED;
		return true;
	}
	m->kind = VMD_QCOW2_DATA;
	return host_cluster_ok(q, m->host_off);
}

static int map_cluster(struct vmd_qcow2 *q, uint64_t guest_cluster,
                       struct mapping *m, struct vmd_error *err)
{
	uint64_t l1_idx = guest_cluster / q->l2_entries;
	uint64_t l2_idx = guest_cluster % q->l2_entries;
	struct slot *s;
	const char *what = NULL;
	uint64_t value = 0;
	int rc = l2_table(q, l1_idx, false, &s, err);

	memset(m, 0, sizeof(*m));
	if (rc < 0)
		return rc;
	if (!s) {
		m->kind = VMD_QCOW2_UNALLOCATED;
		return 0;
	}
	if (!decode_entry(q, s->data, l2_idx, m, &what, &value))
		return corrupt(err, what, value);
	return 0;
}

int vmd_qcow2_cluster_kind(struct vmd_qcow2 *q, uint64_t off,
                           enum vmd_qcow2_kind *kind, struct vmd_error *err)
{
	struct mapping m;
	int rc = map_cluster(q, off >> q->cb, &m, err);

	*kind = m.kind;
	return rc;
}

int vmd_qcow2_cluster_kinds(struct vmd_qcow2 *q, uint64_t off, size_t n,
                            enum vmd_qcow2_kind *kinds, size_t *got,
                            struct vmd_error *err)
{
	uint64_t gc = off >> q->cb;
	uint64_t l1_idx = gc / q->l2_entries;
	uint64_t l2_idx = gc % q->l2_entries;
	struct slot *s;
	struct mapping m;
	const char *what;
	uint64_t value;
	int rc = l2_table(q, l1_idx, false, &s, err);

	*got = 0;
	if (rc < 0)
		return rc;
	if (n > q->l2_entries - l2_idx)
		n = (size_t)(q->l2_entries - l2_idx);
	for (size_t i = 0; i < n; i++) {
		if (!s)
			kinds[i] = VMD_QCOW2_UNALLOCATED;
		else if (decode_entry(q, s->data, l2_idx + i, &m, &what, &value))
			kinds[i] = m.kind;
		else
			break;
		*got = i + 1;
	}
	return 0;
}

/* ---- reading ------------------------------------------------------------ */

static int read_backing(struct vmd_qcow2 *q, unsigned char *buf, size_t len,
                        uint64_t off, struct vmd_error *err)
{
	if (!q->backing) {
		memset(buf, 0, len);
		return 0;
	}
	return vmd_blockdev_pread(q->backing, buf, len, off, err);
}

static int decompress(struct vmd_qcow2 *q, const struct mapping *m,
                      struct vmd_error *err)
{
	ssize_t got;

	/* Made on first use, like the zstd context: most images have no
	 * compressed cluster, and a cluster may be 2 MiB. */
	if (!q->cbuf)
		q->cbuf = malloc(q->cs + 1024);
	if (!q->ubuf)
		q->ubuf = malloc(q->cs);
	if (!q->cbuf || !q->ubuf)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "compression buffers");
	got = pread(q->fd, q->cbuf, m->comp_len, (off_t)m->host_off);
	if (got < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: read failed", "compressed data");
	if (q->compression_type == 1) {
		ZSTD_inBuffer in = {q->cbuf, (size_t)got, 0};
		ZSTD_outBuffer out = {q->ubuf, q->cs, 0};

		/* Made on first use: most images have no zstd cluster, and
		 * none of the others loads libzstd. */
		int rc = q->zstd ? 0 : vmd_zstd_load(err);

		if (rc < 0)
			return rc;
		if (!q->zstd && !(q->zstd = ZSTD_createDCtx()))
			return vmd_error_set(err, VMD_E_NOMEM,
			                     "qcow2: out of memory", "zstd context");
		ZSTD_DCtx_reset(q->zstd, ZSTD_reset_session_only);
		while (out.pos < out.size) {
			size_t r = ZSTD_decompressStream(q->zstd, &out, &in);

			if (ZSTD_isError(r) || (r != 0 && in.pos == in.size &&
			                        out.pos < out.size))
				return corrupt(err, "bad zstd cluster",
				               m->host_off);
			if (r == 0)
				break;
		}
		if (out.pos != out.size)
			return corrupt(err, "short zstd cluster", m->host_off);
		return 0;
	}
	z_stream zs;
	int rc = vmd_zlib_load(err);

	if (rc < 0)
		return rc;
	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -12) != Z_OK)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "inflateInit2");
	zs.next_in = q->cbuf;
	zs.avail_in = (uInt)got;
	zs.next_out = q->ubuf;
	zs.avail_out = (uInt)q->cs;
	int zr = inflate(&zs, Z_FINISH);
	uint64_t produced = q->cs - zs.avail_out;

	inflateEnd(&zs);
	/* qemu accepts a stream that fills the cluster without Z_STREAM_END
	 * (the compressed length is rounded up to sectors). */
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || produced != q->cs)
		return corrupt(err, "bad deflate cluster", m->host_off);
	return 0;
}

/* Read part of one guest cluster (or, for DATA, a run of clusters). */
/* Bytes of [off, off+avail) that can be read with the len bytes of DATA
 * cluster gc at host (which start at off): following clusters of the same
 * L2 table whose data follows in the file, whole and inside it, join the
 * run (one pread instead of one a cluster). A bad entry ends the run
 * silently; it is mapped, and reported, on its own next. */
static size_t data_run(struct vmd_qcow2 *q, uint64_t gc, uint64_t host,
                       uint64_t off, size_t len, size_t avail)
{
	uint64_t l2_idx = gc % q->l2_entries;
	uint64_t next = host + (off & (q->cs - 1)) + len;
	struct slot *s;
	struct mapping m;
	const char *what;
	uint64_t value;

	if (len >= avail || next > q->file_size ||
	    l2_table(q, gc / q->l2_entries, false, &s, NULL) < 0 || !s)
		return len;
	while (len < avail && ++l2_idx < q->l2_entries) {
		size_t n = avail - len < q->cs ? avail - len : (size_t)q->cs;

		if (!decode_entry(q, s->data, l2_idx, &m, &what, &value) ||
		    m.kind != VMD_QCOW2_DATA || m.host_off != next ||
		    next + q->cs > q->file_size)
			break;
		len += n;
		next += q->cs;
	}
	return len;
}

/* Read part of one guest cluster from off, or, for DATA, *len bytes of a
 * run of clusters (at most avail); *len is what was read. */
static int read_cluster_part(struct vmd_qcow2 *q, unsigned char *buf,
                             size_t *lenp, size_t avail, uint64_t off,
                             struct vmd_error *err)
{
	size_t len = *lenp;
	uint64_t gc = off >> q->cb;
	uint64_t in = off & (q->cs - 1);
	struct mapping m;
	int rc = map_cluster(q, gc, &m, err);

	if (rc < 0)
		return rc;
	switch (m.kind) {
	case VMD_QCOW2_UNALLOCATED:
		return read_backing(q, buf, len, off, err);
	case VMD_QCOW2_ZERO:
		memset(buf, 0, len);
		return 0;
	case VMD_QCOW2_DATA:
		len = *lenp = data_run(q, gc, m.host_off, off, len, avail);
		if (vmd_pread_full(q->fd, buf, len, m.host_off + in) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "qcow2: read failed",
			                           "data at %llu",
			                           (unsigned long long)m.host_off);
		return 0;
	case VMD_QCOW2_COMPRESSED:
		if (q->ubuf_key != gc) {
			q->ubuf_key = UINT64_MAX;
			rc = decompress(q, &m, err);
			if (rc < 0)
				return rc;
			q->ubuf_key = gc;
		}
		memcpy(buf, q->ubuf + in, len);
		return 0;
	case VMD_QCOW2_MIXED:
		break;
	}
	/* Extended L2 with mixed subclusters: one subcluster at a time. */
	uint64_t sc_size = q->cs / 32;
	uint32_t alloc = (uint32_t)m.bitmap, zero = (uint32_t)(m.bitmap >> 32);

	while (len > 0) {
		unsigned sc = (unsigned)(in / sc_size);
		size_t n = (size_t)(sc_size - in % sc_size);

		if (n > len)
			n = len;
		if (alloc & (1u << sc)) {
			if (vmd_pread_full(q->fd, buf, n, m.host_off + in) < 0)
				return vmd_error_set_errno(err, VMD_E_IO, errno,
				                           "qcow2: read failed",
				                           "subcluster");
		} else if (zero & (1u << sc)) {
			memset(buf, 0, n);
		} else if ((rc = read_backing(q, buf, n, (gc << q->cb) + in,
		                              err)) < 0) {
			return rc;
		}
		buf += n;
		len -= n;
		in += n;
	}
	return 0;
}

/* Of len bytes at off, how many lie in off's cluster: the piece the read
 * and write loops handle at a time. */
static size_t cluster_piece(const struct vmd_qcow2 *q, uint64_t off,
                            size_t len)
{
	size_t n = (size_t)(q->cs - (off & (q->cs - 1)));

	return n < len ? n : len;
}

int vmd_qcow2_pread(struct vmd_qcow2 *q, void *buf, size_t len, uint64_t off,
                    struct vmd_error *err)
{
	unsigned char *p = buf;

	while (len > 0) {
		size_t n, avail;
		int rc;

		if (off >= q->h.size) {
			memset(p, 0, len);
			return 0;
		}
		avail = len < q->h.size - off ? len : (size_t)(q->h.size - off);
		n = cluster_piece(q, off, avail);
		rc = read_cluster_part(q, p, &n, avail, off, err);
		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- writing ------------------------------------------------------------ */

static int writable_check(struct vmd_qcow2 *q, struct vmd_error *err)
{
	if (!q->writable)
		return vmd_error_set(err, VMD_E_INVAL, "qcow2: image is read-only",
		                     "write to a read-only image");
	return 0;
}

/* Data writes need a writable image of the layout we write (16-bit
 * refcounts, standard L2 entries). */
static int data_writable_check(struct vmd_qcow2 *q, struct vmd_error *err)
{
	int rc = writable_check(q, err);

	if (rc < 0)
		return rc;
	if (q->extl2 || q->h.refcount_order != 4)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: writing this image layout is not "
		                     "supported",
		                     "extended L2 or refcount order %u",
		                     q->h.refcount_order);
	return 0;
}

/* Write one whole guest cluster from data. */
static int write_cluster(struct vmd_qcow2 *q, uint64_t gc,
                         const unsigned char *data, struct vmd_error *err)
{
	uint64_t l1_idx = gc / q->l2_entries, l2_idx = gc % q->l2_entries;
	struct slot *s;
	uint64_t e, host;
	int rc = l2_table(q, l1_idx, true, &s, err);

	if (rc < 0)
		return rc;
	e = vmd_be64(s->data + l2_idx * 8);
	if (e & VMD_QCOW2_OFLAG_COMPRESSED)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: rewriting compressed clusters is "
		                     "not supported",
		                     "guest cluster %llu",
		                     (unsigned long long)gc);
	host = e & VMD_QCOW2_L2E_OFFSET_MASK;
	if (host && !(e & VMD_QCOW2_OFLAG_COPIED))
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: writing shared clusters (snapshots) "
		                     "is not supported",
		                     "guest cluster %llu", (unsigned long long)gc);
	if (host) {
		rc = check_host_cluster(q, host, "data cluster offset", err);
		if (rc < 0)
			return rc;
	} else {
		uint64_t c = alloc_clusters(q, 1);

		rc = refcount_set(q, c, 1, err);
		if (rc < 0)
			return rc;
		host = c * q->cs;
	}
	if (vmd_pwrite_full(q->fd, data, q->cs, host) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed", "data at %llu",
		                           (unsigned long long)host);
	if (host + q->cs > q->file_size)
		q->file_size = host + q->cs;
	/* The L2 slot may have been evicted by the allocation above. */
	rc = l2_table(q, l1_idx, true, &s, err);
	if (rc < 0)
		return rc;
	vmd_put_be64(s->data + l2_idx * 8, host | VMD_QCOW2_OFLAG_COPIED);
	s->dirty = true;
	if (q->ubuf_key == gc)
		q->ubuf_key = UINT64_MAX;
	return 0;
}

int vmd_qcow2_pwrite(struct vmd_qcow2 *q, const void *buf, size_t len,
                     uint64_t off, struct vmd_error *err)
{
	const unsigned char *p = buf;
	_cleanup_(freep) unsigned char *tmp = NULL;
	int rc = data_writable_check(q, err);

	if (rc < 0)
		return rc;
	if (off > q->h.size || len > q->h.size - off)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: write past the end of the disk",
		                     "%zu bytes at %llu", len,
		                     (unsigned long long)off);
	while (len > 0) {
		uint64_t gc = off >> q->cb;
		uint64_t in = off & (q->cs - 1);
		size_t n = cluster_piece(q, off, len);

		if (n == q->cs) {
			rc = write_cluster(q, gc, p, err);
		} else {
			/* Partial: what the guest sees there, then our bytes. */
			if (!tmp && !(tmp = malloc(q->cs)))
				return vmd_error_set(err, VMD_E_NOMEM,
				                     "qcow2: out of memory", "cow");
			rc = vmd_qcow2_pread(q, tmp, q->cs, gc << q->cb, err);
			if (rc == 0) {
				memcpy(tmp + in, p, n);
				rc = write_cluster(q, gc, tmp, err);
			}
		}
		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vmd_qcow2_alloc_run(struct vmd_qcow2 *q, uint64_t off, uint64_t len,
                        uint64_t *host_off, struct vmd_error *err)
{
	uint64_t end, n, first, host, host_end;
	int rc = data_writable_check(q, err);

	*host_off = 0;
	if (rc < 0)
		return rc;
	if (len == 0 || ((off | len) & (q->cs - 1)) != 0)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: write not on cluster boundaries",
		                     "%llu bytes at %llu",
		                     (unsigned long long)len,
		                     (unsigned long long)off);
	if (__builtin_add_overflow(off, len, &end) || end > q->h.size)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: write past the end of the disk",
		                     "%llu bytes at %llu",
		                     (unsigned long long)len,
		                     (unsigned long long)off);
	n = len >> q->cb;
	/* Every entry of the run must be free; the L2 tables it needs are
	 * allocated now, before the data, so that the data is one run. */
	for (uint64_t gc = off >> q->cb; gc < end >> q->cb; gc++) {
		struct slot *s;

		rc = l2_table(q, gc / q->l2_entries, true, &s, err);
		if (rc < 0)
			return rc;
		if (vmd_be64(s->data + (gc % q->l2_entries) * 8) != 0)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "qcow2: cluster already allocated",
			                     "guest cluster %llu",
			                     (unsigned long long)gc);
	}
	first = q->next_free;
	if (__builtin_mul_overflow(first, q->cs, &host) ||
	    __builtin_add_overflow(host, len, &host_end) ||
	    host_end - 1 > VMD_QCOW2_L2E_OFFSET_MASK)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "qcow2: image too large",
		                     "data cluster %llu",
		                     (unsigned long long)first);
	alloc_clusters(q, n);
	for (uint64_t i = 0; i < n; i++) {
		rc = refcount_set(q, first + i, 1, err);
		if (rc < 0)
			return rc;
	}
	/* The refcount blocks may have evicted the L2 tables: l2_table
	 * reads them back. */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t gc = (off >> q->cb) + i;
		struct slot *s;

		rc = l2_table(q, gc / q->l2_entries, true, &s, err);
		if (rc < 0)
			return rc;
		vmd_put_be64(s->data + (gc % q->l2_entries) * 8,
		             (host + i * q->cs) | VMD_QCOW2_OFLAG_COPIED);
		s->dirty = true;
		if (q->ubuf_key == gc)
			q->ubuf_key = UINT64_MAX;
	}
	if (host_end > q->file_size)
		q->file_size = host_end;
	*host_off = host;
	return 0;
}

void vmd_qcow2_defer_sync(struct vmd_qcow2 *q)
{
	q->defer_sync = true;
}

int vmd_qcow2_resize(struct vmd_qcow2 *q, uint64_t new_size,
                     struct vmd_error *err)
{
	uint64_t per_l2 = q->cs * q->l2_entries;
	uint64_t need, have_clusters, need_clusters;
	int rc = writable_check(q, err);

	if (rc < 0)
		return rc;
	if (new_size < q->h.size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "qcow2: shrinking is not supported",
		                     "%llu < %llu", (unsigned long long)new_size,
		                     (unsigned long long)q->h.size);
	if (new_size % 512)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "qcow2: size must be a multiple of 512",
		                     "size %llu", (unsigned long long)new_size);
	need = new_size / per_l2 + (new_size % per_l2 != 0);
	if (need * 8 > q->lim.max_table_size || need > UINT32_MAX)
		return vmd_error_set(err, VMD_E_INVAL, "qcow2: size too large",
		                     "L1 of %llu entries", (unsigned long long)need);
	if (need > q->l1_size) {
		uint64_t *bigger = calloc(need, sizeof(uint64_t));

		if (!bigger)
			return vmd_error_set(err, VMD_E_NOMEM,
			                     "qcow2: out of memory", "L1 table");
		memcpy(bigger, q->l1, (size_t)q->l1_size * 8);
		free(q->l1);
		q->l1 = bigger;
		q->l1_alloc = need;
		have_clusters = div_up((uint64_t)q->l1_size * 8, q->cs);
		need_clusters = div_up(need * 8, q->cs);
		if (need_clusters > have_clusters || q->l1_offset == 0) {
			uint64_t first = alloc_clusters(q, need_clusters);

			for (uint64_t i = 0; i < need_clusters; i++)
				if ((rc = refcount_set(q, first + i, 1, err)) < 0)
					return rc;
			if (!q->old_l1_clusters) {
				q->old_l1_offset = q->l1_offset;
				q->old_l1_clusters = have_clusters;
			}
			q->l1_offset = first * q->cs;
		}
		q->l1_size = (uint32_t)need;
		q->l1_dirty = true;
	}
	q->h.size = new_size;
	q->header_dirty = true;
	return 0;
}

static int write_table(struct vmd_qcow2 *q, const uint64_t *t,
                       uint64_t entries, uint64_t off, uint64_t clusters,
                       struct vmd_error *err)
{
	_cleanup_(freep) unsigned char *buf = calloc(clusters, q->cs);

	if (!buf)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "table buffer");
	for (uint64_t i = 0; i < entries && i * 8 < clusters * q->cs; i++)
		vmd_put_be64(buf + 8 * i, t[i]);
	if (vmd_pwrite_full(q->fd, buf, clusters * q->cs, off) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed", "table at %llu",
		                           (unsigned long long)off);
	return 0;
}

static int flush_metadata(struct vmd_qcow2 *q, struct vmd_error *err)
{
	int rc = 0;

	for (size_t i = 0; i < L2_CACHE_SLOTS && rc == 0; i++)
		rc = slot_write(q, &q->l2c[i], err);
	for (size_t i = 0; i < RB_CACHE_SLOTS && rc == 0; i++)
		rc = slot_write(q, &q->rbc[i], err);
	if (rc == 0 && q->rt_dirty)
		rc = write_table(q, q->rt, q->rt_entries, q->rt_offset,
		                 q->rt_clusters, err);
	if (rc == 0)
		q->rt_dirty = false;
	if (rc == 0 && q->l1_dirty)
		rc = write_table(q, q->l1, q->l1_size, q->l1_offset,
		                 div_up((uint64_t)q->l1_size * 8, q->cs), err);
	if (rc == 0)
		q->l1_dirty = false;
	return rc;
}

int vmd_qcow2_flush(struct vmd_qcow2 *q, struct vmd_error *err)
{
	unsigned char hdr[36];
	int rc;

	if (!q->writable)
		return 0;
	rc = flush_metadata(q, err);
	if (rc == 0 && !q->defer_sync && vmd_fsync(q->fd) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "qcow2: sync failed", "fsync");
	if (rc < 0 || !q->header_dirty)
		return rc;
	/* size, crypt, l1_size, l1_offset, refcount table offset/clusters:
	 * bytes 24..59, one sector, one write. */
	vmd_put_be64(hdr, q->h.size);
	vmd_put_be32(hdr + 8, q->h.crypt_method);
	vmd_put_be32(hdr + 12, q->l1_size);
	vmd_put_be64(hdr + 16, q->l1_offset);
	vmd_put_be64(hdr + 24, q->rt_offset);
	vmd_put_be32(hdr + 32, q->rt_clusters);
	if (vmd_pwrite_full(q->fd, hdr, sizeof(hdr), 24) < 0 ||
	    (!q->defer_sync && vmd_fsync(q->fd) < 0))
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "qcow2: write failed", "header");
	q->header_dirty = false;
	q->h.l1_size = q->l1_size;
	q->h.l1_table_offset = q->l1_offset;
	q->h.refcount_table_offset = q->rt_offset;
	q->h.refcount_table_clusters = q->rt_clusters;
	/* The old tables are no longer referenced: free their clusters. */
	if (q->old_l1_clusters && q->old_l1_offset)
		rc = free_clusters(q, q->old_l1_offset, q->old_l1_clusters, err);
	if (rc == 0 && q->old_rt_clusters && q->old_rt_offset)
		rc = free_clusters(q, q->old_rt_offset, q->old_rt_clusters, err);
	q->old_l1_clusters = q->old_rt_clusters = 0;
	if (rc == 0)
		rc = flush_metadata(q, err);
	if (rc == 0 && !q->defer_sync && vmd_fsync(q->fd) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "qcow2: sync failed", "fsync");
	return rc;
}

/* ---- open/close ----------------------------------------------------------- */

static uint64_t *read_table(int fd, uint64_t off, uint64_t entries,
                            uint64_t alloc_entries, struct vmd_error *err)
{
	uint64_t bytes;
	_cleanup_(freep) unsigned char *raw =
		__builtin_mul_overflow(entries, 8, &bytes) || bytes >= SIZE_MAX
			? NULL
			: malloc((size_t)bytes + 1);
	uint64_t *t = calloc(alloc_entries ? alloc_entries : 1, 8);

	if (!raw || !t) {
		free(t);
		vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory", "table");
		return NULL;
	}
	ssize_t got = entries ? pread(fd, raw, entries * 8, (off_t)off) : 0;

	if (got < 0) {
		free(t);
		vmd_error_set_errno(err, VMD_E_IO, errno, "qcow2: read failed",
		                    "table at %llu", (unsigned long long)off);
		return NULL;
	}
	/* A table that ends the file may be short: the rest reads as 0. */
	for (uint64_t i = 0; i < entries && (i + 1) * 8 <= (uint64_t)got; i++)
		t[i] = vmd_be64(raw + 8 * i);
	return t;
}

int vmd_qcow2_open(int fd, bool writable, const struct vmd_inspect_limits *lim,
                   struct vmd_blockdev *backing, struct vmd_qcow2 **out,
                   struct vmd_error *err)
{
	struct vmd_qcow2 *q = calloc(1, sizeof(*q));
	struct vmd_inspect_result ins;
	struct stat st;
	int rc;

	*out = NULL;
	if (!q)
		return vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
		                     "image");
	q->fd = fd;
	q->writable = writable;
	q->backing = backing;
	q->ubuf_key = UINT64_MAX;
	if (lim)
		q->lim = *lim;
	else
		vmd_inspect_limits_default(&q->lim);
	/* The inspector's checks are the reader's preconditions: bounded
	 * tables, no overlaps, no external data file, no encryption. */
	rc = vmd_inspect_fd(fd, &q->lim, VMD_INSPECT_ALLOW_BACKING, &ins, err);
	if (rc == 0 && (ins.format != VMD_IMG_QCOW2 || !ins.safe))
		rc = vmd_error_set(err, VMD_E_REFUSED,
		                   "qcow2: image refused by the inspector",
		                   "%s: %s", vmd_image_format_name(ins.format),
		                   ins.n_reasons ? ins.reasons[0].text : "");
	if (rc == 0)
		rc = vmd_qcow2_read_header(fd, &q->h, err);
	if (rc == 0 && fstat(fd, &st) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "qcow2: read failed", "fstat");
	if (rc < 0) {
		vmd_qcow2_close(q, NULL);
		return rc;
	}
	q->file_size = (uint64_t)st.st_size;
	q->cb = q->h.cluster_bits;
	q->cs = 1ull << q->cb;
	q->extl2 = (q->h.incompatible_features & VMD_QCOW2_INCOMPAT_EXTL2) != 0;
	q->l2_entries = q->cs / (q->extl2 ? 16 : 8);
	q->compression_type =
		(q->h.incompatible_features & VMD_QCOW2_INCOMPAT_COMPRESSION) ? 1 : 0;
	q->l1_size = q->h.l1_size;
	q->l1_offset = q->h.l1_table_offset;
	q->rt_offset = q->h.refcount_table_offset;
	q->rt_clusters = q->h.refcount_table_clusters;
	q->rt_entries = (uint64_t)q->rt_clusters * q->cs / 8;
	q->rb_entries = q->cs * 8 / (1u << q->h.refcount_order);
	q->next_free = div_up(q->file_size, q->cs);
	q->l1 = read_table(fd, q->l1_offset, q->l1_size, q->l1_size, err);
	q->l1_alloc = q->l1_size;
	q->rt = q->l1 && writable ? read_table(fd, q->rt_offset, q->rt_entries,
	                                      q->rt_entries, err)
	                          : NULL;
	if (!q->l1 || (writable && !q->rt)) {
		if (!vmd_error_is_set(err))
			vmd_error_set(err, VMD_E_NOMEM, "qcow2: out of memory",
			              "buffers");
		vmd_qcow2_close(q, NULL);
		return err ? err->code : VMD_E_NOMEM;
	}
	*out = q;
	return 0;
}

int vmd_qcow2_close(struct vmd_qcow2 *q, struct vmd_error *err)
{
	int rc = 0;

	if (!q)
		return 0;
	if (q->writable && q->l1 && (q->rt || !q->rt_entries))
		rc = vmd_qcow2_flush(q, err);
	for (size_t i = 0; i < L2_CACHE_SLOTS; i++)
		free(q->l2c[i].data);
	for (size_t i = 0; i < RB_CACHE_SLOTS; i++)
		free(q->rbc[i].data);
	free(q->l1);
	free(q->rt);
	free(q->cbuf);
	free(q->ubuf);
	/* only made once libzstd was loaded (decompress) */
	if (q->zstd)
		ZSTD_freeDCtx(q->zstd);
	free(q);
	return rc;
}

const struct vmd_qcow2_header *vmd_qcow2_header_of(const struct vmd_qcow2 *q)
{
	return &q->h;
}
