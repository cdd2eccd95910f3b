/*
 * Tests of lib/runner.c: argv reaches the program verbatim (no shell), the
 * environment and the child's starting state are fixed, output capture is
 * bounded, timeouts kill the whole process group, and secrets are redacted
 * from everything the runner prints.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runner.h"
#include <vmdisk/log.h>

#include "cleanup.h"
#include "helpers.h"

static int setup(void **state)
{
	(void)state;
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "test");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	vmd_secret_clear_all();
	vmd_log_set_sink(NULL, NULL);
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_true_false(void **state)
{
	const char *const t[] = {"true", NULL};
	const char *const f[] = {"false", NULL};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_run("test", t, NULL, &res, &err), 0);
	assert_int_equal(res.exit_status, 0);
	assert_int_equal(res.timed_out, 0);
	assert_non_null(res.out);
	assert_non_null(res.err);
	assert_int_equal(res.out_len, 0);
	assert_string_equal(res.out, "");
	vmd_run_result_free(&res);
	assert_null(res.out);
	assert_false(vmd_error_is_set(&err));

	assert_int_equal(vmd_run("test", f, NULL, &res, &err), VMD_E_EXTERNAL);
	assert_int_equal(res.exit_status, 1);
	assert_int_equal(err.code, VMD_E_EXTERNAL);
	assert_string_equal(err.msg, "test: false failed");
	assert_contains(err.detail, "status 1");
	vmd_run_result_free(&res);

	/* res may be NULL; the status still decides the return value. */
	vmd_error_clear(&err);
	assert_int_equal(vmd_run("test", t, NULL, NULL, &err), 0);
	assert_int_equal(vmd_run("test", f, NULL, NULL, &err), VMD_E_EXTERNAL);
	/* Absolute paths work too. */
	vmd_error_clear(&err);
	const char *const abs_true[] = {"/usr/bin/true", NULL};
	assert_int_equal(vmd_run("test", abs_true, NULL, NULL, &err), 0);
}

static void test_ok_status(void **state)
{
	const char *const argv[] = {"ls", "/nonexistent-vmdisk-test", NULL};
	const int ok[] = {1, 2, -1};
	struct vmd_run_opts opts = {.ok_status = ok};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err), 0);
	assert_int_equal(res.exit_status, 2);
	assert_false(vmd_error_is_set(&err));
	vmd_run_result_free(&res);

	const int other[] = {1, -1};
	opts.ok_status = other;
	assert_int_equal(vmd_run("test", argv, &opts, NULL, &err),
	                 VMD_E_EXTERNAL);
}

static void test_argv_verbatim(void **state)
{
	const char *const argv[] = {"/usr/bin/printf", "%s|", "a b;$(id)",
	                            "`id`", "'q\"", "*", "", "x\ny", NULL};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_run("test", argv, NULL, &res, &err), 0);
	assert_string_equal(res.out, "a b;$(id)|`id`|'q\"|*||x\ny|");
	assert_int_equal(res.out_len, strlen(res.out));
	vmd_run_result_free(&res);

	const char *const one[] = {"/usr/bin/printf", "%s", "a b;$(id)", NULL};
	assert_int_equal(vmd_run("test", one, NULL, &res, &err), 0);
	assert_string_equal(res.out, "a b;$(id)");
	vmd_run_result_free(&res);
}

