/*
 * The runner (see runner.h): the one place that starts a process.
 *
 * Backends call qemu-img, lvcreate, rbd and friends through vmd_run(). The
 * program is resolved here against a fixed search path (never the caller's
 * $PATH, never a relative path) and started with posix_spawn, so arguments
 * reach it exactly as given: no command line is ever built or re-parsed.
 *
 * The child starts clean: a fixed environment, stdin from /dev/null (or
 * the one socket a helper talks over, stdio_fd), a fresh
 * process group, an empty signal mask with default dispositions (a daemon
 * that ignores SIGPIPE must not hand that on), and no descriptors beyond
 * 0-2. Its output is read with poll() against a deadline; when the deadline
 * passes the whole group is killed, so a helper the program forked cannot
 * outlive it.
 *
 * Nothing here is global: concurrent calls from several threads are fine.
 * Failures are reported once, here, with the (redacted) argv, the exit
 * status and the end of stderr in the detail.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "runner.h"
#include <vmdisk/log.h>

#define ENV_SLOTS 64         /* fixed entries + extras + NULL */
#define ARGV_LOG_MAX 1024    /* argv dump in the debug log */
#define ARGV_DETAIL_MAX 256  /* argv dump in an error detail */
#define STDERR_TAIL 400      /* stderr bytes quoted in an error detail */
#define STDERR_KEEP 2048     /* stderr tail kept regardless of capture_max */
#define READ_CHUNK 16384
#define PROG_NAME_MAX 64     /* program name in a public message */

/* One captured stream. */
struct capture {
	int fd;          /* read end, -1 once at EOF */
	struct vmd_buf buf; /* .data never NULL after capture_init; .max: the
	                     * most kept; .failed: out of memory, the bytes
	                     * that did not fit are counted as dropped */
	size_t dropped;
	/* The last bytes of the stream, kept apart from buf so that an error
	 * quotes how the program ended even when buf stopped filling early. */
	char *tail;
	size_t tail_len;
};

struct run_state {
	int out_w;
	int err_w;
	struct capture out;
	struct capture err;
};

static void run_state_release(struct run_state *st)
{
	struct capture *caps[] = {&st->out, &st->err};

	if (st->out_w >= 0)
		close(st->out_w);
	if (st->err_w >= 0)
		close(st->err_w);
	for (size_t i = 0; i < 2; i++) {
		if (caps[i]->fd >= 0)
			close(caps[i]->fd);
		vmd_buf_free(&caps[i]->buf);
		free(caps[i]->tail);
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* ---- argv dump ---- */

static bool shell_safe(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("_./=:,+-", c) != NULL;
}

struct outbuf {
	char *p;
	size_t size; /* usable bytes, the NUL not counted */
	size_t len;
	bool truncated;
};

static void out_putc(struct outbuf *o, char c)
{
	if (o->len < o->size)
		o->p[o->len++] = c;
	else
		o->truncated = true;
}

static void out_puts(struct outbuf *o, const char *s)
{
	while (*s)
		out_putc(o, *s++);
}

/* Quote one (already redacted) argument so the dump reads like a command
 * line; control characters become '?' so that an argument cannot break or
 * forge a log line. */
static void out_quoted(struct outbuf *o, const char *arg)
{
	bool plain = *arg != '\0';

	for (const char *p = arg; *p && plain; p++)
		plain = shell_safe(*p);
	if (plain) {
		out_puts(o, arg);
		return;
	}
	out_putc(o, '\'');
	for (const char *p = arg; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\'')
			out_puts(o, "'\\''");
		else if (c < 0x20 || c == 0x7f)
			out_putc(o, '?');
		else
			out_putc(o, (char)c);
	}
	out_putc(o, '\'');
}

void vmd_run_format_argv(const char *const *argv, char *buf, size_t bufsz)
{
	struct outbuf o;
	char *raw;

	if (!buf || bufsz == 0)
		return;
	buf[0] = '\0';
	if (!argv)
		return;
	raw = malloc(bufsz);
	if (!raw) {
		snprintf(buf, bufsz, "(argv not shown: out of memory)");
		return;
	}
	o = (struct outbuf){raw, bufsz - 1, 0, false};
	for (size_t i = 0; argv[i] && !o.truncated; i++) {
		/* Redact each argument whole, before quoting and truncation
		 * could split a secret into pieces no longer recognised. */
		size_t alen = strlen(argv[i]);
		char *red = malloc(alen + 1);

		if (i > 0)
			out_putc(&o, ' ');
		if (!red) {
			out_putc(&o, '?');
			continue;
		}
		vmd_redact(argv[i], red, alen + 1);
		out_quoted(&o, red);
		explicit_bzero(red, alen + 1);
		free(red);
	}
	if (o.truncated && o.size >= 3)
		memcpy(raw + o.size - 3, "...", 3);
	raw[o.truncated ? o.size : o.len] = '\0';
	/* Second pass for a secret that spans two arguments. */
	vmd_redact(raw, buf, bufsz);
	explicit_bzero(raw, bufsz);
	free(raw);
}

/* ---- program and environment ---- */

static bool is_exec_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	       access(path, X_OK) == 0;
}

