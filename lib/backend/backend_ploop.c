/*
 * The ploop backend: a disk is a directory holding root.hds and
 * DiskDescriptor.xml, both written here (no ploop tool, so no format string
 * ever reaches an argv: the seed's CWE-78).
 *
 * root.hds is either plain raw (a raw base: reflink or sparse copy, as the
 * flat backend does; descriptor type "Plain") or a Parallels expanded image
 * (a qcow2 base, flattened through the native reader, and blank disks;
 * type "Compressed"). The variant is an enum chosen from the inspected
 * format. Later calls read it back from the descriptor, which only we write
 * (the guest writes root.hds, never the descriptor).
 *
 * The directory is built under a temporary name in the instance directory
 * and renamed into place once both files are synced, so a disk either
 * exists whole or not at all. Every file is reached by descriptor beneath
 * the instance directory (lib/beneath.c); the paths are only printed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "convert.h"
#include "faultpoint.h"
#include "filedisk.h"
#include "mover.h"
#include "parallels.h"
#include "ploop_descriptor.h"

#define HDS_NAME "root.hds"
#define DESCRIPTOR_NAME "DiskDescriptor.xml"
#define DESCRIPTOR_MAX 65536
#define SECTOR 512u
#define TOP_GUID "{5fbaabe3-6958-40ff-92a7-860e329aab41}"
#define ROOT_PARENT "{00000000-0000-0000-0000-000000000000}"

static int join(char *out, size_t outsz, const char *dir, const char *name,
                struct vmd_error *err)
{
	int n = snprintf(out, outsz, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= outsz)
		return vmd_error_set(err, VMD_E_INVAL, "ploop: path too long",
		                     "%s/%s", dir, name);
	return 0;
}

/* CHS whose product is the size in sectors, as the descriptor wants. */
static void geometry(uint64_t sectors, uint64_t *cyl, unsigned *heads,
                     unsigned *spt)
{
	static const unsigned hs[] = {16, 1};
	static const unsigned ss[] = {63, 32, 16, 8, 4, 2, 1};

	for (size_t h = 0; h < 2; h++)
		for (size_t s = 0; s < 7; s++)
			if (sectors % ((uint64_t)hs[h] * ss[s]) == 0) {
				*heads = hs[h];
				*spt = ss[s];
				*cyl = sectors / ((uint64_t)hs[h] * ss[s]);
				return;
			}
}

static int write_descriptor(int dirfd, uint64_t size,
                            enum vmd_ploop_variant v, bool replace,
                            struct vmd_error *err)
{
	char xml[2048];
	uint64_t sectors = size / SECTOR, cyl = sectors;
	unsigned heads = 1, spt = 1;
	int n;

	geometry(sectors, &cyl, &heads, &spt);
	n = snprintf(xml, sizeof(xml),
	             "<?xml version=\"1.0\"?>\n"
	             "<Parallels_disk_image Version=\"1.0\">\n"
	             "  <Disk_Parameters>\n"
	             "    <Disk_size>%llu</Disk_size>\n"
	             "    <Cylinders>%llu</Cylinders>\n"
	             "    <Heads>%u</Heads>\n"
	             "    <Sectors>%u</Sectors>\n"
	             "    <Padding>0</Padding>\n"
	             "  </Disk_Parameters>\n"
	             "  <StorageData>\n"
	             "    <Storage>\n"
	             "      <Start>0</Start>\n"
	             "      <End>%llu</End>\n"
	             "      <Blocksize>%u</Blocksize>\n"
	             "      <Image>\n"
	             "        <GUID>" TOP_GUID "</GUID>\n"
	             "        <Type>%s</Type>\n"
	             "        <File>" HDS_NAME "</File>\n"
	             "      </Image>\n"
	             "    </Storage>\n"
	             "  </StorageData>\n"
	             "  <Snapshots>\n"
	             "    <TopGUID>" TOP_GUID "</TopGUID>\n"
	             "    <Shot>\n"
	             "      <GUID>" TOP_GUID "</GUID>\n"
	             "      <ParentGUID>" ROOT_PARENT "</ParentGUID>\n"
	             "    </Shot>\n"
	             "  </Snapshots>\n"
	             "</Parallels_disk_image>\n",
	             (unsigned long long)sectors, (unsigned long long)cyl,
	             heads, spt, (unsigned long long)sectors,
	             VMD_PARALLELS_CLUSTER / SECTOR,
	             v == VMD_PLOOP_RAW ? "Plain" : "Compressed");
	if (n < 0 || (size_t)n >= sizeof(xml))
		return vmd_error_set(err, VMD_E_INVAL, "ploop: descriptor",
		                     "too long");
	/* What a writer killed before its rename left (the instance lock
	 * is ours: no other writer's temporary is live). */
	vmd_tmpfile_sweep(dirfd, DESCRIPTOR_NAME);
	return vmd_write_file_atomicat(dirfd, DESCRIPTOR_NAME, xml, (size_t)n,
	                               0644, replace, err);
}

