/*
 * The CLI's progress line (progress.h): done/total, rate and ETA of the
 * step under way, on stderr only (stdout stays for results and --json),
 * and only on a terminal: a pipe or a file gets nothing, so logs and
 * scripts never see carriage returns. The redraw rate is limited here and
 * nowhere else: every step's callback comes through progress_update.
 */
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* At most 10 redraws a second: a faster line only costs the terminal. */
#define REDRAW_NS 100000000LL

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000LL +
	       (int64_t)(b->tv_nsec - a->tv_nsec);
}

static void fmt_bytes(char *buf, size_t n, double v)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB",
	                                   "PiB"};
	size_t u = 0;

	while (v >= 1024.0 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		v /= 1024.0;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static void fmt_secs(char *buf, size_t n, double s)
{
	unsigned long long t = s < 0 ? 0 : (unsigned long long)(s + 0.5);

	if (t >= 3600)
		snprintf(buf, n, "%llu:%02llu:%02llu", t / 3600, t / 60 % 60,
		         t % 60);
	else
		snprintf(buf, n, "%llu:%02llu", t / 60, t % 60);
}

/* One line, rewritten in place (\r, then erase to the end of the line). */
static void draw(struct progress *p, const struct timespec *now, bool final)
{
	char done[24], total[24], rate[24], eta[24];
	double secs = (double)ns_between(&p->start, now) / 1e9;
	double bps = secs > 0 ? (double)p->done / secs : 0;

	fmt_bytes(done, sizeof(done), (double)p->done);
	if (bps > 0)
		fmt_bytes(rate, sizeof(rate), bps);
	else
		snprintf(rate, sizeof(rate), "--"); /* no time has passed */
	if (final) {
		fmt_secs(eta, sizeof(eta), secs);
		fprintf(stderr, "\r%s: %s done in %s, %s/s\033[K\n", p->label,
		        done, eta, rate);
	} else if (p->total) {
		uint64_t left = p->done < p->total ? p->total - p->done : 0;

		fmt_bytes(total, sizeof(total), (double)p->total);
		if (bps > 0)
			fmt_secs(eta, sizeof(eta), (double)left / bps);
		else
			snprintf(eta, sizeof(eta), "--:--");
		fprintf(stderr, "\r%s: %3.0f%% %s / %s, %s/s, ETA %s\033[K",
		        p->label,
		        100.0 * (double)(p->total - left) / (double)p->total,
		        done, total, rate, eta);
	} else {
		/* The size is not known (a server that sends none): bytes
		 * and rate only. */
		fprintf(stderr, "\r%s: %s, %s/s\033[K", p->label, done, rate);
	}
	fflush(stderr);
	p->last_draw = *now;
	p->drawn = true;
}

void progress_init(struct progress *p, bool on)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	/* Never on a pipe or a file: only a person at a terminal wants it. */
	p->on = on && isatty(STDERR_FILENO);
}

static void end_locked(struct progress *p, bool ok)
{
	struct timespec now;

	if (!p->label[0])
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ok) {
		draw(p, &now, true);
	} else {
		draw(p, &now, false);
		fputc('\n', stderr);
	}
	memcpy(p->ended, p->label, sizeof(p->ended));
	p->label[0] = '\0';
}

void progress_update(struct progress *p, const char *label, uint64_t done,
                     uint64_t total)
{
	struct timespec now;

	if (!p->on)
		return;
	pthread_mutex_lock(&p->lock);
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (strncmp(p->label, label, sizeof(p->label) - 1) != 0) {
		/* A repeat of the end of the step just ended: its line is
		 * printed already. */
		if (total && done >= total &&
		    strncmp(p->ended, label, sizeof(p->ended) - 1) == 0) {
			pthread_mutex_unlock(&p->lock);
			return;
		}
		end_locked(p, true);
		snprintf(p->label, sizeof(p->label), "%s", label);
		p->start = now;
	}
	p->done = done;
	p->total = total;
	if (total && done >= total)
		end_locked(p, true);
	else if (!p->drawn || ns_between(&p->last_draw, &now) >= REDRAW_NS)
		draw(p, &now, false);
	pthread_mutex_unlock(&p->lock);
}

void progress_end(struct progress *p, bool ok)
{
	if (!p->on)
		return;
	pthread_mutex_lock(&p->lock);
	end_locked(p, ok);
	pthread_mutex_unlock(&p->lock);
}

void progress_download_cb(uint64_t done, uint64_t total, void *opaque)
{
	progress_update(opaque, "download", done, total);
}

void progress_convert_cb(uint64_t done, uint64_t total, void *opaque)
{
	progress_update(opaque, "convert", done, total);
}

void progress_step_cb(const char *step, uint64_t done, uint64_t total,
                      void *opaque)
{
	progress_update(opaque, step, done, total);
}