static void prog_msg(char *msg, size_t msgsz, const char *step,
                     const char *prog, const char *what)
{
	snprintf(msg, msgsz, "%s: %.*s %s", step, PROG_NAME_MAX,
	         base_name(prog), what);
}

/*
 * argv[0] -> absolute path of an executable file. A bare name is looked up
 * in VMD_RUN_PATH only; a name with a slash must be absolute, because a
 * relative one would depend on the working directory of whoever runs us.
 */
static int resolve_program(const char *step, const char *name, char *path,
                           size_t pathsz, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX];
	const char *dir = VMD_RUN_PATH;

	if (strchr(name, '/')) {
		if (name[0] != '/') {
			snprintf(msg, sizeof(msg),
			         "%s: relative program path refused", step);
			return vmd_error_set(err, VMD_E_INVAL, msg,
			                     "program '%s' has a slash but is "
			                     "not an absolute path", name);
		}
		if (strlen(name) >= pathsz) {
			prog_msg(msg, sizeof(msg), step, name, "not found");
			return vmd_error_set(err, VMD_E_INVAL, msg,
			                     "program path too long");
		}
		if (!is_exec_file(name)) {
			int e = errno;

			prog_msg(msg, sizeof(msg), step, name, "not found");
			return vmd_error_set_errno(err, VMD_E_NOTFOUND, e, msg,
			                           "%s is not an executable "
			                           "file", name);
		}
		memcpy(path, name, strlen(name) + 1);
		return 0;
	}
	if (name[0] == '\0' || strlen(name) > NAME_MAX) {
		snprintf(msg, sizeof(msg), "%s: bad program name", step);
		return vmd_error_set(err, VMD_E_INVAL, msg,
		                     "empty or overlong program name");
	}
	while (*dir) {
		size_t dlen = strcspn(dir, ":");
		int n = snprintf(path, pathsz, "%.*s/%s", (int)dlen, dir, name);

		if (n > 0 && (size_t)n < pathsz && is_exec_file(path))
			return 0;
		dir += dlen;
		if (*dir == ':')
			dir++;
	}
	path[0] = '\0';
	prog_msg(msg, sizeof(msg), step, name, "not found");
	return vmd_error_set(err, VMD_E_NOTFOUND, msg,
	                     "no executable '%.*s' in %s", PROG_NAME_MAX, name,
	                     VMD_RUN_PATH);
}

