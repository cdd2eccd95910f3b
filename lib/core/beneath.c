/*
 * The one module that touches files under instances_path (see beneath.h).
 *
 * Why: a path string such as "<instances_path>/<uuid>/disk" is resolved by
 * the kernel one component at a time, and O_NOFOLLOW guards only the last.
 * Whoever can write instances_path (or an instance directory) can plant a
 * symbolic link at any other component, and create would then write the
 * disk and record wherever it points, remove delete there. Here every name
 * is resolved by openat2(2) relative to a directory descriptor with
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, so a link
 * anywhere on the way is an error (ELOOP), and every change is an *at()
 * call on a parent so resolved. Where the kernel has no openat2 we refuse;
 * there is no fallback that follows links.
 *
 * One exception, for the test suite's valgrind pass only: valgrind 3.19
 * (Debian 12) does not know openat2 and answers ENOSYS, which would make
 * every suite fail there. Only when running under valgrind
 * (RUNNING_ON_VALGRIND) is the same resolution done component by
 * component with O_NOFOLLOW and a link check at each step, which follows
 * no link either; on a real kernel without openat2 we still refuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0 /* built without valgrind's header */
#endif

#include "beneath.h"
#include "faultpoint.h"
#include "fsutil.h"

#define RESOLVE_SAFE                                                           \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
#define LOCK_DIR_NAME "locks"
#define LOCK_DIR_MODE 0700

/* Relative, not empty, no ".." component (RESOLVE_BENEATH would allow one
 * that stays inside; we never need it, so none is accepted). */
static bool name_ok(const char *name)
{
	if (!name || !name[0] || name[0] == '/')
		return false;
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");

		if (n == 2 && p[0] == '.' && p[1] == '.')
			return false;
		p += n;
		p += *p == '/';
	}
	return true;
}

/* fd (opened with O_NOFOLLOW) unless it is a link: then ELOOP. */
static int refuse_link(int fd)
{
	struct stat st;

	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
		close(fd);
		errno = ELOOP;
		return -1;
	}
	return fd;
}

/*
 * What openat2 with RESOLVE_SAFE does, for valgrind only (see the top of
 * this file): every directory on the way opened O_PATH|O_NOFOLLOW and
 * checked not to be a link, the last component opened O_NOFOLLOW.
 */
