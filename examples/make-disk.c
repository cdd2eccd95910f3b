/*
 * make-disk: make an instance disk from an image with libvmdisk, as a
 * service linking the library would (one context, no vmdisk process).
 *
 *   make-disk CONFIG INSTANCE DISK IMAGE
 *
 * CONFIG: a vmdisk.conf (vmdisk.conf(5)); INSTANCE: the instance's UUID;
 * DISK: the disk's name (e.g. "disk"); IMAGE: the image source, a local
 * file or an http(s):// or glance:// URL. The image is fetched into the
 * cache under instances_path (inspected first: a hostile image is refused)
 * and the disk made on the configured backend. Prints the disk's path,
 * then its backend, format, virtual size and backing file, one "key: value"
 * a line. On failure prints the library's message, which names the failed
 * step; the cause goes to the log the configuration names.
 *
 * Exit status: 0 made, 1 refused or failed, 2 usage.
 *
 * Build against an installed libvmdisk:
 *   cc -o make-disk make-disk.c $(pkg-config --cflags --libs vmdisk)
 */
#include <stdio.h>
#include <string.h>

#include <vmdisk/vmdisk.h>

int main(int argc, char **argv)
{
	struct vmd_config cfg;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts opts;
	struct vmd_disk_info info;
	struct vmd_ctx *ctx;

	if (argc != 5) {
		fprintf(stderr, "usage: make-disk CONFIG INSTANCE DISK IMAGE\n");
		return 2;
	}

	/* The defaults, then the file over them (a missing file is an
	 * error here: the caller named it). */
	vmd_config_defaults(&cfg);
	if (vmd_config_load_file(&cfg, argv[1], &err) < 0) {
		fprintf(stderr, "make-disk: %s\n", err.msg);
		return 1;
	}
	/* The logger is process-wide: set it up as the configuration says
	 * before the first call that can log. */
	vmd_log_setup(cfg.log_target, cfg.log_level, "make-disk");

	ctx = vmd_ctx_new(&cfg, &err);
	if (!ctx) {
		fprintf(stderr, "make-disk: %s\n", err.msg);
		return 1;
	}

	/* Everything zero is "as the configuration says": its backend, the
	 * image's virtual size, no checksum, no progress callback. */
	memset(&opts, 0, sizeof(opts));
	opts.image = argv[4];
	if (vmd_disk_create(ctx, argv[2], argv[3], &opts, &info, &err) < 0) {
		fprintf(stderr, "make-disk: %s\n", err.msg);
		vmd_ctx_free(ctx);
		return 1;
	}
	printf("%s\n", info.path);
	printf("backend: %s\n", info.backend);
	printf("format: %s\n", info.format);
	printf("virtual size: %llu\n", (unsigned long long)info.virtual_size);
	printf("backing file: %s\n", info.backing[0] ? info.backing : "none");
	vmd_ctx_free(ctx);
	return 0;
}
