/*
 * Tests of lib/format/mover.c, the one data mover: raw -> raw through the
 * O_DIRECT and the buffered path (holes, data, zero blocks, an unaligned
 * tail), fd and callback destinations, ordered destinations, destinations
 * that do not read zero, a failing reader, and memory/time that do not
 * grow with the image's size; raw -> qcow2 convert with several workers
 * and cluster sizes (qemu-img check and compare), its data not left in
 * the page cache.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "fsutil.h"
#include "helpers.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0 /* built without valgrind's header */
#endif
#include "mover.h"

/* 8 MiB + 1234 bytes: not a multiple of 4096. */
#define SRC_SIZE ((8u << 20) + 1234u)

static int setup_dir(void **state)
{
	*state = th_mkdtemp("mover");
	return 0;
}

static int teardown_dir(void **state)
{
	th_rmtree(*state);
	free(*state);
	return 0;
}

static void pattern(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 31 + seed) % 251 + 1);
}

/* Data at 0, written zeroes (data to SEEK_DATA) at 1 MiB, unaligned data
 * at 3 MiB + 512, holes elsewhere, data up to the unaligned end. */
static char *make_src(const char *dir)
{
	char *src = th_path(dir, "src");
	static unsigned char buf[1 << 20];

	pattern(buf, 65536, 1);
	th_pwrite_at(src, buf, 65536, 0);
	memset(buf, 0, sizeof(buf));
	th_pwrite_at(src, buf, sizeof(buf), 1u << 20);
	pattern(buf, 200000, 2);
	th_pwrite_at(src, buf, 200000, (3u << 20) + 512);
	pattern(buf, 5000, 3);
	th_pwrite_at(src, buf, 5000, SRC_SIZE - 5000);
	assert_int_equal(th_file_size(src), SRC_SIZE);
	return src;
}

static unsigned char *read_all(const char *path, size_t size)
{
	unsigned char *p = malloc(size);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_non_null(p);
	assert_true(fd >= 0);
	assert_int_equal(vmd_pread_full(fd, p, size, 0), 0);
	close(fd);
	return p;
}

/* A move of path through the block device reader (raw_fd -1: never the
 * fast paths). */
struct bd_move {
	char path[32];
	struct vmd_move_bd_src bs;
	struct vmd_move_src src;
	int fd;
};

static void bd_move_open(struct bd_move *b, const char *path)
{
	struct vmd_error err = VMD_ERROR_INIT;

	b->fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(b->fd >= 0);
	snprintf(b->path, sizeof(b->path), "/proc/self/fd/%d", b->fd);
	b->bs = (struct vmd_move_bd_src){.path = b->path,
	                                 .format = VMD_FORMAT_RAW};
	assert_int_equal(vmd_move_src_blockdev(&b->bs, &b->src, &err), 0);
}

/* Whether the first page of path is in the page cache. */
static bool first_page_cached(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	unsigned char vec = 0;
	void *p;

	assert_true(fd >= 0);
	p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(mincore(p, 4096, &vec), 0);
	munmap(p, 4096);
	close(fd);
	return vec & 1;
}

static void raw_to_raw(const char *dir, unsigned flags)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *src = make_src(dir), *dst = th_path(dir, "dst");
	struct bd_move b;
	struct vmd_move_opts o = {.flags = flags};
	struct stat st;
	int dfd = open(dst, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	assert_true(dfd >= 0);
	assert_int_equal(ftruncate(dfd, SRC_SIZE), 0);
	bd_move_open(&b, src);
	struct vmd_move_dst d = {.fd = dfd, .reads_zero = true};

	assert_int_equal(vmd_move(&b.src, &d, &o, "test", &err), 0);
	assert_int_equal(fsync(dfd), 0);
	close(dfd);
	close(b.fd);
	/* Write-behind waited for every write and dropped its pages: the
	 * copy does not stay in the page cache (asked before anything reads
	 * it). Not under valgrind: its own mmap of the file reads the page
	 * in before mincore asks. */
	if (!RUNNING_ON_VALGRIND)
		assert_false(first_page_cached(dst));
	assert_true(th_files_equal(src, dst));
	assert_int_equal(stat(dst, &st), 0);
	assert_int_equal(st.st_size, SRC_SIZE);
	/* Written: 64 KiB + ~200 KB + the 5000-byte tail; the written zero
	 * MiB and the holes stay holes. */
	assert_true((uint64_t)st.st_blocks * 512 < 400u << 10);
	free(src);
	free(dst);
}

