/*
 * Block devices (see blockdev.h): raw files and qcow2 chains.
 *
 * A raw device answers status from SEEK_DATA/SEEK_HOLE; a qcow2 device from
 * its L2 entries, asking its backing device about unallocated clusters.
 * Backing names are resolved as QEMU does (relative to the directory of the
 * image that names them), and every element must pass the inspector.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockdev.h"
#include "fsutil.h"
#include "parallels.h"
#include "qcow2_image.h"

/*
 * "/proc/self/fd/N" names a descriptor this process holds already, such as
 * the device vmdiskd opened and passed to an unprivileged caller: opening
 * that path again would check the device's permissions again and fail, so
 * a copy of the descriptor is used (when its access mode suffices).
 */
static int open_image(const char *path, unsigned flags)
{
	int held, fl;
	char tail;

	if (sscanf(path, "/proc/self/fd/%d%c", &held, &tail) == 1 && held >= 0 &&
	    (fl = fcntl(held, F_GETFL)) >= 0 &&
	    (!(flags & VMD_BD_WRITE) || (fl & O_ACCMODE) == O_RDWR))
		return fcntl(held, F_DUPFD_CLOEXEC, 0);
	return open(path, ((flags & VMD_BD_WRITE) ? O_RDWR : O_RDONLY) |
	                          O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

static int open_chain(const char *path, enum vmd_format format,
                      unsigned flags, const char *backing,
                      const struct vmd_inspect_limits *lim, int depth,
                      struct vmd_blockdev **out, struct vmd_error *err);

/* QEMU's rule: a relative backing name is relative to its image's dir. */
static int backing_path(const char *image, const char *name, char *out,
                        size_t outsz, struct vmd_error *err)
{
	const char *slash = strrchr(image, '/');
	int n;

	if (name[0] == '/' || !slash)
		n = snprintf(out, outsz, "%s", name);
	else
		n = snprintf(out, outsz, "%.*s/%s", (int)(slash - image), image,
		             name);
	if (n < 0 || (size_t)n >= outsz)
		return vmd_error_set(err, VMD_E_INVAL,
		                     "backing file name too long", "%s", name);
	return 0;
}

static int open_qcow2(struct vmd_blockdev *bd, unsigned flags,
                      const char *backing,
                      const struct vmd_inspect_limits *lim, int depth,
                      struct vmd_error *err)
{
	struct vmd_qcow2_header h;
	int rc = vmd_qcow2_read_header(bd->fd, &h, err);

	if (rc < 0)
		return rc;
	if (h.backing_file[0]) {
		char bpath[PATH_MAX];
		enum vmd_format bfmt;

		if (!(flags & VMD_BD_ALLOW_BACKING))
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "image has a backing file",
			                     "%s backs %s", h.backing_file,
			                     bd->path);
		if (depth + 1 >= VMD_CHAIN_MAX_DEPTH)
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "backing chain too deep",
			                     "more than %d images",
			                     VMD_CHAIN_MAX_DEPTH);
		/* Never probe: the image must say what its backing file is. */
		if (!h.backing_format[0] ||
		    vmd_parse_format(h.backing_format, &bfmt, NULL) < 0 ||
		    bfmt == VMD_FORMAT_PLOOP)
			return vmd_error_set(err, VMD_E_REFUSED,
			                     "backing file format not recorded",
			                     "backing format '%s' of %s",
			                     h.backing_format, bd->path);
		/* The backing image is opened read-only: from the caller's
		 * descriptor when given (and then no further level), else by
		 * the name the image records. */
		const char *bfile = backing;
		unsigned bflags = flags & ~VMD_BD_WRITE;

		if (backing) {
			bflags &= ~VMD_BD_ALLOW_BACKING;
		} else {
			rc = backing_path(bd->path, h.backing_file, bpath,
			                  sizeof(bpath), err);
			bfile = bpath;
		}
		if (rc == 0)
			rc = open_chain(bfile, bfmt, bflags, NULL, lim,
			                depth + 1, &bd->backing, err);
		if (rc < 0)
			return rc;
	}
	rc = vmd_qcow2_open(bd->fd, flags & VMD_BD_WRITE, lim, bd->backing,
	                    &bd->qcow2, err);
	if (rc == 0)
		bd->size = vmd_qcow2_header_of(bd->qcow2)->size;
	return rc;
}