static void test_env_fixed(void **state)
{
	const char *const argv[] = {"/usr/bin/env", NULL};
	const char *const extra[] = {"VMD_TEST_EXTRA=hello world", NULL};
	struct vmd_run_opts opts = {.extra_env = extra};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(setenv("VMD_TEST_LEAK", "leaked", 1), 0);
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err), 0);
	assert_string_equal(res.out, "PATH=" VMD_RUN_PATH "\n"
	                             "LC_ALL=C\n"
	                             "VMD_TEST_EXTRA=hello world\n");
	assert_not_contains(res.out, "VMD_TEST_LEAK");
	vmd_run_result_free(&res);

	/* Without extras: exactly the two fixed entries. */
	assert_int_equal(vmd_run("test", argv, NULL, &res, &err), 0);
	assert_string_equal(res.out, "PATH=" VMD_RUN_PATH "\nLC_ALL=C\n");
	vmd_run_result_free(&res);
	unsetenv("VMD_TEST_LEAK");

	/* LC_ALL may be replaced (not duplicated); PATH may not. */
	const char *const lc[] = {"LC_ALL=POSIX", "A=1", "A=2", NULL};
	opts.extra_env = lc;
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err), 0);
	assert_string_equal(res.out,
	                    "PATH=" VMD_RUN_PATH "\nLC_ALL=POSIX\nA=2\n");
	vmd_run_result_free(&res);
	assert_false(vmd_error_is_set(&err));
}

static void test_bad_env(void **state)
{
	static const char *const bad[] = {
		"lower=x", "1ABC=x", "A-B=x", "=x",        "NOEQUALS",
		"PATH=/tmp", "PATH=",  "",     "A B=x",     "\xc3\x84=x",
	};
	const char *const argv[] = {"true", NULL};
	struct vmd_run_result res;

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		const char *const extra[] = {"GOOD=1", bad[i], NULL};
		struct vmd_run_opts opts = {.extra_env = extra};
		struct vmd_error err = VMD_ERROR_INIT;

		if (vmd_run("test", argv, &opts, &res, &err) != VMD_E_INVAL)
			fail_msg("extra_env '%s' accepted", bad[i]);
		/* Refused before anything started. */
		assert_null(res.out);
		vmd_run_result_free(&res);
	}
	const char *const good[] = {"_X1=y", "PATHS=ok", NULL};
	struct vmd_run_opts opts = {.extra_env = good};
	struct vmd_error err = VMD_ERROR_INIT;
	assert_int_equal(vmd_run("test", argv, &opts, NULL, &err), 0);
}

static void test_timeout(void **state)
{
	const char *const argv[] = {"/bin/sleep", "10", NULL};
	struct vmd_run_opts opts = {.timeout_ms = 200};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	int64_t t0 = now_ms();

	(void)state;
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err),
	                 VMD_E_EXTERNAL);
	assert_true(now_ms() - t0 < 3000);
	assert_true(now_ms() - t0 >= 200);
	assert_int_equal(res.timed_out, 1);
	assert_int_equal(res.exit_status, 128 + SIGKILL);
	assert_int_equal(err.code, VMD_E_EXTERNAL);
	assert_string_equal(err.msg, "test: sleep timed out");
	assert_contains(err.detail, "timed out");
	vmd_run_result_free(&res);
}

/* pids whose command line is exactly `a0 a1` */
static int find_process(const char *a0, const char *a1)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	int found = 0;
	char want[128];
	size_t wlen;

	wlen = (size_t)snprintf(want, sizeof(want), "%s%c%s", a0, '\0', a1) + 1;
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[300], buf[128];
		ssize_t n;
		int fd;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		close(fd);
		if (n == (ssize_t)wlen && memcmp(buf, want, wlen) == 0)
			found++;
	}
	closedir(d);
	return found;
}

struct bg_run {
	const char *const *argv;
	struct vmd_run_opts opts;
	struct vmd_run_result res;
	struct vmd_error err;
	int rc;
};

static void *bg_run_main(void *p)
{
	struct bg_run *b = p;

	b->rc = vmd_run("test", b->argv, &b->opts, &b->res, &b->err);
	return NULL;
}

/*
 * `timeout` forks `sleep`, which is therefore not the runner's child but its
 * grandchild, in the same process group. Killing only the child would leave
 * it running.
 */
