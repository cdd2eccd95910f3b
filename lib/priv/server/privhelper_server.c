/*
 * The daemon side of the privileged helper (tools/vmdiskd.c): the policy
 * file, the audit log, the socket server and the one-shot stdio server
 * that root's vmd_priv_run starts (see privhelper_server.h).
 *
 * One thread per connection, at most max_conns at a time, one request per
 * connection: a client that sends nothing, or dribbles, is cut off when its
 * read deadline passes, and a slow operation holds only its own thread.
 * A connection takes one of the max_clients run slots only once its whole
 * request has been read and allowed, and waits for one rather than being
 * refused: granted clients that send slowly (or not at all) hold a
 * connection each until their deadline, never the slots the requests of
 * others run in, so they cannot get those answered "busy".
 * The policy is read again for every request, so an edit applies at once
 * and a broken file refuses everything (fail closed).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <ini.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <vmdisk/log.h>

#include "cleanup.h"
#include "privhelper_server.h"

#define POLICY_FILE_MAX (64 * 1024)
#define POLICY_RULES_MAX 256

/* ---- policy ---- */

struct policy_rule {
	bool is_gid;
	unsigned id;
	unsigned ops; /* bits 1 << enum vmd_priv_op */
	char name[48]; /* the key as written, for the audit */
	int line;      /* where it was written */
};

struct vmd_priv_policy {
	size_t n;
	struct policy_rule rules[POLICY_RULES_MAX];
};

struct policy_parse {
	struct vmd_priv_policy *pol;
	const char *why;
	/* our line reader (inih's own would not give the line numbers) */
	const char *text;
	int line;
	bool indented; /* the line starts with a blank: a continuation */
	/* a second rule for a user or group: its key and first line */
	char dup[48];
	int dup_first;
};

static bool parse_uint(const char *s, unsigned *out)
{
	unsigned long long v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned)(*s - '0');
		if (v > 0xfffffffeu)
			return false;
	}
	*out = (unsigned)v;
	return true;
}

/* A user or group by number or name. */
static bool lookup_id(bool is_gid, const char *s, unsigned *out)
{
	char buf[4096];

	if (parse_uint(s, out))
		return true;
	if (is_gid) {
		struct group gr, *res = NULL;

		if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) != 0 || !res)
			return false;
		*out = (unsigned)gr.gr_gid;
	} else {
		struct passwd pw, *res = NULL;

		if (getpwnam_r(s, &pw, buf, sizeof(buf), &res) != 0 || !res)
			return false;
		*out = (unsigned)pw.pw_uid;
	}
	return true;
}

static int parse_ops(const char *value, unsigned *ops)
{
	char item[32];

	*ops = 0;
	for (;;) {
		size_t n;
		enum vmd_priv_op op;

		while (*value == ' ')
			value++;
		n = strcspn(value, ", ");
		if (n == 0 || n >= sizeof(item))
			return -1;
		memcpy(item, value, n);
		item[n] = '\0';
		if (strcmp(item, "all") == 0) {
			for (unsigned i = 0; i < VMD_PRIV_OP_COUNT; i++)
				if (!vmd_priv_op_is_encryption(
				            (enum vmd_priv_op)i))
					*ops |= 1u << i;
		} else if (vmd_priv_op_parse(item, &op) == 0) {
			*ops |= 1u << op;
		} else {
			return -1;
		}
		value += n;
		while (*value == ' ')
			value++;
		if (*value == '\0')
			return 0;
		if (*value != ',')
			return -1;
		value++;
	}
}