static bool valid_env_name(const char *s, size_t len)
{
	if (len == 0 || !((s[0] >= 'A' && s[0] <= 'Z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/*
 * The fixed environment plus the caller's extras. An extra may replace
 * LC_ALL or an earlier extra but never PATH, which is what makes the
 * program lookup of the child itself predictable. Values are never quoted
 * in errors: an extra is the usual way to hand a passphrase to a tool.
 */
static int build_env(const char *step, const char *const *extra,
                     const char **envp, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX];
	size_t n = 0;

	envp[n++] = "PATH=" VMD_RUN_PATH;
	envp[n++] = "LC_ALL=C";
	for (size_t i = 0; extra && extra[i]; i++) {
		const char *eq = strchr(extra[i], '=');
		size_t nlen = eq ? (size_t)(eq - extra[i]) : 0;
		size_t j;

		snprintf(msg, sizeof(msg), "%s: bad environment entry", step);
		if (!eq || !valid_env_name(extra[i], nlen))
			return vmd_error_set(err, VMD_E_INVAL, msg,
			                     "extra_env[%zu] is not NAME=value "
			                     "with NAME in [A-Z_][A-Z0-9_]*",
			                     i);
		if (nlen == 4 && memcmp(extra[i], "PATH", 4) == 0)
			return vmd_error_set(err, VMD_E_INVAL, msg,
			                     "extra_env may not replace PATH");
		for (j = 0; j < n; j++)
			if (strncmp(envp[j], extra[i], nlen + 1) == 0)
				break;
		if (j == n && n + 1 >= ENV_SLOTS)
			return vmd_error_set(err, VMD_E_INVAL, msg,
			                     "more than %d extra_env entries",
			                     ENV_SLOTS - 3);
		envp[j] = extra[i];
		if (j == n)
			n++;
	}
	envp[n] = NULL;
	return 0;
}

/* ---- spawning ---- */

/* A pipe whose ends are both above 2, so that dup2 onto 1 or 2 in the child
 * never meets an fd that is already there (and would keep its CLOEXEC). */
static int make_pipe(int fds[2])
{
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	for (int i = 0; i < 2; i++) {
		int moved;

		if (fds[i] > 2)
			continue;
		moved = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
		if (moved < 0) {
			int e = errno;

			close(fds[0]);
			close(fds[1]);
			errno = e;
			return -1;
		}
		close(fds[i]);
		fds[i] = moved;
	}
	return 0;
}

/* stdio_fd 0: stdin /dev/null, stdout out_w; otherwise stdio_fd is both. */
static int setup_actions(posix_spawn_file_actions_t *fa, int stdio_fd,
                         int out_w, int err_w)
{
	int rc;

	if (stdio_fd > 2) {
		rc = posix_spawn_file_actions_adddup2(fa, stdio_fd, 0);
		if (!rc)
			rc = posix_spawn_file_actions_adddup2(fa, stdio_fd, 1);
	} else {
		rc = posix_spawn_file_actions_addopen(fa, 0, "/dev/null",
		                                      O_RDONLY, 0);
		if (!rc)
			rc = posix_spawn_file_actions_adddup2(fa, out_w, 1);
	}
	if (!rc)
		rc = posix_spawn_file_actions_adddup2(fa, err_w, 2);
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 34)
	/* Descriptors that some library opened without O_CLOEXEC. */
	if (!rc)
		rc = posix_spawn_file_actions_addclosefrom_np(fa, 3);
#endif
#endif
	return rc;
}

static int setup_attr(posix_spawnattr_t *attr)
{
	sigset_t none, all;
	int rc;

	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	rc = posix_spawnattr_setsigmask(attr, &none);
	if (!rc)
		rc = posix_spawnattr_setsigdefault(attr, &all);
	if (!rc)
		rc = posix_spawnattr_setpgroup(attr, 0);
	if (!rc)
		rc = posix_spawnattr_setflags(
			attr, (short)(POSIX_SPAWN_SETPGROUP |
		                      POSIX_SPAWN_SETSIGMASK |
		                      POSIX_SPAWN_SETSIGDEF));
	return rc;
}

/* Returns 0 or an errno value, as posix_spawn does. */
static int spawn_child(const char *path, const char *const *argv,
                       const char *const *envp, int stdio_fd, int out_w,
                       int err_w, pid_t *pid)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	int rc;

	rc = posix_spawn_file_actions_init(&fa);
	if (rc)
		return rc;
	rc = posix_spawnattr_init(&attr);
	if (rc) {
		posix_spawn_file_actions_destroy(&fa);
		return rc;
	}
	rc = setup_actions(&fa, stdio_fd, out_w, err_w);
	if (!rc)
		rc = setup_attr(&attr);
	/* posix_spawn's prototype predates const; it does not write. */
	if (!rc)
		rc = posix_spawn(pid, path, &fa, &attr, (char *const *)argv,
		                 (char *const *)envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	return rc;
}

/* ---- collecting output ---- */

static int capture_init(struct capture *c, int fd, size_t max, bool keep_tail)
{
	c->fd = fd;
	c->buf.max = max;
	if (vmd_buf_append(&c->buf, "", 0) < 0)
		return -1;
	if (keep_tail) {
		c->tail = malloc(STDERR_KEEP);
		if (!c->tail)
			return -1;
	}
	return 0;
}

static void capture_keep_tail(struct capture *c, const char *data, size_t n)
{
	if (!c->tail)
		return;
	if (n >= STDERR_KEEP) {
		memcpy(c->tail, data + n - STDERR_KEEP, STDERR_KEEP);
		c->tail_len = STDERR_KEEP;
		return;
	}
	if (c->tail_len + n > STDERR_KEEP) {
		size_t drop = c->tail_len + n - STDERR_KEEP;

		memmove(c->tail, c->tail + drop, c->tail_len - drop);
		c->tail_len -= drop;
	}
	memcpy(c->tail + c->tail_len, data, n);
	c->tail_len += n;
}

static void capture_add(struct capture *c, const char *data, size_t n)
{
	size_t room = c->buf.max - c->buf.len;
	size_t keep = n < room ? n : room;

	capture_keep_tail(c, data, n);
	if (keep > 0 && vmd_buf_append(&c->buf, data, keep) < 0)
		keep = 0;
	c->dropped += n - keep;
}

/* One read from a readable stream. Returns 0, or an errno value. */
static int capture_read(struct capture *c)
{
	char chunk[READ_CHUNK];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));

	if (n < 0)
		return (errno == EINTR || errno == EAGAIN) ? 0 : errno;
	if (n == 0) {
		close(c->fd);
		c->fd = -1;
		return 0;
	}
	capture_add(c, chunk, (size_t)n);
	return 0;
}

