/*
 * The data mover (see mover.h): the one loop that copies an image's bytes.
 *
 * Workers take fixed chunks in turn from an atomic counter; each has its
 * own reader and one aligned buffer, so memory is workers x chunk whatever
 * the image size. Per chunk the source says which runs are known-zero
 * (never read) and which may hold data (read, then scanned block by block:
 * all-zero blocks are dropped, or zeroed for a destination that does not
 * read zero). Raw destinations are written with O_DIRECT where the file
 * system takes it. This file and blockdev.c's raw status are the only
 * places that ask SEEK_DATA/SEEK_HOLE (tests/suite/source/run.sh).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "blockdev.h"
#include "bytes.h"
#include "cleanup.h"
#include "fsutil.h"
#include <vmdisk/log.h>
#include "mover.h"

/* O_DIRECT needs buffer, offset and length aligned to the logical block
 * size; 4096 covers 512- and 4096-byte devices and ext4/xfs blocks. */
#define DIRECT_ALIGN 4096u
/* How far past its chunk a worker asks about a zero run. */
#define SKIP_AHEAD (1ull << 30)

struct move {
	const struct vmd_move_src *src;
	const struct vmd_move_dst *dst;
	const struct vmd_move_opts *opts;
	const char *step;
	int direct_fd;            /* dst opened again with O_DIRECT, or -1 */
	atomic_bool direct_off;   /* the file system refused a direct write */
	const unsigned char *zeroes; /* ZERO_BLOCK of zeroes (!reads_zero fd) */
	bool dst_is_blockdev;     /* dst->fd: BLKZEROOUT, not fallocate */
	atomic_bool kernel_zero_off; /* kernel zeroing refused: write zeroes */
	pthread_mutex_t lock;     /* serial dst calls, progress, first error */
	atomic_uint_fast64_t next_chunk;
	uint64_t done;            /* under lock */
	atomic_int failed;
	struct vmd_error err;     /* the first error, under lock */
};

static void fail(struct move *m, struct vmd_error *e)
{
	vmd_error_prefix(e, m->step);
	pthread_mutex_lock(&m->lock);
	if (!atomic_exchange(&m->failed, 1))
		m->err = *e;
	pthread_mutex_unlock(&m->lock);
}

static void report(struct move *m, uint64_t n)
{
	pthread_mutex_lock(&m->lock);
	m->done += n;
	if (m->opts->progress)
		m->opts->progress(m->done, m->src->size,
		                  m->opts->progress_opaque);
	pthread_mutex_unlock(&m->lock);
}

/* Write [off, off+len) of an fd destination. buf's address is aligned as
 * off is (the chunk buffer is page-aligned and chunks start at multiples
 * of VMD_MOVE_CHUNK), so the aligned middle can go through the O_DIRECT
 * descriptor; an unaligned head or tail (an image whose size is not a
 * multiple of 4096, a 512-byte qcow2 cluster) goes through the page cache,
 * where the caller's fsync finds it. The two never share a page: a page
 * is written direct only when one write covers all of it. */
static int fd_write(struct move *m, const unsigned char *buf, size_t len,
                    uint64_t off, struct vmd_error *err)
{
	uint64_t end = off + len;
	uint64_t a = (off + DIRECT_ALIGN - 1) & ~(uint64_t)(DIRECT_ALIGN - 1);
	uint64_t b = end & ~(uint64_t)(DIRECT_ALIGN - 1);
	int fd = m->dst->fd;

	if (m->direct_fd >= 0 && !atomic_load(&m->direct_off) && a < b) {
		if (a > off && vmd_pwrite_full(fd, buf, (size_t)(a - off), off) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "write failed", "at %llu",
			                           (unsigned long long)off);
		if (vmd_pwrite_full(m->direct_fd, buf + (a - off),
		                    (size_t)(b - a), a) == 0) {
			if (b < end &&
			    vmd_pwrite_full(fd, buf + (b - off),
			                    (size_t)(end - b), b) < 0)
				return vmd_error_set_errno(
					err, VMD_E_IO, errno, "write failed",
					"at %llu", (unsigned long long)b);
			return 0;
		}
		if (errno != EINVAL)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "write failed", "at %llu",
			                           (unsigned long long)a);
		/* The file system takes O_DIRECT opens but not these
		 * writes: buffered from now on. */
		atomic_store(&m->direct_off, true);
		vmd_log_debug("mover: direct write refused, buffered");
		buf += a - off;
		len -= (size_t)(a - off);
		off = a;
	}
	if (vmd_pwrite_full(fd, buf, len, off) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno, "write failed",
		                           "at %llu", (unsigned long long)off);
	return 0;
}

