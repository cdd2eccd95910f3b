/*
 * Tests of lib/beneath.c, the module through which every file under
 * instances_path is reached: names are resolved beneath a directory
 * descriptor and a link anywhere on the way, "..", or an absolute name is
 * refused; the *at() changes never act through a linked parent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "beneath.h"
#include "helpers.h"
#include "vmd_build_config.h"

struct fixture {
	TH_FIXTURE_EMBED; /* dir, instances, cfg, ctx; &f->th */
	char *root;       /* the "instances_path": dir/instances */
	char *decoy;      /* outside it: dir/decoy */
	int fd;
};

static int setup(void **state)
{
	struct fixture *f = TH_FIXTURE_NEW(struct fixture, "beneath");
	char *p;

	f->root = f->instances;
	f->decoy = th_fixture_path(&f->th, "decoy");
	assert_int_equal(mkdir(f->root, 0755), 0);
	assert_int_equal(mkdir(f->decoy, 0755), 0);
	p = th_path(f->root, "sub");
	assert_int_equal(mkdir(p, 0755), 0);
	free(p);
	p = th_path(f->root, "sub/file");
	th_write_text(p, "inside\n");
	free(p);
	p = th_path(f->decoy, "file");
	th_write_text(p, "outside\n");
	free(p);
	p = th_path(f->root, "link");
	assert_int_equal(symlink(f->decoy, p), 0);
	free(p);
	p = th_path(f->root, "sub/filelink");
	assert_int_equal(symlink("file", p), 0); /* relative, stays inside */
	free(p);
	f->fd = open(f->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->fd >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->fd);
	return th_teardown(state);
}

static void assert_fails(int rc, int want_errno)
{
	assert_int_equal(rc, -1);
	assert_int_equal(errno, want_errno);
}

static void test_open_inside(void **state)
{
	struct fixture *f = *state;
	int fd = vmd_bopen(f->fd, "sub/file", O_RDONLY, 0);
	char buf[16] = "";

	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf) - 1), 7);
	assert_string_equal(buf, "inside\n");
	/* O_CLOEXEC is always set. */
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	fd = vmd_bopen(f->fd, ".", O_RDONLY | O_DIRECTORY, 0);
	assert_true(fd >= 0);
	close(fd);
}

static void test_links_refused(void **state)
{
	struct fixture *f = *state;

	/* A link as a parent, and as the last component, even one that
	 * stays inside. */
	assert_fails(vmd_bopen(f->fd, "link/file", O_RDONLY, 0), ELOOP);
	assert_fails(vmd_bopen(f->fd, "link", O_RDONLY | O_DIRECTORY, 0),
	             ELOOP);
	assert_fails(vmd_bopen(f->fd, "link", O_PATH, 0), ELOOP);
	assert_fails(vmd_bopen(f->fd, "sub/filelink", O_RDONLY, 0), ELOOP);
	assert_fails(vmd_bopen(f->fd, "link/new", O_RDWR | O_CREAT, 0600),
	             ELOOP);
	assert_null(vmd_bopendir(f->fd, "link"));
	assert_int_equal(errno, ELOOP);
	/* Magic links of /proc are links too. */
	int proc = open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);

	assert_true(proc >= 0);
	assert_fails(vmd_bopen(proc, "cwd", O_PATH, 0), ELOOP);
	close(proc);
}

static void test_escapes_refused(void **state)
{
	struct fixture *f = *state;
	struct stat st;

	assert_fails(vmd_bopen(f->fd, "/etc/passwd", O_RDONLY, 0), EXDEV);
	assert_fails(vmd_bopen(f->fd, "..", O_PATH, 0), EXDEV);
	assert_fails(vmd_bopen(f->fd, "sub/../sub/file", O_RDONLY, 0), EXDEV);
	assert_fails(vmd_bopen(f->fd, "sub/..", O_PATH, 0), EXDEV);
	assert_fails(vmd_bopen(f->fd, "", O_PATH, 0), EXDEV);
	assert_fails(vmd_bmkdir(f->fd, "../x", 0700), EXDEV);
	assert_fails(vmd_bunlink(f->fd, "/tmp/x", 0), EXDEV);
	assert_fails(vmd_bstat(f->fd, "../beneath", &st), EXDEV);
}

/* The *at() calls: through a linked parent nothing happens outside; the
 * last component is never followed. */