static int open_chain(const char *path, enum vmd_format format,
                      unsigned flags, const char *backing,
                      const struct vmd_inspect_limits *lim, int depth,
                      struct vmd_blockdev **out, struct vmd_error *err)
{
	struct vmd_blockdev *bd = calloc(1, sizeof(*bd));
	struct stat st;
	int rc = 0;

	*out = NULL;
	if (!bd)
		return vmd_error_set(err, VMD_E_NOMEM, "out of memory",
		                     "blockdev");
	bd->format = format;
	snprintf(bd->path, sizeof(bd->path), "%s", path);
	bd->fd = open_image(path, flags);
	if (bd->fd < 0 || fstat(bd->fd, &st) < 0)
		rc = vmd_error_set_errno(err,
		                         errno == ENOENT ? VMD_E_NOTFOUND
		                                         : VMD_E_IO,
		                         errno, "cannot open image", "open %s",
		                         path);
	else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		rc = vmd_error_set(err, VMD_E_INVAL,
		                   "image is not a file or block device", "%s",
		                   path);
	if (rc == 0) {
		if (format == VMD_FORMAT_QCOW2) {
			rc = open_qcow2(bd, flags, backing, lim, depth, err);
		} else if (format == VMD_FORMAT_PLOOP) {
			struct vmd_inspect_limits dflt;

			vmd_inspect_limits_default(&dflt);
			rc = vmd_parallels_open(bd->fd, flags & VMD_BD_WRITE,
			                        lim ? lim : &dflt,
			                        &bd->parallels, err);
			if (rc == 0)
				bd->size = vmd_parallels_size(bd->parallels);
		} else if (format == VMD_FORMAT_RAW) {
			off_t end = lseek(bd->fd, 0, SEEK_END);

			bd->size = end < 0 ? 0 : (uint64_t)end;
		} else {
			rc = vmd_error_set(err, VMD_E_UNSUPPORTED,
			                   "image format not supported here",
			                   "format %s", vmd_format_name(format));
		}
	}
	if (rc < 0) {
		vmd_blockdev_close(bd);
		return rc;
	}
	*out = bd;
	return 0;
}

int vmd_blockdev_open(const char *path, enum vmd_format format,
                      unsigned flags, const struct vmd_inspect_limits *lim,
                      struct vmd_blockdev **out, struct vmd_error *err)
{
	return open_chain(path, format, flags, NULL, lim, 0, out, err);
}

int vmd_blockdev_open_backed(const char *path, enum vmd_format format,
                             unsigned flags, const char *backing,
                             const struct vmd_inspect_limits *lim,
                             struct vmd_blockdev **out,
                             struct vmd_error *err)
{
	return open_chain(path, format, flags, backing, lim, 0, out, err);
}

void vmd_blockdev_close(struct vmd_blockdev *bd)
{
	if (!bd)
		return;
	vmd_qcow2_close(bd->qcow2, NULL);
	vmd_parallels_close(bd->parallels);
	vmd_blockdev_close(bd->backing);
	if (bd->fd >= 0)
		close(bd->fd);
	free(bd);
}

void vmd_blockdev_closep(struct vmd_blockdev **bd)
{
	vmd_blockdev_close(*bd);
	*bd = NULL;
}

int vmd_blockdev_pread(struct vmd_blockdev *bd, void *buf, size_t len,
                       uint64_t off, struct vmd_error *err)
{
	unsigned char *p = buf;

	if (bd->qcow2)
		return vmd_qcow2_pread(bd->qcow2, buf, len, off, err);
	if (bd->parallels)
		return vmd_parallels_pread(bd->parallels, buf, len, off, err);
	if (off >= bd->size) {
		memset(p, 0, len);
		return 0;
	}
	size_t n = bd->size - off < len ? (size_t)(bd->size - off) : len;

	if (vmd_pread_full(bd->fd, p, n, off) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "read image failed", "%s at %llu",
		                           bd->path, (unsigned long long)off);
	memset(p + n, 0, len - n);
	return 0;
}

