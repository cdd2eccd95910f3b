/*
 * bench/io-limit's probe: the physical anchor of the bulk benchmarks (issue
 * 17). Measures this machine's durable sequential write bandwidth and its
 * sequential read bandwidth on one file, with a deep queue: THREADS threads
 * each keep one O_DIRECT request of BLOCK bytes in flight (THREADS requests
 * at once), taking the next block of the file from a shared counter, so the
 * device sees the file front to back with THREADS requests outstanding.
 * The write time runs from the first request to the end of the fdatasync
 * that follows the last one (durable, as vmdisk's outputs are); the read is
 * of the same blocks, after the write, with O_DIRECT (never the page cache).
 *
 *   io_limit DIR MIB [THREADS [BLOCK_KIB [RUNS]]]
 *
 * Makes a temporary file in DIR (removed before it exits), writes and reads
 * MIB MiB RUNS times, and prints one line per run and then the best of each
 * (MB = 10^6 bytes):
 *   run N write MBPS overwrite MBPS read MBPS
 *   write_mbps MBPS       a new file (sized, all holes: a copy's target)
 *   overwrite_mbps MBPS   the same file again (its blocks now allocated)
 *   read_mbps MBPS
 * write_mbps is the anchor of the bulk rows: every copy vmdisk makes writes
 * a new file, so the file system's allocation is part of the device's cost;
 * overwrite_mbps says how much of it that is. The best run is taken: the
 * other helpers on a shared machine only ever make a run slower. Defaults:
 * 4 threads, 1024 KiB requests, 3 runs. Not part of the product.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct job {
	int fd;
	int writing;
	size_t block;
	uint64_t blocks;
	atomic_uint_fast64_t next; /* the next block to take */
	atomic_int failed;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
	struct job *j = arg;
	unsigned char *buf;
	uint64_t seed = (uint64_t)(uintptr_t)&buf ^ 0x9e3779b97f4a7c15ull;

	if (posix_memalign((void **)&buf, 4096, j->block) != 0) {
		atomic_store(&j->failed, ENOMEM);
		return NULL;
	}
	/* Incompressible, never-zero data: nothing below may skip it. */
	for (size_t i = 0; i < j->block; i += 8) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		memcpy(buf + i, &seed, 8);
	}
	for (;;) {
		uint64_t b = atomic_fetch_add(&j->next, 1);
		size_t done = 0;

		if (b >= j->blocks || atomic_load(&j->failed))
			break;
		while (done < j->block) {
			off_t off = (off_t)(b * j->block + done);
			ssize_t n = j->writing ?
				pwrite(j->fd, buf + done, j->block - done, off) :
				pread(j->fd, buf + done, j->block - done, off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				atomic_store(&j->failed, n < 0 ? errno : EIO);
				break;
			}
			done += (size_t)n;
		}
	}
	free(buf);
	return NULL;
}

/* One pass over the file with THREADS requests in flight; seconds, or < 0. */
static double pass(int fd, int writing, size_t block, uint64_t blocks,
                   int threads)
{
	pthread_t tid[64];
	struct job j = {.fd = fd, .writing = writing, .block = block,
	                .blocks = blocks};
	double t0, t1;
	int started = 0;

	atomic_init(&j.next, 0);
	atomic_init(&j.failed, 0);
	t0 = now_s();
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&tid[i], NULL, worker, &j) != 0)
			break;
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(tid[i], NULL);
	if (started == 0 || atomic_load(&j.failed)) {
		fprintf(stderr, "io_limit: %s failed: %s\n",
		        writing ? "write" : "read",
		        strerror(started ? atomic_load(&j.failed) : EAGAIN));
		return -1;
	}
	if (writing && fdatasync(fd) < 0) {
		perror("io_limit: fdatasync");
		return -1;
	}
	t1 = now_s();
	return t1 - t0;
}

int main(int argc, char **argv)
{
	char path[4096];
	long mib, threads = 4, block_kib = 1024, runs = 3;
	double best_w = 0, best_o = 0, best_r = 0;
	uint64_t bytes, blocks;
	size_t block;
	int fd, rc = 0;

	if (argc < 3 || argc > 6) {
		fprintf(stderr, "usage: io_limit DIR MIB [THREADS [BLOCK_KIB [RUNS]]]\n");
		return 2;
	}
	mib = strtol(argv[2], NULL, 10);
	if (argc > 3)
		threads = strtol(argv[3], NULL, 10);
	if (argc > 4)
		block_kib = strtol(argv[4], NULL, 10);
	if (argc > 5)
		runs = strtol(argv[5], NULL, 10);
	if (mib <= 0 || threads <= 0 || threads > 64 || block_kib < 4 ||
	    block_kib % 4 || block_kib > 65536 || runs <= 0 ||
	    ((uint64_t)mib << 20) % ((uint64_t)block_kib << 10)) {
		fprintf(stderr, "io_limit: bad arguments (MIB a multiple of BLOCK_KIB/1024, "
		        "THREADS 1..64, BLOCK_KIB a multiple of 4)\n");
		return 2;
	}
	block = (size_t)block_kib << 10;
	bytes = (uint64_t)mib << 20;
	blocks = bytes / block;
	if (snprintf(path, sizeof(path), "%s/io-limit.XXXXXX", argv[1]) >=
	    (int)sizeof(path))
		return 2;
	fd = mkstemp(path);
	if (fd < 0) {
		perror("io_limit: mkstemp");
		return 1;
	}
	close(fd);
	fd = open(path, O_RDWR | O_DIRECT);
	unlink(path);
	if (fd < 0) {
		perror("io_limit: open O_DIRECT");
		return 1;
	}
	for (long r = 1; r <= runs; r++) {
		double w, o, rd;

		/* A new file each run, as a copy's target: sized, all holes. */
		if (ftruncate(fd, 0) < 0 || fsync(fd) < 0 ||
		    ftruncate(fd, (off_t)bytes) < 0) {
			perror("io_limit: ftruncate");
			rc = 1;
			break;
		}
		w = pass(fd, 1, block, blocks, (int)threads);
		rd = w < 0 ? -1 : pass(fd, 0, block, blocks, (int)threads);
		o = rd < 0 ? -1 : pass(fd, 1, block, blocks, (int)threads);
		if (o < 0) {
			rc = 1;
			break;
		}
		w = (double)bytes / w / 1e6;
		o = (double)bytes / o / 1e6;
		rd = (double)bytes / rd / 1e6;
		printf("run %ld write %.0f overwrite %.0f read %.0f\n", r, w, o, rd);
		fflush(stdout);
		best_w = w > best_w ? w : best_w;
		best_o = o > best_o ? o : best_o;
		best_r = rd > best_r ? rd : best_r;
	}
	close(fd);
	if (rc == 0)
		printf("write_mbps %.0f\noverwrite_mbps %.0f\nread_mbps %.0f\n",
		       best_w, best_o, best_r);
	return rc;
}