/* The variant, from the descriptor we wrote. */
static int read_variant(const struct vmd_disk_ref *disk,
                        enum vmd_ploop_variant *v, struct vmd_error *err)
{
	char path[PATH_MAX], buf[DESCRIPTOR_MAX];
	_cleanup_(closep) int fd = -1;
	ssize_t n;
	/* <disk>/DiskDescriptor.xml beneath the instance directory. */
	int rc = join(path, sizeof(path), disk->disk, DESCRIPTOR_NAME, err);

	if (rc < 0)
		return rc;
	fd = vmd_bopen(disk->instance_fd, path, O_RDONLY | O_NONBLOCK, 0);
	if (fd < 0)
		return vmd_beneath_error(err,
		                         errno == ENOENT ? VMD_E_NOTFOUND
		                                         : VMD_E_IO,
		                         errno, "ploop: descriptor unreadable",
		                         "open %s", path);
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: descriptor unreadable",
		                           "read %s", path);
	return vmd_ploop_descriptor_variant(buf, (size_t)n, v, err);
}

/* A disk directory being built under a temporary name in the instance
 * directory (both by descriptor). */
struct ploop_build {
	int instance_fd;  /* borrowed from the disk ref */
	int fd;           /* the directory being built */
	char name[VMD_NAME_MAX + 16]; /* .<disk>.XXXXXX */
	bool armed;
};

static void ploop_build_discard(struct ploop_build *b)
{
	if (b->armed) {
		b->armed = false;
		if (b->fd >= 0) {
			vmd_bunlink(b->fd, HDS_NAME, 0);
			vmd_bunlink(b->fd, DESCRIPTOR_NAME, 0);
		}
		if (vmd_bunlink(b->instance_fd, b->name, AT_REMOVEDIR) < 0 &&
		    errno != ENOENT)
			vmd_log_warning("ploop: could not remove %s: %s",
			                b->name, strerror(errno));
	}
	closep(&b->fd);
}

/*
 * Temporaries `.<disk>.XXXXXX` of this disk left by a process that died
 * while building it. Only the holder of the instance lock builds, and the
 * caller holds it: any such directory now is stale.
 */
static void sweep_stale_builds(const struct vmd_disk_ref *disk)
{
	char prefix[VMD_NAME_MAX + 4];
	_cleanup_(closedirp) DIR *d = vmd_bopendir(disk->instance_fd, ".");
	struct dirent *e;
	size_t plen;

	if (!d)
		return;
	plen = (size_t)snprintf(prefix, sizeof(prefix), ".%s.", disk->disk);
	while ((e = readdir(d))) {
		struct ploop_build stale = {disk->instance_fd, -1, "", true};

		if (strncmp(e->d_name, prefix, plen) != 0 ||
		    strlen(e->d_name) != plen + 6 ||
		    strlen(e->d_name) >= sizeof(stale.name))
			continue;
		memcpy(stale.name, e->d_name, strlen(e->d_name) + 1);
		/* Beneath: a link planted under such a name is not entered
		 * (and unlinkat of the directory then fails). */
		stale.fd = vmd_bopen(disk->instance_fd, stale.name,
		                     O_RDONLY | O_DIRECTORY, 0);
		vmd_log_info("ploop: removing %s, left by an interrupted create",
		             e->d_name);
		ploop_build_discard(&stale);
	}
}

static int build_begin(const struct vmd_disk_ref *disk, struct ploop_build *b,
                       int *hds_fd, struct vmd_error *err)
{
	b->instance_fd = disk->instance_fd;
	b->fd = -1;
	sweep_stale_builds(disk);
	for (int attempt = 0;; attempt++) {
		unsigned long r = (unsigned long)random() ^
		                  ((unsigned long)getpid() << 12) ^
		                  (unsigned long)attempt;

		snprintf(b->name, sizeof(b->name), ".%s.%06lx", disk->disk,
		         r & 0xffffff);
		/* qemu must reach root.hds, as with the instance directory. */
		if (vmd_bmkdir(disk->instance_fd, b->name, 0755) == 0)
			break;
		if (errno != EEXIST || attempt > 100)
			return vmd_error_set_errno(
				err, VMD_E_IO, errno,
				"ploop: make disk directory failed", "mkdir %s",
				b->name);
	}
	b->armed = true;
	b->fd = vmd_bopen(disk->instance_fd, b->name, O_RDONLY | O_DIRECTORY,
	                  0);
	if (b->fd < 0 || fchmod(b->fd, 0755) < 0)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "ploop: make disk directory failed",
		                         "open %s", b->name);
	*hds_fd = vmd_bopen(b->fd, HDS_NAME, O_RDWR | O_CREAT | O_EXCL,
	                    VMD_DISK_MODE);
	if (*hds_fd < 0)
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "ploop: make image failed", "open %s/%s",
		                         b->name, HDS_NAME);
	return 0;
}

