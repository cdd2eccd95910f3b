/*
 * Fault points for crash and error-path tests (SQLite's idea).
 *
 * Built in only with -Dfault_injection=true. Then $VMDISK_FAULT names
 * points and what happens there, comma-separated:
 *
 *   POINT:kill          SIGKILL ourselves (a crash at that point)
 *   POINT:fail          the step fails (VMD_E_IO; an I/O call: EIO)
 *   POINT:errno=NAME    an I/O call fails with that errno (ENOSPC, EIO,
 *                       EDQUOT, EROFS); elsewhere it is "fail"
 *   POINT:sleep=MS      wait, then go on
 *   POINT@N:ACTION      only the Nth time (from 1) this process reaches it
 *
 * and $VMDISK_FAULT_TRACE names a file each point reached is appended to,
 * one line "POINT N" (its name and how often it was reached so far), so a
 * test can first learn which points an operation passes, then kill or
 * fail it at each of them in turn (tests/suite/reliability/).
 *
 * In a normal build both calls are constant 0 and cost nothing.
 */
#ifndef VMDISK_FAULTPOINT_H
#define VMDISK_FAULTPOINT_H

#include <vmdisk/error.h>

#include "vmd_build_config.h"

#if VMD_FAULT_INJECTION
/* A step's fault point: 0, or the step's error (err set). */
int vmd_faultpoint(const char *point, struct vmd_error *err);
/* An I/O call's fault point, before the call: 0, or the errno the call
 * is to fail with instead of being made (the caller sets errno to it and
 * takes the path a real failure takes). */
int vmd_fault_errno(const char *point);
#else
static inline int vmd_faultpoint(const char *point, struct vmd_error *err)
{
	(void)point;
	(void)err;
	return 0;
}

static inline int vmd_fault_errno(const char *point)
{
	(void)point;
	return 0;
}
#endif

#endif
