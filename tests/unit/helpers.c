/*
 * Shared test helpers (see helpers.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include <vmdisk/log.h>

#include "cleanup.h"
#include "helpers.h"
#include "runner.h"

char *th_mkdtemp(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (!base || !*base)
		base = "/var/tmp";
	if (asprintf(&path, "%s/vmdisk-test-%s-XXXXXX", base, tag) < 0)
		fail_msg("asprintf");
	if (!mkdtemp(path))
		fail_msg("mkdtemp %s: %s", path, strerror(errno));
	return path;
}

static int rm_entry(const char *path, const struct stat *st, int type,
                    struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

void th_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *th_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		fail_msg("asprintf");
	return p;
}

char *th_disk_path(const char *instances, const char *inst, const char *disk)
{
	char *p;

	if (asprintf(&p, "%s/%s/%s", instances, inst, disk) < 0)
		fail_msg("asprintf");
	return p;
}

void th_create_ok(struct vmd_ctx *ctx, const char *inst, const char *disk,
                  const struct vmd_create_opts *o, struct vmd_disk_info *info)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (vmd_disk_create(ctx, inst, disk, o, info, &err) != 0)
		fail_msg("create %s: %s (%s)", disk, err.msg, err.detail);
}

void th_write_pattern(const char *path, uint64_t len, uint32_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	unsigned char buf[65536];
	uint32_t x = seed ? seed : 1;

	assert_true(fd >= 0);
	for (uint64_t off = 0; off < len;) {
		size_t n = len - off < sizeof(buf) ? (size_t)(len - off)
		                                   : sizeof(buf);

		for (size_t i = 0; i < n; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			buf[i] = (unsigned char)x;
		}
		assert_int_equal(write(fd, buf, n), (ssize_t)n);
		off += n;
	}
	assert_int_equal(close(fd), 0);
}

void th_pwrite_at(const char *path, const void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

void th_write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(close(fd), 0);
}

char *th_read_text(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

int th_files_equal(const char *a, const char *b)
{
	FILE *fa = fopen(a, "re"), *fb = fopen(b, "re");
	int equal = fa && fb;

	while (equal) {
		int ca = fgetc(fa), cb = fgetc(fb);

		if (ca != cb)
			equal = 0;
		if (ca == EOF || cb == EOF)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return equal;
}

uint64_t th_file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

int th_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

int th_run(const char *const *argv, const char *const *env, char **out,
           char **errp)
{
	struct vmd_run_opts opts = {.timeout_ms = 120000,
	                            .capture_max = 1 << 20,
	                            .extra_env = env};
	struct vmd_run_result res = {0};
	struct vmd_error err = VMD_ERROR_INIT;
	int status;

	vmd_run("test", argv, &opts, &res, &err);
	if (!res.out) {
		fail_msg("could not run %s: %s (%s)", argv[0], err.msg,
		         err.detail);
	}
	status = res.exit_status;
	if (out)
		*out = strdup(res.out);
	if (errp)
		*errp = strdup(res.err);
	vmd_run_result_free(&res);
	return status;
}

const char *th_cli(void)
{
	const char *cli = getenv("VMDISK_CLI");

	if (!cli)
		fail_msg("VMDISK_CLI is not set (run the tests with meson test)");
	return cli;
}

void th_run_ok(const char *const *argv, bool no_failed)
{
	char *out = NULL, *errs = NULL;
	int status = th_run(argv, NULL, &out, &errs);

	if (status != 0 ||
	    (no_failed && (strstr(out, "failed") || strstr(errs, "failed"))))
		fail_msg("%s %s: status %d\n%s%s", argv[0],
		         argv[1] ? argv[1] : "", status, out, errs);
	free(out);
	free(errs);
}

int th_cli_run(const char *config, const char *const *env, char **out,
               char **errs, const char *const *args)
{
	const char *argv[32] = {th_cli(), "--config", config};
	size_t n = 3;

	for (size_t i = 0; args[i]; i++) {
		assert_true(n < 31);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return th_run(argv, env, out, errs);
}

int th_count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

int th_count_lines_starting(const char *s, const char *prefix)
{
	int n = 0;

	for (const char *p = s; p && *p;
	     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		n += strncmp(p, prefix, strlen(prefix)) == 0;
	return n;
}

int th_inspect_path(const char *path, const struct vmd_inspect_limits *lim,
                    unsigned flags, struct vmd_inspect_result *r)
{
	struct vmd_error err = VMD_ERROR_INIT;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		fail_msg("open %s: %s", path, strerror(errno));
	rc = vmd_inspect_fd(fd, lim, flags, r, &err);
	close(fd);
	return rc;
}

bool th_has_reason(const struct vmd_inspect_result *r, const char *code)
{
	for (unsigned i = 0; i < r->n_reasons; i++)
		if (strcmp(r->reasons[i].code, code) == 0)
			return true;
	return false;
}

void th_assert_refused_with(const char *path, const char *code)
{
	struct vmd_inspect_result r;

	assert_int_equal(th_inspect_path(path, NULL, 0, &r), 0);
	if (r.safe || !th_has_reason(&r, code)) {
		for (unsigned i = 0; i < r.n_reasons; i++)
			print_message("    %s: %s\n", r.reasons[i].code,
			              r.reasons[i].text);
		fail_msg("%s: expected refusal \"%s\" (format %s, safe %d)",
		         path, code, vmd_image_format_name(r.format), r.safe);
	}
}

void th_require_qemu_img(void)
{
	if (access("/usr/bin/qemu-img", X_OK) != 0)
		fail_msg("qemu-img is missing: install qemu-utils "
		         "(scripts/test.sh does)");
}

void th_qemu_img_create_encrypted(const char *const *argv)
{
	for (int attempt = 1;; attempt++) {
		char *out = NULL, *errs = NULL;
		int status = th_run(argv, NULL, &out, &errs);
		bool clock = errs && strstr(errs, "Unable to get accurate CPU");

		if (status != 0 && (!clock || attempt == 5))
			fail_msg("%s %s: status %d\n%s%s", argv[0], argv[1],
			         status, out, errs);
		free(out);
		free(errs);
		if (status == 0)
			return;
	}
}

void th_assert_qcow2_check_clean(const char *path)
{
	const char *argv[] = {"qemu-img", "check", "-f", "qcow2", path, NULL};
	char *out = NULL, *errs = NULL;
	int status = th_run(argv, NULL, &out, &errs);

	if (status != 0 || !strstr(out, "No errors were found"))
		fail_msg("qemu-img check %s: status %d\n%s%s", path, status,
		         out, errs);
	free(out);
	free(errs);
}

void th_assert_images_identical(const char *a, const char *fa, const char *b,
                                const char *fb, int strict)
{
	/* Not -s: that also compares allocation, which differs legitimately
	 * (a compressed cluster against a plain one). */
	const char *argv[] = {"qemu-img", "compare", "-f", fa, "-F", fb, a, b,
	                      NULL};
	char *out = NULL, *errs = NULL;
	int status = th_run(argv, NULL, &out, &errs);

	if (status != 0 || (strict && (strstr(out, "size mismatch") ||
	                               strstr(errs, "size mismatch"))))
		fail_msg("qemu-img compare %s %s: status %d\n%s%s", a, b,
		         status, out, errs);
	free(out);
	free(errs);
}