static int on_policy(void *user, const char *section, const char *name,
                     const char *value)
{
	struct policy_parse *pp = user;
	struct policy_rule *r;

	if (strcmp(section, "allow") != 0) {
		pp->why = "only an [allow] section";
		return 0;
	}
	if (pp->pol->n >= POLICY_RULES_MAX) {
		pp->why = "too many rules";
		return 0;
	}
	r = &pp->pol->rules[pp->pol->n];
	if (strncmp(name, "uid.", 4) == 0)
		r->is_gid = false;
	else if (strncmp(name, "gid.", 4) == 0)
		r->is_gid = true;
	else {
		pp->why = "keys are uid.<user> or gid.<group>";
		return 0;
	}
	if (strlen(name) >= sizeof(r->name) ||
	    !lookup_id(r->is_gid, name + 4, &r->id)) {
		pp->why = "unknown user or group";
		return 0;
	}
	/* One rule per user or group: a second one (the same key, the same
	 * id by name and by number, or an indented continuation line that
	 * inih hands over as another value of the key before it) is more
	 * likely a typo than a wish to add grants, and is refused. */
	for (size_t i = 0; i < pp->pol->n; i++) {
		const struct policy_rule *o = &pp->pol->rules[i];

		if (o->is_gid != r->is_gid || o->id != r->id)
			continue;
		snprintf(pp->dup, sizeof(pp->dup), "%s", name);
		pp->dup_first = o->line;
		pp->why = pp->indented ? "continuation lines are not allowed"
		                       : "one rule per user or group";
		return 0;
	}
	if (parse_ops(value, &r->ops) < 0) {
		pp->why = "unknown operation";
		return 0;
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->line = pp->line;
	pp->pol->n++;
	return 1;
}

/* inih's line source: one line per call, numbered; a line longer than
 * inih's buffer is refused rather than split in two. */
static char *policy_line(char *buf, int bufsz, void *stream)
{
	struct policy_parse *pp = stream;
	size_t len;

	if (pp->why || !*pp->text)
		return NULL;
	len = strcspn(pp->text, "\n");
	if (pp->text[len] == '\n')
		len++;
	pp->line++;
	if (bufsz <= 0 || len >= (size_t)bufsz) {
		pp->why = "line too long";
		return NULL;
	}
	memcpy(buf, pp->text, len);
	buf[len] = '\0';
	pp->indented = buf[0] == ' ' || buf[0] == '\t';
	pp->text += len;
	return buf;
}

int vmd_priv_policy_load(const char *path, struct vmd_priv_policy **out,
                         struct vmd_error *err)
{
	_cleanup_(closep) int fd = -1;
	_cleanup_(freep) char *text = NULL;
	struct vmd_priv_policy *pol;
	struct policy_parse pp;
	struct stat st;
	size_t got = 0;
	int line;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_CONFIG, errno,
		                           "policy: cannot open the policy file",
		                           "open %s", path);
	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "policy: cannot read the policy file",
		                           "fstat %s", path);
	if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & 022) || st.st_size > POLICY_FILE_MAX)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "policy: policy file not trusted",
		                     "%s must be a regular file of at most %d "
		                     "bytes owned by root, writable by its "
		                     "owner only (mode %o, uid %u)",
		                     path, POLICY_FILE_MAX,
		                     (unsigned)(st.st_mode & 07777),
		                     (unsigned)st.st_uid);
	text = malloc((size_t)st.st_size + 1);
	if (!text)
		return vmd_error_set(err, VMD_E_NOMEM, "policy: out of memory",
		                     "policy file of %lld bytes",
		                     (long long)st.st_size);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, text + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vmd_error_set_errno(err, VMD_E_IO, errno,
			                           "policy: cannot read the "
			                           "policy file",
			                           "read %s", path);
		if (n == 0)
			break;
		got += (size_t)n;
	}
	text[got] = '\0';
	pol = calloc(1, sizeof(*pol));
	if (!pol)
		return vmd_error_set(err, VMD_E_NOMEM, "policy: out of memory",
		                     "calloc policy");
	memset(&pp, 0, sizeof(pp));
	pp.pol = pol;
	pp.text = text;
	line = ini_parse_stream(policy_line, &pp, on_policy, &pp);
	if (line == 0 && pp.why) /* the reader stopped */
		line = pp.line;
	if (line != 0) {
		char msg[VMD_ERROR_MSG_MAX];

		free(pol);
		if (pp.dup[0])
			snprintf(msg, sizeof(msg),
			         "policy: %s '%s' (lines %d and %d)",
			         pp.indented ? "continuation line for"
			                     : "second rule for",
			         pp.dup, pp.dup_first, line);
		else
			snprintf(msg, sizeof(msg), "policy: bad policy file");
		return vmd_error_set(err, VMD_E_CONFIG, msg,
		                     "%s line %d: %s", path, line,
		                     pp.why ? pp.why : "syntax error");
	}
	*out = pol;
	return 0;
}

void vmd_priv_policy_free(struct vmd_priv_policy *pol)
{
	free(pol);
}

/* The groups of uid's user (from the group database), gid included. */
static int groups_of(uid_t uid, gid_t gid, gid_t *groups, int max)
{
	char buf[4096];
	struct passwd pw, *res = NULL;
	int n = max;

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res) {
		groups[0] = gid;
		return 1;
	}
	if (getgrouplist(pw.pw_name, gid, groups, &n) < 0)
		n = max;
	return n;
}

bool vmd_priv_policy_allows(const struct vmd_priv_policy *pol, uid_t uid,
                            gid_t gid, enum vmd_priv_op op, char *why,
                            size_t whysz)
{
	gid_t groups[64];
	int ng = -1;

	if ((unsigned)op >= VMD_PRIV_OP_COUNT) {
		snprintf(why, whysz, "unknown op");
		return false;
	}
	for (size_t i = 0; i < pol->n; i++) {
		const struct policy_rule *r = &pol->rules[i];

		if (!(r->ops & (1u << op)))
			continue;
		if (!r->is_gid && r->id == (unsigned)uid) {
			snprintf(why, whysz, "granted by %s", r->name);
			return true;
		}
		if (!r->is_gid)
			continue;
		if (ng < 0)
			ng = groups_of(uid, gid, groups, 64);
		for (int g = 0; g < ng; g++) {
			if ((unsigned)groups[g] == r->id ||
			    (unsigned)gid == r->id) {
				snprintf(why, whysz, "granted by %s", r->name);
				return true;
			}
		}
	}
	snprintf(why, whysz, "no grant for %s", vmd_priv_op_name(op));
	return false;
}

