/*
 * vmdisk: the command-line tool over libvmdisk.
 *
 *   vmdisk [--config F] [--json] [-v|-q] COMMAND [ARGS]
 *
 * The global options may also come after COMMAND, among its arguments
 * (`vmdisk inspect FILE --json`, as qemu-img and rbd are used): see
 * take_global_options().
 * Exit status: 0 done, 1 the operation failed, 2 the command line was wrong.
 * A failure prints exactly one line on stderr, the library's public message;
 * the detail goes to the log (syslog by default, stderr with -v).
 * With --json every command that reports prints one JSON value on stdout
 * (its shape: doc/json.md, doc/schema/); errors stay that one human line
 * on stderr, as with qemu-img --output=json.
 * Arguments are checked here before the library sees them so that a typo is
 * a usage error (2) rather than a failed operation (1).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "jsonc_lazy.h"
#include "progress.h"
#include "vmd_build_config.h"
#include <vmdisk/convert.h>
#include <vmdisk/inspect.h>
#include <vmdisk/vmdisk.h>

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

struct cli {
	const char *config_path;
	bool json;
	int verbose; /* -1 quiet, 0 config, 1 info, 2 debug */
	struct vmd_config cfg;
	struct vmd_ctx *ctx;
};

struct command {
	const char *name;
	const char *usage;
	const char *summary;
	int (*run)(struct cli *cli, int argc, char **argv);
	/* Its own options (NULL: only --help) and, when it has short ones,
	 * its getopt string (NULL: "h"); see take_global_options. */
	const struct option *opts;
	const char *shortopts;
};

static const struct command *find_command(const char *name);

/* The one progress line (tools/progress.c): on a terminal, not with -q;
 * set up in main() for every command. */
static struct progress progress;

/* The step a usage error names: the command once it is known, before
 * that the command line itself (every message names the failed step). */
static const char *usage_step = "usage";

static int usage_error(const char *msg)
{
	size_t n = strlen(usage_step);

	if (strncmp(msg, usage_step, n) == 0 && msg[n] == ':')
		fprintf(stderr, "vmdisk: %s (see vmdisk --help)\n", msg);
	else
		fprintf(stderr, "vmdisk: %s: %s (see vmdisk --help)\n",
		        usage_step, msg);
	return EXIT_USAGE;
}

/* A usage error the library described (a value it parsed). */
static int usage_error_of(struct vmd_error *err)
{
	vmd_error_prefix(err, usage_step);
	return usage_error(err->msg);
}

static int failed(const struct vmd_error *err)
{
	progress_end(&progress, false);
	fprintf(stderr, "vmdisk: %s\n",
	        err->msg[0] ? err->msg : "operation failed");
	return EXIT_FAILED;
}

static void print_command_help(const struct command *c)
{
	if (!c)
		return;
	printf("usage: vmdisk [--config F] [--json] [-v|-q] %s\n\n%s\n\n"
	       "Global options may come before or after the command; --\n"
	       "ends the options.\n",
	       c->usage, c->summary);
}

/* Parse only "--help"/"-h" and the given long options of a subcommand. */
static int parse_sub(const struct command *c, int argc, char **argv,
                     const struct option *longopts, int *positional_start,
                     int (*on_opt)(int opt, const char *arg, void *state),
                     void *state)
{
	int opt;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			print_command_help(c);
			return -1;
		}
		if (opt == '?' || opt == ':')
			return usage_error("bad option or missing value");
		int rc = on_opt ? on_opt(opt, optarg, state) : EXIT_USAGE;

		if (rc != 0)
			return rc;
	}
	*positional_start = optind;
	return 0;
}

static int parse_size_arg(const char *s, uint64_t *out)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (vmd_parse_size(s, out, &err) < 0)
		return usage_error_of(&err);
	if (*out % 512)
		return usage_error("size must be a multiple of 512 bytes");
	/* 0 is not "the default": leave --size out for that. */
	if (*out == 0)
		return usage_error("size must be at least 512 bytes");
	return 0;
}

/* A file named on the command line (the caller's own, opened with the
 * caller's rights): any bytes but control characters, which would make
 * a file name that rewrites a terminal or splits a log line. */
static int check_path_arg(const char *what, const char *path)
{
	char msg[96];

	for (const char *p = path; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(msg, sizeof(msg),
			         "%s: control character in the file name", what);
			return usage_error(msg);
		}
	}
	return 0;
}

static int check_disk_args(const char *instance, const char *disk)
{
	if (!vmd_valid_uuid(instance))
		return usage_error("instance id must be a UUID");
	if (!vmd_valid_disk_name(disk))
		return usage_error(
			"bad disk name (allowed: [A-Za-z0-9][A-Za-z0-9._-]{0,63})");
	return 0;
}

static void print_json(struct json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(
		               o, JSON_C_TO_STRING_PRETTY |
		                          JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* --json: an object of the disk's instance and name (doc/json.md). */
static struct json_object *disk_object(const char *instance, const char *disk)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "instance", json_object_new_string(instance));
	json_object_object_add(o, "disk", json_object_new_string(disk));
	return o;
}

/* The cache entry a disk is backed by: its backing file is
 * <instances_path>/<cache dir>/<40 hex>[_suffix] (qcow2, ploop); else "". */
static void backing_image_id(const struct cli *cli, const char *backing,
                             char id[41])
{
	const char *p = backing;
	size_t n = strlen(cli->cfg.instances_path);

	id[0] = '\0';
	if (n == 0 || strncmp(p, cli->cfg.instances_path, n) != 0 || p[n] != '/')
		return;
	p += n + 1;
	n = strlen(cli->cfg.image_cache_subdirectory_name);
	if (strncmp(p, cli->cfg.image_cache_subdirectory_name, n) != 0 ||
	    p[n] != '/')
		return;
	p += n + 1;
	for (int i = 0; i < 40; i++)
		if (!strchr("0123456789abcdef", p[i]) || p[i] == '\0')
			return;
	if (p[40] != '\0' && p[40] != '_')
		return;
	memcpy(id, p, 40);
	id[40] = '\0';
}

