/*
 * The one error type of libvmdisk.
 *
 * Every public call that can fail takes a `struct vmd_error *err` as its last
 * argument and returns 0 on success or a negative `enum vmd_errc` on failure.
 * On failure `err` holds two texts:
 *   - `msg`:    short, safe to show to the caller; it names the failed step
 *               ("create: copy base image") and never a host path outside the
 *               instance, a backend setting or a secret;
 *   - `detail`: the cause (errno text, program output, paths), for the log.
 * vmd_error_set() writes the detail to the log at the point where the error is
 * known, so callers only add context (vmd_error_prefix) and never re-log.
 * Both texts pass through the secret redaction before they are stored.
 *
 * Threads and state: no state of its own. A struct vmd_error belongs to
 * its caller and to one call at a time; the calls are thread-safe and use
 * the process-wide logger and secret registry (log.h).
 */
#ifndef VMDISK_ERROR_H
#define VMDISK_ERROR_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum vmd_errc {
	VMD_OK = 0,
	VMD_E_INVAL = -1,       /* bad argument or input value */
	VMD_E_NOTFOUND = -2,    /* disk, image or instance does not exist */
	VMD_E_EXISTS = -3,      /* target already exists */
	VMD_E_IO = -4,          /* read/write/sync failure */
	VMD_E_NOMEM = -5,
	VMD_E_EXTERNAL = -6,    /* an external program failed or timed out */
	VMD_E_UNSUPPORTED = -7, /* not supported (yet) by this backend/format */
	VMD_E_CONFIG = -8,      /* bad configuration */
	VMD_E_REFUSED = -9,     /* refused by a safety check */
	VMD_E_TOOSMALL = -10,   /* requested size smaller than the image */
	VMD_E_BUSY = -11,       /* lock not obtained in time */
	VMD_E_CORRUPT = -12,    /* on-disk structure is inconsistent */
};

#define VMD_ERROR_MSG_MAX 160
#define VMD_ERROR_DETAIL_MAX 768

struct vmd_error {
	enum vmd_errc code;
	char msg[VMD_ERROR_MSG_MAX];
	char detail[VMD_ERROR_DETAIL_MAX];
};

#define VMD_ERROR_INIT {VMD_OK, "", ""}

/*
 * Set `err` (if not NULL) and return `code`. `msg` is the public text; the
 * printf-style detail is logged at error level and kept in err->detail.
 * A NULL `err` still logs. If `err` already holds an error it is kept: the
 * first cause wins, so a failing clean-up step cannot hide the real failure.
 */
int vmd_error_set(struct vmd_error *err, enum vmd_errc code, const char *msg,
                  const char *detail_fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Same, with the detail built from errno: "<detail>: <strerror(errnum)>". */
int vmd_error_set_errno(struct vmd_error *err, enum vmd_errc code, int errnum,
                        const char *msg, const char *detail_fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Prefix the public message with a step name: "create: " + msg. */
void vmd_error_prefix(struct vmd_error *err, const char *step);

void vmd_error_clear(struct vmd_error *err);
bool vmd_error_is_set(const struct vmd_error *err);
const char *vmd_errc_name(enum vmd_errc code);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