/* ---- server ---- */

struct server {
	const struct vmd_config *cfg;
	const struct vmd_priv_ops *ops;
	int read_timeout_ms;
	unsigned max_clients;  /* requests running at once */
	unsigned max_conns;    /* connections open at once */
	int audit_fd;          /* -1: audit lines go to the log only */
	enum vmd_log_level audit_level; /* of the audit line in the log */
	pthread_mutex_t lock; /* audit writes, active and running counts */
	pthread_cond_t idle;
	pthread_cond_t slot;  /* a run slot came free */
	unsigned active;      /* connections */
	unsigned running;     /* requests past their policy check */
};

struct conn {
	struct server *srv;
	int fd;
};

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One audit line: "TIME uid=U pid=P op=OP target=T allowed|refused
 * reason". Every part is either a number or text our own code made from
 * validated values, so a caller cannot forge lines. */
static int audit(struct server *srv, const struct ucred *cr, const char *op,
                 const char *target, const char *decision,
                 const char *reason)
{
	int rc = 0;
	char line[1024], when[32], clean[512];
	struct timespec ts;
	struct tm tm;
	size_t i;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	vmd_redact(reason, clean, sizeof(clean));
	for (i = 0; clean[i]; i++)
		if (clean[i] < 0x20 || clean[i] == 0x7f || clean[i] == '"')
			clean[i] = '?';
	n = snprintf(line, sizeof(line),
	             "%s uid=%u pid=%d op=%s target=%s %s reason=\"%s\"\n",
	             when, cr ? (unsigned)cr->uid : 4294967295u,
	             cr ? (int)cr->pid : -1, op, target, decision, clean);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	pthread_mutex_lock(&srv->lock);
	if (srv->audit_fd >= 0 &&
	    write(srv->audit_fd, line, (size_t)n) != n) {
		vmd_log_error("vmdiskd: audit log write failed: %s",
		              strerror(errno));
		rc = -1;
	}
	pthread_mutex_unlock(&srv->lock);
	vmd_log(srv->audit_level, "vmdiskd: %.*s", n - 1, line);
	return rc;
}

static void send_reply(int fd, int rc, const struct vmd_priv_reply *rep,
                       const struct vmd_error *err)
{
	char line[VMD_PRIV_LINE_MAX];
	char msg[VMD_ERROR_MSG_MAX];
	size_t i;
	int n;

	if (rc == 0) {
		/* Paths come from lvs and our own names: plain ASCII
		 * without quotes (vmd_priv_reply_parse checks again). */
		if (rep && rep->path[0] && !strpbrk(rep->path, "\"\\"))
			n = snprintf(line, sizeof(line),
			             "{\"ok\":true,\"path\":\"%s\",\"size\":%llu,"
			             "\"lv_size\":%llu,\"sparse\":%s}\n",
			             rep->path, (unsigned long long)rep->size,
			             (unsigned long long)rep->lv_size,
			             rep->sparse ? "true" : "false");
		else
			n = snprintf(line, sizeof(line), "{\"ok\":true}\n");
	} else {
		/* The message is our own text; keep it plain for JSON. */
		snprintf(msg, sizeof(msg), "%s", err->msg);
		for (i = 0; msg[i]; i++)
			if (msg[i] < 0x20 || msg[i] > 0x7e || msg[i] == '"' ||
			    msg[i] == '\\')
				msg[i] = '?';
		n = snprintf(line, sizeof(line),
		             "{\"ok\":false,\"code\":\"%s\",\"error\":\"%s\"}\n",
		             vmd_errc_name(err->code), msg);
	}
	if (n <= 0 || (size_t)n >= sizeof(line))
		return;
	if (rc == 0 && rep && rep->fd >= 0) {
		/* lvm_open_read: the descriptor rides on the reply line. */
		union {
			struct cmsghdr align;
			char bytes[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct iovec iov = {.iov_base = line, .iov_len = (size_t)n};
		struct msghdr mh = {.msg_iov = &iov,
		                    .msg_iovlen = 1,
		                    .msg_control = ctl.bytes,
		                    .msg_controllen = sizeof(ctl.bytes)};
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		memset(ctl.bytes, 0, sizeof(ctl.bytes));
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &rep->fd, sizeof(int));
		(void)sendmsg(fd, &mh, MSG_NOSIGNAL);
		return;
	}
	(void)send(fd, line, (size_t)n, MSG_NOSIGNAL);
}

/*
 * Receive what the peer has sent, at most len bytes, waiting no later than
 * the deadline (now_ms() clock). > 0: the count; -1 with why when the
 * deadline passed or the peer closed first.
 */
static ssize_t recv_by(int fd, long long deadline, void *buf, size_t len,
                       const char **why)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - now_ms();
		ssize_t n;
		int rc;

		if (left <= 0) {
			*why = "request: read timed out";
			return -1;
		}
		rc = poll(&p, 1, (int)left);
		if (rc <= 0)
			continue; /* EINTR, or woken without data: wait again */
		n = recv(fd, buf, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			*why = "request: connection closed before a newline";
			return -1;
		}
		return n;
	}
}