/*
 * Read both streams until EOF or the deadline. Returns 0 at EOF, ETIMEDOUT
 * at the deadline, or the errno of a failed poll/read.
 */
static int collect_output(struct run_state *st, int64_t deadline)
{
	struct capture *caps[] = {&st->out, &st->err};

	while (st->out.fd >= 0 || st->err.fd >= 0) {
		struct pollfd pfd[2];
		struct capture *which[2];
		nfds_t nfds = 0;
		int64_t left = deadline - now_ms();
		int rc;

		if (left <= 0)
			return ETIMEDOUT;
		for (size_t i = 0; i < 2; i++) {
			if (caps[i]->fd < 0)
				continue;
			pfd[nfds] = (struct pollfd){caps[i]->fd, POLLIN, 0};
			which[nfds++] = caps[i];
		}
		rc = poll(pfd, nfds, left > INT_MAX ? INT_MAX : (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return errno;
		for (nfds_t i = 0; i < nfds; i++) {
			int e;

			if (!pfd[i].revents)
				continue;
			e = capture_read(which[i]);
			if (e)
				return e;
		}
	}
	return 0;
}

static int waitpid_retry(pid_t pid, int *status, int flags)
{
	pid_t r;

	do
		r = waitpid(pid, status, flags);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -1 : (int)(r == pid);
}

/*
 * The pipes are closed, but a program may close its output and go on
 * running; keep to the deadline while waiting. Returns 1 when reaped, 0 at
 * the deadline, -1 (errno set) when waitpid fails.
 */
static int wait_child(pid_t pid, int *status, int64_t deadline)
{
	long nap_us = 1000;

	for (;;) {
		int r = waitpid_retry(pid, status, WNOHANG);
		struct timespec ts;
		int64_t left;

		if (r != 0)
			return r;
		left = deadline - now_ms();
		if (left <= 0)
			return 0;
		if (nap_us / 1000 > left)
			nap_us = (long)left * 1000;
		ts.tv_sec = nap_us / 1000000;
		ts.tv_nsec = (nap_us % 1000000) * 1000;
		nanosleep(&ts, NULL);
		if (nap_us < 50000)
			nap_us *= 2;
	}
}

/* Kill the child's whole process group, then reap the child. */
static void kill_and_reap(pid_t pid, int *status)
{
	kill(-pid, SIGKILL);
	kill(pid, SIGKILL); /* in case it left the group we gave it */
	if (waitpid_retry(pid, status, 0) != 1)
		*status = W_EXITCODE(0, SIGKILL);
}

/* ---- reporting ---- */

static bool status_ok(int status, const int *ok_status)
{
	if (status == 0)
		return true;
	for (size_t i = 0; ok_status && ok_status[i] != -1; i++)
		if (ok_status[i] == status)
			return true;
	return false;
}

/*
 * The last STDERR_TAIL bytes of stderr, on one line, redacted. Redaction
 * runs over the whole kept tail before it is cut down, so a secret is never
 * split by the cut.
 */
static void stderr_tail(const struct capture *c, char *out, size_t outsz)
{
	char *text;
	const char *start, *from;
	size_t len;

	out[0] = '\0';
	if (!c->tail || c->tail_len == 0)
		return;
	text = malloc(2 * (c->tail_len + 1));
	if (!text)
		return;
	memcpy(text, c->tail, c->tail_len);
	text[c->tail_len] = '\0';
	from = text;
	/* When older output was dropped, start at a line boundary. */
	if (c->tail_len == STDERR_KEEP) {
		const char *nl = memchr(text, '\n', c->tail_len / 2);

		if (nl)
			from = nl + 1;
	}
	start = text + c->tail_len + 1;
	len = vmd_redact(from, (char *)start, c->tail_len + 1);
	while (len > 0 && (start[len - 1] == '\n' || start[len - 1] == ' ' ||
	                   start[len - 1] == '\r' || start[len - 1] == '\t'))
		len--;
	if (len > STDERR_TAIL)
		snprintf(out, outsz, "...%.*s", STDERR_TAIL,
		         start + len - STDERR_TAIL);
	else
		snprintf(out, outsz, "%.*s", (int)len, start);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	explicit_bzero(text, 2 * (c->tail_len + 1));
	free(text);
}

/* ---- the program's own reason (pass_reason) ---- */

static bool path_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || strchr("._-~+", c) != NULL;
}

/* A run that the error-exposure rule (tests/suite/reliability/
 * errors_check.py, rule 4) would take for a secret: 32 hex digits, or 24
 * base64-like characters mixing digits, upper and lower case. */
static bool has_secret_like_run(const char *s)
{
	size_t hex = 0, b64 = 0;
	bool digit = false, upper = false, lower = false;

	for (const char *p = s;; p++) {
		char c = *p;
		bool is_hex = (c >= '0' && c <= '9') ||
		              (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
		bool is_b64 = c && (path_char(c) || c == '/' || c == '=') &&
		              c != '.' && c != '~';

		hex = is_hex ? hex + 1 : 0;
		if (hex >= 32)
			return true;
		if (!is_b64) {
			if (b64 >= 24 && digit && upper && lower)
				return true;
			b64 = 0;
			digit = upper = lower = false;
			if (!c)
				return false;
			continue;
		}
		b64++;
		digit |= c >= '0' && c <= '9';
		upper |= c >= 'A' && c <= 'Z';
		lower |= c >= 'a' && c <= 'z';
	}
}

/* Copy `line` (len bytes) to `out` with every absolute path (a '/' that
 * starts a word) replaced by "(path)": the file we gave a tool is ours,
 * and a path of the host is an internal. Returns false when a byte is not
 * printable ASCII (a tool speaking LC_ALL=C has no business sending one)
 * or the result does not fit. */
static bool reason_clean(const char *line, size_t len, char *out,
                         size_t outsz)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = line[i] == '\t' ? ' ' : line[i];

		if (c < 0x20 || c > 0x7e)
			return false;
		if (c == '/' && (i == 0 || !path_char(line[i - 1]))) {
			while (i + 1 < len && !strchr(" \t'\",;:)]", line[i + 1]))
				i++;
			if (o + 6 >= outsz)
				return false;
			memcpy(out + o, "(path)", 6);
			o += 6;
			continue;
		}
		if (o + 1 >= outsz)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
}

/* Working copies of stderr: zeroed before they are freed, as the tail
 * in an error detail is (stderr may have held a secret). */
struct scratch {
	char *p;
	size_t n;
};

static void scratch_release(struct scratch *s)
{
	if (!s->p)
		return;
	explicit_bzero(s->p, s->n);
	free(s->p);
	s->p = NULL;
}

/*
 * The program's reason for failing, fit for the public message, or "".
 * The last non-empty line of stderr, but before a usage text (mkfs.xfs
 * states its reason and then prints its usage); a leading "<program>: "
 * is dropped (the message names the program already). Refused whole,
 * never trimmed into shape, when it held a registered secret (redaction
 * changed it), a byte that is not printable ASCII, or a secret-like run;
 * cut to VMD_RUN_REASON_MAX.
 */
static void stderr_reason(const struct capture *c, const char *prog,
                          char *out, size_t outsz)
{
	_cleanup_(scratch_release) struct scratch work = {NULL, 0};
	char *text, *red, *clean;
	const char *p, *end, *last = NULL;
	size_t last_len = 0, plen = strlen(prog), len, cap;

	out[0] = '\0';
	if (!c->tail || c->tail_len == 0)
		return;
	/* The line, its redaction, and its cleaned copy (paths can grow it:
	 * "/" becomes "(path)"). */
	cap = c->tail_len + 1;
	work.n = 2 * cap + 6 * cap;
	work.p = malloc(work.n);
	if (!work.p)
		return;
	text = work.p;
	red = text + cap;
	clean = red + cap;
	memcpy(text, c->tail, c->tail_len);
	text[c->tail_len] = '\0';
	p = text;
	end = text + c->tail_len;
	/* Older output was dropped: the first line may be a piece. */
	if (c->tail_len == STDERR_KEEP) {
		const char *nl = memchr(p, '\n', c->tail_len);

		p = nl ? nl + 1 : end;
	}
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *w = p;

		while (w < p + n && (*w == ' ' || *w == '\t'))
			w++;
		if (p + n - w >= 6 && strncasecmp(w, "usage:", 6) == 0)
			break;
		if (w < p + n) {
			last = w;
			last_len = (size_t)(p + n - w);
		}
		p += n + 1;
	}
	while (last_len > 0 && (last[last_len - 1] == ' ' ||
	                        last[last_len - 1] == '\t' ||
	                        last[last_len - 1] == '\r'))
		last_len--;
	if (!last || last_len == 0)
		return;
	if (last_len > plen + 2 && memcmp(last, prog, plen) == 0 &&
	    memcmp(last + plen, ": ", 2) == 0) {
		last += plen + 2;
		last_len -= plen + 2;
	}
	memmove(text, last, last_len); /* last points into text */
	text[last_len] = '\0';
	len = vmd_redact(text, red, cap);
	if (len != last_len || memcmp(red, text, len) != 0)
		return; /* a registered secret was in it */
	if (!reason_clean(red, len, clean, 6 * cap) ||
	    has_secret_like_run(clean) || clean[0] == '\0')
		return;
	len = strlen(clean);
	if (len > VMD_RUN_REASON_MAX)
		snprintf(out, outsz, "%.*s...", VMD_RUN_REASON_MAX - 3, clean);
	else
		snprintf(out, outsz, "%s", clean);
}

