/*
 * Times a command started as a process, N times: fork, exec, wait, with the
 * command's output sent to /dev/null. Prints the median and the p90 in
 * microseconds on one line: "MEDIAN_US P90_US". Used by bench/startup.sh to
 * compare vmdisk's start-up with /bin/true and qemu-img in the same run;
 * the shell's own fork and the pipeline of `time` are kept out of it.
 *
 *   spawn_time N [--setup CMD...] -- COMMAND [ARG...]
 *
 * Exits 1 if the command ever exits other than 0.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static int run(char **argv)
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
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--") != 0) {
		fprintf(stderr, "usage: spawn_time N -- COMMAND [ARG...]\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	if (n <= 0 || n > 1000000)
		return 2;
	double *t = calloc((size_t)n, sizeof(*t));
	if (!t)
		return 1;
	char **cmd = argv + 3;
	for (long i = 0; i < n; i++) {
		double t0 = now_us();
		int rc = run(cmd);
		t[i] = now_us() - t0;
		if (rc != 0) {
			fprintf(stderr, "spawn_time: %s exited %d\n", cmd[0], rc);
			return 1;
		}
	}
	qsort(t, (size_t)n, sizeof(*t), cmp);
	printf("%.0f %.0f\n", t[n / 2], t[(n * 9) / 10]);
	free(t);
	return 0;
}