/* Sync root.hds, write the descriptor, and give the directory its name. */
static int build_commit(const struct vmd_disk_ref *disk, struct ploop_build *b,
                        int hds_fd, uint64_t size, enum vmd_ploop_variant v,
                        struct vmd_error *err)
{
	int rc;

	if (vmd_fsync(hds_fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: write image failed", "fsync");
	rc = write_descriptor(b->fd, size, v, false, err);
	if (rc == 0)
		rc = vmd_faultpoint("ploop.before_publish", err);
	if (rc == 0 && vmd_fsync(b->fd) < 0)
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "sync directory failed", "fsync %s",
		                         b->name);
	if (rc < 0)
		return rc;
	/* Never over anything: the caller checked under the instance lock
	 * that there is nothing, and a link planted since stays untouched. */
	if (vmd_brename(disk->instance_fd, b->name, disk->instance_fd,
	                disk->disk, RENAME_NOREPLACE) < 0)
		return vmd_error_set_errno(err,
		                           errno == ENOTEMPTY || errno == EEXIST
		                                   ? VMD_E_EXISTS
		                                   : VMD_E_IO,
		                           errno, "ploop: publish disk failed",
		                           "rename to %s", disk->path);
	if (vmd_fsync(disk->instance_fd) < 0) {
		int e = errno;

		/* Not published after all: back to the temporary name, which
		 * the clean-up (still armed) removes. */
		if (vmd_brename(disk->instance_fd, disk->disk,
		                disk->instance_fd, b->name,
		                RENAME_NOREPLACE) < 0)
			b->armed = false;
		return vmd_error_set_errno(err, VMD_E_IO, e,
		                           "sync directory failed", "fsync %s",
		                           disk->instance_dir);
	}
	b->armed = false;
	return 0;
}

static int fill_expanded(int fd, const char *base_path,
                         enum vmd_format base_format, uint64_t size,
                         struct vmd_error *err)
{
	struct vmd_inspect_limits lim;
	struct vmd_parallels *p = NULL;
	/* The base as the mover's workers open it, each its own chain. */
	struct vmd_move_bd_src bs = {.path = base_path, .format = base_format};
	struct vmd_move_src src;
	int rc;

	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX; /* our own image */
	rc = vmd_parallels_create(fd, size, VMD_PARALLELS_CLUSTER, err);
	if (rc == 0 && base_path)
		rc = vmd_move_src_blockdev(&bs, &src, err);
	if (rc == 0 && base_path)
		rc = vmd_parallels_open(fd, true, &lim, &p, err);
	if (rc == 0 && p)
		rc = vmd_parallels_fill(p, &src, err);
	vmd_parallels_close(p);
	return rc;
}

static int copy_raw(int dst, int base_fd, struct vmd_error *err)
{
	return vmd_move_file(base_fd, dst, VMD_MOVE_REFLINK,
	                     "ploop: copy base image", err);
}

static int ploop_create(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        const struct vmd_image *base, uint64_t size,
                        struct vmd_error *err)
{
	_cleanup_(ploop_build_discard) struct ploop_build b = {-1, -1, "", false};
	char base_src[32] = "";
	_cleanup_(closep) int fd = -1;
	enum vmd_ploop_variant v =
		base && base->format == VMD_FORMAT_RAW ? VMD_PLOOP_RAW
		                                       : VMD_PLOOP_EXPANDED;
	int rc;

