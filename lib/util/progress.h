/*
 * Progress of a long step (a copy into a backend, a volume clear, a
 * flatten) reported to whoever called the public function it runs under.
 *
 * The public entry points (lib/api/disk.c) install the context's callback
 * (vmd_ctx_set_progress) for the calling thread for their duration; the
 * steps deep below them (the mover, the lvm clear, the rbd flatten)
 * report through vmd_progress_report without a callback threaded through
 * every signature. Thread-local: calls in other threads, and worker
 * threads, see their own (a worker-driven step captures the caller's hook
 * first: vmd_progress_current). Nothing installed: reports cost a load.
 */
#ifndef VMDISK_UTIL_PROGRESS_H
#define VMDISK_UTIL_PROGRESS_H

#include <stdint.h>

typedef void (*vmd_progress_step_fn)(const char *step, uint64_t done,
                                     uint64_t total, void *opaque);

struct vmd_progress_hook {
	vmd_progress_step_fn fn; /* NULL: nobody listens */
	void *opaque;
};

/* The calling thread's hook ({NULL} when none). */
struct vmd_progress_hook vmd_progress_current(void);
/* Install hook for the calling thread; returns the one it replaces, to
 * give back to vmd_progress_restore (scopes nest). */
struct vmd_progress_hook vmd_progress_install(struct vmd_progress_hook hook);
void vmd_progress_restore(struct vmd_progress_hook *previous);
/* step has done `done` of `total` bytes (total 0: unknown). */
void vmd_progress_report(const char *step, uint64_t done, uint64_t total);

/* Installs hook until the end of the enclosing block. The saved hook is
 * read only by its cleanup, which clang's -Wunused-variable does not
 * count as a use (gcc does): hence unused. */
#define VMD_PROGRESS_SCOPE(hook)                                               \
	_cleanup_(vmd_progress_restore) __attribute__((unused))                \
	struct vmd_progress_hook vmd_progress_saved_ =                         \
		vmd_progress_install(hook)

#endif
