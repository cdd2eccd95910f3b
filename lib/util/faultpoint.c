/*
 * Fault points (see faultpoint.h). Only compiled with fault injection on.
 */
#include "faultpoint.h"

#if VMD_FAULT_INJECTION
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vmdisk/log.h>

#include "cleanup.h"

/* How often this process reached each point: the @N of a spec and the
 * count in the trace. A fixed table: a test build has a few dozen points. */
#define FAULT_POINTS_MAX 256

static struct {
	const char *name; /* the caller's string literal */
	unsigned long hits;
} fault_hits[FAULT_POINTS_MAX];
static pthread_mutex_t fault_mutex = PTHREAD_MUTEX_INITIALIZER;

static unsigned long fault_count(const char *point)
{
	unsigned long n = 0;
	size_t i;

	pthread_mutex_lock(&fault_mutex);
	for (i = 0; i < ELEMENTSOF(fault_hits) && fault_hits[i].name; i++)
		if (strcmp(fault_hits[i].name, point) == 0)
			break;
	if (i < ELEMENTSOF(fault_hits)) {
		fault_hits[i].name = point;
		n = ++fault_hits[i].hits;
	}
	pthread_mutex_unlock(&fault_mutex);
	return n;
}

static void fault_trace(const char *point, unsigned long n)
{
	const char *path = getenv("VMDISK_FAULT_TRACE");
	char line[160];
	int fd, len;

	if (!path || path[0] != '/')
		return;
	/* O_APPEND and one write a line: the lines of processes and threads
	 * that reach points at once do not mix. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	len = snprintf(line, sizeof(line), "%s %lu\n", point, n);
	if (len > 0 && (size_t)len < sizeof(line) && write(fd, line, (size_t)len) < 0)
		(void)0; /* a lost trace line shows as a missed point */
	close(fd);
}

/* The action the spec gives this point at this hit, or NULL. */
static const char *fault_action(const char *point, unsigned long n)
{
	const char *spec = getenv("VMDISK_FAULT");
	size_t plen = strlen(point);

	for (const char *p = spec; p && *p;
	     p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (strncmp(p, point, plen) != 0)
			continue;
		if (p[plen] == ':')
			return p + plen + 1;
		if (p[plen] == '@') {
			char *end;
			unsigned long want = strtoul(p + plen + 1, &end, 10);

			if (*end == ':' && want == n)
				return end + 1;
		}
	}
	return NULL;
}

static const struct {
	const char *name;
	int value;
} fault_errnos[] = {
	{"ENOSPC", ENOSPC}, {"EIO", EIO}, {"EDQUOT", EDQUOT}, {"EROFS", EROFS},
};

/* Act on the point: kill and sleep here; the errno a failure is to give
 * (EIO for "fail"), or 0 to go on. */
static int fault_act(const char *point)
{
	unsigned long n = fault_count(point);
	const char *action;

	fault_trace(point, n);
	action = fault_action(point, n);
	if (!action)
		return 0;
	vmd_log_info("fault point %s (%lu): %.*s", point, n,
	             (int)strcspn(action, ","), action);
	if (strncmp(action, "kill", 4) == 0) {
		raise(SIGKILL);
	} else if (strncmp(action, "fail", 4) == 0) {
		return EIO;
	} else if (strncmp(action, "errno=", 6) == 0) {
		size_t len = strcspn(action + 6, ",");

		for (size_t i = 0; i < ELEMENTSOF(fault_errnos); i++)
			if (strlen(fault_errnos[i].name) == len &&
			    strncmp(action + 6, fault_errnos[i].name, len) == 0)
				return fault_errnos[i].value;
		return EIO;
	} else if (strncmp(action, "sleep=", 6) == 0) {
		long ms = strtol(action + 6, NULL, 10);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

		nanosleep(&ts, NULL);
	}
	return 0;
}

int vmd_faultpoint(const char *point, struct vmd_error *err)
{
	int e = fault_act(point);

	if (!e)
		return 0;
	return vmd_error_set(err, VMD_E_IO, "injected failure",
	                     "fault point %s (%s)", point, strerror(e));
}

int vmd_fault_errno(const char *point)
{
	return fault_act(point);
}
#endif
