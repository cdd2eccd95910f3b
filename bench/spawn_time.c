/*
 * Times commands started as processes: fork, exec, wait, output to
 * /dev/null, N rounds, the commands interleaved within each round so that
 * the noise of a shared machine falls on all of them alike. For each
 * command prints one line:
 *
 *   NAME WALL_MEDIAN_US WALL_P90_US CPU_MEDIAN_US
 *
 * (CPU: the child's user + system time, from wait4; less sensitive than the
 * wall clock to other load). Used by bench/startup.sh; the shell's own fork
 * is kept out of the figures.
 *
 *   spawn_time N NAME -- COMMAND [ARG...] [--- NAME -- COMMAND [ARG...]]...
 *
 * In an ARG, "%i" is replaced by the round's number, six digits (000000..):
 * a command that makes something (a disk, an overlay) gets a new name each
 * round.
 *
 * Exits 1 if a command ever exits other than 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 16

struct cmd {
	const char *name;
	char **argv;
	double *wall, *cpu;
};

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* argv with "%i" replaced by round, in buf (static per call: the child
 * execs it at once). */
static char **expand(char **argv, long round)
{
	static char *out[256];
	static char bufs[256][4096];
	int i;

	for (i = 0; argv[i] && i < 255; i++) {
		const char *p = strstr(argv[i], "%i");

		if (!p) {
			out[i] = argv[i];
			continue;
		}
		snprintf(bufs[i], sizeof(bufs[i]), "%.*s%06ld%s",
		         (int)(p - argv[i]), argv[i], round, p + 2);
		out[i] = bufs[i];
	}
	out[i] = NULL;
	return out;
}

static int run(char **argv, double *cpu)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	struct rusage ru;
	if (wait4(pid, &st, 0, &ru) < 0)
		return -1;
	*cpu = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec +
	       ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(int argc, char **argv)
{
	struct cmd cmds[MAX_CMDS];
	int ncmd = 0;
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 0;

	if (n <= 0 || n > 1000000) {
		fprintf(stderr, "usage: spawn_time N NAME -- CMD... [--- NAME -- CMD...]\n");
		return 2;
	}
	for (int i = 2; i < argc;) {
		if (ncmd == MAX_CMDS || i + 2 >= argc || strcmp(argv[i + 1], "--")) {
			fprintf(stderr, "spawn_time: bad arguments\n");
			return 2;
		}
		struct cmd *c = &cmds[ncmd++];
		c->name = argv[i];
		c->argv = argv + i + 2;
		int j = i + 2;
		while (j < argc && strcmp(argv[j], "---"))
			j++;
		argv[j < argc ? j : argc] = NULL; /* ends this command's argv */
		c->wall = calloc((size_t)n, sizeof(double));
		c->cpu = calloc((size_t)n, sizeof(double));
		if (!c->wall || !c->cpu)
			return 1;
		i = j + 1;
	}
	for (long r = 0; r < n; r++)
		for (int k = 0; k < ncmd; k++) {
			double t0 = now_us();
			int rc = run(expand(cmds[k].argv, r), &cmds[k].cpu[r]);
			cmds[k].wall[r] = now_us() - t0;
			if (rc != 0) {
				fprintf(stderr, "spawn_time: %s exited %d\n",
				        cmds[k].argv[0], rc);
				return 1;
			}
		}
	for (int k = 0; k < ncmd; k++) {
		qsort(cmds[k].wall, (size_t)n, sizeof(double), cmp);
		qsort(cmds[k].cpu, (size_t)n, sizeof(double), cmp);
		printf("%s %.0f %.0f %.0f\n", cmds[k].name, cmds[k].wall[n / 2],
		       cmds[k].wall[(n * 9) / 10], cmds[k].cpu[n / 2]);
	}
	return 0;
}