/* Read one line within the deadline. 0 with *len set; -1 with why. */
static int read_line(int fd, char *buf, size_t bufsz, size_t *len,
                     int timeout_ms, const char **why)
{
	long long deadline = now_ms() + timeout_ms;
	size_t got = 0;

	for (;;) {
		ssize_t n = recv_by(fd, deadline, buf + got, bufsz - got, why);
		char *nl;

		if (n < 0)
			return -1;
		nl = memchr(buf + got, '\n', (size_t)n);
		got += (size_t)n;
		if (nl) {
			*len = (size_t)(nl - buf);
			return 0;
		}
		if (got >= bufsz) {
			*why = "request: line too long";
			return -1;
		}
	}
}

static void handle(struct server *srv, int fd)
{
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	char line[VMD_PRIV_LINE_MAX];
	char target[VMD_NAME_MAX + VMD_PRIV_LV_MAX + 2];
	char why[160];
	const char *rwhy = NULL;
	struct vmd_priv_request req;
	struct vmd_priv_reply rep;
	struct vmd_priv_policy *pol = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	size_t len = 0;
	bool allowed;
	int rc;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0) {
		vmd_error_set_errno(&err, VMD_E_IO, errno,
		                    "vmdiskd: no peer credentials",
		                    "SO_PEERCRED");
		audit(srv, NULL, "?", "-", "refused", err.msg);
		send_reply(fd, -1, NULL, &err);
		return;
	}
	if (read_line(fd, line, sizeof(line), &len, srv->read_timeout_ms,
	              &rwhy) < 0) {
		vmd_error_set(&err, VMD_E_INVAL, rwhy, "client pid %d: %s",
		              (int)cr.pid, rwhy);
		audit(srv, &cr, "?", "-", "refused", err.msg);
		send_reply(fd, -1, NULL, &err);
		return;
	}
	rc = vmd_priv_request_parse(line, len, &req, &err);
	if (rc < 0) {
		audit(srv, &cr, "?", "-", "refused", err.msg);
		send_reply(fd, rc, NULL, &err);
		return;
	}
	vmd_priv_request_target(&req, target, sizeof(target));
	rc = vmd_priv_policy_load(srv->cfg->vmdiskd_policy_file, &pol, &err);
	if (rc < 0) {
		audit(srv, &cr, vmd_priv_op_name(req.op), target, "refused",
		      err.msg);
		vmd_error_clear(&err);
		vmd_error_set(&err, VMD_E_REFUSED, "vmdiskd: not allowed",
		              "no usable policy");
		send_reply(fd, VMD_E_REFUSED, NULL, &err);
		return;
	}
	allowed = vmd_priv_policy_allows(pol, cr.uid, cr.gid, req.op, why,
	                                 sizeof(why));
	/* A key_id turns an lvm op into an encryption op as well: the
	 * caller needs that grant too. */
	enum vmd_priv_op extra = vmd_priv_request_extra_grant(&req);

	if (allowed && extra != VMD_PRIV_OP_COUNT)
		allowed = vmd_priv_policy_allows(pol, cr.uid, cr.gid, extra,
		                                 why, sizeof(why));
	vmd_priv_policy_free(pol);
	/* Nothing runs that the audit log does not show. */
	if (audit(srv, &cr, vmd_priv_op_name(req.op), target,
	          allowed ? "allowed" : "refused", why) < 0 &&
	    allowed) {
		allowed = false;
		snprintf(why, sizeof(why), "the audit log cannot be written");
	}
	if (!allowed) {
		vmd_error_set(&err, VMD_E_REFUSED, "vmdiskd: not allowed",
		              "uid %u pid %d: %s", (unsigned)cr.uid,
		              (int)cr.pid, why);
		send_reply(fd, VMD_E_REFUSED, NULL, &err);
		return;
	}
	pthread_mutex_lock(&srv->lock);
	while (srv->running >= srv->max_clients)
		pthread_cond_wait(&srv->slot, &srv->lock);
	srv->running++;
	pthread_mutex_unlock(&srv->lock);
	rc = vmd_priv_dispatch(srv->ops, srv->cfg, &req, &rep, &err);
	pthread_mutex_lock(&srv->lock);
	srv->running--;
	pthread_cond_signal(&srv->slot);
	pthread_mutex_unlock(&srv->lock);
	audit(srv, &cr, vmd_priv_op_name(req.op), target,
	      rc == 0 ? "done" : "failed", rc == 0 ? "ok" : err.msg);
	send_reply(fd, rc, &rep, &err);
	if (rep.fd >= 0)
		close(rep.fd);
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;
	struct server *srv = c->srv;

	handle(srv, c->fd);
	close(c->fd);
	free(c);
	pthread_mutex_lock(&srv->lock);
	srv->active--;
	pthread_cond_broadcast(&srv->idle);
	pthread_mutex_unlock(&srv->lock);
	return NULL;
}