static void test_timeout_kills_group(void **state)
{
	char secs[32];
	const char *argv[] = {"timeout", "60", "sleep", secs, NULL};
	struct bg_run b = {.argv = argv,
	                   .opts = {.timeout_ms = 1500},
	                   .err = VMD_ERROR_INIT};
	pthread_t th;
	int seen = 0;

	(void)state;
	snprintf(secs, sizeof(secs), "3000.%d", (int)getpid());
	assert_int_equal(find_process("sleep", secs), 0);
	assert_int_equal(pthread_create(&th, NULL, bg_run_main, &b), 0);
	for (int i = 0; i < 100 && !seen; i++) {
		usleep(10000);
		seen = find_process("sleep", secs);
	}
	assert_int_equal(seen, 1); /* the grandchild did run */
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(b.rc, VMD_E_EXTERNAL);
	assert_int_equal(b.res.timed_out, 1);
	/* Killed processes lose their command line at once, even before the
	 * orphaned grandchild is reaped. */
	for (int i = 0; i < 100 && seen; i++) {
		seen = find_process("sleep", secs);
		if (seen)
			usleep(10000);
	}
	assert_int_equal(seen, 0);
	vmd_run_result_free(&b.res);
}

/* Killed by a signal but not by us: 128 + signal, and not a timeout. */
static void test_killed_by_signal(void **state)
{
	const char *const argv[] = {"timeout", "-s", "KILL",
	                            "--preserve-status", "0.1", "sleep", "10",
	                            NULL};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_run("test", argv, NULL, &res, &err),
	                 VMD_E_EXTERNAL);
	assert_int_equal(res.exit_status, 128 + SIGKILL);
	assert_int_equal(res.timed_out, 0);
	assert_string_equal(err.msg, "test: timeout failed");
	assert_contains(err.detail, "signal 9");
	vmd_run_result_free(&res);
}

/* Run as a child by test_timeout_after_eof (see main). */
#define CLOSE_AND_SLEEP "--close-output-and-sleep"

/* A program that closes its output but keeps running still times out. */
static void test_timeout_after_eof(void **state)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	const char *const argv[] = {self, CLOSE_AND_SLEEP, NULL};
	struct vmd_run_opts opts = {.timeout_ms = 500};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	int64_t t0;

	(void)state;
	assert_true(n > 0);
	self[n] = '\0';
	t0 = now_ms();
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err),
	                 VMD_E_EXTERNAL);
	assert_true(now_ms() - t0 >= 500);
	assert_true(now_ms() - t0 < 5000);
	assert_int_equal(res.timed_out, 1);
	assert_int_equal(res.exit_status, 128 + SIGKILL);
	assert_string_equal(res.out, "closing");
	vmd_run_result_free(&res);
}

static void test_capture_bound(void **state)
{
	const char *const argv[] = {"head", "-c", "1048576", "/dev/zero", NULL};
	struct vmd_run_opts opts = {.capture_max = 1000};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	char zeros[1000] = {0};

	(void)state;
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err), 0);
	assert_int_equal(res.out_len, 1000);
	assert_int_equal(res.out_dropped, 1048576 - 1000);
	assert_memory_equal(res.out, zeros, sizeof(zeros));
	assert_int_equal(res.out[1000], '\0');
	assert_int_equal(res.err_len, 0);
	assert_int_equal(res.err_dropped, 0);
	vmd_run_result_free(&res);

	/* The default bound holds the whole of a small output. */
	const char *const small[] = {"head", "-c", "5000", "/dev/zero", NULL};
	assert_int_equal(vmd_run("test", small, NULL, &res, &err), 0);
	assert_int_equal(res.out_len, 5000);
	assert_int_equal(res.out_dropped, 0);
	vmd_run_result_free(&res);
}