static int dst_write(struct move *m, const unsigned char *buf, size_t len,
                     uint64_t off, struct vmd_error *err)
{
	const struct vmd_move_dst *d = m->dst;
	int rc;

	if (d->fd >= 0)
		return fd_write(m, buf, len, off, err);
	if (!d->serial && !d->ordered)
		return d->write(d->opaque, buf, len, off, err);
	pthread_mutex_lock(&m->lock);
	rc = d->write(d->opaque, buf, len, off, err);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* [off, off+len) reads zero in the source: make it so in the destination
 * (nothing to do where it reads zero already). */
/* Make [off, off+len) of an fd destination read zero with one call to
 * the kernel: 0 when done, 1 when the caller must write zeroes (refused,
 * or a piece not aligned to DIRECT_ALIGN), < 0 on an I/O error. */
static int kernel_zero(struct move *m, uint64_t off, uint64_t len,
                       struct vmd_error *err)
{
	int fd = m->dst->fd, r;

	if (atomic_load(&m->kernel_zero_off) || (off | len) % DIRECT_ALIGN)
		return 1;
	if (m->dst_is_blockdev) {
		uint64_t range[2] = {off, len};

		r = ioctl(fd, BLKZEROOUT, range);
	} else {
		r = fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
		              (off_t)off, (off_t)len);
	}
	if (r == 0)
		return 0;
	if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EINVAL ||
	    errno == ENOSYS) {
		atomic_store(&m->kernel_zero_off, true);
		vmd_log_debug("mover: kernel zeroing refused (%s), writing",
		              strerror(errno));
		return 1;
	}
	return vmd_error_set_errno(err, VMD_E_IO, errno, "write failed",
	                           "zero %llu+%llu", (unsigned long long)off,
	                           (unsigned long long)len);
}

static int dst_zero(struct move *m, uint64_t off, uint64_t len,
                    struct vmd_error *err)
{
	const struct vmd_move_dst *d = m->dst;
	int rc;

