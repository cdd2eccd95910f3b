/*
 * Process-wide logger and the secret redaction registry.
 *
 * The registry holds copies of the secrets, guarded by a mutex, in chunks
 * of mlock'ed memory allocated as they fill (best effort: a failure to
 * lock is not fatal, it only means the page may be swapped; one chunk
 * stays within the smallest default RLIMIT_MEMLOCK). Each secret is
 * counted: two users of the same key or token (concurrent vmdiskd
 * requests) register it twice, and it stays redacted until both are done.
 * Every formatted line is redacted before it reaches any target; errors
 * (error.c) and argv dumps (runner.c) call vmd_redact() themselves.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>

#include <vmdisk/log.h>

#define SECRET_MAX 1024
#define SECRET_CHUNK 16 /* slots per mlock'ed chunk: 16.6 KiB */
/* vmdiskd's 16 clients with up to 5 forms each (key id, raw, trimmed,
 * hex, token), and the CLI's own. */
#define SECRET_CHUNKS 6
#define LINE_MAX_LEN 2048

struct secret_slot {
	size_t len;    /* 0 = free */
	unsigned refs; /* registrations not yet undone */
	char value[SECRET_MAX];
};

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static enum vmd_log_target log_target = VMD_LOG_TO_STDERR;
static enum vmd_log_level log_level = VMD_LOG_WARNING;
static char log_ident[32] = "vmdisk";
static vmd_log_sink_fn log_sink;
static void *log_sink_opaque;
static struct secret_slot *secret_chunks[SECRET_CHUNKS];

void vmd_log_setup(enum vmd_log_target target, enum vmd_log_level level,
                   const char *ident)
{
	pthread_mutex_lock(&log_mutex);
	if (log_target == VMD_LOG_TO_SYSLOG && target != VMD_LOG_TO_SYSLOG)
		closelog();
	log_target = target;
	log_level = level;
	if (ident)
		snprintf(log_ident, sizeof(log_ident), "%s", ident);
	if (target == VMD_LOG_TO_SYSLOG)
		openlog(log_ident, LOG_PID, LOG_DAEMON);
	pthread_mutex_unlock(&log_mutex);
}

enum vmd_log_level vmd_log_get_level(void)
{
	return log_level;
}

void vmd_log_set_sink(vmd_log_sink_fn sink, void *opaque)
{
	pthread_mutex_lock(&log_mutex);
	log_sink = sink;
	log_sink_opaque = opaque;
	pthread_mutex_unlock(&log_mutex);
}

static const char *level_name(enum vmd_log_level level)
{
	switch (level) {
	case VMD_LOG_ERROR: return "error";
	case VMD_LOG_WARNING: return "warning";
	case VMD_LOG_INFO: return "info";
	case VMD_LOG_DEBUG: return "debug";
	}
	return "?";
}

static int syslog_priority(enum vmd_log_level level)
{
	switch (level) {
	case VMD_LOG_ERROR: return LOG_ERR;
	case VMD_LOG_WARNING: return LOG_WARNING;
	case VMD_LOG_INFO: return LOG_INFO;
	case VMD_LOG_DEBUG: return LOG_DEBUG;
	}
	return LOG_INFO;
}

void vmd_logv(enum vmd_log_level level, const char *fmt, va_list ap)
{
	char raw[LINE_MAX_LEN];
	char line[LINE_MAX_LEN];
	vmd_log_sink_fn sink;
	void *opaque;

	/* Nothing would see the line: do not format or redact it (a hostile
	 * image can make the parsers fail thousands of times a second). */
	if ((level > log_level || log_target == VMD_LOG_TO_NONE) && !log_sink)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	vmd_redact(raw, line, sizeof(line));
	explicit_bzero(raw, sizeof(raw));

	pthread_mutex_lock(&log_mutex);
	sink = log_sink;
	opaque = log_sink_opaque;
	if (level <= log_level) {
		if (log_target == VMD_LOG_TO_STDERR)
			fprintf(stderr, "%s: %s: %s\n", log_ident,
			        level_name(level), line);
		else if (log_target == VMD_LOG_TO_SYSLOG)
			syslog(syslog_priority(level), "%s", line);
	}
	pthread_mutex_unlock(&log_mutex);
	if (sink)
		sink(level, line, opaque);
}

