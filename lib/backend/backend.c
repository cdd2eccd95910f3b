/*
 * The backend registry: name -> ops table.
 *
 * flat and qcow2 are linked in. Backends that need heavy libraries are
 * shared modules in the module directory, named vmdisk-<name>.so and
 * exporting `vmd_backend_<name>`; they are dlopen()ed the first time a
 * command asks for them, so `vmdisk info` on a qcow2 disk never loads librbd,
 * and used only if their build stamp is this library's (the contract is in
 * include/vmdisk/backend.h). A module reaches the library's internal calls
 * through the host table it is handed here (module_host.h).
 * A backend with neither is "not supported yet" and says so clearly.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "internal.h"
#include "module_host.h"
#include "vmd_build_config.h"

struct backend_entry {
	enum vmd_backend_kind kind;
	const char *name;
	const struct vmd_backend_ops *builtin;
	bool loadable;                     /* shipped as a module */
	const struct vmd_backend_ops *loaded;
};

static pthread_mutex_t registry_mutex = PTHREAD_MUTEX_INITIALIZER;
static char module_dir[PATH_MAX] = VMD_MODULE_DIR;

static struct backend_entry registry[] = {
	{VMD_BACKEND_FLAT, "flat", &vmd_backend_flat, false, NULL},
	{VMD_BACKEND_QCOW2, "qcow2", &vmd_backend_qcow2, false, NULL},
	{VMD_BACKEND_LVM, "lvm", &vmd_backend_lvm, false, NULL},
	{VMD_BACKEND_RBD, "rbd", NULL, true, NULL},
	{VMD_BACKEND_PLOOP, "ploop", &vmd_backend_ploop, false, NULL},
};

void vmd_backend_set_module_dir(const char *dir)
{
	pthread_mutex_lock(&registry_mutex);
	snprintf(module_dir, sizeof(module_dir), "%s", dir);
	pthread_mutex_unlock(&registry_mutex);
}

/* A module is used only if it was built with this library: its stamp
 * (include/vmdisk/backend.h, VMD_BACKEND_MODULE_STAMP) must be ours. */
int vmd_backend_check_stamp(const char *name, const char *stamp,
                            struct vmd_error *err)
{
	if (!stamp)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "backend module built for another vmdisk",
		                     "backend %s: module has no build stamp",
		                     name);
	if (strncmp(stamp, VMD_BUILD_STAMP, sizeof(VMD_BUILD_STAMP)) != 0)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "backend module built for another vmdisk",
		                     "backend %s: module stamp %.80s, library %s",
		                     name, stamp, VMD_BUILD_STAMP);
	return 0;
}

/* The operations generic code calls without asking vmd_backend_require. */
static int check_required_ops(const char *name,
                              const struct vmd_backend_ops *t,
                              struct vmd_error *err)
{
	const char *missing = !t->create_from_image ? "create_from_image"
	                      : !t->exists          ? "exists"
	                      : !t->info            ? "info"
	                      : !t->remove          ? "remove"
	                                            : NULL;

	if (!missing)
		return 0;
	return vmd_error_set(err, VMD_E_UNSUPPORTED, "backend not available",
	                     "backend %s: module lacks required %s", name,
	                     missing);
}

/* Point the module's host pointer (if it has one: a module that calls
 * nothing internal need not) at the library's table, after the stamp check
 * and before the ops table is read, so that no operation of the module
 * runs without it. Loading the same module again (dlopen returns the same
 * handle) finds it set and writes nothing, so a call already running in
 * the module on another thread never sees the pointer change. */
static void give_host_table(void *handle)
{
	const struct vmd_backend_host **slot =
		(const struct vmd_backend_host **)dlsym(
			handle, VMD_BACKEND_HOST_SYMBOL);

	if (slot && __atomic_load_n(slot, __ATOMIC_ACQUIRE) !=
	                    &vmd_backend_host_table)
		__atomic_store_n(slot, &vmd_backend_host_table,
		                 __ATOMIC_RELEASE);
}

