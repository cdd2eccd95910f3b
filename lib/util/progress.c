/*
 * The calling thread's progress hook (progress.h): the public entry points
 * install the context's callback, the long steps below report to it.
 */
#include "progress.h"

static _Thread_local struct vmd_progress_hook current;

struct vmd_progress_hook vmd_progress_current(void)
{
	return current;
}

struct vmd_progress_hook vmd_progress_install(struct vmd_progress_hook hook)
{
	struct vmd_progress_hook previous = current;

	current = hook;
	return previous;
}

void vmd_progress_restore(struct vmd_progress_hook *previous)
{
	current = *previous;
}

void vmd_progress_report(const char *step, uint64_t done, uint64_t total)
{
	if (current.fn)
		current.fn(step, done, total, current.opaque);
}
