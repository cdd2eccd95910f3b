/*
 * Parallels expanded images (see parallels.h), the layout QEMU and ploop
 * write: magic "WithouFreSpacExt", version 2, 16 heads, `tracks` = the
 * cluster size in sectors, BAT entries in clusters, data_off in sectors and
 * cluster-aligned, no format extension.
 *
 * Everything read from an image is checked before use: the BAT fits the
 * limits and the file, every BAT entry points at a whole cluster past the
 * header and inside the file, and no two entries name the same cluster.
 * The writer appends data clusters at the end of the file; the BAT is kept
 * in memory and written last, so a half-made image never points at missing
 * data (and is never published anyway).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytes.h"
#include "fsutil.h"
#include "mover.h"
#include "parallels.h"

#define SECTOR 512u
#define HEADER_LEN 64u
#define MAGIC_V2 "WithouFreSpacExt"
#define MAGIC_V1 "WithoutFreeSpace"
#define MAGIC_LEN 16u
#define HEADS 16u
#define GEOMETRY_SECTORS 32u

struct vmd_parallels {
	int fd;
	bool writable;
	bool bat_dirty;
	uint32_t cluster;     /* bytes */
	uint32_t tracks;      /* sectors per cluster */
	uint32_t nbat;
	uint64_t size;        /* bytes */
	uint64_t data_off;    /* bytes */
	uint64_t file_end;    /* bytes: where the next cluster goes */
	uint32_t *bat;        /* host order */
};

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Header + BAT bytes for nbat entries, rounded up to a cluster. */
static uint64_t header_area(uint32_t nbat, uint32_t cluster)
{
	return round_up(HEADER_LEN + 4ull * nbat, cluster);
}

static void encode_header(unsigned char h[HEADER_LEN], uint64_t size,
                          uint32_t tracks, uint32_t nbat, uint64_t data_off)
{
	uint64_t sectors = size / SECTOR;

	memset(h, 0, HEADER_LEN);
	memcpy(h, MAGIC_V2, MAGIC_LEN);
	vmd_put_le32(h + 16, 2);
	vmd_put_le32(h + 20, HEADS);
	vmd_put_le32(h + 24, (uint32_t)(sectors / (HEADS * GEOMETRY_SECTORS)));
	vmd_put_le32(h + 28, tracks);
	vmd_put_le32(h + 32, nbat);
	vmd_put_le64(h + 36, sectors);
	vmd_put_le32(h + 44, 0);  /* in_use: closed */
	vmd_put_le32(h + 48, (uint32_t)(data_off / SECTOR));
	vmd_put_le32(h + 52, 0);  /* flags */
	vmd_put_le64(h + 56, 0);  /* no format extension */
}

static int check_geometry(uint64_t size, uint32_t cluster,
                          struct vmd_error *err)
{
	if (size == 0 || size % SECTOR || cluster < 4096 ||
	    (cluster & (cluster - 1)) || cluster > (64u << 20))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "ploop: bad image geometry",
		                     "size %llu cluster %u",
		                     (unsigned long long)size, cluster);
	/* BAT entries and data_off are 32-bit. */
	if ((size + cluster - 1) / cluster > UINT32_MAX / 4 ||
	    size / SECTOR / (HEADS * GEOMETRY_SECTORS) > UINT32_MAX)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "ploop: disk too big for the format",
		                     "size %llu", (unsigned long long)size);
	return 0;
}

int vmd_parallels_create(int fd, uint64_t size, uint32_t cluster_size,
                         struct vmd_error *err)
{
	unsigned char h[HEADER_LEN];
	uint32_t nbat;
	uint64_t area;
	int rc = check_geometry(size, cluster_size, err);

