/*
 * vmdiskd: the privileged helper of vmdisk (doc/vmdiskd.8).
 *
 *   vmdiskd [--config F] [--exit-after N] [--read-timeout-ms MS] [-v]
 *   vmdiskd --stdio [--read-timeout-ms MS]
 *
 * Runs as root, listens on vmdiskd_socket and performs the root-only steps
 * of the lvm backend for callers its policy file allows; everything it
 * decides goes to the audit log. With --stdio it serves the one request
 * of a root caller (libvmdisk's vmd_priv_run as root) on the socket it
 * was given as stdin and stdout, with the configuration sent over it. The
 * work is in lib/priv/server/ (libvmdisk-priv.a, which only vmdiskd links);
 * this file only reads the command line and the config.
 *
 * Started by systemd's vmdiskd.socket (LISTEN_PID/LISTEN_FDS), it serves
 * the socket it was handed instead of binding vmdiskd_socket.
 *
 * Exit status: 0 stopped by SIGTERM/SIGINT (or after --exit-after
 * connections, for tests; with --stdio: a reply went out), 1 could not
 * start, 2 bad command line.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vmdisk/config.h>
#include <vmdisk/error.h>
#include <vmdisk/log.h>

#include "privhelper_server.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: vmdiskd [--config FILE] [--exit-after N] "
	           "[--read-timeout-ms MS] [-v]\n"
	           "       vmdiskd --stdio [--read-timeout-ms MS]\n");
}

static int parse_count(const char *s, unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (!s[0] || s[0] == '-' || s[0] == '+')
		return -1;
	v = strtoul(s, &end, 10);
	if (*end || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"exit-after", required_argument, NULL, 'n'},
		{"read-timeout-ms", required_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"stdio", no_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vmd_priv_server_opts opts = {0};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_config cfg;
	const char *config_path = NULL;
	unsigned v;
	bool verbose = false, stdio = false;
	int opt;

	vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_ERROR, "vmdiskd");
	while ((opt = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'n':
			if (parse_count(optarg, 1000000, &opts.exit_after) < 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 't':
			if (parse_count(optarg, 3600000, &v) < 0 || v == 0) {
				usage(stderr);
				return 2;
			}
			opts.read_timeout_ms = (int)v;
			break;
		case 'v':
			verbose = true;
			break;
		case 's':
			stdio = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc ||
	    (stdio && (config_path || opts.exit_after || verbose))) {
		usage(stderr);
		return 2;
	}
	if (stdio) {
		/* The configuration comes over the socket, from root; the log
		 * goes to stderr, which the caller reads back into its own. */
		if (vmd_priv_serve_stdio(0, &opts, &err) < 0) {
			vmd_log_error("%s", err.msg);
			return 1;
		}
		return 0;
	}
	if (vmd_config_load(&cfg, config_path, &err) < 0) {
		fprintf(stderr, "vmdiskd: %s\n", err.msg);
		return 1;
	}
	if (verbose)
		vmd_log_setup(VMD_LOG_TO_STDERR, VMD_LOG_DEBUG, "vmdiskd");
	else
		vmd_log_setup(cfg.log_target, cfg.log_level, "vmdiskd");
	/* The server's messages name vmdiskd already ("vmdiskd: ..."). */
	if (vmd_priv_listen_fd_from_env(&opts.listen_fd, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	opts.inherited = opts.listen_fd >= 0;
	if (vmd_priv_serve(&cfg, &opts, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	return 0;
}
