/*
 * bench/api.sh's floor probe, preloaded (LD_PRELOAD) into bench/api only:
 * fsync and fdatasync return at once, so that the figures show what a call
 * costs besides the device's flushes. Never durable, never for the
 * product; the durable figures are the ones measured without it.
 */
#include <unistd.h>

int fsync(int fd)
{
	(void)fd;
	return 0;
}

int fdatasync(int fd)
{
	(void)fd;
	return 0;
}