	if (rc < 0)
		return rc;
	nbat = (uint32_t)((size + cluster_size - 1) / cluster_size);
	area = header_area(nbat, cluster_size);
	if (area / SECTOR > UINT32_MAX)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "ploop: disk too big for the format",
		                     "header area %llu",
		                     (unsigned long long)area);
	encode_header(h, size, cluster_size / SECTOR, nbat, area);
	/* The BAT is all zeroes: a hole does. */
	if (vmd_ftruncate(fd, 0) < 0 || vmd_ftruncate(fd, area) < 0 ||
	    vmd_pwrite_full(fd, h, HEADER_LEN, 0) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: write image failed",
		                           "header");
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * The format has no reference counts: two BAT entries naming one cluster
 * would make a write through one change the other (and growing the disk
 * would move or clear it for both; found by tests/fuzz/fuzz_parallels.c).
 * QEMU's check calls that corruption; so do we. Sorting a copy keeps the
 * cost bounded by the BAT, which the limits already bound.
 */
static int check_shared_clusters(const struct vmd_parallels *p,
                                 struct vmd_error *err)
{
	_cleanup_(freep) uint32_t *v = malloc(4ull * p->nbat + 4);
	size_t n = 0;

	if (!v)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "BAT");
	for (uint32_t i = 0; i < p->nbat; i++)
		if (p->bat[i])
			v[n++] = p->bat[i];
	qsort(v, n, sizeof(*v), cmp_u32);
	for (size_t i = 1; i < n; i++)
		if (v[i] == v[i - 1])
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "ploop: image BAT names a cluster "
			                     "twice", "cluster %u", v[i]);
	return 0;
}

int vmd_parallels_open(int fd, bool writable,
                       const struct vmd_inspect_limits *lim,
                       struct vmd_parallels **out, struct vmd_error *err)
{
	unsigned char h[HEADER_LEN];
	struct vmd_parallels *p;
	struct stat st;
	uint64_t sectors, file_size, bat_bytes;
	uint32_t version, nbat, tracks, data_off;
	unsigned char *raw;
	int rc;

	*out = NULL;
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: read image failed", "fstat");
	file_size = (uint64_t)st.st_size;
	if (file_size < HEADER_LEN || vmd_pread_full(fd, h, HEADER_LEN, 0) < 0)
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "ploop: image header unreadable",
		                     "file of %llu bytes",
		                     (unsigned long long)file_size);
	bool v1 = memcmp(h, MAGIC_V1, MAGIC_LEN) == 0;

	if (!v1 && memcmp(h, MAGIC_V2, MAGIC_LEN) != 0)
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "ploop: not a Parallels image", "magic");
	version = vmd_le32(h + 16);
	tracks = vmd_le32(h + 28);
	nbat = vmd_le32(h + 32);
	sectors = vmd_le64(h + 36);
	if (v1)
		sectors &= 0xffffffffu;
	data_off = vmd_le32(h + 48);
	bat_bytes = 4ull * nbat;
	/* Only the v2 layout (BAT in clusters) is ours to read. */
	if (v1 || version != 2 || tracks == 0 || tracks > (64u << 20) / SECTOR ||
	    (tracks & (tracks - 1)))
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "ploop: image layout not supported",
		                     "version %u tracks %u", version, tracks);
	if (sectors == 0 || (sectors + tracks - 1) / tracks > nbat ||
	    bat_bytes > lim->max_table_size ||
	    sectors > lim->max_virtual_size / SECTOR)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "ploop: image sizes out of bounds",
		                     "sectors %llu bat %u",
		                     (unsigned long long)sectors, nbat);
	if ((uint64_t)data_off * SECTOR < HEADER_LEN + bat_bytes ||
	    data_off % tracks || (uint64_t)data_off * SECTOR > file_size)
		return vmd_error_set(err, VMD_E_CORRUPT,
		                     "ploop: image header inconsistent",
		                     "data_off %u", data_off);
	p = calloc(1, sizeof(*p));
	raw = malloc(bat_bytes ? bat_bytes : 1);
	if (!p || !raw) {
		free(p);
		free(raw);
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "BAT");
	}
	p->fd = fd;
	p->writable = writable;
	p->tracks = tracks;
	p->cluster = tracks * SECTOR;
	p->nbat = nbat;
	p->size = sectors * SECTOR;
	p->data_off = (uint64_t)data_off * SECTOR;
	p->file_end = round_up(file_size > p->data_off ? file_size : p->data_off,
	                       p->cluster);
	p->bat = (uint32_t *)(void *)raw;
	if (vmd_pread_full(fd, raw, bat_bytes, HEADER_LEN) < 0) {
		vmd_parallels_close(p);
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: read image failed", "BAT");
	}
	for (uint32_t i = 0; i < nbat; i++) {
		uint32_t e = vmd_le32(raw + 4ull * i);
		uint64_t at = (uint64_t)e * p->cluster;

		if (e && (at < p->data_off || at + p->cluster > p->file_end)) {
			vmd_parallels_close(p);
			return vmd_error_set(err, VMD_E_CORRUPT,
			                     "ploop: image BAT points outside "
			                     "the data",
			                     "entry %u = %u", i, e);
		}
		p->bat[i] = e;
	}
	rc = check_shared_clusters(p, err);
	if (rc < 0) {
		vmd_parallels_close(p);
		return rc;
	}
	*out = p;
	return 0;
}