	if (d->ordered)
		return d->skip(d->opaque, len, err);
	if (d->reads_zero || len == 0)
		return 0;
	if (d->fd >= 0) {
		/* The kernel's zeroing first: BLKZEROOUT and ZERO_RANGE are
		 * defined to read back zero (unlike a discard), and a device
		 * with WRITE ZEROES moves no data for them (a thick LV's part
		 * past its base, usually most of it). Where it is refused,
		 * zeroes are written; aligned pieces keep the direct path. */
		rc = kernel_zero(m, off, len, err);
		if (rc <= 0)
			return rc;
		while (len > 0) {
			uint64_t n = VMD_MOVE_ZERO_BLOCK -
			             (off & (VMD_MOVE_ZERO_BLOCK - 1));

			if (n > len)
				n = len;
			rc = fd_write(m, m->zeroes + (off & (VMD_MOVE_ZERO_BLOCK - 1)),
			              (size_t)n, off, err);
			if (rc < 0)
				return rc;
			off += n;
			len -= n;
		}
		return 0;
	}
	if (!d->serial)
		return d->zero(d->opaque, off, len, err);
	pthread_mutex_lock(&m->lock);
	rc = d->zero(d->opaque, off, len, err);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* buf holds the guest range [off, off+len): write its non-zero blocks
 * (blocks aligned to VMD_MOVE_ZERO_BLOCK in guest space), zero the rest. */
static int put_data(struct move *m, const unsigned char *buf, size_t len,
                    uint64_t off, struct vmd_error *err)
{
	size_t start = 0;

	while (start < len) {
		size_t end = start;
		bool zero = false;

		/* Extend [start, end) while blocks are of one kind. */
		while (end < len) {
			uint64_t g = off + end;
			size_t n = (size_t)(VMD_MOVE_ZERO_BLOCK -
			                    (g & (VMD_MOVE_ZERO_BLOCK - 1)));
			bool z;

			if (n > len - end)
				n = len - end;
			z = vmd_all_zero(buf + end, n);
			if (end == start)
				zero = z;
			else if (z != zero)
				break;
			end += n;
		}
		int rc = zero ? dst_zero(m, off + start, end - start, err)
		              : dst_write(m, buf + start, end - start,
		                          off + start, err);

		if (rc < 0)
			return rc;
		start = end;
	}
	return 0;
}

/* Chunk c's first run is zero up to zero_end: take the chunks after it
 * that the run covers whole, if no worker has taken the next one yet.
 * Returns the new end of what this worker handles. */
static uint64_t take_chunks(struct move *m, uint64_t c, uint64_t zero_end,
                            uint64_t end)
{
	uint_fast64_t next = c + 1;
	uint64_t last = zero_end >= m->src->size
	                        ? (m->src->size + VMD_MOVE_CHUNK - 1) /
	                                  VMD_MOVE_CHUNK
	                        : zero_end / VMD_MOVE_CHUNK;

	if (last <= next ||
	    !atomic_compare_exchange_strong(&m->next_chunk, &next, last))
		return end;
	return last * VMD_MOVE_CHUNK < m->src->size ? last * VMD_MOVE_CHUNK
	                                             : m->src->size;
}

static void *worker(void *arg)
{
	struct move *m = arg;
	const struct vmd_move_src *s = m->src;
	struct vmd_error err = VMD_ERROR_INIT;
	unsigned char *buf = NULL;
	void *reader = NULL;
	uint64_t nchunks = (s->size + VMD_MOVE_CHUNK - 1) / VMD_MOVE_CHUNK;
	int rc = 0;

	if (posix_memalign((void **)&buf, DIRECT_ALIGN, VMD_MOVE_CHUNK) != 0) {
		buf = NULL;
		rc = vmd_error_set(&err, VMD_E_NOMEM, "out of memory",
		                   "chunk buffer");
	}
	if (rc == 0)
		rc = s->ops->open(s->opaque, &reader, &err);
	while (rc == 0 && !atomic_load(&m->failed)) {
		uint64_t c = atomic_fetch_add(&m->next_chunk, 1);
		uint64_t off, end;

		if (c >= nchunks)
			break;
		off = c * VMD_MOVE_CHUNK;
		end = s->size - off < VMD_MOVE_CHUNK ? s->size
		                                      : off + VMD_MOVE_CHUNK;
		for (uint64_t o = off; o < end && rc == 0;) {
			/* The first question may look past the chunk: a long
			 * zero run takes the chunks it covers at once (a
			 * sparse TiB is a few thousand calls, not a million). */
			uint64_t want = o == off ? s->size - off : end - o;
			uint64_t run = 0;
			bool zero = false;

			if (want > SKIP_AHEAD)
				want = SKIP_AHEAD;
			rc = s->ops->status(reader, o, want, &run, &zero, &err);
			if (rc == 0 && (run == 0 || run > want))
				rc = vmd_error_set(&err, VMD_E_IO, "read failed",
				                   "status run %llu at %llu",
				                   (unsigned long long)run,
				                   (unsigned long long)o);
			if (rc == 0 && zero && o + run > end)
				end = take_chunks(m, c, o + run, end);
			if (rc == 0 && run > end - o)
				run = end - o;
			if (rc == 0 && zero)
				rc = dst_zero(m, o, run, &err);
			if (rc == 0 && !zero)
				rc = s->ops->pread(reader, buf + (o - off),
				                   (size_t)run, o, &err);
			if (rc == 0 && !zero)
				rc = put_data(m, buf + (o - off), (size_t)run, o,
				              &err);
			o += run;
		}
		if (rc == 0)
			report(m, end - off);
	}
	if (rc < 0)
		fail(m, &err);
	if (reader)
		s->ops->close(reader);
	free(buf);
	return NULL;
}

static unsigned pick_workers(const struct vmd_move_src *src,
                             const struct vmd_move_dst *dst,
                             const struct vmd_move_opts *o)
{
	uint64_t chunks = (src->size + VMD_MOVE_CHUNK - 1) / VMD_MOVE_CHUNK;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned n = o->workers;

	if (dst->ordered)
		return 1;
	/* Each worker has one request in flight (read, then write): the
	 * queue depth is the worker count, so even a 2-CPU host wants 4
	 * (the device, not the CPU, is what they wait on); more CPUs help
	 * decompression. */
	if (n == 0)
		n = cpus > 4 ? (unsigned)cpus : 4;
	if (n > VMD_MOVE_MAX_WORKERS)
		n = VMD_MOVE_MAX_WORKERS;
	/* No reader opened for a worker that would find no chunk. */
	if (chunks < n)
		n = chunks ? (unsigned)chunks : 1;
	return n;
}

/* Open dst->fd again with O_DIRECT when it is a regular file or a block
 * device whose logical block size divides DIRECT_ALIGN; -1 when not (the
 * caller wrote buffered, a /proc/self/fd reopen refused, a file system
 * without O_DIRECT: EINVAL). */
static int open_direct(int fd)
{
	char path[32];
	struct stat st;
	int lbs = 0, dfd;

	if (fstat(fd, &st) < 0)
		return -1;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKSSZGET, &lbs) < 0 || lbs <= 0 ||
		    DIRECT_ALIGN % (unsigned)lbs != 0)
			return -1;
	} else if (!S_ISREG(st.st_mode)) {
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC | O_NOCTTY);
	if (dfd < 0)
		vmd_log_debug("mover: no O_DIRECT (%s), buffered writes",
		              strerror(errno));
	return dfd;
}

