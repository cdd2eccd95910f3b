/*
 * A dm-log-writes replayer for the power-loss part of the reliability suite
 * (tests/suite/reliability/parts/20-powerloss.sh), written from the log
 * format the kernel documents (Documentation/admin-guide/device-mapper/
 * log-writes.rst, drivers/md/dm-log-writes.c):
 *
 *   block 0 (one "sector" of the data device's logical block size S): the
 *     super, { le64 magic 0x6a736677736872, le64 version 1, le64 nr_entries,
 *     le32 S };
 *   then nr_entries entries, each one block of size S holding
 *     { le64 sector, le64 nr_sectors, le64 flags, le64 data_len } (sector
 *     and nr_sectors in units of S; flags 1 flush, 2 FUA, 4 discard, 8 mark,
 *     16 metadata) and, for a mark, its name (data_len bytes) after the
 *     header; a write that is not a discard is followed by its nr_sectors
 *     blocks of data.
 *
 *   replay list LOG                 one line per entry:
 *                                   "INDEX FLAGS SECTOR NR_SECTORS [MARK]"
 *   replay apply LOG DEV FROM TO    write entries FROM..TO-1 to DEV (a discard
 *                                   as zeros, so the result never depends on
 *                                   the device's discard support), fsync
 *
 * The log is untrusted input as far as this program goes: every offset and
 * length is checked for overflow and against the log's and device's sizes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <unistd.h>

#define LOG_MAGIC 0x6a736677736872ULL
#define FLAG_DISCARD 4u
#define FLAG_MARK 8u
#define MAX_SECTORSIZE 65536u

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void die(const char *what)
{
	fprintf(stderr, "replay: %s%s%s\n", what, errno ? ": " : "",
	        errno ? strerror(errno) : "");
	exit(1);
}

static uint64_t dev_size(int fd)
{
	struct stat st;
	uint64_t n = 0;

	if (fstat(fd, &st) < 0)
		die("stat");
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &n) < 0)
			die("BLKGETSIZE64");
		return n;
	}
	return (uint64_t)st.st_size;
}

static void read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
		                  (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = 0;
			die("reading the log");
		}
		done += (size_t)r;
	}
}

static void write_at(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done,
		                   (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("writing the device");
		done += (size_t)r;
	}
}

struct entry {
	uint64_t sector, nr, flags, data_len;
	uint64_t data_off; /* where its data starts in the log */
	char mark[MAX_SECTORSIZE];
};

struct log {
	int fd;
	uint64_t size, nr_entries, pos;
	uint32_t ss;
	unsigned char *block;
};

static void log_open(struct log *l, const char *path)
{
	unsigned char super[512];

	l->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (l->fd < 0)
		die("opening the log");
	l->size = dev_size(l->fd);
	if (l->size < sizeof(super)) {
		errno = 0;
		die("log too small");
	}
	read_at(l->fd, super, sizeof(super), 0);
	l->ss = le32(super + 24);
	errno = 0;
	if (le64(super) != LOG_MAGIC || le64(super + 8) != 1)
		die("not a dm-log-writes log (magic/version)");
	if (l->ss < 512 || l->ss > MAX_SECTORSIZE || (l->ss & (l->ss - 1)))
		die("bad sector size in the log");
	l->nr_entries = le64(super + 16);
	l->pos = l->ss;
	l->block = malloc(l->ss);
	if (!l->block)
		die("out of memory");
}

/* Reads the entry at l->pos and moves past it (header and data). */
static void log_next(struct log *l, struct entry *e)
{
	uint64_t data_bytes = 0, end;

	errno = 0;
	if (!__builtin_add_overflow(l->pos, l->ss, &end) && end <= l->size)
		read_at(l->fd, l->block, l->ss, l->pos);
	else
		die("log ends inside an entry header");
	e->sector = le64(l->block);
	e->nr = le64(l->block + 8);
	e->flags = le64(l->block + 16);
	e->data_len = le64(l->block + 24);
	e->mark[0] = '\0';
	if (e->flags & FLAG_MARK) {
		size_t n = e->data_len < l->ss - 32 ? (size_t)e->data_len : l->ss - 33;

		memcpy(e->mark, l->block + 32, n);
		e->mark[n] = '\0';
		for (size_t i = 0; i < n; i++)
			if (e->mark[i] < 0x21 || e->mark[i] > 0x7e)
				e->mark[i] = '?';
	}
	e->data_off = end;
	if (!(e->flags & FLAG_DISCARD) &&
	    (__builtin_mul_overflow(e->nr, (uint64_t)l->ss, &data_bytes) ||
	     __builtin_add_overflow(end, data_bytes, &end) || end > l->size))
		die("log ends inside an entry's data");
	l->pos = end;
}

static int cmd_list(const char *path)
{
	struct log l;
	static struct entry e;

	log_open(&l, path);
	for (uint64_t i = 0; i < l.nr_entries; i++) {
		log_next(&l, &e);
		printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "%s%s\n", i,
		       e.flags, e.sector, e.nr, e.mark[0] ? " " : "", e.mark);
	}
	return 0;
}

static uint64_t number(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-')
		die("bad number");
	return v;
}

static int cmd_apply(const char *path, const char *devpath, uint64_t from,
                     uint64_t to)
{
	struct log l;
	static struct entry e;
	static unsigned char buf[1 << 20];
	int dev;
	uint64_t dsize;

	log_open(&l, path);
	errno = 0;
	if (from > to || to > l.nr_entries)
		die("entry range outside the log");
	dev = open(devpath, O_WRONLY | O_CLOEXEC);
	if (dev < 0)
		die("opening the device");
	dsize = dev_size(dev);
	for (uint64_t i = 0; i < to; i++) {
		uint64_t off, len, done = 0;

		log_next(&l, &e);
		if (i < from || e.nr == 0)
			continue;
		errno = 0;
		if (__builtin_mul_overflow(e.sector, (uint64_t)l.ss, &off) ||
		    __builtin_mul_overflow(e.nr, (uint64_t)l.ss, &len) ||
		    off > dsize || len > dsize - off)
			die("entry outside the device");
		if (e.flags & FLAG_DISCARD)
			memset(buf, 0, sizeof(buf));
		while (done < len) {
			size_t n = len - done < sizeof(buf) ? (size_t)(len - done)
			                                    : sizeof(buf);

			if (!(e.flags & FLAG_DISCARD))
				read_at(l.fd, buf, n, e.data_off + done);
			write_at(dev, buf, n, off + done);
			done += n;
		}
	}
	if (fsync(dev) < 0)
		die("fsync of the device");
	close(dev);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "list") == 0)
		return cmd_list(argv[2]);
	if (argc == 6 && strcmp(argv[1], "apply") == 0)
		return cmd_apply(argv[2], argv[3], number(argv[4]), number(argv[5]));
	fprintf(stderr, "usage: replay list LOG | replay apply LOG DEV FROM TO\n");
	return 2;
}