void vmd_parallels_close(struct vmd_parallels *p)
{
	if (!p)
		return;
	free(p->bat);
	free(p);
}

uint64_t vmd_parallels_size(const struct vmd_parallels *p)
{
	return p->size;
}

uint32_t vmd_parallels_cluster_size(const struct vmd_parallels *p)
{
	return p->cluster;
}

int vmd_parallels_pread(struct vmd_parallels *p, void *buf, size_t len,
                        uint64_t off, struct vmd_error *err)
{
	unsigned char *out = buf;

	while (len > 0) {
		uint64_t idx = off / p->cluster, in = off % p->cluster;
		size_t n = (size_t)(p->cluster - in < len ? p->cluster - in : len);

		if (off >= p->size || idx >= p->nbat || p->bat[idx] == 0) {
			memset(out, 0, n);
		} else if (vmd_pread_full(p->fd, out, n,
		                          (uint64_t)p->bat[idx] * p->cluster +
		                                  in) < 0) {
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: read image failed",
			                           "cluster %llu",
			                           (unsigned long long)idx);
		}
		out += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vmd_parallels_status(struct vmd_parallels *p, uint64_t off, uint64_t len,
                         uint64_t *run, bool *zero, struct vmd_error *err)
{
	uint64_t done = 0;
	bool first = true, z0 = true;

	(void)err;
	while (done < len) {
		uint64_t o = off + done, idx = o / p->cluster;
		uint64_t n = p->cluster - o % p->cluster;
		bool z = o >= p->size || idx >= p->nbat || p->bat[idx] == 0;

		if (n > len - done)
			n = len - done;
		if (first) {
			z0 = z;
			first = false;
		} else if (z != z0) {
			break;
		}
		done += n;
	}
	*run = done;
	*zero = z0;
	return 0;
}

static int write_bat(struct vmd_parallels *p, struct vmd_error *err)
{
	_cleanup_(freep) unsigned char *raw = malloc(4ull * p->nbat + 1);

	if (!raw)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory", "BAT");
	for (uint32_t i = 0; i < p->nbat; i++)
		vmd_put_le32(raw + 4ull * i, p->bat[i]);
	if (vmd_pwrite_full(p->fd, raw, 4ull * p->nbat, HEADER_LEN) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: write image failed", "BAT");
	p->bat_dirty = false;
	return 0;
}

/*
 * The mover's destination for a fill: bytes at guest offset off go into
 * their cluster's place in the file. A cluster is allocated at file_end
 * when the first piece of it that is not all zero arrives; a zero piece
 * for an unallocated cluster is left out, so a cluster that reads as
 * zeroes stays unallocated, as it always did. The mover hands pieces of
 * any size in any order (64 KiB blocks within 1 MiB chunks, from several
 * workers one at a time: `serial`), smaller or larger than a cluster
 * (4 KiB to 64 MiB): nothing here assumes whole clusters. What was never
 * written of an allocated cluster is a hole of the file, which reads
 * zero: every cluster at or past file_end is fresh, past the end of the
 * file, and the fill sizes the file to file_end when it is done.
 */
static int fill_write(void *opaque, const void *buf, size_t len, uint64_t off,
                      struct vmd_error *err)
{
	struct vmd_parallels *p = opaque;
	const unsigned char *in = buf;

	while (len > 0) {
		uint64_t idx = off / p->cluster, at = off % p->cluster;
		size_t n = (size_t)(p->cluster - at < len ? p->cluster - at : len);
		uint64_t host;

		if (off >= p->size || idx >= p->nbat)
			return vmd_error_set(err, VMD_E_INVAL,
			                     "ploop: write image failed",
			                     "offset %llu past the disk",
			                     (unsigned long long)off);
		if (p->bat[idx] == 0 && vmd_all_zero(in, n)) {
			in += n;
			off += n;
			len -= n;
			continue;
		}
		if (p->bat[idx] == 0) {
			if (p->file_end / p->cluster > UINT32_MAX)
				return vmd_error_set(err, VMD_E_INVAL,
				                     "ploop: image too big",
				                     "file end");
			p->bat[idx] = (uint32_t)(p->file_end / p->cluster);
			p->file_end += p->cluster;
			p->bat_dirty = true;
		}
		host = (uint64_t)p->bat[idx] * p->cluster + at;
		if (vmd_pwrite_full(p->fd, in, n, host) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: write image failed",
			                           "cluster %llu",
			                           (unsigned long long)idx);
		in += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vmd_parallels_fill(struct vmd_parallels *p, const struct vmd_move_src *src,
                       struct vmd_error *err)
{
	struct vmd_move_src s = *src;
	/* A fresh image reads zero wherever nothing is written: zero runs
	 * and zero blocks are skipped, never allocated. */
	struct vmd_move_dst d = {
		.fd = -1,
		.reads_zero = true,
		.write = fill_write,
		.opaque = p,
		.serial = true, /* the BAT and file_end are shared */
	};
	struct vmd_move_opts o = {0};
	struct stat st;
	int rc;

	if (!p->writable)
		return vmd_error_set(err, VMD_E_INVAL, "ploop: image read-only",
		                     "fill");
	if (s.size > p->size)
		s.size = p->size;
	/* Clusters are placed at file_end, not at their guest offset: no
	 * raw fast path applies. */
	s.raw_fd = -1;
	/* "ploop": ours read "ploop: write image failed", the mover's
	 * own "ploop: read failed". */
	rc = vmd_move(&s, &d, &o, "ploop", err);
	if (rc < 0)
		return rc;
	/* The last cluster allocated may be written only in part: the file
	 * holds it whole, as a reader checking cluster bounds expects. */
	if (fstat(p->fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: write image failed", "fstat");
	if ((uint64_t)st.st_size < p->file_end &&
	    vmd_ftruncate(p->fd, p->file_end) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: write image failed",
		                           "size to %llu",
		                           (unsigned long long)p->file_end);
	return p->bat_dirty ? write_bat(p, err) : 0;
}

static int sync_image(struct vmd_parallels *p, struct vmd_error *err)
{
	if (vmd_fdatasync(p->fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: write image failed", "fsync");
	return 0;
}

/*
 * Move the data cluster at data_off to the end of the file, so the BAT can
 * take its place. Each step is on disk before the next one relies on it:
 * the copy, then the BAT entry naming the copy.
 */
static int relocate_first_cluster(struct vmd_parallels *p, unsigned char *buf,
                                  struct vmd_error *err)
{
	uint32_t at = (uint32_t)(p->data_off / p->cluster);

	for (uint32_t i = 0; i < p->nbat; i++) {
		if (p->bat[i] != at)
			continue;
		if (vmd_pread_full(p->fd, buf, p->cluster, p->data_off) < 0 ||
		    vmd_pwrite_full(p->fd, buf, p->cluster, p->file_end) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: resize failed",
			                           "move cluster %u", at);
		p->bat[i] = (uint32_t)(p->file_end / p->cluster);
		p->file_end += p->cluster;
		break;
	}
	p->data_off += p->cluster;
	return 0;
}

/*
 * Before growing: what lies past the old end must read as zeroes after it.
 * An image may hold more BAT entries than its size needs, and its last
 * cluster may be partial; neither is guaranteed to be zero in an image we
 * did not write (found by tests/fuzz/fuzz_parallels.c), so the entries past
 * the end are cleared and the tail of the last cluster is zeroed.
 */
static int clear_past_end(struct vmd_parallels *p, struct vmd_error *err)
{
	uint64_t last = p->size / p->cluster, tail = p->size % p->cluster;
	bool cleared = false;

	if (tail && last < p->nbat && p->bat[last]) {
		_cleanup_(freep) unsigned char *zeros = calloc(1, p->cluster - tail);

		if (!zeros)
			return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
			                     "cluster tail");
		if (vmd_pwrite_full(p->fd, zeros, p->cluster - tail,
		                    (uint64_t)p->bat[last] * p->cluster + tail) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: resize failed",
			                           "cluster tail");
	}
	for (uint64_t i = last + (tail ? 1 : 0); i < p->nbat; i++) {
		cleared = cleared || p->bat[i] != 0;
		p->bat[i] = 0;
	}
	return cleared ? write_bat(p, err) : 0;
}

int vmd_parallels_resize(struct vmd_parallels *p, uint64_t new_size,
                         struct vmd_error *err)
{
	unsigned char h[HEADER_LEN];
	uint32_t nbat;
	uint64_t need, old_bat_end;
	uint32_t *bat;
	int rc = check_geometry(new_size, p->cluster, err);

	if (rc < 0)
		return rc;
	if (new_size < p->size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "ploop: disks only grow",
		                     "%llu < %llu",
		                     (unsigned long long)new_size,
		                     (unsigned long long)p->size);
	rc = clear_past_end(p, err);
	if (rc < 0)
		return rc;
	nbat = (uint32_t)((new_size + p->cluster - 1) / p->cluster);
	need = header_area(nbat, p->cluster);
	if (nbat > p->nbat) {
		bat = realloc(p->bat, 4ull * nbat);
		if (!bat)
			return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
			                     "BAT");
		memset(bat + p->nbat, 0, 4ull * (nbat - p->nbat));
		p->bat = bat;
	}
	if (need > p->data_off) {
		_cleanup_(freep) unsigned char *buf = malloc(p->cluster);

		if (!buf)
			return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
			                     "cluster buffer");
		while (need > p->data_off) {
			rc = relocate_first_cluster(p, buf, err);
			if (rc < 0)
				return rc;
		}
		if (p->file_end < p->data_off)
			p->file_end = p->data_off;
		/* Copies first, then the old entries that name them. */
		rc = sync_image(p, err);
		if (rc == 0)
			rc = write_bat(p, err);
		if (rc == 0)
			rc = sync_image(p, err);
		if (rc < 0)
			return rc;
	}
	/* The new entries land where moved clusters were: zero them. */
	old_bat_end = HEADER_LEN + 4ull * p->nbat;
	p->nbat = nbat;
	if (HEADER_LEN + 4ull * nbat > old_bat_end) {
		_cleanup_(freep) unsigned char *zeros =
			calloc(1, HEADER_LEN + 4ull * nbat - old_bat_end);

		if (!zeros)
			return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
			                     "BAT");
		if (vmd_pwrite_full(p->fd, zeros,
		                    HEADER_LEN + 4ull * nbat - old_bat_end,
		                    old_bat_end) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: resize failed",
			                           "BAT");
	}
	if (vmd_ftruncate(p->fd, p->file_end) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: resize failed", "truncate");
	rc = sync_image(p, err);
	if (rc < 0)
		return rc;
	p->size = new_size;
	encode_header(h, new_size, p->tracks, nbat, p->data_off);
	if (vmd_pwrite_full(p->fd, h, HEADER_LEN, 0) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: resize failed", "header");
	return sync_image(p, err);
}
