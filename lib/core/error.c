/*
 * The one error type (see include/vmdisk/error.h).
 *
 * An error is set once, where the cause is known; that is also where its
 * detail is logged. Later layers only prefix the public message with their
 * step. Both texts are redacted before they are stored, so a secret that
 * slipped into a format argument never leaves this file.
 *
 * Fault-injection builds also append every public message, as set and as
 * each step prefixes it, to $VMDISK_ERROR_TRACE (an absolute path), so the
 * error-exposure check (tests/suite/reliability/errors_check.py) can apply
 * its rule to every message the tests provoke.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "cleanup.h"
#include "error_trace.h"

#if VMD_FAULT_INJECTION
/* Room for a setting's value (a list of Glance endpoints, a path). */
#define ERROR_TRACE_LINE_MAX 2048

/*
 * One line "PID PROGRAM KIND TEXT" (KIND set, prefix or config; control
 * bytes as '?'), in one write to an O_APPEND file, so lines of concurrent
 * processes do not mix. errno is kept: callers may still read it after
 * setting an error. A failed write is ignored: the check then finds fewer
 * messages, never a wrong one.
 */
static void error_trace(const char *kind, const char *msg)
{
	const char *path = getenv("VMDISK_ERROR_TRACE");
	char line[ERROR_TRACE_LINE_MAX + 64];
	int saved = errno;
	size_t n;
	int len;

	if (!path || path[0] != '/')
		return;
	len = snprintf(line, sizeof(line), "%ld %s %s ", (long)getpid(),
	               program_invocation_short_name, kind);
	if (len < 0 || (size_t)len >= sizeof(line))
		return;
	n = (size_t)len;
	for (const char *p = msg; *p && n + 1 < sizeof(line); p++)
		line[n++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
	line[n++] = '\n';
	{
		_cleanup_(closep) int fd = open(path, O_WRONLY | O_APPEND |
		                                O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		                                0600);

		if (fd >= 0 && write(fd, line, n) < 0)
			errno = saved;
	}
	errno = saved;
}

void vmd_error_trace_config(const struct vmd_config *cfg)
{
	const struct {
		const char *key;
		const char *value;
	} settings[] = {
		{"images_volume_group", cfg->images_volume_group},
		{"lvm_thin_pool", cfg->lvm_thin_pool},
		{"images_rbd_pool", cfg->images_rbd_pool},
		{"images_rbd_ceph_conf", cfg->images_rbd_ceph_conf},
		{"rbd_user", cfg->rbd_user},
		{"glance_api_servers", cfg->glance_api_servers},
		{"barbican_endpoint", cfg->barbican_endpoint},
		{"barbican_token_file", cfg->barbican_token_file},
		{"barbican_project_id", cfg->barbican_project_id},
	};
	char line[ERROR_TRACE_LINE_MAX];

	if (!getenv("VMDISK_ERROR_TRACE"))
		return;
	for (size_t i = 0; i < ELEMENTSOF(settings); i++) {
		if (!settings[i].value[0])
			continue;
		snprintf(line, sizeof(line), "%s %s", settings[i].key,
		         settings[i].value);
		error_trace("config", line);
	}
}
#else
static inline void error_trace(const char *kind, const char *msg)
{
	(void)kind;
	(void)msg;
}
#endif

static void error_store(struct vmd_error *err, enum vmd_errc code,
                        const char *msg, const char *detail)
{
	vmd_log_error("%s: %s", msg, detail);
	if (!err || err->code != VMD_OK)
		return;
	err->code = code;
	vmd_redact(msg, err->msg, sizeof(err->msg));
	vmd_redact(detail, err->detail, sizeof(err->detail));
	error_trace("set", err->msg);
}

int vmd_error_set(struct vmd_error *err, enum vmd_errc code, const char *msg,
                  const char *detail_fmt, ...)
{
	char detail[VMD_ERROR_DETAIL_MAX];
	va_list ap;

	va_start(ap, detail_fmt);
	vsnprintf(detail, sizeof(detail), detail_fmt, ap);
	va_end(ap);
	error_store(err, code, msg, detail);
	return code;
}

int vmd_error_set_errno(struct vmd_error *err, enum vmd_errc code, int errnum,
                        const char *msg, const char *detail_fmt, ...)
{
	char detail[VMD_ERROR_DETAIL_MAX];
	char errbuf[128];
	size_t n;
	va_list ap;

	va_start(ap, detail_fmt);
	vsnprintf(detail, sizeof(detail), detail_fmt, ap);
	va_end(ap);
	n = strlen(detail);
	if (n < sizeof(detail))
		snprintf(detail + n, sizeof(detail) - n, ": %s",
		         strerror_r(errnum, errbuf, sizeof(errbuf)));
	error_store(err, code, msg, detail);
	return code;
}

void vmd_error_prefix(struct vmd_error *err, const char *step)
{
	char buf[VMD_ERROR_MSG_MAX * 2];
	size_t slen;

	if (!err || err->code == VMD_OK || !step)
		return;
	slen = strlen(step);
	/* Do not stack the same step twice ("create: create: ..."). */
	if (strncmp(err->msg, step, slen) == 0 && err->msg[slen] == ':')
		return;
	snprintf(buf, sizeof(buf), "%s: %s", step, err->msg);
	memcpy(err->msg, buf, sizeof(err->msg) - 1);
	err->msg[sizeof(err->msg) - 1] = '\0';
	error_trace("prefix", err->msg);
}

void vmd_error_clear(struct vmd_error *err)
{
	if (!err)
		return;
	err->code = VMD_OK;
	err->msg[0] = '\0';
	err->detail[0] = '\0';
}

bool vmd_error_is_set(const struct vmd_error *err)
{
	return err && err->code != VMD_OK;
}

const char *vmd_errc_name(enum vmd_errc code)
{
	switch (code) {
	case VMD_OK: return "ok";
	case VMD_E_INVAL: return "invalid";
	case VMD_E_NOTFOUND: return "not-found";
	case VMD_E_EXISTS: return "exists";
	case VMD_E_IO: return "io";
	case VMD_E_NOMEM: return "no-memory";
	case VMD_E_EXTERNAL: return "external";
	case VMD_E_UNSUPPORTED: return "unsupported";
	case VMD_E_CONFIG: return "config";
	case VMD_E_REFUSED: return "refused";
	case VMD_E_TOOSMALL: return "too-small";
	case VMD_E_BUSY: return "busy";
	case VMD_E_CORRUPT: return "corrupt";
	}
	return "unknown";
}