void vmd_log(enum vmd_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmd_logv(level, fmt, ap);
	va_end(ap);
}

/* Slots in use so far: chunks are allocated in order and never freed, so
 * the first missing one ends the registry. Redaction walks this for every
 * character of every line. */
#define FOR_EACH_SLOT(sl)                                                      \
	for (size_t c_ = 0; c_ < SECRET_CHUNKS && secret_chunks[c_]; c_++)     \
		for (struct secret_slot *sl = secret_chunks[c_];               \
		     sl < secret_chunks[c_] + SECRET_CHUNK; sl++)

/* A free slot, allocating a chunk when the allocated ones are full. */
static struct secret_slot *free_slot_locked(void)
{
	for (size_t c = 0; c < SECRET_CHUNKS; c++) {
		struct secret_slot *chunk = secret_chunks[c];

		if (!chunk) {
			chunk = calloc(SECRET_CHUNK, sizeof(*chunk));
			if (!chunk)
				return NULL;
			(void)mlock(chunk, SECRET_CHUNK * sizeof(*chunk));
			secret_chunks[c] = chunk;
		}
		for (size_t i = 0; i < SECRET_CHUNK; i++)
			if (chunk[i].len == 0)
				return &chunk[i];
	}
	return NULL;
}

static struct secret_slot *find_locked(const char *secret, size_t len)
{
	FOR_EACH_SLOT(sl)
	{
		if (sl->len == len && memcmp(sl->value, secret, len) == 0)
			return sl;
	}
	return NULL;
}

int vmd_secret_register(const char *secret)
{
	size_t len = secret ? strlen(secret) : 0;
	struct secret_slot *sl;
	int rc = -1;

	if (len < 4 || len >= SECRET_MAX)
		return -1;
	pthread_mutex_lock(&log_mutex);
	sl = find_locked(secret, len);
	if (sl) {
		sl->refs++;
		rc = 0;
	} else if ((sl = free_slot_locked())) {
		memcpy(sl->value, secret, len);
		sl->len = len;
		sl->refs = 1;
		rc = 0;
	}
	pthread_mutex_unlock(&log_mutex);
	return rc;
}

void vmd_secret_unregister(const char *secret)
{
	size_t len = secret ? strlen(secret) : 0;
	struct secret_slot *sl;

	/* Never matches a registered secret; would match (and wipe) free
	 * slots and hand memcmp a NULL. */
	if (len < 4)
		return;

	pthread_mutex_lock(&log_mutex);
	sl = find_locked(secret, len);
	if (sl && --sl->refs == 0)
		explicit_bzero(sl, sizeof(*sl));
	pthread_mutex_unlock(&log_mutex);
}

void vmd_secret_clear_all(void)
{
	pthread_mutex_lock(&log_mutex);
	FOR_EACH_SLOT(sl)
	{
		explicit_bzero(sl, sizeof(*sl));
	}
	pthread_mutex_unlock(&log_mutex);
}

/* Longest registered secret that starts at `p`, or 0. */
static size_t secret_match_locked(const char *p)
{
	size_t best = 0;

	FOR_EACH_SLOT(sl)
	{
		if (sl->len > best && strncmp(p, sl->value, sl->len) == 0)
			best = sl->len;
	}
	return best;
}

size_t vmd_redact(const char *in, char *out, size_t outsz)
{
	size_t o = 0;

	if (outsz == 0)
		return 0;
	if (!in)
		in = "";
	pthread_mutex_lock(&log_mutex);
	while (*in && o + 1 < outsz) {
		size_t m = secret_match_locked(in);

		if (m) {
			for (const char *r = "***"; *r && o + 1 < outsz; r++)
				out[o++] = *r;
			in += m;
		} else {
			out[o++] = *in++;
		}
	}
	pthread_mutex_unlock(&log_mutex);
	out[o] = '\0';
	return o;
}
