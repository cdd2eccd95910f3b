/*
 * Blank-disk templates: a file system made once per (fs, size, label) and
 * kept in the cache like a base image, so that every ephemeral or swap disk
 * after the first is a clone or an overlay (Nova's ephemeral_<size>_<fs>
 * and swap_<size> bases).
 *
 * mkfs runs through the runner on an anonymous temporary (O_TMPFILE) in the
 * cache directory, which it is given as /proc/<our pid>/fd/<N>: the file
 * we opened beneath instances_path, not a path it would resolve through
 * directories someone else may have replaced by links since. argv is made
 * only of validated values: a fixed program per file system, a label that
 * passed vmd_valid_fs_label, and that name. The result is published
 * atomically under the entry's lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "cache.h"
#include "faultpoint.h"
#include "fsutil.h"
#include "runner.h"

#define TEMPLATE_MODE 0640 /* as a fetched base (lib/cache.c) */
#define MKFS_TIMEOUT_MS 300000

#define KIB 1024ull
#define MIB (1024ull * 1024)

/* Per file system: its name, the longest label it takes, its mkfs (the
 * program with its fixed options and the option that sets a label) and the
 * smallest size that mkfs accepts, checked before it runs so that a refusal
 * says why ("xfs needs at least 300 MiB") instead of "mkfs.xfs failed".
 *
 * The minimums were found by running each mkfs below, with exactly these
 * options, on sparse files of decreasing size (bisection in 512-byte
 * steps, then every size up to a few MiB above to see that nothing smaller
 * fails again): e2fsprogs 1.47.0, xfsprogs 6.1.0, dosfstools 4.2,
 * util-linux 2.38.1 (Debian 12). The smallest that failed said:
 *   ext4 at 103.5 KiB: "Illegal inode number while writing reserved inodes"
 *   xfs  at 300 MiB - 512: "Filesystem must be larger than 300MB." (a
 *        fixed floor since xfsprogs 5.19; older ones took 16 MiB, so the
 *        check refuses a little more there, never less)
 *   vfat at 49.5 KiB: "Too few blocks for viable filesystem"
 *   swap at 39.5 KiB: "swap area needs to be at least 40 KiB" */
static const struct {
	enum vmd_blank_fs fs;
	const char *name;
	size_t label_max;
	const char *mkfs[4]; /* NULL-terminated */
	const char *label_opt;
	uint64_t min_size;
} filesystems[] = {
	{VMD_FS_NONE, "none", 0, {NULL}, NULL, 0},
	{VMD_FS_EXT4, "ext4", 16, {"mkfs.ext4", "-F", "-q", NULL}, "-L",
	 104 * KIB},
	{VMD_FS_XFS, "xfs", 12, {"mkfs.xfs", "-f", "-q", NULL}, "-L",
	 300 * MIB},
	{VMD_FS_VFAT, "vfat", 11, {"mkfs.vfat", NULL}, "-n", 50 * KIB},
	{VMD_FS_SWAP, "swap", 15, {"mkswap", NULL}, "-L", 40 * KIB},
};

int vmd_parse_blank_fs(const char *s, enum vmd_blank_fs *fs,
                       struct vmd_error *err)
{
	for (size_t i = 0; s && i < ELEMENTSOF(filesystems);
	     i++) {
		if (strcmp(filesystems[i].name, s) == 0) {
			*fs = filesystems[i].fs;
			return 0;
		}
	}
	return vmd_error_set(err, VMD_E_INVAL,
	                     "file system must be ext4, xfs, vfat, swap or none",
	                     "unknown file system");
}

const char *vmd_blank_fs_name(enum vmd_blank_fs fs)
{
	for (size_t i = 0; i < ELEMENTSOF(filesystems); i++)
		if (filesystems[i].fs == fs)
			return filesystems[i].name;
	return "?";
}

bool vmd_valid_fs_label(enum vmd_blank_fs fs, const char *label)
{
	size_t n = label ? strlen(label) : 0;
	size_t max = 0;

	for (size_t i = 0; i < ELEMENTSOF(filesystems); i++)
		if (filesystems[i].fs == fs)
			max = filesystems[i].label_max;
	if (n == 0 || n > max || !vmd_valid_file_token(label))
		return false;
	return true;
}

int vmd_blank_fs_check_size(enum vmd_blank_fs fs, uint64_t size,
                            struct vmd_error *err)
{
	char msg[64];

	for (size_t i = 0; i < ELEMENTSOF(filesystems); i++) {
		uint64_t min = filesystems[i].min_size;

		if (filesystems[i].fs != fs || size >= min)
			continue;
		if (min % MIB == 0)
			snprintf(msg, sizeof(msg), "%s needs at least %llu MiB",
			         filesystems[i].name,
			         (unsigned long long)(min / MIB));
		else
			snprintf(msg, sizeof(msg), "%s needs at least %llu KiB",
			         filesystems[i].name,
			         (unsigned long long)(min / KIB));
		return vmd_error_set(err, VMD_E_TOOSMALL, msg,
		                     "%llu bytes asked for, mkfs needs %llu",
		                     (unsigned long long)size,
		                     (unsigned long long)min);
	}
	return 0;
}