	if (base && base->format != VMD_FORMAT_RAW &&
	    base->format != VMD_FORMAT_QCOW2)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "ploop: base image format not supported",
		                     "base %s is %s", base->cache_id,
		                     vmd_format_name(base->format));
	rc = build_begin(disk, &b, &fd, err);
	if (rc < 0)
		return rc;
	if (v == VMD_PLOOP_RAW) {
		rc = copy_raw(fd, base->fd, err);
		if (rc == 0 && vmd_ftruncate(fd, size) < 0)
			rc = vmd_error_set_errno(err, VMD_E_IO, errno,
			                         "ploop: grow disk failed",
			                         "ftruncate");
		if (rc == 0)
			rc = vmd_filedisk_preallocate(ctx, fd, size, err);
	} else {
		if (base) /* the converter dups the descriptor so named */
			vmd_fd_path(base->fd, base_src);
		rc = fill_expanded(fd, base ? base_src : NULL,
		                   base ? base->format : VMD_FORMAT_RAW, size,
		                   err);
	}
	if (rc < 0) {
		vmd_error_prefix(err, "ploop: copy base image");
		return rc;
	}
	return build_commit(disk, &b, fd, size, v, err);
}

static int ploop_create_from_image(struct vmd_ctx *ctx,
                                   const struct vmd_disk_ref *disk,
                                   const struct vmd_image *base, uint64_t size,
                                   struct vmd_error *err)
{
	return ploop_create(ctx, disk, base, size, err);
}

static int ploop_create_blank(struct vmd_ctx *ctx,
                              const struct vmd_disk_ref *disk, uint64_t size,
                              struct vmd_error *err)
{
	return ploop_create(ctx, disk, NULL, size, err);
}

/* root.hds beneath the instance directory; path: its printed name. */
static int open_hds(const struct vmd_disk_ref *disk, int flags, int *fd,
                    char *path, struct vmd_error *err)
{
	char rel[PATH_MAX];
	int rc = join(path, PATH_MAX, disk->path, HDS_NAME, err);

	if (rc == 0)
		rc = join(rel, sizeof(rel), disk->disk, HDS_NAME, err);
	if (rc < 0)
		return rc;
	*fd = vmd_bopen(disk->instance_fd, rel, flags | O_NONBLOCK, 0);
	if (*fd < 0)
		return vmd_beneath_error(err,
		                         errno == ENOENT ? VMD_E_NOTFOUND
		                                         : VMD_E_IO,
		                         errno, "ploop: open disk failed",
		                         "open %s", path);
	return 0;
}

/* The disk's directory beneath the instance directory. */
static int open_disk_dir(const struct vmd_disk_ref *disk, int *fd,
                         struct vmd_error *err)
{
	*fd = vmd_bopen(disk->instance_fd, disk->disk, O_RDONLY | O_DIRECTORY,
	                0);
	if (*fd < 0)
		return vmd_beneath_error(err,
		                         errno == ENOENT ? VMD_E_NOTFOUND
		                                         : VMD_E_IO,
		                         errno, "ploop: open disk failed",
		                         "open %s", disk->path);
	return 0;
}

/* Virtual size of the disk: the header's, or the raw file's. */
static int disk_size(int fd, enum vmd_ploop_variant v, uint64_t *size,
                     struct vmd_error *err)
{
	struct stat st;
	struct vmd_parallels *p = NULL;
	struct vmd_inspect_limits lim;
	int rc;

	if (v == VMD_PLOOP_RAW) {
		if (fstat(fd, &st) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: open disk failed",
			                           "fstat");
		*size = (uint64_t)st.st_size;
		return 0;
	}
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = UINT64_MAX;
	rc = vmd_parallels_open(fd, false, &lim, &p, err);
	if (rc == 0)
		*size = vmd_parallels_size(p);
	vmd_parallels_close(p);
	return rc;
}

static int ploop_resize(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        uint64_t new_size, struct vmd_error *err)
{
	char path[PATH_MAX];
	_cleanup_(closep) int fd = -1;
	enum vmd_ploop_variant v;
	uint64_t size;
	int rc = read_variant(disk, &v, err);

	(void)ctx;
	if (rc == 0)
		rc = open_hds(disk, O_RDWR, &fd, path, err);
	if (rc == 0)
		rc = disk_size(fd, v, &size, err);
	if (rc < 0)
		return rc;
	if (new_size < size)
		return vmd_error_set(err, VMD_E_TOOSMALL,
		                     "ploop: disks only grow",
		                     "%llu < %llu",
		                     (unsigned long long)new_size,
		                     (unsigned long long)size);
	if (v == VMD_PLOOP_RAW) {
		if (vmd_ftruncate(fd, new_size) < 0 || vmd_fsync(fd) < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: resize failed",
			                           "ftruncate");
	} else {
		struct vmd_inspect_limits lim;
		struct vmd_parallels *p = NULL;

		vmd_inspect_limits_default(&lim);
		lim.max_virtual_size = UINT64_MAX;
		rc = vmd_parallels_open(fd, true, &lim, &p, err);
		if (rc == 0)
			rc = vmd_parallels_resize(p, new_size, err);
		vmd_parallels_close(p);
		if (rc < 0)
			return rc;
	}
	/* The image first: a descriptor never claims more than it holds. */
	_cleanup_(closep) int dfd = -1;

	rc = vmd_faultpoint("ploop.resize_before_descriptor", err);
	if (rc == 0)
		rc = open_disk_dir(disk, &dfd, err);
	return rc < 0 ? rc : write_descriptor(dfd, new_size, v, true, err);
}

