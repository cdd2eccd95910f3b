/*
 * The data mover (see mover.h): the one loop that copies an image's bytes.
 *
 * Workers take fixed chunks in turn from an atomic counter; each has its
 * own reader and one aligned buffer, so memory is workers x chunk whatever
 * the image size. Per chunk the source says which runs are known-zero
 * (never read) and which may hold data (read, then scanned block by block:
 * all-zero blocks are dropped, or zeroed for a destination that does not
 * read zero). Descriptor destinations are written with write-behind
 * (below). This file and blockdev.c's raw status are the only
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
#include "faultpoint.h"
#include "fsutil.h"
#include <vmdisk/log.h>
#include "mover.h"
#include "progress.h"

/* Buffers are page-aligned, and the kernel's zeroing is asked for pieces
 * aligned to a page (which covers 512- and 4096-byte devices). */
#define DIRECT_ALIGN 4096u
/* How far past its chunk a worker asks about a zero run. */
#define SKIP_AHEAD (1ull << 30)

struct move {
	const struct vmd_move_src *src;
	const struct vmd_move_dst *dst;
	const struct vmd_move_opts *opts;
	const char *step;
	struct vmd_writebehind wb; /* dst->fd's writes */
	const unsigned char *zeroes; /* ZERO_BLOCK of zeroes (!reads_zero fd) */
	bool dst_is_blockdev;     /* dst->fd: BLKZEROOUT, not fallocate */
	atomic_bool kernel_zero_off; /* kernel zeroing refused: write zeroes */
	pthread_mutex_t lock;     /* serial dst calls, progress, first error */
	atomic_uint_fast64_t next_chunk;
	uint64_t done;            /* under lock */
	/* Without opts->progress: the caller's hook (lib/util/progress.h),
	 * taken in its thread, reported from the workers under lock. */
	struct vmd_progress_hook hook;
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
	else if (m->hook.fn)
		m->hook.fn(m->step, m->done, m->src->size, m->hook.opaque);
	pthread_mutex_unlock(&m->lock);
}

/*
 * Write-behind (mover.h). The ring holds the writes whose write-back was
 * started and not yet waited for; a writer that adds one past the depth
 * waits for the oldest (outside the lock) and drops its pages.
 */
void vmd_writebehind_init(struct vmd_writebehind *w, int fd)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	pthread_mutex_init(&w->lock, NULL);
}

void vmd_writebehind_destroy(struct vmd_writebehind *w)
{
	pthread_mutex_destroy(&w->lock);
}

/* Wait until [off, off+len) is written back (the caller's fsync makes it
 * durable) and drop it from the page cache. An error here is the write's
 * own: the kernel reports a write-back error once per open file, so it
 * must not be lost. */
static int wb_finish(int fd, uint64_t off, uint64_t len,
                     struct vmd_error *err)
{
	int e = vmd_fault_errno("io.writeback");

	if (e == 0 &&
	    sync_file_range(fd, (off64_t)off, (off64_t)len,
	                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
	                            SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		e = errno;
	if (e != 0)
		return vmd_error_set_errno(err, VMD_E_IO, e, "write failed",
		                           "write-back at %llu",
		                           (unsigned long long)off);
	/* Only a hint: clean pages go, any others stay. */
	(void)posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_DONTNEED);
	return 0;
}

int vmd_writebehind_pwrite(struct vmd_writebehind *w, const void *buf,
                           size_t len, uint64_t off, struct vmd_error *err)
{
	uint64_t old_off = 0, old_len = 0;
	unsigned tail;

	if (vmd_pwrite_full(w->fd, buf, len, off) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno, "write failed",
		                           "at %llu", (unsigned long long)off);
	/* A hint; a failure shows when the range is waited for, or at the
	 * caller's fsync. */
	(void)sync_file_range(w->fd, (off64_t)off, (off64_t)len,
	                      SYNC_FILE_RANGE_WRITE);
	pthread_mutex_lock(&w->lock);
	if (w->count == VMD_WRITEBEHIND_DEPTH) {
		old_off = w->ring[w->head].off;
		old_len = w->ring[w->head].len;
		w->head = (w->head + 1) % VMD_WRITEBEHIND_DEPTH;
		w->count--;
	}
	tail = (w->head + w->count) % VMD_WRITEBEHIND_DEPTH;
	w->ring[tail].off = off;
	w->ring[tail].len = len;
	w->count++;
	pthread_mutex_unlock(&w->lock);
	return old_len ? wb_finish(w->fd, old_off, old_len, err) : 0;
}

int vmd_writebehind_drain(struct vmd_writebehind *w, struct vmd_error *err)
{
	int rc = 0;

	for (; w->count > 0 && rc == 0; w->count--) {
		rc = wb_finish(w->fd, w->ring[w->head].off,
		               w->ring[w->head].len, err);
		w->head = (w->head + 1) % VMD_WRITEBEHIND_DEPTH;
	}
	return rc;
}

static int dst_write(struct move *m, const unsigned char *buf, size_t len,
                     uint64_t off, struct vmd_error *err)
{
	const struct vmd_move_dst *d = m->dst;
	int rc;

	if (d->fd >= 0)
		return vmd_writebehind_pwrite(&m->wb, buf, len, off, err);
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
		 * zeroes are written. */
		rc = kernel_zero(m, off, len, err);
		if (rc <= 0)
			return rc;
		while (len > 0) {
			uint64_t n = VMD_MOVE_ZERO_BLOCK -
			             (off & (VMD_MOVE_ZERO_BLOCK - 1));

			if (n > len)
				n = len;
			rc = vmd_writebehind_pwrite(&m->wb, m->zeroes + (off & (VMD_MOVE_ZERO_BLOCK - 1)),
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

/* A file system whose copy_file_range only copies through the page cache
 * (no shared blocks): there the pipeline is used. Measured on this ext4
 * (virtio, shared 2-core VM, 1 GiB raw with 512 MiB of random data in
 * 8 MiB extents, source hot, copy + fsync, three runs each):
 * copy_file_range 0.57-0.67 s, O_DIRECT pipeline 0.62-0.86 s with 4
 * workers (0.63-1.36 s with 2), buffered pipeline 0.54-0.96 s (the
 * write-behind pipeline since: 0.37-0.51 s for the same 512 MiB): no faster, and copy_file_range allocates blocks for written
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
		.hook = vmd_progress_current(),
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
	if (dst->fd >= 0)
		vmd_writebehind_init(&m.wb, dst->fd);
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
		if (!atomic_load(&m.failed) && dst->fd >= 0) {
			struct vmd_error werr = VMD_ERROR_INIT;

			if (vmd_writebehind_drain(&m.wb, &werr) < 0)
				fail(&m, &werr);
		}
		if (atomic_load(&m.failed)) {
			if (err && !vmd_error_is_set(err))
				*err = m.err;
			rc = m.err.code ? m.err.code : VMD_E_IO;
		}
	} else {
		vmd_error_prefix(err, step);
	}
	if (dst->fd >= 0)
		vmd_writebehind_destroy(&m.wb);
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
