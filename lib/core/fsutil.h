/*
 * File-system helpers: atomic publish, clean-up guards and external locks.
 *
 * Atomic publish: data is written to an anonymous O_TMPFILE in the target
 * directory (or, where the file system lacks it, a ".tmp-XXXXXX" sibling),
 * fsync'ed, then linked or renamed to its final name and the directory is
 * fsync'ed. A reader therefore sees either nothing or the complete file, and
 * a process killed half-way leaves no file under the final name.
 *
 * Locks: flock() on <name>.lock in a lock directory. The kernel drops the
 * lock when the holder dies, even by SIGKILL, so a crash never blocks the next caller.
 */
#ifndef VMDISK_FSUTIL_H
#define VMDISK_FSUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <vmdisk/error.h>

#include "cleanup.h"

#define VMD_TMP_PREFIX ".tmp-"
#define VMD_TMP_NAME_KEEP 48 /* chars of the final name kept in a tmpname */

struct vmd_tmpfile {
	int fd;
	int dirfd;
	char name[256];     /* final name, relative to dirfd */
	char tmpname[80];   /* sibling name when O_TMPFILE was not available */
	bool anonymous;     /* O_TMPFILE */
};

#define VMD_TMPFILE_INIT {-1, -1, "", "", false}

/* Open a temporary for `dir`/`name` with mode `mode` (applied at publish). */
int vmd_tmpfile_open(struct vmd_tmpfile *t, const char *dir, const char *name,
                     mode_t mode, struct vmd_error *err);

/* The same in the directory dirfd (a descriptor from lib/beneath.c). */
int vmd_tmpfile_openat(struct vmd_tmpfile *t, int dirfd, const char *name,
                       mode_t mode, struct vmd_error *err);

/* The same, but always a named sibling (dir/t->tmpname): for a temporary
 * that an external program must open by path. */
int vmd_tmpfile_open_named(struct vmd_tmpfile *t, const char *dir,
                           const char *name, mode_t mode,
                           struct vmd_error *err);

/*
 * fsync the data, give it its final name, fsync the directory.
 * replace=false refuses (VMD_E_EXISTS) when the final name exists.
 */
int vmd_tmpfile_publish(struct vmd_tmpfile *t, bool replace, mode_t mode,
                        struct vmd_error *err);

/* Drop an unpublished temporary (no-op after publish). Always safe to call. */
void vmd_tmpfile_discard(struct vmd_tmpfile *t);

/* Write a whole buffer atomically to dir/name. */
int vmd_write_file_atomic(const char *dir, const char *name, const void *buf,
                          size_t len, mode_t mode, bool replace,
                          struct vmd_error *err);

/* Remove the temporaries of `name` in dirfd (".tmp-<name>-*") that a
 * process killed between making and publishing one left behind. Only for
 * a caller holding the lock that guards `name`: then no live writer owns
 * one. */
void vmd_tmpfile_sweep(int dirfd, const char *name);

int vmd_write_file_atomicat(int dirfd, const char *name, const void *buf,
                            size_t len, mode_t mode, bool replace,
                            struct vmd_error *err);

/* mkdir -p for our own directories (each created with `mode`). */
int vmd_mkdir_p(const char *path, mode_t mode, struct vmd_error *err);

int vmd_fsync_dir(const char *dir, struct vmd_error *err);

/* Full-buffer pread/pwrite, retrying short transfers and EINTR. */
int vmd_pread_full(int fd, void *buf, size_t len, uint64_t off);
int vmd_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/*
 * The other calls that write, sync, extend or name a file, each with its
 * fault point (lib/util/faultpoint.h) so that the disk-full and I/O-error
 * tests (tests/suite/reliability/parts/40-diskfull.sh) can make any of them
 * fail as the kernel would: same return value, errno set. Library code
 * calls these, never the system calls themselves.
 *
 *   io.write     vmd_pwrite_full
 *   io.fsync     vmd_fsync, vmd_fdatasync (files and directories)
 *   io.truncate  vmd_ftruncate
 *   io.fallocate vmd_fallocate (returns the error number, as posix_fallocate)
 *   io.copy      vmd_copy_file_range, vmd_ficlone
 *   io.link      vmd_linkat
 *   io.rename    vmd_renameat2 (also under vmd_brename)
 */
int vmd_fsync(int fd);
int vmd_fdatasync(int fd);
int vmd_ftruncate(int fd, uint64_t len);
int vmd_fallocate(int fd, uint64_t off, uint64_t len);
ssize_t vmd_copy_file_range(int in_fd, loff_t *in_off, int out_fd,
                            loff_t *out_off, size_t len);
int vmd_ficlone(int dst_fd, int src_fd);
int vmd_linkat(int olddirfd, const char *oldname, int newdirfd,
               const char *newname, int flags);
int vmd_renameat2(int olddirfd, const char *oldname, int newdirfd,
                  const char *newname, unsigned int flags);

/* A path we created and must remove if the operation fails. */
struct vmd_cleanup_path {
	char path[4096];
	bool is_dir;
	bool armed;
};

void vmd_cleanup_path_arm(struct vmd_cleanup_path *c, const char *path,
                          bool is_dir);
void vmd_cleanup_path_disarm(struct vmd_cleanup_path *c);
/* Remove the path if still armed. For _cleanup_(). */
void vmd_cleanup_path_run(struct vmd_cleanup_path *c);

struct vmd_lock {
	int fd;
};

#define VMD_LOCK_INIT {-1}

enum vmd_lock_mode {
	VMD_LOCK_SHARED,    /* users of a thing: many at once */
	VMD_LOCK_EXCLUSIVE, /* makers and removers of a thing: one at a time */
};

/*
 * Take the lock named `name` (validated: vmd_valid_file_token) in the
 * directory `lockdir` (a descriptor; the library's is under instances_path:
 * vmd_ctx_lock_acquire in lib/beneath.h). timeout_s = 0 waits forever.
 */
int vmd_lock_acquire(struct vmd_lock *l, int lockdir, const char *name,
                     enum vmd_lock_mode mode, unsigned timeout_s,
                     struct vmd_error *err);
/* Take it only if free now: VMD_E_BUSY (err untouched) when held. */
int vmd_lock_try(struct vmd_lock *l, int lockdir, const char *name,
                 enum vmd_lock_mode mode, struct vmd_error *err);
void vmd_lock_release(struct vmd_lock *l);

#endif
