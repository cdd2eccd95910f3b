/*
 * vmdisk._vmdisk: the CPython binding of libvmdisk (issue 19).
 *
 * Written against the public API only (include/vmdisk/, libvmdisk.so):
 * a Context owns one struct vmd_ctx, each method is one library call, and
 * the results are the dicts the CLI prints with --json (tools/vmdisk.c).
 * The package vmdisk (python/vmdisk/__init__.py) re-exports what is here.
 *
 * Threads. Every library call that may touch a file, a program or the
 * network runs with the GIL released. The library uses a vmd_ctx from one
 * thread at a time (include/vmdisk/vmdisk.h), so each Context has a mutex,
 * taken with the GIL released (never the other way round: a thread holding
 * the mutex never waits for the GIL, so the two cannot deadlock), around
 * each call that uses its vmd_ctx. Calls on one Context therefore run one
 * after the other; separate Contexts run in parallel. inspect() and
 * convert() use no vmd_ctx (only a limit copied from the configuration)
 * and run in parallel even on one Context.
 *
 * Strings go to the library as they are: it validates instance ids, disk
 * and snapshot names and every option value itself (validate.h), so the
 * binding adds no second, possibly different, rule. It refuses only what
 * cannot be passed as a C string (an embedded NUL) and wrong Python types.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vmdisk/vmdisk.h>

/* ---- errors ---- */

struct errc_class {
	enum vmd_errc code;
	const char *code_name; /* the enum's name: Error.code */
	const char *class_name;
	const char *doc;
	PyObject *type;
};

static struct errc_class errc_classes[] = {
	{VMD_E_INVAL, "VMD_E_INVAL", "InvalidArgument",
	 "A bad argument or input value.", NULL},
	{VMD_E_NOTFOUND, "VMD_E_NOTFOUND", "NotFound",
	 "The disk, image, instance or file does not exist.", NULL},
	{VMD_E_EXISTS, "VMD_E_EXISTS", "Exists",
	 "The target already exists.", NULL},
	{VMD_E_IO, "VMD_E_IO", "IOFailure", "A read, write or sync failed.",
	 NULL},
	{VMD_E_NOMEM, "VMD_E_NOMEM", "OutOfMemory", "Out of memory.", NULL},
	{VMD_E_EXTERNAL, "VMD_E_EXTERNAL", "ExternalFailure",
	 "An external program failed or timed out.", NULL},
	{VMD_E_UNSUPPORTED, "VMD_E_UNSUPPORTED", "Unsupported",
	 "Not supported by this backend or format.", NULL},
	{VMD_E_CONFIG, "VMD_E_CONFIG", "ConfigError", "A bad configuration.",
	 NULL},
	{VMD_E_REFUSED, "VMD_E_REFUSED", "Unsafe",
	 "Refused by a safety check.", NULL},
	{VMD_E_TOOSMALL, "VMD_E_TOOSMALL", "TooSmall",
	 "The requested size is smaller than the image.", NULL},
	{VMD_E_BUSY, "VMD_E_BUSY", "Busy", "A lock was not obtained in time.",
	 NULL},
	{VMD_E_CORRUPT, "VMD_E_CORRUPT", "Corrupt",
	 "An on-disk structure is inconsistent.", NULL},
};

static PyObject *error_base; /* vmdisk.Error */

#define N_ERRC (sizeof(errc_classes) / sizeof(errc_classes[0]))

static struct errc_class *errc_find(enum vmd_errc code)
{
	for (size_t i = 0; i < N_ERRC; i++)
		if (errc_classes[i].code == code)
			return &errc_classes[i];
	return NULL;
}

/* Raise the Error subclass of `code` with the public message only (the
 * detail was logged by the library where the error was known). */
static PyObject *raise_code(enum vmd_errc code, const char *msg)
{
	struct errc_class *c = errc_find(code);
	PyObject *type = c ? c->type : error_base;
	PyObject *exc, *name, *text;

	if (!msg || !msg[0])
		msg = "operation failed";
	exc = PyObject_CallFunction(type, "s", msg);
	if (!exc)
		return NULL;
	name = PyUnicode_FromString(c ? c->code_name : "VMD_E_UNKNOWN");
	text = PyUnicode_FromString(msg);
	if (!name || !text || PyObject_SetAttrString(exc, "code", name) < 0 ||
	    PyObject_SetAttrString(exc, "message", text) < 0) {
		Py_XDECREF(name);
		Py_XDECREF(text);
		Py_DECREF(exc);
		return NULL;
	}
	Py_DECREF(name);
	Py_DECREF(text);
	PyErr_SetObject(type, exc);
	Py_DECREF(exc);
	return NULL;
}

static PyObject *raise_err(const struct vmd_error *err)
{
	return raise_code(err->code ? err->code : VMD_E_IO, err->msg);
}

/* ---- arguments ---- */

/* O& converter: a str without NUL, as UTF-8 (borrowed from the object,
 * which the argument tuple keeps alive for the whole call). */
static int conv_str(PyObject *o, void *p)
{
	const char **out = p;
	Py_ssize_t len;
	const char *s;

	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError, "expected str, not %.80s",
		             Py_TYPE(o)->tp_name);
		return 0;
	}
	s = PyUnicode_AsUTF8AndSize(o, &len);
	if (!s)
		return 0;
	if ((size_t)len != strlen(s)) {
		raise_code(VMD_E_INVAL, "embedded NUL character in an argument");
		return 0;
	}
	*out = s;
	return 1;
}

/* The same, None allowed (NULL). */
static int conv_opt_str(PyObject *o, void *p)
{
	if (o == Py_None) {
		*(const char **)p = NULL;
		return 1;
	}
	return conv_str(o, p);
}

