/*
 * File-system helpers (see fsutil.h): atomic publish of new files, a
 * sparse-aware copy, clean-up guards for things an operation created, and
 * flock-based locks that die with their holder.
 *
 * Everything is opened O_CLOEXEC so that the runner's children never inherit
 * a cache file, a lock or a disk.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "beneath.h"
#include "bytes.h"
#include "fsutil.h"
#include "faultpoint.h"
#include <vmdisk/log.h>
#include <vmdisk/validate.h>

/* errno = the injected error, -1: what a failed call returns. */
static int injected_failure(const char *point)
{
	int e = vmd_fault_errno(point);

	if (!e)
		return 0;
	errno = e;
	return -1;
}

int vmd_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			errno = ENODATA;
			return -1;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int vmd_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	if (injected_failure("io.write") < 0)
		return -1;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int vmd_fsync(int fd)
{
	if (injected_failure("io.fsync") < 0)
		return -1;
	return fsync(fd);
}

int vmd_fdatasync(int fd)
{
	if (injected_failure("io.fsync") < 0)
		return -1;
	return fdatasync(fd);
}

int vmd_ftruncate(int fd, uint64_t len)
{
	if (len > (uint64_t)INT64_MAX) {
		errno = EFBIG;
		return -1;
	}
	if (injected_failure("io.truncate") < 0)
		return -1;
	return ftruncate(fd, (off_t)len);
}

int vmd_fallocate(int fd, uint64_t off, uint64_t len)
{
	int e = vmd_fault_errno("io.fallocate");

	if (e)
		return e;
	if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX)
		return EFBIG;
	return posix_fallocate(fd, (off_t)off, (off_t)len);
}

ssize_t vmd_copy_file_range(int in_fd, loff_t *in_off, int out_fd,
                            loff_t *out_off, size_t len)
{
	if (injected_failure("io.copy") < 0)
		return -1;
	return copy_file_range(in_fd, in_off, out_fd, out_off, len, 0);
}

int vmd_ficlone(int dst_fd, int src_fd)
{
	if (injected_failure("io.copy") < 0)
		return -1;
	return ioctl(dst_fd, FICLONE, src_fd);
}

int vmd_linkat(int olddirfd, const char *oldname, int newdirfd,
               const char *newname, int flags)
{
	if (injected_failure("io.link") < 0)
		return -1;
	return linkat(olddirfd, oldname, newdirfd, newname, flags);
}

int vmd_renameat2(int olddirfd, const char *oldname, int newdirfd,
                  const char *newname, unsigned int flags)
{
	if (injected_failure("io.rename") < 0)
		return -1;
	if (flags == 0) /* renameat2 is missing on some file systems */
		return renameat(olddirfd, oldname, newdirfd, newname);
	return renameat2(olddirfd, oldname, newdirfd, newname, flags);
}

int vmd_fsync_dir(const char *dir, struct vmd_error *err)
{
	_cleanup_(closep) int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || vmd_fsync(fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "sync directory failed",
		                           "fsync(%s)", dir);
	return 0;
}

int vmd_mkdir_p(const char *path, mode_t mode, struct vmd_error *err)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return vmd_error_set(err, VMD_E_INVAL, "make directory failed",
		                     "path too long or empty");
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "make directory failed",
			                           "mkdir(%s)", buf);
		*p = saved;
		if (saved == '\0')
			break;
	}
	struct stat st;

	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return vmd_error_set(err, VMD_E_IO, "make directory failed",
		                     "%s is not a directory", path);
	return 0;
}

/*
 * ".tmp-<name>-<random>": the final name inside lets whoever holds the
 * lock for <name> recognise and remove temporaries a dead process left.
 */
static void make_tmpname(struct vmd_tmpfile *t)
{
	unsigned long r = (unsigned long)random() ^
	                  ((unsigned long)getpid() << 16) ^
	                  (unsigned long)time(NULL);

	snprintf(t->tmpname, sizeof(t->tmpname), "%s%.*s-%06lx",
	         VMD_TMP_PREFIX, VMD_TMP_NAME_KEEP, t->name, r & 0xffffff);
}

