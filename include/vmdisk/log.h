/*
 * Logging with secret redaction.
 *
 * A process-wide logger: a level threshold and a target (stderr, syslog or
 * nothing). Every line, every error text (see error.h) and every argv the
 * runner dumps goes through vmd_redact(), which replaces each registered
 * secret (key, passphrase, token, Ceph key) with "***". Register a secret as
 * soon as it is read and unregister it just before it is wiped.
 *
 * Threads and state: the logger (target, level, ident, sink) and the
 * secret registry are process-wide, shared by every context and thread,
 * and guarded by one mutex: logging, vmd_redact and the vmd_secret_* calls
 * are thread-safe. vmd_log_setup and vmd_log_set_sink take the mutex too,
 * but the cheap level check before a line is formatted (and
 * vmd_log_get_level) reads the settings without it: set the logger up
 * before other threads log. The sink is called outside the mutex, from
 * whichever thread logs, and may itself log.
 */
#ifndef VMDISK_LOG_H
#define VMDISK_LOG_H

/* The library is built with hidden visibility; what this header declares
 * is its ABI (lib/libvmdisk.sym). */
#pragma GCC visibility push(default)

#include <stdarg.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum vmd_log_level {
	VMD_LOG_ERROR = 0,
	VMD_LOG_WARNING = 1,
	VMD_LOG_INFO = 2,
	VMD_LOG_DEBUG = 3,
};

enum vmd_log_target {
	VMD_LOG_TO_NONE = 0,
	VMD_LOG_TO_STDERR = 1,
	VMD_LOG_TO_SYSLOG = 2,
};

void vmd_log_setup(enum vmd_log_target target, enum vmd_log_level level,
                   const char *ident);
enum vmd_log_level vmd_log_get_level(void);

/* Optional sink that receives every (already redacted) line; tests use it. */
typedef void (*vmd_log_sink_fn)(enum vmd_log_level level, const char *line,
                                void *opaque);
void vmd_log_set_sink(vmd_log_sink_fn sink, void *opaque);

void vmd_log(enum vmd_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void vmd_logv(enum vmd_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

#define vmd_log_error(...) vmd_log(VMD_LOG_ERROR, __VA_ARGS__)
#define vmd_log_warning(...) vmd_log(VMD_LOG_WARNING, __VA_ARGS__)
#define vmd_log_info(...) vmd_log(VMD_LOG_INFO, __VA_ARGS__)
#define vmd_log_debug(...) vmd_log(VMD_LOG_DEBUG, __VA_ARGS__)

/*
 * Secret registry. Secrets shorter than 4 bytes are refused (returns -1):
 * redacting them would mangle ordinary text while protecting nothing.
 * The registry keeps its own copy, held in locked memory and wiped on removal.
 * Registrations are counted: a secret registered twice stays redacted until
 * it has been unregistered twice. At most 96 distinct secrets (-1 beyond).
 */
int vmd_secret_register(const char *secret);
void vmd_secret_unregister(const char *secret);
void vmd_secret_clear_all(void);

/* Copy `in` to `out` (always NUL-terminated, truncated to outsz) with every
 * registered secret replaced by "***". Returns the length written. */
size_t vmd_redact(const char *in, char *out, size_t outsz);

#ifdef __cplusplus
}
#endif
#pragma GCC visibility pop
#endif