static void test_raw_writebehind(void **state)
{
	raw_to_raw(*state, 0);
}

/* vmd_move_file (the flat copy): a copy with the same bytes and holes. */
static void test_move_file(void **state)
{
	const char *dir = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	char *src = make_src(dir), *dst = th_path(dir, "dst");
	int sfd = open(src, O_RDONLY | O_CLOEXEC);
	int dfd = open(dst, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct stat st;

	/* Garbage first: the copy truncates it away. */
	th_write_text(dst, "garbage garbage");
	assert_int_equal(vmd_move_file(sfd, dfd, VMD_MOVE_REFLINK, "copy", &err),
	                 0);
	close(sfd);
	close(dfd);
	assert_true(th_files_equal(src, dst));
	assert_int_equal(stat(dst, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 < 400u << 10);
	free(src);
	free(dst);
}

/* A memory destination for callbacks. */
struct memdst {
	unsigned char *p;
	size_t size;
	uint64_t pos; /* ordered: the next offset */
	bool ordered_ok;
	unsigned zero_calls;
	pthread_mutex_t lock;
	unsigned in_call; /* serial: never more than 1 */
	unsigned max_in_call;
};

static void enter(struct memdst *m)
{
	pthread_mutex_lock(&m->lock);
	if (++m->in_call > m->max_in_call)
		m->max_in_call = m->in_call;
	pthread_mutex_unlock(&m->lock);
	usleep(100); /* let another worker overlap, if it can */
}

static void leave(struct memdst *m)
{
	pthread_mutex_lock(&m->lock);
	m->in_call--;
	pthread_mutex_unlock(&m->lock);
}

static int mem_write(void *opaque, const void *buf, size_t len, uint64_t off,
                     struct vmd_error *err)
{
	struct memdst *m = opaque;

	(void)err;
	enter(m);
	assert_true(off + len <= m->size);
	memcpy(m->p + off, buf, len);
	if (off != m->pos)
		m->ordered_ok = false;
	m->pos = off + len;
	leave(m);
	return 0;
}

static int mem_zero(void *opaque, uint64_t off, uint64_t len,
                    struct vmd_error *err)
{
	struct memdst *m = opaque;

	(void)err;
	enter(m);
	assert_true(off + len <= m->size);
	memset(m->p + off, 0, (size_t)len);
	m->zero_calls++;
	leave(m);
	return 0;
}

static int mem_skip(void *opaque, uint64_t len, struct vmd_error *err)
{
	struct memdst *m = opaque;

	(void)err;
	assert_true(m->pos + len <= m->size);
	memset(m->p + m->pos, 0, (size_t)len);
	m->pos += len;
	return 0;
}

static void callback_move(const char *dir, bool serial, bool ordered,
                          bool reads_zero)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *src = make_src(dir);
	unsigned char *want = read_all(src, SRC_SIZE);
	struct memdst m = {.size = SRC_SIZE, .ordered_ok = true};
	struct bd_move b;
	struct vmd_move_opts o = {.workers = 4};
	struct vmd_move_dst d = {
		.fd = -1,
		.reads_zero = reads_zero,
		.write = mem_write,
		.zero = mem_zero,
		.skip = mem_skip,
		.opaque = &m,
		.serial = serial,
		.ordered = ordered,
	};

	m.p = malloc(SRC_SIZE);
	assert_non_null(m.p);
	/* Garbage: where the destination does not read zero, the mover
	 * must zero it. */
	memset(m.p, reads_zero ? 0 : 0xee, SRC_SIZE);
	pthread_mutex_init(&m.lock, NULL);
	bd_move_open(&b, src);
	assert_int_equal(vmd_move(&b.src, &d, &o, "test", &err), 0);
	close(b.fd);
	assert_memory_equal(m.p, want, SRC_SIZE);
	if (ordered) {
		assert_true(m.ordered_ok);
		assert_int_equal(m.pos, SRC_SIZE);
	}
	if (serial || ordered)
		assert_int_equal(m.max_in_call, 1);
	if (!reads_zero)
		assert_true(m.zero_calls > 0);
	pthread_mutex_destroy(&m.lock);
	free(m.p);
	free(want);
	free(src);
}

static void test_callback_parallel(void **state)
{
	callback_move(*state, false, false, true);
}

static void test_callback_serial(void **state)
{
	callback_move(*state, true, false, true);
}

static void test_callback_ordered(void **state)
{
	callback_move(*state, false, true, true);
}

static void test_callback_not_reading_zero(void **state)
{
	callback_move(*state, false, false, false);
}

/* An fd destination full of garbage (an LV over old data): every byte of
 * the source, zero runs included, ends up there. */
static void test_fd_not_reading_zero(void **state)
{
	const char *dir = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	char *src = make_src(dir), *dst = th_path(dir, "dst");
	unsigned char *junk = malloc(SRC_SIZE);
	struct bd_move b;
	int dfd;

	assert_non_null(junk);
	memset(junk, 0xee, SRC_SIZE);
	th_pwrite_at(dst, junk, SRC_SIZE, 0);
	free(junk);
	for (int pass = 0; pass < 2; pass++) { /* the second over a copy */
		struct vmd_move_opts o = {0};

		dfd = open(dst, O_RDWR | O_CLOEXEC);
		assert_true(dfd >= 0);
		bd_move_open(&b, src);
		struct vmd_move_dst d = {.fd = dfd, .reads_zero = false};

		assert_int_equal(vmd_move(&b.src, &d, &o, "test", &err), 0);
		close(dfd);
		close(b.fd);
		assert_true(th_files_equal(src, dst));
	}
	free(src);
	free(dst);
}

/* A synthetic source: all data (pattern), failing at fail_at. */
struct synth {
	uint64_t fail_at;
	atomic_uint reads;
};

static int synth_open(void *opaque, void **reader, struct vmd_error *err)
{
	(void)err;
	*reader = opaque;
	return 0;
}

static void synth_close(void *reader)
{
	(void)reader;
}

static int synth_status(void *reader, uint64_t off, uint64_t len,
                        uint64_t *run, bool *zero, struct vmd_error *err)
{
	(void)reader;
	(void)off;
	(void)err;
	*run = len;
	*zero = false;
	return 0;
}

static int synth_pread(void *reader, void *buf, size_t len, uint64_t off,
                       struct vmd_error *err)
{
	struct synth *s = reader;

	atomic_fetch_add(&s->reads, 1);
	if (off <= s->fail_at && s->fail_at < off + len)
		return vmd_error_set(err, VMD_E_IO, "read image failed",
		                     "injected at %llu",
		                     (unsigned long long)off);
	memset(buf, 0x5a, len);
	return 0;
}

static const struct vmd_move_src_ops synth_ops = {
	.open = synth_open,
	.close = synth_close,
	.status = synth_status,
	.pread = synth_pread,
};

static int null_write(void *opaque, const void *buf, size_t len, uint64_t off,
                      struct vmd_error *err)
{
	(void)opaque;
	(void)buf;
	(void)len;
	(void)off;
	(void)err;
	usleep(200);
	return 0;
}

/* A reader's error stops the move (the other workers take no more than
 * the chunk they hold) and comes back with the step named. */
static void test_reader_error_stops(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct synth s = {.fail_at = 5ull * VMD_MOVE_CHUNK + 7};
	struct vmd_move_src src = {.ops = &synth_ops, .opaque = &s,
	                           .size = 1000ull * VMD_MOVE_CHUNK,
	                           .raw_fd = -1};
	struct vmd_move_dst d = {.fd = -1, .reads_zero = true,
	                         .write = null_write};
	struct vmd_move_opts o = {.workers = 4};

	(void)state;
	assert_int_equal(vmd_move(&src, &d, &o, "lvm: write volume", &err),
	                 VMD_E_IO);
	assert_string_equal(err.msg, "lvm: write volume: read image failed");
	/* Chunk 5 failed; the workers had at most a few more in hand. */
	assert_true(atomic_load(&s.reads) < 20);
}

/* A progress callback sees every byte once, last call at the total. */
static uint64_t last_done, last_total;

static void on_progress(uint64_t done, uint64_t total, void *opaque)
{
	(void)opaque;
	assert_true(done >= last_done);
	last_done = done;
	last_total = total;
}

/*
 * 1 TiB sparse with 1 MiB of data at the end: workers x chunk of memory
 * (nothing sized by the image) and well under a second of work, since
 * known-zero runs are never read.
 */
static void test_huge_sparse_bounded(void **state)
{
	const char *dir = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	char *src = th_path(dir, "huge"), *dst = th_path(dir, "huge.out");
	const uint64_t size = 1ull << 40;
	unsigned char buf[4096];
	struct bd_move b;
	struct vmd_move_opts o = {.progress = on_progress};
	struct rusage before, after;
	struct timespec t0, t1;
	int fd = open(src, O_RDWR | O_CREAT | O_CLOEXEC, 0600), dfd;
	double secs;

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	pattern(buf, sizeof(buf), 9);
	assert_int_equal(vmd_pwrite_full(fd, buf, sizeof(buf), size - 4096), 0);
	close(fd);
	dfd = open(dst, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(dfd >= 0);
	assert_int_equal(ftruncate(dfd, (off_t)size), 0);
	bd_move_open(&b, src);
	struct vmd_move_dst d = {.fd = dfd, .reads_zero = true};

	getrusage(RUSAGE_SELF, &before);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(vmd_move(&b.src, &d, &o, "test", &err), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	getrusage(RUSAGE_SELF, &after);
	close(b.fd);
	assert_int_equal(vmd_pread_full(dfd, buf, sizeof(buf), size - 4096), 0);
	close(dfd);
	{
		unsigned char want[4096];

		pattern(want, sizeof(want), 9);
		assert_memory_equal(buf, want, sizeof(want));
	}
	assert_int_equal(last_done, size);
	assert_int_equal(last_total, size);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("# 1 TiB sparse moved in %.3f s, peak RSS +%ld KiB\n", secs,
	              after.ru_maxrss - before.ru_maxrss);
	/* Generous for a shared machine; it takes ~0.1-0.3 s. */
	assert_true(secs < 5.0);
	assert_true(after.ru_maxrss - before.ru_maxrss <
	            (long)(VMD_MOVE_MAX_WORKERS * VMD_MOVE_CHUNK / 1024 + 8192));
	free(src);
	free(dst);
}

/* qcow2 -> raw of an image whose raw size is not a multiple of 4096,
 * data in its last sector: qemu-img compare says they are the same. */
static void test_convert_unaligned_qcow2(void **state)
{
	const char *dir = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	char *q = th_path(dir, "img.qcow2"), *out = th_path(dir, "out.raw");
	char size[32], wr[64];
	struct vmd_convert_opts o = {.src_format = VMD_FORMAT_QCOW2,
	                             .dst_format = VMD_FORMAT_RAW};

	th_require_qemu_img();
	snprintf(size, sizeof(size), "%u", (5u << 20) + 512);
	const char *create[] = {"qemu-img", "create", "-q", "-f", "qcow2", q,
	                        size, NULL};
	th_run_ok(create, false);
	snprintf(wr, sizeof(wr), "write -P 0x61 %u 512", 5u << 20);
	const char *io1[] = {"qemu-io", "-f", "qcow2", "-c", wr, q, NULL};
	th_run_ok(io1, false);
	const char *io2[] = {"qemu-io", "-f", "qcow2", "-c",
	                     "write -P 0x62 1000 70000", q, NULL};
	th_run_ok(io2, false);
	const char *io3[] = {"qemu-io", "-f", "qcow2", "-c",
	                     "write -z 2M 64k", q, NULL};
	th_run_ok(io3, false);
	assert_int_equal(vmd_convert_to_path(q, out, &o, &err), 0);
	assert_int_equal(th_file_size(out), (5u << 20) + 512);
	th_assert_images_identical(q, "qcow2", out, "raw", 1);
	free(q);
	free(out);
}

/* Share of path's pages in the page cache, in percent. */
static unsigned cached_percent(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t size = (size_t)th_file_size(path), pages = (size + 4095) / 4096;
	unsigned char *vec = calloc(pages ? pages : 1, 1);
	size_t n = 0;
	void *p;

	assert_true(fd >= 0);
	assert_non_null(vec);
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(mincore(p, size, vec), 0);
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	munmap(p, size);
	close(fd);
	free(vec);
	return (unsigned)(n * 100 / (pages ? pages : 1));
}

/* A raw image for raw -> qcow2: data scattered over 14 MiB, some of it
 * not on cluster or 4 KiB boundaries, some across the mover's 1 MiB
 * chunks; written zeroes at 4-6 MiB and a hole at 6-9 MiB; data up to an
 * end that is no multiple of 4096 (nor of any cluster size). */
#define Q_SRC_SIZE ((14u << 20) + 512u)
static char *make_qcow2_src(const char *dir)
{
	char *src = th_path(dir, "src.raw");
	static unsigned char buf[3 << 20];

	pattern(buf, sizeof(buf), 11);
	th_pwrite_at(src, buf, sizeof(buf), 0);
	pattern(buf, 100000, 12);
	th_pwrite_at(src, buf, 100000, (3u << 20) + 4096 + 7);
	memset(buf, 0, 2u << 20);
	th_pwrite_at(src, buf, 2u << 20, 4u << 20);
	pattern(buf, 140000, 13);
	th_pwrite_at(src, buf, 140000, (10u << 20) - 70000);
	pattern(buf, 1u << 20, 14);
	th_pwrite_at(src, buf, 1u << 20, 12u << 20);
	pattern(buf, 5000, 15);
	th_pwrite_at(src, buf, 5000, Q_SRC_SIZE - 5000);
	assert_int_equal(th_file_size(src), Q_SRC_SIZE);
	return src;
}

static void raw_to_qcow2(const char *dir, uint32_t cluster_bits)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *src = make_qcow2_src(dir), *out = th_path(dir, "out.qcow2");
	struct vmd_convert_opts o = {.src_format = VMD_FORMAT_RAW,
	                             .dst_format = VMD_FORMAT_QCOW2,
	                             .cluster_bits = cluster_bits,
	                             .threads = 4};

	th_require_qemu_img();
	if (vmd_convert_to_path(src, out, &o, &err) != 0)
		fail_msg("convert: %s (%s)", err.msg, err.detail);
	/* Clusters up to the mover's chunk: runs of whole data clusters
	 * are written back and dropped from the page cache as the convert
	 * goes (write-behind); only metadata and part-written clusters stay
	 * there (asked before anything reads the output). The data is
	 * ~8.3 MiB of an ~8.4 MiB file. */
	if (cluster_bits <= 20)
		assert_true(cached_percent(out) < 25);
	th_assert_qcow2_check_clean(out);
	th_assert_images_identical(src, "raw", out, "qcow2", 0);
	assert_int_equal(th_qemu_img_virtual_size(out, "qcow2"), Q_SRC_SIZE);
	free(src);
	free(out);
}

static void test_convert_qcow2_default(void **state)
{
	raw_to_qcow2(*state, 0);
}

static void test_convert_qcow2_4k(void **state)
{
	raw_to_qcow2(*state, 12);
}

static void test_convert_qcow2_2m(void **state)
{
	raw_to_qcow2(*state, 21);
}

static void test_convert_qcow2_512(void **state)
{
	raw_to_qcow2(*state, 9);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* First: the peak RSS it measures is the process's. */
		cmocka_unit_test_setup_teardown(test_huge_sparse_bounded,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_raw_writebehind, setup_dir,
		                                teardown_dir),
		cmocka_unit_test_setup_teardown(test_move_file, setup_dir,
		                                teardown_dir),
		cmocka_unit_test_setup_teardown(test_callback_parallel,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_callback_serial, setup_dir,
		                                teardown_dir),
		cmocka_unit_test_setup_teardown(test_callback_ordered,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_callback_not_reading_zero,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_fd_not_reading_zero,
		                                setup_dir, teardown_dir),
		cmocka_unit_test(test_reader_error_stops),
		cmocka_unit_test_setup_teardown(test_convert_unaligned_qcow2,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_convert_qcow2_default,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_convert_qcow2_4k,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_convert_qcow2_2m,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_convert_qcow2_512,
		                                setup_dir, teardown_dir),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
