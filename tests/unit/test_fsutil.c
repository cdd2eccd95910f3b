/*
 * Tests of lib/fsutil.c: atomic publish, sparse copy, clean-up guards, locks.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "helpers.h"

static int setup_dir(void **state)
{
	*state = th_mkdtemp("fsutil");
	return 0;
}

static int teardown_dir(void **state)
{
	th_rmtree(*state);
	free(*state);
	return 0;
}

static void test_tmpfile_invisible_until_publish(void **state)
{
	const char *dir = *state;
	struct vmd_tmpfile t = VMD_TMPFILE_INIT;
	struct vmd_error err = VMD_ERROR_INIT;
	char *final = th_path(dir, "disk");

	assert_int_equal(vmd_tmpfile_open(&t, dir, "disk", 0600, &err), 0);
	assert_int_equal(vmd_pwrite_full(t.fd, "hello", 5, 0), 0);
	/* Nothing under the final name, and (O_TMPFILE) nothing at all. */
	assert_false(th_exists(final));
	if (t.anonymous)
		assert_int_equal(th_count_entries(dir), 0);
	assert_int_equal(vmd_tmpfile_publish(&t, false, 0640, &err), 0);
	vmd_tmpfile_discard(&t);
	assert_true(th_exists(final));
	char *text = th_read_text(final);

	assert_string_equal(text, "hello");
	struct stat st;

	assert_int_equal(stat(final, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
	assert_int_equal(th_count_entries(dir), 1);
	free(text);
	free(final);
}

static void test_publish_refuses_to_replace(void **state)
{
	const char *dir = *state;
	struct vmd_error err = VMD_ERROR_INIT;
	char *final = th_path(dir, "rec");

	th_write_text(final, "original");
	assert_int_equal(vmd_write_file_atomic(dir, "rec", "new", 3, 0600,
	                                       false, &err),
	                 VMD_E_EXISTS);
	char *text = th_read_text(final);

	assert_string_equal(text, "original");
	free(text);
	/* No temporary left behind by the refused publish. */
	assert_int_equal(th_count_entries(dir), 1);

	vmd_error_clear(&err);
	assert_int_equal(vmd_write_file_atomic(dir, "rec", "new", 3, 0600, true,
	                                       &err),
	                 0);
	text = th_read_text(final);
	assert_string_equal(text, "new");
	assert_int_equal(th_count_entries(dir), 1);
	free(text);
	free(final);
}

static void test_discard_leaves_nothing(void **state)
{
	const char *dir = *state;
	struct vmd_error err = VMD_ERROR_INIT;

	{
		_cleanup_(vmd_tmpfile_discard) struct vmd_tmpfile t = VMD_TMPFILE_INIT;

		assert_int_equal(vmd_tmpfile_open(&t, dir, "x", 0600, &err), 0);
		assert_int_equal(vmd_pwrite_full(t.fd, "abc", 3, 0), 0);
	}
	assert_int_equal(th_count_entries(dir), 0);
}

static void test_cleanup_guard(void **state)
{
	const char *dir = *state;
	char *a = th_path(dir, "a"), *b = th_path(dir, "b");

	th_write_text(a, "x");
	th_write_text(b, "x");
	{
		_cleanup_(vmd_cleanup_path_run) struct vmd_cleanup_path ga = {0};
		_cleanup_(vmd_cleanup_path_run) struct vmd_cleanup_path gb = {0};

		vmd_cleanup_path_arm(&ga, a, false);
		vmd_cleanup_path_arm(&gb, b, false);
		vmd_cleanup_path_disarm(&gb);
	}
	assert_false(th_exists(a));
	assert_true(th_exists(b));
	free(a);
	free(b);
}

static void test_mkdir_p(void **state)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char *deep = th_path(*state, "x/y/z");
	struct stat st;

	assert_int_equal(vmd_mkdir_p(deep, 0700, &err), 0);
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(vmd_mkdir_p(deep, 0700, &err), 0);
	free(deep);
}