static void result_take(struct vmd_run_result *res, struct run_state *st,
                        int status, bool timed_out)
{
	if (!res)
		return;
	res->exit_status = status;
	res->timed_out = timed_out;
	res->out_len = st->out.buf.len;
	res->out = TAKE_PTR(st->out.buf.data);
	res->out_dropped = st->out.dropped;
	res->err_len = st->err.buf.len;
	res->err = TAKE_PTR(st->err.buf.data);
	res->err_dropped = st->err.dropped;
}

static int report(const char *step, const char *const *argv,
                  const struct run_state *st, int wstatus, int status,
                  bool timed_out, int64_t timeout_ms, int io_errno,
                  bool pass_reason, struct vmd_error *err)
{
	char msg[VMD_ERROR_MSG_MAX];
	char dump[ARGV_DETAIL_MAX];
	char tail[STDERR_TAIL + 8];
	char reason[VMD_RUN_REASON_MAX + 1];
	char how[64];

	vmd_run_format_argv(argv, dump, sizeof(dump));
	stderr_tail(&st->err, tail, sizeof(tail));
	if (WIFSIGNALED(wstatus))
		snprintf(how, sizeof(how), "status %d (killed by signal %d)",
		         status, WTERMSIG(wstatus));
	else
		snprintf(how, sizeof(how), "status %d", status);
	if (timed_out) {
		prog_msg(msg, sizeof(msg), step, argv[0], "timed out");
		return vmd_error_set(err, VMD_E_EXTERNAL, msg,
		                     "%s: timed out after %lld ms, process "
		                     "group killed; stderr: %s",
		                     dump, (long long)timeout_ms,
		                     tail[0] ? tail : "(empty)");
	}
	prog_msg(msg, sizeof(msg), step, argv[0], "failed");
	if (io_errno)
		return vmd_error_set_errno(err, VMD_E_IO, io_errno, msg,
		                           "%s: reading its output", dump);
	if (st->out.buf.failed || st->err.buf.failed)
		return vmd_error_set(err, VMD_E_NOMEM, msg,
		                     "%s: out of memory capturing output",
		                     dump);
	if (pass_reason) {
		char prog[PROG_NAME_MAX + 1];

		snprintf(prog, sizeof(prog), "%s", base_name(argv[0]));
		stderr_reason(&st->err, prog, reason, sizeof(reason));
		/* msg is "<step>: <program> failed", always shorter. */
		if (reason[0])
			snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg),
			         ": %s", reason);
	}
	return vmd_error_set(err, VMD_E_EXTERNAL, msg,
	                     "%s: exited with %s; stderr: %s", dump, how,
	                     tail[0] ? tail : "(empty)");
}