static void test_stderr_captured(void **state)
{
	const char *const argv[] = {"ls", "/nonexistent-vmdisk-test", NULL};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_run("probe", argv, NULL, &res, &err),
	                 VMD_E_EXTERNAL);
	assert_int_equal(res.exit_status, 2);
	assert_int_equal(res.out_len, 0);
	assert_contains(res.err, "/nonexistent-vmdisk-test");
	assert_int_equal(res.err_len, strlen(res.err));
	assert_string_equal(err.msg, "probe: ls failed");
	assert_contains(err.detail, "status 2");
	assert_contains(err.detail, "ls /nonexistent-vmdisk-test");
	assert_contains(err.detail, "stderr: ls: cannot access");
	/* On one line. */
	assert_null(strchr(err.detail, '\n'));
	vmd_run_result_free(&res);
}

/* The error quotes how stderr ended, even past capture_max. */
static void test_stderr_tail_in_detail(void **state)
{
	const char *argv[260];
	char names[256][16];
	struct vmd_run_opts opts = {.capture_max = 100};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	size_t n = 0;

	(void)state;
	argv[n++] = "ls";
	for (int i = 0; i < 250; i++) {
		snprintf(names[i], sizeof(names[i]), "/nx-%03d", i);
		argv[n++] = names[i];
	}
	argv[n++] = "/zz-final-marker";
	argv[n] = NULL;
	assert_int_equal(vmd_run("test", argv, &opts, &res, &err),
	                 VMD_E_EXTERNAL);
	assert_int_equal(res.err_len, 100);
	assert_true(res.err_dropped > 1000);
	/* The argv dump is cut long before its last element... */
	assert_contains(err.detail, "ls /nx-000 /nx-001");
	assert_not_contains(err.detail, "/nx-249 ");
	/* ...so the marker can only come from the stderr tail. */
	assert_contains(err.detail, "zz-final-marker");
	assert_true(strlen(err.detail) < VMD_ERROR_DETAIL_MAX);
	vmd_run_result_free(&res);
}

static void test_not_found(void **state)
{
	static const char *const progs[] = {
		"vmdisk-no-such-program",
		"/nonexistent/dir/prog",
		"/etc/passwd",
		"/usr/bin",
		"..",
	};

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(progs); i++) {
		const char *const argv[] = {progs[i], NULL};
		struct vmd_run_result res;
		struct vmd_error err = VMD_ERROR_INIT;

		if (vmd_run("test", argv, NULL, &res, &err) != VMD_E_NOTFOUND)
			fail_msg("%s: %s", progs[i], err.msg);
		assert_null(res.out);
		assert_contains(err.msg, "not found");
		assert_true(strncmp(err.msg, "test: ", 6) == 0);
		vmd_run_result_free(&res);
	}
	struct vmd_error err = VMD_ERROR_INIT;
	const char *const argv[] = {"vmdisk-no-such-program", NULL};
	vmd_run("test", argv, NULL, NULL, &err);
	assert_string_equal(err.msg, "test: vmdisk-no-such-program not found");
}