static struct vmd_buf captured = VMD_BUF_INIT;

static void capture_line(enum vmd_log_level level, const char *line,
                         void *opaque)
{
	(void)level;
	(void)opaque;
	vmd_buf_printf(&captured, "%s\n", line);
}

void th_log_capture_start(void)
{
	th_log_capture_stop();
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_DEBUG, "test");
	vmd_log_set_sink(capture_line, NULL);
}

const char *th_log_text(void)
{
	return captured.data ? captured.data : "";
}

void th_log_capture_stop(void)
{
	vmd_log_set_sink(NULL, NULL);
	vmd_buf_free(&captured);
}

void th_ctx_renew(struct vmd_ctx **ctx, const struct vmd_config *cfg)
{
	struct vmd_error err = VMD_ERROR_INIT;

	vmd_ctx_free(*ctx);
	*ctx = vmd_ctx_new(cfg, &err);
	if (!*ctx)
		fail_msg("vmd_ctx_new: %s (%s)", err.msg, err.detail);
}

void th_fixture_init(struct th_fixture *f, const char *tag)
{
	memset(f, 0, sizeof(*f));
	f->dir = th_mkdtemp(tag);
	f->instances = th_path(f->dir, "instances");
	vmd_config_defaults(&f->cfg);
	snprintf(f->cfg.instances_path, sizeof(f->cfg.instances_path), "%s",
	         f->instances);
}