static int walk_open(int dirfd, const char *name, int flags, mode_t mode)
{
	char buf[PATH_MAX];
	_cleanup_(closep) int cur = -1;
	char *comp, *next;
	int fd, e;

	if (strlen(name) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, name, strlen(name) + 1);
	comp = buf;
	for (;;) {
		int at = cur >= 0 ? cur : dirfd;

		next = strchr(comp, '/');
		while (next && next[1] == '/')
			*next++ = '\0';
		if (!next || !next[1]) {
			if (next)
				*next = '\0';
			fd = openat(at, comp, flags | O_NOFOLLOW | O_CLOEXEC, mode);
			e = errno;
			if (fd < 0 && e == ENOTDIR) {
				struct stat st;

				if (fstatat(at, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(st.st_mode))
					e = ELOOP;
			}
			errno = e;
			return refuse_link(fd);
		}
		*next = '\0';
		fd = refuse_link(openat(at, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC));
		if (fd < 0)
			return -1;
		closep(&cur);
		cur = fd;
		comp = next + 1;
	}
}

int vmd_bopen(int dirfd, const char *name, int flags, mode_t mode)
{
	/* No O_NOFOLLOW: with it a link as the last component of an
	 * O_DIRECTORY open is ENOTDIR (or, with O_PATH, the link itself);
	 * RESOLVE_NO_SYMLINKS alone refuses it everywhere with ELOOP. */
	struct open_how how = {
		.flags = (uint64_t)((flags & ~O_NOFOLLOW) | O_CLOEXEC),
		.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
		.resolve = RESOLVE_SAFE,
	};
	long fd;

	if (!name_ok(name)) {
		errno = EXDEV;
		return -1;
	}
	/* Tests play a kernel without openat2 (fault-injection builds). */
	if (vmd_faultpoint("beneath.no_openat2", NULL) < 0) {
		errno = ENOSYS;
		return -1;
	}
	/* Not even tried under valgrind: it would answer ENOSYS and print a
	 * warning into the output of every program the tests run. */
	if (RUNNING_ON_VALGRIND)
		return walk_open(dirfd, name, flags & ~O_NOFOLLOW,
		                 (flags & (O_CREAT | O_TMPFILE)) ? mode : 0);
	do
		fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	while (fd < 0 && errno == EINTR);
	return (int)fd;
}

DIR *vmd_bopendir(int dirfd, const char *name)
{
	int fd = vmd_bopen(dirfd, name, O_RDONLY | O_DIRECTORY, 0);
	DIR *d;

	if (fd < 0)
		return NULL;
	d = fdopendir(fd);
	if (!d)
		closep(&fd);
	return d;
}

/* The parent of name, opened beneath dirfd (or dirfd itself for a name
 * without '/'), and the last component, which must be a real name. */
static int parent_of(int dirfd, const char *name, int *owned,
                     const char **last)
{
	const char *slash;
	char buf[PATH_MAX];

	*owned = -1;
	if (!name_ok(name)) {
		errno = EXDEV;
		return -1;
	}
	slash = strrchr(name, '/');
	*last = slash ? slash + 1 : name;
	if (!**last || strcmp(*last, ".") == 0) {
		errno = EINVAL;
		return -1;
	}
	if (!slash)
		return dirfd;
	if ((size_t)(slash - name) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, name, (size_t)(slash - name));
	buf[slash - name] = '\0';
	*owned = vmd_bopen(dirfd, buf, O_PATH | O_DIRECTORY, 0);
	return *owned;
}

int vmd_bmkdir(int dirfd, const char *name, mode_t mode)
{
	_cleanup_(closep) int owned = -1;
	const char *last;
	int pfd = parent_of(dirfd, name, &owned, &last);

	return pfd < 0 ? -1 : mkdirat(pfd, last, mode);
}

int vmd_bunlink(int dirfd, const char *name, int flags)
{
	_cleanup_(closep) int owned = -1;
	const char *last;
	int pfd = parent_of(dirfd, name, &owned, &last);

	return pfd < 0 ? -1 : unlinkat(pfd, last, flags);
}

int vmd_bstat(int dirfd, const char *name, struct stat *st)
{
	_cleanup_(closep) int owned = -1;
	const char *last;
	int pfd = parent_of(dirfd, name, &owned, &last);

	return pfd < 0 ? -1 : fstatat(pfd, last, st, AT_SYMLINK_NOFOLLOW);
}

int vmd_btouch(int dirfd, const char *name)
{
	_cleanup_(closep) int owned = -1;
	const char *last;
	int pfd = parent_of(dirfd, name, &owned, &last);

	return pfd < 0 ? -1 : utimensat(pfd, last, NULL, AT_SYMLINK_NOFOLLOW);
}

int vmd_brename(int olddirfd, const char *oldname, int newdirfd,
                const char *newname, unsigned int flags)
{
	_cleanup_(closep) int old_owned = -1;
	_cleanup_(closep) int new_owned = -1;
	const char *old_last, *new_last;
	int opfd = parent_of(olddirfd, oldname, &old_owned, &old_last);
	int npfd = opfd < 0 ? -1
	                    : parent_of(newdirfd, newname, &new_owned, &new_last);

	if (opfd < 0 || npfd < 0)
		return -1;
	return vmd_renameat2(opfd, old_last, npfd, new_last, flags);
}

int vmd_bread_file(int dirfd, const char *name, size_t max, char **buf,
                   size_t *len)
{
	_cleanup_(closep) int fd = vmd_bopen(dirfd, name, O_RDONLY | O_NONBLOCK, 0);
	struct stat st;
	char *b;

	*buf = NULL;
	*len = 0;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	if (!S_ISREG(st.st_mode)) {
		errno = EINVAL;
		return -1;
	}
	if ((uint64_t)st.st_size > max) {
		errno = EFBIG;
		return -1;
	}
	b = calloc(1, (size_t)st.st_size + 1);
	if (!b)
		return -1;
	if (st.st_size && vmd_pread_full(fd, b, (size_t)st.st_size, 0) < 0) {
		free(b);
		return -1;
	}
	*buf = b;
	*len = (size_t)st.st_size;
	return 0;
}

int vmd_beneath_error(struct vmd_error *err, enum vmd_errc code, int errnum,
                      const char *public, const char *fmt, ...)
{
	char detail[VMD_ERROR_DETAIL_MAX], msg[VMD_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (errnum == ELOOP || errnum == EXDEV) {
		snprintf(msg, sizeof(msg),
		         "%s: symbolic link or name outside instances_path "
		         "refused",
		         public);
		return vmd_error_set_errno(err, VMD_E_REFUSED, errnum, msg,
		                           "%s", detail);
	}
	if (errnum == ENOSYS) {
		snprintf(msg, sizeof(msg),
		         "%s: the kernel lacks openat2 (Linux 5.6 or later is "
		         "needed)",
		         public);
		return vmd_error_set_errno(err, VMD_E_UNSUPPORTED, errnum, msg,
		                           "%s", detail);
	}
	return vmd_error_set_errno(err, code, errnum, public, "%s", detail);
}

void vmd_fd_path(int fd, char out[32])
{
	snprintf(out, 32, "/proc/self/fd/%d", fd);
}

int vmd_beneath_root(struct vmd_ctx *ctx, bool create, int *rootfd,
                     struct vmd_error *err)
{
	const char *top = ctx->cfg.instances_path;
	int fd, probe;

	*rootfd = ctx->root_fd;
	if (ctx->root_fd >= 0)
		return 0;
	if (top[0] != '/')
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "config: instances_path must be absolute",
		                     "instances_path '%s'", top);
	/* The configuration is trusted: its path is resolved the ordinary
	 * way, once; nothing below it ever is. */
	if (create) {
		int rc = vmd_mkdir_p(top, 0755, err);

		if (rc < 0)
			return rc;
	}
	fd = open(top, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && !create)
		return VMD_E_NOTFOUND;
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "open instances_path failed", "open %s",
		                           top);
	/* Refuse a kernel without openat2 now, with a message that says so,
	 * rather than at whichever call would have been first. */
	probe = vmd_bopen(fd, ".", O_PATH | O_DIRECTORY, 0);
	if (probe < 0) {
		int e = errno;

		close(fd);
		return vmd_beneath_error(err, VMD_E_IO, e,
		                         "open instances_path failed",
		                         "openat2 on %s", top);
	}
	close(probe);
	ctx->root_fd = fd;
	*rootfd = fd;
	return 0;
}