static void print_info(const struct cli *cli, const char *instance,
                       const char *disk, const struct vmd_disk_info *info)
{
	if (cli->json) {
		struct json_object *o = disk_object(instance, disk);
		char id[41];

		json_object_object_add(o, "backend",
		                       json_object_new_string(info->backend));
		json_object_object_add(o, "format",
		                       json_object_new_string(info->format));
		json_object_object_add(o, "virtual_size",
		                       json_object_new_uint64(info->virtual_size));
		json_object_object_add(o, "actual_size",
		                       json_object_new_uint64(info->actual_size));
		json_object_object_add(o, "path",
		                       json_object_new_string(info->path));
		json_object_object_add(
			o, "backing",
			info->backing[0] ? json_object_new_string(info->backing)
			                 : NULL);
		backing_image_id(cli, info->backing, id);
		json_object_object_add(
			o, "image_id", id[0] ? json_object_new_string(id) : NULL);
		if (info->snapshots[0]) {
			struct json_object *a = json_object_new_array();
			char names[sizeof(info->snapshots)];
			char *save = NULL;

			snprintf(names, sizeof(names), "%s", info->snapshots);
			for (char *t = strtok_r(names, ",", &save); t;
			     t = strtok_r(NULL, ",", &save))
				json_object_array_add(a,
				                      json_object_new_string(t));
			json_object_object_add(o, "snapshots", a);
		}
		print_json(o);
		return;
	}
	printf("backend: %s\nformat: %s\nvirtual size: %llu\n"
	       "actual size: %llu\npath: %s\n",
	       info->backend, info->format,
	       (unsigned long long)info->virtual_size,
	       (unsigned long long)info->actual_size, info->path);
	if (info->backing[0])
		printf("backing file: %s\n", info->backing);
	if (info->snapshots[0])
		printf("snapshots: %s\n", info->snapshots);
}