/* Programs are not looked up in the caller's PATH. */
static void test_path_is_fixed(void **state)
{
	char dir[] = "/tmp/vmdisk-runner-XXXXXX";
	char prog[64];
	const char *old = getenv("PATH");
	char *saved = old ? strdup(old) : NULL;
	const char *const argv[] = {"vmdisk-test-prog", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(prog, sizeof(prog), "%s/vmdisk-test-prog", dir);
	fd = open(prog, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(setenv("PATH", dir, 1), 0);
	assert_int_equal(vmd_run("test", argv, NULL, NULL, &err),
	                 VMD_E_NOTFOUND);
	/* true is still found through the fixed path. */
	const char *const t[] = {"true", NULL};
	vmd_error_clear(&err);
	assert_int_equal(vmd_run("test", t, NULL, NULL, &err), 0);
	if (saved)
		setenv("PATH", saved, 1);
	free(saved);
	unlink(prog);
	rmdir(dir);
}

static void test_relative_refused(void **state)
{
	static const char *const progs[] = {"./true", "bin/true",
	                                    "usr/bin/true", "../usr/bin/true"};
	char cwd[4096];

	(void)state;
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	/* From /, usr/bin/true exists: it must be refused all the same. */
	assert_int_equal(chdir("/"), 0);
	for (size_t i = 0; i < ELEMENTSOF(progs); i++) {
		const char *const argv[] = {progs[i], NULL};
		struct vmd_run_result res;
		struct vmd_error err = VMD_ERROR_INIT;

		if (vmd_run("test", argv, NULL, &res, &err) != VMD_E_INVAL)
			fail_msg("%s not refused: %s", progs[i], err.msg);
		assert_null(res.out);
		assert_contains(err.msg, "relative");
	}
	assert_int_equal(chdir(cwd), 0);

	struct vmd_error err = VMD_ERROR_INIT;
	const char *const empty[] = {"", NULL};
	assert_int_equal(vmd_run("test", empty, NULL, NULL, &err), VMD_E_INVAL);
	const char *const none[] = {NULL};
	vmd_error_clear(&err);
	assert_int_equal(vmd_run("test", none, NULL, NULL, &err), VMD_E_INVAL);
	vmd_error_clear(&err);
	assert_int_equal(vmd_run("test", NULL, NULL, NULL, &err), VMD_E_INVAL);
}

/* Signal state, process group, descriptors and stdin of the child. */
static void test_child_state(void **state)
{
	const char *const status[] = {"cat", "/proc/self/status", NULL};
	const char *const stat[] = {"cat", "/proc/self/stat", NULL};
	const char *const fds[] = {"ls", "/proc/self/fd", NULL};
	const char *const in[] = {"readlink", "/proc/self/fd/0", NULL};
	const char *const cat[] = {"cat", NULL};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe, old_hup;
	sigset_t block, old_mask;
	unsigned long long ignored;
	const char *p;
	int leak;
	long pid, pgrp;

	(void)state;
	/* What a daemon might have: ignored and blocked signals... */
	sigaction(SIGPIPE, &ign, &old_pipe);
	sigaction(SIGHUP, &ign, &old_hup);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old_mask);
	/* ...and a descriptor opened without O_CLOEXEC. */
	leak = open("/dev/null", O_RDONLY);
	assert_true(leak > 2);

	assert_int_equal(vmd_run("test", status, NULL, &res, &err), 0);
	assert_contains(res.out, "\nSigBlk:\t0000000000000000\n");
	p = strstr(res.out, "\nSigIgn:\t");
	assert_non_null(p);
	ignored = strtoull(p + 9, NULL, 16);
	/* Signals 1-31 back to default. (glibc's posix_spawn leaves its two
	 * internal signals, 32 and 33, ignored; nothing else uses them.) */
	assert_int_equal(ignored & 0x7fffffffULL, 0);
	vmd_run_result_free(&res);

	assert_int_equal(vmd_run("test", fds, NULL, &res, &err), 0);
	/* 3 is the directory ls itself reads. */
	assert_string_equal(res.out, "0\n1\n2\n3\n");
	vmd_run_result_free(&res);

	close(leak);
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGPIPE, &old_pipe, NULL);
	sigaction(SIGHUP, &old_hup, NULL);

	/* Its own process group: pgrp (5th field) equals its pid. */
	assert_int_equal(vmd_run("test", stat, NULL, &res, &err), 0);
	assert_int_equal(sscanf(res.out, "%ld %*s %*c %*d %ld", &pid, &pgrp),
	                 2);
	assert_int_equal(pid, pgrp);
	assert_true(pgrp != (long)getpgrp());
	vmd_run_result_free(&res);

	/* stdin is /dev/null, not ours: make ours a pipe that never ends. */
	int saved_in = dup(0), pfd[2];

	assert_true(saved_in >= 0);
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(dup2(pfd[0], 0), 0);
	assert_int_equal(vmd_run("test", in, NULL, &res, &err), 0);
	assert_string_equal(res.out, "/dev/null\n");
	vmd_run_result_free(&res);

	/* cat with no arguments reads stdin: EOF at once, no hang. */
	struct vmd_run_opts opts = {.timeout_ms = 5000};
	assert_int_equal(vmd_run("test", cat, &opts, &res, &err), 0);
	assert_int_equal(res.out_len, 0);
	assert_int_equal(res.timed_out, 0);
	vmd_run_result_free(&res);
	assert_int_equal(dup2(saved_in, 0), 0);
	close(saved_in);
	close(pfd[0]);
	close(pfd[1]);
}

