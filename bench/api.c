/*
 * bench/api.sh's in-process probe: what the library's public calls cost a
 * service that links libvmdisk (one context, no process per call), against
 * one `qemu-img create -f qcow2 -b` process measured in the same run.
 *
 *   api CONFIG BASE N N_ANCHOR QEMU_IMG ANCHOR_DIR
 *
 * CONFIG: a vmdisk.conf whose instances_path is a scratch folder; BASE: a
 * raw image file (fetched into the cache first, so that creates find it
 * cached). Times N runs of each call, each run on its own instance:
 *   ctx      vmd_ctx_new + vmd_ctx_free (what a caller making a context per
 *            call pays on top)
 *   overlay  vmd_disk_create, qcow2 backend, on the cached base
 *   flat     vmd_disk_create, flat backend (a copy of the base; a reflink
 *            where the file system has one)
 *   inspect  open + vmd_inspect_fd + close of an overlay
 *   info     vmd_disk_info of an overlay
 *   xml      vmd_disk_libvirt_xml of an overlay
 *   remove   vmd_disk_remove of an overlay, then of a flat disk
 * and N_ANCHOR runs of QEMU_IMG create -f qcow2 -b BASE -F raw into
 * ANCHOR_DIR. Prints per row: median and p99 in microseconds, the CPU time
 * (user + system) the calls burnt, per call, and the ratio of the median
 * to the anchor's median. Not part of the product.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <vmdisk/vmdisk.h>

extern char **environ;

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static void uuid_n(char *out, size_t sz, int set, int i)
{
	snprintf(out, sz, "00000000-0000-4000-8%03d-%012d", set, i);
}

static double anchor_us;

/* This process's user + system CPU time: what a call burns itself, less
 * sensitive than the wall clock to the waits other load causes. */
static double cpu_us(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
}

static double phase_cpu;

/* One row; the phase's CPU time (since phase_cpu) averaged per call. */
static void row(const char *name, double *t, int n)
{
	double cpu = (cpu_us() - phase_cpu) / n;

	qsort(t, (size_t)n, sizeof(*t), cmp);
	double med = t[n / 2], p99 = t[(n * 99) / 100];

	printf("%-8s median %9.1f us  p99 %9.1f us  cpu %7.1f us/call  "
	       "ratio to qemu-img create -b %.4f\n", name, med, p99, cpu,
	       med / anchor_us);
	phase_cpu = cpu_us();
}