/* A file system whose copy_file_range only copies through the page cache
 * (no shared blocks): there the pipeline is used. Measured on this ext4
 * (virtio, shared 2-core VM, 1 GiB raw with 512 MiB of random data in
 * 8 MiB extents, source hot, copy + fsync, three runs each):
 * copy_file_range 0.57-0.67 s, O_DIRECT pipeline 0.62-0.86 s with 4
 * workers (0.63-1.36 s with 2), buffered pipeline 0.54-0.96 s: no faster
 * beyond the noise, and copy_file_range allocates blocks for written
 * zeroes (the flat copy keeps them holes) and fills the page cache with
 * the copy. Where it shares blocks (xfs, btrfs) it costs no I/O at all. */
static bool copies_through_cache(int fd)
{
	struct statfs sf;

	if (fstatfs(fd, &sf) < 0)
		return true;
	switch ((unsigned long)sf.f_type) {
	case 0xEF53UL:     /* ext2/3/4 */
	case 0x01021994UL: /* tmpfs */
		return true;
	default:
		return false;
	}
}

/* raw file -> raw file: a reflink of the whole file, or copy_file_range
 * per data extent. 1: done; 0: not possible here, use the pipeline;
 * <0: failed. */
static int fast_path(struct move *m, struct vmd_error *err)
{
	const struct vmd_move_src *s = m->src;
	const struct vmd_move_dst *d = m->dst;
	struct stat ss, ds;
	uint64_t off = 0;

	if (s->raw_fd < 0 || d->fd < 0 || d->ordered ||
	    fstat(s->raw_fd, &ss) < 0 || fstat(d->fd, &ds) < 0 ||
	    !S_ISREG(ss.st_mode) || !S_ISREG(ds.st_mode))
		return 0;
	if ((m->opts->flags & VMD_MOVE_REFLINK) &&
	    (uint64_t)ss.st_size == s->size) {
		if (vmd_ficlone(d->fd, s->raw_fd) == 0) {
			report(m, s->size);
			return 1;
		}
		vmd_log_debug("mover: reflink not available (%s)",
		              strerror(errno));
	}
	if (ss.st_dev != ds.st_dev || !d->reads_zero ||
	    copies_through_cache(d->fd))
		return 0;
	while (off < s->size) {
		off_t data = lseek(s->raw_fd, (off_t)off, SEEK_DATA), hole;

		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = (off_t)off;
		if ((uint64_t)data >= s->size)
			break;
		hole = lseek(s->raw_fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > s->size)
			hole = (off_t)s->size;
		loff_t in = data, out = data;

		while (in < hole) {
			ssize_t n = vmd_copy_file_range(s->raw_fd, &in, d->fd,
			                                &out,
			                                (size_t)(hole - in));

			if (n < 0 && off == 0 && in == data &&
			    (errno == EXDEV || errno == ENOSYS ||
			     errno == EOPNOTSUPP || errno == EINVAL))
				return 0; /* nothing copied yet: the pipeline */
			if (n <= 0)
				return vmd_error_set_errno(
					err, VMD_E_IO, n < 0 ? errno : EIO,
					"copy failed", "copy_file_range at %lld",
					(long long)in);
		}
		report(m, (uint64_t)hole - off);
		off = (uint64_t)hole;
	}
	if (off < s->size)
		report(m, s->size - off);
	return 1;
}

