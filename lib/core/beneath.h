/*
 * Every file operation under instances_path (see beneath.c).
 *
 * instances_path comes from the trusted configuration and is the only path
 * string under it that is ever resolved the ordinary way: once per context,
 * into a descriptor. Everything below it (instance directories, disks,
 * .vmdisk.json, the image cache, locks) is reached from that descriptor by
 * relative names that openat2(2) resolves with RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: a symbolic link anywhere on
 * the way, a ".." or an absolute name is refused, never followed. Changes
 * (mkdir, unlink, rename, link of a temporary) are the *at() calls on a
 * parent directory opened that way, and those never follow a link in the
 * last component either.
 *
 * The path strings kept beside the descriptors (vmd_disk_ref.path, the
 * cache entry's path) are for others only: libvirt XML, the backing-file
 * name written into a qcow2 overlay, log lines. vmdisk's own access never
 * goes through them (tests/suite/source/run.sh enforces it).
 *
 * The calls below behave like the system calls they wrap: -1 and errno,
 * ELOOP for a link on the way, EXDEV or EINVAL for a name that would
 * leave the directory, ENOSYS when the kernel has no openat2 (Linux < 5.6;
 * vmd_beneath_root refuses such a kernel with a clear error first).
 */
#ifndef VMDISK_BENEATH_H
#define VMDISK_BENEATH_H

#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fsutil.h"
#include "internal.h"

/* instances_path's descriptor (O_PATH|O_DIRECTORY), opened on first use
 * and kept by the context; create: make instances_path first if missing
 * (else a missing one is VMD_E_NOTFOUND). */
int vmd_beneath_root(struct vmd_ctx *ctx, bool create, int *rootfd,
                     struct vmd_error *err);

/* A directory directly under instances_path (an instance, the cache,
 * "locks"), made with `mode` when create is set and it is missing; *fd is
 * O_RDONLY|O_DIRECTORY (it can be fsync'ed and listed), the caller's.
 * public: the failing step for the error ("make instance directory"). */
int vmd_beneath_dir(struct vmd_ctx *ctx, const char *name, bool create,
                    mode_t mode, const char *public, int *fd,
                    struct vmd_error *err);

/* The image cache directory (image_cache_subdirectory_name; mode when
 * made) and the lock directory ("locks", made 0700). */
int vmd_beneath_cache_dir(struct vmd_ctx *ctx, bool create, mode_t mode,
                          int *fd, struct vmd_error *err);
int vmd_beneath_lock_dir(struct vmd_ctx *ctx, int *fd, struct vmd_error *err);

/* vmd_lock_acquire / vmd_lock_try in the context's lock directory. */
int vmd_ctx_lock_acquire(struct vmd_ctx *ctx, struct vmd_lock *l,
                         const char *name, enum vmd_lock_mode mode,
                         unsigned timeout_s, struct vmd_error *err);
int vmd_ctx_lock_try(struct vmd_ctx *ctx, struct vmd_lock *l,
                     const char *name, enum vmd_lock_mode mode,
                     struct vmd_error *err);

/* openat2 under dirfd; O_CLOEXEC is always added, and a link as any
 * component, the last included, is ELOOP. */
int vmd_bopen(int dirfd, const char *name, int flags, mode_t mode);
/* A directory under dirfd, O_RDONLY|O_DIRECTORY, for readdir. */
DIR *vmd_bopendir(int dirfd, const char *name);
/* The *at() calls on the parent of name (resolved as above); the last
 * component is never followed. */
int vmd_bmkdir(int dirfd, const char *name, mode_t mode);
int vmd_bunlink(int dirfd, const char *name, int flags); /* AT_REMOVEDIR */
int vmd_bstat(int dirfd, const char *name, struct stat *st);
int vmd_brename(int olddirfd, const char *oldname, int newdirfd,
                const char *newname, unsigned int flags); /* RENAME_* */
/* Set the times of name to now (a cache entry's "last used"). */
int vmd_btouch(int dirfd, const char *name);

/* Read a whole small file (at most max bytes, else EFBIG) into a
 * malloc'ed NUL-terminated buffer. */
int vmd_bread_file(int dirfd, const char *name, size_t max, char **buf,
                   size_t *len);

/*
 * err for a failed call above: a link or an escape gets a public message
 * that says so ("<public>: symbolic link refused"), a kernel without
 * openat2 one that says that; anything else is `code` with `public`.
 */
int vmd_beneath_error(struct vmd_error *err, enum vmd_errc code, int errnum,
                      const char *public, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* "/proc/self/fd/N": how a descriptor we opened beneath instances_path is
 * named to code that wants a path (the converter, lib/blockdev.c, dups a
 * descriptor so named instead of opening a path). */
void vmd_fd_path(int fd, char out[32]);

#endif