static void test_format_argv(void **state)
{
	const char *const argv[] = {"qemu-img", "create", "-f",  "qcow2",
	                            "/a b/c'd", "",       "x;y", "-o",
	                            "size=1G,preallocation=off",
	                            "$(id)",    "l1\nl2", NULL};
	char buf[256];
	char small[12];

	(void)state;
	vmd_run_format_argv(argv, buf, sizeof(buf));
	assert_string_equal(buf, "qemu-img create -f qcow2 '/a b/c'\\''d' '' "
	                         "'x;y' -o size=1G,preallocation=off '$(id)' "
	                         "'l1?l2'");

	memset(small, 'X', sizeof(small));
	vmd_run_format_argv(argv, small, sizeof(small));
	assert_true(memchr(small, '\0', sizeof(small)) != NULL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_string_equal(small, "qemu-img...");

	vmd_run_format_argv(argv, small, 1);
	assert_int_equal(small[0], '\0');
	vmd_run_format_argv(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
}

struct log_capture {
	char lines[16][1024];
	int n;
};

static void capture_sink(enum vmd_log_level level, const char *line,
                         void *opaque)
{
	struct log_capture *c = opaque;

	(void)level;
	if (c->n < 16)
		snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s", line);
}

static void test_secret_redaction(void **state)
{
	static const char secret[] = "s3cr3t-Token";
	const char *const fmt[] = {"tool", "--key=s3cr3t-Token", "a b",
	                           "x s3cr3t-Token y", NULL};
	const char *const fail[] = {"ls", "/nonexistent-s3cr3t-Token", NULL};
	struct log_capture logs = {.n = 0};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;
	char buf[256];

	(void)state;
	assert_int_equal(vmd_secret_register(secret), 0);
	vmd_run_format_argv(fmt, buf, sizeof(buf));
	/* "*" is quoted like any other shell metacharacter. */
	assert_string_equal(buf, "tool '--key=***' 'a b' 'x *** y'");

	vmd_log_set_sink(capture_sink, &logs);
	assert_int_equal(vmd_run("test", fail, NULL, &res, &err),
	                 VMD_E_EXTERNAL);
	vmd_log_set_sink(NULL, NULL);
	/* The program itself got the real value and said so on stderr. */
	assert_contains(res.err, secret);
	/* Nothing the runner wrote has it. */
	assert_not_contains(err.msg, secret);
	assert_not_contains(err.detail, secret);
	assert_contains(err.detail, "ls '/nonexistent-***'");
	assert_contains(err.detail, "access '/nonexistent-***'");
	assert_true(logs.n >= 2); /* the argv (debug) and the error */
	for (int i = 0; i < logs.n; i++)
		assert_not_contains(logs.lines[i], secret);
	assert_contains(logs.lines[0], "running ls '/nonexistent-***'");
	vmd_run_result_free(&res);
}

/* Runs python3 writing `text` to stderr and exiting 1, with pass_reason;
 * returns the public message. */
static void reason_of(const char *text, char *msg, size_t msgsz)
{
	const char *const argv[] = {
		"python3", "-c",
		"import os, sys; sys.stderr.buffer.write(os.fsencode("
		"sys.argv[1])); sys.exit(1)",
		text, NULL};
	struct vmd_run_opts opts = {.pass_reason = true};
	struct vmd_error err = VMD_ERROR_INIT;

	assert_int_equal(vmd_run("test", argv, &opts, NULL, &err),
	                 VMD_E_EXTERNAL);
	snprintf(msg, msgsz, "%s", err.msg);
}

/* pass_reason: the tool's own last line reaches the public message, but
 * only sanitised, and never when it could carry a secret. */
static void test_reason_passed_on(void **state)
{
	static const struct {
		const char *stderr_text;
		const char *msg;
	} cases[] = {
		/* The last non-empty line; "<program>: " dropped. */
		{"warning: ignored\npython3: disk too small\n\n",
		 "test: python3 failed: disk too small"},
		/* Before a usage text (mkfs.xfs's shape). */
		{"Filesystem must be larger than 300MB.\nUsage: mkfs\n"
		 "\t[-b size]\n<value> is xxx\n",
		 "test: python3 failed: Filesystem must be larger than 300MB."},
		/* Absolute paths replaced, relative ones kept. */
		{"cannot open '/proc/42/fd/5': a/b busy, /dev/vg0/x: no",
		 "test: python3 failed: cannot open '(path)': a/b busy, "
		 "(path): no"},
		/* Refused whole: not printable ASCII, a hex or base64-like
		 * run (errors_check.py's rule 4), no line at all. */
		{"bad byte \xe9 here\n", "test: python3 failed"},
		{"bad \x1b[31m escape\n", "test: python3 failed"},
		{"key 0123456789abcdef0123456789abcdef wrong\n",
		 "test: python3 failed"},
		{"token aB3dE5gH7jK9mN1pQ3sT5vX7z wrong\n",
		 "test: python3 failed"},
		{"\n \n", "test: python3 failed"},
	};
	char msg[VMD_ERROR_MSG_MAX], long_line[400];

	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		reason_of(cases[i].stderr_text, msg, sizeof(msg));
		if (strcmp(msg, cases[i].msg) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, msg,
			         cases[i].msg);
	}
	/* Cut to VMD_RUN_REASON_MAX. */
	memset(long_line, 'w', sizeof(long_line) - 1);
	for (size_t i = 5; i < sizeof(long_line) - 1; i += 6)
		long_line[i] = ' ';
	long_line[sizeof(long_line) - 1] = '\0';
	reason_of(long_line, msg, sizeof(msg));
	assert_int_equal(strlen(msg),
	                 strlen("test: python3 failed: ") + VMD_RUN_REASON_MAX);
	assert_string_equal(msg + strlen(msg) - 3, "...");
}

/* A registered secret in the line refuses the reason; without
 * pass_reason nothing of stderr reaches the message (as before). */
static void test_reason_never_a_secret(void **state)
{
	const char *const fail[] = {"ls", "/nonexistent-s3cr3t-Token", NULL};
	const char *const plain[] = {"ls", "/nonexistent-vmdisk-test", NULL};
	struct vmd_run_opts pass = {.pass_reason = true};
	struct vmd_error err = VMD_ERROR_INIT;

	(void)state;
	assert_int_equal(vmd_run("test", plain, &pass, NULL, &err),
	                 VMD_E_EXTERNAL);
	assert_string_equal(err.msg, "test: ls failed: cannot access "
	                             "'(path)': No such file or directory");
	vmd_error_clear(&err);
	assert_int_equal(vmd_run("test", plain, NULL, NULL, &err),
	                 VMD_E_EXTERNAL);
	assert_string_equal(err.msg, "test: ls failed");
	vmd_error_clear(&err);
	assert_int_equal(vmd_secret_register("s3cr3t-Token"), 0);
	assert_int_equal(vmd_run("test", fail, &pass, NULL, &err),
	                 VMD_E_EXTERNAL);
	assert_string_equal(err.msg, "test: ls failed");
}

struct thread_job {
	pthread_t th;
	char word[32];
	char *out;
	int rc;
};

static void *thread_main(void *p)
{
	struct thread_job *j = p;
	const char *const argv[] = {"/usr/bin/printf", "%s", j->word, NULL};
	struct vmd_run_result res;
	struct vmd_error err = VMD_ERROR_INIT;

	for (int i = 0; i < 20; i++) {
		j->rc = vmd_run("test", argv, NULL, &res, &err);
		if (j->rc != 0 || strcmp(res.out, j->word) != 0) {
			j->out = strdup(res.out ? res.out : "(null)");
			vmd_run_result_free(&res);
			return NULL;
		}
		vmd_run_result_free(&res);
	}
	return NULL;
}

static void test_concurrent_runs(void **state)
{
	struct thread_job jobs[8];

	(void)state;
	for (int i = 0; i < 8; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		snprintf(jobs[i].word, sizeof(jobs[i].word), "job-%d", i);
		assert_int_equal(pthread_create(&jobs[i].th, NULL,
		                                thread_main, &jobs[i]),
		                 0);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(jobs[i].th, NULL), 0);
		if (jobs[i].out)
			fail_msg("%s got '%s'", jobs[i].word, jobs[i].out);
		assert_int_equal(jobs[i].rc, 0);
	}
}

