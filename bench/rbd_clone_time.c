/*
 * bench/rbd.sh's in-process probe: N disks cloned from one location through
 * libvmdisk in a single process, as a long-running service would call it
 * (the cluster connection made once, then reused). Prints one line per
 * clone: "<milliseconds>". Not part of the product.
 *
 *   rbd_clone_time CONFIG MODULE_DIR LOCATION N FIRST_INDEX
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <vmdisk/vmdisk.h>

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	struct vmd_config cfg;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_ctx *ctx;
	int n, first;

	if (argc != 6)
		return 2;
	n = atoi(argv[4]);
	first = atoi(argv[5]);
	vmd_config_defaults(&cfg);
	if (vmd_config_load_file(&cfg, argv[1], &err) < 0)
		return 1;
	vmd_backend_set_module_dir(argv[2]);
	ctx = vmd_ctx_new(&cfg, &err);
	if (!ctx)
		return 1;
	for (int i = 0; i < n; i++) {
		struct vmd_create_opts o = {.location = argv[3]};
		char id[40];
		double t0, t1;

		snprintf(id, sizeof(id), "00000000-0000-4000-8000-%012d",
		         first + i);
		t0 = now_ms();
		if (vmd_disk_create(ctx, id, "disk", &o, NULL, &err) < 0) {
			fprintf(stderr, "clone failed: %s\n", err.msg);
			return 1;
		}
		t1 = now_ms();
		printf("%.3f\n", t1 - t0);
	}
	vmd_ctx_free(ctx);
	return 0;
}