/* The temporary in the directory dirfd (duplicated: t keeps its own). */
static int tmpfile_openat(struct vmd_tmpfile *t, int dirfd, const char *name,
                          mode_t mode, bool named, struct vmd_error *err)
{
	*t = (struct vmd_tmpfile)VMD_TMPFILE_INIT;
	if (snprintf(t->name, sizeof(t->name), "%s", name) >=
	            (int)sizeof(t->name) ||
	    strchr(name, '/'))
		return vmd_error_set(err, VMD_E_INVAL, "create file failed",
		                     "bad name: %s", name);
	t->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (t->dirfd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "create file failed", "dup directory");
	/* The anonymous file vanishes by itself if we die before publish. */
	t->fd = named ? -1
	              : openat(t->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC,
	                       mode);
	if (t->fd >= 0) {
		t->anonymous = true;
		return 0;
	}
	if (!named && errno != EOPNOTSUPP && errno != EISDIR &&
	    errno != EINVAL && errno != ENOENT)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "create file failed",
		                           "O_TMPFILE for %s", name);
	for (int attempt = 0; attempt < 100; attempt++) {
		make_tmpname(t);
		/* One component, O_EXCL: never a link followed. */
		t->fd = openat(t->dirfd, t->tmpname,
		               O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		               mode);
		if (t->fd >= 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
	t->tmpname[0] = '\0';
	return vmd_error_set_errno(err, VMD_E_IO, errno, "create file failed",
	                           "temporary for %s", name);
}

/* Path forms, for directories outside instances_path only (convert's
 * destination, key files): under it, callers hold a descriptor from
 * lib/beneath.c and use the *at forms. */
static int tmpfile_open(struct vmd_tmpfile *t, const char *dir,
                        const char *name, mode_t mode, bool named,
                        struct vmd_error *err)
{
	_cleanup_(closep) int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	*t = (struct vmd_tmpfile)VMD_TMPFILE_INIT;
	if (dfd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "create file failed", "open(%s)",
		                           dir);
	return tmpfile_openat(t, dfd, name, mode, named, err);
}

int vmd_tmpfile_open(struct vmd_tmpfile *t, const char *dir, const char *name,
                     mode_t mode, struct vmd_error *err)
{
	return tmpfile_open(t, dir, name, mode, false, err);
}

int vmd_tmpfile_open_named(struct vmd_tmpfile *t, const char *dir,
                           const char *name, mode_t mode,
                           struct vmd_error *err)
{
	return tmpfile_open(t, dir, name, mode, true, err);
}

int vmd_tmpfile_openat(struct vmd_tmpfile *t, int dirfd, const char *name,
                       mode_t mode, struct vmd_error *err)
{
	return tmpfile_openat(t, dirfd, name, mode, false, err);
}

int vmd_tmpfile_publish(struct vmd_tmpfile *t, bool replace, mode_t mode,
                        struct vmd_error *err)
{
	char procpath[64];

	if (fchmod(t->fd, mode) < 0 || vmd_fsync(t->fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "write file failed", "sync %s",
		                           t->name);
	if (t->anonymous) {
		snprintf(procpath, sizeof(procpath), "/proc/self/fd/%d", t->fd);
		if (!replace) {
			if (vmd_linkat(AT_FDCWD, procpath, t->dirfd, t->name,
			           AT_SYMLINK_FOLLOW) < 0)
				return vmd_error_set_errno(
					err, errno == EEXIST ? VMD_E_EXISTS : VMD_E_IO,
					errno, "publish file failed", "link %s",
					t->name);
			t->anonymous = false;
		} else {
			/* linkat cannot replace: give it a temporary name,
			 * then rename over the target. */
			for (int attempt = 0;; attempt++) {
				make_tmpname(t);
				if (vmd_linkat(AT_FDCWD, procpath, t->dirfd,
				           t->tmpname, AT_SYMLINK_FOLLOW) == 0)
					break;
				if (errno != EEXIST || attempt > 100) {
					t->tmpname[0] = '\0';
					return vmd_error_set_errno(
						err, VMD_E_IO, errno,
						"publish file failed",
						"link temporary for %s", t->name);
				}
			}
			t->anonymous = false;
		}
	}
	if (t->tmpname[0]) {
		int rc = vmd_renameat2(t->dirfd, t->tmpname, t->dirfd,
		                       t->name, replace ? 0 : RENAME_NOREPLACE);

		if (rc < 0)
			return vmd_error_set_errno(
				err, errno == EEXIST ? VMD_E_EXISTS : VMD_E_IO,
				errno, "publish file failed", "rename to %s",
				t->name);
		t->tmpname[0] = '\0';
	}
	if (vmd_fsync(t->dirfd) < 0) {
		int e = errno;

		/* The name may not last: the caller reports a failure, so
		 * the file we named must not stay as if it were published.
		 * A replaced file cannot be given back; its caller knows. */
		if (!replace)
			unlinkat(t->dirfd, t->name, 0);
		return vmd_error_set_errno(err, VMD_E_IO, e,
		                           "publish file failed",
		                           "sync directory of %s", t->name);
	}
	closep(&t->fd);
	closep(&t->dirfd);
	return 0;
}

void vmd_tmpfile_discard(struct vmd_tmpfile *t)
{
	if (t->tmpname[0] && t->dirfd >= 0)
		unlinkat(t->dirfd, t->tmpname, 0);
	t->tmpname[0] = '\0';
	closep(&t->fd);
	closep(&t->dirfd);
}

int vmd_write_file_atomicat(int dirfd, const char *name, const void *buf,
                            size_t len, mode_t mode, bool replace,
                            struct vmd_error *err)
{
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	int rc = vmd_tmpfile_openat(&t, dirfd, name, 0600, err);

	if (rc < 0)
		return rc;
	if (vmd_pwrite_full(t.fd, buf, len, 0) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "write file failed", "write %s",
		                           name);
	return vmd_tmpfile_publish(&t, replace, mode, err);
}

int vmd_write_file_atomic(const char *dir, const char *name, const void *buf,
                          size_t len, mode_t mode, bool replace,
                          struct vmd_error *err)
{
	_cleanup_(closep) int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "write file failed", "open(%s)", dir);
	return vmd_write_file_atomicat(dfd, name, buf, len, mode, replace,
	                               err);
}

void vmd_cleanup_path_arm(struct vmd_cleanup_path *c, const char *path,
                          bool is_dir)
{
	snprintf(c->path, sizeof(c->path), "%s", path);
	c->is_dir = is_dir;
	c->armed = true;
}

void vmd_cleanup_path_disarm(struct vmd_cleanup_path *c)
{
	c->armed = false;
}

void vmd_cleanup_path_run(struct vmd_cleanup_path *c)
{
	if (!c->armed)
		return;
	c->armed = false;
	if ((c->is_dir ? rmdir(c->path) : unlink(c->path)) < 0 &&
	    errno != ENOENT)
		vmd_log_warning("clean-up: could not remove %s: %s", c->path,
		                strerror(errno));
}

static int lock_open(struct vmd_lock *l, int lockdirfd, const char *name,
                     char path[PATH_MAX], struct vmd_error *err)
{
	l->fd = -1;
	if (!vmd_valid_file_token(name))
		return vmd_error_set(err, VMD_E_INVAL, "lock failed",
		                     "bad lock name");
	if (snprintf(path, PATH_MAX, "%s.lock", name) >= PATH_MAX)
		return vmd_error_set(err, VMD_E_INVAL, "lock failed",
		                     "lock path too long");
	/* Beneath the lock directory: a planted link is refused. */
	l->fd = vmd_bopen(lockdirfd, path, O_RDWR | O_CREAT, 0600);
	if (l->fd < 0)
		return vmd_beneath_error(err, VMD_E_IO, errno, "lock failed",
		                         "open %s", path);
	return 0;
}

int vmd_lock_try(struct vmd_lock *l, int lockdir, const char *name,
                 enum vmd_lock_mode mode, struct vmd_error *err)
{
	char path[PATH_MAX];
	int op = mode == VMD_LOCK_SHARED ? LOCK_SH : LOCK_EX;
	int rc = lock_open(l, lockdir, name, path, err);

	if (rc < 0)
		return rc;
	while (flock(l->fd, op | LOCK_NB) < 0) {
		int e = errno;

		if (e == EINTR)
			continue;
		vmd_lock_release(l);
		if (e == EWOULDBLOCK)
			return VMD_E_BUSY; /* expected: not an error to log */
		return vmd_error_set_errno(err, VMD_E_IO, e, "lock failed",
		                           "flock %s", path);
	}
	return 0;
}

int vmd_lock_acquire(struct vmd_lock *l, int lockdir, const char *name,
                     enum vmd_lock_mode mode, unsigned timeout_s,
                     struct vmd_error *err)
{
	char path[PATH_MAX];
	int op = mode == VMD_LOCK_SHARED ? LOCK_SH : LOCK_EX;
	struct timespec start, now;
	int rc = lock_open(l, lockdir, name, path, err);

	if (rc < 0)
		return rc;
	if (timeout_s == 0) {
		while (flock(l->fd, op) < 0) {
			if (errno != EINTR) {
				vmd_lock_release(l);
				return vmd_error_set_errno(err, VMD_E_IO, errno,
				                           "lock failed",
				                           "flock %s", path);
			}
		}
		return 0;
	}
	/* flock has no timeout: poll with a short back-off. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long delay_ms = 1;;) {
		if (flock(l->fd, op | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			vmd_lock_release(l);
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "lock failed", "flock %s",
			                           path);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - start.tv_sec >= (time_t)timeout_s) {
			vmd_lock_release(l);
			return vmd_error_set(err, VMD_E_BUSY,
			                     "timed out waiting for a lock",
			                     "lock %s held for over %us", path,
			                     timeout_s);
		}
		struct timespec ts = {0, delay_ms * 1000000L};

		nanosleep(&ts, NULL);
		if (delay_ms < 50)
			delay_ms *= 2;
	}
}

void vmd_lock_release(struct vmd_lock *l)
{
	/* Closing the descriptor drops the flock. */
	closep(&l->fd);
}

void vmd_tmpfile_sweep(int dirfd, const char *name)
{
	char prefix[VMD_TMP_NAME_KEEP + 16];
	size_t plen;
	_cleanup_(closedirp) DIR *d = vmd_bopendir(dirfd, ".");
	struct dirent *de;

	if (!d)
		return;
	plen = (size_t)snprintf(prefix, sizeof(prefix), "%s%.*s-",
	                        VMD_TMP_PREFIX, VMD_TMP_NAME_KEEP, name);
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, prefix, plen) != 0)
			continue;
		if (vmd_bunlink(dirfd, de->d_name, 0) == 0)
			vmd_log_info("removed stale temporary %s", de->d_name);
	}
}