static int ploop_exists(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        bool *exists, struct vmd_error *err)
{
	return vmd_filedisk_exists(ctx, disk, exists, err);
}

static int ploop_info(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                      struct vmd_disk_info *out, struct vmd_error *err)
{
	char path[PATH_MAX];
	_cleanup_(closep) int fd = -1;
	enum vmd_ploop_variant v;
	struct stat st;
	int rc = read_variant(disk, &v, err);

	(void)ctx;
	if (rc == 0)
		rc = open_hds(disk, O_RDONLY, &fd, path, err);
	if (rc == 0)
		rc = disk_size(fd, v, &out->virtual_size, err);
	if (rc < 0)
		return rc;
	snprintf(out->format, sizeof(out->format), "ploop");
	snprintf(out->path, sizeof(out->path), "%s", path);
	out->backing[0] = '\0';
	out->actual_size = fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512
	                                       : 0;
	return 0;
}

static int ploop_snapshot_extract(struct vmd_ctx *ctx,
                                  const struct vmd_disk_ref *disk,
                                  const char *dst_path,
                                  enum vmd_format dst_format,
                                  struct vmd_error *err)
{
	char path[PATH_MAX];
	_cleanup_(closep) int fd = -1;
	enum vmd_ploop_variant v;
	int rc = read_variant(disk, &v, err);
	struct vmd_convert_opts o = {
		.src_format = v == VMD_PLOOP_RAW ? VMD_FORMAT_RAW
		                                 : VMD_FORMAT_PLOOP,
		.dst_format = dst_format,
	};

	(void)ctx;
	if (rc == 0)
		rc = open_hds(disk, O_RDONLY, &fd, path, err);
	if (rc < 0)
		return rc;
	return vmd_disk_extract_fd(fd, dst_path, &o, err);
}

static int ploop_remove(struct vmd_ctx *ctx, const struct vmd_disk_ref *disk,
                        struct vmd_error *err)
{
	static const char *const names[] = {HDS_NAME, DESCRIPTOR_NAME,
	                                    DESCRIPTOR_NAME ".lck"};
	_cleanup_(closep) int dfd = vmd_bopen(disk->instance_fd, disk->disk,
	                                  O_RDONLY | O_DIRECTORY, 0);

	(void)ctx;
	if (dfd < 0 && errno == ENOENT)
		return 0;
	if (dfd < 0) /* a link in its place is refused, not followed */
		return vmd_beneath_error(err, VMD_E_IO, errno,
		                         "ploop: remove disk failed", "open %s",
		                         disk->path);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (vmd_bunlink(dfd, names[i], 0) < 0 && errno != ENOENT)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "ploop: remove disk failed",
			                           "unlink %s/%s", disk->path,
			                           names[i]);
	if (vmd_bunlink(disk->instance_fd, disk->disk, AT_REMOVEDIR) < 0 &&
	    errno != ENOENT)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "ploop: remove disk failed",
		                           "rmdir %s", disk->path);
	if (vmd_fsync(disk->instance_fd) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "sync directory failed", "fsync %s",
		                           disk->instance_dir);
	return 0;
}

static int ploop_xml_source(struct vmd_ctx *ctx,
                            const struct vmd_disk_ref *disk,
                            struct vmd_xml_source *out, struct vmd_error *err)
{
	enum vmd_ploop_variant v;
	int rc = read_variant(disk, &v, err);

	if (rc < 0)
		return rc;
	vmd_filedisk_xml_source(disk, v == VMD_PLOOP_RAW ? "raw" : "ploop",
	                        v == VMD_PLOOP_RAW &&
	                                vmd_ctx_config(ctx)->preallocate_images ==
	                                        VMD_PREALLOCATE_SPACE,
	                        out);
	return join(out->path, sizeof(out->path), disk->path, HDS_NAME, err);
}

const struct vmd_backend_ops vmd_backend_ploop = {
	.name = "ploop",
	.create_from_image = ploop_create_from_image,
	.create_blank = ploop_create_blank,
	.resize = ploop_resize,
	.exists = ploop_exists,
	.info = ploop_info,
	.snapshot_extract = ploop_snapshot_extract,
	.remove = ploop_remove,
	.xml_source = ploop_xml_source,
};