static int bind_socket(const char *path, int *out, struct vmd_error *err)
{
	_cleanup_(closep) int fd = -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct group gr, *res = NULL;
	char buf[4096];
	struct stat st;
	mode_t old;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: socket path too long",
		                     "%s", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	/* A stale socket of an earlier run; anything else stays. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return vmd_error_set(err, VMD_E_EXISTS,
			                     "vmdiskd: socket path taken",
			                     "%s exists and is not a socket",
			                     path);
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: socket", "socket");
	old = umask(0117); /* never a moment wider than 0660 */
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: cannot bind the socket",
		                           "bind %s", path);
	if (getgrnam_r("vmdisk", &gr, buf, sizeof(buf), &res) == 0 && res &&
	    chown(path, (uid_t)-1, gr.gr_gid) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: cannot set the socket group",
		                           "chown %s", path);
	if (chmod(path, 0660) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: cannot set the socket mode",
		                           "chmod %s", path);
	if (listen(fd, 64) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: listen", "listen %s", path);
	*out = TAKE_FD(fd);
	return 0;
}

/* The first descriptor systemd passes (SD_LISTEN_FDS_START). */
#define LISTEN_FDS_START 3

static bool env_uint(const char *name, unsigned long max,
                     unsigned long *out)
{
	const char *s = getenv(name);
	char *end;

	if (!s || !s[0] || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	*out = strtoul(s, &end, 10);
	return !*end && errno == 0 && *out <= max;
}

/* The inherited descriptor must be what bind_socket() would have made:
 * a listening Unix stream socket (peer credentials, a path that the
 * policy's callers reach), never a file, a pipe or a TCP socket. */
static int check_listen_fd(int fd, struct vmd_error *err)
{
	struct stat st;
	int domain = 0, type = 0, acc = 0;
	socklen_t len;

	if (fstat(fd, &st) < 0)
		return vmd_error_set_errno(err, VMD_E_CONFIG, errno,
		                           "vmdiskd: no inherited socket",
		                           "LISTEN_FDS: descriptor %d", fd);
	if (!S_ISSOCK(st.st_mode))
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: the inherited socket is not a socket",
		                     "LISTEN_FDS: descriptor %d", fd);
	len = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0 ||
	    domain != AF_UNIX)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: the inherited socket is not a Unix socket",
		                     "LISTEN_FDS: descriptor %d, domain %d", fd,
		                     domain);
	len = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
	    type != SOCK_STREAM)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: the inherited socket is not a stream socket",
		                     "LISTEN_FDS: descriptor %d, type %d", fd,
		                     type);
	len = sizeof(acc);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) < 0 ||
	    !acc)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: the inherited socket is not listening",
		                     "LISTEN_FDS: descriptor %d", fd);
	return 0;
}

int vmd_priv_listen_fd_from_env(int *fd, struct vmd_error *err)
{
	unsigned long pid, n;
	bool have_pid = env_uint("LISTEN_PID", (unsigned long)INT32_MAX, &pid);
	bool have_n = getenv("LISTEN_FDS") != NULL;
	bool n_ok = env_uint("LISTEN_FDS", 1024, &n);
	int rc;

	*fd = -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	/* Absent, or for another process (a parent that passed its own
	 * environment on): not ours to take. */
	if (!have_pid || !have_n || pid != (unsigned long)getpid())
		return 0;
	if (!n_ok || n != 1)
		return vmd_error_set(err, VMD_E_CONFIG,
		                     "vmdiskd: socket activation must pass one socket",
		                     "LISTEN_FDS=%s",
		                     n_ok ? "more than 1 or 0" : "not a number");
	rc = check_listen_fd(LISTEN_FDS_START, err);
	if (rc < 0)
		return rc;
	if (fcntl(LISTEN_FDS_START, F_SETFD, FD_CLOEXEC) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: the inherited socket",
		                           "fcntl FD_CLOEXEC");
	*fd = LISTEN_FDS_START;
	return 0;
}