int vmd_backend_load_module(const char *path, const char *name,
                            const struct vmd_backend_ops **ops,
                            struct vmd_error *err)
{
	char symbol[64];
	const struct vmd_backend_ops *table;
	int rc;
	/* RTLD_NODELETE: the table must outlive any handle bookkeeping. */
	void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);

	if (!handle)
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "backend not available",
		                     "backend %s: dlopen: %s", name, dlerror());
	/* The stamp first: a table of another build is not even read. */
	rc = vmd_backend_check_stamp(
		name, (const char *)dlsym(handle, VMD_BACKEND_STAMP_SYMBOL),
		err);
	if (rc < 0) {
		dlclose(handle);
		return rc;
	}
	give_host_table(handle);
	snprintf(symbol, sizeof(symbol), "vmd_backend_%s", name);
	table = (const struct vmd_backend_ops *)dlsym(handle, symbol);
	if (!table) {
		dlclose(handle);
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "backend not available",
		                     "backend %s: module lacks %s", name, symbol);
	}
	if (!table->name || strcmp(table->name, name) != 0) {
		dlclose(handle);
		return vmd_error_set(err, VMD_E_UNSUPPORTED,
		                     "backend not available",
		                     "backend %s: module names its table %.32s",
		                     name, table->name ? table->name : "(null)");
	}
	rc = check_required_ops(name, table, err);
	if (rc < 0) {
		dlclose(handle);
		return rc;
	}
	*ops = table;
	return 0;
}

int vmd_backend_get(enum vmd_backend_kind kind,
                    const struct vmd_backend_ops **ops, struct vmd_error *err)
{
	char msg[96];

	for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++) {
		struct backend_entry *e = &registry[i];
		char path[PATH_MAX];
		int rc = 0;

		if (e->kind != kind)
			continue;
		if (e->builtin) {
			*ops = e->builtin;
			return 0;
		}
		snprintf(msg, sizeof(msg), "backend %s: not supported yet",
		         e->name);
		if (!e->loadable)
			return vmd_error_set(err, VMD_E_UNSUPPORTED, msg,
			                     "no implementation of backend %s",
			                     e->name);
		pthread_mutex_lock(&registry_mutex);
		if (!e->loaded) {
			if (snprintf(path, sizeof(path), "%s/vmdisk-%s.so",
			             module_dir, e->name) >= (int)sizeof(path))
				rc = VMD_E_INVAL;
			else
				rc = vmd_backend_load_module(path, e->name,
				                             &e->loaded, NULL);
		}
		*ops = e->loaded;
		pthread_mutex_unlock(&registry_mutex);
		if (rc < 0)
			return vmd_error_set(err, VMD_E_UNSUPPORTED, msg,
			                     "module for backend %s not loadable",
			                     e->name);
		return 0;
	}
	return vmd_error_set(err, VMD_E_INVAL, "unknown backend",
	                     "backend kind %d", (int)kind);
}

int vmd_backend_require(const struct vmd_backend_ops *ops, const void *op,
                        const char *op_name, struct vmd_error *err)
{
	char msg[96];

	if (op)
		return 0;
	snprintf(msg, sizeof(msg), "backend %s does not support %s", ops->name,
	         op_name);
	return vmd_error_set(err, VMD_E_UNSUPPORTED, msg, "%s is NULL in %s",
	                     op_name, ops->name);
}

/* The per-context state of backends: a context has few backends (one per
 * disk's kind), so a short array searched by table. */
int vmd_backend_attach(struct vmd_ctx *ctx, const struct vmd_backend_ops *ops,
                       struct vmd_error *err)
{
	void *priv = NULL;
	int rc = 0;
	size_t i;

	pthread_mutex_lock(&ctx->backends_mutex);
	for (i = 0; i < ctx->n_backends; i++)
		if (ctx->backends[i].ops == ops)
			break;
	if (i == ctx->n_backends) {
		/* More slots than kinds in the registry: not reached. */
		if (i == ELEMENTSOF(ctx->backends))
			rc = vmd_error_set(err, VMD_E_UNSUPPORTED,
			                   "too many backends in one context",
			                   "backend %s", ops->name);
		else if (ops->open)
			rc = ops->open(ctx, &priv, err);
		if (rc == 0) {
			ctx->backends[i].ops = ops;
			ctx->backends[i].priv = priv;
			ctx->n_backends++;
		}
	}
	pthread_mutex_unlock(&ctx->backends_mutex);
	return rc;
}

void *vmd_ctx_backend_priv(struct vmd_ctx *ctx,
                           const struct vmd_backend_ops *ops)
{
	void *priv = NULL;

	if (!ctx)
		return NULL;
	pthread_mutex_lock(&ctx->backends_mutex);
	for (size_t i = 0; i < ctx->n_backends; i++)
		if (ctx->backends[i].ops == ops)
			priv = ctx->backends[i].priv;
	pthread_mutex_unlock(&ctx->backends_mutex);
	return priv;
}

void vmd_backend_detach_all(struct vmd_ctx *ctx)
{
	for (size_t i = 0; i < ctx->n_backends; i++)
		if (ctx->backends[i].ops->close)
			ctx->backends[i].ops->close(ctx->backends[i].priv);
	ctx->n_backends = 0;
}