/* A file name: str, bytes or os.PathLike, in the file system encoding.
 * Gives a new reference to a bytes object in *p (the caller drops it). */
static int conv_path(PyObject *o, void *p)
{
	PyObject **out = p;
	PyObject *b = NULL;

	if (!PyUnicode_Check(o) && !PyBytes_Check(o) &&
	    !PyObject_HasAttrString(o, "__fspath__")) {
		PyErr_Format(PyExc_TypeError,
		             "expected str, bytes or os.PathLike, not %.80s",
		             Py_TYPE(o)->tp_name);
		return 0;
	}
	if (!PyUnicode_FSConverter(o, &b))
		return 0;
	if ((size_t)PyBytes_GET_SIZE(b) != strlen(PyBytes_AS_STRING(b))) {
		Py_DECREF(b);
		raise_code(VMD_E_INVAL, "embedded NUL character in a file name");
		return 0;
	}
	*out = b;
	return 1;
}

/* Sizes: an int of bytes, or a string as the CLI takes it ("10G"), parsed
 * by the library's own parser (overflow-checked). */
static int parse_size_obj(PyObject *o, uint64_t *out)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (PyBool_Check(o)) {
		PyErr_SetString(PyExc_TypeError, "size must be int or str");
		return -1;
	}
	if (PyLong_Check(o)) {
		int overflow = 0;
		long long v = PyLong_AsLongLongAndOverflow(o, &overflow);

		if (v == -1 && PyErr_Occurred())
			return -1;
		if (overflow || v < 0) {
			raise_code(VMD_E_INVAL, overflow > 0 ? "size too large"
			                                     : "size is negative");
			return -1;
		}
		*out = (uint64_t)v;
	} else if (PyUnicode_Check(o)) {
		const char *s;

		if (!conv_str(o, &s))
			return -1;
		if (vmd_parse_size(s, out, &err) < 0) {
			raise_err(&err);
			return -1;
		}
	} else {
		PyErr_Format(PyExc_TypeError, "size must be int or str, not %.80s",
		             Py_TYPE(o)->tp_name);
		return -1;
	}
	/* As the CLI: 0 is not "the default" (leave the size out for that). */
	if (*out == 0) {
		raise_code(VMD_E_INVAL, "size must be at least 512 bytes");
		return -1;
	}
	return 0;
}

/* ---- result builders ---- */

static int dict_set(PyObject *d, const char *key, PyObject *v)
{
	int rc;

	if (!v)
		return -1;
	rc = PyDict_SetItemString(d, key, v);
	Py_DECREF(v);
	return rc;
}

static PyObject *str_or_none(const char *s)
{
	if (!s || !s[0])
		Py_RETURN_NONE;
	return PyUnicode_DecodeFSDefault(s);
}

/* The base-image cache entry a disk is backed by, as the CLI's
 * `info --json` says it (doc/json.md image_id): its backing file is
 * <cache_prefix><40 hex>[_suffix]; else None. */
static PyObject *image_id_of(const char *cache_prefix, const char *backing)
{
	size_t n = cache_prefix ? strlen(cache_prefix) : 0;
	const char *p = backing;

	if (n == 0 || strncmp(p, cache_prefix, n) != 0)
		Py_RETURN_NONE;
	p += n;
	for (int i = 0; i < 40; i++)
		if (p[i] == '\0' || !strchr("0123456789abcdef", p[i]))
			Py_RETURN_NONE;
	if (p[40] != '\0' && p[40] != '_')
		Py_RETURN_NONE;
	return PyUnicode_FromStringAndSize(p, 40);
}

/* The CLI's `info --json` and `create --json` (doc/json.md). */
static PyObject *info_dict(const char *instance, const char *disk,
                           const char *cache_prefix,
                           const struct vmd_disk_info *info)
{
	PyObject *d = PyDict_New();

	if (!d)
		return NULL;
	if (dict_set(d, "instance", PyUnicode_FromString(instance)) < 0 ||
	    dict_set(d, "disk", PyUnicode_FromString(disk)) < 0 ||
	    dict_set(d, "backend", PyUnicode_FromString(info->backend)) < 0 ||
	    dict_set(d, "format", PyUnicode_FromString(info->format)) < 0 ||
	    dict_set(d, "virtual_size",
	             PyLong_FromUnsignedLongLong(info->virtual_size)) < 0 ||
	    dict_set(d, "actual_size",
	             PyLong_FromUnsignedLongLong(info->actual_size)) < 0 ||
	    dict_set(d, "path", PyUnicode_DecodeFSDefault(info->path)) < 0 ||
	    dict_set(d, "backing", str_or_none(info->backing)) < 0 ||
	    dict_set(d, "image_id", image_id_of(cache_prefix, info->backing)) < 0) {
		Py_DECREF(d);
		return NULL;
	}
	if (info->snapshots[0]) {
		PyObject *names = PyUnicode_FromString(info->snapshots);
		PyObject *sep = PyUnicode_FromString(",");
		PyObject *list = names && sep ? PyUnicode_Split(names, sep, -1)
		                              : NULL;

		Py_XDECREF(names);
		Py_XDECREF(sep);
		if (dict_set(d, "snapshots", list) < 0) {
			Py_DECREF(d);
			return NULL;
		}
	}
	return d;
}

/* ---- Context ---- */

typedef struct {
	PyObject_HEAD
	struct vmd_ctx *ctx;       /* NULL once closed */
	pthread_mutex_t lock;      /* one library call on ctx at a time */
	bool lock_init;
	uint64_t max_virtual_size; /* max_image_virtual_size, for inspect */
	char *cache_prefix;        /* "<instances_path>/<cache dir>/": image_id */
} ContextObject;