/* Whether the policy grants the caller anything at all: a caller it
 * grants nothing is answered at once, without taking one of the
 * max_conns connections that granted callers need. */
static bool caller_has_a_grant(const struct server *srv,
                               const struct ucred *cr)
{
	struct vmd_priv_policy *pol = NULL;
	struct vmd_error err = VMD_ERROR_INIT;
	char why[128];
	bool any = false;

	if (vmd_priv_policy_load(srv->cfg->vmdiskd_policy_file, &pol, &err) < 0)
		return true; /* handle() refuses and audits the policy error */
	for (int op = 0; op < VMD_PRIV_OP_COUNT && !any; op++)
		any = vmd_priv_policy_allows(pol, cr->uid, cr->gid,
		                             (enum vmd_priv_op)op, why,
		                             sizeof(why));
	vmd_priv_policy_free(pol);
	return any;
}

/* Answer and close a connection refused before it got a thread; `cr`
 * NULL when its credentials could not be read. */
static void refuse_now(struct server *srv, int fd, const struct ucred *cr,
                       int code, const char *msg, const char *detail)
{
	struct vmd_error err = VMD_ERROR_INIT;

	vmd_error_set(&err, code, msg, "%s", detail);
	audit(srv, cr, "?", "-", "refused", detail);
	send_reply(fd, code, NULL, &err);
	close(fd);
}

static void accept_loop(struct server *srv, int lfd, unsigned exit_after,
                        const sigset_t *unblocked)
{
	unsigned served = 0;

	while (!stop_requested && (exit_after == 0 || served < exit_after)) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		struct conn *c;
		pthread_t th;
		pthread_attr_t attr;
		struct ucred cr;
		socklen_t crlen;
		bool have_cr;
		int fd, rc;

		rc = ppoll(&p, 1, NULL, unblocked);
		if (rc <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		served++;
		crlen = sizeof(cr);
		have_cr = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr,
		                     &crlen) == 0;
		if (have_cr && !caller_has_a_grant(srv, &cr)) {
			refuse_now(srv, fd, &cr, VMD_E_REFUSED,
			           "vmdiskd: not allowed",
			           "no grant for any operation");
			continue;
		}
		pthread_mutex_lock(&srv->lock);
		if (srv->active >= srv->max_conns) {
			pthread_mutex_unlock(&srv->lock);
			refuse_now(srv, fd, have_cr ? &cr : NULL, VMD_E_BUSY,
			           "vmdiskd: busy", "all connections taken");
			continue;
		}
		srv->active++;
		pthread_mutex_unlock(&srv->lock);
		c = malloc(sizeof(*c));
		if (c) {
			c->srv = srv;
			c->fd = fd;
		}
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (!c || pthread_create(&th, &attr, conn_thread, c) != 0) {
			free(c);
			close(fd);
			pthread_mutex_lock(&srv->lock);
			srv->active--;
			pthread_mutex_unlock(&srv->lock);
		}
		pthread_attr_destroy(&attr);
	}
}

int vmd_priv_serve(const struct vmd_config *cfg,
                   const struct vmd_priv_server_opts *opts,
                   struct vmd_error *err)
{
	_cleanup_(closep) int lfd = -1;
	struct server srv = {
		.cfg = cfg,
		.ops = opts && opts->ops ? opts->ops : &vmd_priv_ops_default,
		.read_timeout_ms = opts && opts->read_timeout_ms > 0
		                           ? opts->read_timeout_ms
		                           : 10000,
		.max_clients = opts && opts->max_clients ? opts->max_clients
		                                         : 16,
		.max_conns = opts && opts->max_conns ? opts->max_conns : 256,
		.audit_fd = -1,
		.audit_level = VMD_LOG_INFO,
	};
	struct sigaction sa = {.sa_handler = on_stop_signal};
	sigset_t block, old;
	int rc;