/* ---- entry points ---- */

int vmd_run(const char *step, const char *const *argv,
            const struct vmd_run_opts *opts, struct vmd_run_result *res,
            struct vmd_error *err)
{
	struct vmd_run_opts o = {0};
	_cleanup_(run_state_release) struct run_state st = {
		.out_w = -1, .err_w = -1, .out = {.fd = -1}, .err = {.fd = -1}};
	const char *envp[ENV_SLOTS];
	char path[PATH_MAX];
	char dump[ARGV_LOG_MAX];
	char msg[VMD_ERROR_MSG_MAX];
	int pipes[2][2];
	int64_t deadline;
	pid_t pid;
	int rc, wstatus = 0, status = -1, io_errno = 0;
	bool timed_out = false;

	if (res)
		memset(res, 0, sizeof(*res));
	if (opts)
		o = *opts;
	if (!step)
		step = "run";
	if (!argv || !argv[0]) {
		snprintf(msg, sizeof(msg), "%s: no program given", step);
		return vmd_error_set(err, VMD_E_INVAL, msg, "argv is empty");
	}
	if (o.timeout_ms < 0 || o.capture_max == SIZE_MAX ||
	    (o.stdio_fd != 0 && o.stdio_fd <= 2)) {
		snprintf(msg, sizeof(msg), "%s: bad run options", step);
		return vmd_error_set(err, VMD_E_INVAL, msg,
		                     "timeout_ms %d, capture_max %zu, stdio_fd %d",
		                     o.timeout_ms, o.capture_max, o.stdio_fd);
	}
	if (o.timeout_ms == 0)
		o.timeout_ms = VMD_RUN_DEFAULT_TIMEOUT_MS;
	if (o.capture_max == 0)
		o.capture_max = VMD_RUN_DEFAULT_CAPTURE;