static int raw_status(struct vmd_blockdev *bd, uint64_t off, uint64_t len,
                      uint64_t *run, bool *zero)
{
	off_t data, hole;

	if (off >= bd->size) {
		*run = len;
		*zero = true;
		return 0;
	}
	if (len > bd->size - off)
		len = bd->size - off;
	data = lseek(bd->fd, (off_t)off, SEEK_DATA);
	if (data < 0 && errno == ENXIO) {
		*run = len;
		*zero = true;
		return 0;
	}
	if (data < 0) { /* no SEEK_DATA: everything may be data */
		*run = len;
		*zero = false;
		return 0;
	}
	if ((uint64_t)data > off) {
		*run = (uint64_t)data - off < len ? (uint64_t)data - off : len;
		*zero = true;
		return 0;
	}
	hole = lseek(bd->fd, (off_t)off, SEEK_HOLE);
	if (hole < 0 || (uint64_t)hole <= off)
		hole = (off_t)(off + len);
	*run = (uint64_t)hole - off < len ? (uint64_t)hole - off : len;
	*zero = false;
	return 0;
}

/* Clusters whose kinds a qcow2 status call asks for at once. */
#define KINDS_RUN 64

int vmd_blockdev_status(struct vmd_blockdev *bd, uint64_t off, uint64_t len,
                        uint64_t *run, bool *zero, struct vmd_error *err)
{
	const struct vmd_qcow2_header *h;
	uint64_t cs, done = 0, kinds_gc = 0;
	enum vmd_qcow2_kind kinds[KINDS_RUN];
	size_t have = 0;
	bool first_zero = false;

	if (bd->parallels)
		return vmd_parallels_status(bd->parallels, off, len, run, zero,
		                            err);
	if (!bd->qcow2)
		return raw_status(bd, off, len, run, zero);
	h = vmd_qcow2_header_of(bd->qcow2);
	cs = 1ull << h->cluster_bits;
	/* Walk clusters while their answer stays the same; their kinds are
	 * asked a run at a time (kinds[i] is guest cluster kinds_gc + i). */
	while (done < len) {
		uint64_t o = off + done;
		uint64_t n = cs - (o & (cs - 1));
		uint64_t gc = o >> h->cluster_bits;
		enum vmd_qcow2_kind kind;
		bool z;
		int rc;

		if (n > len - done)
			n = len - done;
		if (o >= bd->size) {
			z = true;
		} else {
			if (gc < kinds_gc || gc - kinds_gc >= have) {
				/* Clusters up to the end of [off, off+len). */
				uint64_t want = ((off + len - 1) >> h->cluster_bits) -
				                gc + 1;

				kinds_gc = gc;
				rc = vmd_qcow2_cluster_kinds(
					bd->qcow2, o,
					want < KINDS_RUN ? (size_t)want : KINDS_RUN,
					kinds, &have, err);
				if (rc < 0)
					return rc;
			}
			if (gc - kinds_gc < have) {
				kind = kinds[gc - kinds_gc];
			} else {
				/* A bad entry: the single call says why. */
				rc = vmd_qcow2_cluster_kind(bd->qcow2, o, &kind,
				                            err);
				if (rc < 0)
					return rc;
			}
			if (kind == VMD_QCOW2_ZERO) {
				z = true;
			} else if (kind == VMD_QCOW2_UNALLOCATED) {
				uint64_t brun;

				if (!bd->backing) {
					z = true;
				} else {
					rc = vmd_blockdev_status(bd->backing, o, n,
					                         &brun, &z, err);
					if (rc < 0)
						return rc;
					n = brun;
				}
			} else {
				z = false;
			}
		}
		if (done == 0)
			first_zero = z;
		else if (z != first_zero)
			break;
		done += n;
	}
	*run = done;
	*zero = first_zero;
	return 0;
}