static bool logger_set_up; /* under the GIL */

/* Run `call` on the context's vmd_ctx with the GIL released and the
 * context's mutex held. `closed` is set when the context was closed (by
 * another thread, too: checked under the mutex). */
#define CTX_CALL(self, rc, closed, call)                                    \
	do {                                                                 \
		Py_BEGIN_ALLOW_THREADS                                       \
		pthread_mutex_lock(&(self)->lock);                           \
		if (!(self)->ctx) {                                          \
			(closed) = true;                                     \
		} else {                                                     \
			struct vmd_ctx *ctx_ = (self)->ctx;                  \
			(rc) = (call);                                       \
		}                                                            \
		pthread_mutex_unlock(&(self)->lock);                         \
		Py_END_ALLOW_THREADS                                         \
	} while (0)

static PyObject *raise_closed(void)
{
	PyErr_SetString(PyExc_ValueError, "operation on a closed vmdisk.Context");
	return NULL;
}

/* After CTX_CALL: true, with the Python exception set, when the Context was
 * closed or the library call failed. */
static bool call_failed(int rc, bool closed, const struct vmd_error *err)
{
	if (closed)
		raise_closed();
	else if (rc < 0)
		raise_err(err);
	return closed || rc < 0;
}

static PyObject *ctx_new_obj(PyTypeObject *type, PyObject *args,
                             PyObject *kwds)
{
	ContextObject *self = (ContextObject *)type->tp_alloc(type, 0);

	(void)args;
	(void)kwds;
	if (!self)
		return NULL;
	if (pthread_mutex_init(&self->lock, NULL) != 0) {
		Py_DECREF(self);
		return PyErr_NoMemory();
	}
	self->lock_init = true;
	return (PyObject *)self;
}

static int ctx_init(ContextObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"config", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_config *cfg;
	struct vmd_ctx *ctx = NULL;
	PyObject *path_obj = Py_None, *path = NULL;
	const char *path_s = NULL;
	int rc;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:Context", kwlist,
	                                 &path_obj))
		return -1;
	if (self->ctx) {
		PyErr_SetString(PyExc_ValueError, "Context already initialised");
		return -1;
	}
	if (path_obj != Py_None) {
		if (!conv_path(path_obj, &path))
			return -1;
		path_s = PyBytes_AS_STRING(path);
	}
	/* struct vmd_config is large (several PATH_MAX fields): heap. */
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		Py_XDECREF(path);
		PyErr_NoMemory();
		return -1;
	}
	Py_BEGIN_ALLOW_THREADS
	rc = vmd_config_load(cfg, path_s, &err);
	Py_END_ALLOW_THREADS
	Py_XDECREF(path);
	if (rc < 0) {
		free(cfg);
		raise_err(&err);
		return -1;
	}
	/* The logger is process-wide (log.h) and is to be set up before
	 * other threads log: the first Context's configuration says where,
	 * as the CLI's does for its one run. */
	if (!logger_set_up) {
		vmd_log_setup(cfg->log_target, cfg->log_level, "vmdisk");
		logger_set_up = true;
	}
#ifdef VMD_PY_TEST_MODULE_DIR
	/* Test builds only (-Dfault_injection=true), as the CLI: backend
	 * modules from the build tree. */
	{
		const char *module_dir = getenv("VMDISK_MODULE_DIR");

		if (module_dir && module_dir[0] == '/')
			vmd_backend_set_module_dir(module_dir);
	}
#endif
	Py_BEGIN_ALLOW_THREADS
	ctx = vmd_ctx_new(cfg, &err);
	Py_END_ALLOW_THREADS
	self->max_virtual_size = cfg->max_image_virtual_size;
	PyMem_Free(self->cache_prefix);
	size_t prefix_len = strlen(cfg->instances_path) +
	                    strlen(cfg->image_cache_subdirectory_name) + 3;

	self->cache_prefix = PyMem_Malloc(prefix_len);
	if (self->cache_prefix)
		snprintf(self->cache_prefix, prefix_len, "%s/%s/",
		         cfg->instances_path, cfg->image_cache_subdirectory_name);
	free(cfg);
	if (!self->cache_prefix) {
		if (ctx)
			vmd_ctx_free(ctx);
		PyErr_NoMemory();
		return -1;
	}
	if (!ctx) {
		raise_err(&err);
		return -1;
	}
	self->ctx = ctx;
	return 0;
}