	rc = resolve_program(step, argv[0], path, sizeof(path), err);
	if (rc < 0)
		return rc;
	rc = build_env(step, o.extra_env, envp, err);
	if (rc < 0)
		return rc;
	if (capture_init(&st.out, -1, o.capture_max, false) < 0 ||
	    capture_init(&st.err, -1, o.capture_max, true) < 0) {
		prog_msg(msg, sizeof(msg), step, argv[0], "failed");
		return vmd_error_set(err, VMD_E_NOMEM, msg, "out of memory");
	}
	/* With stdio_fd the child's stdout is that socket: no pipe. */
	if (o.stdio_fd == 0) {
		if (make_pipe(pipes[0]) < 0) {
			prog_msg(msg, sizeof(msg), step, argv[0], "failed");
			return vmd_error_set_errno(err, VMD_E_IO, errno, msg,
			                           "pipe");
		}
		st.out.fd = pipes[0][0];
		st.out_w = pipes[0][1];
	}
	if (make_pipe(pipes[1]) < 0) {
		prog_msg(msg, sizeof(msg), step, argv[0], "failed");
		return vmd_error_set_errno(err, VMD_E_IO, errno, msg, "pipe");
	}
	st.err.fd = pipes[1][0];
	st.err_w = pipes[1][1];