/* vmd_lock_acquire in the directory `dir` (the library passes the lock
 * directory it opened beneath instances_path). */
static int lock_in(struct vmd_lock *l, const char *dir, const char *name,
                   enum vmd_lock_mode mode, unsigned timeout_s,
                   struct vmd_error *err)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	assert_true(dfd >= 0);
	rc = vmd_lock_acquire(l, dfd, name, mode, timeout_s, err);
	close(dfd);
	return rc;
}

static void test_lock_names_validated(void **state)
{
	struct vmd_lock l = VMD_LOCK_INIT;
	struct vmd_error err = VMD_ERROR_INIT;

	assert_int_equal(lock_in(&l, *state, "../escape",
	                                  VMD_LOCK_EXCLUSIVE, 1, &err),
	                 VMD_E_INVAL);
	vmd_error_clear(&err);
	assert_int_equal(lock_in(&l, *state, ".hidden",
	                                  VMD_LOCK_EXCLUSIVE, 1, &err),
	                 VMD_E_INVAL);
	assert_int_equal(l.fd, -1);
}

/* A child takes the lock and waits; we check it blocks us, kill the child
 * with SIGKILL, and then get the lock at once. */
static void test_lock_released_when_holder_killed(void **state)
{
	const char *dir = *state;
	struct vmd_lock l = VMD_LOCK_INIT;
	struct vmd_error err = VMD_ERROR_INIT;
	int pipefd[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct vmd_lock held = VMD_LOCK_INIT;

		if (lock_in(&held, dir, "base-x", VMD_LOCK_EXCLUSIVE,
		                     0, NULL) < 0)
			_exit(1);
		if (write(pipefd[1], "L", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);

	assert_int_equal(lock_in(&l, dir, "base-x", VMD_LOCK_EXCLUSIVE,
	                                  1, &err),
	                 VMD_E_BUSY);
	assert_int_equal(l.fd, -1);
	vmd_error_clear(&err);
	/* A shared request is blocked by the exclusive holder too. */
	assert_int_equal(lock_in(&l, dir, "base-x", VMD_LOCK_SHARED, 1,
	                                  &err),
	                 VMD_E_BUSY);
	vmd_error_clear(&err);

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	assert_int_equal(lock_in(&l, dir, "base-x", VMD_LOCK_EXCLUSIVE,
	                                  1, &err),
	                 0);
	vmd_lock_release(&l);
}

static void test_shared_locks_coexist(void **state)
{
	const char *dir = *state;
	struct vmd_lock a = VMD_LOCK_INIT, b = VMD_LOCK_INIT, x = VMD_LOCK_INIT;
	struct vmd_error err = VMD_ERROR_INIT;

	/* Separate descriptors, as two processes would have. */
	assert_int_equal(lock_in(&a, dir, "s", VMD_LOCK_SHARED, 1, &err), 0);
	assert_int_equal(lock_in(&b, dir, "s", VMD_LOCK_SHARED, 1, &err), 0);
	assert_int_equal(lock_in(&x, dir, "s", VMD_LOCK_EXCLUSIVE, 1, &err),
	                 VMD_E_BUSY);
	vmd_lock_release(&a);
	vmd_lock_release(&b);
	vmd_error_clear(&err);
	assert_int_equal(lock_in(&x, dir, "s", VMD_LOCK_EXCLUSIVE, 1, &err), 0);
	vmd_lock_release(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tmpfile_invisible_until_publish,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_publish_refuses_to_replace,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_discard_leaves_nothing,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_cleanup_guard, setup_dir,
		                                teardown_dir),
		cmocka_unit_test_setup_teardown(test_mkdir_p, setup_dir,
		                                teardown_dir),
		cmocka_unit_test_setup_teardown(test_lock_names_validated,
		                                setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(
			test_lock_released_when_holder_killed, setup_dir,
			teardown_dir),
		cmocka_unit_test_setup_teardown(test_shared_locks_coexist,
		                                setup_dir, teardown_dir),
	};

	return cmocka_run_group_tests_name("fsutil", tests, NULL, NULL);
}
