/*
 * Fault points for crash and error-path tests (SQLite's idea).
 *
 * Built in only with -Dfault_injection=true. Then $VMDISK_FAULT names
 * points and what happens there, comma-separated: "POINT:kill" (SIGKILL
 * ourselves), "POINT:fail" (the call returns an error), "POINT:sleep=MS". In a normal
 * build vmd_faultpoint() is a constant 0 and costs nothing.
 */
#ifndef VMDISK_FAULTPOINT_H
#define VMDISK_FAULTPOINT_H

#include <vmdisk/error.h>

#include "vmd_build_config.h"

#if VMD_FAULT_INJECTION
int vmd_faultpoint(const char *point, struct vmd_error *err);
#else
static inline int vmd_faultpoint(const char *point, struct vmd_error *err)
{
	(void)point;
	(void)err;
	return 0;
}
#endif

#endif
