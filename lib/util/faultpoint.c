/*
 * Fault points (see faultpoint.h). Only compiled with fault injection on.
 */
#include "faultpoint.h"

#if VMD_FAULT_INJECTION
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <vmdisk/log.h>

int vmd_faultpoint(const char *point, struct vmd_error *err)
{
	const char *spec = getenv("VMDISK_FAULT");
	size_t plen = strlen(point);
	const char *action = NULL;

	/* "POINT:ACTION[,POINT:ACTION...]" */
	for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (strncmp(p, point, plen) == 0 && p[plen] == ':') {
			action = p + plen + 1;
			break;
		}
	}
	if (!action)
		return 0;
	vmd_log_info("fault point %s: %.*s", point, (int)strcspn(action, ","),
	             action);
	if (strncmp(action, "kill", 4) == 0) {
		raise(SIGKILL);
	} else if (strncmp(action, "fail", 4) == 0) {
		return vmd_error_set(err, VMD_E_IO, "injected failure",
		                     "fault point %s", point);
	} else if (strncmp(action, "sleep=", 6) == 0) {
		long ms = strtol(action + 6, NULL, 10);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

		nanosleep(&ts, NULL);
	}
	return 0;
}
#endif