	srv.audit_fd = open(cfg->vmdiskd_audit_log,
	                    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	                            O_NOFOLLOW | O_NOCTTY,
	                    0600);
	if (srv.audit_fd < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: cannot open the audit log",
		                           "open %s", cfg->vmdiskd_audit_log);
	if (opts && opts->inherited) {
		/* systemd made it (vmdiskd.socket) and removes it. */
		lfd = opts->listen_fd;
		rc = check_listen_fd(lfd, err);
	} else {
		rc = bind_socket(cfg->vmdiskd_socket, &lfd, err);
	}
	if (rc < 0) {
		close(srv.audit_fd);
		return rc;
	}
	pthread_mutex_init(&srv.lock, NULL);
	pthread_cond_init(&srv.idle, NULL);
	pthread_cond_init(&srv.slot, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* An audit log past the file size limit must make requests fail
	 * (handle() refuses what it cannot audit), not kill the helper. */
	sigaction(SIGXFSZ, &(struct sigaction){.sa_handler = SIG_IGN}, NULL);
	/* Blocked everywhere but in ppoll, so the signal cannot slip in
	 * between the flag check and the wait. Threads inherit the mask. */
	pthread_sigmask(SIG_BLOCK, &block, &old);
	stop_requested = 0;
	vmd_log_info("vmdiskd: serving on %s%s", cfg->vmdiskd_socket,
	             opts && opts->inherited ? " (socket activation)" : "");
	accept_loop(&srv, lfd, opts ? opts->exit_after : 0, &old);
	/* Let requests in flight finish and their audit lines land. */
	pthread_mutex_lock(&srv.lock);
	while (srv.active > 0)
		pthread_cond_wait(&srv.idle, &srv.lock);
	pthread_mutex_unlock(&srv.lock);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!(opts && opts->inherited))
		unlink(cfg->vmdiskd_socket);
	close(srv.audit_fd);
	pthread_cond_destroy(&srv.idle);
	pthread_cond_destroy(&srv.slot);
	pthread_mutex_destroy(&srv.lock);
	vmd_log_info("vmdiskd: stopped");
	return 0;
}

/* ---- the one-shot stdio server (vmdiskd --stdio) ---- */

#define STDIO_HEADER_MAX 64

/* Parse "vmdiskd-stdio <N>\n" at the start of `b` (len bytes): 1 with the
 * header's length and N, 0 when more bytes are needed, -1 if malformed. */
static int stdio_header(const char *b, size_t len, size_t *hlen, size_t *n)
{
	const size_t mlen = sizeof(VMD_PRIV_STDIO_MAGIC) - 1;
	const char *nl = memchr(b, '\n', len < STDIO_HEADER_MAX ? len
	                                                        : STDIO_HEADER_MAX);
	size_t v = 0;
	const char *p;

	if (!nl)
		return len < STDIO_HEADER_MAX ? 0 : -1;
	if ((size_t)(nl - b) < mlen + 2 || memcmp(b, VMD_PRIV_STDIO_MAGIC, mlen) ||
	    b[mlen] != ' ')
		return -1;
	for (p = b + mlen + 1; p < nl; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (size_t)(*p - '0'), &v))
			return -1;
	}
	if (v == 0 || v > VMD_PRIV_STDIO_CONFIG_MAX)
		return -1;
	*hlen = (size_t)(nl - b) + 1;
	*n = v;
	return 1;
}

/*
 * Read the whole frame within the deadline: header, configuration text
 * (NUL-terminated copy in *text) and the request line (offset and length
 * in `b`, without its newline). Nothing after the request line is read.
 */
static int stdio_read_frame(int fd, int timeout_ms, struct vmd_buf *b,
                            size_t *req_off, size_t *req_len, char **text,
                            const char **why)
{
	long long deadline = now_ms() + timeout_ms;
	size_t hlen = 0, n = 0;
	bool have_header = false;

	for (;;) {
		char chunk[4096];
		ssize_t got;
		int rc;

		if (!have_header) {
			rc = stdio_header(b->data ? b->data : "", b->len, &hlen,
			                  &n);
			if (rc < 0) {
				*why = "stdio: bad frame header";
				return -1;
			}
			have_header = rc == 1;
		}
		if (have_header && b->len > hlen + n) {
			const char *nl = memchr(b->data + hlen + n, '\n',
			                        b->len - hlen - n);

			if (nl) {
				if (memchr(b->data + hlen, '\0', n)) {
					*why = "stdio: NUL in the configuration";
					return -1;
				}
				*text = strndup(b->data + hlen, n);
				if (!*text) {
					*why = "stdio: out of memory";
					return -1;
				}
				*req_off = hlen + n;
				*req_len = (size_t)(nl - b->data) - *req_off;
				return 0;
			}
		}
		got = recv_by(fd, deadline, chunk, sizeof(chunk), why);
		if (got < 0)
			return -1;
		if (vmd_buf_append(b, chunk, (size_t)got) < 0) {
			*why = "stdio: frame too long";
			return -1;
		}
	}
}

/* This process is root and so is the peer, on a Unix stream socket. */
static int stdio_check_peer(int fd, struct ucred *cr, struct vmd_error *err)
{
	socklen_t len = sizeof(*cr);
	int type = 0, domain = 0;
	socklen_t tlen = sizeof(type), dlen = sizeof(domain);

	if (geteuid() != 0)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "vmdiskd: --stdio needs root",
		                     "euid %u", (unsigned)geteuid());
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0 ||
	    type != SOCK_STREAM || domain != AF_UNIX)
		return vmd_error_set(err, VMD_E_REFUSED,
		                     "vmdiskd: --stdio needs a Unix socket",
		                     "descriptor %d is not an AF_UNIX stream "
		                     "socket", fd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) < 0)
		return vmd_error_set_errno(err, VMD_E_IO, errno,
		                           "vmdiskd: no peer credentials",
		                           "SO_PEERCRED");
	if (cr->uid != 0)
		return vmd_error_set(err, VMD_E_REFUSED, "vmdiskd: not allowed",
		                     "--stdio peer uid %u pid %d is not root",
		                     (unsigned)cr->uid, (int)cr->pid);
	return 0;
}