int vmd_move(const struct vmd_move_src *src, const struct vmd_move_dst *dst,
             const struct vmd_move_opts *opts, const char *step,
             struct vmd_error *err)
{
	static const struct vmd_move_opts no_opts;
	struct move m = {
		.src = src,
		.dst = dst,
		.opts = opts ? opts : &no_opts,
		.step = step,
		.direct_fd = -1,
	};
	_cleanup_(freep) unsigned char *zeroes = NULL;
	pthread_t tids[VMD_MOVE_MAX_WORKERS];
	unsigned n, started = 0;
	int rc;

	pthread_mutex_init(&m.lock, NULL);
	rc = fast_path(&m, err);
	if (rc != 0) {
		pthread_mutex_destroy(&m.lock);
		if (rc < 0)
			vmd_error_prefix(err, step);
		return rc < 0 ? rc : 0;
	}
	if (dst->fd >= 0 && !(m.opts->flags & VMD_MOVE_NO_DIRECT))
		m.direct_fd = open_direct(dst->fd);
	if (dst->fd >= 0 && !dst->reads_zero && !dst->ordered) {
		struct stat st;

		m.dst_is_blockdev = fstat(dst->fd, &st) == 0 &&
		                    S_ISBLK(st.st_mode);
		if (posix_memalign((void **)&zeroes, DIRECT_ALIGN,
		                   VMD_MOVE_ZERO_BLOCK) != 0) {
			zeroes = NULL;
			rc = vmd_error_set(err, VMD_E_NOMEM, "out of memory",
			                   "zero block");
		} else {
			memset(zeroes, 0, VMD_MOVE_ZERO_BLOCK);
			m.zeroes = zeroes;
		}
	}
	if (rc == 0) {
		n = pick_workers(src, dst, m.opts);
		/* One worker runs here: no thread for an ordered sink or a
		 * one-chunk image. */
		for (; n > 1 && started < n; started++)
			if (pthread_create(&tids[started], NULL, worker, &m) != 0)
				break;
		if (started == 0)
			worker(&m);
		for (unsigned i = 0; i < started; i++)
			pthread_join(tids[i], NULL);
		if (atomic_load(&m.failed)) {
			if (err && !vmd_error_is_set(err))
				*err = m.err;
			rc = m.err.code ? m.err.code : VMD_E_IO;
		}
	} else {
		vmd_error_prefix(err, step);
	}
	if (m.direct_fd >= 0)
		close(m.direct_fd);
	pthread_mutex_destroy(&m.lock);
	return rc;
}