static void test_changes_never_follow(void **state)
{
	struct fixture *f = *state;
	struct stat st;
	char *outside = th_path(f->decoy, "file");
	char *made = th_path(f->decoy, "made");

	assert_fails(vmd_bunlink(f->fd, "link/file", 0), ELOOP);
	assert_fails(vmd_bmkdir(f->fd, "link/made", 0700), ELOOP);
	assert_fails(vmd_brename(f->fd, "sub/file", f->fd, "link/file", 0),
	             ELOOP);
	assert_fails(vmd_btouch(f->fd, "link/file"), ELOOP);
	assert_true(th_exists(outside));
	assert_false(th_exists(made));
	/* The link itself is what stat sees and what mkdir collides with. */
	assert_int_equal(vmd_bstat(f->fd, "link", &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_fails(vmd_bmkdir(f->fd, "link", 0700), EEXIST);
	/* Inside, they work. */
	assert_int_equal(vmd_bmkdir(f->fd, "sub/new", 0700), 0);
	assert_int_equal(vmd_brename(f->fd, "sub/new", f->fd, "sub/newer",
	                             RENAME_NOREPLACE),
	                 0);
	assert_int_equal(vmd_bstat(f->fd, "sub/newer", &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(vmd_bunlink(f->fd, "sub/newer", AT_REMOVEDIR), 0);
	free(outside);
	free(made);
}

static void test_read_file_bounded(void **state)
{
	struct fixture *f = *state;
	char *buf = NULL;
	size_t len = 0;

	assert_int_equal(vmd_bread_file(f->fd, "sub/file", 64, &buf, &len), 0);
	assert_int_equal(len, 7);
	assert_string_equal(buf, "inside\n");
	free(buf);
	assert_fails(vmd_bread_file(f->fd, "sub/file", 3, &buf, &len), EFBIG);
	assert_null(buf);
	assert_fails(vmd_bread_file(f->fd, "link/file", 64, &buf, &len),
	             ELOOP);
}

/* The context's root: instances_path itself comes from the trusted
 * configuration, and the error for a link below it says what happened. */
static void test_context_dirs(void **state)
{
	struct fixture *f = *state;
	struct vmd_config cfg;
	struct vmd_ctx *ctx = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	int fd = -1, root = -1;

	vmd_config_defaults(&cfg);
	snprintf(cfg.instances_path, sizeof(cfg.instances_path), "%s", f->root);
	th_ctx_renew(&ctx, &cfg);
	assert_int_equal(vmd_beneath_root(ctx, false, &root, &err), 0);
	assert_int_equal(vmd_beneath_dir(ctx, "sub", false, 0, "open sub",
	                                 &fd, &err),
	                 0);
	close(fd);
	assert_int_equal(vmd_beneath_dir(ctx, "absent", false, 0, "open",
	                                 &fd, &err),
	                 VMD_E_NOTFOUND);
	assert_false(vmd_error_is_set(&err));
	assert_int_equal(vmd_beneath_dir(ctx, "link", true, 0700,
	                                 "make link dir", &fd, &err),
	                 VMD_E_REFUSED);
	assert_contains(err.msg, "make link dir: symbolic link");
	assert_int_equal(fd, -1);
	vmd_ctx_free(ctx);
}

#if VMD_FAULT_INJECTION
/* A kernel without openat2 (Linux < 5.6): refused with an error that
 * says so, never served by following links instead. */
static void test_no_openat2_refused(void **state)
{
	struct fixture *f = *state;
	struct vmd_config cfg;
	struct vmd_ctx *ctx = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_create_opts o = {.size = 1u << 20,
	                            .backend = VMD_BACKEND_FLAT};
	int root = -1;

	vmd_config_defaults(&cfg);
	snprintf(cfg.instances_path, sizeof(cfg.instances_path), "%s/inst",
	         f->root);
	th_ctx_renew(&ctx, &cfg);
	setenv("VMDISK_FAULT", "beneath.no_openat2:fail", 1);
	assert_fails(vmd_bopen(f->fd, "sub/file", O_RDONLY, 0), ENOSYS);
	assert_int_equal(vmd_beneath_root(ctx, true, &root, &err),
	                 VMD_E_UNSUPPORTED);
	assert_contains(err.msg, "openat2");
	vmd_error_clear(&err);
	assert_int_equal(vmd_disk_create(ctx, "6f1e0a8c-3b5d-4e2f-9a7b-"
	                                      "1c2d3e4f5a6b",
	                                 "disk", &o, NULL, &err),
	                 VMD_E_UNSUPPORTED);
	assert_contains(err.msg, "openat2");
	unsetenv("VMDISK_FAULT");
	/* instances_path itself (trusted) was made; nothing below it. */
	char *inst = th_path(f->root, "inst");
	DIR *d = opendir(inst);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	assert_int_equal(n, 0);
	free(inst);
	vmd_ctx_free(ctx);
}
#endif

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_open_inside),
		T(test_links_refused),
		T(test_escapes_refused),
		T(test_changes_never_follow),
		T(test_read_file_bounded),
		T(test_context_dirs),
#if VMD_FAULT_INJECTION
		T(test_no_openat2_refused),
#endif
	};

	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return cmocka_run_group_tests_name("beneath", tests, NULL, NULL);
}
