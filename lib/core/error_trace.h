/*
 * The error trace of fault-injection builds (lib/core/error.c): with
 * $VMDISK_ERROR_TRACE set, every public error message and the backend
 * settings a process loaded go to that file, for the error-exposure check
 * (tests/suite/reliability/errors_check.py). Nothing in other builds.
 */
#ifndef VMDISK_ERROR_TRACE_H
#define VMDISK_ERROR_TRACE_H

#include <vmdisk/config.h>

#include "vmd_build_config.h"

#if VMD_FAULT_INJECTION
/* Lines "config KEY VALUE" for each backend setting that is set: values
 * no error message may show. */
void vmd_error_trace_config(const struct vmd_config *cfg);
#else
static inline void vmd_error_trace_config(const struct vmd_config *cfg)
{
	(void)cfg;
}
#endif

#endif