static void ctx_dealloc(ContextObject *self)
{
	/* No other reference: nobody else can be inside a call. */
	if (self->ctx) {
		struct vmd_ctx *ctx = self->ctx;

		self->ctx = NULL;
		Py_BEGIN_ALLOW_THREADS
		vmd_ctx_free(ctx);
		Py_END_ALLOW_THREADS
	}
	if (self->lock_init)
		pthread_mutex_destroy(&self->lock);
	PyMem_Free(self->cache_prefix);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ctx_close(ContextObject *self, PyObject *unused)
{
	struct vmd_ctx *ctx;

	(void)unused;
	/* Waits for a call another thread is making on this context. */
	Py_BEGIN_ALLOW_THREADS
	pthread_mutex_lock(&self->lock);
	ctx = self->ctx;
	self->ctx = NULL;
	pthread_mutex_unlock(&self->lock);
	vmd_ctx_free(ctx);
	Py_END_ALLOW_THREADS
	Py_RETURN_NONE;
}

static PyObject *ctx_enter(ContextObject *self, PyObject *unused)
{
	(void)unused;
	if (!self->ctx)
		return raise_closed();
	Py_INCREF(self);
	return (PyObject *)self;
}

static PyObject *ctx_exit(ContextObject *self, PyObject *args)
{
	PyObject *r;

	(void)args;
	r = ctx_close(self, NULL);
	if (!r)
		return NULL;
	Py_DECREF(r);
	Py_RETURN_FALSE;
}

static PyObject *ctx_closed(ContextObject *self, void *closure)
{
	(void)closure;
	return PyBool_FromLong(self->ctx == NULL);
}

/* create(instance, disk, image=None, size=None, backend=None,
 *        checksum=None, location=None, blank=False, fs=None, label=None,
 *        key_id=None) -> dict */
static PyObject *ctx_create(ContextObject *self, PyObject *args,
                            PyObject *kwds)
{
	static char *kwlist[] = {"instance", "disk",     "image", "size",
	                         "backend",  "checksum", "location",
	                         "blank",    "fs",       "label", "key_id",
	                         NULL};
	struct vmd_create_opts o = {.backend = VMD_BACKEND_DEFAULT};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	const char *instance, *disk, *backend = NULL, *fs = NULL;
	PyObject *size = Py_None;
	int blank = 0, rc = 0;
	bool closed = false;

	if (!PyArg_ParseTupleAndKeywords(
		    args, kwds, "O&O&|$O&OO&O&O&pO&O&O&:create", kwlist,
		    conv_str, &instance, conv_str, &disk, conv_opt_str,
		    &o.image, &size, conv_opt_str, &backend, conv_opt_str,
		    &o.checksum, conv_opt_str, &o.location, &blank,
		    conv_opt_str, &fs, conv_opt_str, &o.label, conv_opt_str,
		    &o.key_id))
		return NULL;
	if (size != Py_None && parse_size_obj(size, &o.size) < 0)
		return NULL;
	if (backend && vmd_parse_backend(backend, &o.backend, &err) < 0)
		return raise_err(&err);
	if (fs && vmd_parse_blank_fs(fs, &o.fs, &err) < 0)
		return raise_err(&err);
	/* The CLI's combination rules (tools/vmdisk.c cmd_create). */
	if (o.location && blank)
		return raise_code(VMD_E_INVAL,
		                  "create: location does not go with blank");
	if (!o.location && !o.image == !blank)
		return raise_code(VMD_E_INVAL, "create: give image or blank");
	if (blank && !o.size)
		return raise_code(VMD_E_INVAL, "create: blank needs a size");
	if ((fs || o.label) && !blank)
		return raise_code(VMD_E_INVAL, "create: fs and label go with blank");
	if (o.label && !vmd_valid_fs_label(o.fs, o.label))
		return raise_code(VMD_E_INVAL,
		                  "create: bad label for this file system");
	CTX_CALL(self, rc, closed,
	         vmd_disk_create(ctx_, instance, disk, &o, &info, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	return info_dict(instance, disk, self->cache_prefix, &info);
}

/* The (instance, disk) methods. */
static int parse_disk_args(PyObject *args, PyObject *kwds, const char *fmt,
                           const char **instance, const char **disk)
{
	static char *kwlist[] = {"instance", "disk", NULL};

	return PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, conv_str,
	                                   instance, conv_str, disk);
}

static PyObject *ctx_info(ContextObject *self, PyObject *args,
                          PyObject *kwds)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	const char *instance, *disk;
	bool closed = false;
	int rc = 0;

	if (!parse_disk_args(args, kwds, "O&O&:info", &instance, &disk))
		return NULL;
	CTX_CALL(self, rc, closed,
	         vmd_disk_info(ctx_, instance, disk, &info, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	return info_dict(instance, disk, self->cache_prefix, &info);
}

static PyObject *ctx_resize(ContextObject *self, PyObject *args,
                            PyObject *kwds)
{
	static char *kwlist[] = {"instance", "disk", "size", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	const char *instance, *disk;
	PyObject *size_obj;
	uint64_t size;
	bool closed = false;
	int rc = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O&O:resize", kwlist,
	                                 conv_str, &instance, conv_str, &disk,
	                                 &size_obj))
		return NULL;
	if (parse_size_obj(size_obj, &size) < 0)
		return NULL;
	CTX_CALL(self, rc, closed,
	         vmd_disk_resize(ctx_, instance, disk, size, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *ctx_remove(ContextObject *self, PyObject *args,
                            PyObject *kwds)
{
	struct vmd_error err = VMD_ERROR_INIT;
	const char *instance, *disk;
	bool closed = false;
	int rc = 0;

	if (!parse_disk_args(args, kwds, "O&O&:remove", &instance, &disk))
		return NULL;
	CTX_CALL(self, rc, closed, vmd_disk_remove(ctx_, instance, disk, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *ctx_flatten(ContextObject *self, PyObject *args,
                             PyObject *kwds)
{
	struct vmd_error err = VMD_ERROR_INIT;
	const char *instance, *disk;
	bool closed = false;
	int rc = 0;

	if (!parse_disk_args(args, kwds, "O&O&:flatten", &instance, &disk))
		return NULL;
	CTX_CALL(self, rc, closed,
	         vmd_disk_flatten(ctx_, instance, disk, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	Py_RETURN_NONE;
}

/* fetch(source, checksum=None) -> the CLI's `fetch --json` dict. */
static PyObject *ctx_fetch(ContextObject *self, PyObject *args,
                           PyObject *kwds)
{
	static char *kwlist[] = {"source", "checksum", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_fetch_opts fo = {0};
	struct vmd_cache_entry *e;
	const char *source;
	uint64_t file_size = 0;
	bool closed = false;
	int rc = 0;
	PyObject *d;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|O&:fetch", kwlist,
	                                 conv_str, &source, conv_opt_str,
	                                 &fo.checksum))
		return NULL;
	e = calloc(1, sizeof(*e)); /* holds a PATH_MAX path */
	if (!e)
		return PyErr_NoMemory();
	CTX_CALL(self, rc, closed, vmd_cache_fetch_ex(ctx_, source, &fo, e, &err));
	if (rc == 0 && !closed) {
		struct stat st;

		Py_BEGIN_ALLOW_THREADS
		if (stat(e->path, &st) == 0)
			file_size = (uint64_t)st.st_size;
		Py_END_ALLOW_THREADS
	}
	if (closed || rc < 0) {
		free(e);
		return closed ? raise_closed() : raise_err(&err);
	}
	d = PyDict_New();
	if (d &&
	    (dict_set(d, "id", PyUnicode_FromString(e->id)) < 0 ||
	     dict_set(d, "path", PyUnicode_DecodeFSDefault(e->path)) < 0 ||
	     dict_set(d, "format",
	              PyUnicode_FromString(vmd_format_name(e->format))) < 0 ||
	     dict_set(d, "virtual_size",
	              PyLong_FromUnsignedLongLong(e->virtual_size)) < 0 ||
	     dict_set(d, "size", PyLong_FromUnsignedLongLong(file_size)) < 0 ||
	     dict_set(d, "hash_algo", str_or_none(e->hash_algo)) < 0 ||
	     dict_set(d, "hash", str_or_none(e->hash)) < 0 ||
	     dict_set(d, "fetched", PyBool_FromLong(e->fetched)) < 0))
		Py_CLEAR(d);
	free(e);
	return d;
}

/* Open an image the caller names (with the caller's rights), as the CLI:
 * O_NONBLOCK so that a FIFO cannot hang us (the inspector refuses it). */
static int open_image(const char *path, const char *msg,
                      struct vmd_error *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		vmd_error_set_errno(err, VMD_E_NOTFOUND, errno, msg, "open");
	return fd;
}

static PyObject *inspection_dict(const struct vmd_inspect_result *r)
{
	PyObject *d = PyDict_New(), *reasons = NULL;

	if (!d)
		return NULL;
	reasons = PyList_New(0);
	if (!reasons) {
		Py_DECREF(d);
		return NULL;
	}
	/* As `inspect --json`: each failed check as {"check", "reason"}. */
	for (unsigned i = 0; i < r->n_reasons && i < VMD_INSPECT_MAX_REASONS;
	     i++) {
		PyObject *e = PyDict_New();
		int bad = !e ||
		          dict_set(e, "check",
		                   PyUnicode_FromString(r->reasons[i].code)) < 0 ||
		          dict_set(e, "reason",
		                   PyUnicode_FromString(r->reasons[i].text)) < 0 ||
		          PyList_Append(reasons, e) < 0;

		Py_XDECREF(e);
		if (bad) {
			Py_DECREF(reasons);
			Py_DECREF(d);
			return NULL;
		}
	}
	/* dict_set gives up the reference whether it succeeds or not. */
	if (dict_set(d, "reasons", reasons) < 0 ||
	    dict_set(d, "format",
	             PyUnicode_FromString(vmd_image_format_name(r->format))) < 0 ||
	    dict_set(d, "virtual_size",
	             PyLong_FromUnsignedLongLong(r->virtual_size)) < 0 ||
	    dict_set(d, "file_size", PyLong_FromUnsignedLongLong(r->file_size)) < 0 ||
	    dict_set(d, "actual_size",
	             PyLong_FromUnsignedLongLong(r->actual_size)) < 0 ||
	    dict_set(d, "cluster_size",
	             PyLong_FromUnsignedLong(r->cluster_size)) < 0 ||
	    dict_set(d, "backing_file", str_or_none(r->backing_file)) < 0 ||
	    dict_set(d, "backing_format", str_or_none(r->backing_format)) < 0 ||
	    dict_set(d, "incompatible_features",
	             PyLong_FromUnsignedLongLong(r->incompatible_features)) < 0 ||
	    dict_set(d, "safe", PyBool_FromLong(r->safe)) < 0) {
		Py_DECREF(d);
		return NULL;
	}
	return d;
}

/* inspect(path, allow_backing=False) -> dict; an unsafe image is a result
 * ("safe": False), not an exception. */
static PyObject *ctx_inspect(ContextObject *self, PyObject *args,
                             PyObject *kwds)
{
	static char *kwlist[] = {"path", "allow_backing", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result *r;
	PyObject *path = NULL, *d;
	int allow_backing = 0, rc = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&|p:inspect", kwlist,
	                                 conv_path, &path, &allow_backing))
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r) {
		Py_DECREF(path);
		return PyErr_NoMemory();
	}
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = self->max_virtual_size;
	Py_BEGIN_ALLOW_THREADS
	int fd = open_image(PyBytes_AS_STRING(path),
	                    "inspect: cannot open the image", &err);

	if (fd < 0) {
		rc = -1;
	} else {
		rc = vmd_inspect_fd(fd, &lim,
		                    allow_backing ? VMD_INSPECT_ALLOW_BACKING : 0u,
		                    r, &err);
		close(fd);
	}
	Py_END_ALLOW_THREADS
	Py_DECREF(path);
	d = rc < 0 ? raise_err(&err) : inspection_dict(r);
	free(r);
	return d;
}

/* convert(src, dst, out_format, in_format=None, allow_backing=False) */
static PyObject *ctx_convert(ContextObject *self, PyObject *args,
                             PyObject *kwds)
{
	static char *kwlist[] = {"src",       "dst",           "out_format",
	                         "in_format", "allow_backing", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_image_convert_opts o = {0};
	struct vmd_inspect_limits lim;
	PyObject *src = NULL, *dst = NULL;
	const char *out_format, *in_format = NULL;
	int allow_backing = 0, rc = 0;
	bool unsupported = false;
	char unsupported_msg[96] = "";

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O&O&|O&p:convert",
	                                 kwlist, conv_path, &src, conv_path,
	                                 &dst, conv_str, &out_format,
	                                 conv_opt_str, &in_format,
	                                 &allow_backing)) {
		Py_XDECREF(src);
		Py_XDECREF(dst);
		return NULL;
	}
	if (vmd_parse_format(out_format, &o.dst_format, &err) < 0 ||
	    (in_format && vmd_parse_format(in_format, &o.src_format, &err) < 0)) {
		Py_DECREF(src);
		Py_DECREF(dst);
		return raise_err(&err);
	}
	o.allow_backing = allow_backing;
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = self->max_virtual_size;
	o.limits = &lim;
	Py_BEGIN_ALLOW_THREADS
	if (!in_format) {
		/* The source's format from the inspector, as the CLI's
		 * convert_source_format: a probe that trusts no header beyond
		 * its own checks. */
		struct vmd_inspect_result *r = calloc(1, sizeof(*r));
		int fd = -1;

		if (!r)
			rc = vmd_error_set(&err, VMD_E_NOMEM,
			                   "convert: out of memory", "calloc");
		else
			fd = open_image(PyBytes_AS_STRING(src),
			                "convert: cannot open the source", &err);
		if (r && fd < 0)
			rc = -1;
		if (fd >= 0) {
			rc = vmd_inspect_fd(fd, NULL, VMD_INSPECT_ALLOW_BACKING, r,
			                    &err);
			close(fd);
		}
		if (rc == 0) {
			if (vmd_image_format_is_raw(r->format)) {
				o.src_format = VMD_FORMAT_RAW;
			} else if (r->format == VMD_IMG_QCOW2) {
				o.src_format = VMD_FORMAT_QCOW2;
			} else {
				unsupported = true;
				snprintf(unsupported_msg, sizeof(unsupported_msg),
				         "convert: source format %s is not "
				         "supported",
				         vmd_image_format_name(r->format));
			}
		}
		free(r);
	}
	if (rc == 0 && !unsupported)
		rc = vmd_image_convert(PyBytes_AS_STRING(src),
		                       PyBytes_AS_STRING(dst), &o, &err);
	Py_END_ALLOW_THREADS
	Py_DECREF(src);
	Py_DECREF(dst);
	if (unsupported)
		return raise_code(VMD_E_UNSUPPORTED, unsupported_msg);
	if (rc < 0)
		return raise_err(&err);
	Py_RETURN_NONE;
}

/* extract(instance, disk, dst, out_format="raw") */
static PyObject *ctx_extract(ContextObject *self, PyObject *args,
                             PyObject *kwds)
{
	static char *kwlist[] = {"instance", "disk", "dst", "out_format", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	enum vmd_format fmt = VMD_FORMAT_RAW;
	const char *instance, *disk, *out_format = "raw";
	PyObject *dst = NULL;
	bool closed = false;
	int rc = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O&O&|O&:extract", kwlist,
	                                 conv_str, &instance, conv_str, &disk,
	                                 conv_path, &dst, conv_str,
	                                 &out_format)) {
		Py_XDECREF(dst);
		return NULL;
	}
	if (vmd_parse_format(out_format, &fmt, &err) < 0) {
		Py_DECREF(dst);
		return raise_err(&err);
	}
	CTX_CALL(self, rc, closed,
	         vmd_disk_snapshot_extract(ctx_, instance, disk,
	                                   PyBytes_AS_STRING(dst), fmt, &err));
	Py_DECREF(dst);
	if (call_failed(rc, closed, &err))
		return NULL;
	Py_RETURN_NONE;
}

/* libvirt_xml(instance, disk, dev="vda", bus=None, cache=None,
 *             discard=None, boot_order=None, qos=None, filesystem=None) */
static PyObject *ctx_libvirt_xml(ContextObject *self, PyObject *args,
                                 PyObject *kwds)
{
	static char *kwlist[] = {"instance", "disk",       "dev", "bus",
	                         "cache",    "discard",    "boot_order",
	                         "qos",      "filesystem", NULL};
	struct vmd_xml_opts o = {.dev = "vda"};
	struct vmd_error err = VMD_ERROR_INIT;
	const char *instance, *disk;
	PyObject *boot = Py_None, *res;
	char *xml = NULL;
	bool closed = false;
	int rc = 0;

	if (!PyArg_ParseTupleAndKeywords(
		    args, kwds, "O&O&|O&O&O&O&OO&O&:libvirt_xml", kwlist, conv_str,
		    &instance, conv_str, &disk, conv_str, &o.dev, conv_opt_str,
		    &o.bus, conv_opt_str, &o.cache, conv_opt_str, &o.discard,
		    &boot, conv_opt_str, &o.qos, conv_opt_str,
		    &o.filesystem_target))
		return NULL;
	if (boot != Py_None) {
		long n;

		if (!PyLong_Check(boot) || PyBool_Check(boot)) {
			PyErr_SetString(PyExc_TypeError, "boot_order must be int");
			return NULL;
		}
		n = PyLong_AsLong(boot);
		if (n == -1 && PyErr_Occurred()) {
			PyErr_Clear();
			n = 0;
		}
		if (n < 1 || n > 65535)
			return raise_code(VMD_E_INVAL,
			                  "libvirt-xml: boot_order takes 1..65535");
		o.boot_order = (unsigned)n;
	}
	CTX_CALL(self, rc, closed,
	         vmd_disk_libvirt_xml(ctx_, instance, disk, &o, &xml, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	res = PyUnicode_FromString(xml ? xml : "");
	free(xml);
	return res;
}

enum snap_op { SNAP_CREATE, SNAP_REMOVE, SNAP_ROLLBACK };

static PyObject *snap_call(ContextObject *self, PyObject *args,
                           PyObject *kwds, enum snap_op op, const char *fmt)
{
	static char *kwlist[] = {"instance", "disk", "name", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	const char *instance, *disk, *name;
	bool closed = false;
	int rc = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, fmt, kwlist, conv_str,
	                                 &instance, conv_str, &disk, conv_str,
	                                 &name))
		return NULL;
	switch (op) {
	case SNAP_CREATE:
		CTX_CALL(self, rc, closed,
		         vmd_disk_snap_create(ctx_, instance, disk, name, &err));
		break;
	case SNAP_REMOVE:
		CTX_CALL(self, rc, closed,
		         vmd_disk_snap_remove(ctx_, instance, disk, name, &err));
		break;
	case SNAP_ROLLBACK:
		CTX_CALL(self, rc, closed,
		         vmd_disk_snap_rollback(ctx_, instance, disk, name, &err));
		break;
	}
	if (call_failed(rc, closed, &err))
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *ctx_snap_create(ContextObject *self, PyObject *args,
                                 PyObject *kwds)
{
	return snap_call(self, args, kwds, SNAP_CREATE,
	                 "O&O&O&:snapshot_create");
}

static PyObject *ctx_snap_remove(ContextObject *self, PyObject *args,
                                 PyObject *kwds)
{
	return snap_call(self, args, kwds, SNAP_REMOVE,
	                 "O&O&O&:snapshot_remove");
}

static PyObject *ctx_snap_rollback(ContextObject *self, PyObject *args,
                                   PyObject *kwds)
{
	return snap_call(self, args, kwds, SNAP_ROLLBACK,
	                 "O&O&O&:snapshot_rollback");
}

/* direct_snapshot(instance, disk, name) -> location (rbd://...) */
static PyObject *ctx_direct_snapshot(ContextObject *self, PyObject *args,
                                     PyObject *kwds)
{
	static char *kwlist[] = {"instance", "disk", "name", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	const char *instance, *disk, *name;
	char url[512] = "";
	bool closed = false;
	int rc = 0;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O&O&O&:direct_snapshot",
	                                 kwlist, conv_str, &instance, conv_str,
	                                 &disk, conv_str, &name))
		return NULL;
	CTX_CALL(self, rc, closed,
	         vmd_disk_direct_snapshot(ctx_, instance, disk, name, url,
	                                  sizeof(url), &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	return PyUnicode_FromString(url);
}

/* cache_list() -> the CLI's `cache list --json` array. */
static PyObject *ctx_cache_list(ContextObject *self, PyObject *unused)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_item *items = NULL;
	size_t n = 0;
	bool closed = false;
	int rc = 0;
	PyObject *list;

	(void)unused;
	CTX_CALL(self, rc, closed, vmd_cache_list(ctx_, &items, &n, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	list = PyList_New(0);
	for (size_t i = 0; list && i < n; i++) {
		const struct vmd_cache_item *it = &items[i];
		PyObject *d = PyDict_New();

		if (!d ||
		    dict_set(d, "id", PyUnicode_FromString(it->id)) < 0 ||
		    dict_set(d, "size", PyLong_FromUnsignedLongLong(it->size)) < 0 ||
		    dict_set(d, "allocated",
		             PyLong_FromUnsignedLongLong(it->allocated)) < 0 ||
		    dict_set(d, "mtime", PyLong_FromLongLong(it->mtime)) < 0 ||
		    dict_set(d, "resized", PyBool_FromLong(it->resized)) < 0 ||
		    dict_set(d, "users", PyLong_FromUnsignedLong(it->users)) < 0 ||
		    dict_set(d, "hash_algo", str_or_none(it->hash_algo)) < 0 ||
		    dict_set(d, "hash", str_or_none(it->hash)) < 0 ||
		    PyList_Append(list, d) < 0)
			Py_CLEAR(list);
		Py_XDECREF(d);
	}
	free(items);
	return list;
}

/* cache_prune(dry_run=False) -> the CLI's `cache prune --json` array. */
static PyObject *ctx_cache_prune(ContextObject *self, PyObject *args,
                                 PyObject *kwds)
{
	static char *kwlist[] = {"dry_run", NULL};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_prune_item *items = NULL;
	size_t n = 0;
	int dry_run = 0, rc = 0;
	bool closed = false;
	PyObject *list;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:cache_prune", kwlist,
	                                 &dry_run))
		return NULL;
	CTX_CALL(self, rc, closed,
	         vmd_cache_prune(ctx_, dry_run, &items, &n, &err));
	if (call_failed(rc, closed, &err))
		return NULL;
	list = PyList_New(0);
	for (size_t i = 0; list && i < n; i++) {
		const struct vmd_prune_item *it = &items[i];
		PyObject *d = PyDict_New();

		if (!d ||
		    dict_set(d, "id", PyUnicode_FromString(it->id)) < 0 ||
		    dict_set(d, "action", PyUnicode_FromString(
			                          vmd_prune_action_name(it->action))) < 0 ||
		    dict_set(d, "age", PyLong_FromUnsignedLongLong(it->age)) < 0 ||
		    dict_set(d, "users", PyLong_FromUnsignedLong(it->users)) < 0 ||
		    PyList_Append(list, d) < 0)
			Py_CLEAR(list);
		Py_XDECREF(d);
	}
	free(items);
	return list;
}

#define KW (METH_VARARGS | METH_KEYWORDS)
#define KWFN(f) ((PyCFunction)(void (*)(void))(f))

static PyMethodDef ctx_methods[] = {
	{"create", KWFN(ctx_create), KW,
	 "create(instance, disk, image=None, size=None, *, backend=None,\n"
	 "       checksum=None, location=None, blank=False, fs=None,\n"
	 "       label=None, key_id=None) -> dict\n\n"
	 "Create a disk from an image source (or blank); returns info()."},
	{"info", KWFN(ctx_info), KW,
	 "info(instance, disk) -> dict: instance, disk, backend, format,\n"
	 "virtual_size, actual_size, path, backing and image_id (None when\n"
	 "none) and, where any, snapshots (doc/json.md, info)."},
	{"resize", KWFN(ctx_resize), KW,
	 "resize(instance, disk, size): grow a disk (never shrinks)."},
	{"remove", KWFN(ctx_remove), KW, "remove(instance, disk)"},
	{"fetch", KWFN(ctx_fetch), KW,
	 "fetch(source, checksum=None) -> dict: bring an image into the cache."},
	{"inspect", KWFN(ctx_inspect), KW,
	 "inspect(path, allow_backing=False) -> dict with 'safe' (bool),\n"
	 "'reasons' ('check: text' strings) and 'checks' (the check names)."},
	{"convert", KWFN(ctx_convert), KW,
	 "convert(src, dst, out_format, in_format=None, allow_backing=False)"},
	{"extract", KWFN(ctx_extract), KW,
	 "extract(instance, disk, dst, out_format='raw'): the disk's content,\n"
	 "flattened, into the new file dst."},
	{"libvirt_xml", KWFN(ctx_libvirt_xml), KW,
	 "libvirt_xml(instance, disk, dev='vda', bus=None, cache=None,\n"
	 "            discard=None, boot_order=None, qos=None,\n"
	 "            filesystem=None) -> str"},
	{"snapshot_create", KWFN(ctx_snap_create), KW,
	 "snapshot_create(instance, disk, name)"},
	{"snapshot_remove", KWFN(ctx_snap_remove), KW,
	 "snapshot_remove(instance, disk, name)"},
	{"snapshot_rollback", KWFN(ctx_snap_rollback), KW,
	 "snapshot_rollback(instance, disk, name)"},
	{"flatten", KWFN(ctx_flatten), KW, "flatten(instance, disk)"},
	{"direct_snapshot", KWFN(ctx_direct_snapshot), KW,
	 "direct_snapshot(instance, disk, name) -> location"},
	{"cache_list", (PyCFunction)ctx_cache_list, METH_NOARGS,
	 "cache_list() -> list of dict"},
	{"cache_prune", KWFN(ctx_cache_prune), KW,
	 "cache_prune(dry_run=False) -> list of dict"},
	{"close", (PyCFunction)ctx_close, METH_NOARGS,
	 "close(): free the library context (waits for a running call)."},
	{"__enter__", (PyCFunction)ctx_enter, METH_NOARGS, NULL},
	{"__exit__", (PyCFunction)ctx_exit, METH_VARARGS, NULL},
	{NULL, NULL, 0, NULL},
};

static PyGetSetDef ctx_getset[] = {
	{"closed", (getter)ctx_closed, NULL, "Whether close() was called.",
	 NULL},
	{NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ContextType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "vmdisk.Context",
	.tp_basicsize = sizeof(ContextObject),
	.tp_dealloc = (destructor)ctx_dealloc,
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "Context(config=None): a libvmdisk context over one "
	          "configuration\n(a vmdisk.conf path; None: $VMDISK_CONFIG, "
	          "then /etc/vmdisk/vmdisk.conf).",
	.tp_methods = ctx_methods,
	.tp_getset = ctx_getset,
	.tp_init = (initproc)ctx_init,
	.tp_new = ctx_new_obj,
};

/* ---- module ---- */

static PyObject *mod_version(PyObject *m, PyObject *unused)
{
	(void)m;
	(void)unused;
	return PyUnicode_FromString(vmd_version());
}

static PyMethodDef mod_methods[] = {
	{"version", mod_version, METH_NOARGS,
	 "version() -> the libvmdisk version string."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
	PyModuleDef_HEAD_INIT,
	.m_name = "vmdisk._vmdisk",
	.m_doc = "The C binding of libvmdisk; use the package vmdisk.",
	.m_size = -1,
	.m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__vmdisk(void);

PyMODINIT_FUNC PyInit__vmdisk(void)
{
	PyObject *m;

	if (PyType_Ready(&ContextType) < 0)
		return NULL;
	m = PyModule_Create(&moddef);
	if (!m)
		return NULL;
	error_base = PyErr_NewExceptionWithDoc(
		"vmdisk.Error",
		"A libvmdisk call failed. .code is the error's name\n"
		"(\"VMD_E_NOTFOUND\"...), str() and .message the public message.",
		NULL, NULL);
	if (!error_base || PyModule_AddObjectRef(m, "Error", error_base) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	for (size_t i = 0; i < N_ERRC; i++) {
		char qual[64];
		struct errc_class *c = &errc_classes[i];

		snprintf(qual, sizeof(qual), "vmdisk.%s", c->class_name);
		c->type = PyErr_NewExceptionWithDoc(qual, c->doc, error_base,
		                                    NULL);
		if (!c->type ||
		    PyModule_AddObjectRef(m, c->class_name, c->type) < 0) {
			Py_DECREF(m);
			return NULL;
		}
	}
	if (PyModule_AddObjectRef(m, "Context", (PyObject *)&ContextType) < 0 ||
	    PyModule_AddStringConstant(m, "__version__", vmd_version()) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