void th_fixture_fini(struct th_fixture *f)
{
	vmd_ctx_free(f->ctx);
	f->ctx = NULL;
	if (f->dir)
		th_rmtree(f->dir);
	free(f->dir);
	free(f->instances);
	f->dir = f->instances = NULL;
	while (f->n_owned_ > 0)
		free(f->owned_[--f->n_owned_]);
}

void *th_fixture_new(size_t size, const char *tag)
{
	struct th_fixture *f = calloc(1, size);

	if (!f)
		fail_msg("out of memory");
	th_fixture_init(f, tag);
	return f;
}

char *th_fixture_own(struct th_fixture *f, char *p)
{
	if (f->n_owned_ == TH_FIXTURE_OWNED_MAX)
		fail_msg("a fixture owns at most %d strings",
		         TH_FIXTURE_OWNED_MAX);
	f->owned_[f->n_owned_++] = p;
	return p;
}

char *th_fixture_path(struct th_fixture *f, const char *name)
{
	return th_fixture_own(f, th_path(f->dir, name));
}

char *th_fixture_write_config(struct th_fixture *f, const char *extra)
{
	char *path = th_fixture_path(f, "vmdisk.conf");
	char *text;

	if (asprintf(&text,
	             "[DEFAULT]\ninstances_path = %s\nlog_target = none\n%s",
	             f->instances, extra) < 0)
		fail_msg("asprintf");
	th_write_text(path, text);
	free(text);
	return path;
}

int th_setup(void **state)
{
	*state = th_fixture_new(sizeof(struct th_fixture), "unit");
	return 0;
}

int th_teardown(void **state)
{
	struct th_fixture *f = *state;

	th_fixture_fini(f);
	free(f);
	return 0;
}

/* Entries of dir but "." and "..", and with dotfiles=false but any name
 * starting with '.'; -1 when dir cannot be opened (errno set). */
static int count_dir(const char *dir, bool dotfiles)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' &&
		    (!dotfiles || !strcmp(de->d_name, ".") ||
		     !strcmp(de->d_name, "..")))
			continue;
		n++;
	}
	closedir(d);
	return n;
}

int th_count_entries(const char *dir)
{
	int n = count_dir(dir, true);

	if (n < 0)
		fail_msg("opendir %s: %s", dir, strerror(errno));
	return n;
}

int th_count_cache_entries(const char *dir)
{
	int n = count_dir(dir, false);

	if (n < 0 && errno == ENOENT)
		return 0;
	if (n < 0)
		fail_msg("opendir %s: %s", dir, strerror(errno));
	return n;
}

int64_t th_qemu_img_virtual_size(const char *path, const char *fmt)
{
	const char *argv[] = {"qemu-img", "info", "-f", fmt, "--output=json",
	                      path, NULL};
	char *out = NULL;
	struct json_object *o, *v;
	int64_t size;

	assert_int_equal(th_run(argv, NULL, &out, NULL), 0);
	o = json_tokener_parse(out);
	assert_true(json_object_object_get_ex(o, "virtual-size", &v));
	size = json_object_get_int64(v);
	json_object_put(o);
	free(out);
	return size;
}
