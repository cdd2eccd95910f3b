/*
 * The CLI's one progress printer: a line on stderr, rewritten in place,
 * for every long step (download, convert, copy into a backend, volume
 * clear, flatten).
 */
#ifndef VMDISK_TOOLS_PROGRESS_H
#define VMDISK_TOOLS_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct progress {
	bool on;              /* stderr is a terminal and not -q */
	pthread_mutex_t lock; /* the library may report from its workers */
	char label[48];       /* the step being shown; "" before the first */
	char ended[48];       /* the step whose last line was printed */
	struct timespec start, last_draw;
	uint64_t done, total;
	bool drawn;
};

/* on: whether to print at all (the caller knows -q; this checks that
 * stderr is a terminal). */
void progress_init(struct progress *p, bool on);
/* The step `label` has done `done` of `total` bytes (total 0: unknown).
 * A new label ends the previous step's line first; done == total ends
 * the step's line (so it is ended before the command prints a result). */
void progress_update(struct progress *p, const char *label, uint64_t done,
                     uint64_t total);
/* The last line of the current step, kept (newline): "done" when ok,
 * else where it stopped; nothing when no step is under way. */
void progress_end(struct progress *p, bool ok);

/* Adapters for the library's callbacks; opaque is a struct progress. */
void progress_download_cb(uint64_t done, uint64_t total, void *opaque);
void progress_convert_cb(uint64_t done, uint64_t total, void *opaque);
void progress_step_cb(const char *step, uint64_t done, uint64_t total,
                      void *opaque);

#endif