	vmd_run_format_argv(argv, dump, sizeof(dump));
	vmd_log_debug("%s: running %s", step, dump);
	rc = spawn_child(path, argv, envp, o.stdio_fd, st.out_w, st.err_w,
	                 &pid);
	if (rc) {
		/* glibc reports a failed exec here too (the file vanished or
		 * became unexecutable since we looked). */
		bool missing = rc == ENOENT || rc == ENOTDIR || rc == EACCES;

		prog_msg(msg, sizeof(msg), step, argv[0],
		         missing ? "not found" : "failed");
		return vmd_error_set_errno(
			err, missing ? VMD_E_NOTFOUND
			             : rc == ENOMEM ? VMD_E_NOMEM
			                            : VMD_E_EXTERNAL,
			rc, msg, "posix_spawn %s", path);
	}
	/* Our copies of the write ends would keep EOF from ever coming. */
	if (st.out_w >= 0)
		close(st.out_w);
	close(st.err_w);
	st.out_w = st.err_w = -1;

	deadline = now_ms() + o.timeout_ms;
	rc = collect_output(&st, deadline);
	if (rc == ETIMEDOUT) {
		timed_out = true;
	} else if (rc) {
		io_errno = rc;
		kill_and_reap(pid, &wstatus);
	}
	if (!timed_out && !io_errno) {
		int w = wait_child(pid, &wstatus, deadline);

		if (w < 0) {
			/* Only when someone else reaps our children, e.g.
			 * SIGCHLD set to SIG_IGN in this process. */
			int e = errno;

			result_take(res, &st, -1, false);
			prog_msg(msg, sizeof(msg), step, argv[0], "failed");
			return vmd_error_set_errno(err, VMD_E_EXTERNAL, e, msg,
			                           "waitpid %ld",
			                           (long)pid);
		}
		timed_out = w == 0;
	}
	if (timed_out)
		kill_and_reap(pid, &wstatus);

	if (WIFEXITED(wstatus))
		status = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		status = 128 + WTERMSIG(wstatus);
	if (timed_out || io_errno || st.out.buf.failed || st.err.buf.failed ||
	    !status_ok(status, o.ok_status))
		rc = report(step, argv, &st, wstatus, status, timed_out,
		            o.timeout_ms, io_errno, o.pass_reason, err);
	else
		rc = 0;
	result_take(res, &st, status, timed_out);
	return rc;
}

void vmd_run_result_free(struct vmd_run_result *res)
{
	if (!res)
		return;
	free(res->out);
	free(res->err);
	memset(res, 0, sizeof(*res));
}