static int fail(const char *what, const struct vmd_error *err)
{
	fprintf(stderr, "api: %s failed: %s\n", what, err->msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct vmd_config cfg;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry entry;
	struct vmd_ctx *ctx;
	char id[64];
	int n, na;

	if (argc != 7)
		return 2;
	const char *conf = argv[1], *base = argv[2], *qemu_img = argv[5];
	n = atoi(argv[3]);
	na = atoi(argv[4]);
	if (n < 1 || na < 1)
		return 2;
	double *t = calloc((size_t)(n > na ? n : na), sizeof(*t));
	if (!t)
		return 1;

	/* The anchor: one process per overlay, as a caller without the
	 * library pays. */
	for (int i = 0; i < na; i++) {
		char dst[4096], size[32] = "1G";
		pid_t pid;
		int st;

		snprintf(dst, sizeof(dst), "%s/%d.qcow2", argv[6], i);
		char *av[] = {(char *)qemu_img, "create", "-q", "-f", "qcow2",
		              "-b", (char *)base, "-F", "raw", dst, size, NULL};
		double t0 = now_us();
		if (posix_spawn(&pid, qemu_img, NULL, NULL, av, environ) != 0 ||
		    waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) ||
		    WEXITSTATUS(st) != 0) {
			fprintf(stderr, "api: qemu-img create failed\n");
			return 1;
		}
		t[i] = now_us() - t0;
	}
	qsort(t, (size_t)na, sizeof(*t), cmp);
	anchor_us = t[na / 2];
	printf("anchor   qemu-img create -f qcow2 -b (a process), median of %d: "
	       "%.1f us\n", na, anchor_us);

	vmd_config_defaults(&cfg);
	if (vmd_config_load_file(&cfg, conf, &err) < 0)
		return fail("config", &err);

	phase_cpu = cpu_us();
	for (int i = 0; i < n; i++) {
		double t0 = now_us();
		ctx = vmd_ctx_new(&cfg, &err);
		if (!ctx)
			return fail("context", &err);
		vmd_ctx_free(ctx);
		t[i] = now_us() - t0;
	}
	row("ctx", t, n);

	ctx = vmd_ctx_new(&cfg, &err);
	if (!ctx)
		return fail("context", &err);
	if (vmd_cache_fetch(ctx, base, &entry, &err) < 0)
		return fail("fetch", &err);
	phase_cpu = cpu_us();

	for (int i = 0; i < n; i++) {
		struct vmd_create_opts o = {.image = base,
		                            .backend = VMD_BACKEND_QCOW2};

		uuid_n(id, sizeof(id), 1, i);
		double t0 = now_us();
		if (vmd_disk_create(ctx, id, "disk", &o, NULL, &err) < 0)
			return fail("overlay create", &err);
		t[i] = now_us() - t0;
	}
	row("overlay", t, n);

	for (int i = 0; i < n; i++) {
		struct vmd_create_opts o = {.image = base,
		                            .backend = VMD_BACKEND_FLAT};

		uuid_n(id, sizeof(id), 2, i);
		double t0 = now_us();
		if (vmd_disk_create(ctx, id, "disk", &o, NULL, &err) < 0)
			return fail("flat create", &err);
		t[i] = now_us() - t0;
	}
	row("flat", t, n);

	/* The overlays' paths first, so that the inspect phase times (and
	 * burns CPU for) the inspection alone. */
	char (*paths)[4096] = calloc((size_t)n, sizeof(*paths));

	if (!paths)
		return 1;
	for (int i = 0; i < n; i++) {
		struct vmd_disk_info info;

		uuid_n(id, sizeof(id), 1, i);
		if (vmd_disk_info(ctx, id, "disk", &info, &err) < 0)
			return fail("info", &err);
		snprintf(paths[i], sizeof(paths[i]), "%s", info.path);
	}
	phase_cpu = cpu_us();
	for (int i = 0; i < n; i++) {
		struct vmd_inspect_result r;

		double t0 = now_us();
		int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (fd < 0 ||
		    vmd_inspect_fd(fd, NULL, VMD_INSPECT_ALLOW_BACKING, &r,
		                   &err) < 0)
			return fail("inspect", &err);
		close(fd);
		t[i] = now_us() - t0;
		if (!r.safe)
			return fail("inspect verdict", &err);
	}
	free(paths);
	row("inspect", t, n);

	for (int i = 0; i < n; i++) {
		struct vmd_disk_info info;

		uuid_n(id, sizeof(id), 1, i);
		double t0 = now_us();
		if (vmd_disk_info(ctx, id, "disk", &info, &err) < 0)
			return fail("info", &err);
		t[i] = now_us() - t0;
	}
	row("info", t, n);

	for (int i = 0; i < n; i++) {
		struct vmd_xml_opts xo = {0};
		char *xml = NULL;

		uuid_n(id, sizeof(id), 1, i);
		double t0 = now_us();
		if (vmd_disk_libvirt_xml(ctx, id, "disk", &xo, &xml, &err) < 0)
			return fail("libvirt-xml", &err);
		t[i] = now_us() - t0;
		free(xml);
	}
	row("xml", t, n);

	for (int set = 1; set <= 2; set++) {
		for (int i = 0; i < n; i++) {
			uuid_n(id, sizeof(id), set, i);
			double t0 = now_us();
			if (vmd_disk_remove(ctx, id, "disk", &err) < 0)
				return fail("remove", &err);
			t[i] = now_us() - t0;
		}
		row(set == 1 ? "rm-ovl" : "rm-flat", t, n);
	}
	vmd_ctx_free(ctx);
	free(t);
	return 0;
}