void vmd_mkfs_argv(enum vmd_blank_fs fs, const char *label,
                      const char *path, const char **argv)
{
	size_t n = 0;

	for (size_t i = 0; i < ELEMENTSOF(filesystems); i++) {
		if (filesystems[i].fs != fs)
			continue;
		for (const char *const *a = filesystems[i].mkfs; *a; a++)
			argv[n++] = *a;
		if (label && filesystems[i].label_opt) {
			argv[n++] = filesystems[i].label_opt;
			argv[n++] = label;
		}
	}
	argv[n++] = path;
	argv[n] = NULL;
}

static int template_name(enum vmd_blank_fs fs, uint64_t size,
                         const char *label, char *name, size_t namesz,
                         struct vmd_error *err)
{
	int n;

	if (fs == VMD_FS_SWAP)
		n = snprintf(name, namesz, "swap_%llu%s%s",
		             (unsigned long long)size, label ? "_" : "",
		             label ? label : "");
	else
		n = snprintf(name, namesz, "ephemeral_%llu_%s%s%s",
		             (unsigned long long)size, vmd_blank_fs_name(fs),
		             label ? "_" : "", label ? label : "");
	if (n < 0 || (size_t)n >= namesz || !vmd_valid_file_token(name))
		return vmd_error_set(err, VMD_E_INVAL, "bad template name",
		                     "template for %s", vmd_blank_fs_name(fs));
	return 0;
}

int vmd_cache_template(struct vmd_ctx *ctx, enum vmd_blank_fs fs,
                       uint64_t size, const char *label,
                       struct vmd_cache_entry *out, struct vmd_error *err)
{
	char name[VMD_CACHE_ID_MAX], lockname[VMD_LOCK_NAME_MAX];
	char path[64];
	const char *argv[8];
	_cleanup_(vmd_lock_release) struct vmd_lock lock = VMD_LOCK_INIT;
	_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	_cleanup_(closep) int cache_fd = -1;
	struct stat st;
	gid_t gid = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	if (fs == VMD_FS_NONE)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "template: no file system given", "fs none");
	if (label && !vmd_valid_fs_label(fs, label))
		return vmd_error_set(err, VMD_E_INVAL,
		                     "template: bad file system label",
		                     "label refused for %s",
		                     vmd_blank_fs_name(fs));
	if (size == 0 || size % 512)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "template: size must be a positive multiple "
		                     "of 512",
		                     "size %llu", (unsigned long long)size);
	/* Before anything is made: mkfs would refuse it only after the
	 * temporary exists, and without saying why. */
	rc = vmd_blank_fs_check_size(fs, size, err);
	if (rc < 0) {
		vmd_error_prefix(err, "template");
		return rc;
	}
	rc = template_name(fs, size, label, name, sizeof(name), err);
	if (rc == 0)
		rc = vmd_cache_dir_prepare(ctx, &cache_fd, &gid, err);
	vmd_base_lock_name(name, lockname);
	if (rc == 0)
		rc = vmd_ctx_lock_acquire(ctx, &lock, lockname,
		                          VMD_LOCK_EXCLUSIVE,
		                          ctx->cfg.lock_timeout_seconds, err);
	if (rc < 0) {
		vmd_error_prefix(err, "template");
		return rc;
	}
	memcpy(out->id, name, sizeof(out->id));
	if (snprintf(out->path, sizeof(out->path), "%s/%s", ctx->cache_dir,
	             name) >= (int)sizeof(out->path))
		return vmd_error_set(err, VMD_E_INVAL, "template: path too long",
		                     "cache dir too long");
	out->format = VMD_FORMAT_RAW;
	out->virtual_size = size;
	if (vmd_bstat(cache_fd, name, &st) == 0)
		return 0;
	rc = vmd_tmpfile_openat(&t, cache_fd, name, 0600, err);
	if (rc < 0)
		return rc;
	if (vmd_ftruncate(t.fd, size) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "template: size file failed",
		                           "ftruncate");
	/* The child opens our descriptor through /proc (the runner passes
	 * it none): "/proc/self" would be the child's own. */
	snprintf(path, sizeof(path), "/proc/%ld/fd/%d", (long)getpid(), t.fd);
	vmd_mkfs_argv(fs, label, path, argv);
	/* Its argv is ours and a validated label, its only path the
	 * /proc name of our temporary: its reason may be shown. */
	struct vmd_run_opts ro = {.timeout_ms = MKFS_TIMEOUT_MS,
	                          .pass_reason = true};

	rc = vmd_run("template: make file system", argv, &ro, NULL, err);
	if (rc == 0)
		rc = vmd_cache_give_group(t.fd, gid, err);
	if (rc == 0)
		rc = vmd_faultpoint("template.before_publish", err);
	if (rc == 0)
		rc = vmd_tmpfile_publish(&t, false, TEMPLATE_MODE, err);
	if (rc < 0)
		return rc;
	out->fetched = true;
	vmd_log_info("template: made %s", name);
	return 0;
}
