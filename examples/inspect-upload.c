/*
 * inspect-upload: decide whether an uploaded disk image is safe to use,
 * with libvmdisk's inspector, before anything else (qemu-img included)
 * opens it.
 *
 *   inspect-upload FILE...
 *
 * Per FILE prints "FILE: FORMAT, virtual size N bytes: safe" or
 * "...: refused", then one line per failed check ("  CODE: why"). The
 * inspector reads only the headers and tables' positions within fixed
 * bounds (vmd_inspect_limits) and runs no program: a hostile image (a
 * backing file or data file naming a host file, a table sized to exhaust
 * memory, a VMDK extent pointing at /etc/passwd) is reported, never
 * followed. The file is opened with O_NOFOLLOW: an upload is a file, not
 * a symbolic link to one.
 *
 * Exit status: 0 every file safe, 1 one or more refused, 2 a file could
 * not be read (or usage).
 *
 * Build against an installed libvmdisk:
 *   cc -o inspect-upload inspect-upload.c $(pkg-config --cflags --libs vmdisk)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <vmdisk/vmdisk.h>

/* 0 safe, 1 refused, 2 not inspected. */
static int inspect_one(const char *path,
                       const struct vmd_inspect_limits *limits)
{
	struct vmd_inspect_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	int fd, r;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		fprintf(stderr, "inspect-upload: %s: %s\n", path,
		        errno == ELOOP ? "a symbolic link, not a file" :
		        strerror(errno));
		return 2;
	}
	/* Flags 0: a backing file is refused (an upload stands alone). */
	r = vmd_inspect_fd(fd, limits, 0, &res, &err);
	close(fd);
	if (r < 0) {
		fprintf(stderr, "inspect-upload: %s: %s\n", path, err.msg);
		return 2;
	}
	printf("%s: %s, virtual size %llu bytes: %s\n", path,
	       vmd_image_format_name(res.format),
	       (unsigned long long)res.virtual_size,
	       res.safe ? "safe" : "refused");
	for (unsigned i = 0; i < res.n_reasons && i < VMD_INSPECT_MAX_REASONS; i++)
		printf("  %s: %s\n", res.reasons[i].code, res.reasons[i].text);
	return res.safe ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct vmd_inspect_limits limits;
	int worst = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: inspect-upload FILE...\n");
		return 2;
	}
	/* Errors the inspector logs stay out of the output: its result
	 * says all a caller needs. */
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "inspect-upload");
	/* The defaults: 1 TiB virtual size at most, 32 MiB per table, 4 MiB
	 * read in all. A service would lower max_virtual_size to its quota. */
	vmd_inspect_limits_default(&limits);
	for (int i = 1; i < argc; i++) {
		int r = inspect_one(argv[i], &limits);

		if (r > worst)
			worst = r;
	}
	return worst;
}