/* The runner must never hand a command line to a shell. */
static void test_source_names_no_shell(void **state)
{
	static const char *const banned[] = {"/bin/sh", "\"sh\"", "system(",
	                                     "popen(", "execl(", "\"-c\""};
	const char *dir = getenv("VMDISK_SOURCE_DIR");
	char path[4096];
	char *text;
	long len;
	FILE *f;

	(void)state;
	if (!dir)
		fail_msg("VMDISK_SOURCE_DIR is not set (run via meson test)");
	snprintf(path, sizeof(path), "%s/lib/util/runner.c", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len > 1000);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	assert_non_null(text);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	assert_contains(text, "posix_spawn(");
	assert_not_contains(text, "posix_spawnp");
	for (size_t i = 0; i < ELEMENTSOF(banned); i++)
		if (strstr(text, banned[i]))
			fail_msg("lib/util/runner.c contains %s", banned[i]);
	free(text);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_true_false, teardown),
		cmocka_unit_test_teardown(test_ok_status, teardown),
		cmocka_unit_test_teardown(test_argv_verbatim, teardown),
		cmocka_unit_test_teardown(test_env_fixed, teardown),
		cmocka_unit_test_teardown(test_bad_env, teardown),
		cmocka_unit_test_teardown(test_timeout, teardown),
		cmocka_unit_test_teardown(test_timeout_kills_group, teardown),
		cmocka_unit_test_teardown(test_killed_by_signal, teardown),
		cmocka_unit_test_teardown(test_timeout_after_eof, teardown),
		cmocka_unit_test_teardown(test_capture_bound, teardown),
		cmocka_unit_test_teardown(test_stderr_captured, teardown),
		cmocka_unit_test_teardown(test_stderr_tail_in_detail, teardown),
		cmocka_unit_test_teardown(test_not_found, teardown),
		cmocka_unit_test_teardown(test_path_is_fixed, teardown),
		cmocka_unit_test_teardown(test_relative_refused, teardown),
		cmocka_unit_test_teardown(test_child_state, teardown),
		cmocka_unit_test_teardown(test_format_argv, teardown),
		cmocka_unit_test_teardown(test_secret_redaction, teardown),
		cmocka_unit_test_teardown(test_concurrent_runs, teardown),
		cmocka_unit_test_teardown(test_reason_passed_on, teardown),
		cmocka_unit_test_teardown(test_reason_never_a_secret, teardown),
		cmocka_unit_test(test_source_names_no_shell),
	};

	if (argc == 2 && strcmp(argv[1], CLOSE_AND_SLEEP) == 0) {
		fputs("closing", stdout);
		fflush(stdout);
		close(1);
		close(2);
		sleep(30);
		return 0;
	}
	return cmocka_run_group_tests_name("runner", tests, setup, NULL);
}