static int fetch_opt(int opt, const char *arg, void *state)
{
	if (opt != 'k')
		return EXIT_USAGE;
	*(const char **)state = arg;
	return 0;
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option fetch_opts[] = {
	{"checksum", required_argument, NULL, 'k'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int cmd_fetch(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_entry entry;
	struct vmd_fetch_opts fo = {0};
	int first;
	int rc = parse_sub(find_command("fetch"), argc, argv, fetch_opts, &first,
	                   fetch_opt, &fo.checksum);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 1)
		return usage_error("fetch: expected one image source");
	if (progress.on) {
		fo.progress = progress_download_cb;
		fo.progress_opaque = &progress;
	}
	rc = vmd_cache_fetch_ex(cli->ctx, argv[first], &fo, &entry, &err);
	progress_end(&progress, rc == 0);
	if (rc < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *o = json_object_new_object();
		struct stat st;

		json_object_object_add(o, "id", json_object_new_string(entry.id));
		json_object_object_add(o, "path",
		                       json_object_new_string(entry.path));
		json_object_object_add(
			o, "format",
			json_object_new_string(vmd_format_name(entry.format)));
		json_object_object_add(o, "virtual_size",
		                       json_object_new_uint64(entry.virtual_size));
		json_object_object_add(
			o, "size",
			json_object_new_uint64(stat(entry.path, &st) == 0
			                               ? (uint64_t)st.st_size
			                               : 0));
		json_object_object_add(
			o, "hash_algo",
			entry.hash_algo[0] ? json_object_new_string(entry.hash_algo)
			                   : NULL);
		json_object_object_add(
			o, "hash",
			entry.hash[0] ? json_object_new_string(entry.hash) : NULL);
		json_object_object_add(o, "fetched",
		                       json_object_new_boolean(entry.fetched));
		print_json(o);
	} else {
		printf("%s %s\n", entry.fetched ? "fetched" : "cached",
		       entry.path);
	}
	return EXIT_OK;
}

struct create_state {
	struct vmd_create_opts opts;
	bool blank;
};

static int create_opt(int opt, const char *arg, void *state)
{
	struct create_state *st = state;
	struct vmd_error err = VMD_ERROR_INIT;

	switch (opt) {
	case 'i':
		st->opts.image = arg;
		return 0;
	case 's':
		return parse_size_arg(arg, &st->opts.size);
	case 'b':
		if (vmd_parse_backend(arg, &st->opts.backend, &err) < 0)
			return usage_error_of(&err);
		return 0;
	case 'k':
		st->opts.checksum = arg;
		return 0;
	case 'B':
		st->blank = true;
		return 0;
	case 'F':
		if (vmd_parse_blank_fs(arg, &st->opts.fs, &err) < 0)
			return usage_error_of(&err);
		return 0;
	case 'L':
		st->opts.label = arg;
		return 0;
	case 'l':
		st->opts.location = arg;
		return 0;
	case 'K':
		st->opts.key_id = arg;
		return 0;
	default:
		return EXIT_USAGE;
	}
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option create_opts[] = {
	{"image", required_argument, NULL, 'i'},
	{"size", required_argument, NULL, 's'},
	{"backend", required_argument, NULL, 'b'},
	{"checksum", required_argument, NULL, 'k'},
	{"blank", no_argument, NULL, 'B'},
	{"fs", required_argument, NULL, 'F'},
	{"label", required_argument, NULL, 'L'},
	{"location", required_argument, NULL, 'l'},
	{"key-id", required_argument, NULL, 'K'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int cmd_create(struct cli *cli, int argc, char **argv)
{
	struct create_state st = {.opts = {.backend = VMD_BACKEND_DEFAULT}};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	int first;
	int rc = parse_sub(find_command("create"), argc, argv, create_opts,
	                   &first, create_opt, &st);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 2)
		return usage_error("create: expected INSTANCE and DISK");
	if (st.opts.location && st.blank)
		return usage_error("create: --location does not go with --blank");
	if (!st.opts.location && !st.opts.image == !st.blank)
		return usage_error("create: give --image SOURCE or --blank");
	if (st.blank && !st.opts.size)
		return usage_error("create: --blank needs --size");
	if ((st.opts.fs != VMD_FS_NONE || st.opts.label) && !st.blank)
		return usage_error("create: --fs and --label go with --blank");
	if (st.opts.label && !vmd_valid_fs_label(st.opts.fs, st.opts.label))
		return usage_error("create: bad --label for this file system");
	rc = check_disk_args(argv[first], argv[first + 1]);
	if (rc != 0)
		return rc;
	if (progress.on) {
		st.opts.progress = progress_download_cb;
		st.opts.progress_opaque = &progress;
	}
	rc = vmd_disk_create(cli->ctx, argv[first], argv[first + 1], &st.opts,
	                     &info, &err);
	progress_end(&progress, rc == 0);
	if (rc < 0)
		return failed(&err);
	print_info(cli, argv[first], argv[first + 1], &info);
	return EXIT_OK;
}

static int disk_command_args(const char *name, int argc, char **argv,
                             int nargs, int *first)
{
	char msg[96];
	int rc = parse_sub(find_command(name), argc, argv,
	                   (const struct option[]){{"help", 0, NULL, 'h'},
	                                           {NULL, 0, NULL, 0}},
	                   first, NULL, NULL);

	if (rc != 0)
		return rc;
	if (argc - *first != nargs) {
		snprintf(msg, sizeof(msg), "%s: expected %s", name,
		         nargs == 2 ? "INSTANCE and DISK" : "INSTANCE DISK SIZE");
		return usage_error(msg);
	}
	return check_disk_args(argv[*first], argv[*first + 1]);
}

static int cmd_info(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_disk_info info;
	int first;
	int rc = disk_command_args("info", argc, argv, 2, &first);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (vmd_disk_info(cli->ctx, argv[first], argv[first + 1], &info,
	                  &err) < 0)
		return failed(&err);
	print_info(cli, argv[first], argv[first + 1], &info);
	return EXIT_OK;
}

static int cmd_resize(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	uint64_t size;
	int first;
	int rc = disk_command_args("resize", argc, argv, 3, &first);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	rc = parse_size_arg(argv[first + 2], &size);
	if (rc != 0)
		return rc;
	if (vmd_disk_resize(cli->ctx, argv[first], argv[first + 1], size,
	                    &err) < 0)
		return failed(&err);
	if (cli->json) {
		/* Resize never shrinks: on success the disk has this size. */
		struct json_object *o = disk_object(argv[first], argv[first + 1]);

		json_object_object_add(o, "virtual_size",
		                       json_object_new_uint64(size));
		print_json(o);
	}
	return EXIT_OK;
}

static int cmd_remove(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	int first;
	int rc = disk_command_args("remove", argc, argv, 2, &first);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (vmd_disk_remove(cli->ctx, argv[first], argv[first + 1], &err) < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *o = disk_object(argv[first], argv[first + 1]);

		json_object_object_add(o, "removed",
		                       json_object_new_boolean(true));
		print_json(o);
	}
	return EXIT_OK;
}

static int xml_opt(int opt, const char *arg, void *state)
{
	struct vmd_xml_opts *o = state;
	char *end;
	unsigned long n;

	switch (opt) {
	case 't': o->dev = arg; return 0;
	case 'b': o->bus = arg; return 0;
	case 'c': o->cache = arg; return 0;
	case 'd': o->discard = arg; return 0;
	case 'q': o->qos = arg; return 0;
	case 'F': o->filesystem_target = arg; return 0;
	case 'o':
		errno = 0;
		n = strtoul(arg, &end, 10);
		if (errno || *end || arg[0] < '1' || arg[0] > '9' || n > 65535) {
			usage_error("libvirt-xml: --boot-order takes 1..65535");
			return EXIT_USAGE;
		}
		o->boot_order = (unsigned)n;
		return 0;
	default: return EXIT_USAGE;
	}
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option xml_opts[] = {
	{"dev", required_argument, NULL, 't'},
	{"target", required_argument, NULL, 't'},
	{"bus", required_argument, NULL, 'b'},
	{"cache", required_argument, NULL, 'c'},
	{"discard", required_argument, NULL, 'd'},
	{"boot-order", required_argument, NULL, 'o'},
	{"qos", required_argument, NULL, 'q'},
	{"filesystem", required_argument, NULL, 'F'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int cmd_xml(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_xml_opts o = {.dev = "vda"};
	char *xml = NULL;
	int first;
	int rc = parse_sub(find_command("libvirt-xml"), argc, argv, xml_opts,
	                   &first, xml_opt, &o);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 2)
		return usage_error("libvirt-xml: expected INSTANCE and DISK");
	rc = check_disk_args(argv[first], argv[first + 1]);
	if (rc != 0)
		return rc;
	if (vmd_disk_libvirt_xml(cli->ctx, argv[first], argv[first + 1], &o,
	                         &xml, &err) < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *j = disk_object(argv[first], argv[first + 1]);

		json_object_object_add(
			j, "element",
			json_object_new_string(o.filesystem_target ? "filesystem"
			                                           : "disk"));
		json_object_object_add(j, "xml", json_object_new_string(xml));
		print_json(j);
	} else {
		fputs(xml, stdout);
	}
	free(xml);
	return EXIT_OK;
}

static void print_inspection(const struct cli *cli,
                             const struct vmd_inspect_result *r)
{
	if (cli->json) {
		struct json_object *o = json_object_new_object();
		struct json_object *reasons = json_object_new_array();

		json_object_object_add(
			o, "format",
			json_object_new_string(vmd_image_format_name(r->format)));
		json_object_object_add(o, "virtual_size",
		                       json_object_new_uint64(r->virtual_size));
		json_object_object_add(o, "file_size",
		                       json_object_new_uint64(r->file_size));
		json_object_object_add(o, "actual_size",
		                       json_object_new_uint64(r->actual_size));
		json_object_object_add(o, "cluster_size",
		                       json_object_new_uint64(r->cluster_size));
		json_object_object_add(
			o, "backing_file",
			r->backing_file[0] ? json_object_new_string(r->backing_file)
			                   : NULL);
		json_object_object_add(
			o, "backing_format",
			r->backing_format[0]
				? json_object_new_string(r->backing_format)
				: NULL);
		json_object_object_add(o, "incompatible_features",
		                       json_object_new_uint64(
		                               r->incompatible_features));
		json_object_object_add(o, "safe",
		                       json_object_new_boolean(r->safe));
		for (unsigned i = 0; i < r->n_reasons; i++) {
			struct json_object *e = json_object_new_object();

			json_object_object_add(
				e, "check",
				json_object_new_string(r->reasons[i].code));
			json_object_object_add(
				e, "reason",
				json_object_new_string(r->reasons[i].text));
			json_object_array_add(reasons, e);
		}
		json_object_object_add(o, "reasons", reasons);
		print_json(o);
		return;
	}
	printf("format: %s\nvirtual size: %llu\nfile size: %llu\n",
	       vmd_image_format_name(r->format),
	       (unsigned long long)r->virtual_size,
	       (unsigned long long)r->file_size);
	if (r->cluster_size)
		printf("cluster size: %u\n", r->cluster_size);
	if (r->backing_file[0])
		printf("backing file: %s\n", r->backing_file);
	if (r->backing_format[0])
		printf("backing format: %s\n", r->backing_format);
	printf("verdict: %s\n", r->safe ? "safe" : "refused");
	for (unsigned i = 0; i < r->n_reasons; i++)
		printf("refused: %s: %s\n", r->reasons[i].code,
		       r->reasons[i].text);
}

static int inspect_opt(int opt, const char *arg, void *state)
{
	(void)arg;
	if (opt != 'a')
		return EXIT_USAGE;
	*(unsigned *)state |= VMD_INSPECT_ALLOW_BACKING;
	return 0;
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option inspect_opts[] = {
	{"allow-backing", no_argument, NULL, 'a'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int cmd_inspect(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	unsigned flags = 0;
	int first, fd;
	int rc = parse_sub(find_command("inspect"), argc, argv, inspect_opts,
	                   &first, inspect_opt, &flags);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 1)
		return usage_error("inspect: expected one FILE");
	rc = check_path_arg("inspect", argv[first]);
	if (rc != 0)
		return rc;
	/* O_NONBLOCK: a FIFO must not hang us; the inspector refuses it. */
	fd = open(argv[first], O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		vmd_error_set_errno(&err, VMD_E_NOTFOUND, errno,
		                    "inspect: cannot open the image", "open");
		return failed(&err);
	}
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = cli->cfg.max_image_virtual_size;
	rc = vmd_inspect_fd(fd, &lim, flags, &r, &err);
	close(fd);
	if (rc < 0)
		return failed(&err);
	print_inspection(cli, &r);
	return r.safe ? EXIT_OK : EXIT_FAILED;
}

struct convert_state {
	struct vmd_image_convert_opts o;
	bool have_src_format;
	bool have_dst_format;
};

static int convert_opt(int opt, const char *arg, void *state)
{
	struct convert_state *st = state;
	struct vmd_error err = VMD_ERROR_INIT;

	switch (opt) {
	case 'f':
		if (vmd_parse_format(arg, &st->o.src_format, &err) < 0)
			return usage_error_of(&err);
		st->have_src_format = true;
		return 0;
	case 'O':
		if (vmd_parse_format(arg, &st->o.dst_format, &err) < 0)
			return usage_error_of(&err);
		st->have_dst_format = true;
		return 0;
	case 'p':
		/* qemu-img's habit; progress shows on a terminal anyway. */
		return 0;
	case 'a':
		st->o.allow_backing = true;
		return 0;
	default:
		return EXIT_USAGE;
	}
}

/* The source's format: -f if given, else what the inspector says (a safe
 * probe: it never trusts a header beyond its own checks). */
static int convert_source_format(const char *src, struct convert_state *st)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_result r;
	int fd;

	if (st->have_src_format)
		return 0;
	fd = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		vmd_error_set_errno(&err, VMD_E_NOTFOUND, errno,
		                    "convert: cannot open the source", "open");
		return failed(&err);
	}
	if (vmd_inspect_fd(fd, NULL, VMD_INSPECT_ALLOW_BACKING, &r, &err) < 0) {
		close(fd);
		return failed(&err);
	}
	close(fd);
	if (vmd_image_format_is_raw(r.format)) {
		st->o.src_format = VMD_FORMAT_RAW;
	} else if (r.format == VMD_IMG_QCOW2) {
		st->o.src_format = VMD_FORMAT_QCOW2;
	} else {
		fprintf(stderr, "vmdisk: convert: source format %s is not "
		                "supported\n",
		        vmd_image_format_name(r.format));
		return EXIT_FAILED;
	}
	return 0;
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option convert_opts[] = {
	{"format", required_argument, NULL, 'f'},
	{"output-format", required_argument, NULL, 'O'},
	{"progress", no_argument, NULL, 'p'},
	{"allow-backing", no_argument, NULL, 'a'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/*
 * --json of convert and extract: O (taken) with what was written at PATH,
 * read back by the inspector (its bounded parser, as for any image): the
 * format, the guest's size, the file's size and the bytes it holds on the
 * host (holes are not written). A result that cannot be read is a failure.
 */
static int print_written(const struct cli *cli, struct json_object *o,
                         const char *step, const char *path,
                         enum vmd_format fmt)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_limits lim;
	struct vmd_inspect_result r;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		json_object_put(o);
		vmd_error_set_errno(&err, VMD_E_IO, errno,
		                    "cannot open the result", "open");
		vmd_error_prefix(&err, step);
		return failed(&err);
	}
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = cli->cfg.max_image_virtual_size;
	rc = vmd_inspect_fd(fd, &lim, VMD_INSPECT_ALLOW_BACKING, &r, &err);
	close(fd);
	if (rc < 0) {
		json_object_put(o);
		vmd_error_prefix(&err, step);
		return failed(&err);
	}
	json_object_object_add(o, "path", json_object_new_string(path));
	json_object_object_add(o, "format",
	                       json_object_new_string(vmd_format_name(fmt)));
	json_object_object_add(o, "virtual_size",
	                       json_object_new_uint64(r.virtual_size));
	json_object_object_add(o, "file_size",
	                       json_object_new_uint64(r.file_size));
	json_object_object_add(o, "actual_size",
	                       json_object_new_uint64(r.actual_size));
	print_json(o);
	return EXIT_OK;
}

/* -f/-O take short options, as in qemu-img. */
static const char convert_shortopts[] = "f:O:ph";

static int cmd_convert(struct cli *cli, int argc, char **argv)
{
	struct convert_state st = {0};
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_inspect_limits lim;
	int first;
	int rc;

	optind = 0;
	opterr = 0;
	while ((rc = getopt_long(argc, argv, convert_shortopts, convert_opts,
	                         NULL)) != -1) {
		if (rc == 'h') {
			print_command_help(find_command("convert"));
			return EXIT_OK;
		}
		if (rc == '?' || rc == ':')
			return usage_error("bad option or missing value");
		rc = convert_opt(rc, optarg, &st);
		if (rc != 0)
			return rc;
	}
	first = optind;
	if (argc - first != 2)
		return usage_error("convert: expected SRC and DST");
	if (!st.have_dst_format)
		return usage_error("convert: -O raw|qcow2 is required");
	rc = check_path_arg("convert", argv[first]);
	if (rc == 0)
		rc = check_path_arg("convert", argv[first + 1]);
	if (rc != 0)
		return rc;
	rc = convert_source_format(argv[first], &st);
	if (rc != 0)
		return rc;
	vmd_inspect_limits_default(&lim);
	lim.max_virtual_size = cli->cfg.max_image_virtual_size;
	st.o.limits = &lim;
	/* A backing chain is followed (and flattened) only when asked for:
	 * the image names its backing file, and that can be any host file
	 * (issue 14). Without --allow-backing the engine refuses it. */
	if (progress.on) {
		st.o.progress = progress_convert_cb;
		st.o.progress_opaque = &progress;
	}
	rc = vmd_image_convert(argv[first], argv[first + 1], &st.o, &err);
	progress_end(&progress, rc == 0);
	if (rc < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "source",
		                       json_object_new_string(argv[first]));
		json_object_object_add(
			o, "source_format",
			json_object_new_string(vmd_format_name(st.o.src_format)));
		return print_written(cli, o, "convert", argv[first + 1],
		                     st.o.dst_format);
	}
	return EXIT_OK;
}

static int extract_opt(int opt, const char *arg, void *state)
{
	struct vmd_error err = VMD_ERROR_INIT;

	if (opt != 'O')
		return EXIT_USAGE;
	if (vmd_parse_format(arg, state, &err) < 0)
		return usage_error_of(&err);
	return 0;
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option extract_opts[] = {
	{"output-format", required_argument, NULL, 'O'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int cmd_extract(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	enum vmd_format fmt = VMD_FORMAT_RAW;
	int first;
	int rc = parse_sub(find_command("extract"), argc, argv, extract_opts,
	                   &first, extract_opt, &fmt);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 3)
		return usage_error("extract: expected INSTANCE DISK DST");
	rc = check_disk_args(argv[first], argv[first + 1]);
	if (rc == 0)
		rc = check_path_arg("extract", argv[first + 2]);
	if (rc != 0)
		return rc;
	if (vmd_disk_snapshot_extract(cli->ctx, argv[first], argv[first + 1],
	                              argv[first + 2], fmt, &err) < 0)
		return failed(&err);
	if (cli->json)
		return print_written(cli, disk_object(argv[first], argv[first + 1]),
		                     "extract", argv[first + 2], fmt);
	return EXIT_OK;
}

static int cache_list(struct cli *cli)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_cache_item *items = NULL;
	size_t n = 0;
	struct json_object *arr = NULL;

	if (vmd_cache_list(cli->ctx, &items, &n, &err) < 0)
		return failed(&err);
	if (cli->json)
		arr = json_object_new_array();
	else
		printf("%-44s %12s %12s %5s %s\n", "ID", "SIZE", "ALLOCATED",
		       "USERS", "HASH");
	for (size_t i = 0; i < n; i++) {
		const struct vmd_cache_item *it = &items[i];

		if (!arr) {
			printf("%-44s %12llu %12llu %5u %s%s%s\n", it->id,
			       (unsigned long long)it->size,
			       (unsigned long long)it->allocated, it->users,
			       it->hash_algo, it->hash_algo[0] ? ":" : "",
			       it->hash);
			continue;
		}
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "id", json_object_new_string(it->id));
		json_object_object_add(o, "size", json_object_new_uint64(it->size));
		json_object_object_add(o, "allocated",
		                       json_object_new_uint64(it->allocated));
		json_object_object_add(o, "mtime", json_object_new_int64(it->mtime));
		json_object_object_add(o, "resized",
		                       json_object_new_boolean(it->resized));
		json_object_object_add(o, "users",
		                       json_object_new_uint64(it->users));
		json_object_object_add(
			o, "hash_algo",
			it->hash_algo[0] ? json_object_new_string(it->hash_algo)
			                 : NULL);
		json_object_object_add(
			o, "hash", it->hash[0] ? json_object_new_string(it->hash)
			                       : NULL);
		json_object_array_add(arr, o);
	}
	if (arr)
		print_json(arr);
	free(items);
	return EXIT_OK;
}

static int cache_prune(struct cli *cli, bool dry_run)
{
	struct vmd_error err = VMD_ERROR_INIT;
	struct vmd_prune_item *items = NULL;
	size_t n = 0;
	struct json_object *arr = cli->json ? json_object_new_array() : NULL;

	if (vmd_cache_prune(cli->ctx, dry_run, &items, &n, &err) < 0) {
		if (arr)
			json_object_put(arr);
		return failed(&err);
	}
	for (size_t i = 0; i < n; i++) {
		const struct vmd_prune_item *it = &items[i];
		const char *what = vmd_prune_action_name(it->action);

		if (arr) {
			struct json_object *o = json_object_new_object();

			json_object_object_add(o, "id",
			                       json_object_new_string(it->id));
			json_object_object_add(o, "action",
			                       json_object_new_string(what));
			json_object_object_add(o, "age",
			                       json_object_new_uint64(it->age));
			json_object_object_add(o, "users",
			                       json_object_new_uint64(it->users));
			json_object_array_add(arr, o);
			continue;
		}
		printf("%s %s (%u users, last used %llu s ago)\n", what,
		       it->id, it->users, (unsigned long long)it->age);
	}
	if (arr)
		print_json(arr);
	free(items);
	return EXIT_OK;
}

/* Its options; main() reads them too, to tell a global option from a
 * value of one of these (see take_global_options). */
static const struct option cache_opts[] = {
	{"dry-run", no_argument, NULL, 'n'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static int cmd_cache(struct cli *cli, int argc, char **argv)
{
	bool dry_run = false;
	int first, opt;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "h", cache_opts, NULL)) != -1) {
		if (opt == 'h') {
			print_command_help(find_command("cache"));
			return EXIT_OK;
		}
		if (opt != 'n')
			return usage_error("bad option or missing value");
		dry_run = true;
	}
	first = optind;
	if (argc - first == 1 && strcmp(argv[first], "list") == 0 && !dry_run)
		return cache_list(cli);
	if (argc - first == 1 && strcmp(argv[first], "prune") == 0)
		return cache_prune(cli, dry_run);
	return usage_error("cache: expected 'list' or 'prune [--dry-run]'");
}

static int cmd_snapshot(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	const char *verb, *instance, *disk, *snap;
	int first;
	int rc = parse_sub(find_command("snapshot"), argc, argv,
	                   (const struct option[]){{"help", 0, NULL, 'h'},
	                                           {NULL, 0, NULL, 0}},
	                   &first, NULL, NULL);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 4)
		return usage_error("snapshot: expected create|remove|rollback "
		                   "INSTANCE DISK SNAP");
	verb = argv[first];
	instance = argv[first + 1];
	disk = argv[first + 2];
	snap = argv[first + 3];
	rc = check_disk_args(instance, disk);
	if (rc != 0)
		return rc;
	if (!vmd_valid_disk_name(snap))
		return usage_error("bad snapshot name (allowed: "
		                   "[A-Za-z0-9][A-Za-z0-9._-]{0,63})");
	if (strcmp(verb, "create") == 0)
		rc = vmd_disk_snap_create(cli->ctx, instance, disk, snap, &err);
	else if (strcmp(verb, "remove") == 0)
		rc = vmd_disk_snap_remove(cli->ctx, instance, disk, snap, &err);
	else if (strcmp(verb, "rollback") == 0)
		rc = vmd_disk_snap_rollback(cli->ctx, instance, disk, snap,
		                            &err);
	else
		return usage_error("snapshot: expected create, remove or "
		                   "rollback");
	if (rc < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *o = disk_object(instance, disk);

		json_object_object_add(o, "snapshot",
		                       json_object_new_string(snap));
		json_object_object_add(o, "action", json_object_new_string(verb));
		print_json(o);
	}
	return EXIT_OK;
}

static int cmd_flatten(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	int first;
	int rc = disk_command_args("flatten", argc, argv, 2, &first);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (vmd_disk_flatten(cli->ctx, argv[first], argv[first + 1], &err) < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *o = disk_object(argv[first], argv[first + 1]);

		json_object_object_add(o, "flattened",
		                       json_object_new_boolean(true));
		print_json(o);
	}
	return EXIT_OK;
}

static int cmd_direct_snapshot(struct cli *cli, int argc, char **argv)
{
	struct vmd_error err = VMD_ERROR_INIT;
	char url[512];
	int first;
	int rc = parse_sub(find_command("direct-snapshot"), argc, argv,
	                   (const struct option[]){{"help", 0, NULL, 'h'},
	                                           {NULL, 0, NULL, 0}},
	                   &first, NULL, NULL);

	if (rc != 0)
		return rc < 0 ? EXIT_OK : rc;
	if (argc - first != 3)
		return usage_error("direct-snapshot: expected INSTANCE DISK NAME");
	rc = check_disk_args(argv[first], argv[first + 1]);
	if (rc != 0)
		return rc;
	if (!vmd_valid_disk_name(argv[first + 2]))
		return usage_error("bad image name (allowed: "
		                   "[A-Za-z0-9][A-Za-z0-9._-]{0,63})");
	if (vmd_disk_direct_snapshot(cli->ctx, argv[first], argv[first + 1],
	                             argv[first + 2], url, sizeof(url),
	                             &err) < 0)
		return failed(&err);
	if (cli->json) {
		struct json_object *o = disk_object(argv[first], argv[first + 1]);

		json_object_object_add(o, "name",
		                       json_object_new_string(argv[first + 2]));
		json_object_object_add(o, "location",
		                       json_object_new_string(url));
		print_json(o);
	} else {
		printf("%s\n", url);
	}
	return EXIT_OK;
}

static const struct command commands[] = {
	{"fetch", "fetch SOURCE [--checksum ALG:HEX]",
	 "Copy an image (a file, http(s):// or glance://ID) into the base-image\n"
	 "cache, once however many callers ask; ALG is md5, sha256 or sha512.",
	 cmd_fetch, fetch_opts, NULL},
	{"create",
	 "create INSTANCE DISK --image SOURCE [--size SIZE] [--backend B]\n"
	 "       [--checksum ALG:HEX] [--location rbd://FSID/POOL/IMAGE/SNAP]\n"
	 "       create INSTANCE DISK --blank --size SIZE [--fs ext4|xfs|vfat|swap]\n"
	 "       [--label LABEL] [--backend B]\n"
	 "       (either form: [--key-id UUID] for an encrypted lvm disk)",
	 "Create DISK of INSTANCE (a UUID) from an image, or blank (formatted\n"
	 "once per fs, size and label into a cached template). SIZE defaults to\n"
	 "the image's size and may not be smaller; units K, M, G, T (powers of\n"
	 "1024). B is flat, qcow2, rbd, lvm, ploop or default.\n"
	 "--location rbd://FSID/POOL/IMAGE/SNAP (rbd backend) clones that\n"
	 "protected snapshot instead of importing; with --image too, a location\n"
	 "that cannot be cloned falls back to importing the image when\n"
	 "rbd_clone_fallback_import is true. A raw glance:// image whose\n"
	 "direct_url or locations are rbd:// is cloned from the first of them\n"
	 "that can be cloned, the same way (not with --checksum: only an\n"
	 "import hashes the bytes).\n"
	 "--key-id UUID: with ephemeral_storage_encryption_enabled, the lvm\n"
	 "volume is LUKS2-formatted with that key from key_manager (fetched\n"
	 "before anything is made) and the guest gets its dm-crypt mapping.",
	 cmd_create, create_opts, NULL},
	{"info", "info INSTANCE DISK", "Show a disk's backend, format and sizes.",
	 cmd_info, NULL, NULL},
	{"resize", "resize INSTANCE DISK SIZE", "Grow a disk (never shrinks).",
	 cmd_resize, NULL, NULL},
	{"remove", "remove INSTANCE DISK", "Remove a disk.", cmd_remove, NULL,
	 NULL},
	{"snapshot", "snapshot create|remove|rollback INSTANCE DISK SNAP",
	 "Manage backend snapshots of a disk (rbd).", cmd_snapshot, NULL,
	 NULL},
	{"flatten", "flatten INSTANCE DISK",
	 "Copy the parent's data into a cloned disk so it has no parent (rbd).",
	 cmd_flatten, NULL, NULL},
	{"direct-snapshot", "direct-snapshot INSTANCE DISK NAME",
	 "Publish the disk as image NAME in the image pool without a local\n"
	 "copy, and print its location rbd://FSID/POOL/NAME/snap (rbd).",
	 cmd_direct_snapshot, NULL, NULL},
	{"libvirt-xml",
	 "libvirt-xml INSTANCE DISK [--dev DEV] [--bus virtio|scsi|sata|ide]\n"
	 "       [--cache none|writeback|writethrough|directsync|unsafe]\n"
	 "       [--discard unmap|ignore] [--boot-order N]\n"
	 "       [--qos KEY=N,...] [--filesystem TARGET_DIR]",
	 "Print the libvirt <disk> element for a disk (or, with --filesystem,\n"
	 "the <filesystem> element). DEV is vd*, sd* or hd* (default vda); the\n"
	 "bus defaults from it. QoS keys are libvirt's <iotune> names.",
	 cmd_xml, xml_opts, NULL},
	{"convert",
	 "convert SRC DST -O raw|qcow2 [-f raw|qcow2] [-p] [--allow-backing]",
	 "Write the guest view of SRC (raw or qcow2) into the new file DST.\n"
	 "Holes and zero blocks stay holes. A qcow2 with a backing file is\n"
	 "refused unless --allow-backing: then its chain is flattened in.\n"
	 "DST must not exist. -p is accepted (qemu-img's spelling): progress\n"
	 "shows on a terminal anyway, and never with -q (vmdisk --help).",
	 cmd_convert, convert_opts, convert_shortopts},
	{"extract", "extract INSTANCE DISK DST [--output-format raw|qcow2]",
	 "Write the disk's content, flattened (no backing file), into the new\n"
	 "file DST (raw by default).",
	 cmd_extract, extract_opts, NULL},
	{"cache", "cache list | cache prune [--dry-run]",
	 "List the cached base images (size, users, hash), or remove those no\n"
	 "disk uses once they are older than the configured ages.",
	 cmd_cache, cache_opts, NULL},
	{"inspect", "inspect FILE [--allow-backing]",
	 "Say what format an image is and whether it is safe to use: exit 0\n"
	 "when safe, 1 when refused, with each failed check on its own line\n"
	 "(--json: an array). --allow-backing accepts a qcow2 backing file.",
	 cmd_inspect, inspect_opts, NULL},
};

static const struct command *find_command(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

static void print_help(void)
{
	printf("usage: vmdisk [OPTIONS] COMMAND [ARGS] [OPTIONS]\n\n"
	       "Make the disks of virtual machines from base images.\n\n"
	       "Commands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		printf("  %s\n", commands[i].usage);
	printf("\nOptions (before or after COMMAND; -- ends them):\n"
	       "  --config FILE  configuration (default $VMDISK_CONFIG, then "
	       VMD_DEFAULT_CONFIG_PATH ")\n"
	       "  --json         machine-readable output (also --output=json;\n"
	       "                 --output=human is the default)\n"
	       "  -v             log to stderr (-vv: debug)\n"
	       "  -q             no log at all, no progress line\n"
	       "  -h, --help     this help; after COMMAND, that command's\n"
	       "  --version      print the version\n\n"
	       "Progress: fetch, create, convert, extract and flatten show\n"
	       "done/total, rate and ETA on stderr when it is a terminal,\n"
	       "redrawn at most 10 times a second; never on a pipe or a file,\n"
	       "nor with -q. stdout (--json) never has it.\n\n"
	       "Exit status: 0 done, 1 operation failed, 2 usage error.\n");
}

static int setup(struct cli *cli)
{
	struct vmd_config *cfg = &cli->cfg;
	struct vmd_error err = VMD_ERROR_INIT;

	if (vmd_config_load(cfg, cli->config_path, &err) < 0)
		return failed(&err);
	if (cli->verbose > 0)
		vmd_log_setup(VMD_LOG_TO_STDERR,
		              cli->verbose > 1 ? VMD_LOG_DEBUG : VMD_LOG_INFO,
		              "vmdisk");
	else if (cli->verbose == 0)
		vmd_log_setup(cfg->log_target, cfg->log_level, "vmdisk");
#if VMD_FAULT_INJECTION
	/* Test builds only: backend modules from the build tree. */
	const char *module_dir = getenv("VMDISK_MODULE_DIR");

	if (module_dir && module_dir[0] == '/')
		vmd_backend_set_module_dir(module_dir);
#endif
	cli->ctx = vmd_ctx_new(cfg, &err);
	if (!cli->ctx)
		return failed(&err);
	return EXIT_OK;
}

/* The global options: main() parses them before the command, and
 * take_global_options() after it too (exact names only there: a prefix
 * such as --c could be the command's own --cache). */
static const struct option global_opts[] = {
	{"config", required_argument, NULL, 'c'},
	{"json", no_argument, NULL, 'j'},
	{"output", required_argument, NULL, 'o'},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

/* One global option; 'h' and 'V' are the caller's. */
static int apply_global(struct cli *cli, int opt, const char *arg)
{
	switch (opt) {
	case 'c': cli->config_path = arg; return 0;
	case 'j': cli->json = true; return 0;
	case 'v':
		cli->verbose = cli->verbose < 0 ? 1 : cli->verbose + 1;
		return 0;
	case 'q': cli->verbose = -1; return 0;
	case 'o':
		/* qemu-img's spelling: --output=json|human. */
		if (strcmp(arg, "json") == 0)
			cli->json = true;
		else if (strcmp(arg, "human") == 0 || strcmp(arg, "text") == 0)
			cli->json = false;
		else
			return usage_error("--output takes json or human");
		return 0;
	default:
		return usage_error("bad option or missing value");
	}
}

/* Whether the long option NAME (LEN bytes, no "--") of the command takes
 * a value, by getopt's rule: an exact name, else a prefix of options that
 * agree. Unknown or ambiguous: no (the command's parser refuses it). */
static bool long_takes_value(const struct option *opts, const char *name,
                             size_t len)
{
	int has_arg = -1;

	for (const struct option *o = opts; o && o->name; o++) {
		if (strncmp(o->name, name, len) != 0)
			continue;
		if (o->name[len] == '\0')
			return o->has_arg == required_argument;
		if (has_arg >= 0 && has_arg != o->has_arg)
			return false;
		has_arg = o->has_arg;
	}
	return has_arg == required_argument;
}

/* Whether the short option cluster ARG ("-xyz") ends in an option of the
 * command that takes the next argument as its value. */
static bool short_takes_next(const char *shortopts, const char *arg)
{
	for (const char *p = arg + 1; *p; p++) {
		const char *o = *p == ':' ? NULL : strchr(shortopts, *p);

		if (o && o[1] == ':')
			return p[1] == '\0';
	}
	return false;
}

/* A cluster of global flags only (-v, -vv, -q, -j, -h), none of them an
 * option of the command. */
static bool all_global_flags(const char *shortopts, const char *arg)
{
	for (const char *p = arg + 1; *p; p++)
		if (!strchr("jvqh", *p) || (*p != 'h' && strchr(shortopts, *p)))
			return false;
	return true;
}

/*
 * Global options after the command, where qemu-img and rbd users type them
 * (`vmdisk inspect FILE --json`): applied to CLI and left out of OUT, which
 * gets ARGV (the command and its arguments) without them. "--" ends the
 * options and stays, for the command's parser; a value of one of the
 * command's own options (`--image --json`) is never taken. Returns 0, -1
 * for --help (printed) or a usage error's exit status.
 */
static int take_global_options(struct cli *cli, const struct command *cmd,
                               int argc, char **argv, char **out,
                               int *out_argc)
{
	const char *shortopts = cmd->shortopts ? cmd->shortopts : "h";
	int n = 0, i = 0;

	out[n++] = argv[i++];
	while (i < argc) {
		char *a = argv[i++];

		if (strcmp(a, "--") == 0) {
			out[n++] = a;
			while (i < argc)
				out[n++] = argv[i++];
			break;
		}
		if (a[0] != '-' || a[1] == '\0') {
			out[n++] = a; /* positional ("-" too) */
			continue;
		}
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			const struct option *g = global_opts;

			while (g->name &&
			       (strncmp(g->name, name, len) != 0 ||
			        g->name[len] != '\0' || g->val == 'V'))
				g++;
			if (!g->name) {
				out[n++] = a;
				if (!eq && i < argc &&
				    long_takes_value(cmd->opts, name, len))
					out[n++] = argv[i++];
				continue;
			}
			if (g->has_arg == no_argument && eq)
				return usage_error(
					"bad option or missing value");
			if (g->val == 'h') {
				print_command_help(cmd);
				return -1;
			}
			const char *val = eq ? eq + 1 : NULL;

			if (g->has_arg == required_argument && !val) {
				if (i >= argc)
					return usage_error(
						"bad option or missing value");
				val = argv[i++];
			}
			int rc = apply_global(cli, g->val, val);

			if (rc != 0)
				return rc;
			continue;
		}
		if (all_global_flags(shortopts, a)) {
			for (const char *p = a + 1; *p; p++) {
				if (*p == 'h') {
					print_command_help(cmd);
					return -1;
				}
				apply_global(cli, *p, NULL);
			}
			continue;
		}
		if (a[1] == 'c' && !strchr(shortopts, 'c')) {
			const char *val = a[2] ? a + 2 : NULL;

			if (!val) {
				if (i >= argc)
					return usage_error(
						"bad option or missing value");
				val = argv[i++];
			}
			apply_global(cli, 'c', val);
			continue;
		}
		out[n++] = a;
		if (i < argc && short_takes_next(shortopts, a))
			out[n++] = argv[i++];
	}
	out[n] = NULL;
	*out_argc = n;
	return 0;
}

int main(int argc, char **argv)
{
	struct cli cli = {0};
	const struct command *cmd;
	char **args;
	int opt, rc, nargs = 0;

	/* Nothing is logged until the configuration says where. */
	vmd_log_setup(VMD_LOG_TO_NONE, VMD_LOG_ERROR, "vmdisk");
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "+c:jvqhV", global_opts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'h': print_help(); return EXIT_OK;
		case 'V': printf("vmdisk %s\n", vmd_version()); return EXIT_OK;
		case '?':
		case ':':
			return usage_error("bad option or missing value");
		default:
			rc = apply_global(&cli, opt, optarg);
			if (rc != 0)
				return rc;
		}
	}
	if (optind >= argc)
		return usage_error("no command given");
	if (strcmp(argv[optind], "help") == 0) {
		cmd = optind + 1 < argc ? find_command(argv[optind + 1]) : NULL;
		if (cmd)
			print_command_help(cmd);
		else
			print_help();
		return EXIT_OK;
	}
	cmd = find_command(argv[optind]);
	if (!cmd)
		return usage_error("unknown command");
	usage_step = cmd->name;
	/* The global options after the command too; --help needs no
	 * configuration. */
	args = calloc((size_t)(argc - optind) + 1, sizeof(*args));
	if (!args) {
		fprintf(stderr, "vmdisk: %s: out of memory\n", cmd->name);
		return EXIT_FAILED;
	}
	rc = take_global_options(&cli, cmd, argc - optind, argv + optind, args,
	                         &nargs);
	if (rc != 0) {
		free(args);
		return rc < 0 ? EXIT_OK : rc;
	}
	/* json-c is loaded on first use (jsonc_lazy.h): by --json, else by
	 * the library when a command reads a record. */
	if (cli.json) {
		struct vmd_error err = VMD_ERROR_INIT;

		if (vmd_jsonc_load(&err) < 0) {
			free(args);
			vmd_error_prefix(&err, "json output");
			return failed(&err);
		}
	}
	rc = setup(&cli);
	if (rc == EXIT_OK) {
		progress_init(&progress, cli.verbose >= 0);
		if (progress.on)
			vmd_ctx_set_progress(cli.ctx, progress_step_cb,
			                     &progress);
		rc = cmd->run(&cli, nargs, args);
		progress_end(&progress, rc == EXIT_OK);
	}
	vmd_ctx_free(cli.ctx);
	free(args);
	return rc;
}