int vmd_priv_serve_stdio(int fd, const struct vmd_priv_server_opts *opts,
                         struct vmd_error *err)
{
	_cleanup_(vmd_buf_free) struct vmd_buf frame = {
		.max = STDIO_HEADER_MAX + VMD_PRIV_STDIO_CONFIG_MAX +
		       VMD_PRIV_LINE_MAX};
	_cleanup_(freep) struct vmd_config *cfg = NULL;
	_cleanup_(freep) char *text = NULL;
	struct server srv = {
		.ops = opts && opts->ops ? opts->ops : &vmd_priv_ops_default,
		.read_timeout_ms = opts && opts->read_timeout_ms > 0
		                           ? opts->read_timeout_ms
		                           : 10000,
		.max_clients = 1,
		.audit_fd = -1,
		/* Root's own call: its audit line is no news in root's log. */
		.audit_level = VMD_LOG_DEBUG,
	};
	char target[VMD_NAME_MAX + VMD_PRIV_LV_MAX + 2];
	struct vmd_priv_request req;
	struct vmd_priv_reply rep;
	const char *why = NULL;
	size_t off = 0, len = 0;
	struct ucred cr;
	int rc;

	rc = stdio_check_peer(fd, &cr, err);
	if (rc < 0)
		return rc; /* no reply: nothing here is ours to answer */
	pthread_mutex_init(&srv.lock, NULL);
	sigaction(SIGXFSZ, &(struct sigaction){.sa_handler = SIG_IGN}, NULL);
	cfg = malloc(sizeof(*cfg));
	if (!cfg)
		return vmd_error_set(err, VMD_E_NOMEM, "vmdiskd: out of memory",
		                     "config");
	if (stdio_read_frame(fd, srv.read_timeout_ms, &frame, &off, &len,
	                     &text, &why) < 0) {
		vmd_error_set(err, VMD_E_INVAL, why, "stdio peer pid %d: %s",
		              (int)cr.pid, why);
		audit(&srv, &cr, "?", "-", "refused", err->msg);
		send_reply(fd, VMD_E_INVAL, NULL, err);
		return 0;
	}
	/* The caller's configuration, through the config file's parser. */
	vmd_config_defaults(cfg);
	rc = vmd_config_load_string(cfg, text, err);
	if (rc < 0) {
		audit(&srv, &cr, "?", "-", "refused", err->msg);
		send_reply(fd, rc, NULL, err);
		return 0;
	}
	srv.cfg = cfg;
	vmd_log_setup(cfg->log_target, cfg->log_level, "vmdiskd");
	/* A host where vmdiskd was never set up has no audit directory;
	 * root's own call then audits to the log only. */
	srv.audit_fd = open(cfg->vmdiskd_audit_log,
	                    O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
	                            O_NOFOLLOW | O_NOCTTY,
	                    0600);
	if (srv.audit_fd < 0 && errno != ENOENT) {
		rc = vmd_error_set_errno(err, VMD_E_IO, errno,
		                         "vmdiskd: cannot open the audit log",
		                         "open %s", cfg->vmdiskd_audit_log);
		send_reply(fd, rc, NULL, err);
		return 0;
	}
	rc = vmd_priv_request_parse(frame.data + off, len, &req, err);
	if (rc < 0) {
		audit(&srv, &cr, "?", "-", "refused", err->msg);
	} else {
		vmd_priv_request_target(&req, target, sizeof(target));
		if (audit(&srv, &cr, vmd_priv_op_name(req.op), target,
		          "allowed", "root's own call (--stdio)") < 0) {
			rc = vmd_error_set(err, VMD_E_REFUSED,
			                   "vmdiskd: not allowed",
			                   "the audit log cannot be written");
		} else {
			rc = vmd_priv_dispatch(srv.ops, cfg, &req, &rep, err);
			audit(&srv, &cr, vmd_priv_op_name(req.op), target,
			      rc == 0 ? "done" : "failed",
			      rc == 0 ? "ok" : err->msg);
		}
	}
	send_reply(fd, rc, rc == 0 ? &rep : NULL, err);
	if (rc == 0 && rep.fd >= 0)
		close(rep.fd);
	if (srv.audit_fd >= 0)
		close(srv.audit_fd);
	pthread_mutex_destroy(&srv.lock);
	return 0;
}