int vmd_beneath_dir(struct vmd_ctx *ctx, const char *name, bool create,
                    mode_t mode, const char *public, int *fd,
                    struct vmd_error *err)
{
	int root;
	int rc = vmd_beneath_root(ctx, create, &root, err);

	*fd = -1;
	if (rc < 0)
		return rc;
	if (create && vmd_bmkdir(root, name, mode) < 0 && errno != EEXIST)
		return vmd_beneath_error(err, VMD_E_IO, errno, public,
		                         "mkdir %s under %s", name,
		                         ctx->cfg.instances_path);
	*fd = vmd_bopen(root, name, O_RDONLY | O_DIRECTORY, 0);
	if (*fd < 0 && errno == ENOENT && !create)
		return VMD_E_NOTFOUND;
	if (*fd < 0)
		return vmd_beneath_error(err, VMD_E_IO, errno, public,
		                         "open %s under %s", name,
		                         ctx->cfg.instances_path);
	return 0;
}

int vmd_beneath_cache_dir(struct vmd_ctx *ctx, bool create, mode_t mode,
                          int *fd, struct vmd_error *err)
{
	return vmd_beneath_dir(ctx, ctx->cfg.image_cache_subdirectory_name,
	                       create, mode, "cache: open cache directory failed",
	                       fd, err);
}

int vmd_beneath_lock_dir(struct vmd_ctx *ctx, int *fd, struct vmd_error *err)
{
	return vmd_beneath_dir(ctx, LOCK_DIR_NAME, true, LOCK_DIR_MODE,
	                       "lock failed", fd, err);
}

int vmd_ctx_lock_acquire(struct vmd_ctx *ctx, struct vmd_lock *l,
                         const char *name, enum vmd_lock_mode mode,
                         unsigned timeout_s, struct vmd_error *err)
{
	_cleanup_(closep) int dfd = -1;
	int rc = vmd_beneath_lock_dir(ctx, &dfd, err);

	l->fd = -1;
	return rc < 0 ? rc
	              : vmd_lock_acquire(l, dfd, name, mode, timeout_s, err);
}

int vmd_ctx_lock_try(struct vmd_ctx *ctx, struct vmd_lock *l,
                     const char *name, enum vmd_lock_mode mode,
                     struct vmd_error *err)
{
	_cleanup_(closep) int dfd = -1;
	int rc = vmd_beneath_lock_dir(ctx, &dfd, err);

	l->fd = -1;
	return rc < 0 ? rc : vmd_lock_try(l, dfd, name, mode, err);
}
