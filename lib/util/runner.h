/*
 * The runner: the only place in vmdisk that starts a process.
 *
 * A program runs from an argv array through posix_spawn; there is no shell
 * anywhere. argv[0] must be a bare program name (looked up in a fixed PATH,
 * not the caller's) or an absolute path. The child gets a fixed minimal
 * environment (PATH, LC_ALL=C), stdin from /dev/null (or, with stdio_fd,
 * one socket as stdin and stdout), its own process group
 * (so a timeout kills the whole group) and no inherited descriptors beyond
 * 0-2 (everything we open is O_CLOEXEC). Output is captured up to a bound;
 * the rest is read and dropped so the child never blocks on a full pipe.
 */
#ifndef VMDISK_RUNNER_H
#define VMDISK_RUNNER_H

#include <stdbool.h>
#include <stddef.h>

#include <vmdisk/error.h>

#define VMD_RUN_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define VMD_RUN_DEFAULT_TIMEOUT_MS 600000
#define VMD_RUN_DEFAULT_CAPTURE 65536

struct vmd_run_opts {
	int timeout_ms;        /* 0 = VMD_RUN_DEFAULT_TIMEOUT_MS */
	size_t capture_max;    /* per stream; 0 = VMD_RUN_DEFAULT_CAPTURE */
	/* Extra "NAME=value" entries added to the fixed environment, NULL-ended.
	 * Names must be [A-Z_][A-Z0-9_]*; PATH cannot be replaced. */
	const char *const *extra_env;
	/* Exit statuses other than 0 that count as success (e.g. 1 for
	 * `qemu-img compare` "differ" when the caller inspects it), -1-ended. */
	const int *ok_status;
	/* 0: stdin from /dev/null, stdout captured. Otherwise a descriptor
	 * above 2 (one end of a socketpair) that becomes the child's stdin
	 * and stdout, for a helper that talks over it (vmdiskd --stdio); the
	 * caller writes its input there before and reads the answer after
	 * (the socket holds both), `out` stays empty. stderr is captured as
	 * ever. */
	int stdio_fd;
	/* The program's own one-line reason may go into the public message
	 * ("<step>: <program> failed: <reason>"): the caller vouches that
	 * nothing in this program's argv or environment is a secret or a
	 * backend setting (which a reason could echo). The runner then takes
	 * the last non-empty stderr line before any usage text, and only
	 * when it survives the rules of stderr_reason() in runner.c: no
	 * registered secret, printable ASCII, absolute paths replaced, no
	 * long hex or base64-like run, at most VMD_RUN_REASON_MAX bytes. */
	bool pass_reason;
};

#define VMD_RUN_REASON_MAX 96

struct vmd_run_result {
	int exit_status;     /* exit code, or 128+signal if killed */
	int timed_out;
	char *out;           /* captured stdout, NUL-terminated (never NULL) */
	size_t out_len;
	char *err;           /* captured stderr, NUL-terminated (never NULL) */
	size_t err_len;
	size_t out_dropped;  /* bytes read past capture_max and dropped */
	size_t err_dropped;
};

/*
 * Run argv and wait. Returns 0 when the program ran and exited with 0 (or an
 * ok_status); otherwise a negative vmd_errc with `step` as the public message
 * ("<step>: <program> failed") and exit status and stderr tail as the detail.
 * `res` may be NULL; when given it is filled in every case where the program
 * started and must be released with vmd_run_result_free.
 */
int vmd_run(const char *step, const char *const *argv,
            const struct vmd_run_opts *opts, struct vmd_run_result *res,
            struct vmd_error *err);

void vmd_run_result_free(struct vmd_run_result *res);

/* "argv[0] 'arg 1' ..." with secrets redacted, for logs. */
void vmd_run_format_argv(const char *const *argv, char *buf, size_t bufsz);

#endif
