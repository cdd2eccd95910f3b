/*
 * What the library's own files share and the public headers do not show.
 */
#ifndef VMDISK_INTERNAL_H
#define VMDISK_INTERNAL_H

#include <limits.h>
#include <pthread.h>

#include <vmdisk/vmdisk.h>

#include "progress.h"
#include "bytes.h" /* vmd_round_sector (header-only: modules use it too) */

struct vmd_ctx {
	struct vmd_config cfg;
	/* <instances_path>/<image_cache_subdirectory_name>: printed (a qcow2
	 * overlay's backing name, logs), never opened (lib/beneath.c). */
	char cache_dir[PATH_MAX];
	int root_fd;              /* instances_path, O_PATH: lib/beneath.c
	                             opens it on first use (-1 until then) */
	/* The backends this context has used and their private state
	 * (ops->open), closed by vmd_ctx_free (lib/backend/backend.c). */
	pthread_mutex_t backends_mutex;
	size_t n_backends;
	struct {
		const struct vmd_backend_ops *ops;
		void *priv;
	} backends[8];
	/* vmd_ctx_set_progress: installed for the calling thread by the
	 * disk calls (lib/util/progress.h). */
	struct vmd_progress_hook progress;
};

/* <instances_path>/<image_cache_subdirectory_name> into out (PATH_MAX):
 * the image cache, also for vmdiskd, which has a config but no context.
 * -1 when instances_path is not absolute or the path does not fit. */
int vmd_cache_dir_of(const struct vmd_config *cfg, char *out);

/* Built-in backends (lib/backend_<name>.c). */
extern const struct vmd_backend_ops vmd_backend_flat;
extern const struct vmd_backend_ops vmd_backend_qcow2;
extern const struct vmd_backend_ops vmd_backend_ploop;
extern const struct vmd_backend_ops vmd_backend_lvm;

/* Refuse a module stamp other than this build's (lib/backend/backend.c);
 * NULL is a module without one. */
int vmd_backend_check_stamp(const char *name, const char *stamp,
                            struct vmd_error *err);
/* Load a backend table from a module file (vmd_backend_get, and the unit
 * test that loads a module of its own): no ABI, so not in backend.h. */
int vmd_backend_load_module(const char *path, const char *name,
                            const struct vmd_backend_ops **ops,
                            struct vmd_error *err);
/* Before a context's first call into a backend: run its open hook once
 * and keep what it made (lib/backend/backend.c). */
int vmd_backend_attach(struct vmd_ctx *ctx, const struct vmd_backend_ops *ops,
                       struct vmd_error *err);
/* vmd_ctx_free: run the close hook of every backend the context used. */
void vmd_backend_detach_all(struct vmd_ctx *ctx);

/* "path" with any prefix up to the instance directory removed, for errors:
 * public messages never show host paths. */
const char *vmd_basename(const char *path);

#endif