static int bd_open(void *opaque, void **reader, struct vmd_error *err)
{
	const struct vmd_move_bd_src *bs = opaque;
	struct vmd_blockdev *bd = NULL;
	int rc = vmd_blockdev_open_backed(bs->path, bs->format, bs->bd_flags,
	                                  bs->backing, bs->lim, &bd, err);

	*reader = bd;
	return rc;
}

static void bd_close(void *reader)
{
	vmd_blockdev_close(reader);
}

static int bd_status(void *reader, uint64_t off, uint64_t len, uint64_t *run,
                     bool *zero, struct vmd_error *err)
{
	return vmd_blockdev_status(reader, off, len, run, zero, err);
}

static int bd_pread(void *reader, void *buf, size_t len, uint64_t off,
                    struct vmd_error *err)
{
	return vmd_blockdev_pread(reader, buf, len, off, err);
}

const struct vmd_move_src_ops vmd_move_bd_ops = {
	.open = bd_open,
	.close = bd_close,
	.status = bd_status,
	.pread = bd_pread,
};

int vmd_move_src_blockdev(struct vmd_move_bd_src *bs, struct vmd_move_src *src,
                          struct vmd_error *err)
{
	struct vmd_blockdev *bd = NULL;
	int rc = vmd_blockdev_open_backed(bs->path, bs->format, bs->bd_flags,
	                                  bs->backing, bs->lim, &bd, err);

	if (rc < 0)
		return rc;
	src->ops = &vmd_move_bd_ops;
	src->opaque = bs;
	src->size = bd->size;
	src->raw_fd = -1;
	vmd_blockdev_close(bd);
	return 0;
}

int vmd_move_file(int src_fd, int dst_fd, unsigned flags, const char *step,
                  struct vmd_error *err)
{
	struct vmd_move_bd_src bs = {.format = VMD_FORMAT_RAW};
	struct vmd_move_dst dst = {.fd = dst_fd, .reads_zero = true};
	struct vmd_move_opts opts = {.flags = flags};
	struct vmd_move_src src = {.ops = &vmd_move_bd_ops, .opaque = &bs,
	                           .raw_fd = -1};
	char path[32];
	struct stat st;

	if (fstat(src_fd, &st) < 0) {
		vmd_error_set_errno(err, VMD_E_IO, errno, "copy failed",
		                    "fstat source");
		vmd_error_prefix(err, step);
		return VMD_E_IO;
	}
	src.size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) { /* st_size is 0: ask the device */
		off_t end = lseek(src_fd, 0, SEEK_END);

		if (end < 0) {
			vmd_error_set_errno(err, VMD_E_IO, errno, "copy failed",
			                    "device size");
			vmd_error_prefix(err, step);
			return VMD_E_IO;
		}
		src.size = (uint64_t)end;
	} else if (S_ISREG(st.st_mode)) {
		src.raw_fd = src_fd;
	}
	/* A reflink replaces dst whole; anything else needs it empty and
	 * sized (a fresh sparse file reads zero). */
	if (vmd_ftruncate(dst_fd, 0) < 0 || vmd_ftruncate(dst_fd, src.size) < 0) {
		vmd_error_set_errno(err, VMD_E_IO, errno, "copy failed",
		                    "truncate destination");
		vmd_error_prefix(err, step);
		return VMD_E_IO;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", src_fd);
	bs.path = path;
	return vmd_move(&src, &dst, &opts, step, err);
}
